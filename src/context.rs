//! The [`Context`]: a program's connection to where its tasks run.

use spate_core::Data;
use spate_core::config::{Config, Master};
use spate_core::error::{Error, Result};
use spate_core::rdd::{self, JobRunner, Rdd, TextFileOptions};
use spate_core::ship::Secret;
use spate_executor::role::{Role, current_role};
use spate_scheduler::backend::local_cluster::{
    DEFAULT_HEARTBEAT_TIMEOUT, LocalClusterBackend, LocalClusterConfig,
};
use spate_scheduler::{LocalBackend, Scheduler};
use spate_shuffle::MemoryShuffleStore;
use std::sync::Arc;

/// Environment variable naming the master when `--master` is not given.
pub const MASTER_ENV: &str = "SPATE_MASTER";

/// Entry point of a spate program. Create it first thing in `main`: when the process was
/// started as an executor, `Context::new()` is where it takes over. Dropping the context
/// stops its scheduler and workers.
pub struct Context {
    scheduler: Arc<Scheduler>,
    runner: Arc<dyn JobRunner>,
    config: Config,
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
}

impl ContextBuilder {
    /// The master URL: `local`, `local[N]`, `local[*]`, `local[N,MAX_FAILURES]`.
    pub fn master(mut self, master: impl Into<String>) -> Self {
        self.master = Some(master.into());
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

    /// Start the context. In a process started as an executor this never returns: the
    /// executor runs and the process exits.
    pub fn build(self) -> Result<Context> {
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
        };
        Context::start(config, cluster)
    }
}

/// Settings that only matter for executor processes.
struct ClusterSettings {
    executor_exe: Option<std::path::PathBuf>,
    heartbeat_timeout: std::time::Duration,
    spill_bytes: Option<usize>,
}

/// `SPATE_EXECUTOR_EXE` names another executable to start as executors (a pre-deployed
/// copy); by default executors run this process's own image.
fn self_executor_override() -> Option<std::path::PathBuf> {
    std::env::var_os("SPATE_EXECUTOR_EXE").map(Into::into)
}

/// `--master M` or `--master=M` among program arguments.
fn master_from_args(args: impl IntoIterator<Item = String>) -> Option<String> {
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--master" {
            return it.next();
        }
        if let Some(m) = a.strip_prefix("--master=") {
            return Some(m.to_string());
        }
    }
    None
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
        Self::builder().master_from_env().build()
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
        }
    }

    fn start(config: Config, cluster: ClusterSettings) -> Result<Context> {
        let scheduler = match &config.master {
            Master::Local { threads, .. } => {
                let shuffle = Arc::new(MemoryShuffleStore::new());
                let backend = LocalBackend::new(*threads, shuffle.clone());
                Scheduler::start(Box::new(backend), shuffle, config.task_max_failures())?
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
                    },
                    secret,
                );
                // Map outputs live on the executors; the driver keeps none.
                Scheduler::start(
                    Box::new(backend),
                    Arc::new(MemoryShuffleStore::new()),
                    config.task_max_failures(),
                )?
            }
            other => {
                return Err(Error::Config(format!(
                    "master {other} is not supported by this version of spate yet; use local[N] or local-cluster[N]"
                )));
            }
        };
        tracing::info!(master = %config.master, app = config.app_name, "context started");
        Ok(Context {
            runner: scheduler.clone(),
            scheduler,
            config,
        })
    }

    /// The master in use.
    pub fn master(&self) -> &Master {
        &self.config.master
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Partition count used when an operation is not told one: the cores available.
    pub fn default_parallelism(&self) -> usize {
        self.runner.default_parallelism()
    }

    /// Distribute a local collection over `partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.parallelize(vec![1, 2, 3, 4], 2);
    /// assert_eq!(r.glom().collect()?, vec![vec![1, 2], vec![3, 4]]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn parallelize<T: Data>(&self, data: Vec<T>, partitions: usize) -> Rdd<T> {
        rdd::parallelize(self.runner.clone(), data, partitions)
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

    /// Stop the scheduler and its workers; later actions fail with a clear error.
    pub fn stop(&self) {
        self.scheduler.stop();
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
}
