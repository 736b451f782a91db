//! The jobs the cases run, each on a Mesos context and on `local[2]` to compare.

use spate::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    Ok(times.join(", "))
}

/// True exactly once per marker path, across processes: for the caller that creates it.
pub fn first_time(marker: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(marker)
        .is_ok()
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
