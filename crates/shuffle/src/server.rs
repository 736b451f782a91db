//! The block server: shuffle segments and large task results over HTTP.
//!
//! Only two shapes of path exist, `/shuffle/{shuffle}/{map}/{reduce}` and
//! `/result/{task}`, with decimal numbers; they are mapped to files of this executor's own
//! directories by construction, so no request can name another file. Anything else is 404.

use crate::store::BlockStore;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the server serves.
pub struct Served {
    /// Shuffle output of this executor.
    pub store: Arc<BlockStore>,
    /// Directory of large results (`{task}.result`).
    pub results: PathBuf,
}

/// Path of a large result file for `task`.
pub fn result_path(results: &std::path::Path, task: u64) -> PathBuf {
    results.join(format!("{task}.result"))
}

enum Route {
    Shuffle(usize, usize, usize),
    Result(u64),
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match parts.as_slice() {
        ["shuffle", s, m, r] => Some(Route::Shuffle(
            num(s)? as usize,
            num(m)? as usize,
            num(r)? as usize,
        )),
        ["result", t] => Some(Route::Result(num(t)?)),
        _ => None,
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

async fn handle(
    served: Arc<Served>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(respond(StatusCode::NOT_FOUND, Bytes::new()));
    }
    let found = match route(req.uri().path()) {
        Some(Route::Shuffle(s, m, r)) => match served.store.kept_segment(s, m, r) {
            // Kept in memory: sent without a blocking thread (and without a copy when the
            // segment is in one piece).
            Some(pieces) => Some(crate::store::join_pieces(pieces)),
            None => {
                let store = served.store.clone();
                tokio::task::spawn_blocking(move || store.read_segment(s, m, r))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten()
            }
        },
        Some(Route::Result(t)) => tokio::fs::read(result_path(&served.results, t))
            .await
            .ok()
            .map(Bytes::from),
        None => None,
    };
    Ok(match found {
        Some(body) => respond(StatusCode::OK, body),
        None => respond(StatusCode::NOT_FOUND, Bytes::new()),
    })
}

/// Serve on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, served: Served, shutdown: impl Future<Output = ()>) {
    let served = Arc::new(served);
    serve_http(
        listener,
        move |req| {
            let served = served.clone();
            async move {
                handle(served, req)
                    .await
                    .unwrap_or_else(|never| match never {})
            }
        },
        shutdown,
    )
    .await;
}

/// Accept HTTP/1 connections on `listener` and answer each request with `handler`, until
/// `shutdown` completes. Shared by every small server spate runs (block server, the
/// driver's executable server).
pub async fn serve_http<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                        tracing::debug!("http connection: {e}");
                    }
                });
            }
        }
    }
}

/// An HTTP server on a thread of its own (a small tokio runtime), for the driver's
/// little servers (web UI, broadcasts). Stops when dropped.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Serve `listener` (a bound std listener) with `handler` on a thread named `name`.
    pub fn spawn<H, F>(
        name: &str,
        listener: std::net::TcpListener,
        handler: H,
    ) -> std::io::Result<ServerThread>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    serve_http(listener, handler, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })?;
        Ok(ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_numeric_routes_exist() {
        assert!(matches!(
            route("/shuffle/1/2/3"),
            Some(Route::Shuffle(1, 2, 3))
        ));
        assert!(matches!(route("/result/77"), Some(Route::Result(77))));
        for bad in [
            "/shuffle/1/2",
            "/shuffle/1/2/3/4",
            "/shuffle/../2/3",
            "/shuffle/-1/2/3",
            "/result/../../etc/passwd",
            "/",
            "/result/",
            "/shuffle/1/2/3%2f",
        ] {
            assert!(route(bad).is_none(), "{bad}");
        }
    }
}
