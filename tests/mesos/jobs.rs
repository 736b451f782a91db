//! The jobs the cases run, each on a Mesos context and on `local[2]` to compare.

#[path = "../common/jobs.rs"]
mod common;

pub use common::*;
use spate::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn jobs_equal(ctx: &Context, local: &Context, dir: &Path) -> Result<String, String> {
    let mut times = Vec::new();
    let path = corpus_file(dir, 20_000);
    let t = Instant::now();
    let got = word_counts(ctx, &path).map_err(|e| format!("wordcount: {e}"))?;
    times.push(format!("wordcount {:.1} s", t.elapsed().as_secs_f64()));
    let want = word_counts(local, &path).map_err(|e| format!("local wordcount: {e}"))?;
    check("wordcount: distinct words", got.len(), want.len())?;
    check("wordcount", got, want)?;

    let t = Instant::now();
    let got = join_pairs(ctx).map_err(|e| format!("join: {e}"))?;
    times.push(format!("join {:.1} s", t.elapsed().as_secs_f64()));
    if got.is_empty() {
        return Err("join: empty".into());
    }
    check(
        "join",
        got,
        join_pairs(local).map_err(|e| format!("local join: {e}"))?,
    )?;

    let t = Instant::now();
    let got = pagerank(ctx).map_err(|e| format!("pagerank: {e}"))?;
    times.push(format!("pagerank {:.1} s", t.elapsed().as_secs_f64()));
    check(
        "pagerank",
        got,
        pagerank(local).map_err(|e| format!("local pagerank: {e}"))?,
    )?;

    let t = Instant::now();
    let got = sorted_pairs(ctx).map_err(|e| format!("sort_by_key: {e}"))?;
    times.push(format!("sort_by_key {:.1} s", t.elapsed().as_secs_f64()));
    if !got.windows(2).all(|w| w[0].0 <= w[1].0) {
        return Err("sort_by_key: not sorted".into());
    }
    check(
        "sort_by_key",
        got,
        sorted_pairs(local).map_err(|e| format!("local sort_by_key: {e}"))?,
    )?;

    // Cached partitions stay in the executors: a second job reads them (the map function
    // runs once per element in all, counted by an accumulator) and broadcasts reach them.
    let t = Instant::now();
    let calls = ctx.accumulator(0u64);
    let offset = ctx.broadcast(7i64).map_err(|e| format!("broadcast: {e}"))?;
    let cached = ctx
        .range(0, 10_000, 4)
        .map_with((calls.clone(), offset), |(calls, offset), x| {
            calls.add(1);
            x + **offset
        })
        .cache();
    let first = cached
        .reduce(|a, b| a + b)
        .map_err(|e| format!("cache: {e}"))?;
    let second = cached
        .reduce(|a, b| a + b)
        .map_err(|e| format!("cache: {e}"))?;
    times.push(format!("cache {:.1} s", t.elapsed().as_secs_f64()));
    let want: i64 = (0..10_000).map(|x| x + 7).sum();
    check("cached sum", (first, second), (Some(want), Some(want)))?;
    check(
        "map calls over two jobs on a cached RDD",
        calls.value(),
        10_000,
    )?;
    Ok(times.join(", "))
}

/// How the first reduce task of [`stalled_counts`] stalls: it creates `once` (an
/// absolute path: only the first task anywhere stalls), writes the file `ready` into its
/// working directory (the executor's sandbox, so the test sees which agent runs it),
/// then waits until `go` exists or `max_ms` pass.
#[derive(Clone)]
pub struct Stall {
    pub once: String,
    pub ready: String,
    pub go: String,
    pub max_ms: u64,
}

/// Counts of `(x * 7) % 1000` over `0..200_000`: 16 map tasks (so that each agent holds
/// several map outputs when one is lost), 4 reduce tasks.
pub fn stalled_counts(ctx: &Context, stall: Option<Stall>) -> spate::Result<Vec<(i64, u64)>> {
    let counts = ctx
        .range(0, 200_000, 16)
        .map(|x| ((x * 7) % 1000, 1u64))
        .reduce_by_key_n(|a, b| a + b, 4);
    let checked = match stall {
        Some(s) => counts.map_partitions_with(
            (s.once, s.ready, s.go, s.max_ms),
            |(once, ready, go, max_ms), it| {
                if first_time(once) {
                    let _ = std::fs::write(ready, b"");
                    let until = Instant::now() + Duration::from_millis(*max_ms);
                    while !Path::new(go).exists() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                it
            },
        ),
        None => counts,
    };
    let mut v = checked.collect()?;
    v.sort();
    Ok(v)
}

/// Small job number `i` of [`many_small_jobs`](crate::cases::many_small_jobs): a count,
/// a collect, a reduce_by_key or a join on small RDDs, sorted pairs.
pub fn small_job(ctx: &Context, i: i64) -> spate::Result<Vec<(i64, i64)>> {
    match i % 4 {
        0 => {
            let n = ctx
                .range(0, 1000 + i, 2)
                .filter_with(i, |i, x| x % (i % 7 + 2) == 0)
                .count()?;
            Ok(vec![(n as i64, 0)])
        }
        1 => ctx
            .parallelize((i..i + 50).collect(), 2)
            .map(|x| (x, x * x))
            .collect(),
        2 => {
            let mut v = ctx
                .range(0, 2000, 2)
                .map_with(i, |i, x| (x % (i % 11 + 3), x))
                .reduce_by_key_n(|a, b| a + b, 2)
                .collect()?;
            v.sort();
            Ok(v)
        }
        _ => {
            let left = ctx.range(0, 200, 2).map_with(i, |i, x| (x % 17, x + i));
            let right = ctx
                .parallelize((0..40).collect(), 2)
                .map(|x: i64| (x % 23, x * 3));
            let mut v = left
                .join(&right)
                .map(|(k, (a, b))| (k, a * 1000 + b))
                .collect()?;
            v.sort();
            Ok(v)
        }
    }
}
