//! What the scheduler tells observers: jobs, stages, tasks and executors as they change.
//!
//! The DAG loop posts [`SchedulerEvent`]s to a [`ListenerBus`], which hands them to every
//! [`Listener`] on its own thread, so a slow observer (a file, a terminal, a web page)
//! never holds up scheduling. The events are serde types with a stable JSON shape: the
//! event log ([`EventLog`]) is one JSON object per line, in the order the scheduler saw
//! them (format in `docs/event-log.md`).

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::{Deserialize, Serialize};
use spate_core::metrics::TaskMetrics;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A stage as a job's plan describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInfo {
    /// Stage id (unique within the application).
    pub stage: usize,
    /// The stage's last RDD and where the program made it.
    pub name: String,
    /// `shuffle_map` or `result`.
    pub kind: StageKind,
    /// Tasks of a full run (map partitions, or the job's partitions).
    pub tasks: usize,
    /// Stages whose shuffle output this stage reads.
    pub parents: Vec<usize>,
}

/// What a stage produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Shuffle map output for later stages.
    ShuffleMap,
    /// The job's results.
    Result,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEndStatus {
    /// It produced its output.
    Success,
    /// It failed (panic, error, lost executor); it may be retried.
    Failed,
    /// It could not read a map output; the map output is recomputed.
    FetchFailed,
    /// Taken back before it started: its stage attempt was over.
    Cancelled,
}

/// One observable change. `time` is milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SchedulerEvent {
    /// The context started.
    ApplicationStart {
        time: u64,
        app: String,
        master: String,
    },
    /// The context stopped.
    ApplicationEnd { time: u64 },
    /// An action submitted a job.
    JobStart {
        time: u64,
        job: usize,
        /// The RDD the action ran on.
        rdd: String,
        /// Partitions the action asked for.
        partitions: usize,
        /// Every stage the job needs (reused ones included), parents before children.
        stages: Vec<StageInfo>,
    },
    /// A job finished or failed.
    JobEnd {
        time: u64,
        job: usize,
        succeeded: bool,
        error: Option<String>,
    },
    /// Tasks of a stage were queued (a first run, or a re-run of lost outputs).
    StageSubmitted {
        time: u64,
        stage: usize,
        attempt: u32,
        tasks: usize,
    },
    /// A stage attempt ended: all its outputs exist, or it failed (`failure`).
    StageCompleted {
        time: u64,
        stage: usize,
        attempt: u32,
        failure: Option<String>,
    },
    /// A task was handed to an executor.
    TaskStart {
        time: u64,
        task: u64,
        stage: usize,
        stage_attempt: u32,
        partition: usize,
        attempt: u32,
        executor: String,
    },
    /// A task ended.
    TaskEnd {
        time: u64,
        task: u64,
        stage: usize,
        stage_attempt: u32,
        partition: usize,
        attempt: u32,
        /// Where it ran (under Mesos the agent's executor, not the task pool).
        executor: String,
        status: TaskEndStatus,
        error: Option<String>,
        metrics: TaskMetrics,
    },
    /// An executor joined (or, under Mesos, was first heard from).
    ExecutorAdded {
        time: u64,
        executor: String,
        cores: usize,
        /// `host:port` of its block server, when known.
        address: Option<String>,
    },
    /// An executor was lost.
    ExecutorRemoved {
        time: u64,
        executor: String,
        reason: String,
    },
}

/// Observes scheduler events, on the bus's thread.
pub trait Listener: Send + 'static {
    /// One event, in scheduler order.
    fn on_event(&mut self, event: &SchedulerEvent);
    /// The bus stops (after the last event).
    fn on_stop(&mut self) {}
}

/// Delivers events to listeners on a thread of its own.
pub struct ListenerBus {
    tx: Option<Sender<Arc<SchedulerEvent>>>,
    thread: Option<JoinHandle<()>>,
}

impl ListenerBus {
    /// Start delivering to `listeners` (no thread when there are none).
    pub fn start(listeners: Vec<Box<dyn Listener>>) -> ListenerBus {
        if listeners.is_empty() {
            return ListenerBus {
                tx: None,
                thread: None,
            };
        }
        let (tx, rx): (_, Receiver<Arc<SchedulerEvent>>) = unbounded();
        let thread = std::thread::Builder::new()
            .name("spate-listeners".into())
            .spawn(move || {
                let mut listeners = listeners;
                for e in rx {
                    for l in &mut listeners {
                        l.on_event(&e);
                    }
                }
                for l in &mut listeners {
                    l.on_stop();
                }
            })
            .ok();
        ListenerBus {
            tx: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Whether anyone listens (so callers can skip building events).
    pub fn active(&self) -> bool {
        self.tx.is_some()
    }

    /// Post an event.
    pub fn post(&self, event: SchedulerEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Arc::new(event));
        }
    }

    /// Deliver what was posted, then stop the listeners.
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ListenerBus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Appends every event to `<dir>/<app>-<start ms>.jsonl`, one JSON object per line.
pub struct EventLog {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    failed: bool,
}

impl EventLog {
    /// Create the log file (and `dir`).
    pub fn create(dir: &Path, app: &str) -> spate_core::Result<EventLog> {
        std::fs::create_dir_all(dir)
            .map_err(|e| spate_core::Error::io("creating the event log directory", dir, e))?;
        let name: String = app
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{name}-{}.jsonl", now_ms()));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| spate_core::Error::io("creating the event log", &path, e))?;
        Ok(EventLog {
            path,
            out: std::io::BufWriter::new(file),
            failed: false,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Listener for EventLog {
    fn on_event(&mut self, event: &SchedulerEvent) {
        if self.failed {
            return;
        }
        let written = serde_json::to_writer(&mut self.out, event)
            .map_err(std::io::Error::other)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| match event {
                // Readable up to the last finished job even if the program dies later.
                SchedulerEvent::JobEnd { .. } | SchedulerEvent::ApplicationEnd { .. } => {
                    self.out.flush()
                }
                _ => Ok(()),
            });
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), "event log stopped: {e}");
            self.failed = true;
        }
    }

    fn on_stop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Read an event log back (for tools and tests).
pub fn read_event_log(path: &Path) -> spate_core::Result<Vec<SchedulerEvent>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| spate_core::Error::io("reading the event log", path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                spate_core::Error::Other(format!("{} line {}: {e}", path.display(), i + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Arc<Mutex<Vec<SchedulerEvent>>>);
    impl Listener for Collect {
        fn on_event(&mut self, e: &SchedulerEvent) {
            self.0.lock().expect("lock").push(e.clone());
        }
    }

    #[test]
    fn the_bus_delivers_in_order_and_the_log_round_trips() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dir = std::env::temp_dir().join(format!("spate-evlog-{}", std::process::id()));
        let log = EventLog::create(&dir, "my app/1").expect("log");
        let path = log.path().to_path_buf();
        assert!(
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("my_app_1-"))
        );
        let mut bus = ListenerBus::start(vec![Box::new(Collect(seen.clone())), Box::new(log)]);
        let events = vec![
            SchedulerEvent::JobStart {
                time: 1,
                job: 0,
                rdd: "map[1]".into(),
                partitions: 2,
                stages: vec![StageInfo {
                    stage: 0,
                    name: "map[1]".into(),
                    kind: StageKind::Result,
                    tasks: 2,
                    parents: vec![],
                }],
            },
            SchedulerEvent::TaskEnd {
                time: 2,
                task: 0,
                stage: 0,
                stage_attempt: 1,
                partition: 0,
                attempt: 0,
                executor: "driver".into(),
                status: TaskEndStatus::Success,
                error: None,
                metrics: TaskMetrics {
                    input_records: 5,
                    ..Default::default()
                },
            },
            SchedulerEvent::JobEnd {
                time: 3,
                job: 0,
                succeeded: true,
                error: None,
            },
        ];
        for e in &events {
            bus.post(e.clone());
        }
        bus.stop();
        assert_eq!(*seen.lock().expect("lock"), events);
        assert_eq!(read_event_log(&path).expect("reads"), events);
        let first = std::fs::read_to_string(&path).expect("text");
        assert!(
            first.starts_with("{\"event\":\"job_start\",\"time\":1,"),
            "{first}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
