//! PageRank over a link graph.
//!
//! ```text
//! cargo run --release --example pagerank -- [EDGES_FILE] [--iterations N] [--partitions N] [--master M]
//! ```
//!
//! `EDGES_FILE` has one edge per line: `SRC DST` (whitespace-separated page names). With no
//! file, a deterministic generated graph of 10,000 pages is used. Prints the 10 pages with
//! the highest rank.

mod common;

use anyhow::{Context as _, bail};
use spate::prelude::*;

fn main() -> anyhow::Result<()> {
    let ctx = Context::new()?;
    common::init_logging();
    let mut file = None;
    let mut iterations = 10usize;
    let mut partitions = ctx.default_parallelism();
    let mut args = spate::args().into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = args.next().context("--iterations needs a value")?.parse()?
            }
            "--partitions" => {
                partitions = args.next().context("--partitions needs a value")?.parse()?
            }
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            _ => file = Some(a),
        }
    }

    let edges: Rdd<(String, String)> = match &file {
        Some(path) => ctx.text_file(path)?.flat_map(|line| {
            let mut it = line.split_ascii_whitespace();
            match (it.next(), it.next()) {
                (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                _ => None,
            }
        }),
        None => {
            eprintln!("pagerank: no edges file given; using a generated graph of 10,000 pages");
            ctx.range(0, 10_000, partitions).flat_map(|i| {
                // each page links to 1..=5 others, skewed towards low page numbers
                let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let n = 1 + (x % 5);
                (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let a = x % 10_000;
                        let b = (x >> 20) % 10_000;
                        (format!("p{i}"), format!("p{}", a.min(b)))
                    })
                    .collect::<Vec<_>>()
            })
        }
    };

    // Partition the adjacency lists once; every iteration's join then reads them in place.
    let links = edges
        .distinct()
        .group_by_key_n(partitions)
        .partition_by(partitions);
    let mut ranks = links.map_values(|_| 1.0f64);
    for i in 0..iterations {
        let contributions = links.join(&ranks).flat_map(|(_, (targets, rank))| {
            let share = rank / targets.len() as f64;
            targets
                .into_iter()
                .map(move |t| (t, share))
                .collect::<Vec<_>>()
        });
        ranks = contributions
            .reduce_by_key_n(|a, b| a + b, partitions)
            .map_values(|sum| 0.15 + 0.85 * sum);
        eprintln!("pagerank: iteration {} done", i + 1);
    }
    let top = ranks.take_ordered_by(10, |(page, rank)| {
        (std::cmp::Reverse(OrderedRank(*rank)), page.clone())
    })?;
    for (page, rank) in top {
        println!("{rank:.6}\t{page}");
    }
    Ok(())
}

/// Ranks are finite, so a total order on them is safe.
struct OrderedRank(f64);
impl PartialEq for OrderedRank {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrderedRank {}
impl PartialOrd for OrderedRank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedRank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
