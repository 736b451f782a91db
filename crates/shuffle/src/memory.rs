//! In-memory shuffle store for local mode: map outputs stay live objects (no
//! serialization) up to a memory budget; beyond it, map outputs are written to a
//! [`DiskStore`] in a temporary directory, as an executor would, so a large shuffle does
//! not hold a copy of every block in memory.

use crate::disk::{DiskStore, DiskWriter, Tiered, check_chunk_width};
use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::frame::{EncodedChunk, Segment, verify_segment};
use spate_core::shuffle::{Block, BlockData, MapStatus, MapWriter, ShuffleService};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Default for [`MemoryShuffleStore::with_budget`].
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// One block of a map output kept in memory.
enum Kept {
    /// The map task's objects, cloned by readers.
    Objects(Arc<dyn BlockData>),
    /// Frames: what a map task hands over when its records own heap data (a clone of
    /// such a record costs an allocation, as decoding it does, and frames take a fraction
    /// of the memory).
    Frames(bytes::Bytes),
}

/// A chunk a map task handed over, kept until the output is committed.
enum Chunk {
    Objects(Vec<Arc<dyn BlockData>>),
    Frames(EncodedChunk),
}

enum Stored {
    /// Per reduce partition, one block per chunk the map task handed over; and their
    /// size (estimated for objects), counted in the store's budget.
    Memory {
        blocks: Vec<Vec<Kept>>,
        bytes: usize,
    },
    /// In the store's disk directory.
    Disk,
}

struct MapOutput {
    executor: String,
    stored: Stored,
}

struct MemoryWriter<'a> {
    store: &'a MemoryShuffleStore,
    shuffle: ShuffleId,
    map: usize,
    executor: String,
    tier: Tiered<'a, Chunk>,
}

impl<'a> MemoryWriter<'a> {
    /// Keep `chunk` in memory if the budget has room, else send it (and this whole
    /// output) to disk.
    fn put(&mut self, chunk: Chunk) -> Result<()> {
        let store = self.store;
        let size = |c: &Chunk| match c {
            Chunk::Objects(bs) => bs.iter().map(|b| b.size_estimate()).sum(),
            Chunk::Frames(f) => f.segments.iter().map(Segment::len).sum(),
        };
        let records = |c: &Chunk| match c {
            Chunk::Objects(bs) => bs.iter().map(|b| b.records() as u64).collect(),
            Chunk::Frames(f) => f.records.clone(),
        };
        match self
            .tier
            .keep(chunk, size, records, |bytes| store.fits(bytes))
        {
            Ok(_) => Ok(()),
            Err(chunk) => to_disk(self.disk_writer()?, chunk),
        }
    }

    /// Send this output to disk from now on, the chunks kept so far first.
    fn disk_writer(&mut self) -> Result<&mut DiskWriter<'a>> {
        let (store, shuffle, map) = (self.store, self.shuffle, self.map);
        let reduces = self.tier.records.len();
        self.tier
            .disk(|| Ok(store.disk()?.writer(shuffle, map, reduces)), to_disk)
    }
}

fn to_disk(w: &mut DiskWriter<'_>, chunk: Chunk) -> Result<()> {
    match chunk {
        Chunk::Objects(blocks) => w.spill(&blocks),
        Chunk::Frames(frames) => w.spill_encoded(frames),
    }
}

impl MapWriter for MemoryWriter<'_> {
    fn spill(&mut self, buckets: Vec<Box<dyn BlockData>>) -> Result<()> {
        check_chunk_width(buckets.len(), self.tier.records.len())?;
        match &mut self.tier.disk {
            Some(w) => w.spill(&buckets),
            None => self.put(Chunk::Objects(buckets.into_iter().map(Arc::from).collect())),
        }
    }

    /// Records that own heap data are kept as frames; so is everything once the budget
    /// is spent (by other outputs or by this one's first chunks: the rest goes to disk).
    fn wants_encoded(&self, records_own_heap: bool) -> bool {
        records_own_heap || self.tier.disk.is_some() || !self.store.fits(self.tier.bytes + 1)
    }

    fn spill_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        check_chunk_width(chunk.segments.len(), self.tier.records.len())?;
        self.put(Chunk::Frames(chunk))
    }

    fn commit(self: Box<Self>) -> Result<MapStatus> {
        let MemoryWriter {
            store,
            shuffle,
            map,
            executor,
            tier:
                Tiered {
                    chunks,
                    bytes,
                    records,
                    disk,
                },
        } = *self;
        let (stored, records) = match disk {
            Some(w) => (Stored::Disk, w.commit()?),
            None => {
                // Per reduce partition, its block of every chunk (empty ones left out).
                let mut blocks: Vec<Vec<Kept>> = (0..records.len()).map(|_| Vec::new()).collect();
                for chunk in chunks {
                    // A segment is kept as its pieces: each holds whole frames.
                    let kept: Vec<Vec<Kept>> = match chunk {
                        Chunk::Objects(bs) => bs
                            .into_iter()
                            .map(|b| {
                                (b.records() > 0)
                                    .then_some(Kept::Objects(b))
                                    .into_iter()
                                    .collect()
                            })
                            .collect(),
                        Chunk::Frames(f) => f
                            .segments
                            .into_iter()
                            .map(|seg| {
                                seg.into_pieces()
                                    .into_iter()
                                    .map(|p| Kept::Frames(p.into()))
                                    .collect()
                            })
                            .collect(),
                    };
                    for (list, k) in blocks.iter_mut().zip(kept) {
                        list.extend(k);
                    }
                }
                (Stored::Memory { blocks, bytes }, records)
            }
        };
        store.insert(
            (shuffle, map),
            MapOutput {
                executor: executor.clone(),
                stored,
            },
        )?;
        Ok(MapStatus { executor, records })
    }
}

/// Map outputs keyed by (shuffle, map partition): objects while they fit the budget,
/// else files in a temporary directory (made on first use, deleted with the store).
pub struct MemoryShuffleStore {
    // A std RwLock: writes happen once per map task, reads once per reduce task, and no
    // lock is held across user code, so contention is negligible.
    outputs: RwLock<HashMap<(ShuffleId, usize), MapOutput>>,
    budget: usize,
    /// Estimated bytes of the object outputs held.
    held: AtomicU64,
    disk: OnceLock<DiskStore>,
}

impl Default for MemoryShuffleStore {
    fn default() -> Self {
        Self::with_budget(DEFAULT_MEMORY_BUDGET)
    }
}

impl Drop for MemoryShuffleStore {
    fn drop(&mut self) {
        if let Some(d) = self.disk.get() {
            let _ = std::fs::remove_dir_all(d.dir());
        }
    }
}

impl MemoryShuffleStore {
    /// An empty store with the default budget ([`DEFAULT_MEMORY_BUDGET`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping up to about `bytes` of map outputs as objects.
    pub fn with_budget(bytes: usize) -> Self {
        MemoryShuffleStore {
            outputs: RwLock::new(HashMap::new()),
            budget: bytes,
            held: AtomicU64::new(0),
            disk: OnceLock::new(),
        }
    }

    fn poisoned() -> Error {
        Error::Other("shuffle store lock poisoned".into())
    }

    /// Whether `more` bytes of objects still fit the budget.
    fn fits(&self, more: usize) -> bool {
        self.held.load(Ordering::Relaxed) as usize + more <= self.budget
    }

    /// The disk store, made on first use.
    fn disk(&self) -> Result<&DiskStore> {
        if let Some(d) = self.disk.get() {
            return Ok(d);
        }
        static STORES: AtomicU64 = AtomicU64::new(0);
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "spate-shuffle-{}-{}",
            std::process::id(),
            STORES.fetch_add(1, Ordering::Relaxed)
        ));
        let store = DiskStore::new(dir)?;
        tracing::info!(dir = %store.dir().display(), budget = self.budget, "local shuffle outputs over the memory budget go to disk");
        if let Err(store) = self.disk.set(store) {
            // Another task made one at the same time: keep the first.
            let _ = std::fs::remove_dir_all(store.dir());
        }
        self.disk
            .get()
            .ok_or_else(|| Error::Other("shuffle disk store not set".into()))
    }

    fn insert(&self, key: (ShuffleId, usize), output: MapOutput) -> Result<()> {
        if let Stored::Memory { bytes, .. } = &output.stored {
            self.held.fetch_add(*bytes as u64, Ordering::Relaxed);
        }
        let old = self
            .outputs
            .write()
            .map_err(|_| Self::poisoned())?
            .insert(key, output);
        if let Some(old) = old {
            self.forget(key, old);
        }
        Ok(())
    }

    /// Release what a replaced or removed output held. A disk output's files are kept
    /// when a newer output of the same map task replaced it (same file names).
    fn forget(&self, key: (ShuffleId, usize), output: MapOutput) {
        match output.stored {
            Stored::Memory { bytes, .. } => {
                self.held.fetch_sub(bytes as u64, Ordering::Relaxed);
            }
            Stored::Disk => {
                let replaced_by_disk = self.outputs.read().is_ok_and(|m| {
                    matches!(
                        m.get(&key),
                        Some(MapOutput {
                            stored: Stored::Disk,
                            ..
                        })
                    )
                });
                if !replaced_by_disk && let Some(d) = self.disk.get() {
                    d.remove(key.0, key.1);
                }
            }
        }
    }
}

impl ShuffleService for MemoryShuffleStore {
    fn map_writer(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduces: usize,
        executor: &str,
    ) -> Result<Box<dyn MapWriter + '_>> {
        Ok(Box::new(MemoryWriter {
            store: self,
            shuffle,
            map,
            executor: executor.to_string(),
            tier: Tiered::new(reduces),
        }))
    }

    fn read_blocks(&self, shuffle: ShuffleId, reduce: usize, maps: usize) -> Result<Vec<Block>> {
        let missing = |map: usize, executor: &str, message: &str| Error::FetchFailed {
            shuffle,
            map,
            reduce,
            executor: executor.to_string(),
            message: message.to_string(),
        };
        // Objects are taken under the lock; files are read after it is released.
        let mut out: Vec<Block> = Vec::new();
        let mut on_disk: Vec<(usize, usize, String)> = Vec::new();
        {
            let m = self.outputs.read().map_err(|_| Self::poisoned())?;
            for map in 0..maps {
                let o = m
                    .get(&(shuffle, map))
                    .ok_or_else(|| missing(map, "unknown", "map output missing"))?;
                match &o.stored {
                    Stored::Memory { blocks, .. } => {
                        let chunks = blocks.get(reduce).ok_or_else(|| {
                            missing(map, &o.executor, "no block for this reduce partition")
                        })?;
                        out.extend(chunks.iter().map(|k| match k {
                            Kept::Objects(b) => Block::Object(b.clone()),
                            // Shared, not copied.
                            Kept::Frames(seg) => Block::Frames(seg.clone()),
                        }));
                    }
                    Stored::Disk => on_disk.push((map, out.len(), o.executor.clone())),
                }
            }
        }
        // Insert each file's blocks where its map output comes in map order (from the
        // back, so earlier positions stay valid).
        for (map, at, executor) in on_disk.into_iter().rev() {
            let segment = self
                .disk
                .get()
                .ok_or_else(|| missing(map, &executor, "shuffle directory missing"))?
                .read_segment(shuffle, map, reduce)
                .map_err(|e| missing(map, &executor, &format!("reading map output: {e}")))?
                .ok_or_else(|| missing(map, &executor, "map output file missing"))?;
            verify_segment(&segment)
                .map_err(|e| missing(map, &executor, &format!("corrupt map output: {}", e.0)))?;
            out.insert(at, Block::Frames(segment.into()));
        }
        Ok(out)
    }

    fn remove_map_output(&self, shuffle: ShuffleId, map: usize) {
        let removed = match self.outputs.write() {
            Ok(mut m) => m.remove(&(shuffle, map)),
            Err(_) => None,
        };
        if let Some(o) = removed {
            self.forget((shuffle, map), o);
        }
    }

    fn has_map_output(&self, shuffle: ShuffleId, map: usize) -> bool {
        self.outputs
            .read()
            .is_ok_and(|m| m.contains_key(&(shuffle, map)))
    }

    fn remove_shuffle(&self, shuffle: ShuffleId) {
        let maps: Vec<usize> = match self.outputs.read() {
            Ok(m) => m
                .keys()
                .filter(|(s, _)| *s == shuffle)
                .map(|k| k.1)
                .collect(),
            Err(_) => return,
        };
        for map in maps {
            self.remove_map_output(shuffle, map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_core::shuffle::frame::EncodingBuckets;

    #[test]
    fn write_read_and_lose_outputs() {
        let store = MemoryShuffleStore::new();
        let st = store
            .write_map_output(
                3,
                0,
                vec![Box::new(vec![1u32, 2]), Box::new(Vec::<u32>::new())],
                "driver",
            )
            .expect("write");
        assert_eq!(st.records, vec![2, 0]);
        store
            .write_map_output(
                3,
                1,
                vec![Box::new(vec![7u32]), Box::new(vec![8u32])],
                "driver",
            )
            .expect("write");
        assert_eq!(read_u32s(&store, 0, 2).expect("read"), vec![1, 2, 7]);
        store.remove_map_output(3, 1);
        match store.read_blocks(3, 0, 2) {
            Err(Error::FetchFailed {
                shuffle: 3, map: 1, ..
            }) => {}
            other => panic!(
                "expected FetchFailed for map 1, got {:?}",
                other.map(|v| v.len())
            ),
        }
        store.remove_shuffle(3);
        assert!(!store.has_map_output(3, 0));
    }

    fn read_u32s(store: &MemoryShuffleStore, reduce: usize, maps: usize) -> Result<Vec<u32>> {
        let mut got = Vec::new();
        for b in store.read_blocks(3, reduce, maps)? {
            match b {
                Block::Object(b) => got.extend(
                    b.as_any()
                        .downcast_ref::<Vec<u32>>()
                        .cloned()
                        .unwrap_or_default(),
                ),
                Block::Frames(seg) => got.extend(
                    spate_core::shuffle::frame::decode_records::<u32>(&seg).expect("decodes"),
                ),
                Block::Pending(_) => panic!("local blocks are never pending"),
            }
        }
        Ok(got)
    }

    #[test]
    fn outputs_over_the_budget_go_to_disk_and_are_cleaned_up() {
        // Room for about one output of 100 u32s (4 bytes + ~4 encoded each).
        let store = MemoryShuffleStore::with_budget(1000);
        for map in 0..3u32 {
            let block: Vec<u32> = (0..100).map(|i| map * 1000 + i).collect();
            // Two chunks per map output, as a spilling map task hands them over.
            let mut w = store
                .map_writer(3, map as usize, 2, "driver")
                .expect("writer");
            w.spill(vec![Box::new(block[..50].to_vec()), Box::new(vec![map])])
                .expect("spill");
            w.spill(vec![
                Box::new(block[50..].to_vec()),
                Box::new(Vec::<u32>::new()),
            ])
            .expect("spill");
            let st = w.commit().expect("commit");
            assert_eq!(st.records, vec![100, 1]);
        }
        let outputs = |store: &MemoryShuffleStore| {
            let m = store.outputs.read().expect("lock");
            (0..3)
                .map(|map| matches!(m[&(3, map)].stored, Stored::Disk))
                .collect::<Vec<_>>()
        };
        assert_eq!(outputs(&store), vec![false, true, true]);

        let want: Vec<u32> = (0..3)
            .flat_map(|m| (0..100).map(move |i| m * 1000 + i))
            .collect();
        assert_eq!(read_u32s(&store, 0, 3).expect("read"), want);
        assert_eq!(read_u32s(&store, 1, 3).expect("read"), vec![0, 1, 2]);

        // A lost file is a fetch failure naming its map output.
        let dir = store.disk.get().expect("disk store").dir().to_path_buf();
        std::fs::remove_file(dir.join("shuffle_3_1.data")).expect("remove");
        match read_u32s(&store, 0, 3) {
            Err(Error::FetchFailed { map: 1, .. }) => {}
            other => panic!("expected FetchFailed for map 1, got {other:?}"),
        }
        // Removing outputs frees the budget and deletes their files.
        store.remove_shuffle(3);
        assert_eq!(store.held.load(Ordering::Relaxed), 0);
        assert!(!dir.join("shuffle_3_2.index").exists());
        drop(store);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn encoded_chunks_are_kept_in_memory_while_the_budget_lasts() {
        let encoded = |xs: &[u32]| {
            let mut b = EncodingBuckets::new(2);
            for x in xs {
                b.push(0, x).expect("push");
            }
            b.finish().expect("finish")
        };
        for (budget, on_disk) in [(0, true), (DEFAULT_MEMORY_BUDGET, false)] {
            let store = MemoryShuffleStore::with_budget(budget);
            let mut w = store.map_writer(3, 0, 2, "driver").expect("writer");
            // Objects for plain records while there is room; frames for records owning
            // heap data, and once the budget is spent.
            assert_eq!(w.wants_encoded(false), on_disk, "budget {budget}");
            assert!(w.wants_encoded(true));
            w.spill_encoded(encoded(&[7, 8])).expect("spill");
            w.spill(vec![Box::new(vec![9u32])]).expect("spill");
            w.spill_encoded(encoded(&[10])).expect("spill");
            assert_eq!(w.commit().expect("commit").records, vec![4, 0]);
            assert_eq!(read_u32s(&store, 0, 1).expect("read"), vec![7, 8, 9, 10]);
            let m = store.outputs.read().expect("lock");
            assert_eq!(matches!(m[&(3, 0)].stored, Stored::Disk), on_disk);
            let held = store.held.load(Ordering::Relaxed);
            assert_eq!(held == 0, on_disk, "memory outputs count in the budget");
        }
    }
}
