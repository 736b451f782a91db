//! Shuffle throughput: generate pairs, `sort_by_key` them (a full shuffle of every byte),
//! check the order, and report MB/s of shuffled payload.
//!
//! ```text
//! cargo run --release --example shuffle_bench -- [--pairs N] [--value-bytes B] [--partitions P] [--master M]
//! ```
//!
//! Defaults: 10,000,000 pairs of an 8-byte key and a 92-byte value (~1 GB). Each value is a
//! clone of one string: building it with `str::repeat` per record costs about 30 ns more
//! (`repeat` copies in doubling steps), paid twice since the sort's sampling job computes
//! the input too, which measured as ~25 % less throughput, none of it the shuffle's.

mod common;

use anyhow::{Context as _, bail};
use spate::prelude::*;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let ctx = Context::new()?;
    common::init_logging();
    let (mut pairs, mut value_bytes, mut partitions) = (10_000_000i64, 92usize, 16usize);
    let mut args = spate::args().into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pairs" => pairs = args.next().context("--pairs needs a value")?.parse()?,
            "--value-bytes" => {
                value_bytes = args
                    .next()
                    .context("--value-bytes needs a value")?
                    .parse()?
            }
            "--partitions" => {
                partitions = args.next().context("--partitions needs a value")?.parse()?
            }
            s => bail!("unknown argument {s}"),
        }
    }
    let data = ctx
        .range(0, pairs, partitions)
        .map_with("v".repeat(value_bytes), |value, i| {
            let key = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1;
            (key, value.clone())
        });
    let payload_mb = pairs as f64 * (8 + value_bytes) as f64 / 1e6;
    let t = Instant::now();
    let sorted = data.sort_by_key_n(true, partitions)?;
    // Check the order per partition and across partition boundaries on the executors.
    let bounds = sorted
        .map_partitions(|it| {
            let mut first = None;
            let mut last = None;
            let mut ordered = true;
            let mut n = 0u64;
            for (k, _) in it {
                if let Some(prev) = last {
                    ordered &= prev <= k;
                }
                first.get_or_insert(k);
                last = Some(k);
                n += 1;
            }
            std::iter::once((first, last, ordered, n))
        })
        .collect()?;
    let secs = t.elapsed().as_secs_f64();
    let total: u64 = bounds.iter().map(|b| b.3).sum();
    let ordered = bounds.iter().all(|b| b.2)
        && bounds
            .iter()
            .filter(|b| b.3 > 0)
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0].1 <= w[1].0);
    if total != pairs as u64 || !ordered {
        bail!("sort_by_key produced {total} records (want {pairs}), ordered: {ordered}");
    }
    println!("master\t{}", ctx.master());
    println!("pairs\t{pairs}");
    println!("payload_mb\t{payload_mb:.0}");
    println!("seconds\t{secs:.2}");
    println!("shuffle_mb_per_s\t{:.1}", payload_mb / secs);
    Ok(())
}
