//! `zip`: pair up the i-th elements of two RDDs with the same partitioning.

use super::{Dependency, NodeMeta, PartIter, RddBase, RddNode};
use crate::data::Data;
use crate::error::Error;
use crate::task::{TaskContext, raise};
use std::sync::Arc;

pub(crate) struct ZipNode<T, U> {
    pub meta: NodeMeta,
    pub left: Arc<dyn RddNode<T>>,
    pub right: Arc<dyn RddNode<U>>,
}

impl<T: Data, U: Data> RddBase for ZipNode<T, U> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.left.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::Narrow(self.left.clone()),
            Dependency::Narrow(self.right.clone()),
        ]
    }
}

impl<T: Data, U: Data> RddNode<(T, U)> for ZipNode<T, U> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(T, U)> {
        let mut a = self.left.clone().compute(split, tc);
        let mut b = self.right.clone().compute(split, tc);
        PartIter::new(std::iter::from_fn(move || match (a.next(), b.next()) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            _ => raise(Error::ZipMismatch(format!(
                "partition {split} has a different number of elements on each side ({})",
                self.meta
            ))),
        }))
    }
}
