//! The driver-side handle: starts the event loop, submits jobs and waits for results.

use crate::backend::SchedulerBackend;
use crate::dag::DagScheduler;
use crate::event::{Event, EventSink, JobMessage};
use crate::listener::{Listener, ListenerBus, SchedulerEvent, now_ms};
use crossbeam_channel::{Sender, unbounded};
use spate_core::error::{Error, Result};
use spate_core::rdd::{JobRunner, RddId, ShuffleId};
use spate_core::ship::SerArc;
use spate_core::shuffle::ShuffleService;
use spate_core::task::ResultJob;
use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How the scheduler treats failing and slow tasks.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerOptions {
    /// Attempts per task before its job fails.
    pub max_failures: u32,
    /// Launch copies of straggling tasks (Spark's `spark.speculation`).
    pub speculation: bool,
}

/// A running scheduler. Dropping it (or [`Scheduler::stop`]) stops the loop and the
/// backend; jobs waiting at that moment fail with [`Error::SchedulerStopped`].
pub struct Scheduler {
    events: Sender<Event>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_rdd: AtomicUsize,
    next_shuffle: AtomicUsize,
    parallelism: usize,
    /// Where checkpointed RDDs write (see [`Scheduler::set_checkpoint_dir`]).
    checkpoint_dir: Mutex<Option<PathBuf>>,
}

impl Scheduler {
    /// Start `backend` and the event loop.
    pub fn start(
        backend: Box<dyn SchedulerBackend>,
        shuffle: Arc<dyn ShuffleService>,
        max_failures: u32,
    ) -> Result<Arc<Scheduler>> {
        Self::start_observed(
            backend,
            shuffle,
            SchedulerOptions {
                max_failures,
                speculation: false,
            },
            Vec::new(),
            "spate",
            "",
        )
    }

    /// [`Scheduler::start`], telling `listeners` what happens to application `app` on
    /// `master` (an application start, then jobs, stages, tasks and executors).
    pub fn start_observed(
        mut backend: Box<dyn SchedulerBackend>,
        shuffle: Arc<dyn ShuffleService>,
        options: SchedulerOptions,
        listeners: Vec<Box<dyn Listener>>,
        app: &str,
        master: &str,
    ) -> Result<Arc<Scheduler>> {
        let bus = ListenerBus::start(listeners);
        bus.post(SchedulerEvent::ApplicationStart {
            time: now_ms(),
            app: app.to_string(),
            master: master.to_string(),
        });
        let (tx, rx) = unbounded();
        backend.start(EventSink { tx: tx.clone() })?;
        let parallelism = backend.default_parallelism();
        let dag = DagScheduler::new(
            backend,
            shuffle,
            options.max_failures,
            options.speculation,
            bus,
        );
        let thread = std::thread::Builder::new()
            .name("spate-dag-scheduler".into())
            .spawn(move || dag.run(rx))
            .map_err(|e| Error::Other(format!("starting the scheduler thread: {e}")))?;
        Ok(Arc::new(Scheduler {
            events: tx,
            thread: Mutex::new(Some(thread)),
            next_rdd: AtomicUsize::new(0),
            next_shuffle: AtomicUsize::new(0),
            parallelism,
            checkpoint_dir: Mutex::new(None),
        }))
    }

    /// Checkpointed RDDs made from now on write their files under `dir` (which every
    /// executor must reach at the same path).
    pub fn set_checkpoint_dir(&self, dir: PathBuf) {
        *self
            .checkpoint_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(dir);
    }

    /// Stop the event loop and the backend. Idempotent.
    pub fn stop(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = self.events.send(Event::Stop);
            let _ = h.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

impl JobRunner for Scheduler {
    fn run_job(
        &self,
        job: SerArc<dyn ResultJob>,
        partitions: Vec<usize>,
    ) -> Result<Vec<Box<dyn Any + Send>>> {
        let n = partitions.len();
        let available = job.rdd().num_partitions();
        if let Some(bad) = partitions.iter().find(|p| **p >= available) {
            return Err(Error::InvalidArgument(format!(
                "partition {bad} requested of {} which has {available}",
                job.rdd().meta()
            )));
        }
        let rdd = job.rdd();
        let (reply, results) = unbounded();
        self.events
            .send(Event::JobSubmitted {
                job,
                partitions,
                reply,
            })
            .map_err(|_| Error::SchedulerStopped("the context was stopped".into()))?;
        let mut out: Vec<Option<Box<dyn Any + Send>>> = (0..n).map(|_| None).collect();
        loop {
            match results.recv() {
                Ok(JobMessage::Result { index, value }) => out[index] = Some(value),
                Ok(JobMessage::Done) => {
                    if self.checkpoint_dir().is_some() {
                        spate_core::rdd::finish_checkpoints(&rdd);
                    }
                    break;
                }
                Ok(JobMessage::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::SchedulerStopped(
                        "the scheduler exited while a job was running".into(),
                    ));
                }
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ok_or_else(|| {
                    Error::Other(format!("job finished without a result for output {i}"))
                })
            })
            .collect()
    }

    fn unpersist(&self, key: u64) {
        let _ = self.events.send(Event::Unpersist { key });
    }

    fn remove_shuffle(&self, shuffle: ShuffleId) {
        let _ = self.events.send(Event::RemoveShuffle { shuffle });
    }

    fn new_rdd_id(&self) -> RddId {
        self.next_rdd.fetch_add(1, Ordering::Relaxed)
    }

    fn new_shuffle_id(&self) -> ShuffleId {
        self.next_shuffle.fetch_add(1, Ordering::Relaxed)
    }

    fn default_parallelism(&self) -> usize {
        self.parallelism
    }

    fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.checkpoint_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
