//! The [`Context`]: a program's connection to where its tasks run.

use spate_core::Data;
use spate_core::accumulator::Accumulator;
use spate_core::broadcast::Broadcast;
use spate_core::config::{Config, Master};
use spate_core::error::{Error, Result};
use spate_core::rdd::{self, JobRunner, Rdd, TextFileOptions};
use spate_core::ship::Secret;
use spate_executor::role::{Role, current_role};
use spate_scheduler::backend::local_cluster::{
    DEFAULT_HEARTBEAT_TIMEOUT, LocalClusterBackend, LocalClusterConfig,
};
pub use spate_scheduler::backend::mesos::framework::MesosMode;
use spate_scheduler::backend::mesos::framework::{MesosBackend, MesosConfig};
use spate_scheduler::listener::{EventLog, Listener};
use spate_scheduler::{LocalBackend, Scheduler, SchedulerBackend};
use spate_shuffle::MemoryShuffleStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming the master when `--master` is not given.
pub const MASTER_ENV: &str = "SPATE_MASTER";

/// Entry point of a spate program. Create it first thing in `main`: when the process was
/// started as an executor, `Context::new()` is where it takes over. Dropping the context
/// stops its scheduler and workers.
pub struct Context {
    scheduler: Arc<Scheduler>,
    runner: Arc<dyn JobRunner>,
    config: Config,
    /// Dropped after the scheduler stopped, so the last state is served until then.
    ui: Option<spate_ui::UiServer>,
    /// Where executors reach the driver (`None` in local mode: tasks share values).
    driver_host: Option<String>,
    /// Started with the first broadcast in a cluster.
    broadcasts: std::sync::Mutex<Option<crate::broadcast_server::BroadcastServer>>,
    /// The application's checkpoint directories, removed when the context stops.
    checkpoint_dirs: std::sync::Mutex<Vec<PathBuf>>,
}

/// Programmatic configuration of a [`Context`].
#[derive(Clone, Debug)]
pub struct ContextBuilder {
    master: Option<String>,
    app_name: Option<String>,
    max_failures: Option<u32>,
    executor_exe: Option<std::path::PathBuf>,
    heartbeat_timeout: Option<std::time::Duration>,
    spill_bytes: Option<usize>,
    shuffle_memory: Option<usize>,
    mesos: Option<MesosOptions>,
    event_log: Option<std::path::PathBuf>,
    ui: Option<bool>,
    ui_port: Option<String>,
    progress: Option<bool>,
    speculation: Option<bool>,
}

/// Framework settings for `mesos://HOST:PORT`. Unset fields come from the environment
/// ([`MesosOptions::from_env`]), then from the defaults named on each field.
#[derive(Clone, Debug, Default)]
pub struct MesosOptions {
    /// Coarse-grained (default: one long-running executor task per agent holding its
    /// cpus, tasks sent to it directly) or fine-grained (one Mesos task per spate task)
    /// (`SPATE_MESOS_MODE=coarse|fine`).
    pub mode: Option<MesosMode>,
    /// Coarse-grained: the most cpus the executors hold in all (`SPATE_MESOS_MAX_CORES`;
    /// default: every cpu offered).
    pub max_cores: Option<f64>,
    /// How long tasks may wait for resources (no fitting offer, no executor) before the
    /// running jobs fail saying why (`SPATE_MESOS_OFFER_TIMEOUT`, seconds; default 60).
    pub offer_timeout: Option<Duration>,
    /// Unix user executors run as on the agents (`SPATE_MESOS_USER`; default: the current
    /// user, which must exist on every agent).
    pub user: Option<String>,
    /// Roles to take offers for (`SPATE_MESOS_ROLES`, comma-separated; default `*`).
    pub roles: Vec<String>,
    /// Principal for authentication and reservations (`SPATE_MESOS_PRINCIPAL`).
    pub principal: Option<String>,
    /// Secret for HTTP Basic authentication (`SPATE_MESOS_SECRET`).
    pub secret: Option<String>,
    /// How long the master keeps executors while the driver reconnects
    /// (`SPATE_MESOS_FAILOVER_TIMEOUT`, seconds; default 60).
    pub failover_timeout: Option<Duration>,
    /// Ask agents to checkpoint (`SPATE_MESOS_CHECKPOINT=1`; default off).
    pub checkpoint: Option<bool>,
    /// CPUs per task (`SPATE_TASK_CPUS`; default 1).
    pub task_cpus: Option<f64>,
    /// Memory per task, MB (`SPATE_TASK_MEM_MB`; default 512).
    pub task_mem_mb: Option<f64>,
    /// CPUs of each executor itself (`SPATE_EXECUTOR_CPUS`; default 0.1).
    pub executor_cpus: Option<f64>,
    /// Memory of each executor itself, MB (`SPATE_EXECUTOR_MEM_MB`; default 128).
    pub executor_mem_mb: Option<f64>,
    /// Host or IP the agents reach the driver at (`SPATE_ADVERTISED_HOST`; default: the
    /// local address of the route to the master).
    pub advertised_host: Option<String>,
    /// A pre-deployed executor: absolute path on every agent, or a URI for the fetcher
    /// (`SPATE_EXECUTOR_URI`; default: agents fetch the driver's own binary from it).
    pub executor_uri: Option<String>,
}

impl MesosOptions {
    /// Settings from `SPATE_MESOS_*` and friends (see each field).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
        MesosOptions {
            // An invalid value is reported when a Mesos context starts (`check_env`).
            mode: get("SPATE_MESOS_MODE").and_then(|m| m.parse().ok()),
            max_cores: num("SPATE_MESOS_MAX_CORES"),
            offer_timeout: num("SPATE_MESOS_OFFER_TIMEOUT")
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            user: get("SPATE_MESOS_USER"),
            roles: get("SPATE_MESOS_ROLES")
                .map(|r| r.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            principal: get("SPATE_MESOS_PRINCIPAL"),
            secret: get("SPATE_MESOS_SECRET"),
            failover_timeout: num("SPATE_MESOS_FAILOVER_TIMEOUT")
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            checkpoint: get("SPATE_MESOS_CHECKPOINT").map(|v| v == "1" || v == "true"),
            task_cpus: num("SPATE_TASK_CPUS"),
            task_mem_mb: num("SPATE_TASK_MEM_MB"),
            executor_cpus: num("SPATE_EXECUTOR_CPUS"),
            executor_mem_mb: num("SPATE_EXECUTOR_MEM_MB"),
            advertised_host: get("SPATE_ADVERTISED_HOST"),
            executor_uri: get("SPATE_EXECUTOR_URI"),
        }
    }

    /// These settings, with the unset ones taken from `other`.
    fn or(self, other: MesosOptions) -> MesosOptions {
        MesosOptions {
            mode: self.mode.or(other.mode),
            max_cores: self.max_cores.or(other.max_cores),
            offer_timeout: self.offer_timeout.or(other.offer_timeout),
            user: self.user.or(other.user),
            roles: if self.roles.is_empty() {
                other.roles
            } else {
                self.roles
            },
            principal: self.principal.or(other.principal),
            secret: self.secret.or(other.secret),
            failover_timeout: self.failover_timeout.or(other.failover_timeout),
            checkpoint: self.checkpoint.or(other.checkpoint),
            task_cpus: self.task_cpus.or(other.task_cpus),
            task_mem_mb: self.task_mem_mb.or(other.task_mem_mb),
            executor_cpus: self.executor_cpus.or(other.executor_cpus),
            executor_mem_mb: self.executor_mem_mb.or(other.executor_mem_mb),
            advertised_host: self.advertised_host.or(other.advertised_host),
            executor_uri: self.executor_uri.or(other.executor_uri),
        }
    }

    /// Settings in the environment that cannot be used, as an error naming them.
    fn check_env(get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(m) = get("SPATE_MESOS_MODE") {
            m.parse::<MesosMode>()
                .map_err(|e| Error::Config(format!("SPATE_MESOS_MODE: {e}")))?;
        }
        Ok(())
    }

    /// Fill `config` with what is set here.
    fn apply(self, config: &mut MesosConfig) -> Result<()> {
        if let Some(m) = self.mode {
            config.mode = m;
        }
        if let Some(t) = self.offer_timeout {
            config.offer_timeout = t;
        }
        let positive = |what: &str, v: Option<f64>, min: f64| -> Result<Option<f64>> {
            match v {
                Some(x) if x.is_nan() || x < min || !x.is_finite() => Err(Error::Config(format!(
                    "Mesos setting {what} = {x} must be at least {min}"
                ))),
                v => Ok(v),
            }
        };
        if let Some(u) = self.user {
            config.user = Some(u);
        }
        if !self.roles.is_empty() {
            config.roles = self.roles;
        }
        config.principal = self.principal;
        config.secret = self.secret;
        if let Some(t) = self.failover_timeout {
            config.failover_timeout = t;
        }
        if let Some(c) = self.checkpoint {
            config.checkpoint = c;
        }
        if let Some(v) = positive("task cpus", self.task_cpus, 0.01)? {
            config.task_cpus = v;
            config.task_cpus_set = true;
        }
        config.max_cores = positive("max cores", self.max_cores, 0.1)?;
        if let Some(v) = positive("task memory (MB)", self.task_mem_mb, 1.0)? {
            config.task_mem_mb = v;
        }
        if let Some(v) = positive("executor cpus", self.executor_cpus, 0.01)? {
            config.executor_cpus = v;
        }
        if let Some(v) = positive("executor memory (MB)", self.executor_mem_mb, 32.0)? {
            config.executor_mem_mb = v;
        }
        config.advertised_host = self.advertised_host;
        config.executor_uri = self.executor_uri;
        Ok(())
    }
}

impl ContextBuilder {
    /// The master URL: `local`, `local[N]`, `local[*]`, `local[N,MAX_FAILURES]`,
    /// `local-cluster[N]`, `local-cluster[N,CORES,MEM_MB]` or `mesos://HOST:PORT`.
    pub fn master(mut self, master: impl Into<String>) -> Self {
        self.master = Some(master.into());
        self
    }

    /// Take every engine setting not set explicitly from the program's arguments
    /// ([`EngineFlags`]), else from the environment (`SPATE_MASTER`, `SPATE_EVENT_LOG`).
    pub fn from_env(mut self) -> Self {
        let (flags, _) = split_engine_flags(std::env::args().skip(1));
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.master.is_none() {
            self.master = flags.master.or_else(|| var(MASTER_ENV));
        }
        if self.event_log.is_none() {
            self.event_log = flags
                .event_log
                .or_else(|| var("SPATE_EVENT_LOG"))
                .map(Into::into);
        }
        let off =
            |v: Option<String>| v.is_some_and(|v| matches!(v.as_str(), "0" | "off" | "false"));
        if self.ui.is_none() && (flags.no_ui || off(var("SPATE_UI"))) {
            self.ui = Some(false);
        }
        if self.ui_port.is_none() {
            self.ui_port = flags.ui_port.or_else(|| var("SPATE_UI_PORT"));
        }
        if self.progress.is_none() && (flags.quiet || var("SPATE_QUIET").is_some_and(|v| v != "0"))
        {
            self.progress = Some(false);
        }
        self
    }

    /// Launch a copy of a task that runs much longer than its stage's finished tasks
    /// (default off; `SPATE_SPECULATION=1`). The first copy to finish counts.
    pub fn speculation(mut self, on: bool) -> Self {
        self.speculation = Some(on);
        self
    }

    /// Serve the web UI (default on, on the first free port from 4040; `--no-ui` or
    /// `SPATE_UI=off` turn it off).
    pub fn ui(mut self, on: bool) -> Self {
        self.ui = Some(on);
        self
    }

    /// Serve the web UI on exactly this port (`--ui-port N`, `SPATE_UI_PORT`).
    pub fn ui_port(mut self, port: u16) -> Self {
        self.ui_port = Some(port.to_string());
        self
    }

    /// Show per-stage progress on stderr (default: when stderr is a terminal; `--quiet`
    /// or `SPATE_QUIET=1` turn it off).
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = Some(on);
        self
    }

    /// Append every job, stage, task and executor event to a JSON-lines file in `dir`
    /// (`--event-log DIR`; format in `docs/event-log.md`).
    pub fn event_log(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.event_log = Some(dir.into());
        self
    }

    /// Take the master from `--master M` (or `--master=M`) in the program's arguments,
    /// else from `SPATE_MASTER`, unless one was set explicitly.
    pub fn master_from_env(mut self) -> Self {
        if self.master.is_none() {
            self.master =
                master_from_args(std::env::args()).or_else(|| std::env::var(MASTER_ENV).ok());
        }
        self
    }

    /// The application name shown in logs.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = Some(name.into());
        self
    }

    /// Attempts per task before a job fails (default: 1 in local mode, 4 on a cluster).
    pub fn max_failures(mut self, n: u32) -> Self {
        self.max_failures = Some(n);
        self
    }

    /// Start executors from this executable instead of this process's own image (e.g. a
    /// pre-deployed copy). It must be the byte-identical binary, or executors are refused.
    pub fn executor_exe(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.executor_exe = Some(path.into());
        self
    }

    /// How long an executor may stay silent (no heartbeat) before it is declared lost and
    /// its tasks re-run elsewhere (default 10 s).
    pub fn heartbeat_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Memory a map task on an executor may buffer before spilling its shuffle output to
    /// disk (default 128 MiB). Local mode keeps shuffles in memory and ignores it.
    pub fn shuffle_spill_bytes(mut self, bytes: usize) -> Self {
        self.spill_bytes = Some(bytes);
        self
    }

    /// Map outputs kept in memory, up to about this many bytes; outputs beyond it are
    /// written to files (compressed and checksummed) and read back by the reduce tasks,
    /// so a large shuffle does not hold its whole data in memory.
    ///
    /// Local mode keeps objects or frames in the driver's process (default 256 MiB; the
    /// files go to a temporary directory). Each executor (local-cluster, Mesos) keeps
    /// compressed frames, served to other executors without touching disk (default: an
    /// eighth of the executor's memory; the files go to its work directory). `0` sends
    /// every map output to disk.
    pub fn shuffle_memory_bytes(mut self, bytes: usize) -> Self {
        self.shuffle_memory = Some(bytes);
        self
    }

    /// Framework settings used with a `mesos://` master (default:
    /// [`MesosOptions::from_env`]).
    pub fn mesos(mut self, options: MesosOptions) -> Self {
        self.mesos = Some(options);
        self
    }

    /// Start the context. In a process started as an executor this never returns: the
    /// executor runs and the process exits.
    pub fn build(self) -> Result<Context> {
        crate::tune_allocator();
        Context::enter_executor_if_asked();
        let master: Master = match &self.master {
            Some(m) => m.parse()?,
            None => Master::default(),
        };
        let app_name = self.app_name.unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "spate".into())
        });
        let config = Config {
            master,
            app_name,
            max_failures: self.max_failures,
        };
        let cluster = ClusterSettings {
            executor_exe: self.executor_exe.or_else(self_executor_override),
            heartbeat_timeout: self.heartbeat_timeout.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT),
            spill_bytes: self.spill_bytes,
            shuffle_memory: self.shuffle_memory,
            mesos: match self.mesos {
                Some(options) => options.or(MesosOptions::from_env()),
                None => MesosOptions::from_env(),
            },
            event_log: self.event_log,
            ui: match (self.ui, self.ui_port) {
                (Some(false), _) => UiSetting::Off,
                (_, None) => UiSetting::FirstFree,
                (_, Some(p)) => UiSetting::Port(p.parse::<u16>().map_err(|_| {
                    Error::Config(format!(
                        "invalid web UI port {p:?}: expected a number 0-65535"
                    ))
                })?),
            },
            progress: self
                .progress
                .unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stderr())),
            quiet: self.progress == Some(false),
            speculation: self.speculation.unwrap_or_else(|| {
                std::env::var("SPATE_SPECULATION").is_ok_and(|v| v == "1" || v == "true")
            }),
        };
        Context::start(config, cluster)
    }
}

/// Settings that only matter for executor processes.
struct ClusterSettings {
    executor_exe: Option<std::path::PathBuf>,
    heartbeat_timeout: std::time::Duration,
    spill_bytes: Option<usize>,
    shuffle_memory: Option<usize>,
    mesos: MesosOptions,
    event_log: Option<std::path::PathBuf>,
    ui: UiSetting,
    progress: bool,
    /// Say nothing on stderr (`--quiet`).
    quiet: bool,
    speculation: bool,
}

/// Whether and where the web UI listens.
enum UiSetting {
    Off,
    FirstFree,
    Port(u16),
}

/// `SPATE_EXECUTOR_EXE` names another executable to start as executors (a pre-deployed
/// copy); by default executors run this process's own image.
fn self_executor_override() -> Option<std::path::PathBuf> {
    std::env::var_os("SPATE_EXECUTOR_EXE").map(Into::into)
}

/// Flags the engine reads from a program's command line (all optional):
/// `--master M`, `--event-log DIR`, `--ui-port N`, `--no-ui`, `--quiet`. [`crate::args`]
/// returns the arguments without them, for the program's own parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineFlags {
    /// `--master M`.
    pub master: Option<String>,
    /// `--event-log DIR`.
    pub event_log: Option<String>,
    /// `--ui-port N`.
    pub ui_port: Option<String>,
    /// `--no-ui`.
    pub no_ui: bool,
    /// `--quiet`.
    pub quiet: bool,
}

/// Engine flags with a value.
const VALUE_FLAGS: [&str; 3] = ["--master", "--event-log", "--ui-port"];
/// Engine flags without one.
const SWITCHES: [&str; 2] = ["--no-ui", "--quiet"];

/// Split `args` (without the program name) into the engine's flags and the rest.
pub fn split_engine_flags(args: impl IntoIterator<Item = String>) -> (EngineFlags, Vec<String>) {
    let mut flags = EngineFlags::default();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if VALUE_FLAGS.contains(&n) => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if VALUE_FLAGS.contains(&name.as_str()) {
            let value = inline.or_else(|| it.next());
            match name.as_str() {
                "--master" => flags.master = value,
                "--event-log" => flags.event_log = value,
                _ => flags.ui_port = value,
            }
        } else if SWITCHES.contains(&name.as_str()) {
            if name == "--quiet" {
                flags.quiet = true;
            } else {
                flags.no_ui = true;
            }
        } else {
            rest.push(a);
        }
    }
    (flags, rest)
}

/// `--master M` or `--master=M` among program arguments.
fn master_from_args(args: impl IntoIterator<Item = String>) -> Option<String> {
    split_engine_flags(args).0.master
}

impl Context {
    /// A context for the master given by `--master`, `SPATE_MASTER`, or `local[*]`.
    ///
    /// ```no_run
    /// fn main() -> spate::Result<()> {
    ///     let ctx = spate::Context::new()?; // first thing in main
    ///     println!("{}", ctx.range(0, 10, 2).count()?);
    ///     Ok(())
    /// }
    /// ```
    pub fn new() -> Result<Context> {
        Self::builder().from_env().build()
    }

    /// In a process started as an executor, run the executor and exit: user code after
    /// the context's creation never runs there.
    fn enter_executor_if_asked() {
        let code = match current_role() {
            Role::Driver => return,
            Role::Executor(_) => match spate_executor::ExecutorConfig::from_env() {
                Ok(config) => spate_executor::run(config),
                Err(e) => {
                    eprintln!("spate executor: {e}");
                    2
                }
            },
            Role::Mesos => match spate_executor::mesos::MesosExecutorConfig::from_env() {
                Ok(config) => spate_executor::mesos::run(config),
                Err(e) => {
                    eprintln!("spate mesos executor: {e}");
                    2
                }
            },
        };
        std::process::exit(code);
    }

    /// Configure a context programmatically.
    ///
    /// ```
    /// let ctx = spate::Context::builder().master("local[2]").app_name("demo").build()?;
    /// assert_eq!(ctx.default_parallelism(), 2);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            master: None,
            app_name: None,
            max_failures: None,
            executor_exe: None,
            heartbeat_timeout: None,
            spill_bytes: None,
            shuffle_memory: None,
            mesos: None,
            event_log: None,
            ui: None,
            ui_port: None,
            progress: None,
            speculation: None,
        }
    }

    fn start(config: Config, cluster: ClusterSettings) -> Result<Context> {
        let mut listeners: Vec<Box<dyn Listener>> = Vec::new();
        let ui = match cluster.ui {
            UiSetting::Off => None,
            setting => {
                let store = spate_ui::Store::default();
                let host = std::env::var("SPATE_UI_HOST").unwrap_or_else(|_| "127.0.0.1".into());
                let port = match setting {
                    UiSetting::Port(p) => Some(p),
                    _ => None,
                };
                let server = spate_ui::UiServer::start(
                    store.clone(),
                    &host,
                    port,
                    spate_ui::DEFAULT_UI_PORT,
                )
                .map_err(|e| Error::Config(e.to_string()))?;
                listeners.push(Box::new(store));
                tracing::info!(url = server.url(), "web UI");
                if !cluster.quiet {
                    eprintln!("spate web UI: {}", server.url());
                }
                Some(server)
            }
        };
        if cluster.progress {
            listeners.push(Box::new(spate_ui::Progress::stderr()));
        }
        if let Some(dir) = &cluster.event_log {
            let log = EventLog::create(dir, &config.app_name)?;
            tracing::info!(path = %log.path().display(), "writing the event log");
            listeners.push(Box::new(log));
        }
        let (app, master) = (config.app_name.clone(), config.master.to_string());
        let speculation = cluster.speculation;
        let start = move |backend: Box<dyn SchedulerBackend>,
                          shuffle: Arc<dyn spate_core::shuffle::ShuffleService>,
                          max_failures: u32| {
            let options = spate_scheduler::SchedulerOptions {
                max_failures,
                speculation,
            };
            Scheduler::start_observed(backend, shuffle, options, listeners, &app, &master)
        };
        let driver_host = match &config.master {
            Master::Local { .. } => None,
            Master::LocalCluster { .. } => Some("127.0.0.1".to_string()),
            Master::Mesos { address } => {
                let mut m = MesosConfig::new(address, &config.app_name);
                m.advertised_host = cluster.mesos.advertised_host.clone();
                Some(spate_scheduler::backend::mesos::framework::advertised_host(
                    &m,
                ))
            }
        };
        let scheduler = match &config.master {
            Master::Local { threads, .. } => {
                let shuffle = Arc::new(MemoryShuffleStore::with_budget(
                    cluster
                        .shuffle_memory
                        .unwrap_or(spate_shuffle::memory::DEFAULT_MEMORY_BUDGET),
                ));
                let backend = LocalBackend::new(*threads, shuffle.clone());
                start(Box::new(backend), shuffle, config.task_max_failures())?
            }
            Master::LocalCluster {
                executors,
                cores,
                memory_mb,
            } => {
                let secret = Secret::generate().map_err(|e| Error::Config(e.to_string()))?;
                let backend = LocalClusterBackend::new(
                    LocalClusterConfig {
                        executors: *executors,
                        cores: *cores,
                        memory_mb: *memory_mb,
                        exe: cluster.executor_exe,
                        heartbeat_timeout: cluster.heartbeat_timeout,
                        spill_bytes: cluster.spill_bytes,
                        shuffle_memory: cluster.shuffle_memory,
                    },
                    secret,
                );
                // Map outputs live on the executors; the driver keeps none.
                start(
                    Box::new(backend),
                    Arc::new(MemoryShuffleStore::new()),
                    config.task_max_failures(),
                )?
            }
            Master::Mesos { address } => {
                let secret = Secret::generate().map_err(|e| Error::Config(e.to_string()))?;
                let mut mesos = MesosConfig::new(address, &config.app_name);
                MesosOptions::check_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
                cluster.mesos.apply(&mut mesos)?;
                mesos.heartbeat_timeout = cluster.heartbeat_timeout;
                // Found once above (it may probe the route to the master).
                mesos.advertised_host = driver_host.clone();
                mesos.exe = cluster.executor_exe;
                mesos.spill_bytes = cluster.spill_bytes;
                mesos.shuffle_memory = cluster.shuffle_memory;
                start(
                    Box::new(MesosBackend::new(mesos, secret)),
                    Arc::new(MemoryShuffleStore::new()),
                    config.task_max_failures(),
                )?
            }
        };
        tracing::info!(master = %config.master, app = config.app_name, "context started");
        Ok(Context {
            runner: scheduler.clone(),
            scheduler,
            config,
            ui,
            driver_host,
            broadcasts: std::sync::Mutex::new(None),
            checkpoint_dirs: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The master in use.
    pub fn master(&self) -> &Master {
        &self.config.master
    }

    /// The web UI's address (`http://host:port`), when it is on.
    pub fn ui_url(&self) -> Option<&str> {
        self.ui.as_ref().map(spate_ui::UiServer::url)
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Partition count used when an operation is not told one: the cores available.
    pub fn default_parallelism(&self) -> usize {
        self.runner.default_parallelism()
    }

    /// Distribute a local collection over `partitions` partitions (nearly equal slices, in
    /// order). `0` partitions is taken as 1, so that an empty or computed count still gives
    /// a usable RDD.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.parallelize(vec![1, 2, 3, 4], 2);
    /// assert_eq!(r.glom().collect()?, vec![vec![1, 2], vec![3, 4]]);
    /// assert_eq!(ctx.parallelize(vec![1, 2], 0).num_partitions(), 1);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn parallelize<T: Data>(&self, data: Vec<T>, partitions: usize) -> Rdd<T> {
        rdd::parallelize(self.runner.clone(), data, partitions)
    }

    /// The partitions of all `rdds` side by side as one RDD (Spark's `SparkContext.union`;
    /// no shuffle, duplicates kept).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let parts = [ctx.range(0, 2, 1), ctx.range(5, 7, 2), ctx.range(9, 10, 1)];
    /// assert_eq!(ctx.union(&parts).collect()?, vec![0, 1, 5, 6, 9]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn union<T: Data>(&self, rdds: &[Rdd<T>]) -> Rdd<T> {
        rdd::union_all(self.runner.clone(), rdds)
    }

    /// An RDD without elements (one empty partition).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert!(ctx.empty::<String>().is_empty()?);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn empty<T: Data>(&self) -> Rdd<T> {
        rdd::parallelize(self.runner.clone(), Vec::new(), 1)
    }

    /// The integers `start..end` in `partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 4, 2).collect()?, vec![0, 1, 2, 3]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn range(&self, start: i64, end: i64, partitions: usize) -> Rdd<i64> {
        rdd::range(self.runner.clone(), start, end, partitions)
    }

    /// The lines of a text file, of every file in a directory, or of every file matching
    /// a glob (`logs/*.txt`). Large files are split into line-aligned byte ranges; `.gz`
    /// files are read whole. A missing path or a pattern matching nothing is an error here,
    /// before any task runs.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let path = std::env::temp_dir().join(format!("spate-doc-tf-{}.txt", std::process::id()));
    /// std::fs::write(&path, "a b\nc\n")?;
    /// assert_eq!(ctx.text_file(path.to_str().unwrap())?.count()?, 2);
    /// assert!(ctx.text_file("/no/such/file").is_err());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn text_file(&self, path: &str) -> Result<Rdd<String>> {
        rdd::text_file(self.runner.clone(), path, &TextFileOptions::default())
    }

    /// [`Context::text_file`] with at least `min_partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let path = std::env::temp_dir().join(format!("spate-doc-tfp-{}.txt", std::process::id()));
    /// std::fs::write(&path, "x\n".repeat(100))?;
    /// let opts = spate::TextFileOptions { min_partitions: Some(4), min_split_bytes: 1, ..Default::default() };
    /// let r = ctx.text_file_with(path.to_str().unwrap(), &opts)?;
    /// assert_eq!(r.num_partitions(), 4);
    /// assert_eq!(r.count()?, 100);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn text_file_with(&self, path: &str, options: &TextFileOptions) -> Result<Rdd<String>> {
        rdd::text_file(self.runner.clone(), path, options)
    }

    /// The RDD `save_as_object_file` wrote to `path` (a directory, one partition per part
    /// file; or a single part file), read as elements of type `T`: the type must be the
    /// one written (checked by name; a mismatch is an error, not garbage), and each block's
    /// checksum is verified as it is read.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let dir = std::env::temp_dir().join(format!("spate-doc-objf-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// ctx.range(0, 100, 4).map(|x| x as f64 / 2.0).save_as_object_file(&dir)?;
    /// assert_eq!(ctx.object_file::<f64>(&dir)?.sum()?, 2475.0);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn object_file<T: Data>(&self, path: impl AsRef<Path>) -> Result<Rdd<T>> {
        rdd::object_file(self.runner.clone(), path)
    }

    /// Every file under `path` (a file, a directory or a glob) as one `(path, content)`
    /// element (Spark's `wholeTextFiles`), in about `default_parallelism` partitions of
    /// similar size; `.gz`, `.zst` and `.bz2` files are decompressed. For many small files
    /// whose content belongs together; bad UTF-8 fails the job naming the file and offset.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let dir = std::env::temp_dir().join(format!("spate-doc-wtf-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// std::fs::write(dir.join("a.txt"), "one\ntwo\n")?;
    /// std::fs::write(dir.join("b.txt"), "three")?;
    /// let mut files = ctx.whole_text_files(dir.to_str().unwrap())?.collect()?;
    /// files.sort();
    /// assert_eq!(files.len(), 2);
    /// assert!(files[0].0.ends_with("a.txt") && files[0].1 == "one\ntwo\n");
    /// assert_eq!(files[1].1, "three");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn whole_text_files(&self, path: &str) -> Result<Rdd<(String, String)>> {
        rdd::whole_text_files(self.runner.clone(), path, None)
    }

    /// Share a read-only value with tasks: pass the handle (cheap to clone) as the state of
    /// a `_with` operation and read it with `value()` (or through `Deref`). In local mode
    /// tasks share the value itself; in a cluster it is encoded once and each executor
    /// fetches it from the driver once, however many tasks read it.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let stop_words = ctx.broadcast(vec!["a".to_string(), "the".to_string()])?;
    /// let kept = ctx
    ///     .parallelize(vec!["the".to_string(), "cat".into(), "a".into(), "hat".into()], 2)
    ///     .filter_with(stop_words.clone(), |sw, w| !sw.contains(w))
    ///     .collect()?;
    /// assert_eq!(kept, vec!["cat", "hat"]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn broadcast<T: Data>(&self, value: T) -> Result<Broadcast<T>> {
        let Some(host) = &self.driver_host else {
            return Ok(Broadcast::local(value));
        };
        let mut server = self
            .broadcasts
            .lock()
            .map_err(|_| Error::Other("broadcast server state poisoned".into()))?;
        if server.is_none() {
            *server = Some(crate::broadcast_server::BroadcastServer::start(host)?);
        }
        let addr = server
            .as_ref()
            .map(|s| s.addr().to_string())
            .unwrap_or_default();
        Broadcast::served(value, &addr)
    }

    /// What the driver's broadcast server has sent (zero in local mode, where nothing is
    /// sent).
    pub fn broadcast_stats(&self) -> crate::BroadcastStats {
        self.broadcasts
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.stats()))
            .unwrap_or_default()
    }

    /// A counter or sum that tasks add to and the driver reads after an action. Pass it
    /// to tasks as the state of a `_with` operation; each partition's updates count once,
    /// even when its task is retried or recomputed.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let odd = ctx.accumulator(0u64);
    /// let n = ctx
    ///     .range(0, 100, 4)
    ///     .filter_with(odd.clone(), |odd, x| {
    ///         if x % 2 == 1 {
    ///             odd.add(1);
    ///         }
    ///         true
    ///     })
    ///     .count()?;
    /// assert_eq!((n, odd.value()), (100, 50));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn accumulator<T>(&self, zero: T) -> Accumulator<T>
    where
        T: Data + std::ops::Add<Output = T>,
    {
        Accumulator::new(zero)
    }

    /// An accumulator with a custom merge (associative and commutative, `zero` its
    /// identity), e.g. collecting samples or keeping a maximum.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let longest = ctx.accumulator_with(0usize, |a, b| a.max(b));
    /// ctx.parallelize(vec!["a".to_string(), "abcd".into(), "ab".into()], 2)
    ///     .foreach_with(longest.clone(), |l, s| l.add(s.len()))?;
    /// assert_eq!(longest.value(), 4);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn accumulator_with<T, F>(
        &self,
        zero: T,
        merge: F,
    ) -> Accumulator<T, spate_core::func::Fun<F>>
    where
        T: Data,
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        Accumulator::merged_by(zero, merge)
    }

    /// Where [`Rdd::checkpoint`] writes: a directory of this application's own under
    /// `dir`, created now and removed when the context stops (checkpoints serve one run:
    /// long lineages and recovery). In a cluster, `dir` must be reachable at the same path
    /// by every executor and the driver (a shared file system); in `local` and
    /// `local-cluster`, any local directory.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let dir = std::env::temp_dir().join("spate-doc-checkpoints");
    /// ctx.set_checkpoint_dir(&dir)?;
    /// let squares = ctx.range(0, 10, 2).map(|x| x * x).checkpoint()?;
    /// assert_eq!(squares.count()?, 10); // computes and writes the partitions
    /// assert!(squares.is_checkpointed()); // the lineage is cut: later jobs read the files
    /// assert_eq!(squares.collect()?, (0..10).map(|x| x * x).collect::<Vec<_>>());
    /// # Ok::<(), spate::Error>(())
    /// ```
    ///
    /// [`Rdd::checkpoint`]: spate_core::Rdd::checkpoint
    pub fn set_checkpoint_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| Error::io("resolving", dir.as_ref(), e))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let app = self.config.app_name.replace(['/', ' '], "_");
        let ours = dir.join(format!("{app}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&ours).map_err(|e| Error::io("creating", &ours, e))?;
        self.checkpoint_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ours.clone());
        self.scheduler.set_checkpoint_dir(ours);
        Ok(())
    }

    /// Stop the scheduler and its workers; later actions fail with a clear error.
    pub fn stop(&self) {
        self.scheduler.stop();
        let dirs = std::mem::take(
            &mut *self
                .checkpoint_dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove the checkpoint directory");
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_flags_are_split_from_the_programs_own() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (f, rest) = split_engine_flags(args(&[
            "in.txt",
            "--event-log",
            "/tmp/ev",
            "--top",
            "3",
            "--quiet",
            "--ui-port=4050",
            "--no-ui",
            "--master=local[2]",
        ]));
        assert_eq!(rest, args(&["in.txt", "--top", "3"]));
        assert_eq!(f.event_log.as_deref(), Some("/tmp/ev"));
        assert_eq!(f.ui_port.as_deref(), Some("4050"));
        assert_eq!(f.master.as_deref(), Some("local[2]"));
        assert!(f.quiet && f.no_ui);
    }

    #[test]
    fn master_flag_forms() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            master_from_args(args(&["prog", "--master", "local[3]"])),
            Some("local[3]".into())
        );
        assert_eq!(
            master_from_args(args(&["prog", "--master=local"])),
            Some("local".into())
        );
        assert_eq!(master_from_args(args(&["prog", "file.txt"])), None);
    }

    #[test]
    fn mesos_options_from_the_environment_and_their_checks() {
        let env = |k: &str| {
            Some(match k {
                "SPATE_MESOS_ROLES" => "batch, dev".to_string(),
                "SPATE_TASK_CPUS" => "0.5".to_string(),
                "SPATE_MESOS_FAILOVER_TIMEOUT" => "300".to_string(),
                _ => return None,
            })
        };
        let o = MesosOptions::from_lookup(env);
        assert_eq!(o.roles, vec!["batch".to_string(), "dev".to_string()]);
        let mut c = MesosConfig::new("m:5050", "app");
        o.apply(&mut c).expect("valid");
        assert_eq!(c.task_cpus, 0.5);
        assert_eq!(c.failover_timeout, Duration::from_secs(300));
        assert_eq!(c.executor_cpus, 0.1, "unset keeps the default");
        let bad = MesosOptions {
            task_mem_mb: Some(-1.0),
            ..Default::default()
        };
        let err = bad.apply(&mut c).expect_err("negative memory");
        assert!(err.to_string().contains("task memory"), "{err}");
        // The builder's settings win; what they leave unset comes from the environment.
        let env = |k: &str| {
            Some(match k {
                "SPATE_MESOS_MODE" => "fine".to_string(),
                "SPATE_TASK_CPUS" => "0.5".to_string(),
                "SPATE_MESOS_OFFER_TIMEOUT" => "7".to_string(),
                _ => return None,
            })
        };
        let o = MesosOptions {
            task_cpus: Some(2.0),
            ..Default::default()
        }
        .or(MesosOptions::from_lookup(env));
        assert_eq!(o.task_cpus, Some(2.0));
        assert_eq!(o.mode, Some(MesosMode::Fine));
        assert_eq!(o.offer_timeout, Some(Duration::from_secs(7)));
        let bad = |k: &str| (k == "SPATE_MESOS_MODE").then(|| "medium".to_string());
        let err = MesosOptions::check_env(bad).expect_err("unknown mode");
        assert!(err.to_string().contains("SPATE_MESOS_MODE"), "{err}");
    }
}
