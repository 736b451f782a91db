//! Deep lineages (dpark's `test_long_recursion`, pushed to the limit): they run, or fail
//! with an error that says what to do, and nothing walks them recursively on the user's
//! thread (building, planning, printing and dropping them on a small stack).

use crate::common::{deep_chain, deep_lineage_limit};
use crate::fixtures::ctx;
use spate::plan::plan_stages;
use spate::prelude::*;

/// Runs `f` on a thread with a 256 KiB stack: recursion over a deep lineage overflows it.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread did not overflow its stack")
}

#[test]
fn deepest_pipeline_runs_one_more_is_refused_local_2() {
    deep_lineage_limit(ctx()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn deepest_pipeline_runs_one_more_is_refused_local() {
    let ctx = Context::builder().master("local").build().expect("local");
    deep_lineage_limit(&ctx).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn deep_lineages_are_built_printed_and_dropped_without_recursion() {
    let (rdd, _) = deep_chain(ctx(), 100_000);
    let lines = on_small_stack(move || {
        let lines = rdd.debug_string().lines().count();
        drop(rdd);
        lines
    });
    assert_eq!(lines, 100_001);
}

#[test]
fn long_chains_of_shuffles_plan_without_recursion() {
    let mut rdd = ctx().parallelize((0..10i64).map(|x| (x, 1u64)).collect(), 2);
    for _ in 0..20_000 {
        rdd = rdd.reduce_by_key(|a, b| a + b);
    }
    let stages = on_small_stack(move || plan_stages(&rdd.base()).stages.len());
    assert_eq!(stages, 20_001);
}

#[test]
fn a_job_through_many_shuffles_runs() {
    let mut rdd = ctx().parallelize((0..10i64).map(|x| (x % 3, 1u64)).collect(), 2);
    for _ in 0..200 {
        rdd = rdd.reduce_by_key(|a, b| a + b);
    }
    let mut got = rdd.collect().expect("job");
    got.sort();
    assert_eq!(got, vec![(0, 4), (1, 3), (2, 3)]);
}
