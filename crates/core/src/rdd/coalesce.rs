//! `coalesce` without a shuffle: each new partition concatenates a contiguous run of
//! parent partitions.

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, compute};
use crate::data::Data;
use crate::task::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct CoalescedNode<T: 'static> {
    pub meta: NodeMeta,
    pub parent: NodeRef<T>,
    pub partitions: usize,
}

impl<T: Data> CoalescedNode<T> {
    fn parents_of(&self, split: usize) -> std::ops::Range<usize> {
        let n = self.parent.num_partitions();
        (n * split / self.partitions)..(n * (split + 1) / self.partitions)
    }
}

impl<T: Data> RddBase for CoalescedNode<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Narrow(base_of(&self.parent))]
    }
}

impl<T: Data> RddNode<T> for CoalescedNode<T> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<T> {
        let parent = self.parent.clone();
        let tc = tc.clone();
        PartIter::new(
            self.parents_of(split)
                .flat_map(move |p| compute(&parent, p, &tc)),
        )
    }
}
