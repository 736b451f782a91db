//! Transformations on any RDD. Every closure must be non-capturing; use the `_with` form
//! to pass state (see [`crate::func`]).

use super::cartesian::CartesianNode;
use super::coalesce::CoalescedNode;
use super::map_partitions::{
    FilterFn, FlatMapFn, GlomFn, IndexedPartsFn, KeyByFn, MapFn, MapPartitionsNode, PartitionFn,
    PartsFn, SampleFn,
};
use super::union::UnionNode;
use super::zip::{ZipNode, ZipPartitionsNode};
use super::{NodeMeta, PartIter, Rdd};
use crate::data::{Data, Key};
use crate::error::{Error, Result};
use crate::func::{Fun, Func2, With};
use crate::partitioner::Partitioning;
use std::marker::PhantomData;
use std::sync::Arc;

impl<T: Data> Rdd<T> {
    #[track_caller]
    pub(crate) fn with_partition_fn<U: Data, F: PartitionFn<T, U>>(
        &self,
        op: &'static str,
        f: F,
        preserves: bool,
    ) -> Rdd<U> {
        let meta = NodeMeta::new(&*self.sc, op);
        Rdd::from_node(
            self.sc.clone(),
            MapPartitionsNode {
                meta,
                parent: self.node.clone(),
                partitions: self.node.num_partitions(),
                f: Arc::new(f),
                preserves_partitioning: preserves,
                _out: PhantomData,
            },
        )
    }

    /// Apply `f` to every element.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let doubled = ctx.parallelize(vec![1, 2, 3], 2).map(|x| x * 2).collect()?;
    /// assert_eq!(doubled, vec![2, 4, 6]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    ///
    /// A closure that captures variables is written with `spate::f!`, which ships what it
    /// captured (serde values, cloned when the closure is made):
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// use spate::f;
    /// let k = 3;
    /// let v = ctx.parallelize(vec![1, 2], 1).map(f!(|x| x * k)).collect()?;
    /// assert_eq!(v, vec![3, 6]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    ///
    /// Without it, the closure does not compile (it could not be shipped to an executor);
    /// the error says to wrap it in `f!`:
    ///
    /// ```compile_fail
    /// # let ctx = spate::Context::builder().master("local[2]").build().unwrap();
    /// let k = 3;
    /// let r = ctx.parallelize(vec![1, 2, 3], 2).map(move |x| x * k);
    /// ```
    #[track_caller]
    pub fn map<U: Data, F>(&self, f: F) -> Rdd<U>
    where
        F: Fn(T) -> U + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("map", MapFn(Fun::new(f)), false)
    }

    /// [`Rdd::map`] with explicit state, shipped once with the task.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let k = 10;
    /// let v = ctx.parallelize(vec![1, 2], 1).map_with(k, |k, x| x * k).collect()?;
    /// assert_eq!(v, vec![10, 20]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_with<S: Data, U: Data, F>(&self, state: S, f: F) -> Rdd<U>
    where
        F: Fn(&S, T) -> U + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("map", MapFn(With::new(state, f)), false)
    }

    /// Apply `f` to every element and flatten the results.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let words = ctx
    ///     .parallelize(vec!["a b".to_string(), "c".to_string()], 2)
    ///     .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
    ///     .collect()?;
    /// assert_eq!(words, vec!["a", "b", "c"]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn flat_map<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        F: Fn(T) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn("flat_map", FlatMapFn(Fun::new(f), PhantomData), false)
    }

    /// [`Rdd::flat_map`] with explicit state.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.parallelize(vec![1, 2], 2).flat_map_with(3usize, |n, x| vec![x; *n]).collect()?;
    /// assert_eq!(v, vec![1, 1, 1, 2, 2, 2]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn flat_map_with<S: Data, U: Data, I, F>(&self, state: S, f: F) -> Rdd<U>
    where
        F: Fn(&S, T) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn(
            "flat_map",
            FlatMapFn(With::new(state, f), PhantomData),
            false,
        )
    }

    /// Keep the elements for which `f` is true.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let even = ctx.range(0, 10, 3).filter(|x| x % 2 == 0).collect()?;
    /// assert_eq!(even, vec![0, 2, 4, 6, 8]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn filter<F>(&self, f: F) -> Rdd<T>
    where
        F: Fn(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("filter", FilterFn(Fun::new(f)), true)
    }

    /// [`Rdd::filter`] with explicit state.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let big = ctx.range(0, 10, 2).filter_with(7, |min, x| x >= min).collect()?;
    /// assert_eq!(big, vec![7, 8, 9]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn filter_with<S: Data, F>(&self, state: S, f: F) -> Rdd<T>
    where
        F: Fn(&S, &T) -> bool + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("filter", FilterFn(With::new(state, f)), true)
    }

    /// Transform a whole partition at once (e.g. to set up something per partition).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let sums = ctx.range(0, 6, 2).map_partitions(|it| std::iter::once(it.sum::<i64>())).collect()?;
    /// assert_eq!(sums, vec![3, 12]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_partitions<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        F: Fn(PartIter<T>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn("map_partitions", PartsFn(Fun::new(f), PhantomData), false)
    }

    /// [`Rdd::map_partitions`] with explicit state.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.range(0, 4, 2).map_partitions_with(100i64, |base, it| { let b = *base; it.map(move |x| x + b) }).collect()?;
    /// assert_eq!(v, vec![100, 101, 102, 103]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_partitions_with<S: Data, U: Data, I, F>(&self, state: S, f: F) -> Rdd<U>
    where
        F: Fn(&S, PartIter<T>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn(
            "map_partitions",
            PartsFn(With::new(state, f), PhantomData),
            false,
        )
    }

    /// Like [`Rdd::map_partitions`], also given the partition index.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.range(0, 4, 2).map_partitions_with_index(|i, it| it.map(move |x| (i, x))).collect()?;
    /// assert_eq!(v, vec![(0, 0), (0, 1), (1, 2), (1, 3)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_partitions_with_index<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        F: Fn(usize, PartIter<T>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn(
            "map_partitions_with_index",
            IndexedPartsFn(Fun::new(f), PhantomData),
            false,
        )
    }

    /// [`Rdd::map_partitions_with_index`] with explicit state for the closure.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let tagged = ctx
    ///     .range(0, 4, 2)
    ///     .map_partitions_with_index_with(100i64, |base, i, it| {
    ///         let offset = *base * i as i64;
    ///         it.map(move |x| x + offset)
    ///     })
    ///     .collect()?;
    /// assert_eq!(tagged, vec![0, 1, 102, 103]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_partitions_with_index_with<S: Data, U: Data, I, F>(&self, state: S, f: F) -> Rdd<U>
    where
        F: Fn(&S, usize, PartIter<T>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn(
            "map_partitions_with_index",
            IndexedPartsFn(With::new(state, f), PhantomData),
            false,
        )
    }

    /// Each partition as one vector.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(0, 4, 2).glom().collect()?, vec![vec![0, 1], vec![2, 3]]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn glom(&self) -> Rdd<Vec<T>> {
        self.with_partition_fn("glom", GlomFn, false)
    }

    /// Pair each element with a key computed from it.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.parallelize(vec!["aa".to_string()], 1).key_by(|s: &String| s.len()).collect()?;
    /// assert_eq!(v, vec![(2, "aa".to_string())]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn key_by<K: Data, F>(&self, f: F) -> Rdd<(K, T)>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("key_by", KeyByFn(Fun::new(f)), false)
    }

    /// The elements of both RDDs (duplicates kept), partitions side by side.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let u = ctx.range(0, 2, 1).union(&ctx.range(5, 7, 1));
    /// assert_eq!(u.num_partitions(), 2);
    /// assert_eq!(u.collect()?, vec![0, 1, 5, 6]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn union(&self, other: &Rdd<T>) -> Rdd<T> {
        let meta = NodeMeta::new(&*self.sc, "union");
        Rdd::from_node(
            self.sc.clone(),
            UnionNode {
                meta,
                parents: vec![self.node.clone(), other.node.clone()],
                partitions: self.num_partitions() + other.num_partitions(),
            },
        )
    }

    /// Pair the i-th elements of two RDDs that have the same number of partitions and the
    /// same number of elements in each partition (e.g. one is a `map` of the other).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.range(0, 3, 2);
    /// let z = a.zip(&a.map(|x| x * 10))?.collect()?;
    /// assert_eq!(z, vec![(0, 0), (1, 10), (2, 20)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn zip<U: Data>(&self, other: &Rdd<U>) -> Result<Rdd<(T, U)>> {
        self.same_partition_count(other)?;
        let meta = NodeMeta::new(&*self.sc, "zip");
        Ok(Rdd::from_node(
            self.sc.clone(),
            ZipNode {
                meta,
                left: self.node.clone(),
                right: other.node.clone(),
                partitions: self.num_partitions(),
            },
        ))
    }

    /// Combine partition `i` of this RDD with partition `i` of `other` (Spark's
    /// `zipPartitions`): `f` gets both partitions' iterators and returns the new partition.
    /// Both RDDs need the same number of partitions; their sizes may differ.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.range(0, 6, 2); // [0, 1, 2], [3, 4, 5]
    /// let b = ctx.parallelize(vec!['x', 'y', 'z'], 2); // [x], [y, z]
    /// let sizes = a.zip_partitions(&b, |xs, ys| vec![(xs.count(), ys.count())])?;
    /// assert_eq!(sizes.collect()?, vec![(3, 1), (3, 2)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn zip_partitions<U: Data, V: Data, I, F>(&self, other: &Rdd<U>, f: F) -> Result<Rdd<V>>
    where
        F: Fn(PartIter<T>, PartIter<U>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = V> + 'static,
        I::IntoIter: 'static,
    {
        self.zip_partitions_by(other, Fun::new(f))
    }

    /// [`Rdd::zip_partitions`] with explicit state, shipped once with the task.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let (a, b) = (ctx.range(0, 4, 2), ctx.range(10, 14, 2));
    /// let sums = a.zip_partitions_with(&b, 100, |k, xs, ys| vec![k + xs.sum::<i64>() + ys.sum::<i64>()])?;
    /// assert_eq!(sums.collect()?, vec![100 + 1 + 21, 100 + 5 + 25]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn zip_partitions_with<U: Data, S: Data, V: Data, I, F>(
        &self,
        other: &Rdd<U>,
        state: S,
        f: F,
    ) -> Result<Rdd<V>>
    where
        F: Fn(&S, PartIter<T>, PartIter<U>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = V> + 'static,
        I::IntoIter: 'static,
    {
        self.zip_partitions_by(other, With::new(state, f))
    }

    #[track_caller]
    fn zip_partitions_by<U: Data, V: Data, I, G>(&self, other: &Rdd<U>, f: G) -> Result<Rdd<V>>
    where
        G: Func2<PartIter<T>, PartIter<U>, I>,
        I: IntoIterator<Item = V> + 'static,
        I::IntoIter: 'static,
    {
        self.same_partition_count(other)?;
        let meta = NodeMeta::new(&*self.sc, "zip_partitions");
        Ok(Rdd::from_node(
            self.sc.clone(),
            ZipPartitionsNode {
                meta,
                left: self.node.clone(),
                right: other.node.clone(),
                partitions: self.num_partitions(),
                f: Arc::new(f),
                _out: PhantomData,
            },
        ))
    }

    /// Zips need partition `i` on both sides.
    fn same_partition_count<U: Data>(&self, other: &Rdd<U>) -> Result<()> {
        if self.num_partitions() == other.num_partitions() {
            return Ok(());
        }
        Err(Error::ZipMismatch(format!(
            "{} has {} partitions, {} has {}",
            self.node.meta(),
            self.num_partitions(),
            other.node.meta(),
            other.num_partitions()
        )))
    }

    /// Every pair `(a, b)` with `a` from this RDD and `b` from `other`.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let c = ctx.range(0, 2, 1).cartesian(&ctx.parallelize(vec!['x', 'y'], 1)).collect()?;
    /// assert_eq!(c, vec![(0, 'x'), (0, 'y'), (1, 'x'), (1, 'y')]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cartesian<U: Data>(&self, other: &Rdd<U>) -> Rdd<(T, U)> {
        let meta = NodeMeta::new(&*self.sc, "cartesian");
        Rdd::from_node(
            self.sc.clone(),
            CartesianNode {
                meta,
                left: self.node.clone(),
                right: other.node.clone(),
                partitions: self.num_partitions() * other.num_partitions(),
            },
        )
    }

    /// A random sample: each element kept with probability `fraction` (without
    /// replacement), or repeated a Poisson(`fraction`) number of times (with replacement).
    /// The same seed gives the same sample.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.range(0, 1000, 4).sample(false, 0.1, 42).count()?;
    /// assert!(s > 50 && s < 150);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn sample(&self, with_replacement: bool, fraction: f64, seed: u64) -> Rdd<T> {
        let fraction = if fraction.is_finite() {
            fraction.max(0.0)
        } else {
            0.0
        };
        self.with_partition_fn(
            "sample",
            SampleFn {
                with_replacement,
                fraction,
                seed,
            },
            true,
        )
    }

    /// Fewer partitions without a shuffle: neighbouring partitions are concatenated.
    /// Asking for more partitions than there are keeps the current number (use
    /// [`Rdd::repartition`] to grow).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let c = ctx.range(0, 10, 5).coalesce(2);
    /// assert_eq!(c.num_partitions(), 2);
    /// assert_eq!(c.collect()?, (0..10).collect::<Vec<_>>());
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn coalesce(&self, partitions: usize) -> Rdd<T> {
        let partitions = partitions.clamp(1, self.num_partitions().max(1));
        let meta = NodeMeta::new(&*self.sc, "coalesce");
        Rdd::from_node(
            self.sc.clone(),
            CoalescedNode {
                meta,
                parent: self.node.clone(),
                partitions,
            },
        )
    }

    /// Exactly `partitions` partitions of about equal size, through a shuffle.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.range(0, 100, 1).repartition(4);
    /// assert_eq!(r.num_partitions(), 4);
    /// assert_eq!(r.count()?, 100);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn repartition(&self, partitions: usize) -> Rdd<T> {
        self.map_partitions_with_index(|index, it| {
            it.enumerate().map(move |(i, x)| ((index, i), x))
        })
        .partition_by(partitions.max(1))
        .values()
    }

    /// The distinct elements.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut d = ctx.parallelize(vec![1, 2, 1, 3, 2], 2).distinct().collect()?;
    /// d.sort();
    /// assert_eq!(d, vec![1, 2, 3]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn distinct(&self) -> Rdd<T>
    where
        T: Key,
    {
        self.distinct_n(self.default_shuffle_partitions())
    }

    /// [`Rdd::distinct`] into `parts` (a partition count or a partitioner of elements).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let d = ctx.parallelize(vec![3, 1, 3, 2, 1], 2).distinct_n(3);
    /// assert_eq!(d.num_partitions(), 3);
    /// let mut v = d.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![1, 2, 3]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn distinct_n(&self, parts: impl Into<Partitioning<T>>) -> Rdd<T>
    where
        T: Key,
    {
        self.map(|x| (x, ()))
            .reduce_by_key_n(|a, _| a, parts)
            .keys()
    }

    /// The elements present in both RDDs, without duplicates.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut i = ctx.parallelize(vec![1, 2, 3, 3], 2).intersection(&ctx.parallelize(vec![3, 4, 1], 1)).collect()?;
    /// i.sort();
    /// assert_eq!(i, vec![1, 3]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn intersection(&self, other: &Rdd<T>) -> Rdd<T>
    where
        T: Key,
    {
        self.intersection_n(other, self.num_partitions().max(other.num_partitions()))
    }

    /// [`Rdd::intersection`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let both = ctx.range(0, 10, 2).intersection_n(&ctx.range(5, 15, 2), 4);
    /// assert_eq!(both.num_partitions(), 4);
    /// let mut v = both.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![5, 6, 7, 8, 9]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn intersection_n(&self, other: &Rdd<T>, parts: impl Into<Partitioning<T>>) -> Rdd<T>
    where
        T: Key,
    {
        self.map(|x| (x, ()))
            .cogroup_n(&other.map(|x| (x, ())), parts)
            .filter(|(_, (a, b))| !a.is_empty() && !b.is_empty())
            .keys()
    }

    /// The elements of this RDD that are not in `other` (duplicates of this side kept).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut s = ctx.parallelize(vec![1, 2, 2, 3], 2).subtract(&ctx.parallelize(vec![3], 1)).collect()?;
    /// s.sort();
    /// assert_eq!(s, vec![1, 2, 2]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn subtract(&self, other: &Rdd<T>) -> Rdd<T>
    where
        T: Key,
    {
        self.subtract_n(other, self.num_partitions().max(other.num_partitions()))
    }

    /// [`Rdd::subtract`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let left = ctx.range(0, 6, 2).subtract_n(&ctx.parallelize(vec![1, 4], 1), 3);
    /// assert_eq!(left.num_partitions(), 3);
    /// let mut v = left.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![0, 2, 3, 5]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn subtract_n(&self, other: &Rdd<T>, parts: impl Into<Partitioning<T>>) -> Rdd<T>
    where
        T: Key,
    {
        self.map(|x| (x, ()))
            .cogroup_n(&other.map(|x| (x, ())), parts)
            .flat_map(|(k, (a, b))| {
                let n = if b.is_empty() { a.len() } else { 0 };
                std::iter::repeat_n(k, n)
            })
    }

    /// Sort by a key computed from each element (runs a sampling job to choose ranges).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.parallelize(vec![3, 1, 2], 2).sort_by(|x: &i32| -x, true, 2)?.collect()?;
    /// assert_eq!(s, vec![3, 2, 1]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn sort_by<K: Key + Ord, F>(
        &self,
        f: F,
        ascending: bool,
        partitions: usize,
    ) -> Result<Rdd<T>>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        Ok(self
            .key_by(f)
            .sort_by_key_n(ascending, partitions)?
            .values())
    }

    /// Group elements by a key computed from each.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut g = ctx.range(0, 6, 2).group_by(|x: &i64| x % 2).collect()?;
    /// g.sort();
    /// assert_eq!(g.len(), 2);
    /// let mut odd = g[1].1.clone();
    /// odd.sort();
    /// assert_eq!(odd, vec![1, 3, 5]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn group_by<K: Key, F>(&self, f: F) -> Rdd<(K, Vec<T>)>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.key_by(f).group_by_key()
    }

    /// [`Rdd::group_by`] into `parts` (a partition count or a partitioner of keys).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let by_parity = ctx.range(0, 6, 2).group_by_n(|x| x % 2, 5);
    /// assert_eq!(by_parity.num_partitions(), 5);
    /// assert_eq!(by_parity.count()?, 2);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn group_by_n<K: Key, F>(&self, f: F, parts: impl Into<Partitioning<K>>) -> Rdd<(K, Vec<T>)>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.key_by(f).group_by_key_n(parts)
    }

    /// The default partition count of shuffles on this RDD: its own partition count.
    pub(crate) fn default_shuffle_partitions(&self) -> usize {
        self.num_partitions().max(1)
    }
}
