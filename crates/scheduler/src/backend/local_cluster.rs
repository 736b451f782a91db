//! `local-cluster[N,CORES,MEM]`: N executor processes of this very binary on this machine.
//!
//! The driver listens on a loopback port and starts each executor with the environment
//! that makes `Context::new()` enter executor mode. Executors connect back, register with
//! their binary identity (a different build is refused, with a message saying what to
//! redeploy), and then receive sealed task envelopes and send status updates, the same
//! payloads Mesos carries in `TaskInfo.data` / `TaskStatus.data`. An executor is lost when
//! its process exits or its connection drops; both are reported at once.

use super::control::{Control, ControlHooks};
use super::{SchedulerBackend, TaskLaunch};
use crate::event::EventSink;
use spate_core::error::{Error, Result};
use spate_core::protocol::{ToExecutor, env};
use spate_core::ship::{Secret, exe_id};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long executors get to register at start.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    /// Number of executor processes.
    pub executors: usize,
    /// Task slots per executor.
    pub cores: usize,
    /// Memory per executor, MiB: an eighth of it holds map outputs in memory unless
    /// `shuffle_memory` says otherwise.
    pub memory_mb: usize,
    /// The executable to start (default: this process's own image).
    pub exe: Option<PathBuf>,
    /// An executor silent for this long (no heartbeat, no status) is lost and killed.
    pub heartbeat_timeout: Duration,
    /// Map-side memory budget per task, bytes (`None`: the executor's default).
    pub spill_bytes: Option<usize>,
    /// Bytes of map outputs each executor keeps in memory, the rest on disk (`None`: an
    /// eighth of `memory_mb`).
    pub shuffle_memory: Option<usize>,
}

/// Default for [`LocalClusterConfig::heartbeat_timeout`].
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Executor processes by id, shared with their watchers.
type Children = Arc<Mutex<Vec<(String, Arc<Mutex<Child>>)>>>;

/// What the local cluster keeps of the control channel's news.
#[derive(Default)]
struct State {
    refused: Mutex<Vec<String>>,
    registered: AtomicUsize,
    /// Executors declared lost while their process still runs: the watcher kills them.
    to_kill: Mutex<Vec<String>>,
}

impl ControlHooks for Arc<State> {
    fn registered(&self, _executor: &str, _cores: usize) {
        self.registered.fetch_add(1, Ordering::SeqCst);
    }
    fn refused(&self, _executor: &str, message: &str) {
        if let Ok(mut r) = self.refused.lock() {
            r.push(message.to_string());
        }
    }
    fn lost(&self, executor: &str, _why: &str, silent: bool) {
        if silent && let Ok(mut k) = self.to_kill.lock() {
            k.push(executor.to_string());
        }
    }
}

/// Backend of executor processes on this machine.
pub struct LocalClusterBackend {
    config: LocalClusterConfig,
    secret: Secret,
    work_root: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<State>,
    control: Option<Arc<Control>>,
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
            state: Arc::new(State::default()),
            control: None,
            children: Arc::new(Mutex::new(Vec::new())),
            stopping: Arc::new(AtomicBool::new(false)),
            running: Arc::new(AtomicBool::new(false)),
            events: None,
        }
    }

    fn spawn_executors(
        &mut self,
        driver_addr: &str,
        control: Arc<Control>,
        events: &EventSink,
    ) -> Result<()> {
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
            shuffle_memory: self
                .config
                .shuffle_memory
                .unwrap_or(self.config.memory_mb.saturating_mul(1 << 20) / 8),
            work_root: self.work_root.clone(),
            state: self.state.clone(),
            control,
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

/// An executor's stderr, passed on to the driver's and its last lines kept: how a dead
/// executor died (a panic, a stack overflow, an abort) is usually its last words.
#[derive(Clone)]
struct StderrTail {
    lines: Arc<Mutex<std::collections::VecDeque<String>>>,
    done: Arc<AtomicBool>,
}

impl StderrTail {
    fn forward(stderr: Option<std::process::ChildStderr>, id: &str) -> StderrTail {
        let tail = StderrTail {
            lines: Arc::new(Mutex::new(std::collections::VecDeque::new())),
            done: Arc::new(AtomicBool::new(false)),
        };
        let Some(stderr) = stderr else {
            tail.done.store(true, Ordering::SeqCst);
            return tail;
        };
        let me = tail.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("spate-stderr-{id}"))
            .spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if line.trim().is_empty() {
                        continue;
                    }
                    if let Ok(mut l) = me.lines.lock() {
                        if l.len() == super::LAST_WORDS {
                            l.pop_front();
                        }
                        l.push_back(line);
                    }
                }
                me.done.store(true, Ordering::SeqCst);
            });
        if spawned.is_err() {
            tail.done.store(true, Ordering::SeqCst);
        }
        tail
    }

    /// The last lines, once the pipe is drained (or `wait` passed).
    fn last_words(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        while !self.done.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let lines = self.lines.lock().ok()?;
        super::last_words(lines.iter().map(String::as_str))
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
    shuffle_memory: usize,
    work_root: PathBuf,
    state: Arc<State>,
    control: Arc<Control>,
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
        cmd.env(env::SHUFFLE_MEMORY, self.shuffle_memory.to_string());
        let child = cmd
            .args(&self.args)
            .env(env::DRIVER, &self.driver_addr)
            .env(env::EXECUTOR_ID, &id)
            .env(env::SECRET, self.secret.to_hex())
            .env(env::WORK_DIR, &dir)
            .env(env::CORES, self.cores.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("starting executor", self.exe.clone(), e))?;
        let mut child = child;
        let tail = StderrTail::forward(child.stderr.take(), &id);
        let child = Arc::new(Mutex::new(child));
        if let Ok(mut children) = self.children.lock() {
            children.push((id.clone(), child.clone()));
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("spate-watch-{id}"))
            .spawn(move || me.watch(&id, &child, &tail))
            .map_err(|e| Error::Other(format!("starting executor watcher: {e}")))?;
        Ok(())
    }

    /// Process exit is the fastest sign of a lost executor; a lost one is replaced.
    fn watch(self: &Arc<Self>, id: &str, child: &Mutex<Child>, tail: &StderrTail) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let status = child
                .lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                // Reported once, by whoever notices first (this watcher or the connection,
                // which leaves the watcher a moment to say how the process died).
                let last = tail.last_words(Duration::from_millis(200));
                let how = {
                    use std::os::unix::process::ExitStatusExt as _;
                    super::wait_status(status.into_raw())
                };
                let why = match last {
                    Some(words) => format!("executor {id} died ({how}): {words}"),
                    None => format!("executor {id} died ({how})"),
                };
                self.control.lose(id, &why, false);
                let _ = std::fs::remove_dir_all(self.work_root.join(id));
                self.replace(id);
                return;
            }
            let doomed = self
                .state
                .to_kill
                .lock()
                .is_ok_and(|k| k.iter().any(|k| k == id));
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
            let live = self.control.connected();
            tracing::warn!(executor = lost, "not replacing a lost executor: {e}");
            if live == 0 {
                self.events.backend_failed(&format!(
                    "every executor was lost and none could be replaced ({e})"
                ));
            }
        }
    }
}

impl SchedulerBackend for LocalClusterBackend {
    fn start(&mut self, events: EventSink) -> Result<()> {
        let rt = crate::backend::driver_runtime("spate-driver-io")?;
        let (control, addr) = rt.block_on(Control::start(
            "127.0.0.1",
            events.clone(),
            self.secret.clone(),
            self.config.heartbeat_timeout,
            Box::new(self.state.clone()),
        ))?;
        self.runtime = Some(rt);
        self.events = Some(events.clone());
        self.control = Some(control.clone());
        self.spawn_executors(&addr.to_string(), control, &events)?;
        // Wait until every executor registered (or one was refused, or died).
        let deadline = Instant::now() + REGISTER_TIMEOUT;
        loop {
            let registered = self.state.registered.load(Ordering::SeqCst);
            let refused = self
                .state
                .refused
                .lock()
                .ok()
                .and_then(|r| r.first().cloned());
            if let Some(msg) = refused {
                self.stop();
                return Err(Error::Config(msg));
            }
            if registered >= self.config.executors {
                // From now on a lost executor is replaced (not during start-up, where a
                // death means something is wrong with the binary or the machine).
                self.running.store(true, Ordering::SeqCst);
                return Ok(());
            }
            let exited = self.children.lock().ok().and_then(|cs| {
                cs.iter().find_map(|(id, c)| {
                    let status = c
                        .lock()
                        .ok()
                        .and_then(|mut c| c.try_wait().ok().flatten())?;
                    Some((id.clone(), status))
                })
            });
            if let Some((id, status)) = exited {
                self.stop();
                return Err(Error::Other(format!(
                    "executor {id} exited before registering ({status}; see its stderr above)"
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
        match &self.control {
            Some(c) => c.launch(executor, task),
            None => {
                if let Some(events) = &self.events {
                    events.task_ended(
                        task.id,
                        Err(spate_core::task::TaskFailure::Error {
                            message: "the local cluster is not running".into(),
                        }),
                    );
                }
            }
        }
    }

    fn default_parallelism(&self) -> usize {
        (self.config.executors * self.config.cores).max(1)
    }

    fn unpersist(&mut self, key: u64) {
        if let Some(c) = &self.control {
            c.broadcast(ToExecutor::Unpersist(key));
        }
    }

    fn remove_shuffle(&mut self, shuffle: spate_core::rdd::ShuffleId) {
        if let Some(c) = &self.control {
            c.broadcast(ToExecutor::RemoveShuffle(shuffle));
        }
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(c) = &self.control {
            c.shutdown();
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
