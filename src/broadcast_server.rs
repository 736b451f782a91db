//! The driver's broadcast server: serves encoded broadcast values to executors at
//! `/broadcast/<id>` and counts what it sends (each executor fetches a value once).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use spate_core::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the broadcast server has sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BroadcastStats {
    /// Values served (one per executor and broadcast, when all goes well).
    pub fetches: u64,
    /// Bytes of values served.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    bytes: AtomicU64,
}

pub(crate) struct BroadcastServer {
    addr: String,
    counters: Arc<Counters>,
    _server: spate_shuffle::server::ServerThread,
}

impl BroadcastServer {
    /// Listen on `host` (an address executors can reach), any free port.
    pub(crate) fn start(host: &str) -> Result<BroadcastServer> {
        let bind = if host.parse::<std::net::IpAddr>().is_ok() {
            host
        } else {
            "0.0.0.0"
        };
        let listener = std::net::TcpListener::bind((bind, 0))
            .map_err(|e| Error::Other(format!("binding the broadcast server on {bind}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("broadcast server: {e}")))?
            .port();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let server = spate_shuffle::server::ServerThread::spawn(
            "spate-broadcast",
            listener,
            move |req: hyper::Request<hyper::body::Incoming>| {
                let c = c.clone();
                async move { respond(&c, req.uri().path()) }
            },
        )
        .map_err(|e| Error::Other(format!("starting the broadcast server: {e}")))?;
        Ok(BroadcastServer {
            addr: format!("{host}:{port}"),
            counters,
            _server: server,
        })
    }

    /// `host:port` executors fetch from.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn stats(&self) -> BroadcastStats {
        BroadcastStats {
            fetches: self.counters.fetches.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }
}

fn respond(c: &Counters, path: &str) -> Response<Full<Bytes>> {
    let value = path
        .strip_prefix("/broadcast/")
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(spate_core::broadcast::served_bytes);
    match value {
        Some(v) => {
            c.fetches.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(v.len() as u64, Ordering::Relaxed);
            Response::new(Full::new(Bytes::from(v.as_ref().clone())))
        }
        None => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"no such broadcast")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
