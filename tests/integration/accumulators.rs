//! Shared variables: accumulators count each partition once; broadcasts are shared.

use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn counters_and_custom_merges_read_after_an_action() {
    let ctx = spate::Context::builder()
        .master("local[3]")
        .build()
        .expect("ctx");
    let seen = ctx.accumulator(0u64);
    let sum = ctx.accumulator(0i64);
    let bad = ctx.accumulator_with(Vec::<i64>::new(), |mut a, mut b| {
        a.append(&mut b);
        a.sort();
        a
    });
    let kept = ctx
        .range(0, 1000, 7)
        .filter_with(
            (seen.clone(), sum.clone(), bad.clone()),
            |(seen, sum, bad), x| {
                seen.add(1);
                sum.add(*x);
                if x % 250 == 0 {
                    bad.add(vec![*x]);
                }
                x % 3 == 0
            },
        )
        .count()
        .expect("job");
    assert_eq!(kept, 334);
    assert_eq!(seen.value(), 1000);
    assert_eq!(sum.value(), (0..1000).sum::<i64>());
    assert_eq!(bad.value(), vec![0, 250, 500, 750]);
    // A second action adds again: each job's partitions count once per job.
    ctx.range(0, 10, 2)
        .foreach_with(seen.clone(), |s, _| s.add(1))
        .expect("job");
    assert_eq!(seen.value(), 1010);
}

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[test]
fn a_retried_task_counts_once() {
    // local[2,4]: tasks are retried up to 4 times.
    let ctx = spate::Context::builder()
        .master("local[2,4]")
        .build()
        .expect("ctx");
    let seen = ctx.accumulator(0u64);
    let n = ctx
        .range(0, 100, 4)
        .map_with(seen.clone(), |seen, x| {
            seen.add(1);
            // fail once, after partition 1 has already added half of its records
            if x == 37 && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
                panic!("transient failure");
            }
            x
        })
        .count()
        .expect("the retry succeeds");
    assert!(FAILED_ONCE.load(Ordering::SeqCst));
    assert_eq!(n, 100);
    assert_eq!(
        seen.value(),
        100,
        "the failed attempt's updates are dropped"
    );
}

#[test]
fn map_side_updates_count_once_when_a_shuffle_is_reused() {
    let ctx = spate::Context::builder()
        .master("local[2]")
        .build()
        .expect("ctx");
    let seen = ctx.accumulator(0u64);
    let counts = ctx
        .range(0, 500, 5)
        .map_with(seen.clone(), |seen, x| {
            seen.add(1);
            (x % 7, 1u64)
        })
        .reduce_by_key(|a, b| a + b);
    assert_eq!(counts.count().expect("job 1"), 7);
    assert_eq!(counts.collect().expect("job 2").len(), 7);
    assert_eq!(
        seen.value(),
        500,
        "the map stage ran once; the second job reused it"
    );
}

#[test]
fn local_broadcasts_are_shared_without_copies() {
    let ctx = spate::Context::builder()
        .master("local[2]")
        .build()
        .expect("ctx");
    let table = ctx
        .broadcast((0..1000u64).collect::<Vec<_>>())
        .expect("broadcast");
    let driver_ptr = table.value().as_ptr() as usize;
    let seen = ctx
        .range(0, 8, 8)
        .map_with(table.clone(), |t, i| {
            (t.as_ptr() as usize, t[i as usize * 100])
        })
        .collect()
        .expect("job");
    assert!(
        seen.iter().all(|(p, _)| *p == driver_ptr),
        "every task read the driver's value"
    );
    assert_eq!(
        seen.iter().map(|s| s.1).collect::<Vec<_>>(),
        (0..8).map(|i| i * 100).collect::<Vec<_>>()
    );
    assert_eq!(
        ctx.broadcast_stats(),
        spate::BroadcastStats::default(),
        "nothing sent"
    );
}

static SLOW_ONCE: AtomicBool = AtomicBool::new(false);

#[test]
fn a_speculative_copy_finishes_the_job_and_counts_once() {
    let dir = crate::fixtures::TempDir::new("speculation");
    let ctx = spate::Context::builder()
        .master("local[2]")
        .speculation(true)
        .event_log(&dir.0)
        .build()
        .expect("ctx");
    let seen = ctx.accumulator(0u64);
    let total = ctx
        .range(0, 4000, 4)
        .map_partitions_with_index_with(seen.clone(), |seen, index, it| {
            let v: Vec<i64> = it.inspect(|_| seen.add(1)).collect();
            // the first run of the last partition straggles
            if index == 3 && !SLOW_ONCE.swap(true, Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(2500));
            }
            v
        })
        .reduce(|a, b| a + b)
        .expect("job");
    assert_eq!(total, Some((0..4000).sum()));
    // let the straggling original finish too: its success must not count again
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let _ = ctx.range(0, 1, 1).count();
    assert_eq!(
        seen.value(),
        4000,
        "the copy's updates or the original's, not both"
    );
    drop(ctx);
    let file = std::fs::read_dir(&dir.0)
        .expect("log dir")
        .next()
        .expect("a log")
        .expect("entry")
        .path();
    let starts = spate::listener::read_event_log(&file)
        .expect("log")
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                spate::listener::SchedulerEvent::TaskStart { partition: 3, .. }
            )
        })
        .count();
    assert_eq!(starts, 2, "the straggler got one speculative copy");
}
