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
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out.sort();
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
