//! The Mesos framework: spate's scheduler backend for `mesos://host:port` and
//! `mesos://zk://…` (the leader found and followed through ZooKeeper).
//!
//! One event loop owns the subscription in both modes: SUBSCRIBE, OFFERS, UPDATE (each
//! update with a uuid acknowledged after handling, and only those), FAILURE, a dropped
//! subscription re-subscribed with the framework id and backoff within
//! `failover_timeout` (then RECONCILE), ERROR failing every job, TEARDOWN on stop and on
//! Ctrl-C / SIGTERM / SIGHUP. Tasks that wait `offer_timeout` for resources fail the
//! running jobs with what they need and the largest offer seen.
//!
//! **Coarse-grained** ([`MesosMode::Coarse`], the default; see `super::coarse`): each
//! offered agent gets one long-running executor task holding its cpus; executors
//! register on the driver's control channel and the DAG sends them tasks directly.
//!
//! **Fine-grained** ([`MesosMode::Fine`]): the DAG scheduler pushes tasks to executors
//! with free cores, but under Mesos a task can only start when an offer arrives. So the
//! backend shows the DAG one virtual executor, [`POOL`], with unbounded slots, queues
//! what it is given, and drains the queue on OFFERS: [`super::offers::fit`] places tasks
//! (preferred agents first), one spate executor per agent is started with the first task
//! there and reused by every later task (the same `ExecutorInfo`, byte for byte), unused
//! offers are declined, and the framework SUPPRESSes offers while nothing waits and
//! REVIVEs them when tasks arrive. Status updates map onto the scheduler's task ends
//! exactly as local-cluster frames do (`backend::report_end`); updates without spate's
//! data (agent- or master-generated: lost, killed, invalid) are task failures with the
//! Mesos state and reason in the message; a FAILURE event, or TASK_LOST because the agent
//! disconnected, is an executor loss (its map outputs are gone).

use super::coarse::{self, Coarse};
use super::exec_server;
use super::offers::{Ask, ExecutorNeeds, fit};
use crate::backend::control::Control;
use crate::backend::{SchedulerBackend, TaskLaunch, launch_message, report_end};
use crate::event::{EventSink, TaskId};
use bytes::Bytes;
use prost::Message as _;
use spate_core::error::{Error, Result};
use spate_core::protocol::{StatusData, TaskState, env};
use spate_core::ship::{Secret, exe_id};
use spate_core::task::{TaskFailure, TaskKind};
use spate_mesos::http::{Endpoint, EventStream, HttpError, Retry, post};
use spate_mesos::v1::scheduler::{Call, Event, call, event};
use spate_mesos::v1::{
    self, AgentId, CommandInfo, Environment, ExecutorId, ExecutorInfo, Filters, FrameworkId,
    FrameworkInfo, Offer, OfferId, TaskId as MesosTaskId, TaskInfo, command_info, environment,
    executor_info, framework_info, offer,
};
use spate_mesos::zk::{self, LeaderWatch, ZkUrl};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Name of the one virtual executor the DAG scheduler sees.
pub const POOL: &str = "mesos";

/// Slots of the virtual executor: every task is handed over at once and waits here for
/// an offer.
const POOL_SLOTS: usize = 1 << 20;

/// Seconds a declined offer stays away while tasks still wait (too small for them).
const REFUSE_BUSY: f64 = 5.0;
/// Seconds a declined offer stays away when nothing waits (REVIVE clears it).
const REFUSE_IDLE: f64 = 3600.0;
/// Filter on the unused part of accepted offers.
const REFUSE_ACCEPTED: f64 = 1.0;

/// How tasks reach executors under Mesos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MesosMode {
    /// One long-running Mesos task per agent holds the agent's cpus and runs a spate
    /// executor; the driver sends it tasks directly over the same channel as
    /// `local-cluster` (no offer cycle per task). Spark's default.
    #[default]
    Coarse,
    /// Every spate task is a Mesos task launched on an offer into a custom executor per
    /// agent, its status returned in Mesos status updates (dpark's way): resources go back
    /// to the cluster between tasks, at the cost of an offer cycle per wave of tasks.
    Fine,
}

impl std::str::FromStr for MesosMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "coarse" | "coarse-grained" => Ok(MesosMode::Coarse),
            "fine" | "fine-grained" => Ok(MesosMode::Fine),
            other => Err(Error::Config(format!(
                "unknown Mesos mode {other:?}: expected \"coarse\" or \"fine\""
            ))),
        }
    }
}

/// Settings of the Mesos framework.
#[derive(Clone, Debug)]
pub struct MesosConfig {
    /// Coarse-grained (default) or fine-grained tasks.
    pub mode: MesosMode,
    /// Coarse-grained: the most cpus all executors together hold (default: every cpu
    /// offered).
    pub max_cores: Option<f64>,
    /// How long tasks may wait without any offer that fits them (fine-grained) or without
    /// any executor (coarse-grained) before the running jobs fail, saying why.
    pub offer_timeout: Duration,
    /// Coarse-grained: an executor silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// Whether `task_cpus` was chosen by the user; if not, fine-grained tasks shrink to
    /// fit agents too small for a default task next to its executor.
    pub task_cpus_set: bool,
    /// `host:port` of a master (any master: a non-leader redirects to the leader).
    pub master: String,
    /// Framework name shown in the Mesos UI.
    pub name: String,
    /// Unix user that executors run as on the agents (default: the current user).
    pub user: Option<String>,
    /// Roles to receive offers for (default `*`).
    pub roles: Vec<String>,
    /// Principal for HTTP Basic authentication and `FrameworkInfo.principal`.
    pub principal: Option<String>,
    /// Secret for HTTP Basic authentication.
    pub secret: Option<String>,
    /// How long the master keeps the framework's executors when the driver's subscription
    /// drops; also how long the driver keeps re-subscribing.
    pub failover_timeout: Duration,
    /// Ask agents to checkpoint (executors survive agent restarts).
    pub checkpoint: bool,
    /// CPUs per task.
    pub task_cpus: f64,
    /// Memory per task, MB.
    pub task_mem_mb: f64,
    /// CPUs of each executor itself.
    pub executor_cpus: f64,
    /// Memory of each executor itself, MB.
    pub executor_mem_mb: f64,
    /// Host or IP agents use to reach the driver (executable server); default: the local
    /// address that routes to the master (127.0.0.1 for a loopback master).
    pub advertised_host: Option<String>,
    /// A pre-deployed executor instead of the served binary: an absolute path present on
    /// every agent, or a URI the fetcher downloads (`http://…`, `hdfs://…`).
    pub executor_uri: Option<String>,
    /// The executable to serve (default: this process's own image).
    pub exe: Option<PathBuf>,
    /// Map-side memory budget per task on executors.
    pub spill_bytes: Option<usize>,
    /// Bytes of map outputs each executor keeps in memory (default: an eighth of the
    /// executor's memory).
    pub shuffle_memory: Option<usize>,
    /// Partitions for operations not told a count (default: the tasks the first offers
    /// fit next to an executor each, at least 2).
    pub default_parallelism: Option<usize>,
}

impl MesosConfig {
    /// Defaults for a master at `host:port`.
    pub fn new(master: &str, name: &str) -> Self {
        MesosConfig {
            mode: MesosMode::default(),
            max_cores: None,
            offer_timeout: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(10),
            task_cpus_set: false,
            master: master.to_string(),
            name: name.to_string(),
            user: None,
            roles: vec!["*".into()],
            principal: None,
            secret: None,
            failover_timeout: Duration::from_secs(60),
            checkpoint: false,
            task_cpus: 1.0,
            task_mem_mb: 512.0,
            executor_cpus: 0.1,
            executor_mem_mb: 128.0,
            advertised_host: None,
            executor_uri: None,
            exe: None,
            spill_bytes: None,
            shuffle_memory: None,
            default_parallelism: None,
        }
    }
}

/// A task handed to Mesos and not ended yet.
struct Inflight {
    kind: TaskKind,
    executor: String,
    agent: String,
}

/// A spate executor the framework started.
struct ExecutorEntry {
    agent: String,
    /// Task threads it was started with.
    threads: usize,
    /// Known from its first status update.
    block_server: Option<String>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<TaskLaunch>,
    inflight: HashMap<TaskId, Inflight>,
    executors: HashMap<String, ExecutorEntry>,
    /// The `ExecutorInfo` of the live spate executor on each agent: sent unchanged with
    /// every task for that agent.
    agents: HashMap<String, ExecutorInfo>,
    next_executor: u64,
    /// Why the framework can run nothing any more.
    failed: Option<String>,
    /// Outcome of the first subscription.
    subscribed: Option<std::result::Result<String, Error>>,
    /// Task slots in the first batch of offers.
    first_offer_slots: Option<usize>,
    /// Fine-grained cpus per task (the configured ones, or shrunk to fit the agents).
    task_cpus: f64,
    /// Since when tasks wait for an offer that fits (fine) or for any executor (coarse).
    waiting_since: Option<Instant>,
    /// The largest offer seen lately: (cpus, mem, agent), for the no-fit message.
    largest_offer: Option<(f64, f64, String)>,
    /// Agents' HTTP addresses (from their offers), to read executors' sandboxes.
    agent_addrs: HashMap<String, String>,
}

enum Command {
    /// Tasks were queued.
    Wake,
    /// Kill a coarse executor's Mesos task (it stopped answering).
    Kill(String),
    /// Send every executor this control message (drop a persisted RDD, a shuffle).
    Message(spate_core::protocol::ToExecutor),
    /// Tear the framework down, then answer.
    Stop(oneshot::Sender<()>),
}

/// The Mesos scheduler backend.
pub struct MesosBackend {
    config: Arc<MesosConfig>,
    secret: Secret,
    state: Arc<Mutex<State>>,
    /// Coarse executors and the agents given up on (both modes).
    coarse: Arc<Mutex<Coarse>>,
    /// Coarse mode: the executors' control channel.
    control: Option<Arc<Control>>,
    runtime: Option<tokio::runtime::Runtime>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    events: Option<EventSink>,
    parallelism: usize,
}

impl MesosBackend {
    /// A backend that subscribes to `config.master` when started.
    pub fn new(config: MesosConfig, secret: Secret) -> Self {
        let state = State {
            task_cpus: config.task_cpus,
            ..State::default()
        };
        MesosBackend {
            config: Arc::new(config),
            secret,
            state: Arc::new(Mutex::new(state)),
            coarse: Arc::new(Mutex::new(Coarse::default())),
            control: None,
            runtime: None,
            commands: None,
            events: None,
            parallelism: 2,
        }
    }

    /// A control message for every executor: over the control channel (coarse) or as
    /// Mesos framework messages (fine).
    fn tell_executors(&self, msg: spate_core::protocol::ToExecutor) {
        if let Some(control) = &self.control {
            return control.broadcast(msg);
        }
        if let Some(tx) = &self.commands {
            let _ = tx.send(Command::Message(msg));
        }
    }
}

/// How long `start` waits for the first SUBSCRIBED, and then for the first offers.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// With ZooKeeper: how long to wait for a leading master before trying the last one.
const LEADER_WAIT: Duration = Duration::from_secs(30);
const FIRST_OFFERS_WAIT: Duration = Duration::from_secs(3);
/// Coarse mode: how long `start` waits for the executors of the first offers to register
/// (the default parallelism is their cores).
const FIRST_EXECUTORS_WAIT: Duration = Duration::from_secs(30);

impl SchedulerBackend for MesosBackend {
    fn start(&mut self, events: EventSink) -> Result<()> {
        let rt = crate::backend::driver_runtime("spate-mesos")?;
        let command = rt.block_on(executor_command(&self.config))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let coarse = self.config.mode == MesosMode::Coarse;
        let control_addr = if coarse {
            let host = advertised_host(&self.config);
            let bind = bind_ip(&host);
            let (asks, mut asked) = mpsc::unbounded_channel();
            let hooks = super::coarse::Hooks {
                coarse: self.coarse.clone(),
                asks,
            };
            let (control, addr) = rt.block_on(Control::start(
                &bind,
                events.clone(),
                self.secret.clone(),
                self.config.heartbeat_timeout,
                Box::new(hooks),
            ))?;
            // Forward the channel's requests to the event loop.
            let kills = tx.clone();
            rt.spawn(async move {
                while let Some(super::coarse::Ask::Kill(e)) = asked.recv().await {
                    let _ = kills.send(Command::Kill(e));
                }
            });
            self.control = Some(control);
            format!("{host}:{}", addr.port())
        } else {
            // Fine-grained executors hold a connection to this port and exit when it
            // closes: when this process is gone, however it died.
            let host = advertised_host(&self.config);
            let listener = rt
                .block_on(tokio::net::TcpListener::bind((bind_ip(&host).as_str(), 0)))
                .map_err(|e| Error::Other(format!("binding the driver's liveness port: {e}")))?;
            let port = listener
                .local_addr()
                .map_err(|e| Error::Other(format!("driver liveness port: {e}")))?
                .port();
            rt.spawn(async move {
                let mut held = Vec::new();
                while let Ok((conn, _)) = listener.accept().await {
                    held.push(conn);
                }
            });
            format!("{host}:{port}")
        };
        let leader = match self.config.master.strip_prefix("zk://") {
            Some(_) => {
                let url = ZkUrl::parse(&self.config.master)
                    .map_err(|e| Error::Config(format!("Mesos master: {e}")))?;
                let watch = rt
                    .block_on(zk::watch_leader(&url, Duration::from_secs(10)))
                    .map_err(|e| match e {
                        zk::ZkError::Unreachable { servers, message } => Error::Unreachable {
                            service: "ZooKeeper".into(),
                            address: servers,
                            message,
                        },
                        e => Error::Config(format!("finding the leading Mesos master: {e}")),
                    })?;
                tracing::info!(
                    leader = watch.current_leader(),
                    zk = %url,
                    "leading Mesos master from ZooKeeper"
                );
                Some(watch)
            }
            None => None,
        };
        let framework = Framework {
            leader,
            config: self.config.clone(),
            secret: self.secret.clone(),
            state: self.state.clone(),
            coarse: self.coarse.clone(),
            control: self.control.clone(),
            control_addr,
            events: events.clone(),
            endpoint: Endpoint {
                addr: self.config.master.clone(),
                path: "/api/v1/scheduler".into(),
            },
            auth: basic_auth(&self.config),
            framework_id: None,
            stream_id: None,
            suppressed: false,
            command,
        };
        rt.spawn(framework.run(rx));
        rt.spawn(tear_down_on_signals(tx.clone(), self.control.clone()));
        self.runtime = Some(rt);
        self.commands = Some(tx);
        self.events = Some(events.clone());
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        loop {
            let outcome = self
                .state
                .lock()
                .ok()
                .and_then(|mut s| match &s.subscribed {
                    Some(Ok(id)) => Some(Ok(id.clone())),
                    Some(Err(_)) => s.subscribed.take(),
                    None => None,
                });
            match outcome {
                Some(Ok(id)) => {
                    tracing::info!(
                        framework = id,
                        master = self.config.master,
                        mode = ?self.config.mode,
                        "subscribed to Mesos"
                    );
                    break;
                }
                Some(Err(e)) => {
                    self.stop();
                    return Err(e);
                }
                None if Instant::now() > deadline => {
                    self.stop();
                    return Err(Error::Config(format!(
                        "the Mesos master at {} did not accept the framework within {SUBSCRIBE_TIMEOUT:?}",
                        self.config.master
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let deadline = Instant::now() + FIRST_OFFERS_WAIT;
        let slots = loop {
            let slots = self.state.lock().ok().and_then(|s| s.first_offer_slots);
            if slots.is_some() || Instant::now() > deadline {
                break slots;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if coarse {
            // The executors the first offers started: wait until they registered (or
            // ended), so jobs start with all of them and the parallelism is their cores.
            let deadline = Instant::now() + FIRST_EXECUTORS_WAIT;
            let cores = loop {
                let (starting, cores) = self.coarse.lock().map_or((0, 0), |c| {
                    (
                        c.executors.values().filter(|e| !e.registered).count(),
                        c.executors
                            .values()
                            .filter(|e| e.registered)
                            .map(|e| e.threads)
                            .sum::<usize>(),
                    )
                });
                if starting == 0 || Instant::now() > deadline {
                    break cores;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            self.parallelism = self.config.default_parallelism.unwrap_or(cores.max(2));
            return Ok(());
        }
        self.parallelism = self
            .config
            .default_parallelism
            .unwrap_or_else(|| slots.unwrap_or(0).max(2));
        events.executor_added(POOL, POOL_SLOTS);
        Ok(())
    }

    fn launch(&mut self, executor: &str, task: TaskLaunch) {
        if let Some(control) = &self.control {
            return control.launch(executor, task);
        }
        debug_assert_eq!(executor, POOL);
        let failed = match self.state.lock() {
            Ok(mut st) => match st.failed.clone() {
                Some(why) => Some((task.id, why)),
                None => {
                    st.pending.push_back(task);
                    None
                }
            },
            Err(_) => Some((task.id, "backend state poisoned".into())),
        };
        match failed {
            Some((id, why)) => {
                if let Some(events) = &self.events {
                    events.task_ended(id, Err(TaskFailure::Error { message: why }));
                }
            }
            None => {
                if let Some(tx) = &self.commands {
                    let _ = tx.send(Command::Wake);
                }
            }
        }
    }

    fn default_parallelism(&self) -> usize {
        self.parallelism
    }

    fn can_cancel(&self) -> bool {
        self.control.is_none()
    }

    fn cancel(&mut self, tasks: &[TaskId]) -> Vec<TaskId> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        // Exactly the tasks still waiting for an offer: anything launched (or already
        // ended, its report on the way) must end through its own report.
        let mut taken = Vec::new();
        st.pending.retain(|t| {
            let cancel = tasks.contains(&t.id);
            if cancel {
                taken.push(t.id);
            }
            !cancel
        });
        taken
    }

    fn unpersist(&mut self, key: u64) {
        self.tell_executors(spate_core::protocol::ToExecutor::Unpersist(key));
    }

    fn remove_shuffle(&mut self, shuffle: spate_core::rdd::ShuffleId) {
        self.tell_executors(spate_core::protocol::ToExecutor::RemoveShuffle(shuffle));
    }

    fn stop(&mut self) {
        let Some(rt) = self.runtime.take() else {
            return;
        };
        // Coarse executors exit when told (their Mesos tasks finish); TEARDOWN then ends
        // whatever is left.
        if let Some(control) = &self.control {
            control.shutdown();
        }
        if let Some(tx) = self.commands.take() {
            let (done, wait) = oneshot::channel();
            if tx.send(Command::Stop(done)).is_ok() {
                let _ =
                    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), wait).await });
            }
        }
        rt.shutdown_background();
    }
}

/// The next leader ZooKeeper names (`Some(None)`: none right now); `None` when there is no
/// watch (never resolves) or it ended.
async fn leader_changed(
    watch: &mut Option<tokio::sync::watch::Receiver<Option<String>>>,
) -> Option<Option<String>> {
    match watch {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// Ctrl-C, SIGTERM and SIGHUP tear the framework down before the process exits, so the
/// master frees the executors' resources at once instead of after the failover timeout.
async fn tear_down_on_signals(
    commands: mpsc::UnboundedSender<Command>,
    control: Option<Arc<Control>>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot watch for signals: the framework is not torn down on them");
        return;
    };
    let (name, code) = tokio::select! {
        _ = int.recv() => ("interrupted", 130),
        _ = term.recv() => ("terminated (SIGTERM)", 143),
        _ = hup.recv() => ("hung up (SIGHUP)", 129),
    };
    if let Some(c) = &control {
        c.shutdown();
    }
    let (done, wait) = oneshot::channel();
    if commands.send(Command::Stop(done)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
    }
    eprintln!("{name}: the Mesos framework was torn down");
    std::process::exit(code);
}

/// The IP to listen on for agents to reach `host`: itself when it is an IP, else all.
fn bind_ip(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        "0.0.0.0".into()
    }
}

/// The last words in the stderr of `executor`'s sandbox on the agent at `addr`, if the
/// agent answers within 2 s.
async fn last_stderr_words(
    addr: &str,
    framework: &str,
    executor: &str,
    auth: Option<String>,
) -> Option<String> {
    let read = spate_mesos::http::sandbox_tail(
        addr,
        framework,
        executor,
        "stderr",
        8 << 10,
        auth.as_deref(),
    );
    match tokio::time::timeout(Duration::from_secs(2), read).await {
        Ok(Ok(text)) => program_lines(&text),
        Ok(Err(e)) => {
            tracing::debug!(executor, "reading the sandbox: {e}");
            None
        }
        Err(_) => None,
    }
}

/// The program's own last lines in a Mesos sandbox's stderr: the fetcher's and the
/// command executor's log lines (glog: `I1130 15:22:12.882987 …`) left out.
fn program_lines(stderr: &str) -> Option<String> {
    let glog = |l: &str| {
        let b = l.as_bytes();
        b.len() > 5
            && matches!(b[0], b'I' | b'W' | b'E' | b'F')
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5] == b' '
    };
    crate::backend::last_words(stderr.lines().filter(|l| !glog(l)))
}

/// `Authorization: Basic …` when a principal and secret are configured.
fn basic_auth(config: &MesosConfig) -> Option<String> {
    use base64::Engine as _;
    let p = config.principal.as_ref()?;
    let s = config.secret.as_deref()?;
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{p}:{s}"))
    ))
}

/// The user to run executors as: `USER`, else the name of this process's uid.
fn current_user() -> String {
    if let Ok(u) = std::env::var("USER")
        && !u.is_empty()
    {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    let name = uid.and_then(|uid| {
        std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
    });
    name.unwrap_or_else(|| "root".into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The address agents can reach the driver at: configured, else the local address of
/// the route to the master.
pub fn advertised_host(config: &MesosConfig) -> String {
    if let Some(h) = &config.advertised_host {
        return h.clone();
    }
    // With ZooKeeper, the route to its first server (masters run next to it).
    let master = match config.master.strip_prefix("zk://") {
        Some(zk) => zk
            .split(['/', ','])
            .next()
            .unwrap_or_default()
            .rsplit_once('@')
            .map_or(zk.split(['/', ',']).next().unwrap_or_default(), |(_, h)| h),
        None => config.master.as_str(),
    };
    let master_host = master.rsplit_once(':').map_or(master, |(h, _)| h);
    if master_host == "localhost" || master_host.starts_with("127.") {
        return "127.0.0.1".into();
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(master)?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| hostname())
}

/// The command that starts a spate executor on an agent: the served binary (fetched by
/// its hash-named URL) or a pre-deployed path or URI. Starts the executable server when
/// the binary is served.
async fn executor_command(config: &MesosConfig) -> Result<CommandInfo> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (uris, value, argv0, sha) = match &config.executor_uri {
        Some(path) if path.starts_with('/') => (Vec::new(), path.clone(), path.clone(), None),
        Some(uri) => {
            let name = uri
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("spate-executor")
                .to_string();
            (
                vec![fetch_uri(uri.clone(), &name)],
                format!("./{name}"),
                name,
                None,
            )
        }
        None => {
            let exe = config
                .exe
                .clone()
                .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
            let bytes = tokio::fs::read(&exe).await.map_err(|e| {
                Error::io("reading the executable to serve to agents", exe.clone(), e)
            })?;
            let name = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .filter(|n| !n.is_empty() && !n.contains(' '))
                .unwrap_or_else(|| "spate-executor".into());
            let host = advertised_host(config);
            let bind_ip = bind_ip(&host);
            let listener = tokio::net::TcpListener::bind((bind_ip.as_str(), 0))
                .await
                .map_err(|e| {
                    Error::Other(format!("binding the executable server on {bind_ip}: {e}"))
                })?;
            let port = listener
                .local_addr()
                .map_err(|e| Error::Other(format!("executable server: {e}")))?
                .port();
            // This process's image is hashed once per process anyway (its identity).
            let sha = match &config.exe {
                None => hex(&spate_core::ship::exe_sha256()),
                Some(_) => sha256_hex(&bytes),
            };
            let path = exec_server::exec_path(exe_id(), &name);
            let url = format!("http://{host}:{port}{path}");
            tracing::info!(url, "serving the executor binary to Mesos agents");
            tokio::spawn(exec_server::serve(
                listener,
                path,
                Bytes::from(bytes),
                std::future::pending(),
            ));
            (
                vec![fetch_uri(url, &name)],
                format!("./{name}"),
                name,
                Some(sha),
            )
        }
    };
    let mut vars = Vec::new();
    if let Some(b) = config.spill_bytes {
        vars.push((env::SPILL_BYTES.to_string(), b.to_string()));
    }
    // Coarse executors are told theirs at launch, from the memory they are given.
    match (config.shuffle_memory, config.mode) {
        (Some(b), _) => vars.push((env::SHUFFLE_MEMORY.to_string(), b.to_string())),
        (None, MesosMode::Fine) => vars.push((
            env::SHUFFLE_MEMORY.to_string(),
            shuffle_memory_budget(config.executor_mem_mb),
        )),
        (None, MesosMode::Coarse) => {}
    }
    if let Ok(filter) = std::env::var("RUST_LOG") {
        vars.push(("RUST_LOG".into(), filter));
    }
    let variables = vars
        .into_iter()
        .map(|(name, value)| env_var(&name, &value))
        .collect();
    let (shell, value, arguments) = match sha {
        // The fetched binary is checked before it runs: a truncated or mixed-up download
        // (e.g. agents sharing a fetcher cache) may crash before spate's own checks.
        Some(sha) => (true, checked_launch(&value, &sha, &args), Vec::new()),
        None => (false, value, std::iter::once(argv0).chain(args).collect()),
    };
    Ok(CommandInfo {
        uris,
        environment: Some(Environment { variables }),
        shell: Some(shell),
        value: Some(value),
        arguments,
        user: None,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A shell command that runs `exe` with `args` only if its SHA-256 is `sha` (when the
/// agent has `sha256sum`), else exits with `exit::CORRUPT_DOWNLOAD` saying why.
fn checked_launch(exe: &str, sha: &str, args: &[String]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = format!(
        "if command -v sha256sum >/dev/null 2>&1 && ! echo {} | sha256sum -c --status; then \
         echo {} >&2; exit {}; fi; exec {}",
        quote(&format!("{sha}  {exe}")),
        quote(&format!(
            "spate: corrupt download: {exe} does not have the SHA-256 of the driver's binary ({sha})"
        )),
        spate_core::protocol::exit::CORRUPT_DOWNLOAD,
        quote(exe)
    );
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    cmd
}

fn fetch_uri(value: String, name: &str) -> command_info::Uri {
    command_info::Uri {
        value,
        executable: Some(true),
        extract: Some(false),
        // The URL names the binary's hash: a cached copy is never stale.
        cache: Some(true),
        output_file: Some(name.to_string()),
    }
}

pub(crate) fn env_var(name: &str, value: &str) -> environment::Variable {
    environment::Variable {
        name: name.into(),
        r#type: Some(environment::variable::Type::Value as i32),
        value: Some(value.into()),
        secret: None,
    }
}

/// Mesos task id of a scheduler task.
fn mesos_task_id(id: TaskId) -> String {
    format!("spate-{id}")
}

fn scheduler_task_id(mesos: &str) -> Option<TaskId> {
    mesos.strip_prefix("spate-")?.parse().ok()
}

fn state_name(state: i32) -> &'static str {
    v1::TaskState::try_from(state).map_or("TASK_UNKNOWN_STATE", |s| s.as_str_name())
}

fn is_terminal(state: i32) -> bool {
    use v1::TaskState as S;
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

/// A status without spate's data, in words: state, reason, message, where.
pub(crate) fn describe(status: &v1::TaskStatus, agent: &str) -> String {
    let mut s = format!(
        "Mesos reported task {} {} on agent {agent}",
        status.task_id.value,
        state_name(status.state)
    );
    if let Some(r) = status.reason {
        s.push_str(&format!(
            " ({})",
            spate_mesos::reason_name(r).unwrap_or("unknown reason")
        ));
    }
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// The event loop's side: owns the subscription and makes every call.
struct Framework {
    config: Arc<MesosConfig>,
    secret: Secret,
    state: Arc<Mutex<State>>,
    coarse: Arc<Mutex<Coarse>>,
    /// Coarse mode: the executors' control channel. The address executors connect to:
    /// that channel (coarse) or the driver's liveness port (fine).
    control: Option<Arc<Control>>,
    control_addr: String,
    /// With a `zk://` master: the leading master as ZooKeeper names it.
    leader: Option<LeaderWatch>,
    events: EventSink,
    endpoint: Endpoint,
    auth: Option<String>,
    framework_id: Option<String>,
    stream_id: Option<String>,
    suppressed: bool,
    command: CommandInfo,
}

/// What ends one subscription.
enum Ended {
    /// Re-subscribe (with this reason for the log).
    Dropped(String),
    /// Stopped or failed for good.
    Finished,
}

impl Framework {
    /// Where executors' sandboxes on `agent` are read: the agent's HTTP address (from its
    /// offers) and this framework's id, once both are known.
    fn sandbox_of(&self, agent: &str) -> Option<(String, String)> {
        let addr = self.state.lock().ok()?.agent_addrs.get(agent).cloned()?;
        Some((addr, self.framework_id.clone()?))
    }

    fn call(&self, r#type: call::Type) -> Call {
        Call {
            framework_id: self.framework_id.clone().map(|value| FrameworkId { value }),
            r#type: Some(r#type as i32),
            ..Default::default()
        }
    }

    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo {
            user: self.config.user.clone().unwrap_or_else(current_user),
            name: self.config.name.clone(),
            id: self.framework_id.clone().map(|value| FrameworkId { value }),
            failover_timeout: Some(self.config.failover_timeout.as_secs_f64()),
            checkpoint: Some(self.config.checkpoint),
            // MULTI_ROLE: `roles`, never `role`.
            role: None,
            roles: self.config.roles.clone(),
            hostname: Some(hostname()),
            principal: self.config.principal.clone(),
            capabilities: vec![framework_info::Capability {
                r#type: Some(framework_info::capability::Type::MultiRole as i32),
            }],
            ..Default::default()
        }
    }

    fn pending_is_empty(&self) -> bool {
        self.state.lock().map_or(true, |s| s.pending.is_empty())
    }

    /// POST a call on its own connection with the current stream id.
    async fn send(&mut self, call: Call) -> std::result::Result<(), HttpError> {
        let body = Bytes::from(call.encode_to_vec());
        post(
            &mut self.endpoint,
            body,
            self.stream_id.as_deref(),
            self.auth.as_deref(),
            Retry {
                attempts: 3,
                ..Retry::default()
            },
        )
        .await
        .map(drop)
    }

    /// POST a call without waiting for it (acknowledgements, declines).
    fn send_later(&self, call: Call) {
        let mut endpoint = self.endpoint.clone();
        let (stream, auth) = (self.stream_id.clone(), self.auth.clone());
        let what = call.r#type;
        tokio::spawn(async move {
            let body = Bytes::from(call.encode_to_vec());
            if let Err(e) = post(
                &mut endpoint,
                body,
                stream.as_deref(),
                auth.as_deref(),
                Retry::default(),
            )
            .await
            {
                tracing::warn!(call = ?what, "Mesos call failed: {e}");
            }
        });
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = Duration::from_millis(250);
        let mut disconnected: Option<Instant> = None;
        // A stop that came while the subscription was down (answered after TEARDOWN).
        let mut stopping: Option<oneshot::Sender<()>> = None;
        loop {
            if let Some(leader) = &mut self.leader {
                // Subscribe to the master ZooKeeper names as leading now.
                match leader.wait_for_leader(LEADER_WAIT).await {
                    Ok(addr) => self.endpoint.addr = addr,
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            let mut sub = self.call(call::Type::Subscribe);
            let idle = !self.pending_is_empty();
            self.suppressed = false;
            sub.subscribe = Some(call::Subscribe {
                framework_info: self.framework_info(),
                // Re-subscribing resets suppression: stay suppressed if nothing waits
                // (but the first subscription wants offers, to size the parallelism).
                // Coarse mode never suppresses: it needs offers whenever an agent has no
                // executor.
                suppressed_roles: if !idle && self.framework_id.is_some() && self.control.is_none()
                {
                    self.suppressed = true;
                    self.config.roles.clone()
                } else {
                    Vec::new()
                },
            });
            let opened = EventStream::subscribe(
                &mut self.endpoint,
                Bytes::from(sub.encode_to_vec()),
                self.auth.as_deref(),
                Retry {
                    attempts: 3,
                    ..Retry::default()
                },
                Duration::from_secs(75),
            )
            .await;
            if self.framework_id.is_none()
                && let Err(HttpError::Unreachable { message, .. }) = &opened
            {
                // Never subscribed: tell `start` nothing answers there.
                if let Ok(mut st) = self.state.lock() {
                    st.subscribed = Some(Err(Error::Unreachable {
                        service: "Mesos master".into(),
                        address: self.endpoint.addr.clone(),
                        message: message.clone(),
                    }));
                }
                return;
            }
            let ended = match opened {
                Ok(stream) if stopping.is_some() => {
                    // Stopped while disconnected: subscribed again only to tear down.
                    self.stream_id = stream.stream_id.clone();
                    self.teardown().await;
                    if let Some(done) = stopping.take() {
                        let _ = done.send(());
                    }
                    return;
                }
                Ok(stream) => {
                    self.stream_id = stream.stream_id.clone();
                    disconnected = None;
                    backoff = Duration::from_millis(250);
                    let resubscribed = self.framework_id.is_some();
                    self.serve(stream, &mut commands, resubscribed).await
                }
                Err(e) => Ended::Dropped(format!(
                    "subscribing to the master at {}: {e}",
                    self.config.master
                )),
            };
            let why = match ended {
                Ended::Finished => return,
                Ended::Dropped(why) => why,
            };
            self.stream_id = None;
            if self.framework_id.is_none() {
                // Never subscribed: nothing to fail over, tell `start`.
                if let Ok(mut st) = self.state.lock() {
                    st.subscribed = Some(Err(Error::Config(why)));
                }
                return;
            }
            let since = *disconnected.get_or_insert_with(Instant::now);
            if since.elapsed() > self.config.failover_timeout {
                self.fail_everything(&format!(
                    "lost the Mesos master for longer than the failover timeout ({:?}): {why}",
                    self.config.failover_timeout
                ));
                return;
            }
            if stopping.is_some() {
                // Keep trying to tear down until the caller gives up waiting.
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            tracing::warn!("Mesos subscription dropped ({why}); re-subscribing in {backoff:?}");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                cmd = commands.recv() => match cmd {
                    // Re-subscribe at once, only to send TEARDOWN: a framework left
                    // registered keeps its executors' resources until the failover timeout.
                    Some(Command::Stop(done)) => {
                        stopping = Some(done);
                        continue;
                    }
                    None => return,
                    // Queued tasks are looked at once subscribed again; cached blocks
                    // are dropped with the executors' next message or their exit.
                    Some(Command::Wake | Command::Message(_) | Command::Kill(_)) => {}
                },
            }
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }

    /// Handle one subscription's events and the backend's commands until it ends.
    async fn serve(
        &mut self,
        mut stream: EventStream,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        resubscribed: bool,
    ) -> Ended {
        let mut first_event = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut leader = self.leader.as_ref().map(LeaderWatch::subscribe);
        loop {
            let record = tokio::select! {
                r = stream.next_record() => r,
                changed = leader_changed(&mut leader) => {
                    match changed {
                        Some(Some(addr)) if addr != self.endpoint.addr => {
                            return Ended::Dropped(format!("the leading master is now {addr}"));
                        }
                        // No leader for now: the stream ends if ours is gone.
                        Some(_) => continue,
                        None => {
                            leader = None;
                            continue;
                        }
                    }
                }
                _ = tick.tick() => {
                    self.watch_waiting();
                    continue;
                }
                cmd = commands.recv() => {
                    match cmd {
                        Some(Command::Wake) => self.revive_if_needed().await,
                        Some(Command::Kill(executor)) => self.kill_executor(&executor),
                        Some(Command::Message(msg)) => self.message_executors(&msg),
                        Some(Command::Stop(done)) => {
                            self.teardown().await;
                            let _ = done.send(());
                            return Ended::Finished;
                        }
                        None => {
                            self.teardown().await;
                            return Ended::Finished;
                        }
                    }
                    continue;
                }
            };
            let bytes = match record {
                Ok(Some(b)) => b,
                Ok(None) => return Ended::Dropped("the master closed the subscription".into()),
                Err(e) => return Ended::Dropped(e.to_string()),
            };
            let event = match Event::decode(bytes) {
                Ok(e) => e,
                Err(e) => return Ended::Dropped(format!("undecodable event: {e}")),
            };
            let kind = event::Type::try_from(event.r#type.unwrap_or(0));
            if first_event && kind != Ok(event::Type::Subscribed) && kind != Ok(event::Type::Error)
            {
                return Ended::Dropped("the subscription did not start with SUBSCRIBED".into());
            }
            first_event = false;
            match kind {
                Ok(event::Type::Subscribed) => {
                    let Some(s) = event.subscribed else { continue };
                    let id = s.framework_id.value;
                    if let Some(secs) = s.heartbeat_interval_seconds.filter(|s| *s > 0.0) {
                        stream.set_idle(
                            Duration::from_secs_f64(secs * 5.0).max(Duration::from_secs(1)),
                        );
                    }
                    self.framework_id = Some(id.clone());
                    if let Ok(mut st) = self.state.lock() {
                        st.subscribed.get_or_insert(Ok(id.clone()));
                    }
                    tracing::info!(framework = id, resubscribed, "SUBSCRIBED");
                    if resubscribed {
                        self.reconcile().await;
                    }
                    // Tasks may have arrived while the subscription was down.
                    self.revive_if_needed().await;
                }
                Ok(event::Type::Offers) => {
                    let offers = event.offers.map(|o| o.offers).unwrap_or_default();
                    self.note_offers(&offers);
                    if self.control.is_some() {
                        self.on_offers_coarse(offers).await;
                    } else {
                        self.on_offers(offers).await;
                    }
                }
                Ok(event::Type::Rescind) => {
                    // Offers are answered at once and never held: nothing to take back.
                    tracing::debug!("offer rescinded");
                }
                Ok(event::Type::Update) => {
                    if let Some(u) = event.update {
                        self.on_update(u.status);
                    }
                }
                Ok(event::Type::Failure) => {
                    if let Some(f) = event.failure {
                        self.on_failure(f);
                    }
                }
                Ok(event::Type::Error) => {
                    let msg = event.error.map(|e| e.message).unwrap_or_default();
                    let why = format!("the Mesos master refused the framework: {msg}");
                    if self.framework_id.is_none() {
                        if let Ok(mut st) = self.state.lock() {
                            st.subscribed = Some(Err(Error::Config(why)));
                        }
                    } else {
                        self.fail_everything(&why);
                    }
                    return Ended::Finished;
                }
                _ => {} // HEARTBEAT (the watchdog saw bytes), MESSAGE, inverse offers
            }
        }
    }

    /// The framework can run nothing any more: fail what runs and what waits, and every
    /// job (and every later task at once).
    fn fail_everything(&self, why: &str) {
        tracing::error!("{why}");
        let (pending, inflight) = match self.state.lock() {
            Ok(mut st) => {
                st.failed = Some(why.to_string());
                (
                    st.pending.drain(..).map(|t| t.id).collect::<Vec<_>>(),
                    st.inflight.drain().map(|(id, _)| id).collect::<Vec<_>>(),
                )
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
        for id in pending.into_iter().chain(inflight) {
            self.events.task_ended(
                id,
                Err(TaskFailure::Error {
                    message: why.to_string(),
                }),
            );
        }
        self.events.backend_failed(why);
    }

    async fn revive_if_needed(&mut self) {
        if self.suppressed && !self.pending_is_empty() {
            self.suppressed = false;
            let mut c = self.call(call::Type::Revive);
            c.revive = Some(call::Revive {
                roles: self.config.roles.clone(),
            });
            tracing::debug!("REVIVE");
            if let Err(e) = self.send(c).await {
                tracing::warn!("REVIVE failed: {e}");
                self.suppressed = true;
            }
        }
    }

    async fn suppress(&mut self) {
        if !self.suppressed {
            self.suppressed = true;
            let mut c = self.call(call::Type::Suppress);
            c.suppress = Some(call::Suppress {
                roles: self.config.roles.clone(),
            });
            tracing::debug!("SUPPRESS");
            self.send_later(c);
        }
    }

    async fn reconcile(&mut self) {
        let task = |id: String, agent: &str| call::reconcile::Task {
            task_id: MesosTaskId { value: id },
            agent_id: Some(AgentId {
                value: agent.to_string(),
            }),
        };
        let mut tasks: Vec<call::reconcile::Task> = self.state.lock().map_or_else(
            |_| Vec::new(),
            |st| {
                st.inflight
                    .iter()
                    .map(|(id, t)| task(mesos_task_id(*id), &t.agent))
                    .collect()
            },
        );
        // Coarse executors that have not registered yet: one that ended while the master
        // was away would otherwise be waited for. Registered ones are known to be alive
        // (or lost) through their own connection, whatever a new master knows.
        if let Ok(c) = self.coarse.lock() {
            tasks.extend(
                c.executors
                    .iter()
                    .filter(|(_, e)| !e.registered)
                    .map(|(id, e)| task(id.clone(), &e.agent)),
            );
        }
        tracing::info!(tasks = tasks.len(), "RECONCILE");
        let mut c = self.call(call::Type::Reconcile);
        c.reconcile = Some(call::Reconcile { tasks });
        if let Err(e) = self.send(c).await {
            tracing::warn!("RECONCILE failed: {e}");
        }
    }

    /// Send every live executor `msg` as a framework MESSAGE.
    fn message_executors(&self, msg: &spate_core::protocol::ToExecutor) {
        let Ok(data) = spate_core::ship::codec::to_vec(msg) else {
            return;
        };
        let targets: Vec<(String, String)> = self.state.lock().map_or_else(
            |_| Vec::new(),
            |st| {
                st.executors
                    .iter()
                    .map(|(id, e)| (id.clone(), e.agent.clone()))
                    .collect()
            },
        );
        for (executor, agent) in targets {
            let mut c = self.call(call::Type::Message);
            c.message = Some(call::Message {
                agent_id: AgentId { value: agent },
                executor_id: ExecutorId { value: executor },
                data: data.clone(),
            });
            self.send_later(c);
        }
    }

    async fn teardown(&mut self) {
        if self.framework_id.is_none() {
            return;
        }
        tracing::info!("TEARDOWN");
        let c = self.call(call::Type::Teardown);
        if let Err(e) = self.send(c).await {
            tracing::warn!("TEARDOWN failed: {e}");
        }
        self.framework_id = None;
    }

    fn new_executor_info(
        &self,
        st: &mut State,
        offer: &Offer,
        resources: Vec<v1::Resource>,
        task_cpus: f64,
    ) -> ExecutorInfo {
        st.next_executor += 1;
        let id = format!("spate-exec-{}", st.next_executor);
        // Task threads: as many as this agent's offered cpus can run at once.
        let cpus = super::offers::total(&offer.resources, "cpus");
        let threads = ((cpus / task_cpus.max(0.001)).ceil() as usize).max(1);
        let mut command = self.command.clone();
        if let Some(env) = command.environment.as_mut() {
            env.variables
                .push(env_var(env::SECRET, &self.secret.to_hex()));
            env.variables
                .push(env_var(env::CORES, &threads.to_string()));
            env.variables
                .push(env_var(env::DRIVER_ALIVE, &self.control_addr));
        }
        ExecutorInfo {
            r#type: Some(executor_info::Type::Custom as i32),
            executor_id: ExecutorId { value: id },
            framework_id: self.framework_id.clone().map(|value| FrameworkId { value }),
            command: Some(command),
            resources,
            name: Some(format!("spate executor ({})", self.config.name)),
            ..Default::default()
        }
    }

    async fn on_offers(&mut self, offers: Vec<Offer>) {
        let mut accepts = Vec::new();
        let (declined, idle) = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let task_cpus = st.task_cpus;
            if st.first_offer_slots.is_none() {
                // Task slots: what each agent fits next to its executor.
                let per_task = task_cpus.max(0.001);
                st.first_offer_slots = Some(
                    offers
                        .iter()
                        .map(|o| {
                            let cpus = super::offers::total(&o.resources, "cpus")
                                - self.config.executor_cpus;
                            (cpus / per_task + 1e-9).floor().max(0.0) as usize
                        })
                        .sum(),
                );
            }
            let agent_of = |e: &String| st.executors.get(e).map(|x| x.agent.clone());
            let asks: Vec<Ask> = st
                .pending
                .iter()
                .map(|t| Ask {
                    task: t.id,
                    cpus: task_cpus,
                    mem: self.config.task_mem_mb,
                    preferred: t.preferred.iter().filter_map(agent_of).collect(),
                    avoid: t.avoid.iter().filter_map(agent_of).collect(),
                })
                .collect();
            // An executor is reused only while the master still lists it on the agent.
            let live = |o: &Offer| {
                st.agents.get(&o.agent_id.value).is_some_and(|info| {
                    o.executor_ids
                        .iter()
                        .any(|e| e.value == info.executor_id.value)
                })
            };
            let needs = ExecutorNeeds {
                cpus: self.config.executor_cpus,
                mem: self.config.executor_mem_mb,
            };
            // Agents given up on (a bad binary, executors that crash) get no tasks: their
            // offers go to `fit` empty (and are declined).
            let bad: std::collections::HashSet<String> = self
                .coarse
                .lock()
                .map(|c| c.bad_agents.keys().cloned().collect())
                .unwrap_or_default();
            let usable: Vec<Offer> = offers
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    if bad.contains(&o.agent_id.value) {
                        o.resources.clear();
                    }
                    o
                })
                .collect();
            let placements = fit(&asks, &usable, needs, live);
            if !placements.is_empty() {
                st.waiting_since = None;
            }
            let mut used = vec![false; offers.len()];
            for p in placements {
                used[p.offer] = true;
                let offer = &offers[p.offer];
                let agent = offer.agent_id.value.clone();
                let info = match p.executor {
                    Some(resources) => {
                        let info = self.new_executor_info(&mut st, offer, resources, task_cpus);
                        let threads = info
                            .command
                            .iter()
                            .flat_map(|c| c.environment.iter().flat_map(|e| &e.variables))
                            .find(|v| v.name == env::CORES)
                            .and_then(|v| v.value.as_deref()?.parse().ok())
                            .unwrap_or(1);
                        st.executors.insert(
                            info.executor_id.value.clone(),
                            ExecutorEntry {
                                agent: agent.clone(),
                                threads,
                                block_server: None,
                            },
                        );
                        st.agents.insert(agent.clone(), info.clone());
                        info
                    }
                    None => match st.agents.get(&agent) {
                        Some(info) => info.clone(),
                        None => continue,
                    },
                };
                let mut tasks = Vec::new();
                for (task_id, resources) in p.tasks {
                    let Some(pos) = st.pending.iter().position(|t| t.id == task_id) else {
                        continue;
                    };
                    let Some(task) = st.pending.remove(pos) else {
                        continue;
                    };
                    match self.task_info(&st, &task, &agent, resources, &info) {
                        Ok(ti) => {
                            tasks.push(ti);
                            st.inflight.insert(
                                task.id,
                                Inflight {
                                    kind: task.kind,
                                    executor: info.executor_id.value.clone(),
                                    agent: agent.clone(),
                                },
                            );
                        }
                        Err(message) => self
                            .events
                            .task_ended(task.id, Err(TaskFailure::Error { message })),
                    }
                }
                accepts.push((offer.id.clone(), tasks));
            }
            (unused(&offers, &used), st.pending.is_empty())
        };
        for (offer_id, tasks) in accepts {
            let ids: Vec<TaskId> = tasks
                .iter()
                .filter_map(|t| scheduler_task_id(&t.task_id.value))
                .collect();
            tracing::debug!(offer = offer_id.value, tasks = ids.len(), "ACCEPT");
            let c = self.accept(offer_id, tasks, REFUSE_ACCEPTED);
            if let Err(e) = self.send(c).await {
                // Not launched: the tasks end now and the scheduler retries them.
                let message = format!("launching on Mesos failed: {e}");
                for id in ids {
                    let known = self
                        .state
                        .lock()
                        .ok()
                        .and_then(|mut st| st.inflight.remove(&id));
                    if known.is_some() {
                        self.events.task_ended(
                            id,
                            Err(TaskFailure::Error {
                                message: message.clone(),
                            }),
                        );
                    }
                }
            }
        }
        self.decline(declined, if idle { REFUSE_IDLE } else { REFUSE_BUSY });
        if idle {
            self.suppress().await;
        }
    }

    fn task_info(
        &self,
        st: &State,
        task: &TaskLaunch,
        agent: &str,
        resources: Vec<v1::Resource>,
        executor: &ExecutorInfo,
    ) -> std::result::Result<TaskInfo, String> {
        let launch = launch_message(task, &self.secret, |e| {
            st.executors.get(e).and_then(|x| x.block_server.clone())
        })?;
        let data = spate_core::ship::codec::to_vec(&launch)
            .map_err(|e| format!("encoding the task: {e}"))?;
        Ok(TaskInfo {
            name: format!(
                "{} stage {} partition {} attempt {}",
                self.config.name, task.stage, task.partition, task.attempt
            ),
            task_id: MesosTaskId {
                value: mesos_task_id(task.id),
            },
            agent_id: AgentId {
                value: agent.into(),
            },
            resources,
            executor: Some(executor.clone()),
            data: Some(data),
            ..Default::default()
        })
    }

    fn on_update(&mut self, status: v1::TaskStatus) {
        let agent = status
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if status.task_id.value.starts_with(coarse::EXECUTOR_PREFIX) {
            self.on_executor_update(&status, &agent);
        } else {
            self.handle_update(&status, &agent);
        }
        // Acknowledge after handling, every update with a uuid and only those.
        if let Some(uuid) = status.uuid.clone() {
            let mut c = self.call(call::Type::Acknowledge);
            c.acknowledge = Some(call::Acknowledge {
                agent_id: AgentId { value: agent },
                task_id: status.task_id.clone(),
                uuid,
            });
            self.send_later(c);
        }
    }

    fn handle_update(&mut self, status: &v1::TaskStatus, agent: &str) {
        let Some(task) = scheduler_task_id(&status.task_id.value) else {
            tracing::warn!(
                task = status.task_id.value,
                "update for a task spate did not launch"
            );
            return;
        };
        let data: Option<StatusData> = status
            .data
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| spate_core::ship::codec::from_slice(d).ok());
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let executor = st.inflight.get(&task).map(|t| t.executor.clone());
        if let (Some(d), Some(e)) = (&data, &executor)
            && let Some(entry) = st.executors.get_mut(e)
            && entry.block_server.is_none()
            && d.exe_id == exe_id()
        {
            entry.block_server = Some(d.block_server.clone());
            self.events
                .executor_observed(e, entry.threads, Some(&d.block_server));
        }
        if !is_terminal(status.state) {
            return;
        }
        // A reconciliation answer never carries data: a task that finished while the
        // subscription was down keeps waiting for the agent's retry of the real update.
        if status.reason == Some(spate_mesos::REASON_RECONCILIATION)
            && status.state == v1::TaskState::TaskFinished as i32
            && data.is_none()
        {
            return;
        }
        // The first terminal update is final; later ones are only acknowledged.
        let Some(inflight) = st.inflight.remove(&task) else {
            return;
        };
        drop(st);
        let fail = |message: String| Err(TaskFailure::Error { message });
        let executor = inflight.executor.as_str();
        match data {
            Some(d) if d.exe_id != exe_id() => {
                let why = format!(
                    "executor {executor} on agent {agent} runs a different build of the program \
                     (binary {:016x}, driver {:016x}); redeploy the executor with the driver's exact binary",
                    d.exe_id,
                    exe_id()
                );
                self.events.task_ended(task, fail(why.clone()));
                self.remove_broken_executor(executor, agent, &why);
            }
            Some(StatusData {
                state: TaskState::Finished(r),
                report,
                ..
            }) => report_end(&self.events, task, &inflight.kind, executor, Ok(r), report),
            Some(StatusData {
                state: TaskState::Failed(f),
                report,
                ..
            }) => report_end(&self.events, task, &inflight.kind, executor, Err(f), report),
            Some(StatusData {
                state: TaskState::Running,
                ..
            })
            | None => {
                let executor_died = status.state == v1::TaskState::TaskFailed as i32
                    && status.reason == Some(spate_mesos::REASON_EXECUTOR_TERMINATED);
                if let (true, Some((addr, framework))) = (executor_died, self.sandbox_of(agent)) {
                    // The executor died under the task: its stderr says how.
                    let (events, executor, auth) =
                        (self.events.clone(), executor.to_string(), self.auth.clone());
                    let why = describe(status, agent);
                    tokio::spawn(async move {
                        let words = last_stderr_words(&addr, &framework, &executor, auth).await;
                        let message = match words {
                            Some(w) => format!("{why}; executor {executor} died: {w}"),
                            None => why,
                        };
                        events.task_ended(task, Err(TaskFailure::Error { message }));
                    });
                    return;
                }
                self.events.task_ended(task, fail(describe(status, agent)));
                // An agent that lost its master usually lost its executors too: their map
                // outputs are gone now, not when the master removes the agent (75 s later).
                if status.state == v1::TaskState::TaskLost as i32
                    && status.reason == Some(spate_mesos::REASON_AGENT_DISCONNECTED)
                {
                    self.executor_failed(executor, agent);
                }
            }
        }
    }

    /// A fine-grained executor that cannot run this program's tasks (a different build):
    /// shut it down and use its agent no more, instead of retrying tasks there.
    fn remove_broken_executor(&mut self, executor: &str, agent: &str, why: &str) {
        if let Ok(mut c) = self.coarse.lock() {
            c.failed_to_start(agent, why, true);
        }
        let mut c = self.call(call::Type::Shutdown);
        c.shutdown = Some(call::Shutdown {
            executor_id: ExecutorId {
                value: executor.to_string(),
            },
            agent_id: AgentId {
                value: agent.to_string(),
            },
        });
        self.send_later(c);
        self.executor_failed(executor, agent);
    }

    /// `executor` on `agent` is gone, as if the master had said so in a FAILURE event.
    fn executor_failed(&mut self, executor: &str, agent: &str) {
        self.on_failure(event::Failure {
            agent_id: Some(AgentId {
                value: agent.to_string(),
            }),
            executor_id: Some(ExecutorId {
                value: executor.to_string(),
            }),
            status: None,
        });
    }

    /// An executor (or a whole agent) is gone: its running tasks failed and its map
    /// outputs are lost.
    fn on_failure(&mut self, f: event::Failure) {
        let agent = f.agent_id.map(|a| a.value);
        if let Some(control) = &self.control {
            // Coarse: a removed agent takes its executor with it (its task's TASK_LOST
            // usually said so already).
            let gone: Vec<String> = self.coarse.lock().map_or_else(
                |_| Vec::new(),
                |mut c| {
                    let ids: Vec<String> = c
                        .executors
                        .iter()
                        .filter(|(_, e)| agent.as_deref() == Some(e.agent.as_str()))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in &ids {
                        c.executors.remove(id);
                    }
                    ids
                },
            );
            for id in gone {
                let why = format!(
                    "agent {} was removed with executor {id}",
                    agent.as_deref().unwrap_or("?")
                );
                control.lose(&id, &why, false);
            }
            return;
        }
        let lost: Vec<(String, String, Vec<TaskId>, bool)> = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let ids: Vec<String> = match (&f.executor_id, &agent) {
                (Some(e), _) => vec![e.value.clone()],
                (None, Some(a)) => st
                    .executors
                    .iter()
                    .filter(|(_, x)| &x.agent == a)
                    .map(|(id, _)| id.clone())
                    .collect(),
                (None, None) => Vec::new(),
            };
            ids.into_iter()
                .filter_map(|id| {
                    let entry = st.executors.remove(&id)?;
                    if st
                        .agents
                        .get(&entry.agent)
                        .is_some_and(|i| i.executor_id.value == id)
                    {
                        st.agents.remove(&entry.agent);
                    }
                    let tasks: Vec<TaskId> = st
                        .inflight
                        .iter()
                        .filter(|(_, t)| t.executor == id)
                        .map(|(t, _)| *t)
                        .collect();
                    for t in &tasks {
                        st.inflight.remove(t);
                    }
                    let started = entry.block_server.is_some();
                    Some((id, entry.agent, tasks, started))
                })
                .collect()
        };
        for (executor, agent, tasks, started) in lost {
            let why = match (&f.executor_id, f.status) {
                (Some(_), Some(s)) => {
                    format!(
                        "executor {executor} on agent {agent} died ({})",
                        crate::backend::wait_status(s)
                    )
                }
                (Some(_), None) => format!("executor {executor} on agent {agent} terminated"),
                (None, _) => format!("agent {agent} was lost with executor {executor}"),
            };
            tracing::warn!("{why}");
            if !started
                && f.executor_id.is_some()
                && let Ok(mut c) = self.coarse.lock()
            {
                // Never heard from: it crashed on start (a broken binary, a missing
                // library); after two of those the agent gets no more tasks.
                c.failed_to_start(&agent, &why, false);
            }
            let events = self.events.clone();
            let report = move |why: String| {
                for t in tasks {
                    events.task_ended(
                        t,
                        Err(TaskFailure::Error {
                            message: why.clone(),
                        }),
                    );
                }
                events.executor_lost(&executor, &why);
            };
            match (f.status, self.sandbox_of(&agent)) {
                (Some(_), Some((addr, framework))) => {
                    // It died: its stderr says how (read from the sandbox, briefly).
                    let (id, auth) = (f.executor_id.clone(), self.auth.clone());
                    tokio::spawn(async move {
                        let id = id.map(|e| e.value).unwrap_or_default();
                        match last_stderr_words(&addr, &framework, &id, auth).await {
                            Some(words) => report(format!("{why}: {words}")),
                            None => report(why),
                        }
                    });
                }
                _ => report(why),
            }
        }
    }
}

/// Bytes of map outputs an executor of `mem_mb` keeps in memory when not told otherwise:
/// an eighth, so that they stay well within what Mesos gave it.
fn shuffle_memory_budget(mem_mb: f64) -> String {
    ((mem_mb * 1024.0 * 1024.0 / 8.0) as u64).to_string()
}

/// Bytes of cached partitions a coarse executor of `mem_mb` may keep: the driver's
/// `SPATE_CACHE_MEMORY` when set, else half the executor's memory.
fn cache_budget(mem_mb: f64) -> String {
    std::env::var("SPATE_CACHE_MEMORY")
        .ok()
        .filter(|v| v.parse::<usize>().is_ok())
        .unwrap_or_else(|| ((mem_mb * 1024.0 * 1024.0 / 2.0) as u64).to_string())
}

/// The ids of the offers not `used`.
fn unused(offers: &[Offer], used: &[bool]) -> Vec<OfferId> {
    offers
        .iter()
        .zip(used)
        .filter(|(_, u)| !**u)
        .map(|(o, _)| o.id.clone())
        .collect()
}

/// Seconds an offer declined in coarse mode stays away (REVIVE clears it when an
/// executor ends and its agent is needed again).
const COARSE_REFUSE: f64 = 120.0;

impl Framework {
    /// Remember the largest offer (for the no-fit message); in fine-grained mode, shrink
    /// default-sized tasks on the first offers when no agent fits one next to an executor.
    fn note_offers(&self, offers: &[Offer]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for o in offers {
            let (cpus, mem) = (
                super::offers::total(&o.resources, "cpus"),
                super::offers::total(&o.resources, "mem"),
            );
            if st.largest_offer.as_ref().is_none_or(|l| cpus > l.0) {
                st.largest_offer = Some((cpus, mem, o.agent_id.value.clone()));
            }
            if let Some(addr) = coarse::agent_addr(o) {
                st.agent_addrs.insert(o.agent_id.value.clone(), addr);
            }
        }
        if self.control.is_none() && st.first_offer_slots.is_none() && !self.config.task_cpus_set {
            let biggest = offers
                .iter()
                .map(|o| super::offers::total(&o.resources, "cpus"))
                .fold(0.0, f64::max);
            let room = biggest - self.config.executor_cpus;
            if biggest > 0.0 && room + 1e-9 < st.task_cpus && room >= 0.1 {
                let cpus = (room * 1000.0).floor() / 1000.0;
                tracing::info!(
                    "the largest agent offers {biggest} cpus: tasks use {cpus} cpus each (set SPATE_TASK_CPUS to choose)"
                );
                st.task_cpus = cpus;
            }
        }
    }

    /// Coarse mode: start one executor on each offered agent that has none.
    async fn on_offers_coarse(&mut self, offers: Vec<Offer>) {
        let sizes = coarse::Sizes {
            task_cpus: self.config.task_cpus,
            task_mem: self.config.task_mem_mb,
            executor_mem: self.config.executor_mem_mb,
            max_cores: self.config.max_cores,
        };
        let planned = match self.coarse.lock() {
            Ok(mut c) => coarse::plan(&mut c, &offers, sizes),
            Err(_) => Vec::new(),
        };
        let any_executor = self.coarse.lock().is_ok_and(|c| !c.executors.is_empty());
        if let Ok(mut st) = self.state.lock() {
            st.first_offer_slots
                .get_or_insert(planned.iter().map(|p| p.threads).sum());
        }
        let driver = self.control_addr.clone();
        let mut used = vec![false; offers.len()];
        for p in &planned {
            used[p.offer] = true;
            let offer = &offers[p.offer];
            let mut vars = vec![
                (env::DRIVER, driver.clone()),
                (env::EXECUTOR_ID, p.executor.clone()),
                (env::SECRET, self.secret.to_hex()),
                (env::CORES, p.threads.to_string()),
                (env::WORK_DIR, "spate-work".to_string()),
                // Cached partitions within the memory Mesos gave the executor (a
                // cgroups-isolated agent kills an executor that outgrows it).
                ("SPATE_CACHE_MEMORY", cache_budget(p.mem)),
            ];
            // Map outputs likewise (a budget set by the user is in the command already).
            if self.config.shuffle_memory.is_none() {
                vars.push((env::SHUFFLE_MEMORY, shuffle_memory_budget(p.mem)));
            }
            let task =
                coarse::executor_task(p, offer, &self.config.name, self.command.clone(), &vars);
            tracing::info!(
                executor = p.executor,
                agent = offer.agent_id.value,
                cpus = p.cpus,
                mem = p.mem,
                threads = p.threads,
                "starting a coarse-grained executor"
            );
            let c = self.accept(offer.id.clone(), vec![task], COARSE_REFUSE);
            if let Err(e) = self.send(c).await {
                tracing::warn!(executor = p.executor, "launching an executor failed: {e}");
                if let Ok(mut c) = self.coarse.lock() {
                    c.executors.remove(&p.executor);
                }
            }
        }
        // Without any executor, look again soon; otherwise these agents have one (or are
        // too small or given up on) until an executor ends.
        let refuse = if any_executor {
            COARSE_REFUSE
        } else {
            REFUSE_BUSY
        };
        self.decline(unused(&offers, &used), refuse);
    }

    /// ACCEPT `offer` to LAUNCH `tasks`, its unused part filtered for `refuse` seconds.
    fn accept(&self, offer: OfferId, tasks: Vec<TaskInfo>, refuse: f64) -> Call {
        let mut c = self.call(call::Type::Accept);
        c.accept = Some(call::Accept {
            offer_ids: vec![offer],
            operations: vec![offer::Operation {
                r#type: Some(offer::operation::Type::Launch as i32),
                launch: Some(offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            }],
            filters: Some(Filters {
                refuse_seconds: Some(refuse),
            }),
        });
        c
    }

    /// DECLINE `offers` (if any), filtered for `refuse` seconds.
    fn decline(&self, offers: Vec<OfferId>, refuse: f64) {
        if offers.is_empty() {
            return;
        }
        let mut c = self.call(call::Type::Decline);
        c.decline = Some(call::Decline {
            offer_ids: offers,
            filters: Some(Filters {
                refuse_seconds: Some(refuse),
            }),
        });
        self.send_later(c);
    }

    /// Coarse mode: the Mesos task of an executor changed state.
    fn on_executor_update(&mut self, status: &v1::TaskStatus, agent: &str) {
        let id = status.task_id.value.clone();
        if !is_terminal(status.state) {
            tracing::debug!(
                executor = id,
                state = state_name(status.state),
                "executor task"
            );
            return;
        }
        let Some(entry) = self.coarse.lock().ok().and_then(|mut c| {
            // A new leading master answers for agents that have not re-registered with it
            // yet; a connected executor's own channel is the truth.
            let connected = c.executors.get(&id).is_some_and(|e| e.registered);
            if connected && status.reason == Some(spate_mesos::REASON_RECONCILIATION) {
                return None;
            }
            c.executors.remove(&id)
        }) else {
            return;
        };
        let (why, fatal) = coarse::ended_why(status, agent, &self.control_addr);
        if entry.registered {
            let Some(control) = self.control.clone() else {
                return;
            };
            let died = matches!(
                v1::TaskState::try_from(status.state),
                Ok(v1::TaskState::TaskFailed | v1::TaskState::TaskError)
            );
            match self.sandbox_of(agent) {
                Some((addr, framework)) if died => {
                    // Its stderr says what the update cannot ("has overflowed its stack",
                    // a panic): read the sandbox's tail first, briefly.
                    let auth = self.auth.clone();
                    tokio::spawn(async move {
                        let words = last_stderr_words(&addr, &framework, &id, auth).await;
                        let why = match words {
                            Some(w) => format!("executor {id} died ({why}): {w}"),
                            None => format!("executor {id} died ({why})"),
                        };
                        control.lose(&id, &why, false);
                    });
                }
                // At once, also when the agent merely disconnected (TASK_LOST): its block
                // server is gone with it, so its map outputs are recomputed elsewhere now.
                _ => control.lose(&id, &format!("executor {id} ended: {why}"), false),
            }
        } else {
            tracing::warn!(executor = id, "executor ended before registering: {why}");
            if let Ok(mut c) = self.coarse.lock() {
                c.failed_to_start(&entry.agent, &why, fatal);
            }
        }
        // Its agent may take a new executor: clear the decline filters.
        let mut c = self.call(call::Type::Revive);
        c.revive = Some(call::Revive {
            roles: self.config.roles.clone(),
        });
        self.send_later(c);
    }

    /// Coarse mode: kill the Mesos task of an executor that stopped answering.
    fn kill_executor(&self, executor: &str) {
        let agent = self
            .coarse
            .lock()
            .ok()
            .and_then(|c| c.executors.get(executor).map(|e| e.agent.clone()));
        let mut c = self.call(call::Type::Kill);
        c.kill = Some(call::Kill {
            task_id: MesosTaskId {
                value: executor.to_string(),
            },
            agent_id: agent.map(|value| AgentId { value }),
            kill_policy: None,
        });
        self.send_later(c);
    }

    /// Tasks that wait too long for resources fail the running jobs with why, instead of
    /// hanging: no offer fits a task (fine) or no executor runs (coarse).
    fn watch_waiting(&self) {
        let coarse = self.control.is_some();
        let (executors, bad) = self.coarse.lock().map_or((0, Vec::new()), |c| {
            let mut bad: Vec<String> = c
                .bad_agents
                .iter()
                .map(|(a, why)| format!("{a}: {why}"))
                .collect();
            bad.sort();
            (c.executors.len(), bad)
        });
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // Fine-grained: only while none of our tasks is in flight. Running (or starting)
        // tasks hold the resources pending ones wait for, and finish or fail on their own;
        // counting that time failed jobs whose executors merely started slowly, before
        // the real cause (say, an executor refusing a different build) could be reported.
        let waiting = if coarse {
            executors == 0
        } else {
            !st.pending.is_empty() && st.inflight.is_empty()
        };
        if !waiting {
            st.waiting_since = None;
            st.largest_offer = None;
            return;
        }
        let since = *st.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.config.offer_timeout {
            return;
        }
        st.waiting_since = Some(Instant::now());
        let largest = match &st.largest_offer {
            Some((c, m, a)) => {
                format!("the largest offer seen had {c} cpus and {m} MB (agent {a})")
            }
            None => "no offer arrived (is an agent registered with free resources?)".into(),
        };
        let waited = self.config.offer_timeout;
        let mut why = if coarse {
            format!(
                "no spate executor could start on Mesos for {waited:?}: one needs at least \
                 {} cpus and {} MB on an agent; {largest}",
                coarse::MIN_CPUS,
                self.config.executor_mem_mb + self.config.task_mem_mb
            )
        } else {
            format!(
                "no Mesos offer fit a task for {waited:?}: a task needs {} cpus and {} MB, \
                 plus {} cpus and {} MB for the executor on an agent without one; {largest}; \
                 lower SPATE_TASK_CPUS / SPATE_EXECUTOR_CPUS or use coarse-grained mode",
                st.task_cpus,
                self.config.task_mem_mb,
                self.config.executor_cpus,
                self.config.executor_mem_mb
            )
        };
        if !bad.is_empty() {
            why.push_str(&format!("; agents not used: {}", bad.join("; ")));
        }
        st.largest_offer = None;
        drop(st);
        tracing::warn!("{why}");
        self.events.backend_failed(&why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_executors_last_words_leave_the_agents_log_lines_out() {
        let sandbox = "I1130 15:22:12.882987 13926 fetcher.cpp:562] Fetcher Info: {...}\n\
                       starting\n\
                       thread 'spate-executor-task-0' has overflowed its stack\n\
                       fatal runtime error: stack overflow, aborting\n\
                       I1130 15:22:13.000000 13927 executor.cpp:1000] Command terminated with signal Aborted (pid: 7)\n";
        assert_eq!(
            program_lines(sandbox).as_deref(),
            Some(
                "starting | thread 'spate-executor-task-0' has overflowed its stack | \
                 fatal runtime error: stack overflow, aborting"
            )
        );
        assert_eq!(
            program_lines("I1130 15:22:12.882987 1 x.cpp:1] only mesos\n"),
            None
        );
    }

    #[test]
    fn wait_statuses_read_as_exit_codes_or_signals() {
        assert_eq!(crate::backend::wait_status(0), "exit status 0");
        assert_eq!(crate::backend::wait_status(3 << 8), "exit status 3");
        assert_eq!(crate::backend::wait_status(6), "signal 6 (SIGABRT)");
        assert_eq!(
            crate::backend::wait_status(9),
            "signal 9 (SIGKILL: killed, e.g. out of memory)"
        );
    }

    #[test]
    fn task_ids_round_trip_and_foreign_ids_are_not_ours() {
        assert_eq!(scheduler_task_id(&mesos_task_id(42)), Some(42));
        assert_eq!(scheduler_task_id("other-7"), None);
        assert_eq!(scheduler_task_id("spate-x"), None);
    }

    #[test]
    fn statuses_without_data_name_state_reason_and_agent() {
        let st = v1::TaskStatus {
            task_id: MesosTaskId {
                value: "spate-3".into(),
            },
            state: v1::TaskState::TaskLost as i32,
            reason: Some(11),
            message: Some("agent gone".into()),
            ..Default::default()
        };
        assert_eq!(
            describe(&st, "a1"),
            "Mesos reported task spate-3 TASK_LOST on agent a1 (REASON_AGENT_REMOVED): agent gone"
        );
        assert!(is_terminal(v1::TaskState::TaskError as i32));
        assert!(!is_terminal(v1::TaskState::TaskRunning as i32));
        assert!(!is_terminal(v1::TaskState::TaskStarting as i32));
    }

    #[test]
    fn the_launch_command_runs_only_the_binary_with_the_drivers_hash() {
        let dir = std::env::temp_dir().join(format!("spate-checked-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let exe = dir.join("prog");
        let script = b"#!/bin/sh\necho \"ran $1 $2\"\n";
        std::fs::write(&exe, script).expect("write");
        std::process::Command::new("chmod")
            .args(["755", &exe.to_string_lossy()])
            .status()
            .expect("chmod");
        let run = |sha: &str| {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(checked_launch(
                    "./prog",
                    sha,
                    &["it's".to_string(), "b c".to_string()],
                ))
                .current_dir(&dir)
                .output()
                .expect("sh")
        };
        let good = run(&sha256_hex(script));
        assert_eq!(good.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&good.stdout), "ran it's b c\n");
        let bad = run(&sha256_hex(b"another binary"));
        assert_eq!(
            bad.status.code(),
            Some(spate_core::protocol::exit::CORRUPT_DOWNLOAD)
        );
        assert!(String::from_utf8_lossy(&bad.stderr).contains("corrupt download"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn zk_masters_route_through_their_first_server() {
        let c = MesosConfig::new("zk://127.0.0.1:2181,10.0.0.2:2181/mesos", "a");
        assert_eq!(advertised_host(&c), "127.0.0.1");
        let c = MesosConfig::new("zk://u:p@localhost:2181/mesos", "a");
        assert_eq!(advertised_host(&c), "127.0.0.1");
        assert_eq!("fine".parse::<MesosMode>().ok(), Some(MesosMode::Fine));
        assert_eq!(
            "Coarse-grained".parse::<MesosMode>().ok(),
            Some(MesosMode::Coarse)
        );
        assert!("medium".parse::<MesosMode>().is_err());
    }

    #[test]
    fn basic_auth_only_with_principal_and_secret() {
        let mut c = MesosConfig::new("m:5050", "app");
        assert_eq!(basic_auth(&c), None);
        c.principal = Some("user".into());
        c.secret = Some("pass".into());
        assert_eq!(basic_auth(&c).as_deref(), Some("Basic dXNlcjpwYXNz"));
        assert_eq!(
            advertised_host(&MesosConfig::new("127.0.0.1:5050", "a")),
            "127.0.0.1"
        );
        assert!(!current_user().is_empty());
    }
}
