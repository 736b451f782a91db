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
mod checkpoint;
mod coalesce;
mod cogroup;
mod indexed;
mod map_partitions;
mod numeric;
mod object_file;
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
pub use object_file::object_file;
pub use pair::{CoGrouped, CoGrouped3, CoGrouped4, FullOuter};
pub use parallelize::parallelize;
pub use range::range;
pub use shuffled::ShuffleDep;
pub use text_file::{Codec, TextFileOptions, text_file, whole_text_files};
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
        // Grown up to `BATCH` and reused: a deep pipeline holds one batch per level, and
        // asking for a size hint here would walk the whole chain at every level.
        let mut batch = Vec::new();
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

impl<T: 'static> PartIter<T> {
    /// The elements of a vector. (A variant that pulls a vector without a dynamic call per
    /// element made the reduce side of a sort 2 % faster and word count 9 % slower.)
    pub fn from_vec(v: Vec<T>) -> Self {
        Self::new(v.into_iter())
    }
    /// `map` across the dynamic boundary batch by batch: folding maps each incoming batch
    /// into an outgoing one in one tight loop, instead of pushing every element through an
    /// adapter chain and testing for a full batch each time.
    pub(crate) fn map_batched<U: 'static, G: FnMut(T) -> U + 'static>(self, g: G) -> PartIter<U> {
        self.batched(MapOp(g))
    }

    /// `filter`, batch by batch (see [`PartIter::map_batched`]).
    pub(crate) fn filter_batched<P: FnMut(&T) -> bool + 'static>(self, p: P) -> PartIter<T> {
        self.batched(FilterOp(p))
    }

    /// `flat_map`, batch by batch (see [`PartIter::map_batched`]): each element's results
    /// are appended to the outgoing batch, which is handed on when full.
    pub(crate) fn flat_map_batched<I, G>(self, g: G) -> PartIter<I::Item>
    where
        I: IntoIterator + 'static,
        I::IntoIter: 'static,
        G: FnMut(T) -> I + 'static,
    {
        self.batched(FlatMapOp(g))
    }

    fn batched<Op: BatchOp<T> + 'static>(self, op: Op) -> PartIter<Op::Out> {
        PartIter {
            inner: Box::new(Batched {
                input: self,
                op,
                front: None,
            }),
        }
    }
}

/// One narrow operation applied batch by batch.
struct Batched<T, Op: BatchOp<T>> {
    input: PartIter<T>,
    op: Op,
    /// flat_map: what is left of the current element's results when pulled one by one.
    front: Option<Op::Front>,
}

trait BatchOp<T> {
    type Out;
    type Front: Iterator<Item = Self::Out>;
    /// Append the results for a whole batch to `out`; an op that may produce more than it
    /// takes hands a full `out` to `flush` on the way.
    fn batch(
        &mut self,
        batch: &mut Vec<T>,
        out: &mut Vec<Self::Out>,
        flush: &mut dyn FnMut(&mut Vec<Self::Out>),
    );
    /// The results of one element, for pulling.
    fn one(&mut self, x: T) -> Self::Front;
    fn size_hint(&self, input: (usize, Option<usize>)) -> (usize, Option<usize>);
}

struct MapOp<G>(G);
impl<T, U, G: FnMut(T) -> U> BatchOp<T> for MapOp<G> {
    type Out = U;
    type Front = std::option::IntoIter<U>;
    #[inline]
    fn batch(&mut self, batch: &mut Vec<T>, out: &mut Vec<U>, _: &mut dyn FnMut(&mut Vec<U>)) {
        out.extend(batch.drain(..).map(&mut self.0));
    }
    #[inline]
    fn one(&mut self, x: T) -> Self::Front {
        Some((self.0)(x)).into_iter()
    }
    fn size_hint(&self, input: (usize, Option<usize>)) -> (usize, Option<usize>) {
        input
    }
}

struct FilterOp<P>(P);
impl<T, P: FnMut(&T) -> bool> BatchOp<T> for FilterOp<P> {
    type Out = T;
    type Front = std::option::IntoIter<T>;
    #[inline]
    fn batch(&mut self, batch: &mut Vec<T>, out: &mut Vec<T>, _: &mut dyn FnMut(&mut Vec<T>)) {
        out.extend(batch.drain(..).filter(&mut self.0));
    }
    #[inline]
    fn one(&mut self, x: T) -> Self::Front {
        let keep = (self.0)(&x);
        keep.then_some(x).into_iter()
    }
    fn size_hint(&self, input: (usize, Option<usize>)) -> (usize, Option<usize>) {
        (0, input.1)
    }
}

struct FlatMapOp<G>(G);
impl<T, I: IntoIterator, G: FnMut(T) -> I> BatchOp<T> for FlatMapOp<G> {
    type Out = I::Item;
    type Front = I::IntoIter;
    #[inline]
    fn batch(
        &mut self,
        batch: &mut Vec<T>,
        out: &mut Vec<I::Item>,
        flush: &mut dyn FnMut(&mut Vec<I::Item>),
    ) {
        for x in batch.drain(..) {
            out.extend((self.0)(x));
            if out.len() >= BATCH {
                flush(out);
                out.clear();
            }
        }
    }
    #[inline]
    fn one(&mut self, x: T) -> Self::Front {
        (self.0)(x).into_iter()
    }
    fn size_hint(&self, _: (usize, Option<usize>)) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl<T, Op: BatchOp<T>> DynIter<Op::Out> for Batched<T, Op> {
    fn next_dyn(&mut self) -> Option<Op::Out> {
        loop {
            if let Some(front) = &mut self.front {
                if let Some(y) = front.next() {
                    return Some(y);
                }
                self.front = None;
            }
            let x = self.input.next()?;
            self.front = Some(self.op.one(x));
        }
    }

    fn fold_dyn(self: Box<Self>, f: &mut dyn FnMut(&mut Vec<Op::Out>)) {
        let Batched {
            input,
            mut op,
            front,
        } = *self;
        let mut out = Vec::with_capacity(BATCH);
        // Elements already pulled one by one come first.
        out.extend(front.into_iter().flatten());
        input.inner.fold_dyn(&mut |batch| {
            op.batch(batch, &mut out, f);
            if out.len() >= BATCH {
                f(&mut out);
                out.clear();
            }
        });
        if !out.is_empty() {
            f(&mut out);
        }
    }

    fn size_hint_dyn(&self) -> (usize, Option<usize>) {
        if self.front.is_some() {
            return (0, None);
        }
        self.op.size_hint(self.input.size_hint())
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
    /// Forget shuffle `shuffle` (no RDD can read it any more): its map stage and its map
    /// outputs, wherever they are.
    fn remove_shuffle(&self, _shuffle: ShuffleId) {}
    /// Where checkpointed RDDs write their files (set by `Context::set_checkpoint_dir`).
    fn checkpoint_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// Name, id and the user's call site of a node, for plans, logs and error messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeMeta {
    /// The RDD id.
    pub id: RddId,
    /// The operation that made it ("map", "text_file", …).
    #[serde(deserialize_with = "interned")]
    pub op: Cow<'static, str>,
    /// Source file of the user's call.
    #[serde(deserialize_with = "interned")]
    pub file: Cow<'static, str>,
    /// Line of the user's call.
    pub line: u32,
}

/// Decode an operation name or source path as a string shared by every node that has it:
/// a lineage repeats a handful of them thousands of times (two allocations per decoded
/// node otherwise: 100 000 chained maps took 71 MB in an executor, 68 MB interned). The
/// set is bounded by the program's call sites.
fn interned<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'static, str>, D::Error> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let s = <Cow<'de, str>>::deserialize(d)?;
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(&known) = seen.get(&*s) {
        return Ok(Cow::Borrowed(known));
    }
    if seen.len() >= 4096 {
        // Not a program's call sites: do not keep more.
        return Ok(Cow::Owned(s.into_owned()));
    }
    let leaked: &'static str = Box::leak(s.into_owned().into_boxed_str());
    seen.insert(leaked);
    Ok(Cow::Borrowed(leaked))
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
    /// For a node whose partition `p` is computed from its parent's partition `p` alone
    /// (map, filter, persist …): that parent, and whether keys are kept (so is the
    /// parent's partitioner). Lets properties be found by walking a pipeline, not by
    /// recursing through it.
    fn one_to_one_parent(&self) -> Option<(Arc<dyn RddBase>, bool)> {
        None
    }
    /// If the elements are `(K, V)` pairs placed by a known partitioner, that partitioner
    /// (as `Any`, compared with `Partitioner::same_as`). Lets joins skip a shuffle.
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
    /// For a checkpointed RDD: whether its files are all written and its lineage cut.
    fn is_checkpointed(&self) -> bool {
        false
    }
    /// For a checkpointed RDD: cut the lineage if every partition's file is written
    /// (called on the driver after each job).
    fn finish_checkpoint(&self) {}
}

/// After a job on `rdd`: cut the lineage of every checkpointed RDD in it whose files are
/// all written. Walks the whole lineage iteratively, stopping at cut checkpoints.
pub fn finish_checkpoints(rdd: &Arc<dyn RddBase>) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![rdd.clone()];
    while let Some(r) = stack.pop() {
        if !seen.insert(r.id()) {
            continue;
        }
        r.finish_checkpoint();
        for dep in r.dependencies() {
            match dep {
                Dependency::Narrow(p) => stack.push(p),
                Dependency::Shuffle(s) => stack.push(s.rdd()),
            }
        }
    }
}

/// The partitioner placing the keys of `rdd`, if any (see [`RddBase::partitioner`]).
pub(crate) fn partitioner_of<K: 'static>(
    rdd: &dyn RddBase,
) -> Option<SerArc<dyn crate::partitioner::Partitioner<K>>> {
    rdd.partitioner()?
        .downcast_ref::<SerArc<dyn crate::partitioner::Partitioner<K>>>()
        .cloned()
}

/// The first node up a pipeline of one-to-one nodes from `rdd` that is not one (a source,
/// a shuffle, a union …).
pub(crate) fn pipeline_source(mut rdd: Arc<dyn RddBase>) -> Arc<dyn RddBase> {
    while let Some((parent, _)) = rdd.one_to_one_parent() {
        rdd = parent;
    }
    rdd
}

/// The partitioner that still places `rdd`'s keys: followed up one-to-one nodes while they
/// keep keys, iteratively.
pub(crate) fn kept_partitioner(mut rdd: Arc<dyn RddBase>) -> Option<Arc<dyn Any + Send + Sync>> {
    loop {
        match rdd.one_to_one_parent() {
            Some((parent, true)) => rdd = parent,
            Some((_, false)) => return None,
            None => return rdd.partitioner(),
        }
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

/// Narrow dependencies on two parents (zips, cartesian products).
pub(crate) fn both_narrow<T: 'static, U: 'static>(
    left: &NodeRef<T>,
    right: &NodeRef<U>,
) -> Vec<Dependency> {
    vec![
        Dependency::Narrow(base_of(left)),
        Dependency::Narrow(base_of(right)),
    ]
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
                partitions: self.node.num_partitions(),
                key: crate::cache::new_key(),
                level,
            },
        )
    }

    /// Save this RDD's partitions to reliable storage and cut its lineage, for long
    /// lineages (iterative algorithms) and cheap recovery. Use the returned RDD: the
    /// first job that computes it writes each partition to the directory set with
    /// `Context::set_checkpoint_dir` (a file per partition, written atomically, with
    /// checksums); once all are written, its lineage is dropped and later jobs, and
    /// partitions lost downstream, read the files instead of recomputing.
    ///
    /// Unlike [`Rdd::cache`] (fast, in executors' memory, lost with an executor and
    /// recomputed from lineage), a checkpoint survives executors and ends the lineage;
    /// each partition is computed once and written as it passes.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// # let dir = std::env::temp_dir().join(format!("spate-doc-ckpt-{}", std::process::id()));
    /// ctx.set_checkpoint_dir(&dir)?;
    /// let mut ranks = ctx.range(0, 100, 4);
    /// for round in 1..=30 {
    ///     ranks = ranks.map(|x| x + 1);
    ///     if round % 10 == 0 {
    ///         ranks = ranks.checkpoint()?; // cut the lineage every 10 rounds
    ///     }
    /// }
    /// assert_eq!(ranks.reduce(|a, b| a + b)?, Some((30..130).sum::<i64>()));
    /// assert!(ranks.is_checkpointed());
    /// # Ok::<(), spate::Error>(())
    /// ```
    #[track_caller]
    pub fn checkpoint(&self) -> Result<Rdd<T>> {
        let Some(root) = self.sc.checkpoint_dir() else {
            return Err(crate::Error::Config(
                "no checkpoint directory: call ctx.set_checkpoint_dir(dir) before rdd.checkpoint()"
                    .into(),
            ));
        };
        let meta = NodeMeta::new(&*self.sc, "checkpoint");
        let dir = root.join(format!("rdd-{}", meta.id));
        let node = checkpoint::CheckpointNode {
            meta,
            dir,
            partitions: self.node.num_partitions(),
            partitioner: kept_partitioner(self.base()),
            parent: std::sync::Mutex::new(Some(self.node.clone())),
        };
        Ok(Rdd {
            node: SerArc::new_volatile(node),
            sc: self.sc.clone(),
        })
    }

    /// Whether this is a checkpointed RDD whose partitions are all written (its lineage
    /// is cut).
    pub fn is_checkpointed(&self) -> bool {
        self.node.is_checkpointed()
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

    /// A human-readable description of the lineage, one node per line (like Spark's
    /// `toDebugString`): a node's narrow parents follow it at the same indentation, after
    /// `| `; a shuffle is marked `+- shuffle N` and its map side indented below it. A node
    /// reached again (a diamond) is printed once. Iterative, so any depth prints.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let counts = ctx.range(0, 10, 2).map(|x| (x % 3, 1)).reduce_by_key(|a, b| a + b);
    /// let lines: Vec<String> = counts.debug_string().lines().map(str::to_string).collect();
    /// assert!(lines[0].starts_with("(2) reduce_by_key["));
    /// assert!(lines[1].starts_with("+- shuffle"));
    /// assert!(lines[2].starts_with("  (2) map["));
    /// assert!(lines[3].starts_with("  | range["));
    /// // a thousand narrow operations are a thousand lines, not a staircase
    /// let deep = (0..1000).fold(ctx.range(0, 4, 2), |r, _| r.map(|x| x + 1));
    /// assert!(deep.debug_string().lines().all(|l| l.len() < 100));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn debug_string(&self) -> String {
        use std::fmt::Write;
        enum Line {
            /// A node, its indentation, and whether a narrow dependency reached it.
            Node(Arc<dyn RddBase>, usize, bool),
            /// A shuffle boundary and its indentation.
            Shuffle(ShuffleId, usize),
        }
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![Line::Node(self.base(), 0, false)];
        while let Some(line) = stack.pop() {
            let (node, indent, narrow) = match line {
                Line::Shuffle(id, indent) => {
                    let _ = writeln!(out, "{:indent$}+- shuffle {id}", "");
                    continue;
                }
                Line::Node(node, indent, narrow) => (node, indent, narrow),
            };
            let again = !seen.insert(node.id());
            let _ = match (narrow, again) {
                (true, false) => writeln!(out, "{:indent$}| {}", "", node.meta()),
                (false, false) => writeln!(
                    out,
                    "{:indent$}({}) {}",
                    "",
                    node.num_partitions(),
                    node.meta()
                ),
                (_, true) => writeln!(out, "{:indent$}| {} (see above)", "", node.meta()),
            };
            if again {
                continue;
            }
            // Pushed in reverse so that they print in order.
            for dep in node.dependencies().into_iter().rev() {
                match dep {
                    Dependency::Narrow(p) => stack.push(Line::Node(p, indent, true)),
                    Dependency::Shuffle(s) => {
                        stack.push(Line::Node(s.rdd(), indent + 2, false));
                        stack.push(Line::Shuffle(s.shuffle_id(), indent));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batched map/filter/flat_map give what the std adapters give, pulled one by one,
    /// folded, or pulled part way and then folded (the elements already pulled from a
    /// flat_map's current element are not lost or repeated).
    #[test]
    fn batched_ops_match_std_adapters() {
        for (n, from_vec) in [0usize, 1, 255, 256, 257, 1000]
            .into_iter()
            .flat_map(|n| [(n, false), (n, true)])
        {
            // Over an iterator, and over a vector.
            let src = || match from_vec {
                false => PartIter::new(0..n as u64),
                true => PartIter::from_vec((0..n as u64).collect()),
            };
            let chain = |it: PartIter<u64>| {
                it.map_batched(|x| x * 3)
                    .filter_batched(|x| x % 2 == 0)
                    .flat_map_batched(|x| 0..(x % 5))
                    .map_batched(|x| x + 1)
            };
            let want: Vec<u64> = (0..n as u64)
                .map(|x| x * 3)
                .filter(|x| x % 2 == 0)
                .flat_map(|x| 0..(x % 5))
                .map(|x| x + 1)
                .collect();
            assert_eq!(chain(src()).collect::<Vec<_>>(), want, "pulled, n = {n}");
            assert_eq!(collect_vec(chain(src())), want, "folded, n = {n}");
            for k in [1, 2, 7] {
                let mut it = chain(src());
                let mut got: Vec<u64> = it.by_ref().take(k).collect();
                it.for_each(|x| got.push(x));
                assert_eq!(got, want, "pulled {k} then folded, n = {n}");
                let mut plain = src();
                let mut got: Vec<u64> = plain.by_ref().take(k).collect();
                assert_eq!(plain.size_hint().0, n.saturating_sub(k), "n = {n}");
                got.extend(plain.fold(Vec::new(), |mut v, x| {
                    v.push(x);
                    v
                }));
                assert_eq!(got, (0..n as u64).collect::<Vec<_>>(), "source, n = {n}");
            }
        }
    }
}
