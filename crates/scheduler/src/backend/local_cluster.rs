//! `local-cluster[N,CORES,MEM]`: N executor processes of this very binary on this machine.
//!
//! The driver listens on a loopback port and starts each executor with the environment
//! that makes `Context::new()` enter executor mode. Executors connect back, register with
//! their binary identity (a different build is refused, with a message saying what to
//! redeploy), and then receive sealed task envelopes and send status updates, the same
//! payloads Mesos carries in `TaskInfo.data` / `TaskStatus.data`. An executor is lost when
//! its process exits or its connection drops; both are reported at once.

use super::{SchedulerBackend, TaskLaunch, block_servers, report_end};
use crate::event::EventSink;
use spate_core::error::{Error, Result};
use spate_core::protocol::{FrameDecoder, LaunchTask, TaskState, ToDriver, ToExecutor, env, frame};
use spate_core::ship::{Secret, exe_id, seal};
use spate_core::task::{TaskFailure, TaskKind, TaskOutput};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long executors get to register at start.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    /// Number of executor processes.
    pub executors: usize,
    /// Task slots per executor.
    pub cores: usize,
    /// Memory per executor, MiB (informational for now).
    pub memory_mb: usize,
    /// The executable to start (default: this process's own image).
    pub exe: Option<PathBuf>,
    /// An executor silent for this long (no heartbeat, no status) is lost and killed.
    pub heartbeat_timeout: Duration,
    /// Map-side memory budget per task, bytes (`None`: the executor's default).
    pub spill_bytes: Option<usize>,
}

/// Default for [`LocalClusterConfig::heartbeat_timeout`].
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Executor processes by id, shared with their watchers.
type Children = Arc<Mutex<Vec<(String, Arc<Mutex<Child>>)>>>;

struct Conn {
    outbox: mpsc::UnboundedSender<ToExecutor>,
    block_server: String,
}

#[derive(Default)]
struct State {
    conns: HashMap<String, Conn>,
    /// Tasks sent and not yet ended: what they run (to decode their results).
    inflight: HashMap<u64, TaskKind>,
    refused: Vec<String>,
    registered: usize,
    /// Executors declared lost while their process still runs: the watcher kills them.
    to_kill: Vec<String>,
}

/// Backend of executor processes on this machine.
pub struct LocalClusterBackend {
    config: LocalClusterConfig,
    secret: Secret,
    work_root: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<Mutex<State>>,
    children: Children,
    stopping: Arc<AtomicBool>,
    /// Set once every executor registered.
    running: Arc<AtomicBool>,
    events: Option<EventSink>,
}

impl LocalClusterBackend {
    /// A backend that will start `config.executors` processes when started.
    pub fn new(config: LocalClusterConfig, secret: Secret) -> Self {
        // One root per backend: a process may run several local clusters, and stopping
        // one removes its root.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let work_root = std::env::temp_dir().join(format!(
            "spate-{}-{:04x}-{}",
            std::process::id(),
            exe_id() & 0xffff,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        LocalClusterBackend {
            config,
            secret,
            work_root,
            runtime: None,
            state: Arc::new(Mutex::new(State::default())),
            children: Arc::new(Mutex::new(Vec::new())),
            stopping: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicBool::new(false)),
            events: None,
        }
    }

    fn spawn_executors(&mut self, driver_addr: &str, events: &EventSink) -> Result<()> {
        // /proc/self/exe is the image this process runs, even if the file was rebuilt since.
        let exe = self
            .config
            .exe
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let spawner = Arc::new(Spawner {
            exe,
            args: std::env::args_os().skip(1).collect(),
            driver_addr: driver_addr.to_string(),
            secret: self.secret.clone(),
            cores: self.config.cores,
            spill_bytes: self.config.spill_bytes,
            work_root: self.work_root.clone(),
            state: self.state.clone(),
            events: events.clone(),
            stopping: self.stopping.clone(),
            running: self.running.clone(),
            children: self.children.clone(),
            next_id: Mutex::new(0),
            // A dead executor is replaced, like a standalone cluster manager would, up to
            // this many times in all.
            replacements_left: Mutex::new(4 * self.config.executors),
        });
        for _ in 0..self.config.executors {
            spawner.spawn()?;
        }
        Ok(())
    }
}

/// Starts executor processes and watches them; shared with the watcher threads so a lost
/// executor can be replaced.
struct Spawner {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    driver_addr: String,
    secret: Secret,
    cores: usize,
    spill_bytes: Option<usize>,
    work_root: PathBuf,
    state: Arc<Mutex<State>>,
    events: EventSink,
    stopping: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    children: Children,
    next_id: Mutex<usize>,
    replacements_left: Mutex<usize>,
}

impl Spawner {
    fn spawn(self: &Arc<Self>) -> Result<()> {
        let id = match self.next_id.lock() {
            Ok(mut n) => {
                *n += 1;
                format!("exec-{}", *n - 1)
            }
            Err(_) => return Err(Error::Other("spawner state poisoned".into())),
        };
        let dir = self.work_root.join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("creating executor work dir", dir.clone(), e))?;
        let stdout = std::fs::File::create(dir.join("stdout"))
            .map_err(|e| Error::io("creating", dir.join("stdout"), e))?;
        let mut cmd = Command::new(&self.exe);
        if let Some(b) = self.spill_bytes {
            cmd.env(env::SPILL_BYTES, b.to_string());
        }
        let child = cmd
            .args(&self.args)
            .env(env::DRIVER, &self.driver_addr)
            .env(env::EXECUTOR_ID, &id)
            .env(env::SECRET, self.secret.to_hex())
            .env(env::WORK_DIR, &dir)
            .env(env::CORES, self.cores.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io("starting executor", self.exe.clone(), e))?;
        let child = Arc::new(Mutex::new(child));
        if let Ok(mut children) = self.children.lock() {
            children.push((id.clone(), child.clone()));
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("spate-watch-{id}"))
            .spawn(move || me.watch(&id, &child))
            .map_err(|e| Error::Other(format!("starting executor watcher: {e}")))?;
        Ok(())
    }

    /// Process exit is the fastest sign of a lost executor; a lost one is replaced.
    fn watch(self: &Arc<Self>, id: &str, child: &Mutex<Child>) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let status = child
                .lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                // Report once: whoever removes the connection (this watcher or the
                // connection reader) reports the loss.
                let known = self
                    .state
                    .lock()
                    .ok()
                    .is_some_and(|mut st| st.conns.remove(id).is_some());
                if known {
                    self.events
                        .executor_lost(id, &format!("executor process exited ({status})"));
                }
                let _ = std::fs::remove_dir_all(self.work_root.join(id));
                self.replace(id);
                return;
            }
            let doomed = self
                .state
                .lock()
                .ok()
                .is_some_and(|st| st.to_kill.iter().any(|k| k == id));
            if doomed && let Ok(mut c) = child.lock() {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn replace(self: &Arc<Self>, lost: &str) {
        if self.stopping.load(Ordering::SeqCst) || !self.running.load(Ordering::SeqCst) {
            return;
        }
        let allowed = self.replacements_left.lock().is_ok_and(|mut n| {
            let ok = *n > 0;
            *n = n.saturating_sub(1);
            ok
        });
        let outcome = if allowed {
            self.spawn()
        } else {
            Err(Error::Other("too many executors lost".into()))
        };
        if let Err(e) = outcome {
            let live = self.state.lock().map_or(0, |st| st.conns.len());
            tracing::warn!(executor = lost, "not replacing a lost executor: {e}");
            if live == 0 {
                self.events.backend_failed(&format!(
                    "every executor was lost and none could be replaced ({e})"
                ));
            }
        }
    }
}

/// Handle one executor connection: registration, then status updates until it closes.
async fn serve_executor(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    events: EventSink,
    stopping: Arc<AtomicBool>,
    heartbeat_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (outbox, mut rx) = mpsc::unbounded_channel::<ToExecutor>();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let Ok(bytes) = frame(&msg) else { continue };
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut me: Option<String> = None;
    loop {
        let n = match tokio::time::timeout(heartbeat_timeout, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                let why = format!("no heartbeat for {heartbeat_timeout:?}");
                if let (Some(id), Ok(mut st)) = (me.as_ref(), state.lock()) {
                    st.to_kill.push(id.clone());
                }
                return lost(&state, &events, &stopping, me.as_deref(), &why);
            }
        };
        decoder.push(&buf[..n]);
        loop {
            let msg = match decoder.next_frame::<ToDriver>() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("dropping executor connection: {e}");
                    return lost(
                        &state,
                        &events,
                        &stopping,
                        me.as_deref(),
                        "sent a malformed frame",
                    );
                }
            };
            match msg {
                ToDriver::Register {
                    executor,
                    exe_id: theirs,
                    cores,
                    block_server,
                    pid,
                } => {
                    if theirs != exe_id() {
                        let msg = format!(
                            "executor {executor} (pid {pid}) runs a different build of the program \
                             (binary {theirs:016x}, driver {:016x}); redeploy the executor with the driver's exact binary",
                            exe_id()
                        );
                        let _ = outbox.send(ToExecutor::Refused(msg.clone()));
                        if let Ok(mut st) = state.lock() {
                            st.refused.push(msg);
                        }
                        return;
                    }
                    tracing::info!(executor, pid, block_server, "executor registered");
                    if let Ok(mut st) = state.lock() {
                        st.conns.insert(
                            executor.clone(),
                            Conn {
                                outbox: outbox.clone(),
                                block_server,
                            },
                        );
                        st.registered += 1;
                    }
                    let _ = outbox.send(ToExecutor::Registered);
                    let address = state
                        .lock()
                        .ok()
                        .and_then(|st| st.conns.get(&executor).map(|c| c.block_server.clone()));
                    events.executor_added_at(&executor, cores, address.as_deref());
                    me = Some(executor);
                }
                ToDriver::Heartbeat => {}
                ToDriver::Status(status) => {
                    let Some(executor) = me.clone() else { continue };
                    let ended = match status.state {
                        TaskState::Running => continue,
                        TaskState::Finished(r) => Ok(r),
                        TaskState::Failed(f) => Err(f),
                    };
                    let kind = state
                        .lock()
                        .ok()
                        .and_then(|mut st| st.inflight.remove(&status.task));
                    let Some(kind) = kind else { continue };
                    report_end(&events, status.task, &kind, &executor, ended, status.report);
                }
            }
        }
    }
    lost(
        &state,
        &events,
        &stopping,
        me.as_deref(),
        "control connection closed",
    );
}

fn lost(
    state: &Mutex<State>,
    events: &EventSink,
    stopping: &AtomicBool,
    executor: Option<&str>,
    why: &str,
) {
    let Some(executor) = executor else { return };
    let known = state
        .lock()
        .ok()
        .is_some_and(|mut st| st.conns.remove(executor).is_some());
    if known && !stopping.load(Ordering::SeqCst) {
        events.executor_lost(executor, why);
    }
}

impl SchedulerBackend for LocalClusterBackend {
    fn start(&mut self, events: EventSink) -> Result<()> {
        let rt = crate::backend::driver_runtime("spate-driver-io")?;
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| Error::Other(format!("binding the driver's control port: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("driver control port: {e}")))?
            .to_string();
        let (state, ev, stopping) = (self.state.clone(), events.clone(), self.stopping.clone());
        let timeout = self.config.heartbeat_timeout;
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_executor(
                    stream,
                    state.clone(),
                    ev.clone(),
                    stopping.clone(),
                    timeout,
                ));
            }
        });
        self.runtime = Some(rt);
        self.events = Some(events.clone());
        self.spawn_executors(&addr, &events)?;
        // Wait until every executor registered (or one was refused, or died).
        let deadline = Instant::now() + REGISTER_TIMEOUT;
        loop {
            let (registered, refused) = match self.state.lock() {
                Ok(st) => (st.registered, st.refused.first().cloned()),
                Err(_) => return Err(Error::Other("backend state poisoned".into())),
            };
            if let Some(msg) = refused {
                self.stop();
                return Err(Error::Config(msg));
            }
            if registered == self.config.executors {
                // From now on a lost executor is replaced (not during start-up, where a
                // death means something is wrong with the binary or the machine).
                self.running.store(true, Ordering::SeqCst);
                return Ok(());
            }
            let exited = self.children.lock().ok().and_then(|cs| {
                cs.iter()
                    .find(|(_, c)| {
                        c.lock()
                            .ok()
                            .and_then(|mut c| c.try_wait().ok().flatten())
                            .is_some()
                    })
                    .map(|(id, _)| id.clone())
            });
            if let Some(id) = exited {
                self.stop();
                return Err(Error::Other(format!(
                    "executor {id} exited before registering (see its stderr above)"
                )));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(Error::Other(format!(
                    "only {registered} of {} executors registered within {REGISTER_TIMEOUT:?}",
                    self.config.executors
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn launch(&mut self, executor: &str, task: TaskLaunch) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let fail = |message: String| Err(TaskFailure::Error { message });
        let envelope = match seal(&task.kind, &self.secret) {
            Ok(e) => e,
            Err(e) => {
                drop(st);
                return self.events_for_failure(task.id, fail(format!("encoding the task: {e}")));
            }
        };
        let shuffle_locations = block_servers(&task.shuffle_locations, |e| {
            st.conns.get(e).map(|c| c.block_server.clone())
        });
        let msg = ToExecutor::Launch(LaunchTask {
            task: task.id,
            stage: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            envelope,
            shuffle_locations,
        });
        let sent = st
            .conns
            .get(executor)
            .is_some_and(|c| c.outbox.send(msg).is_ok());
        if sent {
            // Still under the state lock: the executor's status cannot overtake this.
            st.inflight.insert(task.id, task.kind);
        } else {
            drop(st);
            self.events_for_failure(task.id, fail(format!("executor {executor} is gone")));
        }
    }

    fn default_parallelism(&self) -> usize {
        (self.config.executors * self.config.cores).max(1)
    }

    fn unpersist(&mut self, key: u64) {
        if let Ok(st) = self.state.lock() {
            for c in st.conns.values() {
                let _ = c.outbox.send(ToExecutor::Unpersist(key));
            }
        }
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(st) = self.state.lock() {
            for c in st.conns.values() {
                let _ = c.outbox.send(ToExecutor::Shutdown);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let children: Vec<_> = self
            .children
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for (_, child) in &children {
            if let Ok(mut c) = child.lock() {
                while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if c.try_wait().ok().flatten().is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        let _ = std::fs::remove_dir_all(&self.work_root);
    }
}

impl LocalClusterBackend {
    /// A task that could not be handed to its executor ends at once, as a failure, so the
    /// scheduler retries it instead of waiting forever.
    fn events_for_failure(&self, task: u64, result: std::result::Result<TaskOutput, TaskFailure>) {
        if let Some(events) = &self.events {
            events.task_ended(task, result);
        }
    }
}
