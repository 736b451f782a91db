//! In-memory shuffle store for local mode.

use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::{Block, BlockData, MapStatus, MapWriter, ShuffleService};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

struct MapOutput {
    executor: String,
    /// Per reduce partition, one block per chunk the map task handed over.
    blocks: Vec<Vec<Arc<dyn BlockData>>>,
}

struct MemoryWriter<'a> {
    store: &'a MemoryShuffleStore,
    shuffle: ShuffleId,
    map: usize,
    executor: String,
    blocks: Vec<Vec<Arc<dyn BlockData>>>,
    records: Vec<u64>,
}

impl MapWriter for MemoryWriter<'_> {
    fn spill(&mut self, buckets: Vec<Box<dyn BlockData>>) -> Result<()> {
        for (r, b) in buckets.into_iter().enumerate() {
            if r >= self.blocks.len() {
                return Err(Error::Other(format!(
                    "map output chunk has more than {} buckets",
                    self.blocks.len()
                )));
            }
            self.records[r] += b.records() as u64;
            if b.records() > 0 {
                self.blocks[r].push(Arc::from(b));
            }
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<MapStatus> {
        let mut m = self
            .store
            .outputs
            .write()
            .map_err(|_| MemoryShuffleStore::poisoned())?;
        m.insert(
            (self.shuffle, self.map),
            MapOutput {
                executor: self.executor.clone(),
                blocks: self.blocks,
            },
        );
        Ok(MapStatus {
            executor: self.executor,
            records: self.records,
        })
    }
}

/// Map outputs as typed objects, keyed by (shuffle, map partition).
#[derive(Default)]
pub struct MemoryShuffleStore {
    // A std RwLock: writes happen once per map task, reads once per reduce task, and no
    // lock is held across user code, so contention is negligible.
    outputs: RwLock<HashMap<(ShuffleId, usize), MapOutput>>,
}

impl MemoryShuffleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop every output of `shuffle`.
    pub fn remove_shuffle(&self, shuffle: ShuffleId) {
        if let Ok(mut m) = self.outputs.write() {
            m.retain(|(s, _), _| *s != shuffle);
        }
    }

    fn poisoned() -> Error {
        Error::Other("shuffle store lock poisoned".into())
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
            blocks: (0..reduces).map(|_| Vec::new()).collect(),
            records: vec![0; reduces],
        }))
    }

    fn read_blocks(&self, shuffle: ShuffleId, reduce: usize, maps: usize) -> Result<Vec<Block>> {
        let m = self.outputs.read().map_err(|_| Self::poisoned())?;
        let mut out = Vec::new();
        for map in 0..maps {
            let missing = |executor: &str, message: &str| Error::FetchFailed {
                shuffle,
                map,
                reduce,
                executor: executor.to_string(),
                message: message.to_string(),
            };
            let o = m
                .get(&(shuffle, map))
                .ok_or_else(|| missing("unknown", "map output missing"))?;
            let chunks = o
                .blocks
                .get(reduce)
                .ok_or_else(|| missing(&o.executor, "no block for this reduce partition"))?;
            out.extend(chunks.iter().cloned().map(Block::Object));
        }
        Ok(out)
    }

    fn remove_map_output(&self, shuffle: ShuffleId, map: usize) {
        if let Ok(mut m) = self.outputs.write() {
            m.remove(&(shuffle, map));
        }
    }

    fn has_map_output(&self, shuffle: ShuffleId, map: usize) -> bool {
        self.outputs
            .read()
            .is_ok_and(|m| m.contains_key(&(shuffle, map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let blocks = store.read_blocks(3, 0, 2).expect("read");
        let got: Vec<u32> = blocks
            .iter()
            .flat_map(|b| match b {
                Block::Object(b) => b
                    .as_any()
                    .downcast_ref::<Vec<u32>>()
                    .cloned()
                    .unwrap_or_default(),
                Block::Encoded(_) => Vec::new(),
            })
            .collect();
        assert_eq!(got, vec![1, 2, 7]);
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
}
