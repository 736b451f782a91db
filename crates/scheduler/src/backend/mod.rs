//! The deployment seam: local threads, local-cluster processes and Mesos all implement
//! [`SchedulerBackend`]. A backend only runs what it is told where it is told and reports
//! back through an [`EventSink`]; every decision stays in the DAG scheduler.

pub mod local;
pub mod local_cluster;
pub mod mesos;

use crate::event::{EventSink, TaskId};
use spate_core::error::Result;
use spate_core::task::TaskKind;

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
}
