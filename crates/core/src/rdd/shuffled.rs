//! Shuffles: [`ShuffleDep`] is the map side (partition, combine, hand blocks to the shuffle
//! service), [`ShuffledNode`] the reduce side (read blocks from every map output, merge,
//! optionally sort).

use super::{Dependency, NodeMeta, PartIter, RddBase, RddNode, ShuffleId};
use crate::aggregator::{Aggregator, CombineMap};
use crate::data::{Data, Key};
use crate::error::{Error, Result};
use crate::partitioner::{HashPartitioner, Partitioner};
use crate::shuffle::{BlockData, MapStatus, ShuffleDependency};
use crate::task::{TaskContext, raise};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// Map side of a shuffle of `(K, V)` records into `(K, C)` blocks.
pub struct ShuffleDep<K, V, C, A> {
    pub(crate) shuffle_id: ShuffleId,
    pub(crate) parent: Arc<dyn RddNode<(K, V)>>,
    pub(crate) partitioner: Arc<dyn Partitioner<K>>,
    pub(crate) aggregator: Arc<A>,
    pub(crate) _types: PhantomData<fn() -> (V, C)>,
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>> ShuffleDependency
    for ShuffleDep<K, V, C, A>
{
    fn shuffle_id(&self) -> ShuffleId {
        self.shuffle_id
    }
    fn rdd(&self) -> Arc<dyn RddBase> {
        self.parent.clone()
    }
    fn num_reduce_partitions(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn run_map_task(&self, map: usize, tc: &TaskContext) -> Result<MapStatus> {
        let n = self.partitioner.num_partitions();
        let records = self.parent.clone().compute(map, tc);
        let mut buckets: Vec<Vec<(K, C)>> = (0..n).map(|_| Vec::new()).collect();
        let agg = &*self.aggregator;
        if A::COMBINES {
            // Map-side combine into one table, then distribute: one hash probe per record
            // and a cache-friendly table regardless of the reduce partition count.
            let mut combined = CombineMap::default();
            records.for_each(|(k, v)| combined.insert_value(agg, k, v));
            for (k, c) in combined.into_pairs() {
                let r = self.partitioner.partition(&k);
                buckets[r].push((k, c));
            }
        } else {
            records.for_each(|(k, v)| {
                let r = self.partitioner.partition(&k);
                buckets[r].push((k, agg.create_combiner(v)));
            });
        }
        let blocks = buckets
            .into_iter()
            .map(|b| Box::new(b) as Box<dyn BlockData>)
            .collect();
        tc.shuffle
            .write_map_output(self.shuffle_id, map, blocks, &tc.executor)
    }
}

/// Iterates the records of shuffle blocks (cloning: map outputs are kept for later jobs
/// and for retries).
pub(crate) struct BlockIter<R> {
    blocks: std::vec::IntoIter<Arc<dyn BlockData>>,
    current: Option<Arc<dyn BlockData>>,
    index: usize,
    _r: PhantomData<fn() -> R>,
}

impl<R: Data> Iterator for BlockIter<R> {
    type Item = R;
    fn next(&mut self) -> Option<R> {
        loop {
            if let Some(block) = &self.current {
                let Some(records) = block.as_any().downcast_ref::<Vec<R>>() else {
                    raise(Error::Other(format!(
                        "shuffle block holds another type than {}",
                        std::any::type_name::<R>()
                    )))
                };
                if let Some(r) = records.get(self.index) {
                    self.index += 1;
                    return Some(r.clone());
                }
            }
            self.current = Some(self.blocks.next()?);
            self.index = 0;
        }
    }
}

/// Read reduce partition `reduce` of `shuffle` from `maps` map outputs.
pub(crate) fn read_shuffle<R: Data>(
    tc: &TaskContext,
    shuffle: ShuffleId,
    reduce: usize,
    maps: usize,
) -> BlockIter<R> {
    let blocks = tc
        .shuffle
        .read_blocks(shuffle, reduce, maps)
        .unwrap_or_else(|e| raise(e));
    BlockIter {
        blocks: blocks.into_iter(),
        current: None,
        index: 0,
        _r: PhantomData,
    }
}

/// Sorts a reduce partition by key; a plain fn so it needs no `Ord` bound on the node.
pub(crate) type SortFn<K, C> = fn(&mut Vec<(K, C)>);

/// Reduce side of a shuffle.
pub(crate) struct ShuffledNode<K, V, C, A> {
    pub meta: NodeMeta,
    pub dep: Arc<ShuffleDep<K, V, C, A>>,
    pub hash_partitioner: Option<HashPartitioner>,
    pub sort: Option<SortFn<K, C>>,
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>> RddBase for ShuffledNode<K, V, C, A> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.dep.partitioner.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Shuffle(self.dep.clone())]
    }
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>> RddNode<(K, C)>
    for ShuffledNode<K, V, C, A>
{
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(K, C)> {
        let maps = self.dep.parent.num_partitions();
        let records = read_shuffle::<(K, C)>(tc, self.dep.shuffle_id, split, maps);
        if A::COMBINES {
            let agg = &*self.dep.aggregator;
            let mut merged = CombineMap::default();
            records.for_each(|(k, c)| merged.insert_combiner(agg, k, c));
            match self.sort {
                Some(sort) => {
                    let mut v: Vec<(K, C)> = merged.into_pairs().collect();
                    sort(&mut v);
                    PartIter::new(v.into_iter())
                }
                None => PartIter::new(merged.into_pairs()),
            }
        } else {
            match self.sort {
                Some(sort) => {
                    let mut v: Vec<(K, C)> = Vec::new();
                    records.for_each(|r| v.push(r));
                    sort(&mut v);
                    PartIter::new(v.into_iter())
                }
                None => PartIter::new(records),
            }
        }
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.hash_partitioner
            .map(|p| Arc::new(p) as Arc<dyn Any + Send + Sync>)
    }
}
