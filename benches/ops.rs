//! Throughput of the core operations in local mode, and the cost of stage planning.
//!
//! `cargo bench --bench ops`; throughput is reported in elements per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spate::prelude::*;
use std::hint::black_box;

fn context() -> Context {
    // The engine's own throughput: no web UI listening to events.
    Context::builder()
        .master("local[2]")
        .ui(false)
        .build()
        .expect("local context")
}

fn narrow(c: &mut Criterion) {
    let ctx = context();
    let n = 10_000_000i64;
    let mut g = c.benchmark_group("narrow");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("range_map_filter_count", |b| {
        b.iter(|| {
            ctx.range(0, n, 8)
                .map(|x| x.wrapping_mul(2654435761))
                .filter(|x| x % 3 == 0)
                .count()
                .expect("job")
        })
    });
    g.bench_function("range_map_reduce", |b| {
        b.iter(|| {
            ctx.range(0, n, 8)
                .map(|x| x & 0xffff)
                .reduce(|a, b| a ^ b)
                .expect("job")
        })
    });
    g.finish();
}

fn shuffle(c: &mut Criterion) {
    let ctx = context();
    let n = 2_000_000i64;
    let mut g = c.benchmark_group("shuffle");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    for keys in [100i64, 100_000] {
        g.bench_with_input(
            BenchmarkId::new("reduce_by_key", keys),
            &keys,
            |b, &keys| {
                b.iter(|| {
                    ctx.range(0, n, 8)
                        .map_with(keys, |k, x| (x % k, 1u64))
                        .reduce_by_key(|a, b| a + b)
                        .count()
                        .expect("job")
                })
            },
        );
    }
    g.bench_function("group_by_key_100k_keys", |b| {
        b.iter(|| {
            ctx.range(0, n, 8)
                .map(|x| (x % 100_000, x))
                .group_by_key()
                .count()
                .expect("job")
        })
    });
    g.bench_function("sort_by_key", |b| {
        b.iter(|| {
            ctx.range(0, n, 8)
                .map(|x| (x.wrapping_mul(2654435761) % 1_000_003, x))
                .sort_by_key(true)
                .expect("sample")
                .count()
                .expect("job")
        })
    });
    g.finish();
}

fn word_count(c: &mut Criterion) {
    let ctx = context();
    let lines: Vec<String> = (0..200_000u64)
        .map(|i| {
            (0..12)
                .map(|j| format!("w{}", (i * 31 + j * 17).wrapping_mul(2654435761) % 5000))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let words_total = 200_000u64 * 12;
    let input = ctx.parallelize(lines, 8);
    let mut g = c.benchmark_group("word_count");
    g.throughput(Throughput::Elements(words_total));
    g.sample_size(10);
    g.bench_function("flat_map_words_reduce_by_key", |b| {
        b.iter(|| {
            input
                .flat_map(words)
                .map(|w| (w, 1u64))
                .reduce_by_key(|a, b| a + b)
                .count()
                .expect("job")
        })
    });
    g.finish();
}

fn planning(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("stage_planning");
    for depth in [10usize, 100] {
        let mut r = ctx.range(0, 10, 2).map(|x| (x, 1u64));
        for _ in 0..depth {
            r = r.reduce_by_key(|a, b| a + b).map(|(k, v)| (k + 1, v));
        }
        let base = r.base();
        g.bench_with_input(
            BenchmarkId::new("chain_of_shuffles", depth),
            &base,
            |b, base| b.iter(|| black_box(spate::plan::plan_stages(base)).stages.len()),
        );
    }
    let a = ctx.range(0, 10, 2).map(|x| (x, x));
    let mut joined = a.clone();
    for _ in 0..20 {
        joined = joined.join(&a).map_values(|(x, _)| x);
    }
    let base = joined.base();
    g.bench_function("twenty_joins", |b| {
        b.iter(|| black_box(spate::plan::plan_stages(&base)).stages.len())
    });
    g.finish();
}

criterion_group!(benches, narrow, shuffle, word_count, planning);
criterion_main!(benches);
