//! `cogroup` of two pair RDDs: for each key, the values from each side. A side that is
//! already hash-partitioned the same way as the result is read through a narrow
//! dependency (no second shuffle), so joining two `reduce_by_key` outputs costs no extra
//! stage, as in Spark.

use super::shuffled::{ShuffleDep, read_shuffle};
use super::{Dependency, NodeMeta, PartIter, RddBase, RddNode, ShuffleId};
use crate::aggregator::NoAgg;
use crate::data::{Data, Key};
use crate::partitioner::{HashPartitioner, Partitioner};
use crate::task::TaskContext;
use rustc_hash::FxBuildHasher;
use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// How one side of a cogroup is read.
pub(crate) enum Side<K, V> {
    /// Already partitioned by the target partitioner: read partition `p` directly.
    Narrow(Arc<dyn RddNode<(K, V)>>),
    /// Shuffled into the target partitioning.
    Shuffle(Arc<ShuffleDep<K, V, V, NoAgg<V>>>),
}

impl<K: Key, V: Data> Side<K, V> {
    pub fn new(
        parent: Arc<dyn RddNode<(K, V)>>,
        target: HashPartitioner,
        shuffle_id: impl FnOnce() -> ShuffleId,
    ) -> Self {
        let co_partitioned = parent
            .partitioner()
            .is_some_and(|p| p.downcast_ref::<HashPartitioner>() == Some(&target));
        if co_partitioned {
            Side::Narrow(parent)
        } else {
            Side::Shuffle(Arc::new(ShuffleDep {
                shuffle_id: shuffle_id(),
                parent,
                partitioner: Arc::new(target) as Arc<dyn Partitioner<K>>,
                aggregator: Arc::new(NoAgg::default()),
                _types: PhantomData,
            }))
        }
    }

    fn dependency(&self) -> Dependency {
        match self {
            Side::Narrow(p) => Dependency::Narrow(p.clone()),
            Side::Shuffle(d) => Dependency::Shuffle(d.clone()),
        }
    }

    fn read(&self, split: usize, tc: &TaskContext) -> PartIter<(K, V)> {
        match self {
            Side::Narrow(p) => p.clone().compute(split, tc),
            Side::Shuffle(d) => PartIter::new(read_shuffle::<(K, V)>(
                tc,
                d.shuffle_id,
                split,
                d.parent.num_partitions(),
            )),
        }
    }
}

pub(crate) struct CoGroupedNode<K, V, W> {
    pub meta: NodeMeta,
    pub left: Side<K, V>,
    pub right: Side<K, W>,
    pub partitioner: HashPartitioner,
}

impl<K: Key, V: Data, W: Data> RddBase for CoGroupedNode<K, V, W> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        Partitioner::<K>::num_partitions(&self.partitioner)
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![self.left.dependency(), self.right.dependency()]
    }
}

impl<K: Key, V: Data, W: Data> RddNode<(K, (Vec<V>, Vec<W>))> for CoGroupedNode<K, V, W> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(K, (Vec<V>, Vec<W>))> {
        let mut groups: HashMap<K, (Vec<V>, Vec<W>), FxBuildHasher> = HashMap::default();
        for (k, v) in self.left.read(split, tc) {
            groups.entry(k).or_default().0.push(v);
        }
        for (k, w) in self.right.read(split, tc) {
            groups.entry(k).or_default().1.push(w);
        }
        PartIter::new(groups.into_iter())
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(self.partitioner))
    }
}
