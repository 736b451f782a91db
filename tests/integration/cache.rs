//! Persisted RDDs: later jobs read cached partitions instead of recomputing them.

use spate::rdd::StorageLevel;
use std::sync::atomic::{AtomicUsize, Ordering};

fn ctx() -> spate::Context {
    spate::Context::builder()
        .master("local[2]")
        .build()
        .expect("ctx")
}

#[test]
fn cached_partitions_are_computed_once_and_unpersist_recomputes() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let ctx = ctx();
    let squares = ctx
        .range(0, 1000, 4)
        .map(|x| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            x * x
        })
        .cache();
    assert_eq!(squares.count().expect("job 1"), 1000);
    assert!(
        squares
            .map(|x| x % 7)
            .reduce(|a, b| a + b)
            .expect("job 2")
            .is_some()
    );
    let top = squares.top(1).expect("job 3");
    assert_eq!(top, vec![999 * 999]);
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        1000,
        "computed once for three jobs"
    );
    let plain = squares.unpersist();
    assert_eq!(plain.count().expect("job 4"), 1000);
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2000,
        "unpersisted: computed again"
    );
}

#[test]
fn disk_and_memory_and_disk_levels_give_the_same_data() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let ctx = ctx();
    let base = ctx.range(0, 500, 5).map(|x| {
        CALLS.fetch_add(1, Ordering::SeqCst);
        (x % 13, format!("v{x}"))
    });
    for level in [StorageLevel::Disk, StorageLevel::MemoryAndDisk] {
        let before = CALLS.load(Ordering::SeqCst);
        let kept = base.persist(level);
        let a = kept.collect().expect("first");
        let b = kept.collect().expect("second");
        assert_eq!(a, b);
        assert_eq!(a, base.collect().expect("uncached"));
        // the uncached collect computed 500 more; the two cached reads only 500 together
        assert_eq!(CALLS.load(Ordering::SeqCst) - before, 1000, "{level:?}");
        kept.unpersist();
    }
}

#[test]
fn a_cached_shuffle_output_feeds_later_jobs() {
    let ctx = ctx();
    let counts = ctx
        .range(0, 10_000, 8)
        .map(|x| (x % 100, 1u64))
        .reduce_by_key_n(|a, b| a + b, 4)
        .cache();
    assert_eq!(counts.count().expect("count"), 100);
    let total: u64 = counts
        .values()
        .reduce(|a, b| a + b)
        .expect("sum")
        .unwrap_or(0);
    assert_eq!(total, 10_000);
    let joined = counts.join(&counts).count().expect("self join");
    assert_eq!(joined, 100);
}
