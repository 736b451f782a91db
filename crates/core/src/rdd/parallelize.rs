//! `parallelize`: a driver-side collection cut into slices.

use super::{Dependency, JobRunner, NodeMeta, PartIter, Rdd, RddBase, RddNode};
use crate::data::Data;
use crate::task::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "T: Serialize",
    deserialize = "T: serde::de::DeserializeOwned"
))]
struct ParallelCollection<T> {
    meta: NodeMeta,
    slices: Arc<Vec<Vec<T>>>,
}

impl<T: Data> RddBase for ParallelCollection<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.slices.len()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
}

impl<T: Data> RddNode<T> for ParallelCollection<T> {
    fn compute(self: Arc<Self>, split: usize, _tc: &TaskContext) -> PartIter<T> {
        // Clone per computation: a partition may be computed again (retry, later job).
        let n = self.slices.get(split).map_or(0, Vec::len);
        crate::metrics::record(|m| m.input_records += n as u64);
        PartIter::new((0..n).map(move |i| self.slices[split][i].clone()))
    }
}

/// Cut `data` into `partitions` slices of nearly equal size (at least one slice).
#[track_caller]
pub fn parallelize<T: Data>(sc: Arc<dyn JobRunner>, data: Vec<T>, partitions: usize) -> Rdd<T> {
    let n = partitions.max(1);
    let len = data.len();
    let mut slices: Vec<Vec<T>> = Vec::with_capacity(n);
    let mut it = data.into_iter();
    for i in 0..n {
        let (from, to) = (len * i / n, len * (i + 1) / n);
        slices.push(it.by_ref().take(to - from).collect());
    }
    let meta = NodeMeta::new(&*sc, "parallelize");
    Rdd::from_node(
        sc,
        ParallelCollection {
            meta,
            slices: Arc::new(slices),
        },
    )
}
