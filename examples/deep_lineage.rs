//! A chain of N `map`s on a small `parallelize` (dpark's `test_long_recursion`, pushed
//! further): how deep a lineage each master handles and what it costs in memory.
//!
//! ```text
//! cargo run --release --example deep_lineage -- [--depth N] [--master M]
//! ```
//!
//! Prints `depth`, `outcome` (`ok`, or the job's error), `seconds`, the driver's peak
//! resident memory (`driver_peak_mb`) and, in a cluster, the largest executor's
//! (`executor_peak_mb`, read from `/proc` while they still run).

mod common;

use anyhow::{Context as _, bail};
use spate::prelude::*;

/// Peak resident set (VmHWM) of a process, in MiB.
fn peak_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The largest peak among this process's children (executor processes).
fn children_peak_mb() -> Option<f64> {
    let me = std::process::id().to_string();
    let mut peak: Option<f64> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis: state, ppid, …
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str())
            && let Some(mb) = peak_mb(&pid)
        {
            peak = Some(peak.map_or(mb, |p: f64| p.max(mb)));
        }
    }
    peak
}

fn main() -> anyhow::Result<()> {
    let ctx = Context::new()?;
    common::init_logging();
    let mut depth = 1_000usize;
    let mut args = spate::args().into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--depth" => {
                let v = args.next().context("--depth needs a value")?;
                depth = v
                    .parse()
                    .with_context(|| format!("--depth {v:?} is not a number"))?;
            }
            s => bail!("unknown argument {s}; usage: deep_lineage [--depth N] [--master M]"),
        }
    }
    let start = std::time::Instant::now();
    let mut rdd = ctx.parallelize((0..10i64).collect(), 2);
    for _ in 0..depth {
        rdd = rdd.map(|x| x + 1);
    }
    let outcome = match rdd.collect() {
        Ok(v) if v == (0..10).map(|x| x + depth as i64).collect::<Vec<_>>() => "ok".to_string(),
        Ok(v) => format!("wrong answer: {v:?}"),
        Err(e) => format!("error: {e}"),
    };
    println!("depth {depth}");
    println!("outcome {outcome}");
    println!("seconds {:.2}", start.elapsed().as_secs_f64());
    if let Some(mb) = children_peak_mb() {
        println!("executor_peak_mb {mb:.1}");
    }
    drop(rdd);
    drop(ctx);
    if let Some(mb) = peak_mb("self") {
        println!("driver_peak_mb {mb:.1}");
    }
    Ok(())
}
