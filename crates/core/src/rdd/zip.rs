//! `zip`: pair up the i-th elements of two RDDs with the same partitioning.

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, compute};
use crate::data::Data;
use crate::error::Error;
use crate::task::{TaskContext, raise};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct ZipNode<T: 'static, U: 'static> {
    pub meta: NodeMeta,
    pub left: NodeRef<T>,
    pub right: NodeRef<U>,
    /// Partition count, fixed at construction: asking the parent would recurse through the
    /// whole pipeline.
    pub partitions: usize,
}

impl<T: Data, U: Data> RddBase for ZipNode<T, U> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::Narrow(base_of(&self.left)),
            Dependency::Narrow(base_of(&self.right)),
        ]
    }
}

impl<T: Data, U: Data> RddNode<(T, U)> for ZipNode<T, U> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(T, U)> {
        let mut a = compute(&self.left, split, tc);
        let mut b = compute(&self.right, split, tc);
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
