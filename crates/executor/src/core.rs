//! The executor core shared by every way of running executors (local-cluster's control
//! connection, Mesos's executor API): the block server, the disk shuffle store, and task
//! threads that open sealed tasks, run them at the task boundary and report their state
//! through a [`StatusSink`].

use crate::runtime::ExecutorError;
use crossbeam_channel::{Receiver, Sender, unbounded};
use spate_core::protocol::{LaunchTask, RemoteFailure, Report, TaskResult, TaskState, ToExecutor};
use spate_core::ship::{Secret, verify};
use spate_core::task::{EncodedOutput, TaskContext, TaskFailure, TaskKind, run_task_encoded};
use spate_shuffle::server::{Served, result_path, serve};
use spate_shuffle::{BlockStore, RemoteShuffle};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

/// Results larger than this are written to the work dir and fetched by the driver.
pub const MAX_INLINE_RESULT: usize = 256 << 10;

/// Where task states go: (task id, new state).
pub type StatusSink = Arc<dyn Fn(u64, TaskState, Report) + Send + Sync>;

/// What a core needs to know.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Executor id (reported in map statuses).
    pub executor: String,
    /// Application secret for envelopes.
    pub secret: Secret,
    /// Work directory (shuffle files, large results).
    pub work_dir: PathBuf,
    /// Task threads.
    pub cores: usize,
    /// Map-side memory budget per task, bytes.
    pub spill_bytes: usize,
    /// Bytes of map outputs kept in memory (the rest go to disk).
    pub shuffle_memory: usize,
    /// Address the block server binds to (loopback for local-cluster; the agent's host
    /// address under Mesos).
    pub bind: String,
}

struct Shared {
    settings: CoreSettings,
    store: Arc<BlockStore>,
    results: PathBuf,
    block_addr: String,
    sink: StatusSink,
    runtime: tokio::runtime::Handle,
    /// Lineages decoded for running tasks, by envelope MAC: the tasks of a stage running
    /// at once share one decoded copy (weak: nothing outlives its tasks).
    decoded: Mutex<Vec<([u8; 32], Weak<TaskKind>)>>,
}

impl Shared {
    /// The task kind sealed in `envelope`, decoded once for all the tasks of its stage that
    /// run at the same time.
    fn open(&self, envelope: &[u8]) -> Result<Arc<TaskKind>, spate_core::ship::ShipError> {
        let verified = verify(envelope, &self.settings.secret)?;
        let mac = verified.mac();
        // Held while decoding: tasks of one stage launched together decode it once.
        let mut decoded = self.decoded.lock().unwrap_or_else(|p| p.into_inner());
        let running = decoded
            .iter()
            .find(|(m, _)| *m == mac)
            .and_then(|(_, k)| k.upgrade());
        if let Some(kind) = running {
            return Ok(kind);
        }
        let kind = Arc::new(verified.decode::<TaskKind>()?);
        decoded.retain(|(_, k)| k.strong_count() > 0);
        decoded.push((mac, Arc::downgrade(&kind)));
        Ok(kind)
    }
}

/// A running executor core.
pub struct Core {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    tasks: Sender<LaunchTask>,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Core {
    /// Start the I/O runtime, the block server and the task threads.
    pub fn start(settings: CoreSettings, sink: StatusSink) -> Result<Core, ExecutorError> {
        let io = |e: std::io::Error| ExecutorError::Io(e.to_string());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("spate-executor-io")
            .enable_all()
            .build()
            .map_err(io)?;
        let store = Arc::new(
            BlockStore::new(settings.work_dir.join("shuffle"), settings.shuffle_memory)
                .map_err(|e| ExecutorError::Io(e.to_string()))?,
        );
        let results = settings.work_dir.join("results");
        std::fs::create_dir_all(&results).map_err(io)?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(format!(
                "{}:0",
                settings.bind
            )))
            .map_err(io)?;
        let block_addr = listener.local_addr().map_err(io)?.to_string();
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(serve(
            listener,
            Served {
                store: store.clone(),
                results: results.clone(),
            },
            async {
                let _ = server_stopped.await;
            },
        ));
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            store,
            results,
            block_addr,
            sink,
            runtime: rt.handle().clone(),
            decoded: Mutex::new(Vec::new()),
        });
        spate_core::cache::set_dir(settings.work_dir.join("cache"));
        // Broadcasts are fetched from the driver by the first task that reads one.
        let fetch_rt = rt.handle().clone();
        spate_core::broadcast::set_fetcher(Box::new(move |source, path| {
            fetch_rt
                .block_on(spate_shuffle::client::get(source, path, 3))
                .map(Vec::from)
                .map_err(|e| spate_core::Error::Other(e.to_string()))
        }));
        let (tasks, queue) = unbounded::<LaunchTask>();
        for i in 0..settings.cores.max(1) {
            let queue = queue.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("spate-executor-task-{i}"))
                .stack_size(spate_core::task::TASK_STACK_BYTES)
                .spawn(move || task_loop(queue, shared))
                .map_err(io)?;
        }
        Ok(Core {
            rt,
            shared,
            tasks,
            stop_server: Some(stop_server),
        })
    }

    /// `host:port` of the block server.
    pub fn block_addr(&self) -> &str {
        &self.shared.block_addr
    }

    /// The I/O runtime, for the control plane's own network work.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Act on a control message that drops data this executor keeps (a persisted RDD's
    /// cached partitions, a shuffle's map outputs), whichever channel brought it (the
    /// local-cluster connection or a Mesos framework message); other messages are the
    /// caller's.
    pub fn drop_data(&self, msg: &ToExecutor) {
        match msg {
            ToExecutor::Unpersist(key) => spate_core::cache::remove(*key),
            ToExecutor::RemoveShuffle(shuffle) => self.shared.store.remove_shuffle(*shuffle),
            _ => {}
        }
    }

    /// Queue a task; its states go to the sink.
    pub fn launch(&self, task: LaunchTask) {
        let _ = self.tasks.send(task);
    }

    /// Stop the block server and the I/O runtime (task threads end with the process).
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        self.rt
            .shutdown_timeout(std::time::Duration::from_millis(200));
    }
}

fn task_loop(queue: Receiver<LaunchTask>, shared: Arc<Shared>) {
    for launch in queue {
        let task = launch.task;
        (shared.sink)(task, TaskState::Running, Report::default());
        let mut state = run_one(&shared, launch);
        // run_one ran the task on this thread: its counters and updates are still here.
        let accumulators = match spate_core::accumulator::take_encoded() {
            Ok(a) => a,
            Err(e) => {
                state = TaskState::Failed(RemoteFailure::Error(e.to_string()));
                Vec::new()
            }
        };
        let report = Report {
            metrics: spate_core::metrics::current(),
            accumulators,
            cached: spate_core::cache::take_stored(),
        };
        (shared.sink)(task, state, report);
    }
}

fn run_one(shared: &Shared, launch: LaunchTask) -> TaskState {
    let kind = match shared.open(&launch.envelope) {
        Ok(k) => k,
        Err(e) => {
            return TaskState::Failed(RemoteFailure::Error(format!(
                "executor {} refused task {}: {e}",
                shared.settings.executor, launch.task
            )));
        }
    };
    let locations: HashMap<usize, Vec<String>> = launch.shuffle_locations.into_iter().collect();
    let tc = TaskContext {
        stage: launch.stage,
        partition: launch.partition,
        attempt: launch.attempt,
        executor: Arc::from(shared.settings.executor.as_str()),
        shuffle: Arc::new(RemoteShuffle::new(
            shared.store.clone(),
            shared.block_addr.clone(),
            shared.settings.executor.clone(),
            locations,
            shared.runtime.clone(),
        )),
        spill_bytes: Some(shared.settings.spill_bytes),
    };
    match run_task_encoded(&kind, &tc) {
        Ok(EncodedOutput::Map(status)) => TaskState::Finished(TaskResult::Map {
            records: status.records,
        }),
        Ok(EncodedOutput::Result(bytes)) if bytes.len() <= MAX_INLINE_RESULT => {
            TaskState::Finished(TaskResult::Inline(bytes))
        }
        Ok(EncodedOutput::Result(bytes)) => {
            let path = result_path(&shared.results, launch.task);
            match std::fs::write(&path, &bytes) {
                Ok(()) => TaskState::Finished(TaskResult::Url(format!(
                    "http://{}/result/{}",
                    shared.block_addr, launch.task
                ))),
                Err(e) => TaskState::Failed(RemoteFailure::Error(format!(
                    "writing result {}: {e}",
                    path.display()
                ))),
            }
        }
        Err(TaskFailure::FetchFailed {
            shuffle,
            map,
            executor,
            message,
        }) => TaskState::Failed(RemoteFailure::FetchFailed {
            shuffle,
            map,
            executor,
            message,
        }),
        Err(TaskFailure::Panicked { message }) => {
            TaskState::Failed(RemoteFailure::Panicked(message))
        }
        Err(TaskFailure::Error { message }) => TaskState::Failed(RemoteFailure::Error(message)),
    }
}
