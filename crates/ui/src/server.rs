//! The UI's HTTP server: the driver serves [`crate::pages`] from the [`Store`] on its own
//! thread (a small tokio runtime), on the first free port from 4040 unless told one.

use crate::pages::{Page, render};
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode, header};
use spate_shuffle::server::ServerThread;
use std::net::TcpListener;

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No port could be bound.
    #[error("the web UI could not bind {what}: {source}")]
    Bind {
        /// Address or range tried.
        what: String,
        /// Last error.
        source: std::io::Error,
    },
    /// The server thread or runtime could not start.
    #[error("starting the web UI: {0}")]
    Start(String),
}

/// Ports tried from the first one when no port was given.
const PORT_TRIES: u16 = 64;

/// A running UI server; stops when dropped.
pub struct UiServer {
    url: String,
    _server: ServerThread,
}

fn respond(store: &Store, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let page = if method == Method::GET || method == Method::HEAD {
        store.read(|s| render(s, path))
    } else {
        Page::NotFound("only GET".into())
    };
    let (status, ctype, body) = match page {
        Page::Html(h) => (StatusCode::OK, "text/html; charset=utf-8", h),
        Page::Json(j) => (StatusCode::OK, "application/json", j),
        Page::NotFound(m) => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", m),
    };
    let body = if method == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = "no-store".parse() {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

impl UiServer {
    /// Serve `store` on `host`: on `port` exactly when given, else on the first free port
    /// from `first`.
    pub fn start(
        store: Store,
        host: &str,
        port: Option<u16>,
        first: u16,
    ) -> Result<UiServer, UiError> {
        let listener = match port {
            Some(p) => TcpListener::bind((host, p)).map_err(|source| UiError::Bind {
                what: format!("{host}:{p}"),
                source,
            })?,
            None => {
                let mut last = None;
                let mut found = None;
                for p in first..first.saturating_add(PORT_TRIES) {
                    match TcpListener::bind((host, p)) {
                        Ok(l) => {
                            found = Some(l);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                // Every usual port is taken (many contexts at once): any free port will do.
                match found {
                    Some(l) => l,
                    None => TcpListener::bind((host, 0)).map_err(|source| UiError::Bind {
                        what: format!(
                            "{host}:{first}..{} or any port (last error: {:?})",
                            first.saturating_add(PORT_TRIES),
                            last.map(|e| e.to_string())
                        ),
                        source,
                    })?,
                }
            }
        };
        let addr = listener
            .local_addr()
            .map_err(|e| UiError::Start(e.to_string()))?;
        let server = ServerThread::spawn(
            "spate-ui",
            listener,
            move |req: hyper::Request<hyper::body::Incoming>| {
                let store = store.clone();
                async move { respond(&store, req.method(), req.uri().path()) }
            },
        )
        .map_err(|e| UiError::Start(e.to_string()))?;
        Ok(UiServer {
            url: format!("http://{addr}"),
            _server: server,
        })
    }

    /// `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }
}
