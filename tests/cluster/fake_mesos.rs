//! A Mesos master with agents, on loopback (test support, never the product).
//!
//! Speaks the v1 scheduler API (`/api/v1/scheduler`) and, per agent, the executor API
//! (`/api/v1/executor`) like Mesos 1.x does: a RecordIO event stream per subscription,
//! offers of each agent's free cpus/mem (not while suppressed or filtered), ACCEPT/LAUNCH
//! that fetches the executor over HTTP (HEAD first when cached), starts it as a process
//! with the Mesos environment and relays its updates and acknowledgements, FAILURE when
//! an executor process exits, RECONCILE answers, TEARDOWN that shuts executors down.
//!
//! It enforces the protocol's rules and records each broken one as a violation (and, as
//! Mesos does, answers 400 or a TASK_ERROR): exact content types, `Accept` on SUBSCRIBE,
//! no stream id on SUBSCRIBE and the right one on every other call, MULTI_ROLE without
//! `role`, matching framework ids, offers used once and only by their framework, task
//! resources within the offer and in its role, one identical `ExecutorInfo` per executor
//! id, every forwarded update with a uuid acknowledged (within [`ACK_DEADLINE`]) and no
//! acknowledgement of anything else. Tests fail on any violation.

use crate::fake_agent::EventBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use spate_mesos::v1::executor::{Call as ECall, Event as EEvent, call as ecall, event as eevent};
use spate_mesos::v1::scheduler::{Call as SCall, Event as SEvent, call as scall, event as sevent};
use spate_mesos::v1::{
    self, AgentId, ExecutorId, ExecutorInfo, FrameworkId, Offer, OfferId, Resource, TaskId,
    TaskInfo, TaskState, TaskStatus, resource, task_status, value,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// An update forwarded to the framework must be acknowledged within this long.
pub const ACK_DEADLINE: Duration = Duration::from_secs(4);
/// The agent re-sends an unacknowledged update this often (Mesos: 10 s, doubling).
const UPDATE_RETRY: Duration = Duration::from_secs(2);
const PROTOBUF: &str = "application/x-protobuf";
const EPS: f64 = 0.0005;

/// Resources of one agent.
#[derive(Clone, Copy, Debug)]
pub struct AgentSpec {
    pub cpus: f64,
    pub mem: f64,
}

struct Framework {
    id: String,
    stream_id: Option<String>,
    tx: Option<mpsc::UnboundedSender<SEvent>>,
    suppressed: bool,
    removed: bool,
    roles: Vec<String>,
}

struct Offered {
    agent: usize,
    cpus: f64,
    mem: f64,
}

struct Exec {
    info: ExecutorInfo,
    cpus: f64,
    mem: f64,
    tx: Option<mpsc::UnboundedSender<EEvent>>,
    queued: Vec<TaskInfo>,
    child: Option<Arc<Mutex<Child>>>,
}

struct Agent {
    id: String,
    addr: String,
    spec: AgentSpec,
    used_cpus: f64,
    used_mem: f64,
    offered: bool,
    /// A DECLINE/ACCEPT filter: until when, and the refused cpus and mem. As in Mesos,
    /// it only holds back offers that are no larger than what was refused.
    filter: Option<(Instant, f64, f64)>,
    alive: bool,
    executors: HashMap<String, Exec>,
    sandboxes: PathBuf,
}

struct Task {
    agent: usize,
    executor: String,
    cpus: f64,
    mem: f64,
    state: i32,
    terminal: bool,
    queue: VecDeque<TaskStatus>,
    /// Forwarded, not yet acknowledged: the update, when first sent (while connected),
    /// when last sent.
    unacked: Option<(TaskStatus, Instant, Instant)>,
    sent_uuids: HashSet<Vec<u8>>,
    late: bool,
}

/// What the double saw.
#[derive(Default)]
pub struct Log {
    /// Call type names, in order.
    pub calls: Vec<String>,
    /// Broken rules.
    pub violations: Vec<String>,
    /// Every SUBSCRIBE call.
    pub subscribes: Vec<SCall>,
    /// Executor binaries fetched (GETs).
    pub fetches: usize,
    /// Executor processes started.
    pub executors_started: usize,
    /// Tasks launched.
    pub tasks_launched: usize,
}

struct Inner {
    framework: Option<Framework>,
    agents: Vec<Agent>,
    offers: HashMap<String, Offered>,
    tasks: HashMap<String, Task>,
    next: u64,
    log: Log,
}

impl Inner {
    fn violation(&mut self, v: String) {
        eprintln!("fake mesos: VIOLATION: {v}");
        self.log.violations.push(v);
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }

    fn send(&mut self, e: SEvent) -> bool {
        self.framework
            .as_ref()
            .and_then(|f| f.tx.as_ref())
            .is_some_and(|tx| tx.send(e).is_ok())
    }

    fn connected(&self) -> bool {
        self.framework.as_ref().is_some_and(|f| f.tx.is_some())
    }

    fn framework_id(&self) -> String {
        self.framework
            .as_ref()
            .map(|f| f.id.clone())
            .unwrap_or_default()
    }
}

fn sevent(t: sevent::Type) -> SEvent {
    SEvent {
        r#type: Some(t as i32),
        ..Default::default()
    }
}

fn eevent(t: eevent::Type) -> EEvent {
    EEvent {
        r#type: Some(t as i32),
        ..Default::default()
    }
}

fn update_event(status: TaskStatus) -> SEvent {
    SEvent {
        update: Some(sevent::Update { status }),
        ..sevent(sevent::Type::Update)
    }
}

fn uuid_v4() -> Vec<u8> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("randomness");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.to_vec()
}

fn valid_uuid(u: &[u8]) -> bool {
    u.len() == 16 && u[6] >> 4 == 4
}

fn scalar(rs: &[Resource], name: &str) -> f64 {
    rs.iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .sum()
}

fn res(name: &str, v: f64) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        role: Some("*".into()),
        allocation_info: Some(resource::AllocationInfo {
            role: Some("*".into()),
        }),
        ..Default::default()
    }
}

/// A status the agent or master generates for a task.
fn status(
    task: &str,
    agent: &str,
    state: TaskState,
    source: task_status::Source,
    reason: i32,
    message: &str,
    uuid: bool,
) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: task.into() },
        state: state as i32,
        message: Some(message.into()),
        source: Some(source as i32),
        reason: Some(reason),
        agent_id: Some(AgentId {
            value: agent.into(),
        }),
        uuid: uuid.then(uuid_v4),
        ..Default::default()
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r
}

fn header(req: &Request<Incoming>, k: &str) -> Option<String> {
    req.headers()
        .get(k)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn is_terminal(state: i32) -> bool {
    use TaskState as S;
    matches!(
        S::try_from(state),
        Ok(S::TaskFinished
            | S::TaskFailed
            | S::TaskKilled
            | S::TaskError
            | S::TaskLost
            | S::TaskDropped
            | S::TaskGone
            | S::TaskGoneByOperator)
    )
}

/// The double: a master at [`FakeMesos::master`] and its agents.
pub struct FakeMesos {
    /// `host:port` of the master.
    pub master: String,
    inner: Arc<Mutex<Inner>>,
    rt: tokio::runtime::Runtime,
    root: PathBuf,
}

impl FakeMesos {
    /// Start a master and one agent per spec.
    pub fn start(agents: &[AgentSpec], root: PathBuf) -> FakeMesos {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let inner = Arc::new(Mutex::new(Inner {
            framework: None,
            agents: Vec::new(),
            offers: HashMap::new(),
            tasks: HashMap::new(),
            next: 0,
            log: Log::default(),
        }));
        let master = rt.block_on(async {
            let m = serve(inner.clone(), None).await;
            for (i, spec) in agents.iter().enumerate() {
                let addr = serve(inner.clone(), Some(i)).await;
                let sandboxes = root.join(format!("agent-{i}"));
                std::fs::create_dir_all(&sandboxes).expect("agent dir");
                inner.lock().expect("lock").agents.push(Agent {
                    id: format!("agent-{i}"),
                    addr,
                    spec: *spec,
                    used_cpus: 0.0,
                    used_mem: 0.0,
                    offered: false,
                    filter: None,
                    alive: true,
                    executors: HashMap::new(),
                    sandboxes,
                });
            }
            m
        });
        let ticker = inner.clone();
        rt.spawn(async move {
            let mut beat = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut g = ticker.lock().expect("lock");
                if beat.elapsed() > Duration::from_secs(1) {
                    beat = Instant::now();
                    g.send(sevent(sevent::Type::Heartbeat));
                }
                allocate(&mut g);
                pump(&mut g);
            }
        });
        FakeMesos {
            master,
            inner,
            rt,
            root,
        }
    }

    /// Read what was seen.
    pub fn log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.inner.lock().expect("lock").log)
    }

    /// Executor processes still running.
    pub fn live_executors(&self) -> usize {
        let g = self.inner.lock().expect("lock");
        g.agents
            .iter()
            .flat_map(|a| a.executors.values())
            .filter(|e| {
                e.child
                    .as_ref()
                    .is_some_and(|c| c.lock().expect("lock").try_wait().ok().flatten().is_none())
            })
            .count()
    }

    /// The agent running an executor whose sandbox contains `marker` (tests learn where a
    /// task ran from a file it wrote there).
    pub fn agent_of_sandbox_file(&self, name: &str) -> Option<usize> {
        let g = self.inner.lock().expect("lock");
        g.agents.iter().position(|a| {
            std::fs::read_dir(&a.sandboxes)
                .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join(name).exists())))
        })
    }

    /// The agent disappears: its executors are killed, its tasks become TASK_LOST
    /// (REASON_AGENT_REMOVED) and the framework gets FAILURE for the agent.
    pub fn kill_agent(&self, idx: usize) {
        let mut g = self.inner.lock().expect("lock");
        let agent_id = g.agents[idx].id.clone();
        g.agents[idx].alive = false;
        for e in g.agents[idx].executors.values() {
            if let Some(c) = &e.child {
                let _ = c.lock().expect("lock").kill();
            }
        }
        let rescinded: Vec<String> = g
            .offers
            .iter()
            .filter(|(_, o)| o.agent == idx)
            .map(|(id, _)| id.clone())
            .collect();
        for id in rescinded {
            g.offers.remove(&id);
            g.send(SEvent {
                rescind: Some(sevent::Rescind {
                    offer_id: OfferId { value: id },
                }),
                ..sevent(sevent::Type::Rescind)
            });
        }
        let lost: Vec<String> = g
            .tasks
            .iter()
            .filter(|(_, t)| t.agent == idx && !t.terminal)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(t) = g.tasks.get_mut(&id) {
                t.terminal = true;
                t.state = TaskState::TaskLost as i32;
                t.queue.clear();
                t.unacked = None;
            }
            let st = status(
                &id,
                &agent_id,
                TaskState::TaskLost,
                task_status::Source::Master,
                11,
                "Agent removed",
                false,
            );
            g.send(update_event(st));
        }
        g.send(SEvent {
            failure: Some(sevent::Failure {
                agent_id: Some(AgentId { value: agent_id }),
                executor_id: None,
                status: None,
            }),
            ..sevent(sevent::Type::Failure)
        });
    }

    /// The subscription connection breaks (as in a network blip): the stream ends, offers
    /// are void, updates wait for the framework to come back.
    pub fn drop_subscription(&self) {
        let mut g = self.inner.lock().expect("lock");
        if let Some(f) = g.framework.as_mut() {
            f.tx = None;
            f.stream_id = None;
        }
        g.offers.clear();
        for a in &mut g.agents {
            a.offered = false;
        }
    }

    /// Send the framework an ERROR event (e.g. "Framework failed over") and close its
    /// stream, as the master does when another scheduler takes the framework over.
    pub fn send_error(&self, message: &str) {
        let mut g = self.inner.lock().expect("lock");
        g.send(SEvent {
            error: Some(sevent::Error {
                message: message.into(),
            }),
            ..sevent(sevent::Type::Error)
        });
        if let Some(f) = g.framework.as_mut() {
            f.tx = None;
            f.stream_id = None;
        }
    }

    /// Whether the framework was torn down.
    pub fn torn_down(&self) -> bool {
        self.inner
            .lock()
            .expect("lock")
            .framework
            .as_ref()
            .is_some_and(|f| f.removed)
    }
}

impl Drop for FakeMesos {
    fn drop(&mut self) {
        if let Ok(g) = self.inner.lock() {
            for e in g.agents.iter().flat_map(|a| a.executors.values()) {
                if let Some(c) = &e.child {
                    let _ = c.lock().map(|mut c| c.kill());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = &self.rt;
    }
}

async fn serve(inner: Arc<Mutex<Inner>>, agent: Option<usize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let inner = inner.clone();
                    async move {
                        Ok::<_, Infallible>(match agent {
                            None => master(req, inner).await,
                            Some(i) => agent_api(req, inner, i).await,
                        })
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

/// Content type and body checks common to both APIs; the decoded call or the answer.
async fn decode_call<C: prost::Message + Default>(
    req: Request<Incoming>,
    inner: &Mutex<Inner>,
    api: &str,
) -> Result<(C, Option<String>, Option<String>), Response<Body>> {
    if req.method() != Method::POST {
        inner
            .lock()
            .expect("lock")
            .violation(format!("{api}: {} instead of POST", req.method()));
        return Err(reply(StatusCode::METHOD_NOT_ALLOWED, ""));
    }
    let ct = header(&req, "content-type");
    if ct.as_deref() != Some(PROTOBUF) {
        inner
            .lock()
            .expect("lock")
            .violation(format!("{api}: Content-Type {ct:?}"));
        return Err(reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        ));
    }
    let accept = header(&req, "accept");
    let stream = header(&req, "mesos-stream-id");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match C::decode(body) {
        Ok(c) => Ok((c, accept, stream)),
        Err(_) => {
            inner
                .lock()
                .expect("lock")
                .violation(format!("{api}: undecodable call"));
            Err(reply(
                StatusCode::BAD_REQUEST,
                "Failed to parse body into Call protobuf",
            ))
        }
    }
}

fn stream_response(rx: mpsc::UnboundedReceiver<SEvent>, stream_id: &str) -> Response<Body> {
    let mut r = Response::new(EventBody(rx).boxed());
    r.headers_mut()
        .insert("content-type", PROTOBUF.parse().expect("header"));
    r.headers_mut()
        .insert("mesos-stream-id", stream_id.parse().expect("header"));
    r
}

async fn master(req: Request<Incoming>, inner: Arc<Mutex<Inner>>) -> Response<Body> {
    let (call, accept, stream_id) = match decode_call::<SCall>(req, &inner, "scheduler").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut g = inner.lock().expect("lock");
    let ty = match call.r#type {
        None => {
            g.violation("scheduler call without type".into());
            return reply(StatusCode::BAD_REQUEST, "Expecting 'type' to be present");
        }
        Some(t) => match scall::Type::try_from(t) {
            Ok(scall::Type::Unknown) | Err(_) => {
                g.violation(format!(
                    "scheduler call of type {t} (UNKNOWN aborts a real master)"
                ));
                return reply(StatusCode::BAD_REQUEST, "unknown call");
            }
            Ok(t) => t,
        },
    };
    g.log.calls.push(ty.as_str_name().to_string());
    if ty == scall::Type::Subscribe {
        return subscribe(&mut g, call, accept, stream_id);
    }
    let Some(f) = g.framework.as_ref() else {
        g.violation(format!("{} before SUBSCRIBE", ty.as_str_name()));
        return reply(StatusCode::BAD_REQUEST, "Framework cannot be found");
    };
    if f.tx.is_none() || f.removed {
        // Not a violation: calls racing a dropped subscription get 403, as in Mesos.
        return reply(StatusCode::FORBIDDEN, "Framework is not subscribed");
    }
    if stream_id.as_deref() != f.stream_id.as_deref() {
        let v = format!(
            "{}: Mesos-Stream-Id {stream_id:?}, expected {:?}",
            ty.as_str_name(),
            f.stream_id
        );
        g.violation(v);
        return reply(StatusCode::BAD_REQUEST, "stream id mismatch");
    }
    if call.framework_id.as_ref().map(|i| i.value.as_str()) != Some(f.id.as_str()) {
        let v = format!("{}: framework_id {:?}", ty.as_str_name(), call.framework_id);
        g.violation(v);
        return reply(StatusCode::BAD_REQUEST, "framework id");
    }
    match ty {
        scall::Type::Teardown => {
            let f = g.framework.as_mut().expect("framework");
            f.removed = true;
            f.tx = None;
            g.offers.clear();
            for a in &mut g.agents {
                a.offered = false;
                for e in a.executors.values() {
                    if let Some(tx) = &e.tx {
                        let _ = tx.send(eevent(eevent::Type::Shutdown));
                    }
                }
            }
        }
        scall::Type::Accept => {
            let Some(a) = call.accept else {
                g.violation("ACCEPT without accept".into());
                return reply(StatusCode::BAD_REQUEST, "Expecting 'accept' to be present");
            };
            accept_offers(&mut g, a, &inner);
        }
        scall::Type::Decline => {
            let Some(d) = call.decline else {
                g.violation("DECLINE without decline".into());
                return reply(StatusCode::BAD_REQUEST, "Expecting 'decline' to be present");
            };
            let refuse = d.filters.and_then(|f| f.refuse_seconds).unwrap_or(5.0);
            for id in d.offer_ids {
                match g.offers.remove(&id.value) {
                    Some(o) => {
                        let a = &mut g.agents[o.agent];
                        a.offered = false;
                        a.filter = (refuse > 0.0).then(|| {
                            (
                                Instant::now() + Duration::from_secs_f64(refuse.min(1e6)),
                                o.cpus,
                                o.mem,
                            )
                        });
                    }
                    None => g.violation(format!("DECLINE of unknown or used offer {}", id.value)),
                }
            }
        }
        scall::Type::Revive => {
            if let Some(f) = g.framework.as_mut() {
                f.suppressed = false;
            }
            for a in &mut g.agents {
                a.filter = None;
            }
        }
        scall::Type::Suppress => {
            if let Some(f) = g.framework.as_mut() {
                f.suppressed = true;
            }
        }
        scall::Type::Acknowledge => {
            let Some(a) = call.acknowledge else {
                g.violation("ACKNOWLEDGE without acknowledge".into());
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'acknowledge' to be present",
                );
            };
            if !valid_uuid(&a.uuid) {
                g.violation(format!("ACKNOWLEDGE with an invalid uuid {:?}", a.uuid));
                return reply(StatusCode::BAD_REQUEST, "Not a valid UUID");
            }
            let agent_ids: Vec<String> = g.agents.iter().map(|x| x.id.clone()).collect();
            match g.tasks.get_mut(&a.task_id.value) {
                Some(t) if t.sent_uuids.contains(&a.uuid) => {
                    if agent_ids[t.agent] != a.agent_id.value {
                        let v = format!(
                            "ACKNOWLEDGE of task {} names agent {}",
                            a.task_id.value, a.agent_id.value
                        );
                        g.violation(v);
                    } else if t
                        .unacked
                        .as_ref()
                        .is_some_and(|u| u.0.uuid.as_deref() == Some(&a.uuid[..]))
                    {
                        t.unacked = None;
                    }
                }
                _ => {
                    let v = format!(
                        "ACKNOWLEDGE of an update never sent with that uuid (task {})",
                        a.task_id.value
                    );
                    g.violation(v);
                }
            }
            pump(&mut g);
        }
        scall::Type::Message => {
            let Some(m) = call.message else {
                g.violation("MESSAGE without message".into());
                return reply(StatusCode::BAD_REQUEST, "Expecting 'message' to be present");
            };
            let target = g
                .agents
                .iter()
                .find(|a| a.id == m.agent_id.value)
                .and_then(|a| a.executors.get(&m.executor_id.value))
                .and_then(|e| e.tx.clone());
            if let Some(tx) = target {
                let _ = tx.send(EEvent {
                    message: Some(eevent::Message { data: m.data }),
                    ..eevent(eevent::Type::Message)
                });
            }
        }
        scall::Type::Reconcile => {
            let Some(r) = call.reconcile else {
                g.violation("RECONCILE without reconcile".into());
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'reconcile' to be present",
                );
            };
            let ids: Vec<String> = if r.tasks.is_empty() {
                g.tasks.keys().cloned().collect()
            } else {
                r.tasks.into_iter().map(|t| t.task_id.value).collect()
            };
            for id in ids {
                let st = match g.tasks.get(&id) {
                    Some(t) => {
                        let agent = g.agents[t.agent].id.clone();
                        let state = TaskState::try_from(t.state).unwrap_or(TaskState::TaskStaging);
                        status(
                            &id,
                            &agent,
                            state,
                            task_status::Source::Master,
                            9,
                            "Reconciliation: Latest task state",
                            false,
                        )
                    }
                    None => status(
                        &id,
                        "",
                        TaskState::TaskLost,
                        task_status::Source::Master,
                        9,
                        "Reconciliation: Task is unknown",
                        false,
                    ),
                };
                g.send(update_event(st));
            }
        }
        _ => {}
    }
    reply(StatusCode::ACCEPTED, "")
}

fn subscribe(
    g: &mut Inner,
    call: SCall,
    accept: Option<String>,
    stream_id: Option<String>,
) -> Response<Body> {
    g.log.subscribes.push(call.clone());
    if stream_id.is_some() {
        g.violation("SUBSCRIBE carries Mesos-Stream-Id".into());
        return reply(
            StatusCode::BAD_REQUEST,
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        );
    }
    if accept.as_deref() != Some(PROTOBUF) {
        g.violation(format!("SUBSCRIBE Accept {accept:?}"));
    }
    let Some(sub) = call.subscribe else {
        g.violation("SUBSCRIBE without subscribe".into());
        return reply(
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        );
    };
    let fi = sub.framework_info;
    if call.framework_id.as_ref().map(|i| &i.value) != fi.id.as_ref().map(|i| &i.value) {
        g.violation("SUBSCRIBE: framework_id differs from framework_info.id".into());
        return reply(
            StatusCode::BAD_REQUEST,
            "'framework_id' differs from 'subscribe.framework_info.id'",
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let error = |tx: &mpsc::UnboundedSender<SEvent>, msg: &str| {
        let _ = tx.send(SEvent {
            error: Some(sevent::Error {
                message: msg.into(),
            }),
            ..sevent(sevent::Type::Error)
        });
    };
    let multi_role = fi
        .capabilities
        .iter()
        .any(|c| c.r#type == Some(v1::framework_info::capability::Type::MultiRole as i32));
    let mut refusal = None;
    if fi.user.is_empty() {
        refusal = Some("FrameworkInfo.user is empty");
    } else if multi_role && fi.role.is_some() {
        refusal =
            Some("'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable");
    } else if !multi_role && !fi.roles.is_empty() {
        refusal = Some(
            "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable",
        );
    } else if fi.failover_timeout.unwrap_or(0.0) <= 0.0 {
        // Not a protocol error, but a batch framework with failover_timeout 0 loses all
        // its executors on the first network blip (pitfall 7).
        g.violation("failover_timeout is 0".into());
    }
    if let Some(r) = refusal {
        g.violation(format!("SUBSCRIBE refused: {r}"));
        error(&tx, r);
        drop(tx);
        return stream_response(rx, "refused");
    }
    let stream = g.next_id("stream");
    match (&fi.id, g.framework.as_mut()) {
        (Some(id), Some(f)) if f.id == id.value && f.removed => {
            error(&tx, "Framework has been removed");
            drop(tx);
            return stream_response(rx, &stream);
        }
        (Some(id), Some(f)) if f.id == id.value => {
            if let Some(old) = f.tx.take() {
                error(&old, "Framework failed over");
            }
        }
        (Some(id), _) => {
            g.framework = Some(Framework {
                id: id.value.clone(),
                stream_id: None,
                tx: None,
                suppressed: false,
                removed: false,
                roles: fi.roles.clone(),
            });
        }
        (None, _) => {
            let id = g.next_id("framework");
            g.framework = Some(Framework {
                id,
                stream_id: None,
                tx: None,
                suppressed: false,
                removed: false,
                roles: fi.roles.clone(),
            });
        }
    }
    let f = g.framework.as_mut().expect("framework");
    if sub.suppressed_roles.iter().any(|r| !f.roles.contains(r)) {
        let v = format!(
            "suppressed_roles {:?} not among the roles {:?}",
            sub.suppressed_roles, f.roles
        );
        g.violation(v);
    }
    let f = g.framework.as_mut().expect("framework");
    f.suppressed = !sub.suppressed_roles.is_empty();
    f.stream_id = Some(stream.clone());
    let _ = tx.send(SEvent {
        subscribed: Some(sevent::Subscribed {
            framework_id: FrameworkId {
                value: f.id.clone(),
            },
            heartbeat_interval_seconds: Some(1.0),
            master_info: None,
        }),
        ..sevent(sevent::Type::Subscribed)
    });
    let _ = tx.send(sevent(sevent::Type::Heartbeat));
    f.tx = Some(tx);
    // Offers made to an earlier subscription are void; unacknowledged updates are
    // re-sent (as the agents retry them).
    g.offers.clear();
    let now = Instant::now();
    for a in &mut g.agents {
        a.offered = false;
    }
    for t in g.tasks.values_mut() {
        if let Some(u) = t.unacked.as_mut() {
            u.1 = now;
            u.2 = now - UPDATE_RETRY;
        }
    }
    stream_response(rx, &stream)
}

fn allocate(g: &mut Inner) {
    let Some(f) = g.framework.as_ref() else {
        return;
    };
    if f.tx.is_none() || f.suppressed || f.removed {
        return;
    }
    let fid = f.id.clone();
    let now = Instant::now();
    let mut offers = Vec::new();
    for i in 0..g.agents.len() {
        let a = &g.agents[i];
        let (cpus, mem) = (a.spec.cpus - a.used_cpus, a.spec.mem - a.used_mem);
        let filtered = a
            .filter
            .is_some_and(|(t, c, m)| t > now && cpus <= c + EPS && mem <= m + EPS);
        if !a.alive || a.offered || filtered {
            continue;
        }
        if cpus < 0.01 || mem < 32.0 {
            continue;
        }
        let executor_ids = a
            .executors
            .keys()
            .map(|e| ExecutorId { value: e.clone() })
            .collect();
        let (agent_id, addr) = (a.id.clone(), a.addr.clone());
        let id = g.next_id("offer");
        g.agents[i].offered = true;
        g.offers.insert(
            id.clone(),
            Offered {
                agent: i,
                cpus,
                mem,
            },
        );
        offers.push(Offer {
            id: OfferId { value: id },
            framework_id: FrameworkId { value: fid.clone() },
            agent_id: AgentId { value: agent_id },
            hostname: addr.split(':').next().unwrap_or("127.0.0.1").to_string(),
            resources: vec![
                res("cpus", (cpus * 1000.0).round() / 1000.0),
                res("mem", mem.floor()),
            ],
            executor_ids,
            allocation_info: Some(resource::AllocationInfo {
                role: Some("*".into()),
            }),
            ..Default::default()
        });
    }
    if !offers.is_empty() {
        g.send(SEvent {
            offers: Some(sevent::Offers { offers }),
            ..sevent(sevent::Type::Offers)
        });
    }
}

/// Forward queued updates (one unacknowledged update per task at a time), re-send
/// unacknowledged ones, and catch frameworks that do not acknowledge.
fn pump(g: &mut Inner) {
    if !g.connected() {
        return;
    }
    let now = Instant::now();
    let mut out = Vec::new();
    let mut late = Vec::new();
    for (id, t) in g.tasks.iter_mut() {
        if t.unacked.is_none()
            && let Some(st) = t.queue.pop_front()
        {
            if let Some(u) = &st.uuid {
                t.sent_uuids.insert(u.clone());
            }
            t.unacked = Some((st.clone(), now, now));
            out.push(st);
        } else if let Some(u) = t.unacked.as_mut() {
            if now.duration_since(u.1) > ACK_DEADLINE && !t.late {
                t.late = true;
                late.push(format!(
                    "update {} of task {id} not acknowledged within {ACK_DEADLINE:?}",
                    TaskState::try_from(u.0.state).map_or("?", |s| s.as_str_name())
                ));
            }
            if now.duration_since(u.2) > UPDATE_RETRY {
                u.2 = now;
                out.push(u.0.clone());
            }
        }
    }
    for v in late {
        g.violation(v);
    }
    for st in out {
        g.send(update_event(st));
    }
}

fn accept_offers(g: &mut Inner, a: scall::Accept, inner: &Arc<Mutex<Inner>>) {
    let mut agent = None;
    let (mut cpus, mut mem) = (0.0, 0.0);
    let mut valid = !a.offer_ids.is_empty();
    for id in &a.offer_ids {
        match g.offers.remove(&id.value) {
            Some(o) => {
                if agent.is_some_and(|x| x != o.agent) {
                    g.violation("ACCEPT of offers from different agents".into());
                    valid = false;
                }
                agent = Some(o.agent);
                g.agents[o.agent].offered = false;
                cpus += o.cpus;
                mem += o.mem;
            }
            None => {
                g.violation(format!("ACCEPT of unknown or used offer {}", id.value));
                valid = false;
            }
        }
    }
    let refuse = a.filters.and_then(|f| f.refuse_seconds).unwrap_or(5.0);
    for op in a.operations {
        if op.id.is_some() {
            g.violation("LAUNCH operation with an id".into());
        }
        if op.r#type != Some(v1::offer::operation::Type::Launch as i32) {
            g.violation(format!("operation type {:?}", op.r#type));
            continue;
        }
        let tasks = op.launch.map(|l| l.task_infos).unwrap_or_default();
        let Some(i) = agent.filter(|_| valid) else {
            for t in tasks {
                let st = status(
                    &t.task_id.value,
                    &t.agent_id.value,
                    TaskState::TaskLost,
                    task_status::Source::Master,
                    6,
                    "Task launched with invalid offers",
                    false,
                );
                g.send(update_event(st));
            }
            continue;
        };
        let agent_id = g.agents[i].id.clone();
        let mut errors: Vec<String> = Vec::new();
        let mut need = (0.0, 0.0);
        let mut new_execs: HashMap<String, ExecutorInfo> = HashMap::new();
        for t in &tasks {
            let mut bad = |m: String| errors.push(format!("task {}: {m}", t.task_id.value));
            if g.tasks.contains_key(&t.task_id.value) {
                bad("task id reused".into());
            }
            if t.agent_id.value != agent_id {
                bad(format!(
                    "agent_id {} is not the offer's agent {agent_id}",
                    t.agent_id.value
                ));
            }
            if t.command.is_some() || t.executor.is_none() {
                bad("a custom executor task needs `executor` and no `command`".into());
            }
            if t.resources.is_empty() {
                bad("no resources".into());
            }
            let Some(info) = &t.executor else { continue };
            if info.command.is_none() {
                bad("ExecutorInfo without command".into());
            }
            if info
                .r#type
                .is_some_and(|ty| ty != v1::executor_info::Type::Custom as i32)
            {
                bad("ExecutorInfo type is not CUSTOM".into());
            }
            for r in t.resources.iter().chain(&info.resources) {
                let role = r.allocation_info.as_ref().and_then(|a| a.role.as_deref());
                if role != Some("*") {
                    bad(format!(
                        "resource {} in allocation role {role:?}, offer role \"*\"",
                        r.name
                    ));
                }
            }
            need.0 += scalar(&t.resources, "cpus");
            need.1 += scalar(&t.resources, "mem");
            let id = info.executor_id.value.clone();
            let existing = g.agents[i]
                .executors
                .get(&id)
                .map(|e| e.info.clone())
                .or_else(|| new_execs.get(&id).cloned());
            match existing {
                Some(e) if e.encode_to_vec() != info.encode_to_vec() => {
                    bad(format!(
                        "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID {id}"
                    ));
                }
                Some(_) => {}
                None => {
                    need.0 += scalar(&info.resources, "cpus");
                    need.1 += scalar(&info.resources, "mem");
                    new_execs.insert(id, info.clone());
                }
            }
        }
        if need.0 > cpus + EPS || need.1 > mem + EPS {
            errors.push(format!("tasks and executors need cpus {:.3} mem {:.0}, more than offered cpus {cpus:.3} mem {mem:.0}", need.0, need.1));
        }
        if !errors.is_empty() {
            for e in &errors {
                g.violation(e.clone());
            }
            for t in &tasks {
                let st = status(
                    &t.task_id.value,
                    &agent_id,
                    TaskState::TaskError,
                    task_status::Source::Master,
                    14,
                    &errors.join("; "),
                    false,
                );
                g.send(update_event(st));
            }
            continue;
        }
        g.agents[i].used_cpus += need.0;
        g.agents[i].used_mem += need.1;
        g.agents[i].filter = (refuse > 0.0).then(|| {
            (
                Instant::now() + Duration::from_secs_f64(refuse.min(1e6)),
                cpus - need.0,
                mem - need.1,
            )
        });
        for (id, info) in new_execs {
            let (c, m) = (
                scalar(&info.resources, "cpus"),
                scalar(&info.resources, "mem"),
            );
            g.agents[i].executors.insert(
                id.clone(),
                Exec {
                    info: info.clone(),
                    cpus: c,
                    mem: m,
                    tx: None,
                    queued: Vec::new(),
                    child: None,
                },
            );
            let fid = g.framework_id();
            let (addr, sandbox) = (g.agents[i].addr.clone(), g.agents[i].sandboxes.join(&id));
            tokio::spawn(start_executor(
                inner.clone(),
                i,
                id,
                info,
                fid,
                addr,
                agent_id.clone(),
                sandbox,
            ));
        }
        for t in tasks {
            g.log.tasks_launched += 1;
            let exec = t
                .executor
                .as_ref()
                .map(|e| e.executor_id.value.clone())
                .unwrap_or_default();
            g.tasks.insert(
                t.task_id.value.clone(),
                Task {
                    agent: i,
                    executor: exec.clone(),
                    cpus: scalar(&t.resources, "cpus"),
                    mem: scalar(&t.resources, "mem"),
                    state: TaskState::TaskStaging as i32,
                    terminal: false,
                    queue: VecDeque::new(),
                    unacked: None,
                    sent_uuids: HashSet::new(),
                    late: false,
                },
            );
            if let Some(e) = g.agents[i].executors.get_mut(&exec) {
                match &e.tx {
                    Some(tx) => {
                        let _ = tx.send(EEvent {
                            launch: Some(eevent::Launch { task: t }),
                            ..eevent(eevent::Type::Launch)
                        });
                    }
                    None => e.queued.push(t),
                }
            }
        }
    }
}

/// The executor API of agent `idx`.
async fn agent_api(req: Request<Incoming>, inner: Arc<Mutex<Inner>>, idx: usize) -> Response<Body> {
    let (call, accept, _) = match decode_call::<ECall>(req, &inner, "executor").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut g = inner.lock().expect("lock");
    if !g.agents[idx].alive {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "agent gone");
    }
    if call.framework_id.value != g.framework_id() {
        return reply(StatusCode::BAD_REQUEST, "Framework cannot be found");
    }
    let exec_id = call.executor_id.value.clone();
    if !g.agents[idx].executors.contains_key(&exec_id) {
        return reply(StatusCode::BAD_REQUEST, "Executor cannot be found");
    }
    let removed = g.framework.as_ref().is_some_and(|f| f.removed);
    match ecall::Type::try_from(call.r#type.unwrap_or(0)) {
        Ok(ecall::Type::Subscribe) => {
            if accept.as_deref() != Some(PROTOBUF) {
                g.violation(format!("executor SUBSCRIBE Accept {accept:?}"));
            }
            if call.subscribe.is_none() {
                g.violation("executor SUBSCRIBE without subscribe".into());
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'subscribe' to be present",
                );
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(eevent(eevent::Type::Subscribed));
            let e = g.agents[idx].executors.get_mut(&exec_id).expect("executor");
            for t in e.queued.drain(..) {
                let _ = tx.send(EEvent {
                    launch: Some(eevent::Launch { task: t }),
                    ..eevent(eevent::Type::Launch)
                });
            }
            if removed {
                let _ = tx.send(eevent(eevent::Type::Shutdown));
            }
            e.tx = Some(tx);
            let mut r = Response::new(EventBody(rx).boxed());
            r.headers_mut()
                .insert("content-type", PROTOBUF.parse().expect("header"));
            r
        }
        Ok(ecall::Type::Update) => {
            let e = g.agents[idx].executors.get(&exec_id).expect("executor");
            if e.tx.is_none() {
                g.violation(format!("UPDATE from {exec_id} before SUBSCRIBE"));
                return reply(StatusCode::FORBIDDEN, "Executor is not subscribed");
            }
            let Some(u) = call.update else {
                g.violation("UPDATE without update".into());
                return reply(StatusCode::BAD_REQUEST, "Expecting 'update' to be present");
            };
            let mut st = u.status;
            let mut bad = Vec::new();
            if !st.uuid.as_deref().is_some_and(valid_uuid) {
                bad.push(format!("update uuid {:?}", st.uuid));
            }
            if st.source != Some(task_status::Source::Executor as i32) {
                bad.push(format!("update source {:?}", st.source));
            }
            if st.agent_id.is_some() {
                bad.push("update sets agent_id".into());
            }
            if st.executor_id.as_ref().is_some_and(|e| e.value != exec_id) {
                bad.push("update executor_id differs from the call's".into());
            }
            if st.state == TaskState::TaskStaging as i32 {
                bad.push("executor sent TASK_STAGING".into());
            }
            if !bad.is_empty() {
                for b in bad {
                    g.violation(b);
                }
                return reply(StatusCode::BAD_REQUEST, "invalid update");
            }
            // The agent acknowledges to the executor once it has the update.
            if let Some(tx) = &g.agents[idx].executors[&exec_id].tx {
                let _ = tx.send(EEvent {
                    acknowledged: Some(eevent::Acknowledged {
                        task_id: st.task_id.clone(),
                        uuid: st.uuid.clone().unwrap_or_default(),
                    }),
                    ..eevent(eevent::Type::Acknowledged)
                });
            }
            if removed {
                return reply(StatusCode::ACCEPTED, "");
            }
            st.agent_id = Some(AgentId {
                value: g.agents[idx].id.clone(),
            });
            let Some(t) = g.tasks.get_mut(&st.task_id.value) else {
                return reply(StatusCode::ACCEPTED, "");
            };
            if t.terminal {
                return reply(StatusCode::ACCEPTED, ""); // a second terminal update is dropped
            }
            t.state = st.state;
            if is_terminal(st.state) {
                t.terminal = true;
                let (c, m) = (t.cpus, t.mem);
                g.agents[idx].used_cpus -= c;
                g.agents[idx].used_mem -= m;
            }
            let t = g.tasks.get_mut(&st.task_id.value).expect("task");
            t.queue.push_back(st);
            pump(&mut g);
            reply(StatusCode::ACCEPTED, "")
        }
        _ => reply(StatusCode::ACCEPTED, ""),
    }
}

/// GET or HEAD `url` (`http://host:port/path`): status, Content-Length, body.
async fn http_get(url: &str, head: bool) -> Result<(u16, Option<u64>, Bytes), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(if head { Method::HEAD } else { Method::GET })
        .uri(path)
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = resp.status().as_u16();
    let body = if head {
        Bytes::new()
    } else {
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
    };
    Ok((status, len, body))
}

/// Fetch the executor's URIs into its sandbox and start it; report a failed launch or a
/// later exit as Mesos does.
#[allow(clippy::too_many_arguments)]
async fn start_executor(
    inner: Arc<Mutex<Inner>>,
    idx: usize,
    id: String,
    info: ExecutorInfo,
    framework: String,
    agent_addr: String,
    agent_id: String,
    sandbox: PathBuf,
) {
    let fail = |inner: &Arc<Mutex<Inner>>, message: String, wait_status: i32| {
        let mut g = inner.lock().expect("lock");
        terminate_executor(
            &mut g,
            idx,
            &id,
            TaskState::TaskFailed,
            21,
            &message,
            Some(wait_status),
        );
    };
    let command = info.command.clone().unwrap_or_default();
    if let Err(e) = std::fs::create_dir_all(&sandbox) {
        return fail(
            &inner,
            format!("Failed to create executor directory: {e}"),
            -1,
        );
    }
    for uri in &command.uris {
        let name = uri
            .output_file
            .clone()
            .unwrap_or_else(|| uri.value.rsplit('/').next().unwrap_or("file").to_string());
        if uri.cache == Some(true) {
            match http_get(&uri.value, true).await {
                Ok((200, Some(n), _)) if n > 0 => {}
                other => inner.lock().expect("lock").violation(format!(
                    "HEAD {} for the fetcher cache: {other:?}",
                    uri.value
                )),
            }
        }
        let fetched = if uri.value.starts_with("http://") {
            inner.lock().expect("lock").log.fetches += 1;
            match http_get(&uri.value, false).await {
                Ok((200, _, body)) => {
                    std::fs::write(sandbox.join(&name), &body).map_err(|e| e.to_string())
                }
                Ok((code, _, _)) => Err(format!(
                    "Error downloading resource, received HTTP return code {code}"
                )),
                Err(e) => Err(e),
            }
        } else {
            std::fs::copy(&uri.value, sandbox.join(&name))
                .map(drop)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = fetched {
            eprintln!("fake mesos: fetching {} failed: {e}", uri.value);
            return fail(&inner, "Failed to launch container: Failed to fetch all URIs for container: exited with status 1".into(), 256);
        }
        if uri.executable == Some(true) {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(
                sandbox.join(&name),
                std::fs::Permissions::from_mode(0o755),
            );
        }
    }
    let value = command.value.clone().unwrap_or_default();
    let mut cmd = if command.shell == Some(false) {
        let program = if value.starts_with('/') {
            PathBuf::from(&value)
        } else {
            sandbox.join(&value)
        };
        let mut c = Command::new(program);
        if let Some((argv0, rest)) = command.arguments.split_first() {
            use std::os::unix::process::CommandExt as _;
            c.arg0(argv0).args(rest);
        }
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(&value);
        c
    };
    let checkpoint = inner
        .lock()
        .expect("lock")
        .log
        .subscribes
        .last()
        .and_then(|s| s.subscribe.as_ref())
        .and_then(|s| s.framework_info.checkpoint)
        .unwrap_or(false);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("MESOS_AGENT_ENDPOINT", &agent_addr)
        .env("MESOS_FRAMEWORK_ID", &framework)
        .env("MESOS_EXECUTOR_ID", &id)
        .env("MESOS_SLAVE_ID", &agent_id)
        .env("MESOS_SANDBOX", &sandbox)
        .env("MESOS_DIRECTORY", &sandbox)
        .env("MESOS_CHECKPOINT", if checkpoint { "1" } else { "0" })
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs")
        .current_dir(&sandbox)
        .stdin(Stdio::null());
    for v in command.environment.iter().flat_map(|e| &e.variables) {
        cmd.env(&v.name, v.value.clone().unwrap_or_default());
    }
    let (Ok(out), Ok(err)) = (
        std::fs::File::create(sandbox.join("stdout")),
        std::fs::File::create(sandbox.join("stderr")),
    ) else {
        return fail(&inner, "sandbox files".into(), -1);
    };
    let child = match cmd.stdout(out).stderr(err).spawn() {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => return fail(&inner, format!("Failed to execute: {e}"), 256 * 1000),
    };
    {
        let mut g = inner.lock().expect("lock");
        g.log.executors_started += 1;
        match g.agents[idx].executors.get_mut(&id) {
            Some(e) => e.child = Some(child.clone()),
            None => {
                let _ = child.lock().expect("lock").kill();
                return;
            }
        }
    }
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let exited = child.lock().expect("lock").try_wait().ok().flatten();
        if let Some(status) = exited {
            use std::os::unix::process::ExitStatusExt as _;
            let mut g = inner.lock().expect("lock");
            terminate_executor(
                &mut g,
                idx,
                &id,
                TaskState::TaskFailed,
                1,
                "Executor terminated",
                Some(status.into_raw()),
            );
            return;
        }
    }
}

/// An executor is gone: its unfinished tasks end (with an acknowledged-by-the-framework
/// update, as the agent sends them), its resources are free, and the framework hears
/// FAILURE (unless the agent itself is gone or the framework was torn down).
fn terminate_executor(
    g: &mut Inner,
    idx: usize,
    id: &str,
    state: TaskState,
    reason: i32,
    message: &str,
    wait_status: Option<i32>,
) {
    let Some(e) = g.agents[idx].executors.remove(id) else {
        return;
    };
    g.agents[idx].used_cpus -= e.cpus;
    g.agents[idx].used_mem -= e.mem;
    let removed = g.framework.as_ref().is_none_or(|f| f.removed);
    if !g.agents[idx].alive || removed {
        return;
    }
    let agent_id = g.agents[idx].id.clone();
    let tasks: Vec<String> = g
        .tasks
        .iter()
        .filter(|(_, t)| t.agent == idx && t.executor == id && !t.terminal)
        .map(|(k, _)| k.clone())
        .collect();
    for t in tasks {
        let st = status(
            &t,
            &agent_id,
            state,
            task_status::Source::Agent,
            reason,
            message,
            true,
        );
        if let Some(task) = g.tasks.get_mut(&t) {
            task.terminal = true;
            task.state = state as i32;
            task.queue.push_back(st);
            g.agents[idx].used_cpus -= task.cpus;
            g.agents[idx].used_mem -= task.mem;
        }
    }
    g.send(SEvent {
        failure: Some(sevent::Failure {
            agent_id: Some(AgentId { value: agent_id }),
            executor_id: Some(ExecutorId {
                value: id.to_string(),
            }),
            status: wait_status,
        }),
        ..sevent(sevent::Type::Failure)
    });
    pump(g);
}
