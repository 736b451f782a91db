//! The executor-side shuffle service for one task: writes map output to this executor's
//! disk store, reads reduce input from local disk or, concurrently, from other
//! executors' block servers.

use crate::client::{self, FetchError};
use crate::disk::DiskStore;
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
    store: Arc<DiskStore>,
    /// This executor's block server address: blocks here are read from disk directly.
    me: String,
    executor: String,
    /// For each shuffle the task reads: the block server of every map output.
    locations: HashMap<ShuffleId, Vec<String>>,
    runtime: tokio::runtime::Handle,
}

impl RemoteShuffle {
    /// A view for one task.
    pub fn new(
        store: Arc<DiskStore>,
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
    inner: crate::disk::DiskWriter<'a>,
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
        let store = self.store.clone();
        let me = self.me.clone();
        let owned = locs.to_vec();
        // Fetch every remote block concurrently; local ones are read from disk directly.
        let segments: Vec<std::result::Result<Vec<u8>, Error>> =
            self.runtime.block_on(async move {
                let fetches = owned.into_iter().take(maps).enumerate().map(|(map, addr)| {
                    let store = store.clone();
                    let me = me.clone();
                    async move {
                        if addr == me {
                            let read = tokio::task::spawn_blocking(move || {
                                store.read_segment(shuffle, map, reduce)
                            })
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
                });
                let handles: Vec<_> = fetches.map(tokio::spawn).collect();
                let mut out = Vec::with_capacity(handles.len());
                for h in handles {
                    out.push(
                        h.await
                            .unwrap_or_else(|e| Err(Error::Other(format!("fetch task: {e}")))),
                    );
                }
                out
            });
        let mut blocks = Vec::new();
        for (map, seg) in segments.into_iter().enumerate() {
            let seg = seg?;
            verify_segment(&seg).map_err(|c| {
                lost(
                    shuffle,
                    map,
                    reduce,
                    &locs[map],
                    format!("corrupt block: {}", c.0),
                )
            })?;
            blocks.push(Block::Frames(seg));
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
        let local = Arc::new(DiskStore::new(base.join("a")).expect("a"));
        let far = Arc::new(DiskStore::new(base.join("b")).expect("b"));
        let b0: Vec<Box<dyn BlockData>> = vec![Box::new(vec![1u32, 2])];
        let b1: Vec<Box<dyn BlockData>> = vec![Box::new(vec![3u32])];
        local.write(0, 0, &b0).expect("w");
        far.write(0, 1, &b1).expect("w");
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
        let locations = HashMap::from([(0usize, vec![me.clone(), far_addr.clone()])]);
        let svc = RemoteShuffle::new(
            local.clone(),
            me,
            "e1".into(),
            locations,
            rt.handle().clone(),
        );
        let blocks =
            std::thread::scope(|s| s.spawn(|| svc.read_blocks(0, 0, 2)).join().expect("thread"))
                .expect("read");
        let mut all = Vec::new();
        for b in blocks {
            match b {
                Block::Frames(seg) => all.extend(decode_records::<u32>(&seg).expect("decode")),
                Block::Object(_) => panic!("remote blocks are bytes"),
            }
        }
        assert_eq!(all, vec![1, 2, 3]);
        far.remove(0, 1);
        let err =
            std::thread::scope(|s| s.spawn(|| svc.read_blocks(0, 0, 2)).join().expect("thread"))
                .err()
                .expect("lost");
        match err {
            Error::FetchFailed {
                shuffle: 0,
                map: 1,
                executor,
                ..
            } => assert_eq!(executor, far_addr),
            other => panic!("expected FetchFailed, got {other}"),
        }
        let _ = stop.send(());
        std::fs::remove_dir_all(&base).ok();
    }
}
