//! Persisted partitions: this process's store of cached RDD partitions.
//!
//! A persisted RDD ([`crate::rdd::Rdd::persist`]) stores each partition it computes here,
//! in memory, on disk, or in memory with a disk copy, under a process-unique key and the
//! partition index; later tasks on the same process read it instead of recomputing. The
//! task reports what it stored, so the scheduler knows where each cached partition lives
//! and places tasks there. A partition that is not here (evicted by unpersist, executor
//! lost, over the memory budget) is simply recomputed from lineage.

use crate::data::Data;
use crate::error::{Error, Result};
use crate::ship::codec;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Where persisted partitions are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageLevel {
    /// As objects in memory (skipped when over the process's memory budget).
    Memory,
    /// Encoded on local disk.
    Disk,
    /// In memory, and on disk when over the memory budget.
    MemoryAndDisk,
}

/// Identifies one persisted RDD within the process that runs the driver (unique across
/// contexts, unlike RDD ids).
pub type CacheKey = u64;

/// A fresh key for a newly persisted RDD.
pub fn new_key() -> CacheKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

enum Stored {
    Memory(Arc<dyn Any + Send + Sync>, usize),
    Disk(PathBuf),
}

#[derive(Default)]
struct Store {
    blocks: HashMap<(CacheKey, usize), Stored>,
    memory_used: usize,
}

fn store() -> &'static Mutex<Store> {
    static S: OnceLock<Mutex<Store>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Store::default()))
}

static DIR: OnceLock<PathBuf> = OnceLock::new();
/// Memory budget for cached partitions, bytes (estimated).
static BUDGET: AtomicUsize = AtomicUsize::new(1 << 30);

/// Where this process writes disk-level partitions (executors: in their work directory).
/// The default is a directory under the system temp dir.
pub fn set_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// The memory budget for cached partitions (default 1 GiB; `SPATE_CACHE_MEMORY` bytes).
pub fn set_memory_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

fn dir() -> PathBuf {
    DIR.get_or_init(|| std::env::temp_dir().join(format!("spate-cache-{}", std::process::id())))
        .clone()
}

thread_local! {
    /// Blocks stored by the task running on this thread.
    static STORED: RefCell<Vec<(CacheKey, usize)>> = const { RefCell::new(Vec::new()) };
}

/// Start a task on this thread.
pub(crate) fn begin_task() {
    STORED.with(|s| s.borrow_mut().clear());
}

/// The blocks the task that just ran on this thread stored.
pub fn take_stored() -> Vec<(CacheKey, usize)> {
    STORED.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// A cached partition, if this process has it.
pub(crate) fn get<T: Data>(key: CacheKey, p: usize) -> Option<Arc<Vec<T>>> {
    let path = {
        let s = store().lock().ok()?;
        match s.blocks.get(&(key, p))? {
            Stored::Memory(v, _) => return v.clone().downcast::<Vec<T>>().ok(),
            Stored::Disk(path) => path.clone(),
        }
    };
    // Read outside the lock; a missing or corrupt file is a miss (recompute).
    let bytes = std::fs::read(&path).ok()?;
    codec::from_slice::<Vec<T>>(&bytes).ok().map(Arc::new)
}

/// Store a computed partition at `level`; whether it was stored.
pub(crate) fn put<T: Data>(
    key: CacheKey,
    p: usize,
    level: StorageLevel,
    v: &Arc<Vec<T>>,
) -> Result<bool> {
    let size = v.len() * std::mem::size_of::<T>().max(1);
    let in_memory = level != StorageLevel::Disk
        && store()
            .lock()
            .map_err(|_| Error::Other("cache store poisoned".into()))
            .map(|mut s| {
                if s.memory_used + size > BUDGET.load(Ordering::Relaxed) {
                    return false;
                }
                s.memory_used += size;
                let old = s.blocks.insert(
                    (key, p),
                    Stored::Memory(v.clone() as Arc<dyn Any + Send + Sync>, size),
                );
                if let Some(Stored::Memory(_, n)) = old {
                    s.memory_used -= n;
                }
                true
            })?;
    let stored = if in_memory {
        true
    } else if level == StorageLevel::Memory {
        false
    } else {
        let dir = dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("creating the cache directory", &dir, e))?;
        let path = dir.join(format!("rdd-{key}-{p}"));
        let tmp = dir.join(format!(".rdd-{key}-{p}.tmp"));
        let bytes = codec::to_vec(v.as_ref())
            .map_err(|e| Error::Other(format!("encoding a cached partition: {e}")))?;
        std::fs::write(&tmp, bytes).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))?;
        if let Ok(mut s) = store().lock() {
            s.blocks.insert((key, p), Stored::Disk(path));
        }
        true
    };
    if stored {
        STORED.with(|s| s.borrow_mut().push((key, p)));
    }
    Ok(stored)
}

/// Drop every partition of persisted RDD `key` from this process.
pub fn remove(key: CacheKey) {
    let Ok(mut s) = store().lock() else { return };
    let gone: Vec<(CacheKey, usize)> = s
        .blocks
        .keys()
        .filter(|(k, _)| *k == key)
        .copied()
        .collect();
    for b in gone {
        match s.blocks.remove(&b) {
            Some(Stored::Memory(_, n)) => s.memory_used -= n,
            Some(Stored::Disk(path)) => {
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
    }
}

/// Partitions of `key` this process holds (for tests and the UI).
pub fn held(key: CacheKey) -> Vec<usize> {
    let mut v: Vec<usize> = store()
        .lock()
        .map(|s| {
            s.blocks
                .keys()
                .filter(|(k, _)| *k == key)
                .map(|(_, p)| *p)
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_store_where_they_say_and_remove_clears() {
        let (m, d) = (new_key(), new_key());
        let v = Arc::new(vec![1u64, 2, 3]);
        assert!(put(m, 0, StorageLevel::Memory, &v).expect("memory"));
        assert!(put(d, 0, StorageLevel::Disk, &v).expect("disk"));
        assert!(
            Arc::ptr_eq(&get::<u64>(m, 0).expect("hit"), &v),
            "memory keeps the object"
        );
        assert_eq!(*get::<u64>(d, 0).expect("hit"), vec![1, 2, 3]);
        assert!(get::<u64>(m, 1).is_none());
        remove(d);
        assert!(get::<u64>(d, 0).is_none());
        assert_eq!(held(m), vec![0]);
        remove(m);
        assert!(held(m).is_empty());
    }
}
