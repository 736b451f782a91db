//! Broadcast variables: read-only values shared with every task, shipped to each
//! executor at most once.
//!
//! A [`Broadcast`] travels into tasks as the state of a `_with` closure, but only its id
//! and where to fetch it from are encoded. In local mode tasks share the driver's value
//! (no copy at all). In a cluster the value is encoded once on the driver and served over
//! HTTP by the driver; the first task on an executor that reads it fetches and decodes it
//! and every later task there reuses that copy. Fetching is injected by the executor
//! ([`set_fetcher`]): this crate opens no sockets.

use crate::data::Data;
use crate::error::{Error, Result};
use crate::ship::codec;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A read-only value for tasks; see the module docs.
#[derive(Serialize, Deserialize)]
pub struct Broadcast<T> {
    id: u64,
    /// `host:port` of the driver's broadcast server; empty in local mode.
    source: String,
    /// The value, once this copy has it (always on the driver).
    #[serde(skip)]
    value: OnceLock<Arc<T>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        let value = OnceLock::new();
        if let Some(v) = self.value.get() {
            let _ = value.set(v.clone());
        }
        Broadcast {
            id: self.id,
            source: self.source.clone(),
            value,
        }
    }
}

impl<T> fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broadcast({})", self.id)
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Encoded values the driver serves, by id.
fn served() -> &'static Mutex<HashMap<u64, Arc<Vec<u8>>>> {
    static S: OnceLock<Mutex<HashMap<u64, Arc<Vec<u8>>>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The encoded value of broadcast `id`, for the driver's server.
pub fn served_bytes(id: u64) -> Option<Arc<Vec<u8>>> {
    served().lock().ok()?.get(&id).cloned()
}

/// URL path of broadcast `id` on the driver's server.
pub fn path(id: u64) -> String {
    format!("/broadcast/{id}")
}

impl<T: Data> Broadcast<T> {
    /// A broadcast for local mode: tasks share `value` itself.
    pub fn local(value: T) -> Self {
        let b = Broadcast {
            id: next_id(),
            source: String::new(),
            value: OnceLock::new(),
        };
        let _ = b.value.set(Arc::new(value));
        b
    }

    /// A broadcast served by the driver at `source` (`host:port`): encoded once now.
    pub fn served(value: T, source: &str) -> Result<Self> {
        let id = next_id();
        let bytes = codec::to_vec(&value)
            .map_err(|e| Error::Other(format!("encoding broadcast {id}: {e}")))?;
        if let Ok(mut s) = served().lock() {
            s.insert(id, Arc::new(bytes));
        }
        let b = Broadcast {
            id,
            source: source.to_string(),
            value: OnceLock::new(),
        };
        let _ = b.value.set(Arc::new(value));
        Ok(b)
    }

    /// The value. On an executor the first read fetches it from the driver (once per
    /// executor); a failed fetch fails the task, naming the broadcast and the driver.
    pub fn value(&self) -> &T {
        self.value
            .get_or_init(|| match executor_copy::<T>(self.id, &self.source) {
                Ok(v) => v,
                Err(e) => crate::task::raise(e),
            })
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stop serving it (tasks that have not read it yet will fail); the driver's value
    /// stays readable through this handle.
    pub fn unpersist(&self) {
        if let Ok(mut s) = served().lock() {
            s.remove(&self.id);
        }
    }
}

impl<T> std::ops::Deref for Broadcast<T>
where
    T: Data,
{
    type Target = T;
    fn deref(&self) -> &T {
        self.value()
    }
}

/// Fetches a broadcast's bytes: `(source host:port, path) → bytes`.
pub type Fetcher = Box<dyn Fn(&str, &str) -> Result<Vec<u8>> + Send + Sync>;

static FETCHER: OnceLock<Fetcher> = OnceLock::new();

/// Install how this process fetches broadcasts (executors do, at start).
pub fn set_fetcher(f: Fetcher) {
    let _ = FETCHER.set(f);
}

type Slot = Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>;

/// This process's copies, by id; one slot per id so concurrent tasks fetch once.
fn cache() -> &'static Mutex<HashMap<u64, Slot>> {
    static C: OnceLock<Mutex<HashMap<u64, Slot>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

fn executor_copy<T: Data>(id: u64, source: &str) -> Result<Arc<T>> {
    let slot = cache()
        .lock()
        .map_err(|_| Error::Other("broadcast cache poisoned".into()))?
        .entry(id)
        .or_default()
        .clone();
    let mut guard = slot
        .lock()
        .map_err(|_| Error::Other("broadcast cache poisoned".into()))?;
    if let Some(v) = guard.as_ref() {
        return v
            .clone()
            .downcast::<T>()
            .map_err(|_| Error::Other(format!("broadcast {id} read as another type")));
    }
    // Served by this very process (a driver running tasks itself).
    let bytes = match served_bytes(id) {
        Some(b) => b.as_ref().clone(),
        None => {
            let fetch = FETCHER.get().ok_or_else(|| {
                Error::Other(format!(
                    "broadcast {id}: this process cannot fetch broadcasts"
                ))
            })?;
            if source.is_empty() {
                return Err(Error::Other(format!(
                    "broadcast {id} was made for local mode and is not served"
                )));
            }
            fetch(source, &path(id)).map_err(|e| {
                Error::Other(format!(
                    "fetching broadcast {id} from the driver at {source}: {e}"
                ))
            })?
        }
    };
    let value: T = codec::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("decoding broadcast {id}: {e}")))?;
    let value = Arc::new(value);
    *guard = Some(value.clone() as Arc<dyn Any + Send + Sync>);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_broadcasts_share_the_value_and_served_ones_decode_once() {
        let b = Broadcast::local(vec![1u32, 2, 3]);
        let c = b.clone();
        assert!(std::ptr::eq(b.value(), c.value()), "no copy in local mode");
        let s = Broadcast::served(String::from("hello"), "127.0.0.1:1").expect("encodes");
        let bytes = served_bytes(s.id()).expect("served");
        // a copy as an executor gets it: no value yet; here the process serves it itself
        let copy: Broadcast<String> =
            codec::from_slice(&codec::to_vec(&s).expect("enc")).expect("dec");
        assert!(copy.value.get().is_none());
        assert_eq!(copy.value(), "hello");
        let again: Broadcast<String> =
            codec::from_slice(&codec::to_vec(&s).expect("enc")).expect("dec");
        assert!(
            std::ptr::eq(copy.value(), again.value()),
            "one copy per process"
        );
        assert_eq!(codec::from_slice::<String>(&bytes).expect("dec"), "hello");
        s.unpersist();
        assert!(served_bytes(s.id()).is_none());
    }
}
