//! Scheduler behaviour seen from the API: order of results, reuse of shuffle outputs,
//! concurrent jobs.

use crate::fixtures::ctx;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn collect_returns_partitions_in_order() {
    // later partitions are cheaper, so they tend to finish first
    let r = ctx().range(0, 4000, 8).map(|x| {
        if x < 500 {
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        x
    });
    assert_eq!(r.collect().expect("collect"), (0..4000).collect::<Vec<_>>());
}

#[test]
fn shuffle_outputs_are_reused_by_later_jobs() {
    static MAP_CALLS: AtomicUsize = AtomicUsize::new(0);
    let counts = ctx()
        .range(0, 1000, 4)
        .map(|x| {
            MAP_CALLS.fetch_add(1, Ordering::SeqCst);
            (x % 10, 1u64)
        })
        .reduce_by_key(|a, b| a + b);
    assert_eq!(counts.count().expect("first job"), 10);
    assert_eq!(MAP_CALLS.load(Ordering::SeqCst), 1000);
    let total: u64 = counts
        .values()
        .reduce(|a, b| a + b)
        .expect("second job")
        .unwrap_or(0);
    assert_eq!(total, 1000);
    assert_eq!(
        MAP_CALLS.load(Ordering::SeqCst),
        1000,
        "map stage skipped the second time"
    );
}

#[test]
fn concurrent_jobs_from_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                ctx()
                    .range(0, 1000, 5)
                    .map_with(i, |i, x| (x % 3, x * i))
                    .reduce_by_key(|a, b| a + b)
                    .collect_as_map()
                    .expect("job")
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let m = h.join().expect("thread");
        let want: i64 = (0..1000).filter(|x| x % 3 == 0).map(|x| x * i as i64).sum();
        assert_eq!(m[&0], want);
    }
}

/// A backend of two executors, `e1` and `e2`, running tasks on threads of this process,
/// whose `e2` loses its block server (a lost machine) once the first reduce task starts:
/// reduce tasks that would read from it fail with the fetch failure a real reader reports.
/// (Tasks sent to `e2` afterwards run, and keep their outputs, on `e1`: the test is about
/// how many fetch failures it takes to recover, not about where tasks go next.)
struct LosesABlockServer {
    shuffle: std::sync::Arc<spate_shuffle::MemoryShuffleStore>,
    events: Option<spate_scheduler::event::EventSink>,
    e2_dead: bool,
    fetch_failures: std::sync::Arc<AtomicUsize>,
}

impl spate_scheduler::SchedulerBackend for LosesABlockServer {
    fn start(&mut self, events: spate_scheduler::event::EventSink) -> spate::Result<()> {
        events.executor_added("e1", 2);
        events.executor_added("e2", 2);
        self.events = Some(events);
        Ok(())
    }

    fn launch(&mut self, executor: &str, task: spate_scheduler::backend::TaskLaunch) {
        use spate_core::task::{TaskContext, TaskFailure, run_task};
        let Some(events) = self.events.clone() else {
            return;
        };
        if !task.shuffle_locations.is_empty() {
            self.e2_dead = true;
        }
        let lost_output = task.shuffle_locations.iter().find_map(|(s, execs)| {
            let m = execs.iter().position(|e| e == "e2")?;
            Some((*s, m))
        });
        let failure = match lost_output {
            Some((shuffle, map)) if self.e2_dead => {
                self.fetch_failures.fetch_add(1, Ordering::SeqCst);
                Some(TaskFailure::FetchFailed {
                    shuffle,
                    map,
                    executor: "e2".into(),
                    message: format!(
                        "{}: 127.0.0.1:9/shuffle/{shuffle}/{map}/0: Connection refused",
                        spate_shuffle::client::UNREACHABLE
                    ),
                })
            }
            _ => None,
        };
        let executor = if self.e2_dead && executor == "e2" {
            "e1"
        } else {
            executor
        };
        if let Some(f) = failure {
            return events.task_ended(task.id, Err(f));
        }
        let tc = TaskContext {
            stage: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            executor: std::sync::Arc::from(executor),
            shuffle: self.shuffle.clone(),
            spill_bytes: None,
        };
        std::thread::spawn(move || events.task_ended(task.id, run_task(&task.kind, &tc)));
    }

    fn default_parallelism(&self) -> usize {
        4
    }

    fn stop(&mut self) {}
}

/// Regression (Mesos agent killed mid-job): the first fetch from a block server that is
/// gone unregisters every map output that executor held, so they are all recomputed at
/// once and the job finishes after one failed reduce attempt, instead of failing after
/// one fetch failure per lost output.
#[test]
fn an_unreachable_block_server_loses_all_its_outputs_at_once() {
    let shuffle = std::sync::Arc::new(spate_shuffle::MemoryShuffleStore::new());
    let fetch_failures = std::sync::Arc::new(AtomicUsize::new(0));
    let backend = LosesABlockServer {
        shuffle: shuffle.clone(),
        events: None,
        e2_dead: false,
        fetch_failures: fetch_failures.clone(),
    };
    let scheduler =
        spate_scheduler::Scheduler::start(Box::new(backend), shuffle, 4).expect("scheduler");
    let runner: std::sync::Arc<dyn spate_core::JobRunner> = scheduler.clone();
    // 16 map outputs, about half of them on e2: more than the 4 stage attempts allowed.
    let mut counts = spate_core::rdd::range(runner, 0, 16_000, 16)
        .map(|x| (x % 100, 1u64))
        .reduce_by_key_n(|a, b| a + b, 2)
        .collect()
        .expect("the job survives the lost block server");
    counts.sort();
    assert_eq!(counts, (0..100).map(|k| (k, 160)).collect::<Vec<_>>());
    // Both reduce tasks of the first attempt may fail; none after that.
    assert!(
        fetch_failures.load(Ordering::SeqCst) <= 2,
        "{} fetch failures: one should have lost every output of e2",
        fetch_failures.load(Ordering::SeqCst)
    );
    scheduler.stop();
}
