//! Events of the DAG scheduler's loop, and the sink through which backends report.

use crossbeam_channel::Sender;
use spate_core::error::Error;
use spate_core::metrics::TaskMetrics;
use spate_core::rdd::ShuffleId;
use spate_core::ship::SerArc;
use spate_core::task::{ResultJob, TaskFailure, TaskOutput};
use std::any::Any;

/// Task ids are unique within a scheduler.
pub type TaskId = u64;

/// What a backend knows about an ended task besides its outcome.
#[derive(Debug, Default)]
pub struct TaskReport {
    /// The task's counters.
    pub metrics: TaskMetrics,
    /// Its accumulator updates (applied once if it is the first success of its partition).
    pub accumulators: spate_core::accumulator::Updates,
    /// Partitions of persisted RDDs it stored where it ran.
    pub cached: Vec<(u64, usize)>,
    /// The executor that ran it, when the backend chose it (Mesos places tasks itself).
    pub executor: Option<String>,
}

/// Everything that changes scheduling state arrives as one of these.
pub(crate) enum Event {
    /// A job from an action.
    JobSubmitted {
        job: SerArc<dyn ResultJob>,
        partitions: Vec<usize>,
        reply: Sender<JobMessage>,
    },
    /// A backend finished (or failed) a task.
    TaskEnded {
        task: TaskId,
        result: Result<TaskOutput, TaskFailure>,
        report: TaskReport,
    },
    /// A backend has an executor with free cores.
    ExecutorAdded {
        executor: String,
        cores: usize,
        address: Option<String>,
    },
    /// A backend that places tasks itself (Mesos) heard from one of its executors: shown
    /// to listeners, no effect on scheduling.
    ExecutorObserved {
        executor: String,
        cores: usize,
        address: Option<String>,
    },
    /// A backend lost an executor: its tasks and map outputs are gone.
    ExecutorLost { executor: String, reason: String },
    /// Persisted RDD `key` was unpersisted: forget where its partitions are, tell the
    /// executors to drop them.
    Unpersist { key: u64 },
    /// No RDD reads shuffle `shuffle` any more: forget its map stage and outputs.
    RemoveShuffle { shuffle: ShuffleId },
    /// A backend can run nothing any more (e.g. every executor is gone and none can be
    /// started): fail every job with this cause instead of waiting.
    BackendFailed { reason: String },
    /// Shut down the loop.
    Stop,
}

/// What the loop tells a waiting action.
pub(crate) enum JobMessage {
    /// The result of the `index`-th requested partition.
    Result {
        index: usize,
        value: Box<dyn Any + Send>,
    },
    /// All results were sent.
    Done,
    /// The job failed.
    Failed(Error),
}

/// Given to a backend when it starts: how it reports back to the scheduler.
#[derive(Clone)]
pub struct EventSink {
    pub(crate) tx: Sender<Event>,
}

impl EventSink {
    /// A task ended (nothing known about what it did: it never ran, or ran elsewhere).
    pub fn task_ended(&self, task: TaskId, result: Result<TaskOutput, TaskFailure>) {
        self.task_ended_with(task, result, TaskReport::default());
    }

    /// A task ended, with its metrics and where it ran.
    pub fn task_ended_with(
        &self,
        task: TaskId,
        result: Result<TaskOutput, TaskFailure>,
        report: TaskReport,
    ) {
        // A closed channel means the scheduler stopped; the result has no one to go to.
        let _ = self.tx.send(Event::TaskEnded {
            task,
            result,
            report,
        });
    }

    /// An executor registered with `cores` cores.
    pub fn executor_added(&self, executor: &str, cores: usize) {
        self.executor_added_at(executor, cores, None);
    }

    /// An executor registered with `cores` cores, its block server at `address`.
    pub fn executor_added_at(&self, executor: &str, cores: usize, address: Option<&str>) {
        let _ = self.tx.send(Event::ExecutorAdded {
            executor: executor.to_string(),
            cores,
            address: address.map(str::to_string),
        });
    }

    /// An executor the backend placed tasks on itself was first heard from (for observers).
    pub fn executor_observed(&self, executor: &str, cores: usize, address: Option<&str>) {
        let _ = self.tx.send(Event::ExecutorObserved {
            executor: executor.to_string(),
            cores,
            address: address.map(str::to_string),
        });
    }

    /// The backend can run nothing any more.
    pub fn backend_failed(&self, reason: &str) {
        let _ = self.tx.send(Event::BackendFailed {
            reason: reason.to_string(),
        });
    }

    /// An executor is gone.
    pub fn executor_lost(&self, executor: &str, reason: &str) {
        let _ = self.tx.send(Event::ExecutorLost {
            executor: executor.to_string(),
            reason: reason.to_string(),
        });
    }
}
