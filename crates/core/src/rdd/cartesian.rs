//! `cartesian`: every pair of elements; partition (i, j) pairs left partition i with right
//! partition j.

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, compute};
use crate::data::Data;
use crate::task::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct CartesianNode<T: 'static, U: 'static> {
    pub meta: NodeMeta,
    pub left: NodeRef<T>,
    pub right: NodeRef<U>,
    /// Partition count, fixed at construction: asking the parent would recurse through the
    /// whole pipeline.
    pub partitions: usize,
}

impl<T: Data, U: Data> RddBase for CartesianNode<T, U> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        super::both_narrow(&self.left, &self.right)
    }
}

impl<T: Data, U: Data> RddNode<(T, U)> for CartesianNode<T, U> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(T, U)> {
        let n = self.right.num_partitions();
        let right: Arc<Vec<U>> = Arc::new(compute(&self.right, split % n, tc).collect());
        let left = compute(&self.left, split / n, tc);
        PartIter::new(left.flat_map(move |x| {
            let right = right.clone();
            (0..right.len()).map(move |j| (x.clone(), right[j].clone()))
        }))
    }
}
