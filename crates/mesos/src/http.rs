//! Calls to a Mesos master or agent over the v1 HTTP API.
//!
//! Every call is a `POST` of one protobuf message with `Content-Type` and `Accept` exactly
//! [`crate::PROTOBUF`]. SUBSCRIBE answers with a never-ending RecordIO stream of events on
//! its own connection; every other call goes over a new connection and carries the
//! `Mesos-Stream-Id` the subscription returned (scheduler API). A master that is not the
//! leader answers 307 with a protocol-relative `Location` (`//host:port/path`): the call
//! is re-sent there and the caller keeps using that address. 503 (and 404 while a master
//! starts) is retried with exponential backoff.

use crate::PROTOBUF;
use crate::recordio::{self, RecordIoError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Header carrying the subscription's stream id.
pub const STREAM_ID: &str = "Mesos-Stream-Id";

/// How many redirects and retries one call may take.
const MAX_REDIRECTS: usize = 5;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Could not connect or the connection broke.
    #[error("cannot reach {addr}: {message}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// Details.
        message: String,
    },
    /// The server answered with a status the caller must handle (400 with its body text,
    /// 401, 403, …).
    #[error("{addr} answered {status}: {body}")]
    Status {
        /// `host:port`.
        addr: String,
        /// HTTP status.
        status: StatusCode,
        /// Response body (Mesos puts the reason there).
        body: String,
    },
    /// A redirect without a usable `Location`, or too many of them.
    #[error("bad redirect from {addr}: {message}")]
    Redirect {
        /// `host:port`.
        addr: String,
        /// Details.
        message: String,
    },
    /// The event stream is corrupt.
    #[error(transparent)]
    RecordIo(#[from] RecordIoError),
}

/// Where calls go: `host:port` of the (leading) master or the agent, and the API path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`; updated when a 307 points at the leader.
    pub addr: String,
    /// `/api/v1/scheduler` or `/api/v1/executor`.
    pub path: String,
}

/// Retry policy for 503 (and startup 404) answers.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all.
    pub attempts: u32,
    /// First backoff; doubles each time.
    pub initial: Duration,
    /// Longest backoff.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 8,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Resolve a 307 `Location`: protocol-relative `//host:port/path`, or absolute `http://…`.
pub fn redirect_target(location: &str) -> Option<Endpoint> {
    let rest = location
        .strip_prefix("//")
        .or_else(|| location.strip_prefix("http://"))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if addr.is_empty() {
        return None;
    }
    Some(Endpoint {
        addr: addr.to_string(),
        path: path.to_string(),
    })
}

async fn send_once(
    endpoint: &Endpoint,
    body: &Bytes,
    stream_id: Option<&str>,
    authorization: Option<&str>,
) -> Result<Response<Incoming>, HttpError> {
    let unreachable = |e: &dyn std::fmt::Display| HttpError::Unreachable {
        addr: endpoint.addr.clone(),
        message: e.to_string(),
    };
    let stream = TcpStream::connect(&endpoint.addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::post(&endpoint.path)
        .header(header::HOST, &endpoint.addr)
        .header(header::CONTENT_TYPE, PROTOBUF)
        .header(header::ACCEPT, PROTOBUF);
    if let Some(id) = stream_id {
        req = req.header(STREAM_ID, id);
    }
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .body(Full::new(body.clone()))
        .map_err(|e| unreachable(&e))?;
    sender.send_request(req).await.map_err(|e| unreachable(&e))
}

/// POST `body` to `endpoint`, following leader redirects (updating `endpoint`) and
/// retrying 503. Returns the response once its status is 2xx.
pub async fn post(
    endpoint: &mut Endpoint,
    body: Bytes,
    stream_id: Option<&str>,
    authorization: Option<&str>,
    retry: Retry,
) -> Result<Response<Incoming>, HttpError> {
    let mut redirects = 0;
    let mut attempt = 0;
    let mut delay = retry.initial;
    loop {
        let resp = match send_once(endpoint, &body, stream_id, authorization).await {
            Ok(r) => r,
            Err(e) if attempt + 1 < retry.attempts => {
                tracing::debug!("mesos call failed, retrying: {e}");
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(retry.max);
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::TEMPORARY_REDIRECT {
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let target = location
                .as_deref()
                .and_then(redirect_target)
                .ok_or_else(|| HttpError::Redirect {
                    addr: endpoint.addr.clone(),
                    message: format!("unusable Location {location:?}"),
                })?;
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(HttpError::Redirect {
                    addr: endpoint.addr.clone(),
                    message: "too many redirects".into(),
                });
            }
            tracing::info!(
                from = endpoint.addr,
                to = target.addr,
                "following the master's redirect to the leader"
            );
            *endpoint = target;
            continue;
        }
        let retriable =
            status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::NOT_FOUND;
        if retriable && attempt + 1 < retry.attempts {
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(retry.max);
            continue;
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(HttpError::Status {
            addr: endpoint.addr.clone(),
            status,
            body,
        });
    }
}

/// GET `path_and_query` from `addr` and return the body of a 2xx answer.
async fn get(
    addr: &str,
    path_and_query: &str,
    authorization: Option<&str>,
) -> Result<Bytes, HttpError> {
    let unreachable = |e: &dyn std::fmt::Display| HttpError::Unreachable {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(path_and_query).header(header::HOST, addr);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| unreachable(&e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(HttpError::Status {
            addr: addr.to_string(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(body)
}

/// The last `max` bytes of `file` in the sandbox of `executor` of `framework`, read from
/// the agent at `addr` (`host:port`) through its `/files/read` endpoint (the sandbox stays
/// readable there after the executor ended, until the agent garbage-collects it). For
/// an executor's death, its `stderr` says what the agent's terminal update cannot.
pub async fn sandbox_tail(
    addr: &str,
    framework: &str,
    executor: &str,
    file: &str,
    max: u64,
    authorization: Option<&str>,
) -> Result<String, HttpError> {
    let path = format!("/frameworks/{framework}/executors/{executor}/runs/latest/{file}");
    let encoded: String = path
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    // An answer is `{"data": "...", "offset": N}`.
    let chunk = |body: Bytes| -> Result<(String, u64), HttpError> {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| HttpError::Status {
                addr: addr.to_string(),
                status: StatusCode::OK,
                body: format!("unexpected /files/read answer: {e}"),
            })?;
        let data = v.get("data").and_then(|d| d.as_str()).unwrap_or_default();
        let offset = v.get("offset").and_then(|o| o.as_u64()).unwrap_or_default();
        Ok((data.to_string(), offset))
    };
    // offset -1 answers the file's size.
    let (_, size) = chunk(
        get(
            addr,
            &format!("/files/read?path={encoded}&offset=-1"),
            authorization,
        )
        .await?,
    )?;
    let from = size.saturating_sub(max);
    let (data, _) = chunk(
        get(
            addr,
            &format!("/files/read?path={encoded}&offset={from}&length={max}"),
            authorization,
        )
        .await?,
    )?;
    Ok(data)
}

/// A live SUBSCRIBE stream: records as they arrive, with an idle watchdog.
pub struct EventStream {
    body: Incoming,
    decoder: recordio::Decoder,
    /// The `Mesos-Stream-Id` of this subscription (scheduler API), if any.
    pub stream_id: Option<String>,
    idle: Duration,
}

impl EventStream {
    /// Open a subscription: POST the SUBSCRIBE call (never with a stream id) and keep the
    /// response body as the event stream. `idle` is how long the stream may stay silent
    /// before it counts as dead (the master heartbeats every 15 s; use ~5 intervals).
    pub async fn subscribe(
        endpoint: &mut Endpoint,
        body: Bytes,
        authorization: Option<&str>,
        retry: Retry,
        idle: Duration,
    ) -> Result<EventStream, HttpError> {
        let resp = post(endpoint, body, None, authorization, retry).await?;
        let stream_id = resp
            .headers()
            .get(STREAM_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(EventStream {
            body: resp.into_body(),
            decoder: recordio::Decoder::default(),
            stream_id,
            idle,
        })
    }

    /// Change the idle limit (e.g. to 5 heartbeat intervals once SUBSCRIBED says what the
    /// interval is).
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// The next record (one serialized event); `Ok(None)` when the stream ended. A stream
    /// silent for longer than the idle limit is reported as unreachable.
    pub async fn next_record(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            if let Some(r) = self.decoder.next_record()? {
                return Ok(Some(r));
            }
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => {
                    return Err(HttpError::Unreachable {
                        addr: "subscription".into(),
                        message: format!("no bytes for {:?}", self.idle),
                    });
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(HttpError::Unreachable {
                        addr: "subscription".into(),
                        message: e.to_string(),
                    });
                }
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                self.decoder.push(&data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Frame;
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    type Reply = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;
    type Scripted = Box<dyn Fn() -> Reply + Send + Sync>;
    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, Option<String>)>>>;

    /// A scripted server: answers the i-th request with `script[i]`.
    async fn server(script: Vec<Scripted>, seen: Seen) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let script = Arc::new(script);
        let n = Arc::new(Mutex::new(0usize));
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (script, n, seen) = (script.clone(), n.clone(), seen.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (script, n, seen) = (script.clone(), n.clone(), seen.clone());
                        async move {
                            let h = |k: &str| {
                                req.headers()
                                    .get(k)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            seen.lock().expect("lock").push((
                                req.uri().path().to_string(),
                                h("content-type"),
                                h("accept"),
                                h(STREAM_ID),
                            ));
                            let i = {
                                let mut n = n.lock().expect("lock");
                                *n += 1;
                                *n - 1
                            };
                            Ok::<_, Infallible>(script[i.min(script.len() - 1)]())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn status(code: u16) -> Reply {
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = StatusCode::from_u16(code).expect("code");
        r
    }

    #[tokio::test]
    async fn redirects_retries_and_streams() {
        let seen: Seen = Default::default();
        // The leader streams two events, split at odd points, then stays open.
        let leader = server(
            vec![Box::new(|| {
                let chunks: Vec<Result<Frame<Bytes>, Infallible>> =
                    [&b"3"[..], b"\nab", b"c5\nhe", b"llo"]
                        .into_iter()
                        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
                        .collect();
                let mut r = Response::new(futures_stream(chunks).boxed());
                r.headers_mut()
                    .insert(STREAM_ID, "stream-1".parse().expect("hv"));
                r
            })],
            seen.clone(),
        )
        .await;
        let leader_addr = leader.clone();
        let follower = server(
            vec![
                Box::new(|| status(503)),
                Box::new(move || {
                    let mut r = status(307);
                    r.headers_mut().insert(
                        header::LOCATION,
                        format!("//{leader_addr}/api/v1/scheduler")
                            .parse()
                            .expect("hv"),
                    );
                    r
                }),
            ],
            seen.clone(),
        )
        .await;
        let mut ep = Endpoint {
            addr: follower,
            path: "/api/v1/scheduler".into(),
        };
        let retry = Retry {
            attempts: 3,
            initial: Duration::from_millis(5),
            max: Duration::from_millis(10),
        };
        let mut events = EventStream::subscribe(
            &mut ep,
            Bytes::from_static(b"sub"),
            None,
            retry,
            Duration::from_millis(300),
        )
        .await
        .expect("subscribed");
        assert_eq!(ep.addr, leader, "later calls go to the leader");
        assert_eq!(events.stream_id.as_deref(), Some("stream-1"));
        assert_eq!(
            events.next_record().await.expect("ok").as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(
            events.next_record().await.expect("ok").as_deref(),
            Some(&b"hello"[..])
        );
        assert!(
            events.next_record().await.is_err(),
            "idle watchdog fires on a silent stream"
        );
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 3);
        for (path, ct, accept, sid) in &seen {
            assert_eq!(path, "/api/v1/scheduler");
            assert_eq!(ct.as_deref(), Some(PROTOBUF));
            assert_eq!(accept.as_deref(), Some(PROTOBUF));
            assert_eq!(sid, &None, "SUBSCRIBE never carries a stream id");
        }
    }

    #[tokio::test]
    async fn errors_carry_status_and_body() {
        let seen: Seen = Default::default();
        let addr = server(
            vec![Box::new(|| {
                let mut r = Response::new(
                    Full::new(Bytes::from_static(b"Framework is not subscribed")).boxed(),
                );
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            })],
            seen.clone(),
        )
        .await;
        let mut ep = Endpoint {
            addr,
            path: "/api/v1/scheduler".into(),
        };
        let e = post(
            &mut ep,
            Bytes::from_static(b"x"),
            Some("s-9"),
            None,
            Retry::default(),
        )
        .await
        .expect_err("403");
        assert_eq!(
            e.to_string(),
            format!(
                "{} answered 403 Forbidden: Framework is not subscribed",
                ep.addr
            )
        );
        assert_eq!(
            seen.lock().expect("lock")[0].3.as_deref(),
            Some("s-9"),
            "later calls carry the stream id"
        );
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(
            redirect_target("//m2:5050/api/v1/scheduler"),
            Some(Endpoint {
                addr: "m2:5050".into(),
                path: "/api/v1/scheduler".into()
            })
        );
        assert_eq!(
            redirect_target("http://m3:5050/master/api/v1/scheduler").map(|e| e.addr),
            Some("m3:5050".into())
        );
        assert_eq!(redirect_target("/relative"), None);
        assert_eq!(redirect_target("//"), None);
    }

    /// A stream over a fixed list of chunks that then stays pending forever (like a live
    /// subscription between heartbeats).
    fn futures_stream(
        chunks: Vec<Result<Frame<Bytes>, Infallible>>,
    ) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static {
        struct Chunks(std::collections::VecDeque<Result<Frame<Bytes>, Infallible>>);
        impl hyper::body::Body for Chunks {
            type Data = Bytes;
            type Error = Infallible;
            fn poll_frame(
                mut self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                match self.0.pop_front() {
                    Some(c) => std::task::Poll::Ready(Some(c)),
                    None => std::task::Poll::Pending,
                }
            }
        }
        Chunks(chunks.into())
    }
}
