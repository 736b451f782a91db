//! An executor's map outputs: kept in memory as frames while they fit the executor's
//! budget, else in its [`DiskStore`]. A kept segment is served and read as shared
//! [`Bytes`]: no file is written, opened or read, nothing is copied, and no blocking
//! thread is involved. Outputs are as durable either way: an executor's block server goes
//! with it, so a lost executor loses its files too and the scheduler recomputes them.

use crate::disk::{DiskStore, Tiered, check_chunk_width};
use bytes::Bytes;
use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::BlockData;
use spate_core::shuffle::frame::{EncodedChunk, FRAME_BYTES, FrameWriter, Segment};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Budget of an executor that was given none: small, since the executor's memory is not
/// known here.
pub const DEFAULT_EXECUTOR_MEMORY_BUDGET: usize = 64 << 20;

/// One map output kept in memory: per reduce partition, its segment as the pieces the
/// map task built it in (each holds whole frames; together they are the segment).
struct Kept {
    segments: Vec<Vec<Bytes>>,
    bytes: usize,
}

/// An executor's map outputs, in memory up to `budget` bytes of frames, else on disk.
pub struct BlockStore {
    disk: DiskStore,
    budget: usize,
    /// Bytes of the outputs kept in memory.
    held: AtomicUsize,
    kept: RwLock<HashMap<(ShuffleId, usize), Kept>>,
}

impl BlockStore {
    /// A store keeping up to `budget` bytes in memory, and files in (a created) `dir`.
    pub fn new(dir: impl Into<PathBuf>, budget: usize) -> Result<Self> {
        Ok(BlockStore {
            disk: DiskStore::new(dir)?,
            budget,
            held: AtomicUsize::new(0),
            kept: RwLock::new(HashMap::new()),
        })
    }

    /// The directory of the outputs that went to disk.
    pub fn dir(&self) -> &Path {
        self.disk.dir()
    }

    /// Bytes of map outputs held in memory.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn fits(&self, more: usize) -> bool {
        self.held_bytes().saturating_add(more) <= self.budget
    }

    /// Start writing map output `map` of `shuffle`.
    pub fn writer(&self, shuffle: ShuffleId, map: usize, reduces: usize) -> BlockWriter<'_> {
        BlockWriter {
            store: self,
            shuffle,
            map,
            tier: Tiered::new(reduces),
        }
    }

    /// The segment of one reduce partition, in pieces of whole frames, when its map
    /// output is kept in memory.
    pub fn kept_segment(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduce: usize,
    ) -> Option<Vec<Bytes>> {
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
        kept.get(&(shuffle, map))
            .and_then(|k| k.segments.get(reduce).cloned())
    }

    /// The segment of one reduce partition, from memory or else from disk (blocking), or
    /// `None` when this store does not have that map output.
    pub fn read_segment(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduce: usize,
    ) -> std::io::Result<Option<Bytes>> {
        let kept = {
            let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
            kept.get(&(shuffle, map))
                .map(|k| k.segments.get(reduce).cloned())
        };
        if let Some(segment) = kept {
            return Ok(segment.map(join_pieces));
        }
        Ok(self
            .disk
            .read_segment(shuffle, map, reduce)?
            .map(Bytes::from))
    }

    fn kept_in_memory(&self, shuffle: ShuffleId, map: usize) -> bool {
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
        kept.contains_key(&(shuffle, map))
    }

    /// Whether a map output is stored.
    pub fn has(&self, shuffle: ShuffleId, map: usize) -> bool {
        self.kept_in_memory(shuffle, map) || self.disk.has(shuffle, map)
    }

    /// Forget a map output kept in memory, releasing its bytes.
    fn forget(&self, shuffle: ShuffleId, map: usize) {
        let old = {
            let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
            kept.remove(&(shuffle, map))
        };
        if let Some(old) = old {
            self.held.fetch_sub(old.bytes, Ordering::Relaxed);
        }
    }

    /// Delete a map output, wherever it is.
    pub fn remove(&self, shuffle: ShuffleId, map: usize) {
        self.forget(shuffle, map);
        self.disk.remove(shuffle, map);
    }

    /// Delete every map output of `shuffle`.
    pub fn remove_shuffle(&self, shuffle: ShuffleId) {
        let maps: Vec<usize> = {
            let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
            kept.keys()
                .filter(|(s, _)| *s == shuffle)
                .map(|k| k.1)
                .collect()
        };
        for map in maps {
            self.forget(shuffle, map);
        }
        self.disk.remove_shuffle(shuffle);
    }
}

/// Writes one map output: chunks stay in memory while the store's budget has room for
/// them; once one does not fit, the whole output goes to disk. Nothing is visible until
/// [`BlockWriter::commit`].
pub struct BlockWriter<'a> {
    store: &'a BlockStore,
    shuffle: ShuffleId,
    map: usize,
    tier: Tiered<'a, EncodedChunk>,
}

impl<'a> BlockWriter<'a> {
    /// Take a chunk of objects (`buckets[r]` for reduce partition `r`): encoded into
    /// frames here, or written to disk once this output is there.
    pub fn spill<B: AsRef<dyn BlockData>>(&mut self, buckets: &[B]) -> Result<()> {
        check_chunk_width(buckets.len(), self.tier.records.len())?;
        if let Some(disk) = &mut self.tier.disk {
            return disk.spill(buckets);
        }
        let mut framer = FrameWriter::default();
        let mut chunk = EncodedChunk {
            segments: Vec::with_capacity(buckets.len()),
            records: Vec::with_capacity(buckets.len()),
        };
        for b in buckets {
            let b = b.as_ref();
            let mut segment = Segment::default();
            b.encode_chunks(FRAME_BYTES, &mut |encoded| {
                framer
                    .write_segment(&mut segment, encoded)
                    .map_err(|e| Error::Other(format!("compressing a shuffle frame: {e}")))?;
                Ok(())
            })?;
            chunk.segments.push(segment);
            chunk.records.push(b.records() as u64);
        }
        self.spill_encoded(chunk)
    }

    /// Take a chunk already encoded as frames.
    pub fn spill_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        check_chunk_width(
            chunk.segments.len().max(chunk.records.len()),
            self.tier.records.len(),
        )?;
        let store = self.store;
        let size = |c: &EncodedChunk| c.segments.iter().map(Segment::len).sum();
        match self.tier.keep(
            chunk,
            size,
            |c| c.records.clone(),
            |bytes| store.fits(bytes),
        ) {
            Ok(kept) => {
                spate_core::metrics::record(|m| m.shuffle_write_bytes += kept as u64);
                Ok(())
            }
            // Over budget: this whole output goes to disk, the chunks kept so far first.
            Err(chunk) => {
                let (shuffle, map, reduces) = (self.shuffle, self.map, self.tier.records.len());
                self.tier
                    .disk(
                        || Ok(store.disk.writer(shuffle, map, reduces)),
                        |w, kept| w.spill_encoded(kept),
                    )?
                    .spill_encoded(chunk)
            }
        }
    }

    /// Publish the output (replacing an earlier one of the same map task); returns
    /// records per reduce partition.
    pub fn commit(self) -> Result<Vec<u64>> {
        let BlockWriter {
            store,
            shuffle,
            map,
            tier:
                Tiered {
                    chunks,
                    bytes,
                    records,
                    disk,
                },
        } = self;
        if let Some(w) = disk {
            let records = w.commit()?;
            store.forget(shuffle, map);
            return Ok(records);
        }
        let segments = join_chunks(chunks, records.len());
        store.held.fetch_add(bytes, Ordering::Relaxed);
        let old = {
            let mut kept = store.kept.write().unwrap_or_else(|p| p.into_inner());
            kept.insert((shuffle, map), Kept { segments, bytes })
        };
        if let Some(old) = old {
            store.held.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        // An earlier run of this map task may have gone to disk.
        store.disk.remove(shuffle, map);
        Ok(records)
    }
}

/// Per reduce partition, the pieces of its frames from every chunk in order (frames
/// concatenate as bytes), taken over without a copy.
fn join_chunks(chunks: Vec<EncodedChunk>, reduces: usize) -> Vec<Vec<Bytes>> {
    let mut joined: Vec<Vec<Bytes>> = (0..reduces).map(|_| Vec::new()).collect();
    for chunk in chunks {
        for (mine, seg) in joined.iter_mut().zip(chunk.segments) {
            mine.extend(seg.into_pieces().into_iter().map(Bytes::from));
        }
    }
    joined
}

/// A segment's pieces as one buffer (copied only when there are several).
pub fn join_pieces(pieces: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(pieces) {
        Ok([one]) => one,
        Err(pieces) => Bytes::from(pieces.concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_core::shuffle::frame::{EncodingBuckets, decode_records, verify_segment};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spate-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A chunk of `per` records `(i, text)` for each of `reduces` partitions.
    fn chunk(reduces: usize, per: u64, base: u64) -> EncodedChunk {
        let mut b = EncodingBuckets::new(reduces);
        for r in 0..reduces {
            for i in 0..per {
                b.push(r, &(base + i, format!("value {r} {i}")))
                    .expect("push");
            }
        }
        b.finish().expect("finish")
    }

    fn read(store: &BlockStore, map: usize, reduce: usize) -> Vec<(u64, String)> {
        let seg = store
            .read_segment(7, map, reduce)
            .expect("io")
            .expect("present");
        verify_segment(&seg).expect("verifies");
        decode_records(&seg).expect("decodes")
    }

    /// Write map output `map` of shuffle 7 as one chunk; returns its record counts.
    fn put(store: &BlockStore, map: usize, chunk: EncodedChunk) -> Vec<u64> {
        let mut w = store.writer(7, map, chunk.segments.len());
        w.spill_encoded(chunk).expect("spill");
        w.commit().expect("commit")
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    #[test]
    fn outputs_within_budget_stay_in_memory_and_larger_ones_go_to_disk() {
        let dir = tmp("budget");
        let store = BlockStore::new(&dir, 4 << 10).expect("store");
        // Two chunks that fit: kept, joined per reduce partition, no file written.
        let mut w = store.writer(7, 0, 2);
        w.spill_encoded(chunk(2, 10, 0)).expect("spill");
        w.spill_encoded(chunk(2, 10, 100)).expect("spill");
        assert_eq!(w.commit().expect("commit"), vec![20, 20]);
        assert!(store.held_bytes() > 0 && store.has(7, 0));
        assert_eq!(files(&dir), 0, "nothing on disk");
        let got = read(&store, 0, 1);
        assert_eq!(got.len(), 20);
        assert_eq!((got[0].0, got[10].0), (0, 100), "chunks in order");
        let pieces = store.kept_segment(7, 0, 1).expect("kept");
        assert_eq!(pieces.len(), 2, "one piece per chunk, not copied together");
        assert_eq!(
            Some(join_pieces(pieces)),
            store.read_segment(7, 0, 1).expect("io")
        );
        // A chunk over what is left: this output goes to disk whole.
        let held = store.held_bytes();
        let mut w = store.writer(7, 1, 2);
        w.spill_encoded(chunk(2, 10, 0)).expect("spill");
        w.spill_encoded(chunk(2, 5000, 10)).expect("spill");
        assert_eq!(w.commit().expect("commit"), vec![5010, 5010]);
        assert_eq!(store.held_bytes(), held, "the disk output holds no memory");
        assert!(store.kept_segment(7, 1, 0).is_none() && store.has(7, 1));
        assert!(files(&dir) >= 2, "data and index files");
        assert_eq!(read(&store, 1, 0).len(), 5010);
        // Objects are encoded into frames in memory too.
        let mut w = store.writer(7, 2, 2);
        let objects: Vec<Box<dyn BlockData>> = vec![
            Box::new(vec![(1u64, "a".to_string())]),
            Box::new(Vec::<(u64, String)>::new()),
        ];
        w.spill(&objects).expect("spill");
        assert_eq!(w.commit().expect("commit"), vec![1, 0]);
        assert_eq!(read(&store, 2, 0), vec![(1, "a".to_string())]);
        assert!(read(&store, 2, 1).is_empty());
        // Removing releases the memory and the files.
        store.remove_shuffle(7);
        assert_eq!(store.held_bytes(), 0);
        assert!(!store.has(7, 0) && !store.has(7, 1) && !store.has(7, 2));
        assert_eq!(files(&dir), 0);
        assert!(store.read_segment(7, 0, 0).expect("io").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rerun_map_task_replaces_its_output_wherever_it_was() {
        let dir = tmp("rerun");
        let store = BlockStore::new(&dir, 1 << 20).expect("store");
        put(&store, 0, chunk(1, 3, 0));
        let once = store.held_bytes();
        put(&store, 0, chunk(1, 3, 0));
        assert_eq!(
            store.held_bytes(),
            once,
            "the replaced output's bytes are released"
        );
        // A rerun that goes to disk releases the memory; one that fits again removes the
        // files.
        let small = BlockStore::new(tmp("small"), once).expect("store");
        put(&small, 0, chunk(1, 3, 0));
        assert_eq!((small.held_bytes(), files(small.dir())), (once, 0));
        put(&small, 0, chunk(1, 5000, 0));
        assert_eq!((small.held_bytes(), files(small.dir()) >= 2), (0, true));
        assert_eq!(read(&small, 0, 0).len(), 5000);
        put(&small, 0, chunk(1, 3, 0));
        assert_eq!((small.held_bytes(), files(small.dir())), (once, 0));
        assert_eq!(read(&small, 0, 0).len(), 3);
        // A budget of 0 keeps nothing in memory.
        let zero = BlockStore::new(tmp("zero"), 0).expect("store");
        put(&zero, 0, chunk(1, 3, 0));
        assert_eq!((zero.held_bytes(), files(zero.dir()) >= 2), (0, true));
        for d in [small.dir(), zero.dir(), &dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn chunks_wider_than_the_output_are_errors() {
        let store = BlockStore::new(tmp("width"), 1 << 20).expect("store");
        let mut w = store.writer(7, 0, 1);
        let err = w.spill_encoded(chunk(2, 1, 0)).expect_err("too wide");
        assert!(err.to_string().contains("more than 1 buckets"), "{err}");
        let _ = std::fs::remove_dir_all(store.dir());
    }
}
