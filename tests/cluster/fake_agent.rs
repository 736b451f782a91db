//! A minimal stand-in for a Mesos agent's executor API (test support, never the product):
//! serves `POST /api/v1/executor` on loopback, streams events to the subscribed executor,
//! records its calls, and checks the rules the real agent enforces on them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use spate_mesos::v1::executor::{Call, Event, call};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
pub struct Recorded {
    pub calls: Vec<Call>,
    pub violations: Vec<String>,
}

pub struct FakeAgent {
    pub addr: String,
    pub recorded: Arc<Mutex<Recorded>>,
    events: Arc<Mutex<Option<mpsc::UnboundedSender<Event>>>>,
}

impl FakeAgent {
    pub async fn start() -> FakeAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let recorded: Arc<Mutex<Recorded>> = Default::default();
        let events: Arc<Mutex<Option<mpsc::UnboundedSender<Event>>>> = Default::default();
        let (rec, ev) = (recorded.clone(), events.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (rec, ev) = (rec.clone(), ev.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| handle(req, rec.clone(), ev.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        FakeAgent {
            addr,
            recorded,
            events,
        }
    }

    /// Push an event to the subscribed executor (false when none is subscribed).
    pub fn send(&self, e: Event) -> bool {
        self.events
            .lock()
            .expect("lock")
            .as_ref()
            .is_some_and(|tx| tx.send(e).is_ok())
    }

    pub fn subscribed(&self) -> bool {
        self.events.lock().expect("lock").is_some()
    }
}

fn reply(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    rec: Arc<Mutex<Recorded>>,
    ev: Arc<Mutex<Option<mpsc::UnboundedSender<Event>>>>,
) -> Result<Response<Body>, Infallible> {
    let violation = |m: String| {
        rec.lock().expect("lock").violations.push(m);
    };
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if ct.as_deref() != Some("application/x-protobuf") {
        violation(format!("content type {ct:?}"));
        return Ok(reply(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(call) = Call::decode(body) else {
        violation("undecodable call".into());
        return Ok(reply(StatusCode::BAD_REQUEST));
    };
    rec.lock().expect("lock").calls.push(call.clone());
    match call::Type::try_from(call.r#type.unwrap_or(0)) {
        Ok(call::Type::Subscribe) => {
            if accept.as_deref() != Some("application/x-protobuf") {
                violation(format!("SUBSCRIBE accept {accept:?}"));
            }
            if call.subscribe.is_none() {
                violation("SUBSCRIBE without the subscribe field".into());
                return Ok(reply(StatusCode::BAD_REQUEST));
            }
            let (tx, rx) = mpsc::unbounded_channel::<Event>();
            let _ = tx.send(Event {
                r#type: Some(spate_mesos::v1::executor::event::Type::Subscribed as i32),
                ..Default::default()
            });
            *ev.lock().expect("lock") = Some(tx);
            Ok(Response::new(EventBody(rx).boxed()))
        }
        Ok(call::Type::Update) => {
            let Some(u) = call.update else {
                violation("UPDATE without update".into());
                return Ok(reply(StatusCode::BAD_REQUEST));
            };
            let st = &u.status;
            match st.uuid.as_deref() {
                Some(u) if u.len() == 16 && u[6] >> 4 == 4 => {}
                other => violation(format!("update uuid {other:?}")),
            }
            if st.source != Some(spate_mesos::v1::task_status::Source::Executor as i32) {
                violation(format!("update source {:?}", st.source));
            }
            if st.agent_id.is_some() {
                violation("update sets agent_id".into());
            }
            // The agent acknowledges every accepted update.
            if let Some(tx) = ev.lock().expect("lock").as_ref() {
                let _ = tx.send(Event {
                    r#type: Some(spate_mesos::v1::executor::event::Type::Acknowledged as i32),
                    acknowledged: Some(spate_mesos::v1::executor::event::Acknowledged {
                        task_id: st.task_id.clone(),
                        uuid: st.uuid.clone().unwrap_or_default(),
                    }),
                    ..Default::default()
                });
            }
            Ok(reply(StatusCode::ACCEPTED))
        }
        _ => Ok(reply(StatusCode::ACCEPTED)),
    }
}

/// RecordIO-framed events as a response body that lasts until the sender is dropped.
pub struct EventBody<E>(pub mpsc::UnboundedReceiver<E>);

impl<E: prost::Message + Unpin> hyper::body::Body for EventBody<E> {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|e| {
            e.map(|e| {
                Ok(Frame::data(Bytes::from(spate_mesos::recordio::encode(
                    &e.encode_to_vec(),
                ))))
            })
        })
    }
}
