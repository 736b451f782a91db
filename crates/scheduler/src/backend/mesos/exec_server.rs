//! The driver's executable, served to Mesos agents' fetchers.
//!
//! `GET` and `HEAD` of `/exec/<hash>/<name>` answer with the bytes (or just the headers)
//! and a `Content-Length`; any other path is 404. The hash in the URL is the binary's
//! identity, so an agent's fetcher cache never hands out a stale build.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The URL path at which `name` with identity `id` is served.
pub fn exec_path(id: u64, name: &str) -> String {
    format!("/exec/{id:016x}/{name}")
}

/// Serve `binary` at `path` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    path: String,
    binary: Bytes,
    shutdown: impl Future<Output = ()>,
) {
    let served = Arc::new((path, binary));
    spate_shuffle::server::serve_http(
        listener,
        move |req: Request<Incoming>| {
            let served = served.clone();
            async move { respond(&served.0, &served.1, &req) }
        },
        shutdown,
    )
    .await;
}

fn respond(path: &str, binary: &Bytes, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let found = req.uri().path() == path;
    let mut r = match (found, req.method()) {
        (true, &Method::GET) => Response::new(Full::new(binary.clone())),
        (true, &Method::HEAD) => Response::new(Full::new(Bytes::new())),
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(binary.len()),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    async fn request(
        addr: &str,
        method: Method,
        path: &str,
    ) -> (StatusCode, Option<String>, Vec<u8>) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, addr)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = tx.send_request(req).await.expect("response");
        let status = resp.status();
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, len, body)
    }

    #[tokio::test]
    async fn get_head_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let path = exec_path(0xabc, "wordcount");
        assert_eq!(path, "/exec/0000000000000abc/wordcount");
        let binary = Bytes::from(vec![7u8; 100_000]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, path.clone(), binary.clone(), async {
            let _ = stopped.await;
        }));
        let (s, len, body) = request(&addr, Method::GET, &path).await;
        assert_eq!(
            (s, len.as_deref(), body.len()),
            (StatusCode::OK, Some("100000"), 100_000)
        );
        assert_eq!(body, binary.to_vec());
        let (s, len, body) = request(&addr, Method::HEAD, &path).await;
        assert_eq!(
            (s, len.as_deref(), body.len()),
            (StatusCode::OK, Some("100000"), 0)
        );
        for other in [
            "/exec/0000000000000abd/wordcount",
            "/exec/../etc/passwd",
            "/",
        ] {
            assert_eq!(
                request(&addr, Method::GET, other).await.0,
                StatusCode::NOT_FOUND,
                "{other}"
            );
        }
        assert_eq!(
            request(&addr, Method::POST, &path).await.0,
            StatusCode::NOT_FOUND
        );
        let _ = stop.send(());
    }
}
