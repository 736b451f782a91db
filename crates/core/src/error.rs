//! The one error type of spate-core. Every variant names what failed (path, stage,
//! partition, …) so that a user can act on the message alone.

use std::path::PathBuf;

/// Result alias used across spate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the model and in running jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input path (file, directory or glob) that does not exist.
    #[error("input path does not exist: {}", .0.display())]
    InputNotFound(PathBuf),
    /// A glob pattern that matched no file.
    #[error("input pattern matched no files: {0}")]
    GlobNoMatch(String),
    /// A glob pattern that is not valid syntax.
    #[error("invalid input pattern {pattern:?}: {message}")]
    BadGlob {
        /// The pattern as given.
        pattern: String,
        /// What the glob parser said.
        message: String,
    },
    /// An I/O error on a named file.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What spate was doing ("reading", "opening", "creating", …).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A text file holds bytes that are not UTF-8.
    #[error("invalid UTF-8 in {} at byte offset {offset}", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid byte, from the start of the file.
        offset: u64,
    },
    /// A file spate wrote (checkpoint, object file) that is damaged or cut short.
    #[error("corrupt file {}: {message}", path.display())]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        message: String,
    },
    /// `save_as_text_file` refuses to overwrite.
    #[error("output directory already exists: {} (remove it or choose another path)", .0.display())]
    OutputExists(PathBuf),
    /// A master URL or other setting that cannot be understood.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A service the program needs (a cluster manager, ZooKeeper) does not answer.
    #[error("cannot reach the {service} at {address}: {message}; is it running?")]
    Unreachable {
        /// What was called, e.g. "Mesos master".
        service: String,
        /// Where it was looked for.
        address: String,
        /// What the connection attempt said.
        message: String,
    },
    /// A job could not finish: a task failed more often than allowed, or was fatal.
    #[error(
        "job {job} failed: stage {stage} ({rdd}), partition {partition}, after {attempts} attempt(s): {message}"
    )]
    JobFailed {
        /// Job id.
        job: usize,
        /// Stage id where the task failed.
        stage: usize,
        /// Name of the stage's final RDD, to find it in the program.
        rdd: String,
        /// The failing partition.
        partition: usize,
        /// How many attempts were made.
        attempts: u32,
        /// The first real cause: a panic message or an error.
        message: String,
    },
    /// A stage pipelines more narrow operations than a task's stack holds.
    #[error(
        "lineage too deep ({depth} levels) in the stage ending at {rdd}: a task pipelines at most {limit}; \
         checkpoint it (ctx.set_checkpoint_dir(dir) once, then rdd.checkpoint() every few hundred operations)"
    )]
    LineageTooDeep {
        /// Narrow operations pipelined by the stage.
        depth: usize,
        /// The most a stage may pipeline.
        limit: usize,
        /// The stage's final RDD, to find it in the program.
        rdd: String,
    },
    /// A bad argument to an operation (e.g. zero partitions).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Zip of two RDDs whose partitions do not line up.
    #[error("zip needs equal partition counts and equal element counts per partition: {0}")]
    ZipMismatch(String),
    /// The scheduler or a backend stopped while a job was waiting on it.
    #[error("scheduler stopped: {0}")]
    SchedulerStopped(String),
    /// A shuffle block that is missing or unreadable; the scheduler re-runs its map task.
    #[error(
        "fetch failed: shuffle {shuffle}, map partition {map}, reduce partition {reduce}, executor {executor}: {message}"
    )]
    FetchFailed {
        /// Shuffle id.
        shuffle: usize,
        /// Map partition whose output is lost.
        map: usize,
        /// Reduce partition that was reading.
        reduce: usize,
        /// Executor that held the output.
        executor: String,
        /// Why.
        message: String,
    },
    /// Anything else internal, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wrap an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
