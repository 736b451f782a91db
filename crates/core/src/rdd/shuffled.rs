//! Shuffles: [`ShuffleDep`] is the map side (partition, combine, hand blocks to the shuffle
//! service), [`ShuffledNode`] the reduce side (read blocks from every map output, merge,
//! optionally sort).

use super::{
    Dependency, JobRunner, NodeMeta, NodeRef, PartIter, RddBase, RddNode, ShuffleId, base_of,
    compute,
};
use crate::aggregator::{Aggregator, CombineMap};
use crate::data::{Data, Key};
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::ship::{SerArc, Upcast};
use crate::shuffle::frame::{self, EncodingBuckets};
use crate::shuffle::{Block, BlockData, MapStatus, MapWriter, ShuffleDependency};
use crate::task::{TaskContext, raise};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

/// Map side of a shuffle of `(K, V)` records into `(K, C)` blocks.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: DeserializeOwned"))]
pub struct ShuffleDep<K: 'static, V: 'static, C, A> {
    pub(crate) shuffle_id: ShuffleId,
    pub(crate) parent: NodeRef<(K, V)>,
    pub(crate) partitioner: SerArc<dyn Partitioner<K>>,
    pub(crate) aggregator: A,
    #[serde(skip)]
    pub(crate) _types: PhantomData<fn() -> C>,
}

impl<C: ShuffleDependency> Upcast<dyn ShuffleDependency> for C {
    fn upcast(self: Arc<Self>) -> Arc<dyn ShuffleDependency> {
        self
    }
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>> ShuffleDependency
    for ShuffleDep<K, V, C, A>
{
    fn shuffle_id(&self) -> ShuffleId {
        self.shuffle_id
    }
    fn rdd(&self) -> Arc<dyn RddBase> {
        base_of(&self.parent)
    }
    fn num_reduce_partitions(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn run_map_task(&self, map: usize, tc: &TaskContext) -> Result<MapStatus> {
        let n = self.partitioner.num_partitions();
        let records = compute(&self.parent, map, tc);
        let mut writer = tc
            .shuffle
            .map_writer(self.shuffle_id, map, n, &tc.executor)?;
        let mut budget = SpillBudget::new(tc.spill_bytes);
        let mut failed: Option<Error> = None;
        let agg = &self.aggregator;
        let partitioner = &*self.partitioner;
        // One chunk of combined pairs, partitioned, to the writer (as frames if it wants
        // them for records like the chunk's first).
        let hand_over = |writer: &mut Box<dyn MapWriter + '_>,
                         pairs: &mut dyn Iterator<Item = (K, C)>|
         -> Result<()> {
            let first = pairs.next();
            let encoded = writer.wants_encoded(first.as_ref().is_some_and(owns_heap));
            let pairs = first.into_iter().chain(pairs);
            if encoded {
                let mut buckets = EncodingBuckets::new(n);
                for (k, c) in pairs {
                    buckets.push(partitioner.partition(&k), &(k, c))?;
                }
                return writer.spill_encoded(buckets.finish()?);
            }
            let mut buckets = empty_buckets::<K, C>(n, pairs.size_hint().0);
            for (k, c) in pairs {
                let r = partitioner.partition(&k);
                buckets[r].push((k, c));
            }
            writer.spill(into_blocks(buckets))
        };
        if A::COMBINES {
            // Map-side combine into one table, then distribute: one hash probe per record
            // and a cache-friendly table regardless of the reduce partition count. Over
            // budget, the table so far is spilled and a new one started; the reduce side
            // merges combiners of every chunk anyway.
            let mut combined = CombineMap::default();
            let mut values = 0usize;
            records.for_each(|(k, v)| {
                if failed.is_some() {
                    return;
                }
                budget.sample(&k, &v);
                values += 1;
                let entries = if A::GROWS { values } else { combined.len() };
                if budget.over(entries) {
                    values = 0;
                    let full = std::mem::take(&mut combined);
                    if let Err(e) = hand_over(&mut writer, &mut full.into_pairs()) {
                        failed = Some(e);
                    }
                }
                combined.insert_value(agg, k, v);
            });
            if let Some(e) = failed {
                return Err(e);
            }
            hand_over(&mut writer, &mut combined.into_pairs())?;
        } else {
            // Only here: on the combining path above, pulling the first record before the
            // fold measured 7 % slower (word count).
            let mut records = records.peekable();
            if writer.wants_encoded(records.peek().is_some_and(owns_heap)) {
                // Each record is encoded as it comes, while it is in cache, and dropped; the
                // budget counts the encoded bytes held.
                let mut buckets = EncodingBuckets::new(n);
                records.for_each(|(k, v)| {
                    if failed.is_some() {
                        return;
                    }
                    let r = partitioner.partition(&k);
                    if let Err(e) = buckets.push(r, &(k, agg.create_combiner(v))) {
                        failed = Some(e);
                        return;
                    }
                    if budget.over_bytes(buckets.held_bytes()) {
                        let full = std::mem::replace(&mut buckets, EncodingBuckets::new(n));
                        if let Err(e) = full.finish().and_then(|c| writer.spill_encoded(c)) {
                            failed = Some(e);
                        }
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                writer.spill_encoded(buckets.finish()?)?;
            } else {
                let mut buckets = empty_buckets::<K, C>(n, records.size_hint().0);
                let mut buffered = 0usize;
                records.for_each(|(k, v)| {
                    if failed.is_some() {
                        return;
                    }
                    budget.sample(&k, &v);
                    buffered += 1;
                    if budget.over(buffered) {
                        buffered = 1;
                        let blocks =
                            into_blocks(std::mem::replace(&mut buckets, empty_buckets(n, 0)));
                        if let Err(e) = writer.spill(blocks) {
                            failed = Some(e);
                        }
                    }
                    let r = partitioner.partition(&k);
                    buckets[r].push((k, agg.create_combiner(v)));
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                writer.spill(into_blocks(buckets))?;
            }
        }
        if budget.spills > 0 {
            tracing::debug!(
                shuffle = self.shuffle_id,
                map,
                spills = budget.spills,
                "map output spilled"
            );
        }
        writer.commit()
    }
}

/// Whether a record owns heap data (a `String`, a `Vec`): encoded it is bigger than in
/// memory. A clone of such a record costs an allocation, as decoding it does.
fn owns_heap<T: Serialize>(record: &T) -> bool {
    bincode::serialized_size(record).is_ok_and(|n| n as usize > std::mem::size_of::<T>())
}

/// `n` buckets for about `expected` records in all, sized for an even spread plus an
/// eighth (growing them record by record copies each several times), at most 64 Ki
/// records each up front.
fn empty_buckets<K, C>(n: usize, expected: usize) -> Vec<Vec<(K, C)>> {
    let each = (expected / n.max(1)).min(1 << 16);
    let each = if each == 0 { 0 } else { each + each / 8 };
    (0..n).map(|_| Vec::with_capacity(each)).collect()
}

fn into_blocks<K: Data, C: Data>(buckets: Vec<Vec<(K, C)>>) -> Vec<Box<dyn BlockData>> {
    buckets
        .into_iter()
        .map(|b| Box::new(b) as Box<dyn BlockData>)
        .collect()
}

/// Estimates a map task's buffered bytes as entries × an average entry size, the average
/// taken from the encoded size of a sample of records (every 256th), so that accounting
/// costs nothing noticeable per record.
struct SpillBudget {
    limit: Option<usize>,
    seen: u64,
    avg: usize,
    spills: usize,
}

impl SpillBudget {
    fn new(limit: Option<usize>) -> Self {
        SpillBudget {
            limit,
            seen: 0,
            avg: 64,
            spills: 0,
        }
    }

    /// Look at one record (every 256th is measured).
    #[inline]
    fn sample<K: Serialize, V: Serialize>(&mut self, k: &K, v: &V) {
        if self.limit.is_some() && self.seen.is_multiple_of(256) {
            let size = bincode::serialized_size(&(k, v)).unwrap_or(64) as usize;
            // In memory an entry costs more than encoded (headers, padding, table slack).
            self.avg = (self.avg * 3 + 2 * size + 32) / 4;
        }
        self.seen += 1;
    }

    /// Whether `bytes` buffered bytes exceed the budget (then the caller spills).
    #[inline]
    fn over_bytes(&mut self, bytes: usize) -> bool {
        let over = self.limit.is_some_and(|limit| bytes > limit);
        self.spills += usize::from(over);
        over
    }

    /// Whether `entries` buffered entries exceed the budget (then the caller spills).
    #[inline]
    fn over(&mut self, entries: usize) -> bool {
        let over = self
            .limit
            .is_some_and(|limit| entries.saturating_mul(self.avg) > limit);
        self.spills += usize::from(over);
        over
    }
}

/// Iterates the records of shuffle blocks: objects are cloned (map outputs are kept for
/// later jobs and retries), frames are decompressed one at a time into one buffer and
/// their records decoded and moved out.
pub(crate) struct BlockIter<R> {
    blocks: std::vec::IntoIter<Block>,
    /// The object block being cloned from, and the next index in it.
    object: Option<(Arc<dyn BlockData>, usize)>,
    /// The segment being decoded, and where its next frame starts.
    segment: bytes::Bytes,
    pos: usize,
    /// Decoded records of the current frame not yet handed out.
    owned: std::vec::IntoIter<R>,
    /// Decompression buffer, reused across frames.
    buf: Vec<u8>,
    shuffle: ShuffleId,
    reduce: usize,
}

impl<R: Data> Iterator for BlockIter<R> {
    type Item = R;
    fn next(&mut self) -> Option<R> {
        loop {
            if let Some(r) = self.owned.next() {
                return Some(r);
            }
            if let Some((block, index)) = &mut self.object {
                let Some(records) = block.as_any().downcast_ref::<Vec<R>>() else {
                    raise(wrong_block_type::<R>())
                };
                if let Some(r) = records.get(*index) {
                    *index += 1;
                    return Some(r.clone());
                }
                self.object = None;
            }
            if self.pos < self.segment.len() {
                self.owned = self.next_frame().into_iter();
                continue;
            }
            let block = self.blocks.next()?;
            if let Some(b) = self.open(block) {
                self.object = Some((b, 0));
            }
        }
    }
}

/// The block, once it has arrived; a block that failed to arrive fails the task with its
/// error (a `FetchFailed` naming the map output).
fn arrived(block: Block) -> Block {
    let mut block = block;
    while let Block::Pending(wait) = block {
        block = wait().unwrap_or_else(|e| raise(e));
    }
    block
}

fn wrong_block_type<R>() -> Error {
    Error::Other(format!(
        "shuffle block holds another type than {}",
        std::any::type_name::<R>()
    ))
}

impl<R: Data> BlockIter<R> {
    fn new(blocks: Vec<Block>, shuffle: ShuffleId, reduce: usize) -> Self {
        BlockIter {
            blocks: blocks.into_iter(),
            object: None,
            segment: bytes::Bytes::new(),
            pos: 0,
            owned: Vec::new().into_iter(),
            buf: Vec::new(),
            shuffle,
            reduce,
        }
    }

    /// Start on `block` once it has arrived: a segment becomes the one being decoded, an
    /// object block (counted in the task's metrics) is returned.
    fn open(&mut self, block: Block) -> Option<Arc<dyn BlockData>> {
        match arrived(block) {
            Block::Object(b) => {
                let n = b.records() as u64;
                crate::metrics::record(|m| m.shuffle_read_records += n);
                Some(b)
            }
            Block::Frames(seg) => {
                self.segment = seg;
                self.pos = 0;
                None
            }
            Block::Pending(_) => unreachable!("arrived blocks are not pending"),
        }
    }

    /// Decompress and decode the current segment's next frame (counting it in the task's
    /// metrics).
    fn next_frame(&mut self) -> Vec<R> {
        let announced = self.decompress_frame();
        match crate::ship::codec::from_slice::<Vec<R>>(&self.buf) {
            Ok(v) => {
                self.decoded(announced, v.len());
                v
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    /// Decompress the current segment's next frame into `buf`; returns the records its
    /// header announces.
    fn decompress_frame(&mut self) -> u64 {
        frame::next_frame(&self.segment, &mut self.pos, &mut self.buf)
            .unwrap_or_else(|e| self.fail(e.0))
    }

    /// Count a decoded frame of `n` records in the task's metrics; a frame whose header
    /// announced another count fails the task (readers size their output by it).
    fn decoded(&self, announced: u64, n: usize) {
        if announced != n as u64 {
            self.fail(format!(
                "frame holds {n} records, its header says {announced}"
            ))
        }
        let len = self.buf.len() as u64;
        crate::metrics::record(|m| {
            m.shuffle_read_records += announced;
            m.shuffle_read_bytes += len;
        });
    }

    /// A frame that does not decode fails the task, naming the shuffle and reduce
    /// partition.
    fn fail(&self, what: String) -> ! {
        raise(Error::Other(format!(
            "decoding shuffle {} block for reduce partition {}: {what}",
            self.shuffle, self.reduce
        )))
    }

    /// All records in one vector, allocated once at its final size and decoded straight
    /// into place: growing it record by record would copy a large partition several
    /// times over, and collecting pieces first would hold every record twice. The size is
    /// known once every block has arrived (frames carry their record counts in the
    /// clear), so this waits for all fetches before decoding.
    pub(crate) fn into_vec(mut self) -> Vec<R> {
        if self.object.is_some() || self.owned.len() > 0 || self.pos < self.segment.len() {
            return self.collect();
        }
        let blocks: Vec<Block> = std::mem::take(&mut self.blocks).map(arrived).collect();
        let mut total = 0usize;
        for block in &blocks {
            total += match block {
                Block::Object(b) => b.records(),
                Block::Frames(seg) => frame::segment_records(seg)
                    .map_err(|e| e.0)
                    .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| self.fail(e)),
                Block::Pending(_) => unreachable!("arrived blocks are not pending"),
            };
        }
        let mut out = Vec::new();
        if let Err(e) = out.try_reserve_exact(total) {
            self.fail(format!("{total} records announced: {e}"))
        }
        for block in blocks {
            if let Some(b) = self.open(block) {
                match b.as_any().downcast_ref::<Vec<R>>() {
                    Some(records) => out.extend_from_slice(records),
                    None => raise(wrong_block_type::<R>()),
                }
            }
            while self.pos < self.segment.len() {
                let announced = self.decompress_frame();
                let before = out.len();
                if let Err(e) = crate::ship::codec::extend_from_slice(&mut out, &self.buf) {
                    self.fail(e.to_string())
                }
                self.decoded(announced, out.len() - before);
            }
        }
        out
    }
}

/// Read reduce partition `reduce` of `shuffle` from `maps` map outputs.
pub(crate) fn read_shuffle<R: Data>(
    tc: &TaskContext,
    shuffle: ShuffleId,
    reduce: usize,
    maps: usize,
) -> BlockIter<R> {
    let blocks = tc
        .shuffle
        .read_blocks(shuffle, reduce, maps)
        .unwrap_or_else(|e| raise(e));
    BlockIter::new(blocks, shuffle, reduce)
}

/// Orders a reduce partition by key, or leaves it alone. A type, not a function pointer,
/// so it ships with the task and needs no `Ord` bound on the node.
pub trait KeySort<K, C>: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Whether this sorts at all.
    const SORTS: bool;
    /// Sort in place.
    fn sort(&self, v: &mut Vec<(K, C)>);
}

/// No ordering.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct NoSort;
impl<K, C> KeySort<K, C> for NoSort {
    const SORTS: bool = false;
    fn sort(&self, _v: &mut Vec<(K, C)>) {}
}

/// Order by key, ascending or descending.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct SortByKey {
    /// Ascending if true.
    pub ascending: bool,
}
impl<K: Ord, C> KeySort<K, C> for SortByKey {
    const SORTS: bool = true;
    fn sort(&self, v: &mut Vec<(K, C)>) {
        if self.ascending {
            v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        } else {
            v.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        }
    }
}

/// Removes a shuffle's map stage and outputs when the last driver-side node that reads
/// it is dropped (Spark's ContextCleaner does the same): no later job can reach the
/// shuffle then, and its outputs would otherwise stay in memory (local mode) or on disk
/// for the life of the context. Executors' copies of the node never have one.
pub(crate) struct ShuffleGuard {
    shuffle: ShuffleId,
    runner: Weak<dyn JobRunner>,
}

impl ShuffleGuard {
    pub(crate) fn new(runner: &Arc<dyn JobRunner>, shuffle: ShuffleId) -> Arc<Self> {
        Arc::new(ShuffleGuard {
            shuffle,
            runner: Arc::downgrade(runner),
        })
    }
}

impl Drop for ShuffleGuard {
    fn drop(&mut self) {
        if let Some(runner) = self.runner.upgrade() {
            runner.remove_shuffle(self.shuffle);
        }
    }
}

/// Marker for a node's record types.
type Types<K, V, C> = fn() -> (K, V, C);

/// Reduce side of a shuffle.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "A: Serialize, S: Serialize",
    deserialize = "A: DeserializeOwned, S: DeserializeOwned"
))]
pub(crate) struct ShuffledNode<K: 'static, V, C, A, S> {
    pub meta: NodeMeta,
    pub shuffle_id: ShuffleId,
    pub maps: usize,
    pub partitions: usize,
    pub aggregator: A,
    /// How keys were placed, for co-partitioned joins and `lookup` on the driver (not
    /// shipped: executors only read).
    #[serde(skip)]
    pub partitioner: Option<SerArc<dyn Partitioner<K>>>,
    pub sort: S,
    /// The map side, for stage planning on the driver (not shipped: executors only read).
    #[serde(skip)]
    pub dep: Option<SerArc<dyn ShuffleDependency>>,
    /// Driver only: removes the shuffle when this node goes.
    #[serde(skip)]
    pub _guard: Option<Arc<ShuffleGuard>>,
    #[serde(skip)]
    pub _types: PhantomData<Types<K, V, C>>,
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>, S: KeySort<K, C>> RddBase
    for ShuffledNode<K, V, C, A, S>
{
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.partitioner
            .clone()
            .map(|p| Arc::new(p) as Arc<dyn Any + Send + Sync>)
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.dep
            .iter()
            .map(|d| Dependency::Shuffle(d.clone()))
            .collect()
    }
}

impl<K: Key, V: Data, C: Data, A: Aggregator<K, V, C>, S: KeySort<K, C>> RddNode<(K, C)>
    for ShuffledNode<K, V, C, A, S>
{
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<(K, C)> {
        if S::SORTS && !A::COMBINES {
            let mut v = read_shuffle::<(K, C)>(tc, self.shuffle_id, split, self.maps).into_vec();
            self.sort.sort(&mut v);
            return PartIter::from_vec(v);
        }
        let records = read_shuffle::<(K, C)>(tc, self.shuffle_id, split, self.maps);
        if A::COMBINES {
            let mut merged = CombineMap::default();
            records.for_each(|(k, c)| merged.insert_combiner(&self.aggregator, k, c));
            if S::SORTS {
                let mut v: Vec<(K, C)> = merged.into_pairs().collect();
                self.sort.sort(&mut v);
                PartIter::from_vec(v)
            } else {
                PartIter::new(merged.into_pairs())
            }
        } else {
            PartIter::new(records)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::frame::FrameWriter;

    /// A segment of `records` in frames of `per_frame` records each.
    fn segment(records: &[(u64, String)], per_frame: usize) -> Vec<u8> {
        let (mut seg, mut w) = (Vec::new(), FrameWriter::default());
        for piece in records.chunks(per_frame) {
            let encoded = crate::ship::codec::to_vec(piece).expect("encode");
            w.write(&mut seg, &encoded).expect("frame");
        }
        seg
    }

    fn iter(blocks: Vec<Block>) -> BlockIter<(u64, String)> {
        BlockIter::new(blocks, 4, 2)
    }

    fn records(range: std::ops::Range<u64>) -> Vec<(u64, String)> {
        range.map(|i| (i, "v".repeat(i as usize % 40))).collect()
    }

    /// The error raised reading `blocks()` record by record, and all at once.
    fn read_errors(blocks: impl Fn() -> Vec<Block>) -> [Error; 2] {
        let pulled = crate::task::catch_raised(|| iter(blocks()).collect::<Vec<_>>());
        let whole = crate::task::catch_raised(|| iter(blocks()).into_vec());
        [pulled.expect_err("pulled"), whole.expect_err("into_vec")]
    }

    #[test]
    fn blocks_of_objects_and_frames_read_in_order() {
        let blocks = || {
            vec![
                Block::Object(Arc::new(records(0..3))),
                Block::Frames(segment(&records(3..1000), 128).into()),
                Block::Frames(bytes::Bytes::new()),
                Block::Object(Arc::new(records(1000..1001))),
                Block::Pending(Box::new(|| {
                    Ok(Block::Frames(segment(&records(1001..1002), 1).into()))
                })),
            ]
        };
        let want = records(0..1002);
        assert_eq!(iter(blocks()).collect::<Vec<_>>(), want);
        assert_eq!(iter(blocks()).into_vec(), want);
    }

    #[test]
    fn a_block_that_fails_to_arrive_fails_the_task_with_its_error() {
        let lost = || Error::FetchFailed {
            shuffle: 4,
            map: 1,
            reduce: 2,
            executor: "e".into(),
            message: "gone".into(),
        };
        let blocks = || {
            vec![
                Block::Frames(segment(&records(0..3), 2).into()),
                Block::Pending(Box::new(move || Err(lost()))),
            ]
        };
        for err in read_errors(blocks) {
            assert!(matches!(err, Error::FetchFailed { map: 1, .. }), "{err}");
        }
    }

    #[test]
    fn a_frame_that_does_not_decode_names_the_shuffle_and_partition() {
        // Valid checksums are checked when fetched; here the body lies about its size, or
        // about its record count (readers size their output by the counts), or about a
        // count so large that no output could hold it.
        for (at, flip, says) in [
            (16, 0xff, "decompress"),
            (8, 0x01, "header says 5"),
            (15, 0xff, "records announced"),
        ] {
            let mut seg = segment(&records(0..10), 4);
            seg[at] ^= flip;
            let [pulled, whole] = read_errors(|| vec![Block::Frames(seg.clone().into())]);
            for msg in [pulled.to_string(), whole.to_string()] {
                assert!(
                    msg.contains("shuffle 4 block for reduce partition 2"),
                    "{msg}"
                );
            }
            let msg = whole.to_string();
            assert!(msg.contains(says), "{msg}");
        }
    }
}
