//! A persisted RDD: computes its parent's partition once per process and keeps it in the
//! process's [`crate::cache`] for later tasks.

use super::{
    Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, collect_vec, compute,
};
use crate::cache::{self, CacheKey, StorageLevel};
use crate::data::Data;
use crate::task::{TaskContext, raise};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
pub(crate) struct CachedNode<T: 'static> {
    pub meta: NodeMeta,
    pub parent: NodeRef<T>,
    /// Partition count, fixed at construction: asking the parent would recurse through the
    /// whole pipeline.
    pub partitions: usize,
    pub key: CacheKey,
    pub level: StorageLevel,
}

impl<T: Data> RddBase for CachedNode<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Narrow(base_of(&self.parent))]
    }
    fn preferred_locations(&self, p: usize) -> Vec<String> {
        super::pipeline_source(base_of(&self.parent)).preferred_locations(p)
    }
    fn one_to_one_parent(&self) -> Option<(Arc<dyn RddBase>, bool)> {
        Some((base_of(&self.parent), true))
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        super::kept_partitioner(base_of(&self.parent))
    }
    fn storage(&self) -> Option<(CacheKey, StorageLevel)> {
        Some((self.key, self.level))
    }
}

impl<T: Data> RddNode<T> for CachedNode<T> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<T> {
        let data = match cache::get::<T>(self.key, split) {
            Some(hit) => hit,
            None => {
                let computed = Arc::new(collect_vec(compute(&self.parent, split, tc)));
                if let Err(e) = cache::put(self.key, split, self.level, &computed) {
                    raise(e);
                }
                computed
            }
        };
        let n = data.len();
        PartIter::new((0..n).map(move |i| data[i].clone()))
    }
    fn uncached(&self) -> Option<NodeRef<T>> {
        Some(self.parent.clone())
    }
}
