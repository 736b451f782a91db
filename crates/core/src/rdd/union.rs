//! `union`: the partitions of several RDDs side by side (no shuffle, no dedup).

use super::{Dependency, NodeMeta, PartIter, RddBase, RddNode};
use crate::data::Data;
use crate::task::TaskContext;
use std::sync::Arc;

pub(crate) struct UnionNode<T> {
    pub meta: NodeMeta,
    pub parents: Vec<Arc<dyn RddNode<T>>>,
}

impl<T: Data> UnionNode<T> {
    fn locate(&self, mut split: usize) -> (&Arc<dyn RddNode<T>>, usize) {
        for p in &self.parents {
            let n = p.num_partitions();
            if split < n {
                return (p, split);
            }
            split -= n;
        }
        unreachable!("partition index beyond the union's partitions")
    }
}

impl<T: Data> RddBase for UnionNode<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.parents.iter().map(|p| p.num_partitions()).sum()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.parents
            .iter()
            .map(|p| Dependency::Narrow(p.clone()))
            .collect()
    }
    fn preferred_locations(&self, split: usize) -> Vec<String> {
        let (p, s) = self.locate(split);
        p.preferred_locations(s)
    }
}

impl<T: Data> RddNode<T> for UnionNode<T> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<T> {
        let (p, s) = self.locate(split);
        p.clone().compute(s, tc)
    }
}
