//! The deployment seam: local threads, local-cluster processes and Mesos all implement
//! [`SchedulerBackend`]. A backend only runs what it is told where it is told and reports
//! back through an [`EventSink`]; every decision stays in the DAG scheduler.
//!
//! - `control`: the driver's TCP channel to executor processes (local-cluster and
//!   coarse-grained Mesos).
//! - [`local`], [`local_cluster`], [`mesos`]: the backends.

pub(crate) mod control;
pub mod local;
pub mod local_cluster;
pub mod mesos;

use crate::event::{EventSink, TaskId, TaskReport};
use spate_core::accumulator::Updates;
use spate_core::error::Result;
use spate_core::protocol::{RemoteFailure, Report, TaskResult};
use spate_core::ship::Secret;
use spate_core::shuffle::MapStatus;
use spate_core::task::{TaskFailure, TaskKind, TaskOutput, WeakKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One task to launch on one executor.
pub struct TaskLaunch {
    /// Scheduler-wide task id, echoed in the end report.
    pub id: TaskId,
    /// Stage id.
    pub stage: usize,
    /// Partition of the stage's RDD.
    pub partition: usize,
    /// Attempt number of this partition's task.
    pub attempt: u32,
    /// What to run.
    pub kind: TaskKind,
    /// For each shuffle the task reads: the executor holding each map output.
    pub shuffle_locations: Vec<(usize, Vec<String>)>,
    /// Executors where the task would rather run (they hold much of its input); backends
    /// that choose placement themselves (Mesos offers) use it, others may ignore it.
    pub preferred: Vec<String>,
    /// Executors where earlier attempts of this task failed: run it elsewhere if possible.
    pub avoid: Vec<String>,
}

/// Runs tasks somewhere.
pub trait SchedulerBackend: Send + 'static {
    /// Start; report executors (and later task ends) through `events`.
    fn start(&mut self, events: EventSink) -> Result<()>;
    /// Run `task` on `executor`, which has a free core for it.
    fn launch(&mut self, executor: &str, task: TaskLaunch);
    /// Partition count for operations not told one.
    fn default_parallelism(&self) -> usize;
    /// Stop running tasks and release resources.
    fn stop(&mut self);
    /// Tell executors to drop the cached partitions of persisted RDD `key` (local mode
    /// keeps them in the driver's process, where the RDD handle already dropped them).
    fn unpersist(&mut self, _key: u64) {}
    /// Tell executors to delete the map outputs of `shuffle` (no RDD reads it any more).
    fn remove_shuffle(&mut self, _shuffle: spate_core::rdd::ShuffleId) {}
    /// Whether [`SchedulerBackend::cancel`] can take back tasks (backends that queue
    /// tasks themselves, like Mesos waiting for offers).
    fn can_cancel(&self) -> bool {
        false
    }
    /// Take back `tasks` that have not started; returns the ones taken back (they will
    /// never report an end).
    fn cancel(&mut self, _tasks: &[TaskId]) -> Vec<TaskId> {
        Vec::new()
    }
}

/// Map-output locations as executors need them: each executor id replaced by its block
/// server address (empty when unknown: the reader then reports a fetch failure).
pub(crate) fn block_servers(
    locations: &[(usize, Vec<String>)],
    address_of: impl Fn(&str) -> Option<String>,
) -> Vec<(usize, Vec<String>)> {
    locations
        .iter()
        .map(|(s, execs)| {
            (
                *s,
                execs
                    .iter()
                    .map(|e| address_of(e).unwrap_or_default())
                    .collect(),
            )
        })
        .collect()
}

/// A raw `waitpid` status, as a person would say it.
pub(crate) fn wait_status(s: i32) -> String {
    let signal = s & 0x7f;
    if signal == 0 {
        return format!("exit status {}", (s >> 8) & 0xff);
    }
    let name = match signal {
        6 => " (SIGABRT)",
        9 => " (SIGKILL: killed, e.g. out of memory)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    };
    format!("signal {signal}{name}")
}

/// Lines of an executor's stderr kept for its obituary.
pub(crate) const LAST_WORDS: usize = 3;

/// An executor's last words for its obituary: the last [`LAST_WORDS`] non-empty lines of its
/// stderr (a panic, a stack overflow, an abort is usually there), joined by ` | `, at most
/// 500 bytes.
pub(crate) fn last_words<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<String> {
    let mut words: Vec<&str> = lines
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(LAST_WORDS)
        .collect();
    words.reverse();
    (!words.is_empty()).then(|| {
        let mut s = words.join(" | ");
        if s.len() > 500 {
            let mut cut = 500;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    })
}

/// `kind` sealed, encoded once per stage: every task of a stage carries the same lineage
/// (the partition travels outside the envelope), which for a deep lineage is most of the
/// launch's cost. Remembers the last few stages by weak reference, so a dropped lineage
/// is freed (and never mistaken for a new one at the same address).
fn sealed(kind: &TaskKind, secret: &Secret) -> std::result::Result<Vec<u8>, String> {
    type Sealed = (WeakKind, Secret, Arc<Vec<u8>>);
    static LAST: Mutex<VecDeque<Sealed>> = Mutex::new(VecDeque::new());
    const KEEP: usize = 4;
    let same = |(k, s, _): &Sealed| k.alive() && k.is(kind) && s == secret;
    let hit = {
        let last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        last.iter()
            .find(|e| same(e))
            .map(|(_, _, bytes)| bytes.clone())
    };
    if let Some(bytes) = hit {
        return Ok(bytes.to_vec());
    }
    let bytes = Arc::new(
        spate_core::ship::seal(kind, secret).map_err(|e| format!("encoding the task: {e}"))?,
    );
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    last.retain(|(k, _, _)| k.alive());
    if last.len() >= KEEP {
        last.pop_front();
    }
    last.push_back((kind.downgrade(), secret.clone(), bytes.clone()));
    Ok(bytes.to_vec())
}

/// What an executor process is sent to run `task`: its kind sealed with the application
/// secret, map outputs located by block server address.
pub(crate) fn launch_message(
    task: &TaskLaunch,
    secret: &Secret,
    address_of: impl Fn(&str) -> Option<String>,
) -> std::result::Result<spate_core::protocol::LaunchTask, String> {
    let envelope = sealed(&task.kind, secret)?;
    Ok(spate_core::protocol::LaunchTask {
        task: task.id,
        stage: task.stage,
        partition: task.partition,
        attempt: task.attempt,
        envelope,
        shuffle_locations: block_servers(&task.shuffle_locations, address_of),
    })
}

/// The small tokio runtime a process backend does its network I/O on.
pub(crate) fn driver_runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| {
            spate_core::error::Error::Other(format!("starting the driver's network runtime: {e}"))
        })
}

fn failure(f: RemoteFailure) -> TaskFailure {
    match f {
        RemoteFailure::FetchFailed {
            shuffle,
            map,
            executor,
            message,
        } => TaskFailure::FetchFailed {
            shuffle,
            map,
            executor,
            message,
        },
        RemoteFailure::Panicked(message) => TaskFailure::Panicked { message },
        RemoteFailure::Error(message) => TaskFailure::Error { message },
    }
}

fn decode(kind: &TaskKind, bytes: &[u8]) -> std::result::Result<TaskOutput, TaskFailure> {
    match kind {
        TaskKind::Result(job) => job
            .decode_result(bytes)
            .map(TaskOutput::Result)
            .map_err(|e| TaskFailure::Error {
                message: e.to_string(),
            }),
        TaskKind::ShuffleMap(_) => Err(TaskFailure::Error {
            message: "a map task returned a job result".into(),
        }),
    }
}

/// Report what an executor process said about an ended task, the same way for every
/// process backend (local-cluster frames, Mesos status updates): map outputs are
/// registered at `executor`, results decoded, large results fetched from the URL the
/// executor gave (on the calling tokio runtime), failures classified.
pub(crate) fn report_end(
    events: &EventSink,
    task: TaskId,
    kind: &TaskKind,
    executor: &str,
    ended: std::result::Result<TaskResult, RemoteFailure>,
    report: Report,
) {
    let report = TaskReport {
        metrics: report.metrics,
        accumulators: if report.accumulators.is_empty() {
            Updates::None
        } else {
            Updates::Encoded(report.accumulators)
        },
        executor: Some(executor.to_string()),
        cached: report.cached,
    };
    match ended {
        Ok(TaskResult::Map { records }) => events.task_ended_with(
            task,
            Ok(TaskOutput::Map(MapStatus {
                executor: executor.to_string(),
                records,
            })),
            report,
        ),
        Ok(TaskResult::Inline(bytes)) => events.task_ended_with(task, decode(kind, &bytes), report),
        Ok(TaskResult::Url(url)) => {
            let (events, kind) = (events.clone(), kind.clone());
            tokio::spawn(async move {
                let rest = url.strip_prefix("http://").unwrap_or(&url);
                let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let result = match spate_shuffle::client::get(addr, path, 3).await {
                    Ok(bytes) => decode(&kind, &bytes),
                    Err(e) => Err(TaskFailure::Error {
                        message: format!("fetching a large result from {url}: {e}"),
                    }),
                };
                events.task_ended_with(task, result, report);
            });
        }
        Err(f) => events.task_ended_with(task, Err(failure(f)), report),
    }
}
