//! spate's custom Mesos executor over the v1 executor HTTP API.
//!
//! Started by a Mesos agent (the program's own binary, fetched from the driver), it
//! subscribes to its agent, runs LAUNCHed tasks on the shared executor [`Core`], and
//! reports every state change as an UPDATE with a fresh v4 uuid and `SOURCE_EXECUTOR`.
//! Updates and tasks stay in its books until the agent ACKNOWLEDGES them and are re-sent
//! on every re-subscription. KILL is answered with TASK_KILLED (and a task's later result
//! is dropped: a task gets one terminal update, never two). On SHUTDOWN it kills what
//! runs, waits for the acknowledgements within the grace period, and exits.

use crate::core::{Core, CoreSettings};
use crate::runtime::{DEFAULT_EXECUTOR_MEMORY_BUDGET, DEFAULT_SPILL_BYTES, ExecutorError};
use bytes::Bytes;
use prost::Message as _;
use spate_core::protocol::{LaunchTask, RemoteFailure, Report, StatusData, TaskState, env};
use spate_core::ship::{Secret, exe_id};
use spate_mesos::http::{Endpoint, EventStream, Retry, post};
use spate_mesos::v1::executor::{Call, Event, call, event};
use spate_mesos::v1::{self, ExecutorId, FrameworkId, TaskId, TaskInfo, TaskStatus};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How a Mesos agent (and spate's framework, through `CommandInfo.environment`) configured
/// this executor.
#[derive(Clone, Debug)]
pub struct MesosExecutorConfig {
    /// `ip:port` of the agent.
    pub agent: String,
    /// Framework id.
    pub framework_id: String,
    /// Executor id.
    pub executor_id: String,
    /// Sandbox (work dir).
    pub sandbox: PathBuf,
    /// Whether the framework checkpoints (then a lost agent connection is retried).
    pub checkpoint: bool,
    /// Time allowed between SHUTDOWN and exit.
    pub shutdown_grace: Duration,
    /// `Authorization: Bearer` token, when executor authentication is on.
    pub token: Option<String>,
    /// Application secret.
    pub secret: Secret,
    /// Task threads.
    pub cores: usize,
    /// Map-side memory budget per task.
    pub spill_bytes: usize,
    /// Bytes of map outputs kept in memory (the rest go to disk).
    pub shuffle_memory: usize,
    /// Address for the block server; defaults to the agent's IP (reachable by the driver
    /// and the other executors as the agent is).
    pub bind: String,
}

/// Parse a Mesos duration string (`5secs`, `1.5secs`, `15mins`, `200ms`, …).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "secs" => n,
        "mins" => n * 60.0,
        "hrs" => n * 3600.0,
        "days" => n * 86400.0,
        "weeks" => n * 604_800.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

impl MesosExecutorConfig {
    /// Read the environment the agent (and the framework) set.
    pub fn from_env() -> Result<Self, ExecutorError> {
        let var =
            |k: &str| std::env::var(k).map_err(|_| ExecutorError::Env(format!("{k} is not set")));
        let opt = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let agent = var("MESOS_AGENT_ENDPOINT")?;
        let agent_ip = agent
            .rsplit_once(':')
            .map_or("127.0.0.1", |(h, _)| h)
            .to_string();
        Ok(MesosExecutorConfig {
            framework_id: var("MESOS_FRAMEWORK_ID")?,
            executor_id: var("MESOS_EXECUTOR_ID")?,
            sandbox: opt("MESOS_SANDBOX")
                .or_else(|| opt("MESOS_DIRECTORY"))
                .map(PathBuf::from)
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_else(|| PathBuf::from(".")),
            checkpoint: opt("MESOS_CHECKPOINT").as_deref() == Some("1"),
            shutdown_grace: opt("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD")
                .and_then(|d| parse_duration(&d))
                .unwrap_or(Duration::from_secs(5)),
            token: opt("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"),
            secret: Secret::from_hex(&var(env::SECRET)?)
                .map_err(|e| ExecutorError::Env(format!("{}: {e}", env::SECRET)))?,
            cores: opt(env::CORES).and_then(|c| c.parse().ok()).unwrap_or(1),
            spill_bytes: opt(env::SPILL_BYTES)
                .and_then(|c| c.parse().ok())
                .unwrap_or(DEFAULT_SPILL_BYTES),
            shuffle_memory: opt(env::SHUFFLE_MEMORY)
                .and_then(|c| c.parse().ok())
                .unwrap_or(DEFAULT_EXECUTOR_MEMORY_BUDGET),
            bind: opt(env::BIND_HOST).unwrap_or(agent_ip),
            agent,
        })
    }
}

/// A fresh RFC 4122 version-4 uuid (the agent checks the version nibble).
pub fn uuid_v4() -> Vec<u8> {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to time and a counter (still unique per process).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.to_vec()
}

fn terminal(state: &TaskState) -> bool {
    !matches!(state, TaskState::Running)
}

/// The executor's books: what the agent has not acknowledged yet.
struct Books {
    /// Spate task id → Mesos task id.
    ids: HashMap<u64, TaskId>,
    /// Launched tasks without any acknowledged update yet.
    unacked_tasks: HashMap<String, TaskInfo>,
    /// Updates sent and not acknowledged, by uuid.
    unacked_updates: HashMap<Vec<u8>, call::Update>,
    /// Tasks whose terminal update was sent (never send a second one).
    finished: HashSet<String>,
}

struct Executor {
    config: MesosExecutorConfig,
    endpoint: Endpoint,
    books: Books,
    block_server: String,
}

impl Executor {
    fn call(&self, r#type: call::Type) -> Call {
        Call {
            executor_id: ExecutorId {
                value: self.config.executor_id.clone(),
            },
            framework_id: FrameworkId {
                value: self.config.framework_id.clone(),
            },
            r#type: Some(r#type as i32),
            ..Default::default()
        }
    }

    fn auth(&self) -> Option<String> {
        self.config.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn subscribe_call(&self) -> Call {
        let mut c = self.call(call::Type::Subscribe);
        c.subscribe = Some(call::Subscribe {
            unacknowledged_tasks: self.books.unacked_tasks.values().cloned().collect(),
            unacknowledged_updates: self.books.unacked_updates.values().cloned().collect(),
        });
        c
    }

    /// Build, record and send an UPDATE for `task`.
    async fn update(&mut self, task: TaskId, state: TaskState, report: Report) {
        let key = task.value.clone();
        if self.books.finished.contains(&key) {
            return; // its terminal update was already sent (e.g. killed)
        }
        let (mesos_state, message) = match &state {
            TaskState::Running => (v1::TaskState::TaskRunning, None),
            TaskState::Finished(_) => (v1::TaskState::TaskFinished, None),
            TaskState::Failed(RemoteFailure::Panicked(m)) => {
                (v1::TaskState::TaskFailed, Some(format!("panicked: {m}")))
            }
            TaskState::Failed(RemoteFailure::Error(m)) => {
                (v1::TaskState::TaskFailed, Some(m.clone()))
            }
            TaskState::Failed(RemoteFailure::FetchFailed { message, .. }) => {
                (v1::TaskState::TaskFailed, Some(message.clone()))
            }
        };
        if terminal(&state) {
            self.books.finished.insert(key);
        }
        let data = StatusData {
            exe_id: exe_id(),
            block_server: self.block_server.clone(),
            state,
            report,
        };
        self.send_status(
            task,
            mesos_state,
            message,
            spate_core::ship::codec::to_vec(&data).ok(),
        )
        .await;
    }

    async fn send_status(
        &mut self,
        task: TaskId,
        state: v1::TaskState,
        message: Option<String>,
        data: Option<Vec<u8>>,
    ) {
        let uuid = uuid_v4();
        let status = TaskStatus {
            task_id: task,
            state: state as i32,
            message,
            source: Some(v1::task_status::Source::Executor as i32),
            data,
            executor_id: Some(ExecutorId {
                value: self.config.executor_id.clone(),
            }),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64()),
            uuid: Some(uuid.clone()),
            ..Default::default()
        };
        let update = call::Update { status };
        self.books.unacked_updates.insert(uuid, update.clone());
        let mut c = self.call(call::Type::Update);
        c.update = Some(update);
        let auth = self.auth();
        // A failed POST leaves the update in the books; it is re-sent on re-subscription.
        if let Err(e) = post(
            &mut self.endpoint,
            Bytes::from(c.encode_to_vec()),
            None,
            auth.as_deref(),
            Retry::default(),
        )
        .await
        {
            tracing::warn!("sending an update to the agent failed: {e}");
        }
    }

    fn acknowledged(&mut self, task: &TaskId, uuid: &[u8]) {
        self.books.unacked_updates.remove(uuid);
        self.books.unacked_tasks.remove(&task.value);
    }
}

/// Run the Mesos executor until SHUTDOWN (or a lost agent without checkpointing); returns
/// the process exit code.
pub fn run(config: MesosExecutorConfig) -> i32 {
    match run_inner(config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spate mesos executor: {e}");
            2
        }
    }
}

enum Input {
    Event(Box<Event>),
    StreamEnded(String),
    Status(u64, TaskState, Report),
    DriverGone,
}

/// Resolves when the driver process is gone: its liveness connection closes (or cannot be
/// made for a minute). Without the variable, never. A driver that dies without TEARDOWN
/// leaves its framework registered until the failover timeout; its executors need not
/// hold their resources that long.
async fn driver_gone(addr: Option<String>) {
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let started = Instant::now();
    let mut refused = 0;
    let mut conn = loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(c) => break c,
            // The port is open before any executor starts: refusals mean the driver died.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && refused >= 2 => {
                tracing::warn!("the driver at {addr} is gone: {e}");
                return;
            }
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                tracing::warn!("cannot reach the driver at {addr}: {e}");
                return;
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    refused += 1;
                }
                tokio::time::sleep(Duration::from_secs(1)).await
            }
        }
    };
    let mut buf = [0u8; 64];
    loop {
        match tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn run_inner(config: MesosExecutorConfig) -> Result<(), ExecutorError> {
    let (status_tx, mut status_rx) = mpsc::unbounded_channel::<(u64, TaskState, Report)>();
    let core = Core::start(
        CoreSettings {
            executor: config.executor_id.clone(),
            secret: config.secret.clone(),
            work_dir: config.sandbox.join("spate"),
            cores: config.cores,
            spill_bytes: config.spill_bytes,
            shuffle_memory: config.shuffle_memory,
            bind: config.bind.clone(),
        },
        Arc::new(move |task, state, report| {
            let _ = status_tx.send((task, state, report));
        }),
    )?;
    let block_server = core.block_addr().to_string();
    let mut ex = Executor {
        endpoint: Endpoint {
            addr: config.agent.clone(),
            path: "/api/v1/executor".into(),
        },
        config,
        books: Books {
            ids: HashMap::new(),
            unacked_tasks: HashMap::new(),
            unacked_updates: HashMap::new(),
            finished: HashSet::new(),
        },
        block_server,
    };
    let alive = std::env::var(env::DRIVER_ALIVE)
        .ok()
        .filter(|a| !a.is_empty());
    let outcome = core.runtime().block_on(async {
        let gone = driver_gone(alive);
        tokio::pin!(gone);
        let mut shutting_down: Option<Instant> = None;
        'subscribe: loop {
            // Retry SUBSCRIBE about every second until the agent answers (it may return
            // 503 or 404 while it starts or recovers).
            let started = Instant::now();
            let mut stream = loop {
                let body = Bytes::from(ex.subscribe_call().encode_to_vec());
                let retry = Retry {
                    attempts: 1,
                    ..Retry::default()
                };
                let auth = ex.auth();
                match EventStream::subscribe(&mut ex.endpoint, body, auth.as_deref(), retry, Duration::from_secs(45 * 60)).await {
                    Ok(s) => break s,
                    Err(e) if started.elapsed() < Duration::from_secs(60) => {
                        tracing::debug!("subscribing to the agent: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(ExecutorError::Io(format!("could not subscribe to agent {}: {e}", ex.config.agent))),
                }
            };
            loop {
                if let Some(since) = shutting_down
                    && (ex.books.unacked_updates.is_empty() || since.elapsed() > ex.config.shutdown_grace)
                {
                    return Ok(());
                }
                let input = tokio::select! {
                    rec = stream.next_record() => match rec {
                        Ok(Some(bytes)) => match Event::decode(bytes) {
                            Ok(e) => Input::Event(Box::new(e)),
                            Err(e) => Input::StreamEnded(format!("undecodable event: {e}")),
                        },
                        Ok(None) => Input::StreamEnded("the agent closed the subscription".into()),
                        Err(e) => Input::StreamEnded(e.to_string()),
                    },
                    Some((task, state, report)) = status_rx.recv() => Input::Status(task, state, report),
                    () = &mut gone, if shutting_down.is_none() => Input::DriverGone,
                    _ = tokio::time::sleep(Duration::from_millis(100)), if shutting_down.is_some() => continue,
                };
                match input {
                    Input::DriverGone => {
                        tracing::warn!("the driver is gone; exiting");
                        return Ok(());
                    }
                    Input::Status(task, state, report) => {
                        if let Some(id) = ex.books.ids.get(&task).cloned() {
                            ex.update(id, state, report).await;
                        }
                    }
                    Input::StreamEnded(why) => {
                        if shutting_down.is_some() {
                            return Ok(());
                        }
                        if !ex.config.checkpoint {
                            tracing::warn!("subscription lost ({why}); not checkpointing, exiting");
                            return Ok(());
                        }
                        tracing::warn!("subscription lost ({why}); re-subscribing");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'subscribe;
                    }
                    Input::Event(e) => match event::Type::try_from(e.r#type.unwrap_or(0)) {
                        Ok(event::Type::Subscribed) => tracing::info!("subscribed to the agent"),
                        Ok(event::Type::Launch) => {
                            let Some(task) = e.launch.map(|l| l.task) else { continue };
                            let id = task.task_id.clone();
                            ex.books.unacked_tasks.insert(id.value.clone(), task.clone());
                            let launch: Result<LaunchTask, _> =
                                spate_core::ship::codec::from_slice(task.data.as_deref().unwrap_or_default());
                            match launch {
                                Ok(l) => {
                                    ex.books.ids.insert(l.task, id);
                                    core.launch(l);
                                }
                                Err(err) => {
                                    let msg = format!("task {} carries no spate task: {err}", id.value);
                                    ex.update(id, TaskState::Failed(RemoteFailure::Error(msg)), Report::default()).await;
                                }
                            }
                        }
                        Ok(event::Type::Kill) => {
                            if let Some(k) = e.kill
                                && !ex.books.finished.contains(&k.task_id.value)
                            {
                                // The closure cannot be interrupted; its result will be
                                // dropped, and the task reported killed now.
                                ex.books.finished.insert(k.task_id.value.clone());
                                ex.send_status(k.task_id, v1::TaskState::TaskKilled, Some("killed by the framework".into()), None)
                                    .await;
                            }
                        }
                        Ok(event::Type::Acknowledged) => {
                            if let Some(a) = e.acknowledged {
                                ex.acknowledged(&a.task_id, &a.uuid);
                            }
                        }
                        Ok(event::Type::Shutdown) => {
                            let running: Vec<TaskId> = ex
                                .books
                                .ids
                                .values()
                                .filter(|t| !ex.books.finished.contains(&t.value))
                                .cloned()
                                .collect();
                            for t in running {
                                ex.books.finished.insert(t.value.clone());
                                ex.send_status(t, v1::TaskState::TaskKilled, Some("executor shut down".into()), None).await;
                            }
                            shutting_down = Some(Instant::now());
                        }
                        Ok(event::Type::Message) => {
                            // Framework messages carry the same control payloads as the
                            // local-cluster channel (drop a persisted RDD, a shuffle).
                            let data = e.message.map(|m| m.data).unwrap_or_default();
                            if let Ok(msg) = spate_core::ship::codec::from_slice(&data) {
                                core.drop_data(&msg);
                            }
                        }
                        Ok(event::Type::Error) => {
                            let msg = e.error.map(|er| er.message).unwrap_or_default();
                            tracing::warn!("agent error: {msg}; re-subscribing");
                            continue 'subscribe;
                        }
                        _ => {}
                    },
                }
            }
        }
    });
    core.shutdown();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_uuids() {
        assert_eq!(parse_duration("5secs"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5secs"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("15mins"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5parsecs"), None);
        let u = uuid_v4();
        assert_eq!(u.len(), 16);
        assert_eq!(u[6] >> 4, 4, "version 4");
        assert_eq!(u[8] >> 6, 0b10, "RFC 4122 variant");
        assert_ne!(uuid_v4(), u);
    }
}
