//! Events of the DAG scheduler's loop, and the sink through which backends report.

use crossbeam_channel::Sender;
use spate_core::error::Error;
use spate_core::ship::SerArc;
use spate_core::task::{ResultJob, TaskFailure, TaskOutput};
use std::any::Any;

/// Task ids are unique within a scheduler.
pub type TaskId = u64;

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
    },
    /// A backend has an executor with free cores.
    ExecutorAdded { executor: String, cores: usize },
    /// A backend lost an executor: its tasks and map outputs are gone.
    ExecutorLost { executor: String, reason: String },
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
    /// A task ended.
    pub fn task_ended(&self, task: TaskId, result: Result<TaskOutput, TaskFailure>) {
        // A closed channel means the scheduler stopped; the result has no one to go to.
        let _ = self.tx.send(Event::TaskEnded { task, result });
    }

    /// An executor registered with `cores` cores.
    pub fn executor_added(&self, executor: &str, cores: usize) {
        let _ = self.tx.send(Event::ExecutorAdded {
            executor: executor.to_string(),
            cores,
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
