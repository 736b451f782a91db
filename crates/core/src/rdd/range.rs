//! `range`: integers `start..end` without materializing them on the driver.

use super::{Dependency, JobRunner, NodeMeta, PartIter, Rdd, RddBase, RddNode};
use crate::task::TaskContext;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct RangeNode {
    meta: NodeMeta,
    start: i64,
    end: i64,
    partitions: usize,
}

impl RangeNode {
    fn bounds(&self, split: usize) -> (i64, i64) {
        let len = (self.end as i128 - self.start as i128).max(0);
        let n = self.partitions as i128;
        let at = |i: i128| (self.start as i128 + len * i / n) as i64;
        (at(split as i128), at(split as i128 + 1))
    }
}

impl RddBase for RangeNode {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
}

impl RddNode<i64> for RangeNode {
    fn compute(self: Arc<Self>, split: usize, _tc: &TaskContext) -> PartIter<i64> {
        let (a, b) = self.bounds(split);
        crate::metrics::record(|m| m.input_records += (b - a).max(0) as u64);
        PartIter::new(a..b)
    }
}

/// The integers `start..end` in `partitions` (at least one) contiguous ranges.
#[track_caller]
pub fn range(sc: Arc<dyn JobRunner>, start: i64, end: i64, partitions: usize) -> Rdd<i64> {
    let meta = NodeMeta::new(&*sc, "range");
    Rdd::from_node(
        sc,
        RangeNode {
            meta,
            start,
            end,
            partitions: partitions.max(1),
        },
    )
}
