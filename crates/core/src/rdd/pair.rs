//! Operations on RDDs of `(K, V)` pairs: aggregation by key, partitioning, joins, sorting.

use super::cogroup::{CoGroupedNode, Side};
use super::map_partitions::{FlatMapValuesFn, MapValuesFn};
use super::shuffled::{KeySort, NoSort, ShuffleDep, ShuffleGuard, ShuffledNode, SortByKey};
use super::{NodeMeta, Rdd};
use crate::aggregator::{
    AggregateAgg, Aggregator, CombineAgg, FoldAgg, GroupAgg, NoAgg, ReduceAgg,
};
use crate::data::{Data, Key};
use crate::error::Result;
use crate::func::{Fun, With};
use crate::partitioner::{Partitioner, Partitioning, RangePartitioner};
use crate::ship::SerArc;
use std::marker::PhantomData;

/// What `cogroup` yields per key: the values from each side.
pub type CoGrouped<K, V, W> = (K, (Vec<V>, Vec<W>));
/// What `cogroup3` yields: a key and its values in each of the three RDDs.
pub type CoGrouped3<K, V, W, X> = (K, (Vec<V>, Vec<W>, Vec<X>));
/// What `cogroup4` yields: a key and its values in each of the four RDDs.
pub type CoGrouped4<K, V, W, X, Y> = (K, (Vec<V>, Vec<W>, Vec<X>, Vec<Y>));
/// What `full_outer_join` yields: either side may be missing.
pub type FullOuter<K, V, W> = (K, (Option<V>, Option<W>));

impl<K: Key, V: Data> Rdd<(K, V)> {
    #[track_caller]
    pub(crate) fn shuffle_into<C: Data, A: Aggregator<K, V, C>, S: KeySort<K, C>>(
        &self,
        op: &'static str,
        aggregator: A,
        partitioner: SerArc<dyn Partitioner<K>>,
        sort: S,
    ) -> Rdd<(K, C)> {
        let shuffle_id = self.sc.new_shuffle_id();
        let partitions = partitioner.num_partitions();
        let dep = ShuffleDep {
            shuffle_id,
            parent: self.node.clone(),
            partitioner: partitioner.clone(),
            aggregator: aggregator.clone(),
            _types: PhantomData,
        };
        let meta = NodeMeta::new(&*self.sc, op);
        Rdd::from_node(
            self.sc.clone(),
            ShuffledNode {
                meta,
                shuffle_id,
                maps: self.num_partitions(),
                partitions,
                aggregator,
                partitioner: Some(partitioner),
                sort,
                dep: Some(SerArc::new(dep)),
                _guard: Some(ShuffleGuard::new(&self.sc, shuffle_id)),
                _types: PhantomData,
            },
        )
    }

    /// Shuffle into `parts` (a count: hash partitioning; or a partitioner).
    #[track_caller]
    fn shuffle_by<C: Data, A: Aggregator<K, V, C>>(
        &self,
        op: &'static str,
        aggregator: A,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, C)> {
        self.shuffle_into(op, aggregator, parts.into().partitioner(), NoSort)
    }

    /// The general aggregation by key: `create` turns a key's first value into a combiner,
    /// `merge_value` folds in further values (map side), `merge_combiners` merges combiners
    /// from different map outputs (reduce side). Result in `partitions` hash partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let pairs = ctx.parallelize(vec![('a', 1), ('b', 5), ('a', 3)], 2);
    /// // (sum, count) per key
    /// let mut avg = pairs
    ///     .combine_by_key(|v| (v, 1), |(s, n), v| (s + v, n + 1), |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2), 2)
    ///     .collect()?;
    /// avg.sort();
    /// assert_eq!(avg, vec![('a', (4, 2)), ('b', (5, 1))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn combine_by_key<C: Data, Cr, Mv, Mc>(
        &self,
        create: Cr,
        merge_value: Mv,
        merge_combiners: Mc,
        partitions: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, C)>
    where
        Cr: Fn(V) -> C + Clone + Send + Sync + 'static,
        Mv: Fn(C, V) -> C + Clone + Send + Sync + 'static,
        Mc: Fn(C, C) -> C + Clone + Send + Sync + 'static,
    {
        let agg = CombineAgg {
            create: Fun::new(create),
            merge_value: Fun::new(merge_value),
            merge_combiners: Fun::new(merge_combiners),
        };
        self.shuffle_by("combine_by_key", agg, partitions)
    }

    /// Merge the values of each key with an associative function, combining on the map
    /// side first. Keeps the current partition count.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut c = ctx
    ///     .parallelize(vec![('a', 1), ('b', 1), ('a', 1)], 2)
    ///     .reduce_by_key(|x, y| x + y)
    ///     .collect()?;
    /// c.sort();
    /// assert_eq!(c, vec![('a', 2), ('b', 1)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn reduce_by_key<F>(&self, f: F) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        self.reduce_by_key_n(f, self.default_shuffle_partitions())
    }

    /// [`Rdd::reduce_by_key`] into `partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let r = ctx.parallelize(vec![(1, 1), (2, 2), (1, 3)], 3).reduce_by_key_n(|a, b| a + b, 1);
    /// assert_eq!(r.num_partitions(), 1);
    /// assert_eq!(r.lookup(&1)?, vec![4]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn reduce_by_key_n<F>(&self, f: F, partitions: impl Into<Partitioning<K>>) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        self.shuffle_by("reduce_by_key", ReduceAgg(Fun::new(f)), partitions)
    }

    /// Like [`Rdd::reduce_by_key`] with a neutral `zero` value folded in once per key and
    /// map output.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let mut m = ctx.parallelize(vec![('a', 3), ('a', 9), ('b', 1)], 1).fold_by_key(0, |x, y| x.max(y)).collect()?;
    /// m.sort();
    /// assert_eq!(m, vec![('a', 9), ('b', 1)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn fold_by_key<F>(&self, zero: V, f: F) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        self.fold_by_key_n(zero, f, self.default_shuffle_partitions())
    }

    /// [`Rdd::fold_by_key`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let sums = ctx.parallelize(vec![('a', 1), ('a', 2), ('b', 5)], 2).fold_by_key_n(0, |a, b| a + b, 3);
    /// assert_eq!(sums.num_partitions(), 3);
    /// let mut v = sums.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![('a', 3), ('b', 5)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn fold_by_key_n<F>(&self, zero: V, f: F, parts: impl Into<Partitioning<K>>) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        let agg = FoldAgg {
            zero,
            f: Fun::new(f),
        };
        self.shuffle_by("fold_by_key", agg, parts)
    }

    /// Aggregate the values of each key into a different type: `seq` folds a value into the
    /// accumulator (starting at `zero`), `comb` merges accumulators.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let lens = ctx
    ///     .parallelize(vec![('a', "xy".to_string()), ('a', "z".to_string())], 2)
    ///     .aggregate_by_key(0usize, |n, s: String| n + s.len(), |a, b| a + b)
    ///     .collect()?;
    /// assert_eq!(lens, vec![('a', 3)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn aggregate_by_key<U: Data, S, C>(&self, zero: U, seq: S, comb: C) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + Clone + Send + Sync + 'static,
        C: Fn(U, U) -> U + Clone + Send + Sync + 'static,
    {
        self.aggregate_by_key_n(zero, seq, comb, self.default_shuffle_partitions())
    }

    /// [`Rdd::aggregate_by_key`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let n = ctx
    ///     .parallelize(vec![('a', 1), ('a', 2)], 2)
    ///     .aggregate_by_key_n(0u32, |n, _| n + 1, |a, b| a + b, 4);
    /// assert_eq!(n.num_partitions(), 4);
    /// assert_eq!(n.collect()?, vec![('a', 2)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn aggregate_by_key_n<U: Data, S, C>(
        &self,
        zero: U,
        seq: S,
        comb: C,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + Clone + Send + Sync + 'static,
        C: Fn(U, U) -> U + Clone + Send + Sync + 'static,
    {
        let agg = AggregateAgg {
            zero,
            seq: Fun::new(seq),
            comb: Fun::new(comb),
        };
        self.shuffle_by("aggregate_by_key", agg, parts)
    }

    /// All values of each key. Prefer [`Rdd::reduce_by_key`] when a reduction is what
    /// you want: it moves far less data.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let g = ctx.parallelize(vec![(1, 'a'), (1, 'b')], 2).group_by_key().collect()?;
    /// assert_eq!(g.len(), 1);
    /// let mut vs = g[0].1.clone();
    /// vs.sort();
    /// assert_eq!(vs, vec!['a', 'b']);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn group_by_key(&self) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_n(self.default_shuffle_partitions())
    }

    /// [`Rdd::group_by_key`] into `partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![(1, 2)], 1).group_by_key_n(3).num_partitions(), 3);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn group_by_key_n(&self, partitions: impl Into<Partitioning<K>>) -> Rdd<(K, Vec<V>)> {
        self.shuffle_by("group_by_key", GroupAgg, partitions)
    }

    /// Hash-partition the pairs into `partitions` partitions (no aggregation). Later
    /// joins with RDDs partitioned the same way need no shuffle.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let p = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (3, 'c')], 1).partition_by(2);
    /// assert_eq!(p.num_partitions(), 2);
    /// assert_eq!(p.count()?, 3);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn partition_by(&self, partitions: impl Into<Partitioning<K>>) -> Rdd<(K, V)> {
        self.shuffle_by("partition_by", NoAgg::default(), partitions)
    }

    /// Apply `f` to each value, keeping keys (and partitioning).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.parallelize(vec![('a', 1)], 1).map_values(|v| v + 1).collect()?;
    /// assert_eq!(v, vec![('a', 2)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_values<W: Data, F>(&self, f: F) -> Rdd<(K, W)>
    where
        F: Fn(V) -> W + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("map_values", MapValuesFn(Fun::new(f)), true)
    }

    /// [`Rdd::map_values`] with explicit state.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.parallelize(vec![('a', 1.0)], 1).map_values_with(0.5, |d, v| v * d).collect()?;
    /// assert_eq!(v, vec![('a', 0.5)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn map_values_with<S: Data, W: Data, F>(&self, state: S, f: F) -> Rdd<(K, W)>
    where
        F: Fn(&S, V) -> W + Clone + Send + Sync + 'static,
    {
        self.with_partition_fn("map_values", MapValuesFn(With::new(state, f)), true)
    }

    /// Apply `f` to each value and emit one pair per produced item, keeping keys.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let v = ctx.parallelize(vec![('a', 2)], 1).flat_map_values(|n| 0..n).collect()?;
    /// assert_eq!(v, vec![('a', 0), ('a', 1)]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn flat_map_values<W: Data, I, F>(&self, f: F) -> Rdd<(K, W)>
    where
        F: Fn(V) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator<Item = W> + 'static,
        I::IntoIter: 'static,
    {
        self.with_partition_fn(
            "flat_map_values",
            FlatMapValuesFn(Fun::new(f), PhantomData),
            true,
        )
    }

    /// The keys.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![(1, 'a')], 1).keys().collect()?, vec![1]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn keys(&self) -> Rdd<K> {
        self.map(|(k, _)| k)
    }

    /// The values.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![(1, 'a')], 1).values().collect()?, vec!['a']);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn values(&self) -> Rdd<V> {
        self.map(|(_, v)| v)
    }

    /// For each key in either RDD, its values on each side. A side already hash-partitioned
    /// like the result is not shuffled again.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let mut g = a.cogroup(&b).collect()?;
    /// g.sort();
    /// assert_eq!(g, vec![(1, (vec!['a'], vec![10])), (2, (vec!['b'], vec![]))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cogroup<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<CoGrouped<K, V, W>> {
        // Like Spark's default partitioner: an input's own, else hash over the larger count.
        let partitioner = super::partitioner_of::<K>(&*self.node)
            .or_else(|| super::partitioner_of::<K>(&*other.node))
            .map_or_else(
                || Partitioning::Count(self.num_partitions().max(other.num_partitions())),
                Partitioning::By,
            );
        self.cogroup_n(other, partitioner)
    }

    /// [`Rdd::cogroup`] into `parts` (a partition count or a partitioner); an input
    /// already partitioned that way is read without a shuffle.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let g = a.cogroup_n(&b, 5);
    /// assert_eq!(g.num_partitions(), 5);
    /// assert_eq!(g.count()?, 2);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cogroup_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<CoGrouped<K, V, W>> {
        let partitioner = parts.into().partitioner();
        let sc = &self.sc;
        let left = Side::new(self.node.clone(), &partitioner, sc);
        let right = Side::new(other.node.clone(), &partitioner, sc);
        let meta = NodeMeta::new(&**sc, "cogroup");
        Rdd::from_node(
            sc.clone(),
            CoGroupedNode {
                meta,
                left,
                right,
                partitioner,
            },
        )
    }

    /// [`Rdd::cogroup`] of three RDDs: for each key in any of them, its values in each.
    /// Costs what a two-way cogroup does per input: each side is shuffled at most once
    /// (not at all when already partitioned like the result).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let c = ctx.parallelize(vec![(3, 'c')], 1);
    /// let mut g = a.cogroup3(&b, &c).collect()?;
    /// g.sort();
    /// assert_eq!(g, vec![
    ///     (1, (vec!['a'], vec![10], vec![])),
    ///     (2, (vec!['b'], vec![], vec![])),
    ///     (3, (vec![], vec![], vec!['c'])),
    /// ]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cogroup3<W: Data, X: Data>(
        &self,
        b: &Rdd<(K, W)>,
        c: &Rdd<(K, X)>,
    ) -> Rdd<CoGrouped3<K, V, W, X>> {
        // The two-way result is partitioned like the three-way one: only `c` shuffles.
        self.cogroup(b).cogroup(c).map_values(|(mut ab, xs)| {
            let (vs, ws) = ab.pop().unwrap_or_default();
            (vs, ws, xs)
        })
    }

    /// [`Rdd::cogroup`] of four RDDs (see [`Rdd::cogroup3`]).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10), (1, 11)], 2);
    /// let c = ctx.parallelize(vec![(2, 'c')], 1);
    /// let d = ctx.parallelize(vec![(1, 1.5)], 1);
    /// let mut g = a.cogroup4(&b, &c, &d).collect()?;
    /// g.sort_by_key(|(k, _)| *k);
    /// assert_eq!(g, vec![
    ///     (1, (vec!['a'], vec![10, 11], vec![], vec![1.5])),
    ///     (2, (vec![], vec![], vec!['c'], vec![])),
    /// ]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cogroup4<W: Data, X: Data, Y: Data>(
        &self,
        b: &Rdd<(K, W)>,
        c: &Rdd<(K, X)>,
        d: &Rdd<(K, Y)>,
    ) -> Rdd<CoGrouped4<K, V, W, X, Y>> {
        self.cogroup3(b, c).cogroup(d).map_values(|(mut abc, ys)| {
            let (vs, ws, xs) = abc.pop().unwrap_or_default();
            (vs, ws, xs, ys)
        })
    }

    /// Inner join: every `(k, (v, w))` with `(k, v)` here and `(k, w)` in `other`.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'x'), (2, 'y')], 2);
    /// let b = ctx.parallelize(vec![(1, 10), (1, 11), (3, 30)], 2);
    /// let mut j = a.join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, ('x', 10)), (1, ('x', 11))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, W))> {
        Self::pairs_of(self.cogroup(other))
    }

    /// [`Rdd::join`] into `parts` (a partition count or a partitioner). When both sides are
    /// already partitioned that way (e.g. both `partition_by` the same partitioner), neither
    /// is shuffled: the join is a narrow operation of their stages.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'x'), (2, 'y')], 2).partition_by(4);
    /// let b = ctx.parallelize(vec![(1, 10), (2, 20)], 3).partition_by(4);
    /// let j = a.join_n(&b, 4); // co-partitioned: no third shuffle
    /// let mut v = j.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![(1, ('x', 10)), (2, ('y', 20))]);
    /// assert_eq!(spate::plan::plan_stages(&j.base()).stages.len(), 3);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn join_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, (V, W))> {
        Self::pairs_of(self.cogroup_n(other, parts))
    }

    /// The inner-join pairs of a cogroup.
    #[track_caller]
    fn pairs_of<W: Data>(grouped: Rdd<CoGrouped<K, V, W>>) -> Rdd<(K, (V, W))> {
        grouped.flat_map_values(|(vs, ws)| {
            let mut out = Vec::with_capacity(vs.len() * ws.len());
            for v in &vs {
                for w in &ws {
                    out.push((v.clone(), w.clone()));
                }
            }
            out
        })
    }

    /// Left outer join: every left pair, with `None` where the key is missing on the right.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 1);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let mut j = a.left_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, ('a', Some(10))), (2, ('b', None))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn left_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, Option<W>))> {
        Self::left_outer_join_of(self.cogroup(other))
    }

    /// [`Rdd::left_outer_join`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 1);
    /// let j = a.left_outer_join_n(&ctx.parallelize(vec![(1, 10)], 1), 3);
    /// assert_eq!(j.num_partitions(), 3);
    /// let mut v = j.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![(1, ('a', Some(10))), (2, ('b', None))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn left_outer_join_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, (V, Option<W>))> {
        Self::left_outer_join_of(self.cogroup_n(other, parts))
    }

    #[track_caller]
    fn left_outer_join_of<W: Data>(grouped: Rdd<CoGrouped<K, V, W>>) -> Rdd<(K, (V, Option<W>))> {
        grouped.flat_map_values(|(vs, ws)| {
            let mut out = Vec::new();
            for v in &vs {
                if ws.is_empty() {
                    out.push((v.clone(), None));
                }
                for w in &ws {
                    out.push((v.clone(), Some(w.clone())));
                }
            }
            out
        })
    }

    /// Right outer join: every right pair, with `None` where the key is missing on the left.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10), (2, 20)], 1);
    /// let mut j = a.right_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, (Some('a'), 10)), (2, (None, 20))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn right_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Option<V>, W))> {
        Self::right_outer_join_of(self.cogroup(other))
    }

    /// [`Rdd::right_outer_join`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let j = a.right_outer_join_n(&ctx.parallelize(vec![(1, 10), (3, 30)], 1), 2);
    /// assert_eq!(j.num_partitions(), 2);
    /// let mut v = j.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![(1, (Some('a'), 10)), (3, (None, 30))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn right_outer_join_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<(K, (Option<V>, W))> {
        Self::right_outer_join_of(self.cogroup_n(other, parts))
    }

    #[track_caller]
    fn right_outer_join_of<W: Data>(grouped: Rdd<CoGrouped<K, V, W>>) -> Rdd<(K, (Option<V>, W))> {
        grouped.flat_map_values(|(vs, ws)| {
            let mut out = Vec::new();
            for w in &ws {
                if vs.is_empty() {
                    out.push((None, w.clone()));
                }
                for v in &vs {
                    out.push((Some(v.clone()), w.clone()));
                }
            }
            out
        })
    }

    /// Full outer join: keys from either side, `None` for a missing side.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(2, 20)], 1);
    /// let mut j = a.full_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, (Some('a'), None)), (2, (None, Some(20)))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn full_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<FullOuter<K, V, W>> {
        Self::full_outer_join_of(self.cogroup(other))
    }

    /// [`Rdd::full_outer_join`] into `parts` (a partition count or a partitioner).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 1);
    /// let j = a.full_outer_join_n(&ctx.parallelize(vec![(2, 20), (3, 30)], 1), 4);
    /// assert_eq!(j.num_partitions(), 4);
    /// let mut v = j.collect()?;
    /// v.sort();
    /// assert_eq!(v, vec![(1, (Some('a'), None)), (2, (Some('b'), Some(20))), (3, (None, Some(30)))]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn full_outer_join_n<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        parts: impl Into<Partitioning<K>>,
    ) -> Rdd<FullOuter<K, V, W>> {
        Self::full_outer_join_of(self.cogroup_n(other, parts))
    }

    #[track_caller]
    fn full_outer_join_of<W: Data>(grouped: Rdd<CoGrouped<K, V, W>>) -> Rdd<FullOuter<K, V, W>> {
        grouped.flat_map_values(|(vs, ws)| {
            let mut out = Vec::new();
            match (vs.is_empty(), ws.is_empty()) {
                (_, true) => out.extend(vs.iter().map(|v| (Some(v.clone()), None))),
                (true, false) => out.extend(ws.iter().map(|w| (None, Some(w.clone())))),
                (false, false) => {
                    for v in &vs {
                        for w in &ws {
                            out.push((Some(v.clone()), Some(w.clone())));
                        }
                    }
                }
            }
            out
        })
    }
}

impl<K: Key + Ord, V: Data> Rdd<(K, V)> {
    /// Sort by key into range partitions (a sampling job picks the ranges first), so that
    /// `collect` returns all pairs in key order. Keeps the partition count. As in Spark,
    /// the order of pairs with equal keys is unspecified (the sort is not stable), though
    /// the same input gives the same output.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.parallelize(vec![(3, 'c'), (1, 'a'), (2, 'b')], 2).sort_by_key(true)?.collect()?;
    /// assert_eq!(s, vec![(1, 'a'), (2, 'b'), (3, 'c')]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn sort_by_key(&self, ascending: bool) -> Result<Rdd<(K, V)>> {
        self.sort_by_key_n(ascending, self.default_shuffle_partitions())
    }

    /// [`Rdd::sort_by_key`] into (at most) `partitions` partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.range(0, 100, 4).map(|x| (x % 10, x)).sort_by_key_n(false, 3)?;
    /// let keys: Vec<i64> = s.keys().collect()?;
    /// assert!(keys.windows(2).all(|w| w[0] >= w[1]));
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn sort_by_key_n(&self, ascending: bool, partitions: usize) -> Result<Rdd<(K, V)>> {
        let partitions = partitions.max(1);
        // Like Spark: about 20 sampled keys per output partition, spread over the inputs.
        let per_input = (20 * partitions)
            .div_ceil(self.num_partitions().max(1))
            .max(1);
        let samples: Vec<Vec<K>> = self.run_job(
            With::new(per_input, |n: &usize, it: super::PartIter<(K, V)>| {
                reservoir(it.map(|(k, _)| k), *n)
            }),
            (0..self.num_partitions()).collect(),
        )?;
        let sample: Vec<K> = samples.into_iter().flatten().collect();
        let partitioner = RangePartitioner::from_sample(sample, partitions, ascending);
        Ok(self.shuffle_into(
            "sort_by_key",
            NoAgg::default(),
            SerArc::<dyn Partitioner<K>>::new(partitioner),
            SortByKey { ascending },
        ))
    }
}

/// Reservoir sample of up to `n` items, deterministic (fixed seed). Li's "Algorithm L":
/// after the first `n` items it draws how many items to skip rather than a random number
/// per item, so sampling costs next to nothing beside computing the items.
fn reservoir<T>(it: impl Iterator<Item = T>, n: usize) -> Vec<T> {
    reservoir_seeded(it, n, 0x5eed)
}

fn reservoir_seeded<T>(it: impl Iterator<Item = T>, n: usize, seed: u64) -> Vec<T> {
    use super::map_partitions::SplitMix64;
    let mut out: Vec<T> = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    // Uniform in (0, 1]: the logarithms below must stay finite.
    let unit = |rng: &mut SplitMix64| 1.0 - rng.next_f64();
    let k = n as f64;
    // Items to pass over before the next replacement; a huge (or infinite) draw
    // saturates, and the sample is final.
    let draw = |rng: &mut SplitMix64, w: &mut f64| -> usize {
        *w *= (unit(rng).ln() / k).exp();
        (unit(rng).ln() / (1.0 - *w).ln()).floor() as usize
    };
    let (mut rng, mut w, mut skip) = (SplitMix64::new(seed), 1.0f64, 0usize);
    // A fold, not `next` per item: a partition's items come in batches.
    it.for_each(|x| {
        if out.len() < n {
            out.push(x);
            if out.len() == n {
                skip = draw(&mut rng, &mut w);
            }
        } else if skip > 0 {
            skip -= 1;
        } else {
            let slot = (unit(&mut rng) * k) as usize;
            out[slot.min(n - 1)] = x;
            skip = draw(&mut rng, &mut w);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::reservoir_seeded;

    #[test]
    fn reservoir_keeps_short_inputs_whole() {
        assert_eq!(reservoir_seeded(0..5, 10, 1), vec![0, 1, 2, 3, 4]);
        assert_eq!(reservoir_seeded(0..5, 5, 1), vec![0, 1, 2, 3, 4]);
        assert!(reservoir_seeded(0..5, 0, 1).is_empty());
    }

    #[test]
    fn reservoir_samples_every_item_alike() {
        // 4000 samples of 10 out of 200: each item is in about 200 of them (σ ≈ 13.8);
        // a sampler biased to the start or the end of its input (e.g. one that stops
        // replacing, or skips too far) is far outside ±5σ for many items.
        let (items, n, trials) = (200usize, 10usize, 4000u64);
        let mut hits = vec![0u32; items];
        for seed in 0..trials {
            let s = reservoir_seeded(0..items, n, seed);
            assert_eq!(s.len(), n);
            let mut sorted = s.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), n, "items are sampled without replacement");
            for x in s {
                hits[x] += 1;
            }
        }
        let expect = trials as f64 * n as f64 / items as f64;
        let sigma = (expect * (1.0 - n as f64 / items as f64)).sqrt();
        for (item, &h) in hits.iter().enumerate() {
            assert!(
                (h as f64 - expect).abs() < 5.0 * sigma,
                "item {item} sampled {h} times, expected about {expect}"
            );
        }
        let late: u32 = hits[150..].iter().sum();
        let early: u32 = hits[..50].iter().sum();
        // The difference of two sums of 50 items has σ ≈ √100 · σ.
        let bound = (5.0 * 10.0 * sigma) as u32;
        assert!(late.abs_diff(early) < bound, "early {early} late {late}");
    }
}
