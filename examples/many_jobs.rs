//! Many small jobs, one after another: the per-job cost of a master (scheduling, task
//! launch, result return) rather than its throughput.
//!
//! ```text
//! cargo run --release --example many_jobs -- [--rounds N] [--master M]
//! ```
//!
//! Each round runs 31 small jobs (narrow operations, shuffles, joins, sorts, actions) on
//! tiny datasets and checks every answer against one computed with plain iterators. With
//! the default 4 rounds that is 124 jobs. Prints `jobs N`, `startup_seconds` (creating the
//! context: starting executors), `seconds` (the jobs), `stop_seconds` (stopping the
//! context) and `ok` (or the first wrong answer, exiting with status 1).

mod common;

use anyhow::{Context as _, bail, ensure};
use spate::prelude::*;
use std::collections::BTreeMap;

/// Run one round of jobs on `ctx`; returns how many jobs ran.
fn round(ctx: &Context, r: i64) -> anyhow::Result<usize> {
    let mut jobs = 0;
    let mut job = |what: &str, ok: bool| -> anyhow::Result<()> {
        jobs += 1;
        ensure!(ok, "round {r}: {what} gave a wrong answer");
        Ok(())
    };
    let n = 1_000 + r;
    let nums = ctx.range(0, n, 4);
    let want_sum: i64 = (0..n).sum();
    job("count", nums.count()? == n as u64)?;
    job("reduce", nums.reduce(|a, b| a + b)? == Some(want_sum))?;
    job("fold", nums.fold(0, |a, b| a + b)? == want_sum)?;
    job("collect", nums.collect()? == (0..n).collect::<Vec<_>>())?;
    job("take", nums.take(5)? == vec![0, 1, 2, 3, 4])?;
    job("first", nums.first()? == Some(0))?;
    job("max", nums.max()? == Some(n - 1))?;
    job("min", nums.min()? == Some(0))?;
    job("top", nums.top(3)? == vec![n - 1, n - 2, n - 3])?;
    job(
        "filter count",
        nums.filter(|x| x % 3 == 0).count()? == (0..n).filter(|x| x % 3 == 0).count() as u64,
    )?;
    job(
        "map sum",
        nums.map(|x| x * 2).reduce(|a, b| a + b)? == Some(want_sum * 2),
    )?;
    job(
        "flat_map count",
        nums.flat_map(|x| vec![x; 2]).count()? == 2 * n as u64,
    )?;
    let pairs = nums.map(|x| (x % 10, 1u64));
    let mut by_key: BTreeMap<i64, u64> = BTreeMap::new();
    for x in 0..n {
        *by_key.entry(x % 10).or_default() += 1;
    }
    let mut counted = pairs.reduce_by_key(|a, b| a + b).collect()?;
    counted.sort();
    job(
        "reduce_by_key",
        counted == by_key.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
    )?;
    job(
        "count_by_key",
        pairs
            .count_by_key()?
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            == by_key,
    )?;
    let mut grouped = pairs
        .group_by_key()
        .map_values(|v| v.len() as u64)
        .collect()?;
    grouped.sort();
    job("group_by_key", grouped == counted)?;
    job(
        "fold_by_key",
        pairs.fold_by_key(0, |a, b| a + b).count()? == by_key.len() as u64,
    )?;
    job("distinct", nums.map(|x| x % 7).distinct().count()? == 7)?;
    let sorted = nums.map(|x| (-x, x)).sort_by_key(true)?.values().take(3)?;
    job("sort_by_key", sorted == vec![n - 1, n - 2, n - 3])?;
    job(
        "sort_by",
        nums.sort_by(|x| -x, true, 3)?.first()? == Some(n - 1),
    )?;
    let names = ctx.parallelize((0..10).map(|k| (k, format!("k{k}"))).collect(), 2);
    let joined = pairs.join(&names).count()?;
    job("join", joined == n as u64)?;
    let left = pairs
        .left_outer_join(&names.filter(|(k, _)| *k < 5))
        .count()?;
    job("left_outer_join", left == n as u64)?;
    job(
        "cogroup",
        pairs.cogroup(&names).count()? == by_key.len().max(10) as u64,
    )?;
    job("union", nums.union(&nums).count()? == 2 * n as u64)?;
    job(
        "intersection",
        nums.intersection(&ctx.range(0, 10, 2)).count()? == 10,
    )?;
    job(
        "subtract",
        nums.subtract(&ctx.range(0, 10, 2)).count()? == n as u64 - 10,
    )?;
    job(
        "cartesian",
        ctx.range(0, 10, 2)
            .cartesian(&ctx.range(0, 10, 2))
            .count()?
            == 100,
    )?;
    job("repartition", nums.repartition(3).count()? == n as u64)?;
    job("coalesce", nums.coalesce(2).count()? == n as u64)?;
    job(
        "glom",
        nums.glom().map(|p| p.len() as u64).reduce(|a, b| a + b)? == Some(n as u64),
    )?;
    job(
        "count_by_value",
        nums.map(|x| x % 4).count_by_value()?.len() == 4,
    )?;
    job(
        "zip",
        nums.zip(&nums.map(|x| x + 1))?
            .filter(|(a, b)| b - a != 1)
            .count()?
            == 0,
    )?;
    Ok(jobs)
}

fn main() -> anyhow::Result<()> {
    let begun = std::time::Instant::now();
    let ctx = Context::new()?;
    let startup = begun.elapsed().as_secs_f64();
    common::init_logging();
    let mut rounds = 4i64;
    let mut args = spate::args().into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                let v = args.next().context("--rounds needs a value")?;
                rounds = v
                    .parse()
                    .with_context(|| format!("--rounds {v:?} is not a number"))?;
            }
            s => bail!("unknown argument {s}; usage: many_jobs [--rounds N] [--master M]"),
        }
    }
    let start = std::time::Instant::now();
    let mut jobs = 0;
    for r in 0..rounds {
        jobs += round(&ctx, r)?;
    }
    println!("jobs {jobs}");
    println!("startup_seconds {startup:.2}");
    println!("seconds {:.2}", start.elapsed().as_secs_f64());
    let stopping = std::time::Instant::now();
    drop(ctx);
    println!("stop_seconds {:.2}", stopping.elapsed().as_secs_f64());
    println!("ok");
    Ok(())
}
