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
