//! Failure paths of the DAG scheduler, scripted on a fake backend (no threads of its own,
//! no network): fetch failures re-run only the lost map output, a lost executor's outputs
//! and tasks are re-run elsewhere, and retries avoid the executor that failed.

use spate_core::error::Error;
use spate_core::rdd::{self, JobRunner, Rdd};
use spate_core::shuffle::ShuffleService;
use spate_core::task::{TaskContext, TaskFailure, TaskKind, run_task};
use spate_scheduler::Scheduler;
use spate_scheduler::backend::{SchedulerBackend, TaskLaunch};
use spate_scheduler::event::EventSink;
use spate_shuffle::MemoryShuffleStore;
use std::sync::{Arc, Mutex};

/// What the script decides for a launched task.
enum Verdict {
    Run,
    FetchFail {
        shuffle: usize,
        map: usize,
    },
    Fail(&'static str),
    /// Run the task, then report its executor lost.
    RunThenLose,
    /// Report the task's executor lost while the task runs.
    LoseMidTask,
    /// Never answer; the backend reports that it can run nothing any more.
    BackendDies,
}

#[derive(Clone, Debug, PartialEq)]
struct Launched {
    stage: usize,
    partition: usize,
    map_task: bool,
    executor: String,
}

type Script = Box<dyn FnMut(&Launched, &[Launched]) -> Verdict + Send>;

struct ScriptedBackend {
    executors: Vec<(&'static str, usize)>,
    store: Arc<MemoryShuffleStore>,
    sink: Option<EventSink>,
    log: Arc<Mutex<Vec<Launched>>>,
    script: Script,
}

impl SchedulerBackend for ScriptedBackend {
    fn start(&mut self, events: EventSink) -> spate_core::Result<()> {
        for (name, cores) in &self.executors {
            events.executor_added(name, *cores);
        }
        self.sink = Some(events);
        Ok(())
    }

    fn launch(&mut self, executor: &str, task: TaskLaunch) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let entry = Launched {
            stage: task.stage,
            partition: task.partition,
            map_task: matches!(task.kind, TaskKind::ShuffleMap(_)),
            executor: executor.to_string(),
        };
        let verdict = {
            let log = self.log.lock().expect("log");
            (self.script)(&entry, &log)
        };
        self.log.lock().expect("log").push(entry);
        let tc = TaskContext {
            stage: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            executor: Arc::from(executor),
            shuffle: self.store.clone(),
            spill_bytes: None,
        };
        match verdict {
            Verdict::Run => sink.task_ended(task.id, run_task(&task.kind, &tc)),
            Verdict::RunThenLose => {
                sink.task_ended(task.id, run_task(&task.kind, &tc));
                sink.executor_lost(executor, "killed by the script");
            }
            Verdict::LoseMidTask => sink.executor_lost(executor, "lost in the middle of a task"),
            Verdict::FetchFail { shuffle, map } => {
                self.store.remove_map_output(shuffle, map);
                sink.task_ended(
                    task.id,
                    Err(TaskFailure::FetchFailed {
                        shuffle,
                        map,
                        executor: executor.to_string(),
                        message: "scripted fetch failure".into(),
                    }),
                );
            }
            Verdict::Fail(msg) => sink.task_ended(
                task.id,
                Err(TaskFailure::Error {
                    message: msg.into(),
                }),
            ),
            Verdict::BackendDies => {
                sink.backend_failed("every executor was lost and none could be replaced")
            }
        }
    }

    fn default_parallelism(&self) -> usize {
        2
    }

    fn stop(&mut self) {}
}

fn scheduler(
    executors: Vec<(&'static str, usize)>,
    max_failures: u32,
    script: Script,
) -> (Arc<Scheduler>, Arc<Mutex<Vec<Launched>>>) {
    let (sched, log, _) = scheduler_with_store(executors, max_failures, script);
    (sched, log)
}

fn scheduler_with_store(
    executors: Vec<(&'static str, usize)>,
    max_failures: u32,
    script: Script,
) -> (
    Arc<Scheduler>,
    Arc<Mutex<Vec<Launched>>>,
    Arc<MemoryShuffleStore>,
) {
    let store = Arc::new(MemoryShuffleStore::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    let backend = ScriptedBackend {
        executors,
        store: store.clone(),
        sink: None,
        log: log.clone(),
        script,
    };
    let sched = Scheduler::start(Box::new(backend), store.clone(), max_failures).expect("starts");
    (sched, log, store)
}

/// The job every scenario runs: 100 numbers counted by `x % 5` over 4 map and 2 reduce
/// partitions (shuffle 0 of a fresh scheduler, reduce stage 1).
fn sums(runner: Arc<dyn JobRunner>) -> Rdd<(i64, u64)> {
    rdd::range(runner, 0, 100, 4)
        .map(|x| (x % 5, 1u64))
        .reduce_by_key_n(|a, b| a + b, 2)
}

fn word_sums(runner: Arc<dyn JobRunner>) -> Vec<(i64, u64)> {
    let mut v = sums(runner).collect().expect("job succeeds");
    v.sort();
    v
}

const EXPECTED: [(i64, u64); 5] = [(0, 20), (1, 20), (2, 20), (3, 20), (4, 20)];

/// Also the regression test for stale fetch failures: reduce partition 1 of the same
/// attempt fails too (the scripted failure deleted map output 2), and its report arrives
/// after map 2 was recomputed; it used to unregister the fresh output again, looping
/// until the stage aborted (and then indexing out of bounds in the event loop).
#[test]
fn fetch_failure_reruns_only_the_lost_map_output() {
    let mut failed = false;
    let (sched, log) = scheduler(
        vec![("e1", 2)],
        4,
        Box::new(move |t, _| {
            if !t.map_task && t.partition == 0 && !failed {
                failed = true;
                Verdict::FetchFail { shuffle: 0, map: 2 }
            } else {
                Verdict::Run
            }
        }),
    );
    assert_eq!(word_sums(sched.clone()), EXPECTED);
    let log = log.lock().expect("log").clone();
    let map_runs: Vec<usize> = log
        .iter()
        .filter(|t| t.map_task)
        .map(|t| t.partition)
        .collect();
    let mut sorted = map_runs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![0, 1, 2, 2, 3],
        "only map partition 2 re-ran: {log:?}"
    );
    let reduce0 = log
        .iter()
        .filter(|t| !t.map_task && t.partition == 0)
        .count();
    assert_eq!(reduce0, 2, "the failed reduce task re-ran: {log:?}");
}

#[test]
fn lost_executor_outputs_are_recomputed_elsewhere() {
    let mut lost = false;
    let (sched, log) = scheduler(
        vec![("e1", 1), ("e2", 1)],
        4,
        Box::new(move |t, _| {
            if t.map_task && t.executor == "e1" && !lost {
                lost = true;
                Verdict::RunThenLose
            } else {
                Verdict::Run
            }
        }),
    );
    assert_eq!(word_sums(sched.clone()), EXPECTED);
    let log = log.lock().expect("log").clone();
    // Every map partition that ran on e1 (finished, or launched before the loss was
    // known) ran again on e2, and every reduce task ran on e2.
    for t in log.iter().filter(|t| t.executor == "e1") {
        assert!(t.map_task, "no reduce task on the lost executor: {log:?}");
        assert!(
            log.iter()
                .any(|u| u.map_task && u.partition == t.partition && u.executor == "e2"),
            "map {} recomputed on e2: {log:?}",
            t.partition
        );
    }
    assert_eq!(log.iter().filter(|t| !t.map_task).count(), 2, "{log:?}");
}

/// A script where only partition 1 of the first job's reduce stage (stage 1) fails:
/// `first` on its first attempt, `later` on every other.
fn reduce_partition_one_fails(first: fn() -> Verdict, later: fn() -> Verdict) -> Script {
    Box::new(move |t, history| {
        let tries = history
            .iter()
            .filter(|h| !h.map_task && h.stage == t.stage && h.partition == t.partition)
            .count();
        match (t.map_task, t.stage, t.partition, tries) {
            (false, 1, 1, 0) => first(),
            (false, 1, 1, _) => later(),
            _ => Verdict::Run,
        }
    })
}

#[test]
fn retries_prefer_another_executor_and_fail_with_the_first_cause() {
    let (sched, log) = scheduler(
        vec![("e1", 1), ("e2", 1)],
        3,
        reduce_partition_one_fails(
            || Verdict::Fail("first cause"),
            || Verdict::Fail("later cause"),
        ),
    );
    let e = sums(sched.clone())
        .collect()
        .expect_err("partition 1 always fails");
    match e {
        Error::JobFailed {
            partition,
            attempts,
            message,
            ..
        } => {
            assert_eq!((partition, attempts), (1, 3));
            assert_eq!(message, "first cause");
        }
        other => panic!("unexpected {other}"),
    }
    let log = log.lock().expect("log").clone();
    let tries: Vec<&str> = log
        .iter()
        .filter(|t| !t.map_task && t.partition == 1)
        .map(|t| t.executor.as_str())
        .collect();
    assert_eq!(tries.len(), 3);
    assert_ne!(
        tries[0], tries[1],
        "the retry went to the other executor: {tries:?}"
    );
    // the scheduler is still usable after a failed job
    assert_eq!(rdd::range(sched, 0, 10, 2).count().expect("next job"), 10);
}

/// Regression (seen under load): when a partition's first attempt died with its executor
/// and the later ones panicked, the job's error was the executor loss and the panic was
/// lost. The task's own failure is the cause to report.
#[test]
fn a_tasks_own_failure_is_reported_over_an_executor_loss() {
    let (sched, _log) = scheduler(
        vec![("e1", 1), ("e2", 1)],
        3,
        reduce_partition_one_fails(
            || Verdict::LoseMidTask,
            || Verdict::Fail("the task's own failure"),
        ),
    );
    let e = sums(sched).collect().expect_err("partition 1 always fails");
    match e {
        Error::JobFailed {
            attempts, message, ..
        } => {
            assert_eq!(attempts, 3);
            assert_eq!(message, "the task's own failure");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_backend_that_can_run_nothing_fails_jobs_instead_of_hanging() {
    let (sched, _log) = scheduler(vec![("e1", 2)], 4, Box::new(|_, _| Verdict::BackendDies));
    let e = rdd::range(sched, 0, 10, 2)
        .count()
        .expect_err("no executors");
    let msg = e.to_string();
    assert!(
        msg.contains("no executors can run job") && msg.contains("none could be replaced"),
        "{msg}"
    );
}

/// A shuffle stays while an RDD reads it (a second action reuses its map outputs) and is
/// removed, map outputs and all, once the last RDD reading it is dropped.
#[test]
fn a_shuffle_no_rdd_reads_is_removed() {
    let (sched, log, store) =
        scheduler_with_store(vec![("e1", 2)], 1, Box::new(|_, _| Verdict::Run));
    let counts = sums(sched.clone());
    let doubled = counts.map(|(k, v)| (k, v * 2));
    assert_eq!(counts.count().expect("job"), 5);
    assert_eq!(doubled.count().expect("job"), 5);
    let map_tasks = |log: &Arc<Mutex<Vec<Launched>>>| {
        log.lock()
            .expect("log")
            .iter()
            .filter(|t| t.map_task)
            .count()
    };
    assert_eq!(map_tasks(&log), 4, "the second job reused the map outputs");
    assert!((0..4).all(|m| store.has_map_output(0, m)));
    drop(counts);
    // `doubled` still reads the shuffle.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!((0..4).all(|m| store.has_map_output(0, m)));
    drop(doubled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (0..4).any(|m| store.has_map_output(0, m)) {
        assert!(
            std::time::Instant::now() < deadline,
            "map outputs of shuffle 0 kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
