//! Resilient distributed datasets: the typed user handle [`Rdd`], the type-erased view the
//! scheduler walks ([`RddBase`]), and the nodes of a lineage, one per file.
//!
//! A node computes one partition as a lazy iterator over its parents' iterators, so narrow
//! operations (map, filter, …) pipeline inside one task without materializing anything.
//! Iterators are `'static` (nodes are behind `Arc` and computing takes `self: Arc<Self>`),
//! which keeps user-facing signatures such as `map_partitions` free of lifetimes.

mod actions;
mod cached;
mod cartesian;
mod coalesce;
mod cogroup;
mod indexed;
mod map_partitions;
mod numeric;
mod ops;
mod pair;
mod parallelize;
mod pipe;
mod range;
mod shuffled;
mod text_file;
mod union;
mod zip;

pub use crate::cache::StorageLevel;
pub use indexed::LocalIter;
pub use map_partitions::PartitionFn;
pub use numeric::{Numeric, StatCounter};
pub use pair::{CoGrouped, FullOuter};
pub use parallelize::parallelize;
pub use range::range;
pub use shuffled::ShuffleDep;
pub use text_file::{Codec, TextFileOptions, text_file};
pub use union::union_all;

use crate::data::Data;
use crate::error::Result;
use crate::ship::{EncodeSelf, SerArc, Upcast};
use crate::shuffle::ShuffleDependency;
use crate::task::{ResultJob, TaskContext};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// Identifies an RDD within one context.
pub type RddId = usize;
/// Identifies a shuffle within one context.
pub type ShuffleId = usize;

/// The iterator a partition is computed into.
///
/// A boxed iterator that also forwards *internal* iteration (`fold`, `for_each`, `count`,
/// `sum` …) through the box to the concrete iterator. Pipelines of narrow operations are
/// chains of these; folding runs each link as the concrete adapter's own tight loop (no
/// per-element re-entry into `FlatMap::next`), which is what makes them fast.
pub struct PartIter<T> {
    inner: Box<dyn DynIter<T>>,
}

/// Elements handed across a dynamic boundary per call when folding.
const BATCH: usize = 256;

trait DynIter<T> {
    fn next_dyn(&mut self) -> Option<T>;
    /// Fold in batches: one dynamic call per `BATCH` elements instead of one per element.
    fn fold_dyn(self: Box<Self>, f: &mut dyn FnMut(&mut Vec<T>));
    fn size_hint_dyn(&self) -> (usize, Option<usize>);
}

impl<T, I: Iterator<Item = T>> DynIter<T> for I {
    #[inline]
    fn next_dyn(&mut self) -> Option<T> {
        self.next()
    }
    #[inline]
    fn fold_dyn(self: Box<Self>, f: &mut dyn FnMut(&mut Vec<T>)) {
        let mut batch = Vec::with_capacity(BATCH);
        (*self).for_each(|x| {
            batch.push(x);
            if batch.len() == BATCH {
                f(&mut batch);
                batch.clear();
            }
        });
        if !batch.is_empty() {
            f(&mut batch);
        }
    }
    fn size_hint_dyn(&self) -> (usize, Option<usize>) {
        self.size_hint()
    }
}

impl<T> PartIter<T> {
    /// Box an iterator.
    pub fn new<I: Iterator<Item = T> + 'static>(it: I) -> Self {
        PartIter {
            inner: Box::new(it),
        }
    }
}

impl<T> Iterator for PartIter<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        self.inner.next_dyn()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint_dyn()
    }

    #[inline]
    fn fold<B, F: FnMut(B, T) -> B>(self, init: B, mut f: F) -> B {
        let mut acc = Some(init);
        self.inner.fold_dyn(&mut |batch| {
            if let Some(mut a) = acc.take() {
                for x in batch.drain(..) {
                    a = f(a, x);
                }
                acc = Some(a);
            }
        });
        // `acc` is put back after every element; only an unwinding `f` leaves it empty,
        // and then this line is never reached.
        acc.expect("fold accumulator restored after each element")
    }
}

/// Collect a partition with internal iteration (faster than `collect`, which pulls).
pub(crate) fn collect_vec<T>(it: PartIter<T>) -> Vec<T> {
    let mut v = Vec::with_capacity(it.size_hint().0);
    it.for_each(|x| v.push(x));
    v
}

/// What the RDD API needs from whoever runs jobs (the driver's scheduler). Defined here so
/// that the model does not depend on the scheduler; implemented by `spate-scheduler`.
pub trait JobRunner: Send + Sync + 'static {
    /// Run `job` on `partitions` of its RDD; results come back in the order asked for.
    fn run_job(
        &self,
        job: SerArc<dyn ResultJob>,
        partitions: Vec<usize>,
    ) -> Result<Vec<Box<dyn Any + Send>>>;
    /// A fresh RDD id.
    fn new_rdd_id(&self) -> RddId;
    /// A fresh shuffle id.
    fn new_shuffle_id(&self) -> ShuffleId;
    /// Partition count used when an operation is not told one (cores of the cluster).
    fn default_parallelism(&self) -> usize;
    /// Drop every cached partition of persisted RDD `key`, wherever it is.
    fn unpersist(&self, _key: crate::cache::CacheKey) {}
}

/// Name, id and the user's call site of a node, for plans, logs and error messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeMeta {
    /// The RDD id.
    pub id: RddId,
    /// The operation that made it ("map", "text_file", …).
    pub op: Cow<'static, str>,
    /// Source file of the user's call.
    pub file: Cow<'static, str>,
    /// Line of the user's call.
    pub line: u32,
}

impl NodeMeta {
    /// Metadata for a node made by `op`, attributed to the caller's source location.
    #[track_caller]
    pub fn new(sc: &dyn JobRunner, op: &'static str) -> Self {
        let at = Location::caller();
        NodeMeta {
            id: sc.new_rdd_id(),
            op: Cow::Borrowed(op),
            file: Cow::Borrowed(at.file()),
            line: at.line(),
        }
    }
}

impl fmt::Display for NodeMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .rsplit_once("/src/")
            .map_or(&*self.file, |(_, rest)| rest);
        write!(f, "{}[{}] at {}:{}", self.op, self.id, file, self.line)
    }
}

/// How a node depends on a parent.
#[derive(Clone)]
pub enum Dependency {
    /// Each partition needs a bounded set of parent partitions: computed in the same task.
    Narrow(Arc<dyn RddBase>),
    /// Every partition may need every parent partition: a stage boundary.
    Shuffle(SerArc<dyn ShuffleDependency>),
}

/// The type-erased view of a node: what stage planning and the scheduler need.
pub trait RddBase: Send + Sync + 'static {
    /// Id, operation and call site.
    fn meta(&self) -> &NodeMeta;
    /// Number of partitions.
    fn num_partitions(&self) -> usize;
    /// Parents, narrow or shuffle.
    fn dependencies(&self) -> Vec<Dependency>;
    /// Executors or hosts where partition `p` is cheapest to compute.
    fn preferred_locations(&self, _p: usize) -> Vec<String> {
        Vec::new()
    }
    /// The RDD id.
    fn id(&self) -> RddId {
        self.meta().id
    }
    /// For a persisted RDD, its cache key and storage level.
    fn storage(&self) -> Option<(crate::cache::CacheKey, crate::cache::StorageLevel)> {
        None
    }
}

/// A shippable reference to a lineage node producing `T`.
pub type NodeRef<T> = SerArc<dyn RddNode<T>>;

/// A node that computes elements of type `T`. Nodes are serde types: they ship to
/// executors inside tasks (see [`crate::ship`]).
pub trait RddNode<T>: RddBase + EncodeSelf {
    /// Compute partition `split` lazily. Engine errors met while iterating (I/O, bad
    /// UTF-8, lost shuffle blocks) unwind with [`crate::task::raise`] and are turned into
    /// a typed task failure at the task boundary.
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<T>;
    /// If the elements are `(K, V)` pairs placed by a known partitioner, that partitioner
    /// (as `Any`, compared with `Partitioner::same_as`). Lets joins skip a shuffle.
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
    /// For a persisted RDD, the RDD it persists.
    fn uncached(&self) -> Option<NodeRef<T>> {
        None
    }
}

impl<T: 'static, C: RddNode<T>> Upcast<dyn RddNode<T>> for C {
    fn upcast(self: Arc<Self>) -> Arc<dyn RddNode<T>> {
        self
    }
}

/// Compute partition `split` of a node reference.
pub(crate) fn compute<T: 'static>(
    node: &NodeRef<T>,
    split: usize,
    tc: &TaskContext,
) -> PartIter<T> {
    node.arc().clone().compute(split, tc)
}

/// The type-erased view of a node reference, for dependencies.
pub(crate) fn base_of<T: 'static>(node: &NodeRef<T>) -> Arc<dyn RddBase> {
    node.arc().clone()
}

/// A typed, immutable, partitioned collection. Cheap to clone (it is a handle to a lineage
/// node). Transformations are lazy; actions run a job on the context that made it.
pub struct Rdd<T: Data> {
    pub(crate) node: NodeRef<T>,
    pub(crate) sc: Arc<dyn JobRunner>,
}

impl<T: Data> Clone for Rdd<T> {
    fn clone(&self) -> Self {
        Rdd {
            node: self.node.clone(),
            sc: self.sc.clone(),
        }
    }
}

impl<T: Data> fmt::Debug for Rdd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Rdd({}, {} partitions)",
            self.node.meta(),
            self.node.num_partitions()
        )
    }
}

impl<T: Data> Rdd<T> {
    pub(crate) fn from_node<N>(sc: Arc<dyn JobRunner>, node: N) -> Self
    where
        N: RddNode<T> + Serialize + serde::de::DeserializeOwned,
    {
        Rdd {
            node: SerArc::new(node),
            sc,
        }
    }

    /// The lineage node, type-erased for the scheduler (stage planning, tests).
    pub fn base(&self) -> Arc<dyn RddBase> {
        base_of(&self.node)
    }

    /// The typed lineage node.
    pub fn node(&self) -> NodeRef<T> {
        self.node.clone()
    }

    /// The RDD id.
    pub fn id(&self) -> RddId {
        self.node.id()
    }

    /// Keep each partition in memory once computed, for later jobs
    /// (`persist(StorageLevel::Memory)`). Use the returned RDD.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let squares = ctx.range(0, 1000, 4).map(|x| x * x).cache();
    /// assert_eq!(squares.count()?, 1000); // computes and keeps the partitions
    /// assert_eq!(squares.reduce(|a, b| a.max(b))?, Some(999 * 999)); // reads them
    /// let plain = squares.unpersist(); // drops them; `plain` is the uncached RDD
    /// assert_eq!(plain.count()?, 1000);
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn cache(&self) -> Rdd<T> {
        self.persist(crate::cache::StorageLevel::Memory)
    }

    /// Keep each partition at `level` once computed: later jobs read it (the scheduler
    /// runs their tasks where the partition is); a lost partition is recomputed from
    /// lineage. Use the returned RDD.
    #[track_caller]
    pub fn persist(&self, level: crate::cache::StorageLevel) -> Rdd<T> {
        let meta = NodeMeta::new(&*self.sc, "persist");
        Rdd::from_node(
            self.sc.clone(),
            cached::CachedNode {
                meta,
                parent: self.node.clone(),
                key: crate::cache::new_key(),
                level,
            },
        )
    }

    /// Drop the cached partitions of a persisted RDD everywhere and return the RDD it
    /// persisted (not cached). On an RDD that is not persisted, returns it unchanged.
    pub fn unpersist(&self) -> Rdd<T> {
        let (Some((key, _)), Some(parent)) = (self.node.storage(), self.node.uncached()) else {
            return self.clone();
        };
        self.sc.unpersist(key);
        crate::cache::remove(key);
        Rdd {
            node: parent,
            sc: self.sc.clone(),
        }
    }

    /// Number of partitions.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![1, 2, 3], 3).num_partitions(), 3);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn num_partitions(&self) -> usize {
        self.node.num_partitions()
    }

    /// A human-readable description of the lineage, one node per line, shuffle
    /// boundaries marked (like Spark's `toDebugString`).
    pub fn debug_string(&self) -> String {
        fn walk(node: &dyn RddBase, depth: usize, out: &mut String) {
            out.push_str(&format!(
                "{:indent$}({}) {}\n",
                "",
                node.num_partitions(),
                node.meta(),
                indent = depth * 2
            ));
            for dep in node.dependencies() {
                match dep {
                    Dependency::Narrow(p) => walk(&*p, depth + 1, out),
                    Dependency::Shuffle(s) => {
                        out.push_str(&format!(
                            "{:indent$}+- shuffle {}\n",
                            "",
                            s.shuffle_id(),
                            indent = depth * 2 + 2
                        ));
                        walk(&*s.rdd(), depth + 2, out);
                    }
                }
            }
        }
        let mut s = String::new();
        walk(&*self.base(), 0, &mut s);
        s
    }
}
