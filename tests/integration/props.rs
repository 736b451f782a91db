//! Property tests: every operation against a plain-iterator oracle, over random inputs and
//! partition counts (including more partitions than elements, i.e. empty partitions).

use crate::fixtures::{TempDir, ctx};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    }
}

fn small_vec() -> impl Strategy<Value = Vec<i32>> {
    prop::collection::vec(-50i32..50, 0..60)
}

fn pairs() -> impl Strategy<Value = Vec<(u8, i32)>> {
    prop::collection::vec((0u8..8, -100i32..100), 0..60)
}

fn parts() -> impl Strategy<Value = usize> {
    1usize..9
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn groups(v: &[(u8, i32)]) -> BTreeMap<u8, Vec<i32>> {
    let mut m: BTreeMap<u8, Vec<i32>> = BTreeMap::new();
    for (k, x) in v {
        m.entry(*k).or_default().push(*x);
    }
    for xs in m.values_mut() {
        xs.sort();
    }
    m
}

/// Values per key in each of three / four RDDs.
type Groups3 = BTreeMap<u8, (Vec<i32>, Vec<i32>, Vec<i32>)>;
type Groups4 = BTreeMap<u8, (Vec<i32>, Vec<i32>, Vec<i32>, Vec<i32>)>;

/// How `parallelize` slices `n` elements into `p` partitions.
fn slices<T: Clone>(v: &[T], p: usize) -> Vec<Vec<T>> {
    (0..p)
        .map(|i| v[v.len() * i / p..v.len() * (i + 1) / p].to_vec())
        .collect()
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn captured_values_match_iterators(
        v in pairs(),
        p in parts(),
        k in -5i32..5,
        min in -60i32..60,
        tag in "[a-z]{0,3}",
    ) {
        use spate::f;
        let r = ctx().parallelize(v.clone(), p);
        let got = sorted(
            r.filter(f!(|(_, x)| *x >= min))
                .map_values(f!(|x| x * k))
                .reduce_by_key(f!(|a, b| a + b + k - k))
                .map(f!(|(key, x)| format!("{tag}{key}:{x}")))
                .collect()?,
        );
        let mut sums: BTreeMap<u8, i32> = BTreeMap::new();
        for (key, x) in v.iter().filter(|(_, x)| *x >= min) {
            *sums.entry(*key).or_default() += x * k;
        }
        let want: Vec<String> = sorted(sums.iter().map(|(key, x)| format!("{tag}{key}:{x}")).collect());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn narrow_ops_match_iterators(v in small_vec(), p in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        prop_assert_eq!(r.num_partitions(), p);
        prop_assert_eq!(r.collect().unwrap(), v.clone());
        prop_assert_eq!(r.map(|x| x * 3 - 1).collect().unwrap(), v.iter().map(|x| x * 3 - 1).collect::<Vec<_>>());
        prop_assert_eq!(r.map_with(7, |k, x| x + k).collect().unwrap(), v.iter().map(|x| x + 7).collect::<Vec<_>>());
        prop_assert_eq!(r.filter(|x| x % 3 == 0).collect().unwrap(), v.iter().copied().filter(|x| x % 3 == 0).collect::<Vec<_>>());
        prop_assert_eq!(r.filter_with(0, |z, x| x > z).collect().unwrap(), v.iter().copied().filter(|x| *x > 0).collect::<Vec<_>>());
        prop_assert_eq!(
            r.flat_map(|x| vec![x; (x.unsigned_abs() % 3) as usize]).collect().unwrap(),
            v.iter().flat_map(|x| vec![*x; (x.unsigned_abs() % 3) as usize]).collect::<Vec<_>>()
        );
        prop_assert_eq!(
            r.flat_map_with(2usize, |n, x| vec![x; *n]).collect().unwrap(),
            v.iter().flat_map(|x| vec![*x; 2]).collect::<Vec<_>>()
        );
        prop_assert_eq!(r.glom().collect().unwrap(), slices(&v, p));
        prop_assert_eq!(
            r.map_partitions(|it| std::iter::once(it.map(i64::from).sum::<i64>())).collect().unwrap(),
            slices(&v, p).iter().map(|s| s.iter().map(|x| i64::from(*x)).sum::<i64>()).collect::<Vec<_>>()
        );
        prop_assert_eq!(
            r.map_partitions_with(10, |k, it| { let k = *k; it.map(move |x| x * k) }).collect().unwrap(),
            v.iter().map(|x| x * 10).collect::<Vec<_>>()
        );
        let indexed: Vec<(usize, i32)> = slices(&v, p).into_iter().enumerate().flat_map(|(i, s)| s.into_iter().map(move |x| (i, x))).collect();
        prop_assert_eq!(r.map_partitions_with_index(|i, it| it.map(move |x| (i, x))).collect().unwrap(), indexed);
        prop_assert_eq!(r.key_by(|x| x % 4).collect().unwrap(), v.iter().map(|x| (x % 4, *x)).collect::<Vec<_>>());
    }

    #[test]
    fn combining_ops_match_iterators(a in small_vec(), b in small_vec(), p in parts(), q in parts()) {
        let ra = ctx().parallelize(a.clone(), p);
        let rb = ctx().parallelize(b.clone(), q);
        let u = ra.union(&rb);
        prop_assert_eq!(u.num_partitions(), p + q);
        prop_assert_eq!(u.collect().unwrap(), a.iter().chain(&b).copied().collect::<Vec<_>>());
        prop_assert_eq!(ra.zip(&ra.map(|x| x * 2)).unwrap().collect().unwrap(), a.iter().map(|x| (*x, x * 2)).collect::<Vec<_>>());
        let small_a: Vec<i32> = a.iter().take(12).copied().collect();
        let small_b: Vec<i32> = b.iter().take(12).copied().collect();
        let c = ctx().parallelize(small_a.clone(), p).cartesian(&ctx().parallelize(small_b.clone(), q)).collect().unwrap();
        let want: Vec<(i32, i32)> = small_a.iter().flat_map(|x| small_b.iter().map(move |y| (*x, *y))).collect();
        prop_assert_eq!(sorted(c), sorted(want));
        prop_assert_eq!(sorted(ra.distinct().collect().unwrap()), a.iter().copied().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        let sa: BTreeSet<i32> = a.iter().copied().collect();
        let sb: BTreeSet<i32> = b.iter().copied().collect();
        prop_assert_eq!(sorted(ra.intersection(&rb).collect().unwrap()), sa.intersection(&sb).copied().collect::<Vec<_>>());
        prop_assert_eq!(sorted(ra.subtract(&rb).collect().unwrap()), sorted(a.iter().copied().filter(|x| !sb.contains(x)).collect()));
    }

    #[test]
    fn repartitioning_keeps_every_element(v in small_vec(), p in parts(), n in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        let c = r.coalesce(n);
        prop_assert_eq!(c.num_partitions(), n.min(p));
        prop_assert_eq!(c.collect().unwrap(), v.clone());
        let rp = r.repartition(n);
        prop_assert_eq!(rp.num_partitions(), n);
        prop_assert_eq!(sorted(rp.collect().unwrap()), sorted(v.clone()));
        let asc = r.sort_by(|x| *x, true, n).unwrap().collect().unwrap();
        prop_assert_eq!(asc, sorted(v.clone()));
        let desc = r.sort_by(|x| *x, false, n).unwrap().collect().unwrap();
        let mut want = sorted(v.clone());
        want.reverse();
        prop_assert_eq!(desc, want);
    }

    #[test]
    fn sampling_is_a_deterministic_subset(v in small_vec(), p in parts(), seed in any::<u64>()) {
        let r = ctx().parallelize(v.clone(), p);
        prop_assert_eq!(r.sample(false, 1.0, seed).collect().unwrap(), v.clone());
        prop_assert!(r.sample(false, 0.0, seed).collect().unwrap().is_empty());
        let s1 = r.sample(false, 0.5, seed).collect().unwrap();
        prop_assert_eq!(&s1, &r.sample(false, 0.5, seed).collect().unwrap());
        let mut pool = v.clone();
        for x in &s1 {
            let i = pool.iter().position(|y| y == x);
            prop_assert!(i.is_some());
            pool.remove(i.unwrap_or(0));
        }
        let with = r.sample(true, 2.0, seed).collect().unwrap();
        prop_assert!(with.iter().all(|x| v.contains(x)));
    }

    #[test]
    fn group_and_sort_by_key_match(v in small_vec(), p in parts(), n in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        let g: BTreeMap<i32, Vec<i32>> = r.group_by(|x| x.rem_euclid(5)).collect().unwrap().into_iter().map(|(k, xs)| (k, sorted(xs))).collect();
        let mut want: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for x in &v {
            want.entry(x.rem_euclid(5)).or_default().push(*x);
        }
        for xs in want.values_mut() {
            xs.sort();
        }
        prop_assert_eq!(g, want);
        let kv = r.map(|x| (x, x * 2));
        let s = kv.sort_by_key_n(true, n).unwrap().collect().unwrap();
        let keys: Vec<i32> = s.iter().map(|(k, _)| *k).collect();
        prop_assert_eq!(keys, sorted(v.clone()));
        prop_assert!(s.iter().all(|(k, x)| *x == k * 2));
    }

    #[test]
    fn aggregations_by_key_match(v in pairs(), p in parts(), n in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        let want = groups(&v);
        let sums: BTreeMap<u8, i64> = want.iter().map(|(k, xs)| (*k, xs.iter().map(|x| i64::from(*x)).sum())).collect();
        let rs = r.map_values(i64::from);
        prop_assert_eq!(rs.reduce_by_key(|a, b| a + b).collect().unwrap().into_iter().collect::<BTreeMap<_, _>>(), sums.clone());
        let rn = rs.reduce_by_key_n(|a, b| a + b, n);
        prop_assert_eq!(rn.num_partitions(), n);
        prop_assert_eq!(rn.collect_as_map().unwrap().into_iter().collect::<BTreeMap<_, _>>(), sums.clone());
        prop_assert_eq!(rs.fold_by_key(0, |a, b| a + b).collect().unwrap().into_iter().collect::<BTreeMap<_, _>>(), sums.clone());
        let agg: BTreeMap<u8, (i64, usize)> = r.aggregate_by_key((0i64, 0usize), |(s, c), x| (s + i64::from(x), c + 1), |a, b| (a.0 + b.0, a.1 + b.1)).collect().unwrap().into_iter().collect();
        let want_agg: BTreeMap<u8, (i64, usize)> = want.iter().map(|(k, xs)| (*k, (xs.iter().map(|x| i64::from(*x)).sum(), xs.len()))).collect();
        prop_assert_eq!(agg, want_agg);
        let comb: BTreeMap<u8, Vec<i32>> = r
            .combine_by_key(|x| vec![x], |mut c, x| { c.push(x); c }, |mut a, mut b| { a.append(&mut b); a }, n)
            .collect().unwrap().into_iter().map(|(k, xs)| (k, sorted(xs))).collect();
        prop_assert_eq!(&comb, &want);
        let grouped: BTreeMap<u8, Vec<i32>> = r.group_by_key_n(n).collect().unwrap().into_iter().map(|(k, xs)| (k, sorted(xs))).collect();
        prop_assert_eq!(&grouped, &want);
        let counts: BTreeMap<u8, u64> = r.count_by_key().unwrap().into_iter().collect();
        prop_assert_eq!(counts, want.iter().map(|(k, xs)| (*k, xs.len() as u64)).collect::<BTreeMap<_, _>>());
        for key in [0u8, 3, 9] {
            prop_assert_eq!(sorted(r.lookup(&key).unwrap()), want.get(&key).cloned().unwrap_or_default());
            prop_assert_eq!(sorted(r.partition_by(n).lookup(&key).unwrap()), want.get(&key).cloned().unwrap_or_default());
        }
    }

    #[test]
    fn value_ops_and_partition_by_match(v in pairs(), p in parts(), n in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        prop_assert_eq!(r.map_values(|x| x + 1).collect().unwrap(), v.iter().map(|(k, x)| (*k, x + 1)).collect::<Vec<_>>());
        prop_assert_eq!(r.map_values_with(2, |m, x| x * m).collect().unwrap(), v.iter().map(|(k, x)| (*k, x * 2)).collect::<Vec<_>>());
        prop_assert_eq!(
            r.flat_map_values(|x| 0..(x.rem_euclid(3))).collect().unwrap(),
            v.iter().flat_map(|(k, x)| (0..x.rem_euclid(3)).map(move |y| (*k, y))).collect::<Vec<_>>()
        );
        prop_assert_eq!(r.keys().collect().unwrap(), v.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        prop_assert_eq!(r.values().collect().unwrap(), v.iter().map(|(_, x)| *x).collect::<Vec<_>>());
        let pb = r.partition_by(n);
        let parts = pb.glom().collect().unwrap();
        prop_assert_eq!(parts.len(), n);
        let mut seen: HashMap<u8, usize> = HashMap::new();
        for (i, part) in parts.iter().enumerate() {
            for (k, _) in part {
                let first = *seen.entry(*k).or_insert(i);
                prop_assert_eq!(first, i, "a key lives in one partition");
            }
        }
        prop_assert_eq!(sorted(pb.collect().unwrap()), sorted(v.clone()));
    }

    #[test]
    fn joins_match_nested_loops(a in pairs(), b in pairs(), p in parts(), q in parts()) {
        let ra = ctx().parallelize(a.clone(), p);
        let rb = ctx().parallelize(b.clone(), q);
        let ga = groups(&a);
        let gb = groups(&b);
        let mut inner = Vec::new();
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut full = Vec::new();
        for (k, x) in &a {
            match gb.get(k) {
                Some(ys) => {
                    for y in ys {
                        inner.push((*k, (*x, *y)));
                        left.push((*k, (*x, Some(*y))));
                        full.push((*k, (Some(*x), Some(*y))));
                    }
                }
                None => {
                    left.push((*k, (*x, None)));
                    full.push((*k, (Some(*x), None)));
                }
            }
        }
        for (k, y) in &b {
            match ga.get(k) {
                Some(xs) => right.extend(xs.iter().map(|x| (*k, (Some(*x), *y)))),
                None => {
                    right.push((*k, (None, *y)));
                    full.push((*k, (None, Some(*y))));
                }
            }
        }
        prop_assert_eq!(sorted(ra.join(&rb).collect().unwrap()), sorted(inner.clone()));
        prop_assert_eq!(sorted(ra.left_outer_join(&rb).collect().unwrap()), sorted(left));
        prop_assert_eq!(sorted(ra.right_outer_join(&rb).collect().unwrap()), sorted(right));
        prop_assert_eq!(sorted(ra.full_outer_join(&rb).collect().unwrap()), sorted(full));
        // co-partitioned inputs (narrow cogroup) give the same answer
        let pa = ra.partition_by(3);
        let pb = rb.partition_by(3);
        prop_assert_eq!(sorted(pa.join(&pb).collect().unwrap()), sorted(inner));
        let cg: BTreeMap<u8, (Vec<i32>, Vec<i32>)> = ra.cogroup(&rb).collect().unwrap().into_iter().map(|(k, (x, y))| (k, (sorted(x), sorted(y)))).collect();
        let keys: BTreeSet<u8> = ga.keys().chain(gb.keys()).copied().collect();
        let want: BTreeMap<u8, (Vec<i32>, Vec<i32>)> = keys.into_iter().map(|k| (k, (ga.get(&k).cloned().unwrap_or_default(), gb.get(&k).cloned().unwrap_or_default()))).collect();
        prop_assert_eq!(cg, want);
    }

    #[test]
    fn actions_match_iterators(v in small_vec(), p in parts(), n in 0usize..12) {
        let r = ctx().parallelize(v.clone(), p);
        prop_assert_eq!(r.count().unwrap(), v.len() as u64);
        prop_assert_eq!(r.reduce(|a, b| a + b).unwrap(), v.iter().copied().reduce(|a, b| a + b));
        prop_assert_eq!(r.fold(0, |a, b| a + b).unwrap(), v.iter().sum::<i32>());
        prop_assert_eq!(r.aggregate(0i64, |s, x| s + i64::from(x), |a, b| a + b).unwrap(), v.iter().map(|x| i64::from(*x)).sum::<i64>());
        prop_assert_eq!(r.take(n).unwrap(), v.iter().take(n).copied().collect::<Vec<_>>());
        prop_assert_eq!(r.first().unwrap(), v.first().copied());
        prop_assert_eq!(r.is_empty().unwrap(), v.is_empty());
        prop_assert_eq!(r.min().unwrap(), v.iter().min().copied());
        prop_assert_eq!(r.max().unwrap(), v.iter().max().copied());
        let mut desc = sorted(v.clone());
        desc.reverse();
        prop_assert_eq!(r.top(n).unwrap(), desc.into_iter().take(n).collect::<Vec<_>>());
        prop_assert_eq!(r.take_ordered(n).unwrap(), sorted(v.clone()).into_iter().take(n).collect::<Vec<_>>());
        let by_abs = r.take_ordered_by(n, |x| (x.abs(), *x)).unwrap();
        let mut want = v.clone();
        want.sort_by_key(|x| (x.abs(), *x));
        prop_assert_eq!(by_abs, want.into_iter().take(n).collect::<Vec<_>>());
        let cbv: BTreeMap<i32, u64> = r.count_by_value().unwrap().into_iter().collect();
        let mut want_cbv = BTreeMap::new();
        for x in &v {
            *want_cbv.entry(*x).or_insert(0u64) += 1;
        }
        prop_assert_eq!(cbv, want_cbv);
    }

    #[test]
    fn side_effect_actions_see_every_element(v in small_vec(), p in parts()) {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<i32>> = Mutex::new(Vec::new());
        static PARTS: Mutex<usize> = Mutex::new(0);
        // proptest runs cases one after another in this test, so the statics are ours
        SEEN.lock().unwrap().clear();
        *PARTS.lock().unwrap() = 0;
        let r = ctx().parallelize(v.clone(), p);
        r.foreach(|x| SEEN.lock().unwrap().push(x)).unwrap();
        prop_assert_eq!(sorted(SEEN.lock().unwrap().clone()), sorted(v.clone()));
        SEEN.lock().unwrap().clear();
        r.foreach_with(1, |d, x| SEEN.lock().unwrap().push(x + d)).unwrap();
        prop_assert_eq!(sorted(SEEN.lock().unwrap().clone()), sorted(v.iter().map(|x| x + 1).collect()));
        r.foreach_partition(|_| *PARTS.lock().unwrap() += 1).unwrap();
        prop_assert_eq!(*PARTS.lock().unwrap(), p);
    }

    #[test]
    fn save_then_read_round_trips(v in small_vec(), p in parts()) {
        let dir = TempDir::new("prop-save");
        let out = dir.join("out");
        ctx().parallelize(v.clone(), p).save_as_text_file(&out).unwrap();
        let back = ctx().text_file(&out.to_string_lossy()).unwrap().map(|s| s.parse::<i32>().unwrap_or(i32::MIN)).collect().unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn text_file_splits_read_every_line_once(lines in prop::collection::vec("[a-z ]{0,30}", 0..80), p in parts(), crlf in any::<bool>()) {
        let dir = TempDir::new("prop-text");
        let nl = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{nl}")).collect();
        std::fs::write(dir.join("t.txt"), &text).unwrap();
        let opts = spate::TextFileOptions { min_partitions: Some(p), min_split_bytes: 1, ..Default::default() };
        let got = ctx().text_file_with(&dir.str("t.txt"), &opts).unwrap().collect().unwrap();
        prop_assert_eq!(got, lines);
    }

    #[test]
    fn numeric_actions_match_iterators(v in prop::collection::vec(-1000.0f64..1000.0, 0..60), p in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        let n = v.len() as f64;
        let sum: f64 = v.iter().sum();
        let close = |a: f64, b: f64| (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * (1.0 + b.abs());
        prop_assert!(close(r.sum().unwrap(), sum));
        let mean = sum / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let (want_mean, want_var) = if v.is_empty() { (f64::NAN, f64::NAN) } else { (mean, var) };
        let sample_var = if v.len() < 2 { f64::NAN } else { var * n / (n - 1.0) };
        let s = r.stats().unwrap();
        prop_assert_eq!(s.count(), v.len() as u64);
        prop_assert!(close(s.mean(), want_mean));
        prop_assert!(close(r.variance().unwrap(), want_var));
        prop_assert!(close(r.stdev().unwrap(), want_var.sqrt()));
        prop_assert!(close(r.sample_variance().unwrap(), sample_var));
        prop_assert_eq!(s.min(), v.iter().copied().fold(f64::INFINITY, f64::min));
        prop_assert_eq!(s.max(), v.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        let edges = [-1000.0, -10.0, 0.0, 10.0, 1000.0];
        let want: Vec<u64> = edges.windows(2).enumerate().map(|(i, w)| {
            v.iter().filter(|x| **x >= w[0] && (**x < w[1] || (i == edges.len() - 2 && **x == w[1]))).count() as u64
        }).collect();
        prop_assert_eq!(r.histogram(&edges).unwrap(), want);
    }

    #[test]
    fn integer_stats_and_even_histograms(v in prop::collection::vec(-50i64..50, 1..60), p in parts(), b in 1usize..6) {
        let r = ctx().parallelize(v.clone(), p);
        prop_assert_eq!(r.sum().unwrap(), v.iter().sum::<i64>() as f64);
        let (edges, counts) = r.histogram_even(b).unwrap();
        prop_assert_eq!(counts.iter().sum::<u64>(), v.len() as u64, "every element in a bucket");
        prop_assert_eq!(edges.first().copied(), v.iter().min().map(|m| *m as f64));
        prop_assert!(edges.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn numbering_top_by_and_subtract_by_key_match_iterators(v in small_vec(), kv in pairs(), other in pairs(), p in parts(), n in 0usize..10) {
        let r = ctx().parallelize(v.clone(), p);
        let want: Vec<(i32, u64)> = v.iter().copied().zip(0u64..).collect();
        prop_assert_eq!(r.zip_with_index().unwrap().collect().unwrap(), want);
        let ids = r.zip_with_unique_id().collect().unwrap();
        prop_assert_eq!(ids.iter().map(|(x, _)| *x).collect::<Vec<_>>(), v.clone());
        let distinct: BTreeSet<u64> = ids.iter().map(|(_, id)| *id).collect();
        prop_assert_eq!(distinct.len(), v.len(), "ids are unique");
        let mut by_abs = v.clone();
        by_abs.sort_by_key(|x| std::cmp::Reverse(x.abs()));
        let got = r.top_by(n, |x| x.abs()).unwrap();
        prop_assert_eq!(got.iter().map(|x| x.abs()).collect::<Vec<_>>(), by_abs.iter().take(n).map(|x| x.abs()).collect::<Vec<_>>());
        let gone: BTreeSet<u8> = other.iter().map(|(k, _)| *k).collect();
        let left = ctx().parallelize(kv.clone(), p).subtract_by_key(&ctx().parallelize(other.clone(), 3)).collect().unwrap();
        prop_assert_eq!(sorted(left), sorted(kv.iter().copied().filter(|(k, _)| !gone.contains(k)).collect()));
    }

    #[test]
    fn union_local_iterator_and_local_reduce_match_iterators(a in small_vec(), b in small_vec(), kv in pairs(), p in parts()) {
        let c = ctx();
        let (ra, rb) = (c.parallelize(a.clone(), p), c.parallelize(b.clone(), 3));
        let both: Vec<i32> = a.iter().chain(&b).chain(&a).copied().collect();
        let u = c.union(&[ra.clone(), rb, ra.clone()]);
        prop_assert_eq!(u.num_partitions(), 2 * p + 3);
        prop_assert_eq!(u.collect().unwrap(), both);
        prop_assert!(c.union::<i32>(&[]).collect().unwrap().is_empty());
        prop_assert_eq!(c.empty::<i32>().count().unwrap(), 0);
        let streamed: Vec<i32> = ra.to_local_iterator().collect::<spate::Result<_>>().unwrap();
        prop_assert_eq!(streamed, a.clone());
        let mut want: HashMap<u8, i32> = HashMap::new();
        for (k, v) in &kv {
            *want.entry(*k).or_default() += v;
        }
        let got = c.parallelize(kv.clone(), p).reduce_by_key_locally(|x, y| x + y).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn take_sample_draws_from_the_rdd(v in small_vec(), p in parts(), n in 0usize..80, seed in any::<u64>(), repl in any::<bool>()) {
        let r = ctx().parallelize(v.clone(), p);
        let s = r.take_sample(repl, n, seed).unwrap();
        let want_len = if v.is_empty() { 0 } else if repl { n } else { n.min(v.len()) };
        prop_assert_eq!(s.len(), want_len);
        prop_assert_eq!(&s, &r.take_sample(repl, n, seed).unwrap(), "same seed, same sample");
        if repl {
            prop_assert!(s.iter().all(|x| v.contains(x)));
        } else {
            // a sub-multiset of the input
            let mut left = v.clone();
            for x in &s {
                let i = left.iter().position(|y| y == x);
                prop_assert!(i.is_some(), "{} drawn more often than it occurs", x);
                left.swap_remove(i.unwrap_or(0));
            }
        }
    }

    #[test]
    fn sample_by_key_keeps_only_sampled_keys(kv in pairs(), p in parts(), seed in any::<u64>(), repl in any::<bool>()) {
        let r = ctx().parallelize(kv.clone(), p);
        // keys 0-3 always, 4-5 never, 6-7 absent from the map (never)
        let fractions: HashMap<u8, f64> = (0u8..6).map(|k| (k, if k < 4 { 1.0 } else { 0.0 })).collect();
        let s = r.sample_by_key(repl, fractions.clone(), seed).collect().unwrap();
        prop_assert!(s.iter().all(|(k, _)| *k < 4));
        if !repl {
            let want: Vec<(u8, i32)> = kv.iter().copied().filter(|(k, _)| *k < 4).collect();
            prop_assert_eq!(s.clone(), want, "fraction 1 without replacement keeps every pair");
        }
        prop_assert_eq!(s, r.sample_by_key(repl, fractions, seed).collect().unwrap(), "same seed, same sample");
    }

    #[test]
    fn pipe_through_cat_and_wc_matches_iterators(v in small_vec(), p in parts()) {
        let r = ctx().parallelize(v.clone(), p);
        let lines: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        prop_assert_eq!(r.pipe(&["cat"]).collect().unwrap(), lines.clone());
        // one command per partition: `wc -l` prints each partition's count
        let counts: Vec<usize> = r.pipe(&["wc", "-l"]).collect().unwrap().iter().map(|c| c.trim().parse().unwrap()).collect();
        prop_assert_eq!(counts, slices(&v, p).iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn object_files_round_trip_partition_by_partition(kv in pairs(), p in parts()) {
        let dir = TempDir::new("prop-obj");
        let out = dir.join("out");
        let r = ctx().parallelize(kv.clone(), p);
        r.save_as_object_file(&out).unwrap();
        let back = ctx().object_file::<(u8, i32)>(&out).unwrap();
        prop_assert_eq!(back.num_partitions(), p);
        prop_assert_eq!(back.glom().collect().unwrap(), slices(&kv, p));
        prop_assert!(ctx().object_file::<String>(&out).is_err(), "another element type is refused");
    }

    #[test]
    fn zip_partitions_matches_slice_pairs(a in small_vec(), b in small_vec(), p in parts()) {
        let (ra, rb) = (ctx().parallelize(a.clone(), p), ctx().parallelize(b.clone(), p));
        let got = ra.zip_partitions(&rb, |xs, ys| {
            let (xs, ys): (Vec<i32>, Vec<i32>) = (xs.collect(), ys.collect());
            vec![(xs.len(), ys.iter().sum::<i32>() - xs.iter().sum::<i32>())]
        }).unwrap().collect().unwrap();
        let want: Vec<(usize, i32)> = slices(&a, p).iter().zip(slices(&b, p))
            .map(|(xs, ys)| (xs.len(), ys.iter().sum::<i32>() - xs.iter().sum::<i32>()))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert!(ra.zip_partitions(&ctx().parallelize(b.clone(), p + 1), |x, _| x).is_err());
    }

    #[test]
    fn cogroup3_and_cogroup4_match_grouping(a in pairs(), b in pairs(), c in pairs(), d in pairs(), p in parts(), q in parts()) {
        let r = |v: &Vec<(u8, i32)>, n| ctx().parallelize(v.clone(), n);
        let (ga, gb, gc, gd) = (groups(&a), groups(&b), groups(&c), groups(&d));
        let keys3: BTreeSet<u8> = ga.keys().chain(gb.keys()).chain(gc.keys()).copied().collect();
        let get = |g: &BTreeMap<u8, Vec<i32>>, k: &u8| g.get(k).cloned().unwrap_or_default();
        let norm = |mut v: Vec<i32>| { v.sort(); v };
        let got3: Groups3 = r(&a, p).cogroup3(&r(&b, q), &r(&c, 3)).collect().unwrap()
            .into_iter().map(|(k, (x, y, z))| (k, (norm(x), norm(y), norm(z)))).collect();
        let want3: Groups3 = keys3.iter().map(|k| (*k, (get(&ga, k), get(&gb, k), get(&gc, k)))).collect();
        prop_assert_eq!(got3, want3);
        let keys4: BTreeSet<u8> = keys3.iter().chain(gd.keys()).copied().collect();
        let got4: Groups4 = r(&a, p).cogroup4(&r(&b, q), &r(&c, 2), &r(&d, p)).collect().unwrap()
            .into_iter().map(|(k, (w, x, y, z))| (k, (norm(w), norm(x), norm(y), norm(z)))).collect();
        let want4: Groups4 = keys4.iter().map(|k| (*k, (get(&ga, k), get(&gb, k), get(&gc, k), get(&gd, k)))).collect();
        prop_assert_eq!(got4, want4);
    }

    #[test]
    fn whole_text_files_give_each_file_once(texts in prop::collection::vec("[a-z\n ]{0,40}", 1..12)) {
        let dir = TempDir::new("prop-wtf");
        let mut want = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let path = dir.join(&format!("f{i:02}.txt"));
            std::fs::write(&path, t).unwrap();
            want.push((path.to_string_lossy().into_owned(), t.clone()));
        }
        let r = ctx().whole_text_files(&dir.0.to_string_lossy()).unwrap();
        prop_assert!(r.num_partitions() <= texts.len());
        prop_assert_eq!(sorted(r.collect().unwrap()), want);
    }

    #[test]
    fn partitioned_variants_match_iterators_and_place_keys(kv in pairs(), other in pairs(), v in small_vec(), w in small_vec(), p in parts(), n in parts()) {
        use spate::partitioner::{Partitioner, Partitioning};
        let r = ctx().parallelize(kv.clone(), p);
        let o = ctx().parallelize(other.clone(), 3);
        // every `_n` operation: the oracle's answer, in exactly n partitions
        let sums = r.fold_by_key_n(0, |a, b| a + b, n);
        prop_assert_eq!(sums.num_partitions(), n);
        let want: BTreeMap<u8, i32> = groups(&kv).into_iter().map(|(k, xs)| (k, xs.iter().sum())).collect();
        prop_assert_eq!(sums.collect().unwrap().into_iter().collect::<BTreeMap<_, _>>(), want.clone());
        let agg = r.aggregate_by_key_n(0i64, |a, x| a + x as i64, |a, b| a + b, n).collect().unwrap();
        prop_assert_eq!(agg.into_iter().map(|(k, x)| (k, x as i32)).collect::<BTreeMap<_, _>>(), want);
        let joined = sorted(r.join_n(&o, n).collect().unwrap());
        let mut nested = Vec::new();
        for (k, a) in &kv { for (k2, b) in &other { if k == k2 { nested.push((*k, (*a, *b))); } } }
        prop_assert_eq!(joined.clone(), sorted(nested));
        // outer joins and subtract_by_key with n partitions: inner pairs plus the unmatched
        let left = r.left_outer_join_n(&o, n);
        prop_assert_eq!(left.num_partitions(), n);
        let keys_o: BTreeSet<u8> = other.iter().map(|(k, _)| *k).collect();
        let keys_r: BTreeSet<u8> = kv.iter().map(|(k, _)| *k).collect();
        let mut want_left: Vec<(u8, (i32, Option<i32>))> = joined.iter().map(|(k, (a, b))| (*k, (*a, Some(*b)))).collect();
        want_left.extend(kv.iter().filter(|(k, _)| !keys_o.contains(k)).map(|(k, a)| (*k, (*a, None))));
        prop_assert_eq!(sorted(left.collect().unwrap()), sorted(want_left));
        let right = r.right_outer_join_n(&o, n).collect().unwrap();
        prop_assert_eq!(right.len(), joined.len() + other.iter().filter(|(k, _)| !keys_r.contains(k)).count());
        let full = r.full_outer_join_n(&o, n).collect().unwrap();
        prop_assert_eq!(full.len(), right.len() + kv.iter().filter(|(k, _)| !keys_o.contains(k)).count());
        let kept = r.subtract_by_key_n(&o, n);
        prop_assert_eq!(kept.num_partitions(), n);
        prop_assert_eq!(sorted(kept.collect().unwrap()), sorted(kv.iter().copied().filter(|(k, _)| !keys_o.contains(k)).collect()));
        let (rv, rw) = (ctx().parallelize(v.clone(), p), ctx().parallelize(w.clone(), 2));
        let vs: BTreeSet<i32> = v.iter().copied().collect();
        let ws: BTreeSet<i32> = w.iter().copied().collect();
        prop_assert_eq!(sorted(rv.distinct_n(n).collect().unwrap()), vs.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(sorted(rv.intersection_n(&rw, n).collect().unwrap()), vs.intersection(&ws).copied().collect::<Vec<_>>());
        prop_assert_eq!(sorted(rv.subtract_n(&rw, n).collect().unwrap()), sorted(v.iter().copied().filter(|x| !ws.contains(x)).collect()));
        let g = rv.group_by_n(|x| x.rem_euclid(3), n);
        prop_assert_eq!(g.num_partitions(), n);
        prop_assert_eq!(g.count().unwrap() as usize, v.iter().map(|x| x.rem_euclid(3)).collect::<BTreeSet<_>>().len());
        // a custom partitioner places every key where it says
        let placed = r.partition_by(Partitioning::by(ByKey(n))).glom().collect().unwrap();
        prop_assert_eq!(placed.len(), n);
        for (i, part) in placed.iter().enumerate() {
            prop_assert!(part.iter().all(|(k, _)| Partitioner::<u8>::partition(&ByKey(n), k) == i));
        }
    }
}

/// A custom partitioner for the tests: key mod n.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ByKey(pub usize);

impl spate::partitioner::Partitioner<u8> for ByKey {
    fn num_partitions(&self) -> usize {
        self.0
    }
    fn partition(&self, key: &u8) -> usize {
        *key as usize % self.0
    }
    fn same_as(&self, other: &dyn std::any::Any) -> bool {
        other.downcast_ref::<ByKey>().is_some_and(|o| o.0 == self.0)
    }
}

#[test]
fn joins_of_rdds_partitioned_alike_shuffle_neither_side() {
    use spate::partitioner::Partitioning;
    let a = ctx()
        .parallelize((0u8..40).map(|k| (k, k as i32)).collect(), 3)
        .partition_by(Partitioning::by(ByKey(4)));
    let b = ctx()
        .parallelize((0u8..40).map(|k| (k, -(k as i32))).collect(), 2)
        .partition_by(Partitioning::by(ByKey(4)));
    let j = a.join(&b);
    // two partition_by shuffles, then the join in the result stage: no third or fourth
    assert_eq!(spate::plan::plan_stages(&j.base()).stages.len(), 3);
    assert_eq!(j.num_partitions(), 4);
    assert_eq!(
        sorted(j.collect().unwrap()),
        (0u8..40)
            .map(|k| (k, (k as i32, -(k as i32))))
            .collect::<Vec<_>>()
    );
    // partitioned differently: the right side is shuffled to match the left
    let c = ctx()
        .parallelize((0u8..40).map(|k| (k, 1)).collect(), 2)
        .partition_by(Partitioning::by(ByKey(5)));
    assert_eq!(spate::plan::plan_stages(&a.join(&c).base()).stages.len(), 4);
}
