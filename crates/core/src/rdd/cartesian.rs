//! `cartesian`: every pair of elements; partition (i, j) pairs left partition i with right
//! partition j.

use super::{Dependency, NodeMeta, PartIter, RddBase, RddNode};
use crate::data::Data;
use crate::task::TaskContext;
use std::sync::Arc;

pub(crate) struct CartesianNode<T, U> {
    pub meta: NodeMeta,
    pub left: Arc<dyn RddNode<T>>,
    pub right: Arc<dyn RddNode<U>>,
}

impl<T: Data, U: Data> RddBase for CartesianNode<T, U> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.left.num_partitions() * self.right.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::Narrow(self.left.clone()),
            Dependency::Narrow(self.right.clone()),
        ]
    }
}

impl<T: Data, U: Data> RddNode<(T, U)> for CartesianNode<T, U> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(T, U)> {
        let n = self.right.num_partitions();
        let right: Arc<Vec<U>> = Arc::new(self.right.clone().compute(split % n, tc).collect());
        let left = self.left.clone().compute(split / n, tc);
        PartIter::new(left.flat_map(move |x| {
            let right = right.clone();
            (0..right.len()).map(move |j| (x.clone(), right[j].clone()))
        }))
    }
}
