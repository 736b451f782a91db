//! Actions: operations that run a job and bring a result back to the driver.

use super::{Codec, PartIter, Rdd};
use crate::data::{Data, Key};
use crate::error::{Error, Result};
use crate::func::{Fun, Func, With};
use crate::ship::SerArc;
use crate::task::{PartitionJob, ResultJob, raise};
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

impl<T: Data> Rdd<T> {
    /// Run `func` over the given partitions; results in the order of `partitions`.
    pub(crate) fn run_job<
        U: Data,
        G: Func<PartIter<T>, U> + serde::Serialize + serde::de::DeserializeOwned,
    >(
        &self,
        func: G,
        partitions: Vec<usize>,
    ) -> Result<Vec<U>> {
        let job = SerArc::<dyn ResultJob>::new(PartitionJob::new(self.node.clone(), func));
        let results = self.sc.run_job(job, partitions)?;
        results
            .into_iter()
            .map(|r| {
                r.downcast::<U>().map(|b| *b).map_err(|_| {
                    Error::Other(format!(
                        "job result is not a {}",
                        std::any::type_name::<U>()
                    ))
                })
            })
            .collect()
    }

    fn all_partitions(&self) -> Vec<usize> {
        (0..self.num_partitions()).collect()
    }

    /// All elements, in partition order.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 5, 3).collect()?, vec![0, 1, 2, 3, 4]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn collect(&self) -> Result<Vec<T>> {
        let parts: Vec<Vec<T>> =
            self.run_job(Fun::new(super::collect_vec::<T>), self.all_partitions())?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Number of elements.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 1000, 7).count()?, 1000);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn count(&self) -> Result<u64> {
        let counts: Vec<u64> = self.run_job(
            Fun::new(|it: PartIter<T>| it.count() as u64),
            self.all_partitions(),
        )?;
        Ok(counts.into_iter().sum())
    }

    /// Combine all elements with an associative, commutative function; `None` if empty.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(1, 5, 2).reduce(|a, b| a * b)?, Some(24));
    /// assert_eq!(ctx.range(0, 0, 2).reduce(|a, b| a + b)?, None);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn reduce<F>(&self, f: F) -> Result<Option<T>>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        let f = Fun::new(f);
        let partials: Vec<Option<T>> = self.run_job(
            With::new(f.clone(), |f: &Fun<F>, it: PartIter<T>| {
                it.reduce(|a, b| (f.get())(a, b))
            }),
            self.all_partitions(),
        )?;
        Ok(partials
            .into_iter()
            .flatten()
            .reduce(|a, b| (f.get())(a, b)))
    }

    /// Fold all elements starting from `zero` in each partition and once more on the driver
    /// (so `zero` must be neutral for `f`).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 5, 2).fold(0, |a, b| a + b)?, 10);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn fold<F>(&self, zero: T, f: F) -> Result<T>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        let f = Fun::new(f);
        let partials: Vec<T> = self.run_job(
            With::new(
                (zero.clone(), f.clone()),
                |(z, f): &(T, Fun<F>), it: PartIter<T>| it.fold(z.clone(), |a, b| (f.get())(a, b)),
            ),
            self.all_partitions(),
        )?;
        Ok(partials.into_iter().fold(zero, |a, b| (f.get())(a, b)))
    }

    /// Aggregate into another type: `seq` folds elements into a per-partition accumulator
    /// starting at `zero`, `comb` merges accumulators on the driver.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let (sum, n) = ctx.range(1, 5, 2).aggregate((0, 0), |(s, n), x| (s + x, n + 1), |(a, b), (c, d)| (a + c, b + d))?;
    /// assert_eq!((sum, n), (10, 4));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn aggregate<U: Data, S, C>(&self, zero: U, seq: S, comb: C) -> Result<U>
    where
        S: Fn(U, T) -> U + Clone + Send + Sync + 'static,
        C: Fn(U, U) -> U + Clone + Send + Sync + 'static,
    {
        let seq = Fun::new(seq);
        let comb = Fun::new(comb);
        let partials: Vec<U> = self.run_job(
            With::new(
                (zero.clone(), seq),
                |(z, seq): &(U, Fun<S>), it: PartIter<T>| {
                    it.fold(z.clone(), |a, b| (seq.get())(a, b))
                },
            ),
            self.all_partitions(),
        )?;
        Ok(partials.into_iter().fold(zero, |a, b| (comb.get())(a, b)))
    }

    /// The first `n` elements, scanning as few partitions as possible (one first, then
    /// four times as many each round, like Spark).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 100, 10).take(3)?, vec![0, 1, 2]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let total = self.num_partitions();
        let mut next = 0;
        let mut batch = 1;
        while out.len() < n && next < total {
            let parts: Vec<usize> = (next..(next + batch).min(total)).collect();
            next += parts.len();
            let want = n - out.len();
            let got: Vec<Vec<T>> = self.run_job(
                With::new(want, |want: &usize, it: PartIter<T>| {
                    it.take(*want).collect::<Vec<T>>()
                }),
                parts,
            )?;
            for v in got {
                let room = n - out.len();
                out.extend(v.into_iter().take(room));
            }
            batch *= 4;
        }
        Ok(out)
    }

    /// The first element, if any.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(7, 9, 2).first()?, Some(7));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn first(&self) -> Result<Option<T>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// Whether the RDD has no elements.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert!(ctx.range(0, 0, 2).is_empty()?);
    /// assert!(!ctx.range(0, 1, 2).is_empty()?);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.num_partitions() == 0 || self.take(1)?.is_empty())
    }

    /// The `n` smallest elements by `key`, in ascending key order (ties by position).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let words = ctx.parallelize(vec![('b', 2), ('a', 5), ('c', 5)], 2);
    /// // highest count first, then word
    /// let top = words.take_ordered_by(2, |(w, c)| (std::cmp::Reverse(*c), *w))?;
    /// assert_eq!(top, vec![('a', 5), ('c', 5)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn take_ordered_by<K: Ord, F>(&self, n: usize, key: F) -> Result<Vec<T>>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.take_ordered_with(n, Fun::new(key), |key: &Fun<F>, x: &T| (key.get())(x))
    }

    /// The `n` smallest elements by `key(state, x)`: the one job behind `take_ordered_by`
    /// and `top_by`.
    pub(super) fn take_ordered_with<S: Data, K: Ord, G>(
        &self,
        n: usize,
        state: S,
        key: G,
    ) -> Result<Vec<T>>
    where
        G: Fn(&S, &T) -> K + Copy + Send + Sync + 'static,
    {
        let by = |s: &S, a: &T, b: &T| key(s, a).cmp(&key(s, b));
        let partials: Vec<Vec<T>> = self.run_job(
            With::new(
                (n, state.clone(), Fun::new(key)),
                |(n, s, key): &(usize, S, Fun<G>), it: PartIter<T>| {
                    let key = key.get();
                    smallest_by(it, *n, |a, b| key(s, a).cmp(&key(s, b)))
                },
            ),
            self.all_partitions(),
        )?;
        Ok(smallest_by(partials.into_iter().flatten(), n, |a, b| {
            by(&state, a, b)
        }))
    }

    /// The `n` smallest elements, ascending.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![5, 1, 4, 2], 2).take_ordered(2)?, vec![1, 2]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn take_ordered(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        let partials: Vec<Vec<T>> = self.run_job(
            With::new(n, |n: &usize, it: PartIter<T>| smallest_by(it, *n, T::cmp)),
            self.all_partitions(),
        )?;
        Ok(smallest_by(partials.into_iter().flatten(), n, T::cmp))
    }

    /// The `n` largest elements, descending.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![5, 1, 4, 2], 2).top(2)?, vec![5, 4]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn top(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        let desc = |a: &T, b: &T| b.cmp(a);
        let partials: Vec<Vec<T>> = self.run_job(
            With::new(n, move |n: &usize, it: PartIter<T>| {
                smallest_by(it, *n, desc)
            }),
            self.all_partitions(),
        )?;
        Ok(smallest_by(partials.into_iter().flatten(), n, desc))
    }

    /// The smallest element.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![3, 1, 2], 2).min()?, Some(1));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn min(&self) -> Result<Option<T>>
    where
        T: Ord,
    {
        self.reduce(std::cmp::min)
    }

    /// The largest element.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![3, 1, 2], 2).max()?, Some(3));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn max(&self) -> Result<Option<T>>
    where
        T: Ord,
    {
        self.reduce(std::cmp::max)
    }

    /// Run `f` on every element, where the partition is computed (for side effects).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// ctx.range(0, 3, 1).foreach(|x| assert!(x < 3))?;
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn foreach<F>(&self, f: F) -> Result<()>
    where
        F: Fn(T) + Clone + Send + Sync + 'static,
    {
        let f = Fun::new(f);
        self.run_job(
            With::new(f, |f: &Fun<F>, it: PartIter<T>| {
                it.for_each(|x| (f.get())(x))
            }),
            self.all_partitions(),
        )?;
        Ok(())
    }

    /// [`Rdd::foreach`] with explicit state.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// ctx.range(0, 3, 1).foreach_with(3, |limit, x| assert!(x < *limit))?;
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn foreach_with<S: Data, F>(&self, state: S, f: F) -> Result<()>
    where
        F: Fn(&S, T) + Clone + Send + Sync + 'static,
    {
        let f = Fun::new(f);
        self.run_job(
            With::new((state, f), |(s, f): &(S, Fun<F>), it: PartIter<T>| {
                it.for_each(|x| (f.get())(s, x))
            }),
            self.all_partitions(),
        )?;
        Ok(())
    }

    /// Run `f` once per partition with its iterator (e.g. to open one connection per
    /// partition).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// ctx.range(0, 10, 2).foreach_partition(|it| assert_eq!(it.count(), 5))?;
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn foreach_partition<F>(&self, f: F) -> Result<()>
    where
        F: Fn(PartIter<T>) + Clone + Send + Sync + 'static,
    {
        self.run_job(Fun::new(f), self.all_partitions())?;
        Ok(())
    }

    /// How many times each distinct element occurs (counted per partition, merged on the
    /// driver).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let c = ctx.parallelize(vec!['a', 'b', 'a'], 2).count_by_value()?;
    /// assert_eq!(c[&'a'], 2);
    /// assert_eq!(c[&'b'], 1);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn count_by_value(&self) -> Result<HashMap<T, u64>>
    where
        T: Key,
    {
        let partials: Vec<HashMap<T, u64, FxBuildHasher>> = self.run_job(
            Fun::new(|it: PartIter<T>| {
                let mut m: HashMap<T, u64, FxBuildHasher> = HashMap::default();
                for x in it {
                    *m.entry(x).or_insert(0) += 1;
                }
                m
            }),
            self.all_partitions(),
        )?;
        let mut total = HashMap::new();
        for m in partials {
            for (k, c) in m {
                *total.entry(k).or_insert(0) += c;
            }
        }
        Ok(total)
    }

    /// Write each partition as a text file `part-NNNNN` in a new directory `dir`, one
    /// element per line, then a `_SUCCESS` marker. Files are written under a hidden temp
    /// name and renamed, so readers never see half a file. An existing `dir` is an error.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let dir = std::env::temp_dir().join(format!("spate-doc-save-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// ctx.range(0, 4, 2).save_as_text_file(&dir)?;
    /// assert_eq!(std::fs::read_to_string(dir.join("part-00001"))?, "2\n3\n");
    /// assert!(dir.join("_SUCCESS").exists());
    /// assert!(ctx.range(0, 4, 2).save_as_text_file(&dir).is_err());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_as_text_file(&self, dir: impl AsRef<Path>) -> Result<()>
    where
        T: Display,
    {
        self.save_as_text_file_with(dir, Codec::None)
    }

    /// [`Rdd::save_as_text_file`], compressing each part: `part-NNNNN.gz` (gzip),
    /// `part-NNNNN.zst` (Zstandard) or `part-NNNNN.bz2` (bzip2); `text_file` reads them
    /// back.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// use spate::rdd::Codec;
    /// let dir = std::env::temp_dir().join(format!("spate-doc-savez-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// ctx.range(0, 1000, 2).save_as_text_file_with(&dir, Codec::Zstd)?;
    /// assert!(dir.join("part-00001.zst").exists());
    /// assert_eq!(ctx.text_file(dir.to_str().unwrap())?.count()?, 1000);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_as_text_file_with(&self, dir: impl AsRef<Path>, codec: Codec) -> Result<()>
    where
        T: Display,
    {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() {
            return Err(Error::OutputExists(dir));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", dir.clone(), e))?;
        let dir_str = dir.to_string_lossy().into_owned();
        self.map_partitions_with_index_with(
            (dir_str, codec),
            |(dir, codec): &(String, Codec), index, it: PartIter<T>| {
                std::iter::once(write_part(Path::new(dir), *codec, index, it))
            },
        )
        .collect()?;
        let marker = dir.join("_SUCCESS");
        std::fs::write(&marker, b"").map_err(|e| Error::io("writing", marker, e))?;
        Ok(())
    }
}

impl<T: Data> Rdd<T> {
    /// Write each partition as a file of typed elements `part-NNNNN` in a new directory
    /// `dir` (bincode in blocks with CRC32 checksums, see [`crate::objfile`]), plus
    /// `_TYPE` (the element type's name) and a `_SUCCESS` marker; `Context::object_file`
    /// reads it back, in this program or another built with the same types. Parts are
    /// written under a temporary name and renamed. An existing `dir` is an error.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let dir = std::env::temp_dir().join(format!("spate-doc-obj-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let pairs = ctx.parallelize(vec![(1, "one".to_string()), (2, "two".to_string())], 2);
    /// pairs.save_as_object_file(&dir)?;
    /// let back = ctx.object_file::<(i32, String)>(&dir)?;
    /// assert_eq!(back.num_partitions(), 2);
    /// assert_eq!(back.collect()?, pairs.collect()?);
    /// assert!(ctx.object_file::<u64>(&dir).is_err()); // another element type
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_as_object_file(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() {
            return Err(Error::OutputExists(dir));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", dir.clone(), e))?;
        let type_file = dir.join(super::object_file::TYPE_FILE);
        std::fs::write(&type_file, std::any::type_name::<T>())
            .map_err(|e| Error::io("writing", type_file, e))?;
        let dir_str = dir.to_string_lossy().into_owned();
        self.map_partitions_with_index_with(dir_str, |dir: &String, index, it: PartIter<T>| {
            let path = Path::new(dir).join(format!("part-{index:05}"));
            let written = crate::objfile::ObjectWriter::create(&path).and_then(|mut w| {
                for x in it {
                    w.push(&x)?;
                }
                w.finish()
            });
            std::iter::once(written.unwrap_or_else(|e| raise(e)))
        })
        .collect()?;
        let marker = dir.join("_SUCCESS");
        std::fs::write(&marker, b"").map_err(|e| Error::io("writing", marker, e))?;
        Ok(())
    }
}

fn write_part<T: Display>(dir: &Path, codec: Codec, index: usize, it: PartIter<T>) -> u64 {
    let name = match codec {
        Codec::None => format!("part-{index:05}"),
        Codec::Gzip => format!("part-{index:05}.gz"),
        Codec::Zstd => format!("part-{index:05}.zst"),
        Codec::Bzip2 => format!("part-{index:05}.bz2"),
    };
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let lines = |out: &mut dyn Write| -> std::io::Result<u64> {
        let mut n = 0;
        for x in it {
            writeln!(out, "{x}")?;
            n += 1;
        }
        Ok(n)
    };
    let write = || -> std::io::Result<u64> {
        let file = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&tmp)?);
        let (n, file) = match codec {
            Codec::None => {
                let mut out = file;
                (lines(&mut out)?, out)
            }
            Codec::Gzip => {
                let mut out = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                (lines(&mut out)?, out.finish()?)
            }
            Codec::Bzip2 => {
                let mut out = bzip2::write::BzEncoder::new(file, bzip2::Compression::default());
                (lines(&mut out)?, out.finish()?)
            }
            Codec::Zstd => {
                let mut out = zstd::stream::write::Encoder::new(file, 3)?;
                (lines(&mut out)?, out.finish()?)
            }
        };
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(n)
    };
    match write() {
        Ok(n) => {
            let dest = dir.join(&name);
            if let Err(e) = std::fs::rename(&tmp, &dest) {
                raise(Error::io("renaming output to", dest, e));
            }
            n
        }
        Err(e) => raise(Error::io("writing", tmp, e)),
    }
}

/// The `n` smallest items under `cmp`, sorted, in O(len) plus O(n log n).
fn smallest_by<T>(
    it: impl Iterator<Item = T>,
    n: usize,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Copy,
) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let mut buf: Vec<T> = Vec::with_capacity(2 * n);
    for x in it {
        buf.push(x);
        if buf.len() == 2 * n {
            buf.select_nth_unstable_by(n - 1, cmp);
            buf.truncate(n);
        }
    }
    if buf.len() > n {
        buf.select_nth_unstable_by(n - 1, cmp);
        buf.truncate(n);
    }
    buf.sort_by(cmp);
    buf
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// All pairs as a map (for duplicate keys, one value wins).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let m = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2).collect_as_map()?;
    /// assert_eq!(m[&2], 'b');
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn collect_as_map(&self) -> Result<HashMap<K, V>> {
        Ok(self.collect()?.into_iter().collect())
    }

    /// Number of pairs per key.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let c = ctx.parallelize(vec![('a', 1), ('a', 2), ('b', 3)], 2).count_by_key()?;
    /// assert_eq!(c[&'a'], 2);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>> {
        self.map_values(|_| 1u64)
            .reduce_by_key(|a, b| a + b)
            .collect_as_map()
    }

    /// All values of `key`. Reads only the key's partition when the RDD is hash-partitioned.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (1, 'c')], 2);
    /// assert_eq!(r.lookup(&1)?, vec!['a', 'c']);
    /// assert!(r.lookup(&9)?.is_empty());
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn lookup(&self, key: &K) -> Result<Vec<V>> {
        let partitions = match super::partitioner_of::<K>(&*self.node) {
            Some(p) => vec![p.partition(key)],
            None => self.all_partitions(),
        };
        let found: Vec<Vec<V>> = self.run_job(
            With::new(key.clone(), |key: &K, it: PartIter<(K, V)>| {
                it.filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect::<Vec<V>>()
            }),
            partitions,
        )?;
        Ok(found.into_iter().flatten().collect())
    }
}
