//! A Mesos master with agents, on loopback (test support, never the product).
//!
//! Speaks the v1 scheduler API (`/api/v1/scheduler`) and, per agent, the executor API
//! (`/api/v1/executor`) like Mesos 1.12 does: a RecordIO event stream per subscription,
//! offers of each agent's free cpus/mem made in batches every allocation interval (1 s by
//! default, as `--allocation_interval`; at once after SUBSCRIBE and REVIVE), not while
//! suppressed or filtered; ACCEPT/LAUNCH of custom-executor tasks (the executor is
//! fetched over HTTP, HEAD first when cached, started as a process with the Mesos
//! environment, its updates and acknowledgements relayed, FAILURE when it exits) and of
//! command tasks (`TaskInfo.command`: run in their own sandbox by the agent's "command
//! executor", which reports TASK_STARTING, TASK_RUNNING and, when the command exits,
//! TASK_FINISHED or TASK_FAILED "Command exited with status N"); KILL, SHUTDOWN,
//! RECONCILE, TEARDOWN (executors shut down, killed after their grace period); and a lost
//! agent as the real master sees it (TASK_LOST / REASON_AGENT_DISCONNECTED at once,
//! FAILURE only when the agent is removed, 75 s later by default).
//!
//! It enforces the protocol's rules and records each broken one as a violation (and, as
//! Mesos does, answers 400 or a TASK_ERROR): exact content types, `Accept` on SUBSCRIBE,
//! no stream id on SUBSCRIBE and the right one on every other call, MULTI_ROLE without
//! `role`, matching framework ids, offers used once and only by their framework, task
//! resources within the offer and in its role, exactly one of `command` / `executor` per
//! task, one identical `ExecutorInfo` per executor id, every forwarded update with a uuid
//! acknowledged (within [`ACK_DEADLINE`]) and no acknowledgement of anything else, no
//! executor API calls from a command task. Tests fail on any violation.
//!
//! Where it still deliberately differs from a real Mesos 1.12 master and agent:
//! - one framework at a time; scalar cpus/mem only (no disk, ports, reservations, roles
//!   other than `*`); offers never expire;
//! - HEARTBEAT every second (real: 15 s), and unacknowledged updates are re-sent every
//!   [`UPDATE_RETRY`] (real: 10 s, doubling);
//! - it flags an update not acknowledged within [`ACK_DEADLINE`] (real Mesos just waits);
//! - processes run as the test's user with no isolation, and a sandbox is
//!   `<agent dir>/<executor or task id>` (real: `.../runs/<container id>`); no fetcher
//!   cache (HEAD is still checked when `cache` is set) and no archive extraction;
//! - the command executor's own 0.1 cpu / 32 MB are not modelled at all (real Mesos adds
//!   them on the agent without taking them from the offer, so offers are the same);
//! - command executors send no updates of their own beyond the task's (no health checks,
//!   no TASK_KILLING: spate does not ask for TASK_KILLING_STATE);
//! - a lost agent's tasks get TASK_LOST [`DISCONNECT_NOTICE`] after the agent dies; its
//!   processes die at once, the agent never comes back, and at removal the framework gets
//!   only FAILURE for the agent (no TASK_UNREACHABLE: spate is not PARTITION_AWARE);
//! - RECONCILE answers for every task ever launched (real: only tasks the master still
//!   tracks; finished and acknowledged ones count as unknown);
//! - no failover timeout: a framework whose subscription dropped stays until it comes
//!   back or the double is dropped.

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
    self, AgentId, CommandInfo, ExecutorId, ExecutorInfo, FrameworkId, Offer, OfferId, Resource,
    TaskId, TaskInfo, TaskState, TaskStatus, resource, task_status, value,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// An update forwarded to the framework must be acknowledged within this long.
pub const ACK_DEADLINE: Duration = Duration::from_secs(4);
/// The agent re-sends an unacknowledged update this often (Mesos: 10 s, doubling).
const UPDATE_RETRY: Duration = Duration::from_secs(2);
/// From an agent's death to TASK_LOST for its tasks (the real master notices the broken
/// connection at once; observed: within a second).
pub const DISCONNECT_NOTICE: Duration = Duration::from_millis(500);
/// SIGTERM to SIGKILL when the command executor kills its task (Mesos: 3 s for KILL;
/// shutdown grace period minus about 2 s on SHUTDOWN).
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long a custom executor has to exit after SHUTDOWN (`--executor_shutdown_grace_period`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const PROTOBUF: &str = "application/x-protobuf";
const EPS: f64 = 0.0005;
const REASON_RECONCILIATION: i32 = 9;
const REASON_AGENT_DISCONNECTED: i32 = 10;
const REASON_AGENT_REMOVED: i32 = 11;
const REASON_TASK_INVALID: i32 = 14;
const REASON_CONTAINER_LAUNCH_FAILED: i32 = 21;
const REASON_EXECUTOR_TERMINATED: i32 = 1;
const REASON_TASK_KILLED_DURING_LAUNCH: i32 = 30;

/// Resources of one agent.
#[derive(Clone, Copy, Debug)]
pub struct AgentSpec {
    pub cpus: f64,
    pub mem: f64,
}

/// The master's timing (its flags that matter to a batch framework).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Batch allocation period, `--allocation_interval` (Mesos default 1 s): freed or
    /// declined resources are offered again only at the next batch.
    pub allocation_interval: Duration,
    /// From an agent's disconnection to its removal (and FAILURE):
    /// `--agent_ping_timeout` × `--max_agent_ping_timeouts` (Mesos default 15 s × 5).
    pub agent_removal_delay: Duration,
    /// This agent's fetcher hands out truncated downloads, as two real agents sharing one
    /// `--fetcher_cache_dir` do when they fetch the same file at once.
    pub corrupt_downloads_on: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allocation_interval: Duration::from_secs(1),
            agent_removal_delay: Duration::from_secs(75),
            corrupt_downloads_on: None,
        }
    }
}

struct Framework {
    id: String,
    stream_id: Option<String>,
    tx: Option<mpsc::UnboundedSender<SEvent>>,
    suppressed: bool,
    removed: bool,
    roles: Vec<String>,
    /// `FrameworkInfo.checkpoint`: a disconnected agent's tasks of a checkpointing
    /// framework are kept until the agent is removed.
    checkpoint: bool,
}

struct Offered {
    agent: usize,
    cpus: f64,
    mem: f64,
}

/// An executor on an agent: a custom one, or the command executor of one command task
/// (whose id is the task's).
struct Exec {
    /// `None` for a command executor: the master never sees an ExecutorInfo for it, so
    /// it is neither in `Offer.executor_ids` nor told about in FAILURE.
    info: Option<ExecutorInfo>,
    cpus: f64,
    mem: f64,
    tx: Option<mpsc::UnboundedSender<EEvent>>,
    queued: Vec<TaskInfo>,
    child: Option<Arc<Mutex<Child>>>,
    /// Being killed (KILL, SHUTDOWN, TEARDOWN): a command that then exits non-zero is
    /// TASK_KILLED, and one not yet started never starts.
    killing: bool,
}

impl Exec {
    fn new(info: Option<ExecutorInfo>, cpus: f64, mem: f64) -> Self {
        Exec {
            info,
            cpus,
            mem,
            tx: None,
            queued: Vec::new(),
            child: None,
            killing: false,
        }
    }
}

struct Agent {
    id: String,
    addr: String,
    spec: AgentSpec,
    used_cpus: f64,
    used_mem: f64,
    /// Resources in outstanding offers (as in Mesos, resources freed meanwhile are
    /// offered separately at the next batch).
    offered_cpus: f64,
    offered_mem: f64,
    /// A DECLINE/ACCEPT filter: until when, and the refused cpus and mem. As in Mesos,
    /// it only holds back offers that are no larger than what was refused.
    filter: Option<(Instant, f64, f64)>,
    /// The agent process runs (false after [`FakeMesos::kill_agent`]).
    alive: bool,
    /// When the master saw it disconnect.
    lost_at: Option<Instant>,
    /// Its tasks were reported TASK_LOST (REASON_AGENT_DISCONNECTED).
    lost_reported: bool,
    /// Removed after `agent_removal_delay` (FAILURE sent).
    removed: bool,
    executors: HashMap<String, Exec>,
    sandboxes: PathBuf,
}

struct Task {
    agent: usize,
    executor: String,
    /// A command task (run by the agent's command executor).
    command: bool,
    cpus: f64,
    mem: f64,
    state: i32,
    /// Terminal in the agent's books (its resources are free).
    terminal: bool,
    /// The framework has been sent a terminal update for it.
    reported: bool,
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
    /// Custom executor processes started.
    pub executors_started: usize,
    /// Tasks launched (custom-executor and command tasks).
    pub tasks_launched: usize,
    /// Command tasks launched: agent index and task id.
    pub command_tasks: Vec<(usize, String)>,
    /// Command task processes started.
    pub commands_started: usize,
    /// Agents removed (after `agent_removal_delay`), by index.
    pub removed_agents: Vec<usize>,
}

struct Inner {
    framework: Option<Framework>,
    agents: Vec<Agent>,
    offers: HashMap<String, Offered>,
    tasks: HashMap<String, Task>,
    next: u64,
    log: Log,
    options: Options,
    /// When the next batch allocation runs.
    next_allocation: Instant,
    /// Allocate at the next tick (after SUBSCRIBE or REVIVE, as Mesos does).
    allocate_now: bool,
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

    fn removed(&self) -> bool {
        self.framework.as_ref().is_none_or(|f| f.removed)
    }

    fn framework_id(&self) -> String {
        self.framework
            .as_ref()
            .map(|f| f.id.clone())
            .unwrap_or_default()
    }

    /// Outstanding offers are void (rescinded or the subscription is gone).
    fn clear_offers(&mut self) {
        self.offers.clear();
        for a in &mut self.agents {
            a.offered_cpus = 0.0;
            a.offered_mem = 0.0;
        }
    }

    /// Send a master-generated terminal update (no uuid) for `task`, which the master
    /// then forgets.
    fn master_terminal(&mut self, task: &str, state: TaskState, reason: i32, message: &str) {
        let Some(t) = self.tasks.get_mut(task) else {
            return;
        };
        let agent = t.agent;
        if !t.terminal {
            self.agents[agent].used_cpus -= t.cpus;
            self.agents[agent].used_mem -= t.mem;
        }
        t.terminal = true;
        t.reported = true;
        t.state = state as i32;
        t.queue.clear();
        t.unacked = None;
        let agent_id = self.agents[agent].id.clone();
        let st = status(
            task,
            &agent_id,
            state,
            task_status::Source::Master,
            reason,
            message,
            false,
        );
        self.send(update_event(st));
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

fn failure_event(agent: &str, executor: Option<&str>, wait_status: Option<i32>) -> SEvent {
    SEvent {
        failure: Some(sevent::Failure {
            agent_id: Some(AgentId {
                value: agent.to_string(),
            }),
            executor_id: executor.map(|e| ExecutorId {
                value: e.to_string(),
            }),
            status: wait_status,
        }),
        ..sevent(sevent::Type::Failure)
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

fn alive(child: &Mutex<Child>) -> bool {
    child
        .lock()
        .expect("lock")
        .try_wait()
        .ok()
        .flatten()
        .is_none()
}

/// Record a started process as executor `id` of agent `idx`; if the agent died or the
/// executor was dropped meanwhile, kill it instead and say so (`false`).
fn adopt(g: &mut Inner, idx: usize, id: &str, child: &Arc<Mutex<Child>>) -> bool {
    let gone = !g.agents[idx].alive;
    match g.agents[idx].executors.get_mut(id) {
        Some(e) if !gone => {
            e.child = Some(child.clone());
            true
        }
        _ => {
            signal_group(child, "KILL");
            false
        }
    }
}

/// Send `signal` (`TERM`, `KILL`) to the process group `child` leads: every process the
/// double starts leads its own group, so a shell command's children go with it (as the
/// command executor kills the task's process tree).
fn signal_group(child: &Mutex<Child>, signal: &str) {
    if !alive(child) {
        return;
    }
    let pid = child.lock().expect("lock").id();
    let sent = Command::new("/bin/sh")
        .args(["-c", &format!("kill -s {signal} -- -{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !sent && signal == "KILL" {
        let _ = child.lock().expect("lock").kill();
    }
}

/// SIGTERM now, SIGKILL after `grace` if still alive (needs a runtime).
fn terminate_later(child: Arc<Mutex<Child>>, grace: Duration) {
    signal_group(&child, "TERM");
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        signal_group(&child, "KILL");
    });
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
    /// Start a master with the default [`Options`] and one agent per spec.
    pub fn start(agents: &[AgentSpec], root: PathBuf) -> FakeMesos {
        Self::start_with(agents, root, Options::default())
    }

    /// Start a master with `options` and one agent per spec.
    pub fn start_with(agents: &[AgentSpec], root: PathBuf, options: Options) -> FakeMesos {
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
            options,
            next_allocation: Instant::now(),
            allocate_now: false,
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
                    offered_cpus: 0.0,
                    offered_mem: 0.0,
                    filter: None,
                    alive: true,
                    lost_at: None,
                    lost_reported: false,
                    removed: false,
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
                let now = Instant::now();
                if now >= g.next_allocation {
                    let interval = g.options.allocation_interval;
                    let next = g.next_allocation + interval;
                    g.next_allocation = if next > now { next } else { now + interval };
                    g.allocate_now = true;
                }
                if std::mem::take(&mut g.allocate_now) {
                    allocate(&mut g);
                }
                watch_lost_agents(&mut g);
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

    /// Executor and command task processes still running.
    pub fn live_executors(&self) -> usize {
        let g = self.inner.lock().expect("lock");
        g.agents
            .iter()
            .flat_map(|a| a.executors.values())
            .filter(|e| e.child.as_deref().is_some_and(alive))
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

    /// The agent's machine dies: its executors and command tasks die with it (so their
    /// servers refuse connections at once), its offers are rescinded and no more are
    /// made, its pending updates are gone. As in Mesos, the master notices the broken
    /// connection: [`DISCONNECT_NOTICE`] later its tasks become TASK_LOST with
    /// REASON_AGENT_DISCONNECTED (for a framework that does not checkpoint), and only
    /// after `agent_removal_delay` is the agent removed and the framework sent FAILURE.
    pub fn kill_agent(&self, idx: usize) {
        let mut g = self.inner.lock().expect("lock");
        if !g.agents[idx].alive {
            return;
        }
        g.agents[idx].alive = false;
        g.agents[idx].lost_at = Some(Instant::now());
        for e in g.agents[idx].executors.values() {
            if let Some(c) = &e.child {
                signal_group(c, "KILL");
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
        g.agents[idx].offered_cpus = 0.0;
        g.agents[idx].offered_mem = 0.0;
        for t in g.tasks.values_mut().filter(|t| t.agent == idx) {
            t.queue.clear();
            t.unacked = None;
        }
    }

    /// Whether agent `idx` has been removed (FAILURE sent).
    pub fn agent_removed(&self, idx: usize) -> bool {
        self.inner.lock().expect("lock").agents[idx].removed
    }

    /// The subscription connection breaks (as in a network blip): the stream ends, offers
    /// are void, updates wait for the framework to come back.
    pub fn drop_subscription(&self) {
        let mut g = self.inner.lock().expect("lock");
        if let Some(f) = g.framework.as_mut() {
            f.tx = None;
            f.stream_id = None;
        }
        g.clear_offers();
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
                    signal_group(c, "KILL");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = &self.rt;
    }
}

/// A lost agent's progress through the master: TASK_LOST for its tasks once the
/// disconnection is noticed, removal (FAILURE for the agent) after the ping timeouts.
fn watch_lost_agents(g: &mut Inner) {
    let checkpoint = g.framework.as_ref().is_some_and(|f| f.checkpoint);
    for i in 0..g.agents.len() {
        let Some(at) = g.agents[i].lost_at else {
            continue;
        };
        let tasks_of = |g: &Inner| -> Vec<String> {
            let mut v: Vec<String> = g
                .tasks
                .iter()
                .filter(|(_, t)| t.agent == i && !t.reported)
                .map(|(id, _)| id.clone())
                .collect();
            v.sort();
            v
        };
        let host = g.agents[i].addr.split(':').next().unwrap_or("").to_string();
        if !g.agents[i].lost_reported && at.elapsed() >= DISCONNECT_NOTICE {
            g.agents[i].lost_reported = true;
            if !checkpoint {
                for id in tasks_of(g) {
                    g.master_terminal(
                        &id,
                        TaskState::TaskLost,
                        REASON_AGENT_DISCONNECTED,
                        &format!("Slave {host} disconnected"),
                    );
                }
            }
        }
        if !g.agents[i].removed && at.elapsed() >= g.options.agent_removal_delay {
            g.agents[i].removed = true;
            g.log.removed_agents.push(i);
            for id in tasks_of(g) {
                g.master_terminal(
                    &id,
                    TaskState::TaskLost,
                    REASON_AGENT_REMOVED,
                    &format!("Slave {host} removed: health check timed out"),
                );
            }
            let agent_id = g.agents[i].id.clone();
            g.send(failure_event(&agent_id, None, None));
        }
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
            g.clear_offers();
            // Every executor is shut down: a custom one gets SHUTDOWN and its grace
            // period, a command executor kills its task.
            for a in &mut g.agents {
                for e in a.executors.values_mut() {
                    shut_down(e);
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
                        a.offered_cpus -= o.cpus;
                        a.offered_mem -= o.mem;
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
            g.allocate_now = true;
        }
        scall::Type::Suppress => {
            if let Some(f) = g.framework.as_mut() {
                f.suppressed = true;
            }
        }
        scall::Type::Kill => {
            let Some(k) = call.kill else {
                g.violation("KILL without kill".into());
                return reply(StatusCode::BAD_REQUEST, "Expecting 'kill' to be present");
            };
            kill_task(&mut g, &k.task_id.value);
        }
        scall::Type::Shutdown => {
            let Some(s) = call.shutdown else {
                g.violation("SHUTDOWN without shutdown".into());
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'shutdown' to be present",
                );
            };
            let idx = g.agents.iter().position(|a| a.id == s.agent_id.value);
            if let Some(i) = idx {
                shutdown_executor(&mut g, i, &s.executor_id.value);
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
                            REASON_RECONCILIATION,
                            "Reconciliation: Latest task state",
                            false,
                        )
                    }
                    None => unknown_task(&id),
                };
                g.send(update_event(st));
            }
        }
        _ => {}
    }
    reply(StatusCode::ACCEPTED, "")
}

/// The master's answer about a task it does not know (observed on 1.12).
fn unknown_task(id: &str) -> TaskStatus {
    status(
        id,
        "",
        TaskState::TaskLost,
        task_status::Source::Master,
        REASON_RECONCILIATION,
        "Reconciliation: Task is unknown",
        false,
    )
}

/// KILL: a command task's process is killed (TASK_KILLED when it exits); a custom
/// executor's task is killed by its executor (the agent reports TASK_KILLED itself for
/// one not yet delivered); a task the master no longer tracks gets TASK_LOST.
fn kill_task(g: &mut Inner, id: &str) {
    let Some(t) = g.tasks.get(id) else {
        let st = unknown_task(id);
        g.send(update_event(st));
        return;
    };
    if t.reported && t.unacked.is_none() && t.queue.is_empty() {
        // Finished and acknowledged: the master has forgotten it.
        let st = unknown_task(id);
        g.send(update_event(st));
        return;
    }
    let (idx, exec, command, terminal) = (t.agent, t.executor.clone(), t.command, t.terminal);
    if terminal || !g.agents[idx].alive {
        return;
    }
    let Some(e) = g.agents[idx].executors.get_mut(&exec) else {
        return;
    };
    if command {
        e.killing = true;
        if let Some(c) = &e.child {
            terminate_later(c.clone(), KILL_GRACE);
        }
        // Not started yet: `run_command` sees `killing` and reports TASK_KILLED.
        return;
    }
    if let Some(tx) = &e.tx {
        let _ = tx.send(EEvent {
            kill: Some(eevent::Kill {
                task_id: TaskId { value: id.into() },
                kill_policy: None,
            }),
            ..eevent(eevent::Type::Kill)
        });
        return;
    }
    e.queued.retain(|q| q.task_id.value != id);
    let agent_id = g.agents[idx].id.clone();
    let st = status(
        id,
        &agent_id,
        TaskState::TaskKilled,
        task_status::Source::Agent,
        REASON_TASK_KILLED_DURING_LAUNCH,
        "Killed before delivery to the executor",
        true,
    );
    agent_terminal(g, idx, st);
}

/// SHUTDOWN of an executor: a custom one gets SHUTDOWN and is killed after its grace
/// period; a command executor kills its task.
fn shutdown_executor(g: &mut Inner, idx: usize, id: &str) {
    if let Some(e) = g.agents[idx].executors.get_mut(id) {
        shut_down(e);
    }
}

/// Shut executor `e` down (see [`shutdown_executor`]).
fn shut_down(e: &mut Exec) {
    e.killing = true;
    if let Some(tx) = &e.tx {
        let _ = tx.send(eevent(eevent::Type::Shutdown));
    }
    if let Some(c) = e.child.clone() {
        if e.info.is_some() {
            tokio::spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                signal_group(&c, "KILL");
            });
        } else {
            terminate_later(c, KILL_GRACE);
        }
    }
}

/// A terminal update from the agent or an executor for a task of agent `idx`: the task's
/// resources are free and the update is queued for the framework (a second terminal
/// update is dropped).
fn agent_terminal(g: &mut Inner, idx: usize, st: TaskStatus) {
    let Some(t) = g.tasks.get_mut(&st.task_id.value) else {
        return;
    };
    if t.terminal {
        return;
    }
    t.terminal = true;
    t.state = st.state;
    let (c, m) = (t.cpus, t.mem);
    t.queue.push_back(st);
    g.agents[idx].used_cpus -= c;
    g.agents[idx].used_mem -= m;
    pump(g);
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
                checkpoint: fi.checkpoint.unwrap_or(false),
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
                checkpoint: fi.checkpoint.unwrap_or(false),
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
    g.clear_offers();
    g.allocate_now = true;
    let now = Instant::now();
    for t in g.tasks.values_mut() {
        if let Some(u) = t.unacked.as_mut() {
            u.1 = now;
            u.2 = now - UPDATE_RETRY;
        }
    }
    stream_response(rx, &stream)
}

/// One batch allocation: offer each connected agent's resources that are neither used
/// nor in an outstanding offer (Mesos `--min_allocatable_resources`: cpus 0.01, mem 32).
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
        let cpus = ((a.spec.cpus - a.used_cpus - a.offered_cpus) * 1000.0).round() / 1000.0;
        let mem = (a.spec.mem - a.used_mem - a.offered_mem).floor();
        let filtered = a
            .filter
            .is_some_and(|(t, c, m)| t > now && cpus <= c + EPS && mem <= m + EPS);
        if !a.alive || filtered || cpus < 0.01 || mem < 32.0 {
            continue;
        }
        let executor_ids = a
            .executors
            .iter()
            .filter(|(_, e)| e.info.is_some())
            .map(|(id, _)| ExecutorId { value: id.clone() })
            .collect();
        let (agent_id, addr) = (a.id.clone(), a.addr.clone());
        let (host, port) = addr.split_once(':').unwrap_or(("127.0.0.1", "0"));
        let url = v1::Url {
            scheme: "http".into(),
            address: v1::Address {
                hostname: Some(host.into()),
                ip: Some(host.into()),
                port: port.parse().unwrap_or(0),
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        };
        let id = g.next_id("offer");
        g.agents[i].offered_cpus += cpus;
        g.agents[i].offered_mem += mem;
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
            hostname: host.to_string(),
            url: Some(url),
            resources: vec![res("cpus", cpus), res("mem", mem)],
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
            t.reported |= is_terminal(st.state);
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
                g.agents[o.agent].offered_cpus -= o.cpus;
                g.agents[o.agent].offered_mem -= o.mem;
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
            if t.resources.is_empty() {
                bad("no resources".into());
            }
            let info_resources = t.executor.iter().flat_map(|e| &e.resources);
            for r in t.resources.iter().chain(info_resources) {
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
            let info = match (&t.command, &t.executor) {
                (Some(_), Some(_)) | (None, None) => {
                    // The real master's words (master/validation.cpp).
                    bad(
                        "Task should have at least one (but not both) of CommandInfo or \
                         ExecutorInfo present"
                            .into(),
                    );
                    continue;
                }
                (Some(c), None) => {
                    // The agent's command executor runs it; its id is the task's.
                    if c.value.as_deref().is_none_or(str::is_empty) {
                        bad("CommandInfo without a value".into());
                    }
                    if g.agents[i].executors.contains_key(&t.task_id.value) {
                        bad("an executor with the task's id runs on the agent".into());
                    }
                    continue;
                }
                (None, Some(info)) => info,
            };
            if info.command.is_none() {
                bad("ExecutorInfo without command".into());
            }
            if info
                .r#type
                .is_some_and(|ty| ty != v1::executor_info::Type::Custom as i32)
            {
                bad("ExecutorInfo type is not CUSTOM".into());
            }
            let id = info.executor_id.value.clone();
            let existing = match g.agents[i].executors.get(&id) {
                Some(e) => match &e.info {
                    Some(info) => Some(info.clone()),
                    None => {
                        bad(format!("executor id {id} is a command task's"));
                        continue;
                    }
                },
                None => new_execs.get(&id).cloned(),
            };
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
                    REASON_TASK_INVALID,
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
        let fid = g.framework_id();
        let checkpoint = g.framework.as_ref().is_some_and(|f| f.checkpoint);
        let addr = g.agents[i].addr.clone();
        let env_of = |executor: String| Env {
            framework: fid.clone(),
            agent_addr: addr.clone(),
            agent_id: agent_id.clone(),
            executor,
            checkpoint,
        };
        for (id, info) in new_execs {
            let (c, m) = (
                scalar(&info.resources, "cpus"),
                scalar(&info.resources, "mem"),
            );
            g.agents[i]
                .executors
                .insert(id.clone(), Exec::new(Some(info.clone()), c, m));
            let sandbox = g.agents[i].sandboxes.join(&id);
            let env = env_of(id.clone());
            tokio::spawn(start_executor(inner.clone(), i, info, env, sandbox));
        }
        for t in tasks {
            g.log.tasks_launched += 1;
            let id = t.task_id.value.clone();
            let command = t.command.is_some();
            let exec = match &t.executor {
                Some(e) => e.executor_id.value.clone(),
                None => id.clone(),
            };
            g.tasks.insert(
                id.clone(),
                Task {
                    agent: i,
                    executor: exec.clone(),
                    command,
                    cpus: scalar(&t.resources, "cpus"),
                    mem: scalar(&t.resources, "mem"),
                    state: TaskState::TaskStaging as i32,
                    terminal: false,
                    reported: false,
                    queue: VecDeque::new(),
                    unacked: None,
                    sent_uuids: HashSet::new(),
                    late: false,
                },
            );
            if let Some(c) = t.command {
                g.log.command_tasks.push((i, id.clone()));
                g.agents[i]
                    .executors
                    .insert(id.clone(), Exec::new(None, 0.0, 0.0));
                let sandbox = g.agents[i].sandboxes.join(&id);
                let env = env_of(id);
                tokio::spawn(run_command(inner.clone(), i, c, env, sandbox));
                continue;
            }
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
    match g.agents[idx].executors.get(&exec_id) {
        None => return reply(StatusCode::BAD_REQUEST, "Executor cannot be found"),
        Some(e) if e.info.is_none() => {
            // A command task's process is not an executor: the agent's command executor
            // holds that id.
            g.violation(format!(
                "command task {exec_id} called the executor API as its executor"
            ));
            return reply(StatusCode::BAD_REQUEST, "Executor cannot be found");
        }
        Some(_) => {}
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
            if is_terminal(st.state) {
                agent_terminal(&mut g, idx, st);
            } else {
                t.state = st.state;
                t.queue.push_back(st);
                pump(&mut g);
            }
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

/// Who a process is started for: what goes into its Mesos environment.
struct Env {
    framework: String,
    agent_addr: String,
    agent_id: String,
    /// The executor id (a command task's is its task id).
    executor: String,
    checkpoint: bool,
}

/// Fetch `command`'s URIs into `sandbox` like the Mesos fetcher (HEAD first when
/// `cache` is set; `executable` makes the file 0755); the failure message as the agent
/// words it.
async fn fetch_uris(
    inner: &Mutex<Inner>,
    agent: usize,
    command: &CommandInfo,
    sandbox: &Path,
    container: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(sandbox).map_err(|e| {
        format!(
            "Failed to create executor directory '{}': {e}",
            sandbox.display()
        )
    })?;
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
                    let corrupt =
                        inner.lock().expect("lock").options.corrupt_downloads_on == Some(agent);
                    let body = if corrupt {
                        &body[..body.len() / 2]
                    } else {
                        &body[..]
                    };
                    std::fs::write(sandbox.join(&name), body).map_err(|e| e.to_string())
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
            let _ = std::fs::write(sandbox.join("stderr"), format!("{e}\n"));
            return Err(format!(
                "Failed to launch container: Failed to fetch all URIs for container \
                 '{container}': exited with status 1"
            ));
        }
        if uri.executable == Some(true) {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(
                sandbox.join(&name),
                std::fs::Permissions::from_mode(0o755),
            );
        }
    }
    Ok(())
}

/// Start `command` in `sandbox` with exactly the environment a Mesos 1.12 agent gives
/// (observed: the agent's own environment is not inherited), `CommandInfo.environment`
/// last; stdout and stderr go to the sandbox files. The process leads its own group.
fn spawn_process(command: &CommandInfo, env: &Env, sandbox: &Path) -> Result<Child, String> {
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
    let host = env.agent_addr.split(':').next().unwrap_or("127.0.0.1");
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LIBPROCESS_IP", host)
        .env("LIBPROCESS_PORT", "0")
        .env("MESOS_AGENT_ENDPOINT", &env.agent_addr)
        .env("MESOS_SLAVE_PID", format!("slave(1)@{}", env.agent_addr))
        .env("MESOS_FRAMEWORK_ID", &env.framework)
        .env("MESOS_EXECUTOR_ID", &env.executor)
        .env("MESOS_SLAVE_ID", &env.agent_id)
        .env("MESOS_SANDBOX", sandbox)
        .env("MESOS_DIRECTORY", sandbox)
        .env("MESOS_CHECKPOINT", if env.checkpoint { "1" } else { "0" })
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs")
        .env("MESOS_HTTP_COMMAND_EXECUTOR", "0")
        .current_dir(sandbox)
        .stdin(Stdio::null());
    if env.checkpoint {
        cmd.env("MESOS_RECOVERY_TIMEOUT", "15mins")
            .env("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs");
    }
    for v in command.environment.iter().flat_map(|e| &e.variables) {
        cmd.env(&v.name, v.value.clone().unwrap_or_default());
    }
    let (out, err) = match (
        std::fs::File::create(sandbox.join("stdout")),
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.join("stderr")),
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return Err(format!("sandbox files: {e}")),
    };
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0)
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("Failed to execute '{value}': {e}"))
}

/// Wait for `child` to exit; its raw wait status.
async fn wait_exit(child: &Mutex<Child>) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(s) = child.lock().expect("lock").try_wait().ok().flatten() {
            return s.into_raw();
        }
    }
}

/// Fetch a custom executor's URIs into its sandbox and start it; report a failed launch
/// or a later exit as Mesos does.
async fn start_executor(
    inner: Arc<Mutex<Inner>>,
    idx: usize,
    info: ExecutorInfo,
    env: Env,
    sandbox: PathBuf,
) {
    let id = env.executor.clone();
    let fail = |inner: &Arc<Mutex<Inner>>, state, reason, message: String, wait_status: i32| {
        let mut g = inner.lock().expect("lock");
        terminate_executor(&mut g, idx, &id, state, reason, &message, Some(wait_status));
    };
    let command = info.command.clone().unwrap_or_default();
    if let Err(message) = fetch_uris(&inner, idx, &command, &sandbox, &id).await {
        return fail(
            &inner,
            TaskState::TaskFailed,
            REASON_CONTAINER_LAUNCH_FAILED,
            message,
            256,
        );
    }
    let child = match spawn_process(&command, &env, &sandbox) {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            let _ = std::fs::write(sandbox.join("stderr"), format!("{e}\n"));
            return fail(
                &inner,
                TaskState::TaskFailed,
                REASON_EXECUTOR_TERMINATED,
                "Executor terminated".into(),
                256 * 1000,
            );
        }
    };
    {
        let mut g = inner.lock().expect("lock");
        g.log.executors_started += 1;
        if !adopt(&mut g, idx, &id, &child) {
            return;
        }
    }
    let wait_status = wait_exit(&child).await;
    let mut g = inner.lock().expect("lock");
    terminate_executor(
        &mut g,
        idx,
        &id,
        TaskState::TaskFailed,
        REASON_EXECUTOR_TERMINATED,
        "Executor terminated",
        Some(wait_status),
    );
}

/// The agent's command executor for one command task: fetch, run the command, report
/// TASK_STARTING and TASK_RUNNING, then the command's end as the real one words it.
async fn run_command(
    inner: Arc<Mutex<Inner>>,
    idx: usize,
    command: CommandInfo,
    env: Env,
    sandbox: PathBuf,
) {
    let id = env.executor.clone();
    // An update from the command executor (with a uuid, to be acknowledged).
    let update = |state: TaskState, message: Option<String>| TaskStatus {
        task_id: TaskId { value: id.clone() },
        state: state as i32,
        message,
        source: Some(task_status::Source::Executor as i32),
        executor_id: Some(ExecutorId { value: id.clone() }),
        agent_id: Some(AgentId {
            value: env.agent_id.clone(),
        }),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64()),
        uuid: Some(uuid_v4()),
        ..Default::default()
    };
    // The command executor ends (and its task with it, by `st` if still running).
    let end = |inner: &Arc<Mutex<Inner>>, st: TaskStatus| {
        let mut g = inner.lock().expect("lock");
        g.agents[idx].executors.remove(&id);
        if g.agents[idx].alive && !g.removed() {
            agent_terminal(&mut g, idx, st);
        }
    };
    let fetched = fetch_uris(&inner, idx, &command, &sandbox, &id).await;
    let killed = |inner: &Arc<Mutex<Inner>>| {
        let g = inner.lock().expect("lock");
        !g.agents[idx].alive || g.agents[idx].executors.get(&id).is_none_or(|e| e.killing)
    };
    if killed(&inner) {
        let mut st = update(TaskState::TaskKilled, Some("Killed during launch".into()));
        st.source = Some(task_status::Source::Agent as i32);
        st.reason = Some(REASON_TASK_KILLED_DURING_LAUNCH);
        return end(&inner, st);
    }
    if let Err(message) = fetched {
        let mut st = update(TaskState::TaskFailed, Some(message));
        st.source = Some(task_status::Source::Agent as i32);
        st.reason = Some(REASON_CONTAINER_LAUNCH_FAILED);
        return end(&inner, st);
    }
    let child = match spawn_process(&command, &env, &sandbox) {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            let _ = std::fs::write(sandbox.join("stderr"), format!("{e}\n"));
            let mut st = update(TaskState::TaskFailed, Some("Executor terminated".into()));
            st.source = Some(task_status::Source::Agent as i32);
            st.reason = Some(REASON_EXECUTOR_TERMINATED);
            return end(&inner, st);
        }
    };
    {
        let mut g = inner.lock().expect("lock");
        g.log.commands_started += 1;
        if !adopt(&mut g, idx, &id, &child) {
            return;
        }
        if !g.removed()
            && let Some(t) = g.tasks.get_mut(&id)
            && !t.terminal
        {
            t.state = TaskState::TaskRunning as i32;
            t.queue.push_back(update(TaskState::TaskStarting, None));
            t.queue.push_back(update(TaskState::TaskRunning, None));
            pump(&mut g);
        }
    }
    use std::os::unix::process::ExitStatusExt as _;
    let exit = std::process::ExitStatus::from_raw(wait_exit(&child).await);
    let killed = killed(&inner);
    let (state, how) = match (exit.code(), exit.signal()) {
        (Some(0), _) => (TaskState::TaskFinished, "exited with status 0".to_string()),
        (Some(n), _) => (
            if killed {
                TaskState::TaskKilled
            } else {
                TaskState::TaskFailed
            },
            format!("exited with status {n}"),
        ),
        (None, s) => (
            if killed {
                TaskState::TaskKilled
            } else {
                TaskState::TaskFailed
            },
            format!("terminated with signal {}", signal_name(s.unwrap_or(0))),
        ),
    };
    end(&inner, update(state, Some(format!("Command {how}"))));
}

/// `strsignal`'s words for the common signals (as in "Command terminated with signal
/// Killed").
fn signal_name(s: i32) -> String {
    match s {
        1 => "Hangup".into(),
        2 => "Interrupt".into(),
        6 => "Aborted".into(),
        9 => "Killed".into(),
        11 => "Segmentation fault".into(),
        15 => "Terminated".into(),
        n => format!("Unknown signal {n}"),
    }
}

/// A custom executor is gone: its unfinished tasks end (with an update the framework
/// must acknowledge, as the agent sends them), its resources are free, and the framework
/// hears FAILURE (unless the agent itself is gone or the framework was torn down).
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
    if !g.agents[idx].alive || g.removed() {
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
        agent_terminal(g, idx, st);
    }
    g.send(failure_event(&agent_id, Some(id), wait_status));
    pump(g);
}
