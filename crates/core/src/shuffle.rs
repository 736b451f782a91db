//! The seam between map tasks, reduce tasks and wherever shuffle data lives.
//!
//! A map task hands one block per reduce partition to a [`ShuffleService`]; a reduce task
//! asks it for its block from every map output. Local mode keeps the blocks as live objects
//! (`spate-shuffle`'s in-memory store, no serialization); the distributed mode implements
//! the same trait with files, an index and HTTP fetches.

pub mod frame;

use crate::data::Data;
use crate::error::Result;
use crate::rdd::{RddBase, ShuffleId};
use crate::task::TaskContext;
use serde::Serialize;
use std::any::Any;
use std::sync::Arc;

/// What a finished map task reports: where its output is and how big each block is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapStatus {
    /// The executor holding the output.
    pub executor: String,
    /// Records per reduce partition.
    pub records: Vec<u64>,
}

/// One block of shuffle data as the map task made it: a typed vector of records.
pub trait BlockData: Send + Sync + 'static {
    /// For the typed reader to downcast.
    fn as_any(&self) -> &dyn Any;
    /// Number of records.
    fn records(&self) -> usize;
    /// The records encoded (for stores that keep bytes: files, the network) in pieces of
    /// about `target` bytes, each a self-contained encoded `Vec<R>` handed to `emit`.
    /// Small pieces are what keeps a large shuffle fast: each is encoded into and
    /// compressed from one buffer that stays in cache, instead of a block-sized buffer
    /// allocated (and page-faulted in) per block.
    fn encode_chunks(&self, target: usize, emit: &mut dyn FnMut(&[u8]) -> Result<()>)
    -> Result<()>;
    /// Rough bytes the records hold in memory (inline size plus, from a sample of
    /// records, their encoded size as a stand-in for what they own on the heap): how a
    /// store that keeps objects decides when to move blocks to disk instead.
    fn size_estimate(&self) -> usize;
}

impl<T: Data> BlockData for Vec<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn records(&self) -> usize {
        self.len()
    }
    fn encode_chunks(
        &self,
        target: usize,
        emit: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let target = target.max(1);
        let mut buf = Vec::with_capacity(target + target / 4);
        // Records per piece from the sampled record size, corrected after every piece.
        let mut per = (target / sampled_encoded_size(self).max(1)).max(1);
        let mut rest = self.as_slice();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(per.min(rest.len()));
            buf.clear();
            crate::ship::codec::to_writer(&mut buf, piece)
                .map_err(|e| crate::Error::Other(format!("encoding a shuffle block: {e}")))?;
            emit(&buf)?;
            per = (piece.len() * target / buf.len().max(1)).max(1);
            rest = tail;
        }
        Ok(())
    }
    fn size_estimate(&self) -> usize {
        self.len() * (std::mem::size_of::<T>() + sampled_encoded_size(self))
    }
}

/// Mean encoded size of a sample of (at most 32) records.
fn sampled_encoded_size<T: Serialize>(records: &[T]) -> usize {
    const SAMPLE: usize = 32;
    if records.is_empty() {
        return 0;
    }
    let step = records.len().div_ceil(SAMPLE);
    let (mut bytes, mut n) = (0u64, 0u64);
    for r in records.iter().step_by(step) {
        bytes += bincode::serialized_size(r).unwrap_or(0);
        n += 1;
    }
    (bytes / n.max(1)) as usize
}

/// A block as a reduce task receives it.
pub enum Block {
    /// The map task's own object (local mode).
    Object(Arc<dyn BlockData>),
    /// A segment of frames ([`frame`]) read from disk or the network, its checksums
    /// verified; the reader decompresses and decodes it frame by frame. Shared bytes: a
    /// segment kept in memory or received whole is handed over without a copy.
    Frames(bytes::Bytes),
    /// A block still arriving (fetched concurrently): calling this waits for it. The
    /// reader decodes the blocks before it meanwhile, so fetching overlaps decoding.
    Pending(Box<dyn FnOnce() -> Result<Block> + Send>),
}

/// Receives one map task's output in chunks: each chunk holds one block per reduce
/// partition. A map task over its memory budget hands over ("spills") what it has buffered
/// and goes on; [`MapWriter::commit`] makes the whole output visible at once.
pub trait MapWriter {
    /// Take a chunk: `buckets[r]` is for reduce partition `r`.
    fn spill(&mut self, buckets: Vec<Box<dyn BlockData>>) -> Result<()>;
    /// Publish the output (replacing an earlier output of the same map task).
    fn commit(self: Box<Self>) -> Result<MapStatus>;
    /// Whether this writer wants frames: the map task then encodes each record as it
    /// comes ([`frame::EncodingBuckets`]) and hands chunks over with
    /// [`MapWriter::spill_encoded`], rather than buffering objects. Stores that keep bytes
    /// always do; `records_own_heap` says the records own heap data (a `String`, a `Vec`),
    /// so that a clone of one costs about what decoding it does.
    fn wants_encoded(&self, _records_own_heap: bool) -> bool {
        false
    }
    /// Take a chunk already encoded as frames.
    fn spill_encoded(&mut self, _chunk: frame::EncodedChunk) -> Result<()> {
        Err(crate::Error::Other(
            "this shuffle store takes map outputs as objects only".into(),
        ))
    }
}

/// Stores and serves map outputs.
pub trait ShuffleService: Send + Sync + 'static {
    /// Start writing the output of map task `map` of `shuffle`, with `reduces` reduce
    /// partitions, on `executor`.
    fn map_writer(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduces: usize,
        executor: &str,
    ) -> Result<Box<dyn MapWriter + '_>>;

    /// Store a whole map output at once.
    fn write_map_output(
        &self,
        shuffle: ShuffleId,
        map: usize,
        buckets: Vec<Box<dyn BlockData>>,
        executor: &str,
    ) -> Result<MapStatus> {
        let mut w = self.map_writer(shuffle, map, buckets.len(), executor)?;
        w.spill(buckets)?;
        w.commit()
    }
    /// The blocks for reduce partition `reduce` from map tasks `0..maps`, in map order (a
    /// map output that was spilled may contribute several blocks).
    /// A missing output is [`crate::Error::FetchFailed`] naming the map partition.
    fn read_blocks(&self, shuffle: ShuffleId, reduce: usize, maps: usize) -> Result<Vec<Block>>;
    /// Forget one map output (its executor was lost or it failed a fetch).
    fn remove_map_output(&self, shuffle: ShuffleId, map: usize);
    /// Whether a map output is stored.
    fn has_map_output(&self, shuffle: ShuffleId, map: usize) -> bool;
    /// Forget every map output of `shuffle` (no RDD reads it any more).
    fn remove_shuffle(&self, _shuffle: ShuffleId) {}
}

/// A shuffle dependency, type-erased: the scheduler runs its map tasks through this, and
/// it ships with them.
pub trait ShuffleDependency: crate::ship::EncodeSelf + Send + Sync + 'static {
    /// The shuffle id.
    fn shuffle_id(&self) -> ShuffleId;
    /// The map-side RDD.
    fn rdd(&self) -> Arc<dyn RddBase>;
    /// Number of reduce partitions.
    fn num_reduce_partitions(&self) -> usize;
    /// Compute map partition `map`, partition (and combine) its records, store them.
    fn run_map_task(&self, map: usize, tc: &TaskContext) -> Result<MapStatus>;
}
