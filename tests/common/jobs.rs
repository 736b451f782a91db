//! Jobs both multi-process test suites (`tests/cluster`, `tests/mesos`) run on a cluster
//! context and on `local[2]`, to compare; included by each as a module.

#![allow(dead_code)] // each suite uses its own subset

use spate::prelude::*;
use std::path::{Path, PathBuf};

/// `Ok` when `got == want`, else a message with both (cut to 300 characters each).
pub fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        let (g, w) = (format!("{got:?}"), format!("{want:?}"));
        let cut = |s: &str| s.chars().take(300).collect::<String>();
        Err(format!("{what}: got {}, want {}", cut(&g), cut(&w)))
    }
}

/// A text file of `lines` lines of ten pseudo-random words.
pub fn corpus_file(dir: &Path, lines: usize) -> PathBuf {
    let mut text = String::new();
    let mut x = 12345u64;
    for _ in 0..lines {
        for j in 0..10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if j > 0 {
                text.push(' ');
            }
            text.push_str(&format!("w{}", (x % 3000).min(x % 97 * 40)));
        }
        text.push('\n');
    }
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}

pub fn word_counts(ctx: &Context, path: &Path) -> spate::Result<Vec<(Word, u64)>> {
    let opts = spate::TextFileOptions {
        min_partitions: Some(6),
        min_split_bytes: 1,
        ..Default::default()
    };
    let mut v = ctx
        .text_file_with(&path.to_string_lossy(), &opts)?
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key_n(|a, b| a + b, 4)
        .collect()?;
    v.sort();
    Ok(v)
}

pub fn join_pairs(ctx: &Context) -> spate::Result<Vec<(i64, (String, i64))>> {
    let users = ctx.range(0, 500, 3).map(|i| (i, format!("user{i}")));
    let orders = ctx.range(0, 20_000, 5).map(|o| ((o * 7919) % 600, o));
    let mut v = users.join(&orders).collect()?;
    v.sort();
    Ok(v)
}

/// Five pagerank iterations over 2000 pages; the ranks' exact bits.
pub fn pagerank(ctx: &Context) -> spate::Result<Vec<(i64, u64)>> {
    let links = ctx
        .range(0, 2000, 4)
        .flat_map(|i| {
            (1..=3)
                .map(move |k| (i, (i * 31 + k * 17) % 2000))
                .collect::<Vec<_>>()
        })
        .group_by_key_n(4);
    let mut ranks = links.map_values(|_| 1.0f64);
    for _ in 0..5 {
        ranks = links
            .join(&ranks)
            .flat_map(|(_, (targets, rank))| {
                let share = rank / targets.len() as f64;
                targets
                    .into_iter()
                    .map(move |t| (t, share))
                    .collect::<Vec<_>>()
            })
            .reduce_by_key_n(|a, b| a + b, 4)
            .map_values(|s| 0.15 + 0.85 * s);
    }
    let mut v = ranks.map_values(f64::to_bits).collect()?;
    v.sort();
    Ok(v)
}

pub fn sorted_pairs(ctx: &Context) -> spate::Result<Vec<(i64, i64)>> {
    ctx.range(0, 50_000, 6)
        .map(|x| ((x * 2_654_435_761) % 100_003, x))
        .sort_by_key_n(true, 5)?
        .collect()
}

/// wordcount, join, pagerank and sort_by_key on `ctx` equal `local`; the time of each.
/// True exactly once per marker path, across processes: for the caller that creates it.
pub fn first_time(marker: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(marker)
        .is_ok()
}

/// `ops` narrow operations (map, filter, flat_map, map_partitions in turn) chained on a
/// 10-element `parallelize` of 2 partitions: a pipeline `ops + 1` levels deep. Returns the
/// RDD and the elements it must give.
pub fn deep_chain(ctx: &Context, ops: usize) -> (Rdd<i64>, Vec<i64>) {
    let mut rdd = ctx.parallelize((0..10i64).collect(), 2);
    let mut adds = 0;
    for i in 0..ops {
        rdd = match i % 4 {
            0 => {
                adds += 1;
                rdd.map(|x| x + 1)
            }
            1 => rdd.filter(|x| *x >= 0),
            2 => rdd.flat_map(Some),
            _ => rdd.map_partitions(|it| it),
        };
    }
    (rdd, (0..10).map(|x| x + adds).collect())
}

/// The deepest pipeline a job may have runs; one level more fails before it starts,
/// saying what to do.
pub fn deep_lineage_limit(ctx: &Context) -> Result<(), String> {
    let max = spate::MAX_PIPELINE_DEPTH;
    let (rdd, want) = deep_chain(ctx, max - 1);
    check(
        "deepest pipeline",
        rdd.collect().map_err(|e| e.to_string())?,
        want,
    )?;
    let too_deep = rdd.map(|x| x + 1);
    let e = match too_deep.collect() {
        Ok(_) => return Err(format!("a pipeline of {} levels ran", max + 1)),
        Err(e) => e.to_string(),
    };
    let said = format!("lineage too deep ({} levels)", max + 1);
    if !e.contains(&said) || !e.contains("checkpoint") {
        return Err(format!("error does not say {said:?} and checkpoint: {e}"));
    }
    Ok(())
}

fn err(e: spate::Error) -> String {
    e.to_string()
}

/// Every file named `name` under `dir`, recursively.
pub fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect();
    out.sort();
    out
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// dpark's `test_checkpoint`: the first job computes and writes the partitions, the
/// lineage is then cut, and later jobs read the files (the parent is not computed again).
/// `ctx` must have a checkpoint directory under `dir`.
pub fn checkpoint_cuts_the_lineage(ctx: &Context, dir: &Path) -> Result<(), String> {
    let calls = ctx.accumulator(0u64);
    let doubled = ctx
        .parallelize((0..10i64).collect(), 2)
        .map_with(calls.clone(), |c, x| {
            c.add(1);
            x * 2
        })
        .checkpoint()
        .map_err(err)?;
    let want: Vec<i64> = (0..10).map(|x| x * 2).collect();
    check(
        "checkpointed before a job",
        doubled.is_checkpointed(),
        false,
    )?;
    check("first job", doubled.collect().map_err(err)?, want.clone())?;
    check("checkpointed after it", doubled.is_checkpointed(), true)?;
    let lineage = doubled.debug_string();
    check("lineage lines after the cut", lineage.lines().count(), 1)?;
    check(
        "a later job",
        doubled.map(|x| x + 1).collect().map_err(err)?,
        want.iter().map(|x| x + 1).collect(),
    )?;
    check("parent computations", calls.value(), 10)?;
    check(
        "partition files",
        files_named(dir, "part-00000").len() + files_named(dir, "part-00001").len(),
        2,
    )
}

/// dpark's `test_checkpoint_partial`: a job that reads only part of the partitions writes
/// only the complete ones; the next job reads those and computes the rest; then the
/// lineage is cut.
pub fn checkpoint_partial(ctx: &Context) -> Result<(), String> {
    let calls = ctx.accumulator(0u64);
    let rdd = ctx
        .parallelize((0..200i64).collect(), 10)
        .map_with(calls.clone(), |c, x| {
            c.add(1);
            x + 1
        })
        .checkpoint()
        .map_err(err)?;
    // take(25): partition 0 read whole (written), partitions 1-4 five elements each (not)
    check(
        "take",
        rdd.take(25).map_err(err)?,
        (1..=25).collect::<Vec<i64>>(),
    )?;
    check(
        "checkpointed after a partial job",
        rdd.is_checkpointed(),
        false,
    )?;
    check("computations by take", calls.value(), 20 + 4 * 5)?;
    check(
        "collect",
        rdd.collect().map_err(err)?,
        (1..=200).collect::<Vec<i64>>(),
    )?;
    check("checkpointed after a full job", rdd.is_checkpointed(), true)?;
    check("partition 0 read, not recomputed", calls.value(), 40 + 180)?;
    check("count", rdd.count().map_err(err)?, 200)?;
    check("nothing recomputed", calls.value(), 220)
}

/// dpark's `test_long_lineage`: ten rounds of a hundred maps, a checkpoint and a job each
/// round; the lineage never grows past one round.
pub fn checkpoint_long_lineage(ctx: &Context) -> Result<(), String> {
    let mut rdd = ctx.parallelize((0..10i64).collect(), 2);
    for round in 1..=10i64 {
        for _ in 0..100 {
            rdd = rdd.map(|x| x + 1);
        }
        rdd = rdd.checkpoint().map_err(err)?;
        check(
            &format!("round {round}"),
            rdd.collect().map_err(err)?,
            (0..10).map(|x| x + 100 * round).collect(),
        )?;
        check(
            &format!("round {round} lineage"),
            rdd.debug_string().lines().count(),
            1,
        )?;
    }
    Ok(())
}

/// A damaged checkpoint file fails the job with an error naming the file and the block.
pub fn damaged_checkpoint_is_named(ctx: &Context, dir: &Path) -> Result<(), String> {
    let rdd = ctx
        .parallelize((0..100_000i64).collect(), 2)
        .checkpoint()
        .map_err(err)?;
    rdd.count().map_err(err)?;
    check("checkpointed", rdd.is_checkpointed(), true)?;
    let id = rdd.id();
    let file = files_named(dir, "part-00001")
        .into_iter()
        .find(|p| p.parent().is_some_and(|d| d.ends_with(format!("rdd-{id}"))))
        .ok_or("no part-00001 written")?;
    let mut bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
    bytes[100] ^= 0x55;
    std::fs::write(&file, &bytes).map_err(|e| e.to_string())?;
    let e = match rdd.collect() {
        Ok(_) => return Err("a damaged checkpoint was read without error".into()),
        Err(e) => e.to_string(),
    };
    let named = file.to_string_lossy();
    if !e.contains(&*named) || !e.contains("checksum mismatch in block 0") {
        return Err(format!("error does not name {named} and the block: {e}"));
    }
    Ok(())
}

/// The actions of [`captured_closures`].
type Actions = (Option<i64>, i64, (i64, usize), Vec<i64>, Vec<i64>);

/// What [`captured_closures`] computes, operation by operation.
#[derive(Debug, PartialEq)]
pub struct CapturedResults {
    pub map_filter: Vec<i64>,
    pub flat_map: Vec<String>,
    pub partitions: Vec<(usize, i64)>,
    pub sorted: Vec<i64>,
    pub grouped: Vec<(i64, Vec<i64>)>,
    pub by_key: Vec<(i64, (i64, i64, i64, i64))>,
    pub values: Vec<(i64, String)>,
    /// reduce, fold, aggregate, take_ordered_by, top_by
    pub actions: Actions,
    pub locally: Vec<(i64, i64)>,
    pub zipped: Vec<i64>,
    pub seen: (i64, i64),
}

/// Every kind of operation that takes a closure, each closure capturing variables of the
/// program through `f!` (numbers, a string, a broadcast vector). The functions merge
/// associatively, so any partitioning gives the same results.
pub fn captured_closures(ctx: &Context) -> spate::Result<CapturedResults> {
    let (k, limit, modulus) = (3i64, 200i64, 7i64);
    let tag = String::from("w");
    let table = ctx.broadcast(vec![10i64, 20, 30, 40, 50, 60, 70])?;
    let nums = ctx.range(0, 300, 4);
    let map_filter = nums
        .map(f!(|x| x * k))
        .filter(f!(|x| *x < limit))
        .collect()?;
    let flat_map = nums
        .filter(f!(|x| x % 50 == 0))
        .flat_map(f!(|x| (0..k)
            .map(|i| format!("{tag}{x}.{i}"))
            .collect::<Vec<_>>()))
        .collect()?;
    let partitions = nums
        .map_partitions_with_index(f!(|i, it| std::iter::once((i, it.sum::<i64>() * k))))
        .collect()?;
    let sorted = nums.sort_by(f!(|x| (x % modulus, *x)), true, 3)?.take(20)?;
    let mut grouped = nums
        .filter(f!(|x| *x < limit / 4))
        .group_by(f!(|x| x % modulus))
        .collect()?;
    grouped.iter_mut().for_each(|(_, v)| v.sort());
    grouped.sort();
    let pairs = nums.key_by(f!(|x| x % modulus));
    let reduced = pairs.reduce_by_key(f!(|a, b| (a + b) % limit));
    let folded = pairs.fold_by_key(0, f!(|a, b| a.max(b.min(limit))));
    let aggregated = pairs.aggregate_by_key(0i64, f!(|n, _v| n + k), |a, b| a + b);
    let combined = pairs.combine_by_key(
        f!(|v| v * k),
        f!(|c, v| c.max(v * k)),
        |a: i64, b: i64| a.max(b),
        2,
    );
    let mut by_key = reduced
        .join(&folded)
        .join(&aggregated.join(&combined))
        .map_values(|((r, f), (a, c))| (r, f, a, c))
        .collect()?;
    by_key.sort();
    let mut values = pairs
        .filter(f!(|(key, _)| *key < modulus / 3))
        .map_values(f!(|v| v + limit))
        .flat_map_values(f!(|v| vec![format!("{tag}{v}"); (v % 2 + 1) as usize]))
        .collect()?;
    values.sort();
    let actions = (
        nums.reduce(f!(|a, b| (a + b) % limit))?,
        nums.fold(0, f!(|a, b| a + b * k))?,
        nums.aggregate(
            (0, 0),
            f!(|(s, n), x| (s + x % modulus, n + 1)),
            |(a, b), (c, d)| (a + c, b + d),
        )?,
        nums.take_ordered_by(3, f!(|x| (x % modulus, -x)))?,
        nums.top_by(3, f!(|x| table.value()[(*x % modulus) as usize] - x))?,
    );
    let mut locally: Vec<_> = pairs
        .reduce_by_key_locally(f!(|a, b| (a + b) % limit))?
        .into_iter()
        .collect();
    locally.sort();
    let zipped = nums
        .zip_partitions(
            &nums.map(f!(|x| x * k)),
            f!(|a, b| a.zip(b).map(|(x, y)| x + y + k).collect::<Vec<_>>()),
        )?
        .collect()?;
    let sum = ctx.accumulator_with(0i64, f!(|a, b| (a + b) % (limit * 1000)));
    nums.foreach(f!(|x| sum.add(x * k)))?;
    let count = ctx.accumulator(0i64);
    nums.foreach_partition(f!(
        |it| count.add(it.filter(|x| x % modulus == 0).count() as i64)
    ))?;
    Ok(CapturedResults {
        map_filter,
        flat_map,
        partitions,
        sorted,
        grouped,
        by_key,
        values,
        actions,
        locally,
        zipped,
        seen: (sum.value(), count.value()),
    })
}

/// [`captured_closures`] computed with plain iterators.
pub fn captured_closures_oracle() -> CapturedResults {
    let (k, limit, modulus) = (3i64, 200i64, 7i64);
    let table = [10i64, 20, 30, 40, 50, 60, 70];
    let nums: Vec<i64> = (0..300).collect();
    let of_key = |key: i64| nums.iter().copied().filter(move |x| x % modulus == key);
    // (a + b) % limit merged in any order: the sum mod limit, a lone value as it is
    let modsum = |vs: Vec<i64>| match vs.len() {
        1 => vs[0],
        _ => vs.iter().sum::<i64>() % limit,
    };
    let mut sorted = nums.clone();
    sorted.sort_by_key(|x| (x % modulus, *x));
    sorted.truncate(20);
    let mut smallest = nums.clone();
    smallest.sort_by_key(|x| (x % modulus, -x));
    smallest.truncate(3);
    let mut largest = nums.clone();
    largest.sort_by_key(|x| std::cmp::Reverse(table[(x % modulus) as usize] - x));
    largest.truncate(3);
    let keys = 0..modulus;
    CapturedResults {
        map_filter: nums.iter().map(|x| x * k).filter(|x| *x < limit).collect(),
        flat_map: nums
            .iter()
            .filter(|x| *x % 50 == 0)
            .flat_map(|x| (0..k).map(move |i| format!("w{x}.{i}")))
            .collect(),
        partitions: (0..4)
            .map(|p| (p, (p as i64 * 75..(p as i64 + 1) * 75).sum::<i64>() * k))
            .collect(),
        sorted,
        grouped: keys
            .clone()
            .map(|key| (key, of_key(key).filter(|x| *x < limit / 4).collect()))
            .collect(),
        by_key: keys
            .clone()
            .map(|key| {
                let vs: Vec<i64> = of_key(key).collect();
                let max = *vs.iter().max().unwrap_or(&0);
                (
                    key,
                    (
                        modsum(vs.clone()),
                        max.min(limit),
                        vs.len() as i64 * k,
                        max * k,
                    ),
                )
            })
            .collect(),
        values: {
            let mut v: Vec<(i64, String)> = keys
                .clone()
                .filter(|key| *key < modulus / 3)
                .flat_map(|key| {
                    of_key(key).flat_map(move |v| {
                        let v = v + limit;
                        vec![(key, format!("w{v}")); (v % 2 + 1) as usize]
                    })
                })
                .collect();
            v.sort();
            v
        },
        actions: (
            Some(nums.iter().sum::<i64>() % limit),
            nums.iter().sum::<i64>() * k * k,
            (nums.iter().map(|x| x % modulus).sum(), nums.len()),
            smallest,
            largest,
        ),
        locally: keys
            .map(|key| (key, modsum(of_key(key).collect())))
            .collect(),
        zipped: nums.iter().map(|x| x + x * k + k).collect(),
        seen: (
            nums.iter().sum::<i64>() * k,
            nums.iter().filter(|x| *x % modulus == 0).count() as i64,
        ),
    }
}
