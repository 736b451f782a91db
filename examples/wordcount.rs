//! Word count, the main job.
//!
//! ```text
//! cargo run --release --example wordcount -- [FILES..] [--master M] [--partitions N] [--top K]
//! ```
//!
//! With no files it counts a deterministic generated corpus (~100 MB, built by the tasks
//! themselves), so it runs anywhere. Prints `total_words`, `distinct_words`, `top10:` and
//! the K most frequent words (count descending, then word ascending) on stdout; logs go to
//! stderr (`RUST_LOG=info` for more).

mod common;

use anyhow::{Context as _, bail};
use spate::prelude::*;
use std::cmp::Reverse;

struct Args {
    files: Vec<String>,
    partitions: Option<usize>,
    top: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        files: Vec::new(),
        partitions: None,
        top: 10,
    };
    let mut it = spate::args().into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--partitions" => {
                let v = it.next().context("--partitions needs a value")?;
                args.partitions = Some(
                    v.parse()
                        .with_context(|| format!("--partitions {v:?} is not a number"))?,
                );
            }
            "--top" => {
                let v = it.next().context("--top needs a value")?;
                args.top = v
                    .parse()
                    .with_context(|| format!("--top {v:?} is not a number"))?;
            }
            s if s.starts_with("--") => bail!(
                "unknown flag {s}; usage: wordcount [FILES..] [--master M] [--partitions N] [--top K]"
            ),
            _ => args.files.push(a),
        }
    }
    Ok(args)
}

/// The generated default input: `lines` pseudo-random lines of Zipf-distributed words.
fn generated_corpus(ctx: &Context, lines: i64, partitions: usize) -> Rdd<String> {
    ctx.range(0, lines, partitions).map(|i| {
        const VOCAB: [&str; 16] = [
            "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "spate", "river",
            "stream", "flood", "delta", "current",
        ];
        // splitmix64 of the line number: the same line on every run and every machine.
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut line = String::with_capacity(96);
        while line.len() < 78 {
            x ^= x >> 31;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x ^= x >> 29;
            // Roughly Zipfian: rank r drawn with probability ~ 1/(r+1).
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let rank = ((VOCAB.len() as f64 + 1.0).powf(u) - 1.0) as usize;
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(VOCAB[rank.min(VOCAB.len() - 1)]);
            if rank >= 12 {
                // a long tail of distinct words
                line.push_str(&format!("{}", x % 5000));
            }
        }
        line
    })
}

fn main() -> anyhow::Result<()> {
    let ctx = Context::new()?;
    common::init_logging();
    let args = parse_args()?;
    let partitions = args.partitions.unwrap_or(ctx.default_parallelism());

    let lines = if args.files.is_empty() {
        eprintln!("wordcount: no input files given; counting a generated ~100 MB corpus");
        generated_corpus(&ctx, 1_300_000, partitions.max(8))
    } else {
        let options = spate::TextFileOptions {
            min_partitions: args.partitions,
            ..Default::default()
        };
        let mut rdds = Vec::new();
        for f in &args.files {
            rdds.push(ctx.text_file_with(f, &options)?);
        }
        rdds.into_iter()
            .reduce(|a, b| a.union(&b))
            .context("no input")?
    };

    let counts = lines
        .flat_map(words)
        .map(|w| (w, 1u64))
        .reduce_by_key_n(|a, b| a + b, partitions);

    let (total, distinct) = counts.aggregate(
        (0u64, 0u64),
        |(total, distinct), (_, c)| (total + c, distinct + 1),
        |a, b| (a.0 + b.0, a.1 + b.1),
    )?;
    let top = counts.take_ordered_by(args.top, |(w, c)| (Reverse(*c), w.clone()))?;

    println!("total_words\t{total}");
    println!("distinct_words\t{distinct}");
    println!("top10:");
    for (w, c) in top {
        println!("{c}\t{w}");
    }
    Ok(())
}
