//! Local mode: one executor, `driver`, whose cores are threads of this process. Tasks run
//! directly on partition iterators; shuffle blocks stay in memory as objects.

use super::{SchedulerBackend, TaskLaunch};
use crate::event::{EventSink, TaskReport};
use crossbeam_channel::{Sender, unbounded};
use spate_core::error::{Error, Result};
use spate_core::shuffle::ShuffleService;
use spate_core::task::{TaskContext, run_task};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Executor id of the driver's own threads.
pub const DRIVER: &str = "driver";

/// Thread-pool backend.
pub struct LocalBackend {
    threads: usize,
    shuffle: Arc<dyn ShuffleService>,
    tasks: Option<Sender<TaskLaunch>>,
    workers: Vec<JoinHandle<()>>,
}

impl LocalBackend {
    /// A backend with `threads` worker threads using `shuffle` for map outputs.
    pub fn new(threads: usize, shuffle: Arc<dyn ShuffleService>) -> Self {
        LocalBackend {
            threads: threads.max(1),
            shuffle,
            tasks: None,
            workers: Vec::new(),
        }
    }
}

impl SchedulerBackend for LocalBackend {
    fn start(&mut self, events: EventSink) -> Result<()> {
        let (tx, rx) = unbounded::<TaskLaunch>();
        let executor: Arc<str> = Arc::from(DRIVER);
        for i in 0..self.threads {
            let rx = rx.clone();
            let events = events.clone();
            let shuffle = self.shuffle.clone();
            let executor = executor.clone();
            let handle = std::thread::Builder::new()
                .name(format!("spate-task-{i}"))
                .stack_size(spate_core::task::TASK_STACK_BYTES)
                .spawn(move || {
                    for launch in rx {
                        let span = tracing::debug_span!(
                            "task",
                            id = launch.id,
                            stage = launch.stage,
                            partition = launch.partition,
                            attempt = launch.attempt
                        );
                        let _enter = span.enter();
                        let tc = TaskContext {
                            stage: launch.stage,
                            partition: launch.partition,
                            attempt: launch.attempt,
                            executor: executor.clone(),
                            shuffle: shuffle.clone(),
                            spill_bytes: None,
                        };
                        let result = run_task(&launch.kind, &tc);
                        drop(launch.kind);
                        let report = TaskReport {
                            metrics: spate_core::metrics::current(),
                            accumulators: spate_core::accumulator::take_objects(),
                            cached: spate_core::cache::take_stored(),
                            executor: None,
                        };
                        events.task_ended_with(launch.id, result, report);
                    }
                })
                .map_err(|e| Error::Other(format!("starting local task thread: {e}")))?;
            self.workers.push(handle);
        }
        self.tasks = Some(tx);
        events.executor_added(DRIVER, self.threads);
        Ok(())
    }

    fn launch(&mut self, _executor: &str, task: TaskLaunch) {
        if let Some(tx) = &self.tasks {
            // Workers only exit after `stop` drops the sender, so this cannot fail first.
            let _ = tx.send(task);
        }
    }

    fn default_parallelism(&self) -> usize {
        self.threads
    }

    fn stop(&mut self) {
        self.tasks = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
