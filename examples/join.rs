//! Join two delimited text inputs on a key column.
//!
//! ```text
//! cargo run --release --example join -- [LEFT RIGHT] [--left-key N] [--right-key N] [--sep C] [--master M]
//! ```
//!
//! Each line is split on `--sep` (default `,`); columns are numbered from 0. Prints the
//! number of joined rows, then for each key (sorted) the number of matches and the first
//! joined row. With no files, a generated `users` (id,name) × `orders` (order,user,amount)
//! pair of inputs is joined on the user id and the total amount per user is printed.

mod common;

use anyhow::{Context as _, bail};
use spate::prelude::*;

fn column(line: &str, sep: char, n: usize) -> Option<String> {
    line.split(sep).nth(n).map(|s| s.trim().to_string())
}

fn main() -> anyhow::Result<()> {
    let ctx = Context::new()?;
    common::init_logging();
    let mut files = Vec::new();
    let (mut left_key, mut right_key, mut sep) = (0usize, 0usize, ',');
    let mut args = spate::args().into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--left-key" => left_key = args.next().context("--left-key needs a value")?.parse()?,
            "--right-key" => {
                right_key = args.next().context("--right-key needs a value")?.parse()?
            }
            "--sep" => {
                sep = args
                    .next()
                    .and_then(|s| s.chars().next())
                    .context("--sep needs a character")?
            }
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            _ => files.push(a),
        }
    }

    match files.as_slice() {
        [] => {
            eprintln!("join: no inputs given; joining generated users and orders");
            let users = ctx.range(0, 1000, 4).map(|i| (i, format!("user{i:04}")));
            let orders = ctx
                .range(0, 50_000, 4)
                .map(|o| ((o * 7919) % 1000, ((o * 31) % 97) as f64 + 0.5));
            let totals = users
                .join(&orders)
                .map(|(_, (name, amount))| (name, amount))
                .reduce_by_key(|a, b| a + b);
            println!("joined_users\t{}", totals.count()?);
            for (name, total) in totals.sort_by_key(true)?.take(10)? {
                println!("{name}\t{total:.2}");
            }
        }
        [left, right] => {
            let l = ctx.text_file(left)?.flat_map(f!(
                |line| column(&line, sep, left_key).map(|key| (key, line))
            ));
            let r = ctx.text_file(right)?.flat_map(f!(
                |line| column(&line, sep, right_key).map(|key| (key, line))
            ));
            let joined = l.join(&r);
            println!("joined_rows\t{}", joined.count()?);
            let per_key = joined
                .map_values(|(a, b)| (1u64, format!("{a}\t{b}")))
                .reduce_by_key(|x, y| (x.0 + y.0, if x.1 <= y.1 { x.1 } else { y.1 }))
                .sort_by_key(true)?;
            for (key, (n, first)) in per_key.take(20)? {
                println!("{key}\t{n}\t{first}");
            }
        }
        _ => bail!("join takes two input files (or none)"),
    }
    Ok(())
}
