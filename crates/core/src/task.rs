//! Tasks and the task boundary.
//!
//! A task is one partition of one stage: a shuffle-map task writes map output, a result
//! task applies the job's function to a partition. [`run_task`] is the boundary where every
//! failure is classified: a user panic (with its message and location), an engine error
//! (raised while iterating, e.g. bad UTF-8), or a fetch failure naming the lost map output
//! so the scheduler can re-run just that.

use crate::data::Data;
use crate::error::Error;
use crate::func::Func;
use crate::rdd::{NodeRef, PartIter, RddBase, base_of, compute};
use crate::ship::{EncodeSelf, SerArc, Upcast, codec};
use crate::shuffle::{MapStatus, ShuffleDependency, ShuffleService};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};

/// Stack reserved for each task thread. Computing a partition nests one iterator per
/// narrow operation of its stage, and pulling an element recurses through all of them, so
/// a deep pipeline needs room; the memory is only committed as it is touched.
pub const TASK_STACK_BYTES: usize = 256 << 20;

/// The deepest pipeline (narrow operations in one stage, see
/// [`crate::plan::pipeline_depth`]) a job may have. Its stack use fits [`TASK_STACK_BYTES`]
/// with a wide margin: a debug build runs a pipeline this deep (map, filter, flat_map,
/// map_partitions in turn) on a 96 MiB stack (release needs far less). Deeper jobs fail
/// before they start with [`crate::Error::LineageTooDeep`].
pub const MAX_PIPELINE_DEPTH: usize = 131_072;

/// What a running task knows about itself and its environment.
#[derive(Clone)]
pub struct TaskContext {
    /// Stage id.
    pub stage: usize,
    /// Partition being computed.
    pub partition: usize,
    /// Attempt number of this task (0 for the first).
    pub attempt: u32,
    /// Executor running it.
    pub executor: Arc<str>,
    /// Where shuffle blocks are written and read.
    pub shuffle: Arc<dyn ShuffleService>,
    /// Map-side memory budget in bytes: a map task spills its buffered output to the
    /// shuffle service whenever this much has accumulated. `None`: no limit (local mode,
    /// whose shuffle lives in memory anyway).
    pub spill_bytes: Option<usize>,
}

/// A job's per-partition function over its final RDD, type-erased. Ships with result
/// tasks; its results come back as objects (local) or bytes (executors).
pub trait ResultJob: EncodeSelf + Send + Sync + 'static {
    /// The final RDD of the job.
    fn rdd(&self) -> Arc<dyn RddBase>;
    /// Compute `partition` and apply the job's function to it.
    fn run(&self, partition: usize, tc: &TaskContext) -> Box<dyn Any + Send>;
    /// [`ResultJob::run`], with the result encoded for the trip back to the driver.
    fn run_encoded(&self, partition: usize, tc: &TaskContext) -> crate::Result<Vec<u8>>;
    /// Decode a result made by [`ResultJob::run_encoded`] (on the driver).
    fn decode_result(&self, bytes: &[u8]) -> crate::Result<Box<dyn Any + Send>>;
}

impl<C: ResultJob> Upcast<dyn ResultJob> for C {
    fn upcast(self: Arc<Self>) -> Arc<dyn ResultJob> {
        self
    }
}

/// The usual result job: compute a partition, give its iterator to `G`.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: DeserializeOwned"))]
pub struct PartitionJob<T: 'static, U, G> {
    node: NodeRef<T>,
    func: G,
    #[serde(skip)]
    _out: PhantomData<fn() -> U>,
}

impl<T: Data, U: Data, G: Func<PartIter<T>, U>> PartitionJob<T, U, G> {
    /// A job applying `func` to partitions of `node`.
    pub fn new(node: NodeRef<T>, func: G) -> Self {
        PartitionJob {
            node,
            func,
            _out: PhantomData,
        }
    }
}

impl<T: Data, U: Data, G: Func<PartIter<T>, U> + Serialize + DeserializeOwned> ResultJob
    for PartitionJob<T, U, G>
{
    fn rdd(&self) -> Arc<dyn RddBase> {
        base_of(&self.node)
    }
    fn run(&self, partition: usize, tc: &TaskContext) -> Box<dyn Any + Send> {
        Box::new(self.func.call(compute(&self.node, partition, tc)))
    }
    fn run_encoded(&self, partition: usize, tc: &TaskContext) -> crate::Result<Vec<u8>> {
        let out: U = self.func.call(compute(&self.node, partition, tc));
        codec::to_vec(&out)
            .map_err(|e| Error::Other(format!("encoding the result of partition {partition}: {e}")))
    }
    fn decode_result(&self, bytes: &[u8]) -> crate::Result<Box<dyn Any + Send>> {
        let out: U = codec::from_slice(bytes)
            .map_err(|e| Error::Other(format!("decoding a task result: {e}")))?;
        Ok(Box::new(out))
    }
}

/// What a task does. Encodable: this is what executors receive.
#[derive(Clone, Serialize, Deserialize)]
pub enum TaskKind {
    /// Write map output for a shuffle.
    ShuffleMap(SerArc<dyn ShuffleDependency>),
    /// Produce a result for a job.
    Result(SerArc<dyn ResultJob>),
}

impl TaskKind {
    /// A reference to this stage's work that does not keep it alive.
    pub fn downgrade(&self) -> WeakKind {
        match self {
            TaskKind::ShuffleMap(d) => WeakKind::ShuffleMap(Arc::downgrade(d.arc())),
            TaskKind::Result(j) => WeakKind::Result(Arc::downgrade(j.arc())),
        }
    }
}

/// A weak [`TaskKind`]: tells whether a task is the same stage's work (every task of a
/// stage holds the same shared value) without keeping a lineage alive.
pub enum WeakKind {
    /// A shuffle-map stage's dependency.
    ShuffleMap(std::sync::Weak<dyn ShuffleDependency>),
    /// A result stage's job.
    Result(std::sync::Weak<dyn ResultJob>),
}

impl WeakKind {
    /// Whether the work still exists.
    pub fn alive(&self) -> bool {
        match self {
            WeakKind::ShuffleMap(w) => w.strong_count() > 0,
            WeakKind::Result(w) => w.strong_count() > 0,
        }
    }

    /// Whether `kind` is this very work (its allocation cannot be reused while this
    /// reference exists, so equal addresses mean the same value).
    pub fn is(&self, kind: &TaskKind) -> bool {
        match (self, kind) {
            (WeakKind::ShuffleMap(w), TaskKind::ShuffleMap(d)) => {
                std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(d.arc()))
            }
            (WeakKind::Result(w), TaskKind::Result(j)) => {
                std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(j.arc()))
            }
            _ => false,
        }
    }
}

/// What a successful task returns.
pub enum TaskOutput {
    /// A map output was stored.
    Map(MapStatus),
    /// A job result for one partition.
    Result(Box<dyn Any + Send>),
}

/// Why a task failed, classified for the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskFailure {
    /// A shuffle block could not be read: re-run the map task, then this stage.
    FetchFailed {
        /// Shuffle id.
        shuffle: usize,
        /// Lost map partition.
        map: usize,
        /// Executor that held it.
        executor: String,
        /// Details.
        message: String,
    },
    /// User code panicked; retried up to the failure limit.
    Panicked {
        /// The panic message and where it happened.
        message: String,
    },
    /// The engine met an error (bad input, I/O); retried up to the failure limit.
    Error {
        /// The error text.
        message: String,
    },
}

impl TaskFailure {
    /// The message shown to the user.
    pub fn message(&self) -> String {
        match self {
            TaskFailure::FetchFailed { message, .. } => message.clone(),
            TaskFailure::Panicked { message } => format!("panicked: {message}"),
            TaskFailure::Error { message } => message.clone(),
        }
    }
}

/// Payload of an engine error travelling up through a partition iterator.
struct EngineError(Error);

/// Abort the current task with an engine error. Used inside partition iterators, which
/// cannot return `Result`; [`run_task`] turns it back into a typed [`TaskFailure`]. It
/// unwinds without calling the panic hook, so nothing is printed.
pub fn raise(err: Error) -> ! {
    std::panic::resume_unwind(Box::new(EngineError(err)))
}

/// Run `f`, returning the error it [`raise`]d (for unit tests of code that raises).
#[cfg(test)]
pub(crate) fn catch_raised<T>(f: impl FnOnce() -> T) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| match payload.downcast::<EngineError>() {
        Ok(engine) => engine.0,
        Err(_) => Error::Other("panicked without raising".into()),
    })
}

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install (once per process) a panic hook that records panics raised inside tasks instead
/// of printing a trace, and defers to the previous hook everywhere else.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                let msg = match info.location() {
                    Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
                    None => msg,
                };
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
            } else {
                previous(info);
            }
        }));
    });
}

/// Whether this thread is running a task (accumulator updates then belong to the task).
pub(crate) fn in_task() -> bool {
    IN_TASK.with(Cell::get)
}

/// Run `f` as if inside a task (for unit tests of task-side behaviour).
#[cfg(test)]
pub(crate) fn with_in_task<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_TASK.with(|t| t.replace(true));
    let r = f();
    IN_TASK.with(|t| t.set(was));
    r
}

/// Run a task, catching every failure and classifying it. Its metrics are
/// [`crate::metrics::current`] on this thread afterwards.
pub fn run_task(kind: &TaskKind, tc: &TaskContext) -> Result<TaskOutput, TaskFailure> {
    guarded(|| match kind {
        TaskKind::ShuffleMap(dep) => map_task(&**dep, tc).map(TaskOutput::Map),
        TaskKind::Result(job) => Ok(TaskOutput::Result(job.run(tc.partition, tc))),
    })
}

fn map_task(dep: &dyn ShuffleDependency, tc: &TaskContext) -> Result<MapStatus, Error> {
    let status = dep.run_map_task(tc.partition, tc)?;
    let written: u64 = status.records.iter().sum();
    crate::metrics::record(|m| m.shuffle_write_records += written);
    Ok(status)
}

/// What a task produces in an executor process: results are bytes for the trip back.
pub enum EncodedOutput {
    /// A map output was stored.
    Map(MapStatus),
    /// An encoded job result.
    Result(Vec<u8>),
}

/// [`run_task`] for executors: the result of a result task comes back encoded.
pub fn run_task_encoded(kind: &TaskKind, tc: &TaskContext) -> Result<EncodedOutput, TaskFailure> {
    guarded(|| match kind {
        TaskKind::ShuffleMap(dep) => map_task(&**dep, tc).map(EncodedOutput::Map),
        TaskKind::Result(job) => job.run_encoded(tc.partition, tc).map(|bytes| {
            let n = bytes.len() as u64;
            crate::metrics::record(|m| m.result_bytes += n);
            EncodedOutput::Result(bytes)
        }),
    })
}

/// The task boundary: run `f`, turning panics and engine errors into [`TaskFailure`]s.
fn guarded<O>(f: impl FnOnce() -> Result<O, Error>) -> Result<O, TaskFailure> {
    install_panic_hook();
    crate::metrics::reset();
    crate::accumulator::begin_task();
    crate::cache::begin_task();
    let started = std::time::Instant::now();
    let was = IN_TASK.with(|t| t.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(was));
    let ms = started.elapsed().as_millis() as u64;
    crate::metrics::record(|m| m.run_ms = ms);
    crate::accumulator::end_task(matches!(outcome, Ok(Ok(_))));
    match outcome {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(classify(e)),
        Err(payload) => Err(match payload.downcast::<EngineError>() {
            Ok(engine) => classify(engine.0),
            Err(payload) => {
                let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
                let message = recorded
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "task panicked".to_string());
                TaskFailure::Panicked { message }
            }
        }),
    }
}

fn classify(e: Error) -> TaskFailure {
    match e {
        Error::FetchFailed {
            shuffle,
            map,
            ref executor,
            ..
        } => TaskFailure::FetchFailed {
            shuffle,
            map,
            executor: executor.clone(),
            message: e.to_string(),
        },
        other => TaskFailure::Error {
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Boom;
    impl ResultJob for Boom {
        fn run_encoded(&self, partition: usize, tc: &TaskContext) -> crate::Result<Vec<u8>> {
            self.run(partition, tc);
            Ok(Vec::new())
        }
        fn decode_result(&self, _bytes: &[u8]) -> crate::Result<Box<dyn Any + Send>> {
            Ok(Box::new(()))
        }
        fn rdd(&self) -> Arc<dyn RddBase> {
            unreachable!("not planned in this test")
        }
        fn run(&self, partition: usize, _tc: &TaskContext) -> Box<dyn Any + Send> {
            if partition == 0 {
                panic!("user code failed on {partition}");
            }
            raise(Error::InvalidUtf8 {
                path: "f.txt".into(),
                offset: 7,
            })
        }
    }

    struct NoShuffle;
    impl ShuffleService for NoShuffle {
        fn map_writer(
            &self,
            _: usize,
            _: usize,
            _: usize,
            _: &str,
        ) -> crate::Result<Box<dyn crate::shuffle::MapWriter + '_>> {
            Err(Error::Other("none".into()))
        }
        fn read_blocks(
            &self,
            _: usize,
            _: usize,
            _: usize,
        ) -> crate::Result<Vec<crate::shuffle::Block>> {
            Ok(Vec::new())
        }
        fn remove_map_output(&self, _: usize, _: usize) {}
        fn has_map_output(&self, _: usize, _: usize) -> bool {
            false
        }
    }

    fn tc(partition: usize) -> TaskContext {
        TaskContext {
            stage: 0,
            partition,
            attempt: 0,
            executor: "driver".into(),
            shuffle: Arc::new(NoShuffle),
            spill_bytes: None,
        }
    }

    #[test]
    fn panics_and_engine_errors_are_classified() {
        let kind = TaskKind::Result(SerArc::new(Boom));
        match run_task(&kind, &tc(0)) {
            Err(TaskFailure::Panicked { message }) => {
                assert!(message.contains("user code failed on 0"), "{message}");
                assert!(message.contains("task.rs"), "location recorded: {message}");
            }
            _ => panic!("expected a panic failure"),
        }
        match run_task(&kind, &tc(1)) {
            Err(TaskFailure::Error { message }) => {
                assert_eq!(message, "invalid UTF-8 in f.txt at byte offset 7");
            }
            _ => panic!("expected an engine error"),
        }
    }
}
