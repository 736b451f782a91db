//! Numbering elements (Spark's `zipWithIndex` / `zipWithUniqueId`), the largest elements
//! by a key, the pairs whose key another RDD lacks, per-key reduction into a driver map
//! without a shuffle, and iterating an RDD one partition at a time.

use super::Rdd;
use super::map_partitions::SplitMix64;
use crate::data::{Data, Key};
use crate::error::Result;
use crate::func::Fun;
use std::cmp::Reverse;

impl<T: Data> Rdd<T> {
    /// Each element with its position in the RDD (partition order, then order within the
    /// partition), from 0. Runs one job to count each partition first when there is more
    /// than one, as Spark's `zipWithIndex` does.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.parallelize(vec!["a", "b", "c"].into_iter().map(String::from).collect(), 2);
    /// assert_eq!(r.zip_with_index()?.collect()?, vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 2)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn zip_with_index(&self) -> Result<Rdd<(T, u64)>> {
        let starts: Vec<u64> = if self.num_partitions() <= 1 {
            vec![0]
        } else {
            let sizes = self
                .map_partitions(|it| std::iter::once(it.count() as u64))
                .collect()?;
            sizes
                .iter()
                .scan(0u64, |next, n| {
                    let start = *next;
                    *next += n;
                    Some(start)
                })
                .collect()
        };
        Ok(
            self.map_partitions_with_index_with(starts, |starts, partition, it| {
                let start = starts.get(partition).copied().unwrap_or(0);
                it.zip(start..)
            }),
        )
    }

    /// Each element with an id unique in the RDD, without running a job: element `i` of
    /// partition `k` of `n` gets `i * n + k` (ids are not consecutive).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let ids = ctx.range(0, 5, 2).zip_with_unique_id().collect()?;
    /// assert_eq!(ids, vec![(0, 0), (1, 2), (2, 1), (3, 3), (4, 5)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn zip_with_unique_id(&self) -> Rdd<(T, u64)> {
        let n = self.num_partitions() as u64;
        self.map_partitions_with_index_with(n, |n, partition, it| {
            let (n, k) = (*n, partition as u64);
            it.zip((0u64..).map(move |i| i * n + k))
        })
    }

    /// The `n` largest elements by `key`, largest first (Spark's `top` with an ordering).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let words = ctx.parallelize(vec!["a".to_string(), "ccc".into(), "bb".into()], 2);
    /// assert_eq!(words.top_by(2, |w| w.len())?, vec!["ccc".to_string(), "bb".into()]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn top_by<K: Ord, F>(&self, n: usize, key: F) -> Result<Vec<T>>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.take_ordered_with(n, Fun::new(key), |key: &Fun<F>, x: &T| {
            Reverse((key.get())(x))
        })
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// The pairs whose key does not occur in `other` (one shuffle of both sides).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (2, 'c'), (3, 'd')], 2);
    /// let b = ctx.parallelize(vec![(2, ()), (4, ())], 1);
    /// let mut left = a.subtract_by_key(&b).collect()?;
    /// left.sort();
    /// assert_eq!(left, vec![(1, 'a'), (3, 'd')]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn subtract_by_key<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, V)> {
        Self::kept_by_key(self.cogroup(other))
    }

    /// [`Rdd::subtract_by_key`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    /// let left = a.subtract_by_key_n(&ctx.parallelize(vec![(2, ())], 1), 3);
    /// assert_eq!(left.num_partitions(), 3);
    /// assert_eq!(left.collect()?, vec![(1, 'a')]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn subtract_by_key_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<crate::partitioner::Partitioning<K>>,
    ) -> Rdd<(K, V)> {
        Self::kept_by_key(self.cogroup_n(other, parts))
    }

    /// The pairs of keys with no values on the other side.
    #[track_caller]
    fn kept_by_key<W: Data>(grouped: Rdd<super::CoGrouped<K, V, W>>) -> Rdd<(K, V)> {
        grouped.flat_map(|(k, (vs, ws))| {
            let keep = if ws.is_empty() { vs } else { Vec::new() };
            keep.into_iter().map(move |v| (k.clone(), v))
        })
    }
}

/// The elements of an RDD one partition at a time ([`Rdd::to_local_iterator`]): each
/// partition is fetched by its own job when the previous one is used up.
pub struct LocalIter<T: Data> {
    rdd: Rdd<T>,
    next: usize,
    current: std::vec::IntoIter<T>,
    failed: bool,
}

impl<T: Data> Iterator for LocalIter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(x) = self.current.next() {
                return Some(Ok(x));
            }
            if self.failed || self.next >= self.rdd.num_partitions() {
                return None;
            }
            let partition = self.next;
            self.next += 1;
            match self
                .rdd
                .run_job(Fun::new(super::collect_vec::<T>), vec![partition])
            {
                Ok(mut parts) => self.current = parts.pop().unwrap_or_default().into_iter(),
                Err(e) => {
                    // One error, then the end: the job's failure is the answer.
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<T: Data> Rdd<T> {
    /// The elements in order, fetched one partition at a time, so the driver holds at
    /// most one partition (Spark's `toLocalIterator`); a failed job ends the iteration
    /// with its error.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let firsts: Vec<i64> = ctx.range(0, 1_000_000, 100).to_local_iterator().take(3).collect::<spate::Result<_>>()?;
    /// assert_eq!(firsts, vec![0, 1, 2]); // one job, for the first partition only
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn to_local_iterator(&self) -> LocalIter<T> {
        LocalIter {
            rdd: self.clone(),
            next: 0,
            current: Vec::new().into_iter(),
            failed: false,
        }
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// Merge the values of each key with `f` into a map on the driver, without a shuffle:
    /// each partition is combined where it is, the partial maps merged here (dpark's
    /// `reduceByKeyToDriver`, Spark's `reduceByKeyLocally`).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let m = ctx.parallelize(vec![('a', 1), ('b', 2), ('a', 3)], 2).reduce_by_key_locally(|x, y| x + y)?;
    /// assert_eq!((m[&'a'], m[&'b']), (4, 2));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn reduce_by_key_locally<F>(&self, f: F) -> Result<std::collections::HashMap<K, V>>
    where
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        use std::collections::HashMap;
        fn merge<K: Key, V, F: Fn(V, V) -> V>(m: &mut HashMap<K, V>, f: &F, k: K, v: V) {
            match m.remove(&k) {
                Some(old) => m.insert(k, f(old, v)),
                None => m.insert(k, v),
            };
        }
        let f = Fun::new(f);
        let partials = self
            .map_partitions_with(f.clone(), |f: &Fun<F>, it| {
                let mut m = HashMap::new();
                it.for_each(|(k, v)| merge(&mut m, f.get(), k, v));
                std::iter::once(m)
            })
            .collect()?;
        let mut all = HashMap::new();
        for part in partials {
            for (k, v) in part {
                merge(&mut all, f.get(), k, v);
            }
        }
        Ok(all)
    }
}

impl<T: Data> Rdd<T> {
    /// Exactly `n` random elements (fewer only when the RDD has fewer and
    /// `with_replacement` is off), in random order; the same seed gives the same sample
    /// (Spark's `takeSample`). Counts the RDD, then samples a little more than needed
    /// (again, larger, in the rare case it got too few) and shuffles on the driver.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.range(0, 1000, 4).take_sample(false, 5, 7)?;
    /// assert_eq!(s.len(), 5);
    /// assert_eq!(s, ctx.range(0, 1000, 4).take_sample(false, 5, 7)?);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn take_sample(&self, with_replacement: bool, n: usize, seed: u64) -> Result<Vec<T>> {
        let total = self.count()?;
        if n == 0 || total == 0 {
            return Ok(Vec::new());
        }
        let mut rng = SplitMix64::new(seed ^ 0x5851_f42d_4c95_7f2d);
        let shuffle = |v: &mut Vec<T>, rng: &mut SplitMix64| {
            for i in (1..v.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        };
        if !with_replacement && n as u64 >= total {
            let mut all = self.collect()?;
            shuffle(&mut all, &mut rng);
            return Ok(all);
        }
        // Enough with high probability: the expected count plus a few deviations.
        let want = n as f64;
        let mut fraction = ((want + 5.0 * want.sqrt() + 10.0) / total as f64).max(1e-9);
        if !with_replacement {
            fraction = fraction.min(1.0);
        }
        let mut attempt = 0u64;
        loop {
            let mut got = self
                .sample(with_replacement, fraction, seed.wrapping_add(attempt))
                .collect()?;
            if got.len() >= n {
                shuffle(&mut got, &mut rng);
                got.truncate(n);
                return Ok(got);
            }
            // Too few (rare): sample more. Without replacement a fraction of 1 keeps all.
            attempt += 1;
            fraction *= 2.0;
            if !with_replacement {
                fraction = fraction.min(1.0);
            }
        }
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// A sample with a fraction per key (stratified sampling, Spark's `sampleByKey`): each
    /// pair is kept with its key's probability (without replacement) or repeated a
    /// Poisson(fraction) number of times (with replacement); keys without a fraction are
    /// dropped. Seeded per partition: the same seed gives the same sample.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let pairs = ctx.range(0, 10_000, 4).map(|x| (x % 2, x));
    /// let fractions = [(0, 0.1), (1, 0.0)].into_iter().collect();
    /// let s = pairs.sample_by_key(false, fractions, 9).collect()?;
    /// assert!(s.iter().all(|(k, _)| *k == 0) && s.len() > 350 && s.len() < 650);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn sample_by_key(
        &self,
        with_replacement: bool,
        fractions: std::collections::HashMap<K, f64>,
        seed: u64,
    ) -> Rdd<(K, V)> {
        self.map_partitions_with_index_with(
            (with_replacement, fractions, seed),
            |(with_replacement, fractions, seed), partition, it| {
                let (with_replacement, fractions) = (*with_replacement, fractions.clone());
                let mut rng =
                    SplitMix64::new(*seed ^ (partition as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
                it.flat_map(move |(k, v)| {
                    let f = fractions
                        .get(&k)
                        .copied()
                        .filter(|f| f.is_finite())
                        .unwrap_or(0.0)
                        .max(0.0);
                    let n = if with_replacement {
                        rng.poisson(f)
                    } else {
                        usize::from(rng.next_f64() < f)
                    };
                    std::iter::repeat_n((k, v), n)
                })
            },
        )
    }
}
