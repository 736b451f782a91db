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

/// A block in memory: the partition, its estimated size, its level, when it was last
/// read, and how to encode it (for moving it to disk when evicted).
struct InMemory {
    value: Arc<dyn Any + Send + Sync>,
    size: usize,
    level: StorageLevel,
    used: u64,
    encode: fn(&(dyn Any + Send + Sync)) -> Option<Vec<u8>>,
}

enum Stored {
    Memory(InMemory),
    Disk(PathBuf),
}

#[derive(Default)]
struct Store {
    blocks: HashMap<(CacheKey, usize), Stored>,
    memory_used: usize,
    clock: u64,
}

fn store() -> &'static Mutex<Store> {
    static S: OnceLock<Mutex<Store>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Store::default()))
}

static DIR: OnceLock<PathBuf> = OnceLock::new();
/// Memory budget for cached partitions, bytes (estimated); 0 = not read yet.
static BUDGET: AtomicUsize = AtomicUsize::new(0);

/// Where this process writes disk-level partitions (executors: in their work directory).
/// The default is a directory under the system temp dir.
pub fn set_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// The memory budget for cached partitions (default 1 GiB, or `SPATE_CACHE_MEMORY`
/// bytes in the process's environment).
pub fn set_memory_budget(bytes: usize) {
    BUDGET.store(bytes.max(1), Ordering::Relaxed);
}

fn budget() -> usize {
    match BUDGET.load(Ordering::Relaxed) {
        0 => {
            let b = std::env::var("SPATE_CACHE_MEMORY")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1 << 30)
                .max(1);
            BUDGET.store(b, Ordering::Relaxed);
            b
        }
        b => b,
    }
}

fn dir() -> PathBuf {
    DIR.get_or_init(|| std::env::temp_dir().join(format!("spate-cache-{}", std::process::id())))
        .clone()
}

fn encode_vec<T: Data>(v: &(dyn Any + Send + Sync)) -> Option<Vec<u8>> {
    codec::to_vec(v.downcast_ref::<Vec<T>>()?).ok()
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
        let mut guard = store().lock().ok()?;
        let s = &mut *guard;
        s.clock += 1;
        match s.blocks.get_mut(&(key, p))? {
            Stored::Memory(m) => {
                m.used = s.clock;
                return m.value.clone().downcast::<Vec<T>>().ok();
            }
            Stored::Disk(path) => path.clone(),
        }
    };
    // Read outside the lock; a missing or corrupt file is a miss (recompute).
    let bytes = std::fs::read(&path).ok()?;
    codec::from_slice::<Vec<T>>(&bytes).ok().map(Arc::new)
}

/// Write an encoded partition to the cache directory; its path.
fn write_file(key: CacheKey, p: usize, bytes: &[u8]) -> Result<PathBuf> {
    let dir = dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("creating the cache directory", &dir, e))?;
    let path = dir.join(format!("rdd-{key}-{p}"));
    let tmp = dir.join(format!(".rdd-{key}-{p}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))?;
    Ok(path)
}

/// Make room for `size` bytes by evicting the least recently read memory blocks of other
/// persisted RDDs (never `key`'s own, as Spark does). Returns the evicted blocks that should
/// move to disk, or `None` if no room can be made.
#[allow(clippy::type_complexity)]
fn make_room(
    s: &mut Store,
    key: CacheKey,
    size: usize,
) -> Option<Vec<((CacheKey, usize), InMemory)>> {
    let limit = budget();
    if size > limit {
        return None;
    }
    let mut candidates: Vec<((CacheKey, usize), u64, usize)> = s
        .blocks
        .iter()
        .filter_map(|(b, st)| match st {
            Stored::Memory(m) if b.0 != key => Some((*b, m.used, m.size)),
            _ => None,
        })
        .collect();
    candidates.sort_by_key(|c| c.1);
    let mut freed = 0;
    let mut chosen = Vec::new();
    for (b, _, n) in candidates {
        if s.memory_used - freed + size <= limit {
            break;
        }
        freed += n;
        chosen.push(b);
    }
    if s.memory_used - freed + size > limit {
        return None;
    }
    let mut to_disk = Vec::new();
    for b in chosen {
        if let Some(Stored::Memory(m)) = s.blocks.remove(&b) {
            s.memory_used -= m.size;
            if m.level == StorageLevel::MemoryAndDisk {
                to_disk.push((b, m));
            }
        }
    }
    Some(to_disk)
}

/// Store a computed partition at `level`; whether it was stored.
pub(crate) fn put<T: Data>(
    key: CacheKey,
    p: usize,
    level: StorageLevel,
    v: &Arc<Vec<T>>,
) -> Result<bool> {
    let size = v.len() * std::mem::size_of::<T>().max(1);
    let mut evicted = Vec::new();
    let in_memory = level != StorageLevel::Disk && {
        let mut guard = store()
            .lock()
            .map_err(|_| Error::Other("cache store poisoned".into()))?;
        let s = &mut *guard;
        if let Some(Stored::Memory(old)) = s.blocks.remove(&(key, p)) {
            s.memory_used -= old.size;
        }
        match make_room(s, key, size) {
            Some(to_disk) => {
                evicted = to_disk;
                s.clock += 1;
                s.memory_used += size;
                s.blocks.insert(
                    (key, p),
                    Stored::Memory(InMemory {
                        value: v.clone() as Arc<dyn Any + Send + Sync>,
                        size,
                        level,
                        used: s.clock,
                        encode: encode_vec::<T>,
                    }),
                );
                true
            }
            None => false,
        }
    };
    // Evicted memory-and-disk blocks of other RDDs go to disk (outside the lock).
    for ((k, q), m) in evicted {
        if let Some(bytes) = (m.encode)(m.value.as_ref())
            && let Ok(path) = write_file(k, q, &bytes)
            && let Ok(mut s) = store().lock()
        {
            s.blocks.entry((k, q)).or_insert(Stored::Disk(path));
        }
    }
    let stored = if in_memory {
        true
    } else if level == StorageLevel::Memory {
        false
    } else {
        let bytes = codec::to_vec(v.as_ref())
            .map_err(|e| Error::Other(format!("encoding a cached partition: {e}")))?;
        let path = write_file(key, p, &bytes)?;
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
            Some(Stored::Memory(m)) => s.memory_used -= m.size,
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

/// Whether partition `p` of `key` is held in memory (not on disk).
pub fn in_memory(key: CacheKey, p: usize) -> bool {
    store()
        .lock()
        .is_ok_and(|s| matches!(s.blocks.get(&(key, p)), Some(Stored::Memory(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store is per process: tests that fill it must not overlap.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn levels_store_where_they_say_and_remove_clears() {
        let _serial = SERIAL.lock();
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

    #[test]
    fn over_budget_the_least_recently_read_other_rdd_makes_room() {
        let _serial = SERIAL.lock();
        set_memory_budget(2000); // 100 u64 = 800 bytes: room for two such blocks
        let (a, b, c) = (new_key(), new_key(), new_key());
        let block = Arc::new(vec![7u64; 100]);
        assert!(put(a, 0, StorageLevel::Memory, &block).expect("a"));
        assert!(put(b, 0, StorageLevel::MemoryAndDisk, &block).expect("b"));
        assert!(get::<u64>(a, 0).is_some(), "a read last");
        assert!(put(c, 0, StorageLevel::Memory, &block).expect("c"));
        assert!(in_memory(a, 0) && in_memory(c, 0));
        assert!(!in_memory(b, 0), "b was the least recently read");
        assert_eq!(*get::<u64>(b, 0).expect("b moved to disk"), vec![7u64; 100]);
        // a block evicts other RDDs' blocks, never its siblings
        assert!(put(c, 1, StorageLevel::Memory, &block).expect("c1"));
        assert!(in_memory(c, 0) && in_memory(c, 1) && !in_memory(a, 0));
        // with only siblings left, a memory-only block that does not fit is not cached
        assert!(!put(c, 2, StorageLevel::Memory, &block).expect("c2"));
        assert!(held(c).len() == 2);
        let huge = Arc::new(vec![0u64; 1000]);
        assert!(!put(new_key(), 0, StorageLevel::Memory, &huge).expect("too big"));
        for k in [a, b, c] {
            remove(k);
        }
        set_memory_budget(1 << 30);
    }
}
