//! The executor-side shuffle service for one task: writes map output to this executor's
//! store, reads reduce input from it (memory, or disk) or, concurrently, from other
//! executors' block servers.

use crate::client::{self, FetchError};
use crate::store::{BlockStore, BlockWriter};
use bytes::Bytes;
use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::frame::{EncodedChunk, verify_segment};
use spate_core::shuffle::{Block, BlockData, MapStatus, MapWriter, ShuffleService};
use std::collections::HashMap;
use std::sync::Arc;

/// Connection retries per block before it counts as lost.
const FETCH_RETRIES: u32 = 3;

/// Shuffle access of one task on an executor.
pub struct RemoteShuffle {
    store: Arc<BlockStore>,
    /// This executor's block server address: blocks here are read from the store directly.
    me: String,
    executor: String,
    /// For each shuffle the task reads: the block server of every map output.
    locations: HashMap<ShuffleId, Vec<String>>,
    runtime: tokio::runtime::Handle,
}

impl RemoteShuffle {
    /// A view for one task.
    pub fn new(
        store: Arc<BlockStore>,
        me: String,
        executor: String,
        locations: HashMap<ShuffleId, Vec<String>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        RemoteShuffle {
            store,
            me,
            executor,
            locations,
            runtime,
        }
    }
}

fn lost(shuffle: ShuffleId, map: usize, reduce: usize, executor: &str, message: String) -> Error {
    Error::FetchFailed {
        shuffle,
        map,
        reduce,
        executor: executor.to_string(),
        message,
    }
}

struct RemoteWriter<'a> {
    inner: BlockWriter<'a>,
    executor: String,
}

impl MapWriter for RemoteWriter<'_> {
    fn spill(&mut self, buckets: Vec<Box<dyn BlockData>>) -> Result<()> {
        self.inner.spill(&buckets)
    }
    fn wants_encoded(&self, _records_own_heap: bool) -> bool {
        true
    }
    fn spill_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        self.inner.spill_encoded(chunk)
    }
    fn commit(self: Box<Self>) -> Result<MapStatus> {
        let RemoteWriter { inner, executor } = *self;
        Ok(MapStatus {
            executor,
            records: inner.commit()?,
        })
    }
}

/// A fetch under way: aborted if its block is never waited for (the task stopped early).
struct Fetch(Option<tokio::task::JoinHandle<Result<Bytes>>>);

impl Fetch {
    async fn wait(mut self) -> Result<Bytes> {
        match self.0.take() {
            Some(h) => h
                .await
                .unwrap_or_else(|e| Err(Error::Other(format!("fetch task: {e}")))),
            None => Err(Error::Other("fetch waited for twice".into())),
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

impl RemoteShuffle {
    /// Map output `map`'s segment for `reduce`: from disk when it is here (a kept one
    /// never gets here), else fetched from the executor at `addr`.
    fn fetch(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduce: usize,
        addr: &str,
    ) -> impl std::future::Future<Output = Result<Bytes>> + Send + 'static {
        let (store, addr, local) = (self.store.clone(), addr.to_string(), addr == self.me);
        async move {
            if local {
                let read =
                    tokio::task::spawn_blocking(move || store.read_segment(shuffle, map, reduce))
                        .await;
                match read {
                    Ok(Ok(Some(seg))) => Ok(seg),
                    Ok(Ok(None)) => Err(lost(
                        shuffle,
                        map,
                        reduce,
                        &addr,
                        "map output missing on local disk".into(),
                    )),
                    Ok(Err(e)) => Err(lost(
                        shuffle,
                        map,
                        reduce,
                        &addr,
                        format!("reading local map output: {e}"),
                    )),
                    Err(e) => Err(lost(
                        shuffle,
                        map,
                        reduce,
                        &addr,
                        format!("local read task: {e}"),
                    )),
                }
            } else {
                client::get(
                    &addr,
                    &format!("/shuffle/{shuffle}/{map}/{reduce}"),
                    FETCH_RETRIES,
                )
                .await
                .map_err(|e| match e {
                    FetchError::NotFound => lost(
                        shuffle,
                        map,
                        reduce,
                        &addr,
                        "map output missing on its executor".into(),
                    ),
                    other => lost(shuffle, map, reduce, &addr, other.to_string()),
                })
            }
        }
    }
}

impl ShuffleService for RemoteShuffle {
    fn map_writer(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduces: usize,
        _executor: &str,
    ) -> Result<Box<dyn MapWriter + '_>> {
        Ok(Box::new(RemoteWriter {
            inner: self.store.writer(shuffle, map, reduces),
            executor: self.executor.clone(),
        }))
    }

    fn read_blocks(&self, shuffle: ShuffleId, reduce: usize, maps: usize) -> Result<Vec<Block>> {
        let locs: &[String] = self.locations.get(&shuffle).map_or(&[], Vec::as_slice);
        if locs.len() < maps {
            return Err(lost(
                shuffle,
                locs.len(),
                reduce,
                "unknown",
                "no location for this map output".into(),
            ));
        }
        // A block kept in this executor's memory is at hand; every other one is fetched
        // (remote) or read from disk (local) concurrently, starting now. The reader waits
        // for each in map order.
        let mut blocks = Vec::with_capacity(maps);
        for (map, addr) in locs.iter().take(maps).enumerate() {
            if *addr == self.me
                && let Some(pieces) = self.store.kept_segment(shuffle, map, reduce)
            {
                blocks.extend(pieces.into_iter().map(Block::Frames));
                continue;
            }
            let fetch = Fetch(Some(
                self.runtime.spawn(self.fetch(shuffle, map, reduce, addr)),
            ));
            let (runtime, addr) = (self.runtime.clone(), addr.clone());
            let wait = move || -> Result<Block> {
                let seg = runtime.block_on(fetch.wait())?;
                verify_segment(&seg).map_err(|c| {
                    lost(
                        shuffle,
                        map,
                        reduce,
                        &addr,
                        format!("corrupt block: {}", c.0),
                    )
                })?;
                Ok(Block::Frames(seg))
            };
            blocks.push(Block::Pending(Box::new(wait)));
        }
        Ok(blocks)
    }

    fn remove_map_output(&self, shuffle: ShuffleId, map: usize) {
        self.store.remove(shuffle, map);
    }

    fn has_map_output(&self, shuffle: ShuffleId, map: usize) -> bool {
        self.store.has(shuffle, map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Served, serve};
    use spate_core::shuffle::frame::decode_records;

    #[test]
    fn reads_local_and_remote_blocks_and_names_what_is_lost() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let base = std::env::temp_dir().join(format!("spate-remote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let put = |store: &BlockStore, map: usize, records: Vec<u32>| {
            let mut w = store.writer(0, map, 1);
            w.spill(&[Box::new(records) as Box<dyn BlockData>])
                .expect("spill");
            w.commit().expect("commit");
        };
        // Here: map 0 kept in memory. Far: map 2 kept in memory (its budget holds just
        // that), map 1 on disk.
        let local = Arc::new(BlockStore::new(base.join("a"), 1 << 20).expect("a"));
        put(&local, 0, vec![1, 2]);
        let budget = local.held_bytes();
        let far = Arc::new(BlockStore::new(base.join("b"), budget).expect("b"));
        put(&far, 2, vec![4, 5]);
        put(&far, 1, vec![3]);
        assert_eq!(far.held_bytes(), budget);
        assert!(far.kept_segment(0, 1, 0).is_none() && far.kept_segment(0, 2, 0).is_some());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let far_addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(serve(
            listener,
            Served {
                store: far.clone(),
                results: base.join("r"),
            },
            async {
                let _ = stopped.await;
            },
        ));
        let me = "127.0.0.1:1".to_string();
        let locations =
            HashMap::from([(0usize, vec![me.clone(), far_addr.clone(), far_addr.clone()])]);
        let svc = RemoteShuffle::new(
            local.clone(),
            me,
            "e1".into(),
            locations,
            rt.handle().clone(),
        );
        // Off the runtime, as a task thread: blocks arrive as they are waited for.
        let read = || -> Result<Vec<u32>> {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut all = Vec::new();
                    let blocks = svc.read_blocks(0, 0, 3)?;
                    assert!(
                        matches!(blocks[0], Block::Frames(_)),
                        "a block kept here is at hand"
                    );
                    for b in blocks {
                        let mut b = b;
                        while let Block::Pending(wait) = b {
                            b = wait()?;
                        }
                        match b {
                            Block::Frames(seg) => all.extend(decode_records::<u32>(&seg)?),
                            _ => panic!("remote blocks are frames"),
                        }
                    }
                    Ok(all)
                })
                .join()
                .expect("thread")
            })
        };
        assert_eq!(read().expect("read"), vec![1, 2, 3, 4, 5]);
        // Blocks never waited for are dropped without waiting for them.
        let dropped = std::thread::scope(|s| {
            s.spawn(|| svc.read_blocks(0, 0, 3).map(|b| b.len()))
                .join()
                .expect("thread")
        });
        assert_eq!(dropped.expect("read"), 3);
        // A damaged block is a fetch failure naming its map output.
        let data = base.join("b").join("shuffle_0_1.data");
        let mut bytes = std::fs::read(&data).expect("data");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        std::fs::write(&data, &bytes).expect("write");
        match read() {
            Err(Error::FetchFailed {
                map: 1, message, ..
            }) => assert!(message.contains("corrupt block"), "{message}"),
            other => panic!("expected a corrupt block, got {other:?}"),
        }
        // Lost outputs, on disk or in memory, are fetch failures naming their map output.
        for map in [1, 2] {
            far.remove(0, map);
            match read().expect_err("lost") {
                Error::FetchFailed {
                    shuffle: 0,
                    map: m,
                    executor,
                    ..
                } => assert_eq!((m, executor), (1, far_addr.clone())),
                other => panic!("expected FetchFailed, got {other}"),
            }
        }
        put(&far, 1, vec![3]);
        match read().expect_err("lost") {
            Error::FetchFailed { map: 2, .. } => {}
            other => panic!("expected map 2 lost, got {other}"),
        }
        let _ = stop.send(());
        std::fs::remove_dir_all(&base).ok();
    }
}
