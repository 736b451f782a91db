//! `cogroup` of two pair RDDs: for each key, the values from each side. A side that is
//! already hash-partitioned the same way as the result is read through a narrow
//! dependency (no second shuffle), so joining two `reduce_by_key` outputs costs no extra
//! stage, as in Spark.

use super::shuffled::{ShuffleDep, ShuffleGuard, read_shuffle};
use super::{
    Dependency, JobRunner, NodeMeta, NodeRef, PartIter, RddBase, RddNode, ShuffleId, base_of,
    compute,
};
use crate::aggregator::NoAgg;
use crate::data::{Data, Key};
use crate::partitioner::{Partitioner, same};
use crate::ship::SerArc;
use crate::shuffle::ShuffleDependency;
use crate::task::TaskContext;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// How one side of a cogroup is read.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Side<K: 'static, V: 'static> {
    /// Already partitioned by the target partitioner: read partition `p` directly.
    Narrow(NodeRef<(K, V)>),
    /// Shuffled into the target partitioning.
    Shuffle {
        shuffle_id: ShuffleId,
        maps: usize,
        /// The map side, for planning on the driver (not shipped).
        #[serde(skip)]
        dep: Option<SerArc<dyn ShuffleDependency>>,
        /// Driver only: removes the shuffle when this side goes.
        #[serde(skip)]
        _guard: Option<Arc<ShuffleGuard>>,
    },
}

impl<K: Key, V: Data> Side<K, V> {
    pub fn new(
        parent: NodeRef<(K, V)>,
        target: &SerArc<dyn Partitioner<K>>,
        sc: &Arc<dyn JobRunner>,
    ) -> Self {
        let co_partitioned = super::partitioner_of::<K>(&*parent).is_some_and(|p| same(target, &p));
        if co_partitioned {
            Side::Narrow(parent)
        } else {
            let shuffle_id = sc.new_shuffle_id();
            let maps = parent.num_partitions();
            let dep = ShuffleDep::<K, V, V, NoAgg<V>> {
                shuffle_id,
                parent,
                partitioner: target.clone(),
                aggregator: NoAgg::default(),
                _types: PhantomData,
            };
            Side::Shuffle {
                shuffle_id,
                maps,
                dep: Some(SerArc::new(dep)),
                _guard: Some(ShuffleGuard::new(sc, shuffle_id)),
            }
        }
    }

    fn dependency(&self) -> Option<Dependency> {
        match self {
            Side::Narrow(p) => Some(Dependency::Narrow(base_of(p))),
            Side::Shuffle { dep, .. } => dep.clone().map(Dependency::Shuffle),
        }
    }

    fn read(&self, split: usize, tc: &TaskContext) -> PartIter<(K, V)> {
        match self {
            Side::Narrow(p) => compute(p, split, tc),
            Side::Shuffle {
                shuffle_id, maps, ..
            } => PartIter::new(read_shuffle::<(K, V)>(tc, *shuffle_id, split, *maps)),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct CoGroupedNode<K: 'static, V: 'static, W: 'static> {
    pub meta: NodeMeta,
    pub left: Side<K, V>,
    pub right: Side<K, W>,
    pub partitioner: SerArc<dyn Partitioner<K>>,
}

impl<K: Key, V: Data, W: Data> RddBase for CoGroupedNode<K, V, W> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(self.partitioner.clone()))
    }
    fn num_partitions(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.left
            .dependency()
            .into_iter()
            .chain(self.right.dependency())
            .collect()
    }
}

impl<K: Key, V: Data, W: Data> RddNode<(K, (Vec<V>, Vec<W>))> for CoGroupedNode<K, V, W> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(K, (Vec<V>, Vec<W>))> {
        let mut groups: HashMap<K, (Vec<V>, Vec<W>), FxBuildHasher> = HashMap::default();
        self.left
            .read(split, tc)
            .for_each(|(k, v)| groups.entry(k).or_default().0.push(v));
        self.right
            .read(split, tc)
            .for_each(|(k, w)| groups.entry(k).or_default().1.push(w));
        PartIter::new(groups.into_iter())
    }
}
