//! HTTP GET of blocks and results from block servers, with retries and backoff.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Start of the message of a fetch that could not reach the block server at all (the
/// scheduler then takes every output of that executor as lost).
pub const UNREACHABLE: &str = "block server unreachable";

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The server answered 404: it does not have that block.
    NotFound,
    /// Could not connect, or the connection broke (after retries).
    Unreachable(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("not found on the block server"),
            FetchError::Unreachable(m) => write!(f, "{UNREACHABLE}: {m}"),
        }
    }
}

async fn get_once(addr: &str, path: &str) -> Result<Bytes, FetchError> {
    let unreachable =
        |e: &dyn std::fmt::Display| FetchError::Unreachable(format!("{addr}{path}: {e}"));
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(FetchError::NotFound),
        other => return Err(unreachable(&format!("HTTP {other}"))),
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(body.to_bytes())
}

/// GET `path` from `addr` (`host:port`). Connection problems are retried `retries` times
/// with exponential backoff from 50 ms; a 404 is final at once.
pub async fn get(addr: &str, path: &str, retries: u32) -> Result<Bytes, FetchError> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        match get_once(addr, path).await {
            Err(FetchError::Unreachable(m)) if attempt < retries => {
                tracing::debug!(attempt, "fetch failed, retrying: {m}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
