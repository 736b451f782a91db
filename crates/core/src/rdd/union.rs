//! `union`: the partitions of several RDDs side by side (no shuffle, no dedup).

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, compute};
use crate::data::Data;
use crate::task::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct UnionNode<T: 'static> {
    pub meta: NodeMeta,
    pub parents: Vec<NodeRef<T>>,
    /// Partition count, fixed at construction: asking the parent would recurse through the
    /// whole pipeline.
    pub partitions: usize,
}

impl<T: Data> UnionNode<T> {
    fn locate(&self, mut split: usize) -> (&NodeRef<T>, usize) {
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
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.parents
            .iter()
            .map(|p| Dependency::Narrow(base_of(p)))
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
        compute(p, s, tc)
    }
}

/// The partitions of all `rdds` side by side, in order, as one RDD (one node, however
/// many inputs: no nesting); no RDDs give an empty RDD of one partition.
pub fn union_all<T: Data>(sc: Arc<dyn super::JobRunner>, rdds: &[super::Rdd<T>]) -> super::Rdd<T> {
    if rdds.is_empty() {
        return super::parallelize(sc, Vec::new(), 1);
    }
    let meta = NodeMeta::new(&*sc, "union");
    super::Rdd::from_node(
        sc,
        UnionNode {
            meta,
            parents: rdds.iter().map(|r| r.node.clone()).collect(),
            partitions: rdds.iter().map(|r| r.num_partitions()).sum(),
        },
    )
}
