//! `zip`: pair up the i-th elements of two RDDs with the same partitioning.

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, compute};
use crate::data::Data;
use crate::error::Error;
use crate::func::Func2;
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
        super::both_narrow(&self.left, &self.right)
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

/// `zip_partitions`: partition `i` is a function of partition `i` of both parents (any
/// element counts, unlike `zip`).
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "G: Serialize",
    deserialize = "G: serde::de::DeserializeOwned"
))]
pub(crate) struct ZipPartitionsNode<T: 'static, U: 'static, V, I, G> {
    pub meta: NodeMeta,
    pub left: NodeRef<T>,
    pub right: NodeRef<U>,
    pub partitions: usize,
    pub f: Arc<G>,
    #[serde(skip)]
    pub _out: std::marker::PhantomData<fn() -> (V, I)>,
}

impl<T, U, V, I, G> RddBase for ZipPartitionsNode<T, U, V, I, G>
where
    T: Data,
    U: Data,
    V: Data,
    I: IntoIterator<Item = V> + 'static,
    I::IntoIter: 'static,
    G: Func2<PartIter<T>, PartIter<U>, I>,
{
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

impl<T, U, V, I, G> RddNode<V> for ZipPartitionsNode<T, U, V, I, G>
where
    T: Data,
    U: Data,
    V: Data,
    I: IntoIterator<Item = V> + 'static,
    I::IntoIter: 'static,
    G: Func2<PartIter<T>, PartIter<U>, I>,
{
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<V> {
        let a = compute(&self.left, split, tc);
        let b = compute(&self.right, split, tc);
        PartIter::new(self.f.call(a, b).into_iter())
    }
}
