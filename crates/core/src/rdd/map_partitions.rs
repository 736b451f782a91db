//! The one narrow one-to-one node: a partition of the child is a function of the same
//! partition of the parent. map, filter, flat_map, map_partitions, glom, sample,
//! map_values, key_by … are all this node with a different [`PartitionFn`].

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, compute};
use crate::data::Data;
use crate::func::{Func, Func2};
use crate::task::TaskContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// A function from one partition's iterator to another.
pub trait PartitionFn<T, U>: Serialize + DeserializeOwned + Send + Sync + Sized + 'static {
    /// Transform partition `index`.
    fn apply(this: Arc<Self>, index: usize, input: PartIter<T>) -> PartIter<U>;
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "F: Serialize", deserialize = "F: DeserializeOwned"))]
pub(crate) struct MapPartitionsNode<T: 'static, U, F> {
    pub meta: NodeMeta,
    pub parent: NodeRef<T>,
    /// Partition count, fixed at construction: asking the parent would recurse through the
    /// whole pipeline.
    pub partitions: usize,
    pub f: Arc<F>,
    /// Keys are unchanged (map_values, filter …), so the parent's partitioner still holds.
    pub preserves_partitioning: bool,
    #[serde(skip)]
    pub _out: PhantomData<fn() -> U>,
}

impl<T: Data, U: Data, F: PartitionFn<T, U>> RddBase for MapPartitionsNode<T, U, F> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Narrow(base_of(&self.parent))]
    }
    fn preferred_locations(&self, p: usize) -> Vec<String> {
        super::pipeline_source(base_of(&self.parent)).preferred_locations(p)
    }
    fn one_to_one_parent(&self) -> Option<(Arc<dyn RddBase>, bool)> {
        Some((base_of(&self.parent), self.preserves_partitioning))
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        if self.preserves_partitioning {
            super::kept_partitioner(base_of(&self.parent))
        } else {
            None
        }
    }
}

impl<T: Data, U: Data, F: PartitionFn<T, U>> RddNode<U> for MapPartitionsNode<T, U, F> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<U> {
        let input = compute(&self.parent, split, tc);
        F::apply(self.f.clone(), split, input)
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MapFn<G>(pub G);
impl<T: 'static, U: 'static, G: Func<T, U>> PartitionFn<T, U> for MapFn<G> {
    fn apply(this: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<U> {
        input.map_batched(move |x| this.0.call(x))
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FilterFn<G>(pub G);
impl<T: 'static, G: for<'a> Func<&'a T, bool>> PartitionFn<T, T> for FilterFn<G> {
    fn apply(this: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<T> {
        input.filter_batched(move |x| this.0.call(x))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: DeserializeOwned"))]
pub(crate) struct FlatMapFn<G, I>(pub G, #[serde(skip)] pub PhantomData<fn() -> I>);
impl<T: 'static, U: 'static, I, G> PartitionFn<T, U> for FlatMapFn<G, I>
where
    G: Func<T, I>,
    I: IntoIterator<Item = U> + 'static,
    I::IntoIter: 'static,
{
    fn apply(this: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<U> {
        input.flat_map_batched(move |x| this.0.call(x))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: DeserializeOwned"))]
pub(crate) struct PartsFn<G, I>(pub G, #[serde(skip)] pub PhantomData<fn() -> I>);
impl<T: 'static, U: 'static, I, G> PartitionFn<T, U> for PartsFn<G, I>
where
    G: Func<PartIter<T>, I>,
    I: IntoIterator<Item = U> + 'static,
    I::IntoIter: 'static,
{
    fn apply(this: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<U> {
        PartIter::new(this.0.call(input).into_iter())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: DeserializeOwned"))]
pub(crate) struct IndexedPartsFn<G, I>(pub G, #[serde(skip)] pub PhantomData<fn() -> I>);
impl<T: 'static, U: 'static, I, G> PartitionFn<T, U> for IndexedPartsFn<G, I>
where
    G: Func2<usize, PartIter<T>, I>,
    I: IntoIterator<Item = U> + 'static,
    I::IntoIter: 'static,
{
    fn apply(this: Arc<Self>, index: usize, input: PartIter<T>) -> PartIter<U> {
        PartIter::new(this.0.call(index, input).into_iter())
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct GlomFn;
impl<T: 'static> PartitionFn<T, Vec<T>> for GlomFn {
    fn apply(_: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<Vec<T>> {
        PartIter::new(std::iter::once(super::collect_vec(input)))
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MapValuesFn<G>(pub G);
impl<K: 'static, V: 'static, W: 'static, G: Func<V, W>> PartitionFn<(K, V), (K, W)>
    for MapValuesFn<G>
{
    fn apply(this: Arc<Self>, _: usize, input: PartIter<(K, V)>) -> PartIter<(K, W)> {
        input.map_batched(move |(k, v)| (k, this.0.call(v)))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: DeserializeOwned"))]
pub(crate) struct FlatMapValuesFn<G, I>(pub G, #[serde(skip)] pub PhantomData<fn() -> I>);
impl<K, V, W, I, G> PartitionFn<(K, V), (K, W)> for FlatMapValuesFn<G, I>
where
    K: Clone + 'static,
    V: 'static,
    W: 'static,
    G: Func<V, I>,
    I: IntoIterator<Item = W> + 'static,
    I::IntoIter: 'static,
{
    fn apply(this: Arc<Self>, _: usize, input: PartIter<(K, V)>) -> PartIter<(K, W)> {
        PartIter::new(
            input.flat_map(move |(k, v)| this.0.call(v).into_iter().map(move |w| (k.clone(), w))),
        )
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct KeyByFn<G>(pub G);
impl<T: 'static, K: 'static, G: for<'a> Func<&'a T, K>> PartitionFn<T, (K, T)> for KeyByFn<G> {
    fn apply(this: Arc<Self>, _: usize, input: PartIter<T>) -> PartIter<(K, T)> {
        input.map_batched(move |x| (this.0.call(&x), x))
    }
}

/// Bernoulli (without replacement) or Poisson (with replacement) sampling, seeded per
/// partition so that re-computing a partition yields the same sample.
#[derive(Serialize, Deserialize)]
pub(crate) struct SampleFn {
    pub with_replacement: bool,
    pub fraction: f64,
    pub seed: u64,
}

/// SplitMix64: tiny, fast, deterministic; good enough for sampling.
pub(crate) struct SplitMix64(u64);
impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Poisson-distributed count with mean `lambda` (Knuth; fine for small means).
    pub fn poisson(&mut self, lambda: f64) -> usize {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.next_f64();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

impl<T: Clone + 'static> PartitionFn<T, T> for SampleFn {
    fn apply(this: Arc<Self>, index: usize, input: PartIter<T>) -> PartIter<T> {
        let mut rng =
            SplitMix64::new(this.seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        if this.with_replacement {
            PartIter::new(input.flat_map(move |x| {
                let n = rng.poisson(this.fraction);
                std::iter::repeat_n(x, n)
            }))
        } else {
            PartIter::new(input.filter(move |_| rng.next_f64() < this.fraction))
        }
    }
}
