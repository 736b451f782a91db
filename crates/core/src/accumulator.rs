//! Accumulators: values tasks add to on the side, read on the driver after an action.
//!
//! An [`Accumulator`] travels into tasks as state of a `_with` closure. Inside a task,
//! [`Accumulator::add`] only updates a partial value of that task (a thread-local, since a
//! task runs on one thread); the task boundary collects the partials of a *successful*
//! task and they go back with its result (as objects in local mode, encoded from
//! executors). The DAG scheduler applies a task's updates only for the first success of
//! its partition in its stage, so retried, speculative or recomputed tasks never count
//! twice: the value is exactly the merge of one update per partition computed.

use crate::data::Data;
use crate::error::{Error, Result};
use crate::func::{Fun, Func2};
use crate::ship::codec;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Merge by `+` (counters and sums).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sum;

impl<T: std::ops::Add<Output = T>> Func2<T, T, T> for Sum {
    fn call(&self, a: T, b: T) -> T {
        a + b
    }
}

/// The driver's side of one accumulator: its value and how to merge updates into it.
struct Shared<T, M> {
    id: u64,
    value: Mutex<T>,
    /// The identity, swapped in while the value is moved through `merge`.
    zero: T,
    merge: M,
}

/// Applies updates to a registered accumulator of some type.
trait DriverAcc: Send + Sync {
    fn merge_object(&self, update: Box<dyn Any + Send>);
    fn merge_encoded(&self, bytes: &[u8]) -> Result<()>;
}

impl<T: Data, M: Func2<T, T, T> + Clone> Shared<T, M> {
    fn merge(&self, update: T) {
        if let Ok(mut v) = self.value.lock() {
            // Move the value through `merge` instead of cloning it on every update.
            let current = std::mem::replace(&mut *v, self.zero.clone());
            *v = self.merge.call(current, update);
        }
    }
}

impl<T: Data, M: Func2<T, T, T> + Clone> DriverAcc for Shared<T, M> {
    fn merge_object(&self, update: Box<dyn Any + Send>) {
        if let Ok(u) = update.downcast::<T>() {
            self.merge(*u);
        }
    }
    fn merge_encoded(&self, bytes: &[u8]) -> Result<()> {
        let u: T = codec::from_slice(bytes).map_err(|e| {
            Error::Other(format!(
                "decoding an update of accumulator {}: {e}",
                self.id
            ))
        })?;
        self.merge(u);
        Ok(())
    }
}

type Registry = Mutex<HashMap<u64, Weak<dyn DriverAcc>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A value tasks add to; read it with [`Accumulator::value`] on the driver.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "T: Serialize, M: Serialize",
    deserialize = "T: serde::de::DeserializeOwned, M: serde::de::DeserializeOwned"
))]
pub struct Accumulator<T, M = Sum> {
    id: u64,
    zero: T,
    merge: M,
    /// The driver's value (absent in copies that travelled to an executor).
    #[serde(skip)]
    shared: Option<Arc<Shared<T, M>>>,
}

impl<T: Clone, M: Clone> Clone for Accumulator<T, M> {
    fn clone(&self) -> Self {
        Accumulator {
            id: self.id,
            zero: self.zero.clone(),
            merge: self.merge.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T: fmt::Debug, M> fmt::Debug for Accumulator<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accumulator")
            .field("id", &self.id)
            .field("zero", &self.zero)
            .finish()
    }
}

impl<T: Data, M: Func2<T, T, T> + Clone> Accumulator<T, M> {
    /// A new accumulator starting at `zero`, merging with `merge` (which must be
    /// associative and commutative, and `zero` its identity: updates arrive in any order).
    pub fn with_merge(zero: T, merge: M) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            value: Mutex::new(zero.clone()),
            zero: zero.clone(),
            merge: merge.clone(),
        });
        let weak: Weak<dyn DriverAcc> = Arc::downgrade(&(shared.clone() as Arc<dyn DriverAcc>));
        if let Ok(mut r) = registry().lock() {
            r.retain(|_, w| w.strong_count() > 0);
            r.insert(id, weak);
        }
        Accumulator {
            id,
            zero,
            merge,
            shared: Some(shared),
        }
    }

    /// Add `v`: inside a task, to the task's partial value (applied once the task
    /// succeeds); on the driver, to the value directly.
    pub fn add(&self, v: T) {
        if crate::task::in_task() {
            TASK.with(|t| {
                let mut parts = t.borrow_mut();
                match parts.iter_mut().find(|(id, _)| *id == self.id) {
                    Some((_, p)) => {
                        if let Some(p) = p.as_any_mut().downcast_mut::<Partial<T, M>>() {
                            let current = p.value.take().unwrap_or_else(|| p.zero.clone());
                            p.value = Some(p.merge.call(current, v));
                        }
                    }
                    None => parts.push((
                        self.id,
                        Box::new(Partial {
                            value: Some(self.merge.call(self.zero.clone(), v)),
                            zero: self.zero.clone(),
                            merge: self.merge.clone(),
                        }),
                    )),
                }
            });
        } else if let Some(s) = &self.shared {
            s.merge(v);
        }
    }

    /// The value on the driver: every successful task's updates merged once. In a copy
    /// inside a task it is the starting value.
    pub fn value(&self) -> T {
        self.shared
            .as_ref()
            .and_then(|s| s.value.lock().ok().map(|v| v.clone()))
            .unwrap_or_else(|| self.zero.clone())
    }

    /// Its id (as updates name it).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<T: Data + std::ops::Add<Output = T>> Accumulator<T, Sum> {
    /// A counter or sum starting at `zero`.
    pub fn new(zero: T) -> Self {
        Self::with_merge(zero, Sum)
    }
}

impl<T: Data, F> Accumulator<T, Fun<F>>
where
    F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
{
    /// An accumulator merging with a closure that captures nothing.
    pub fn merged_by(zero: T, merge: F) -> Self {
        Self::with_merge(zero, Fun::new(merge))
    }
}

/// One task's partial value of one accumulator.
struct Partial<T, M> {
    value: Option<T>,
    zero: T,
    merge: M,
}

trait PartialValue: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_object(self: Box<Self>) -> Box<dyn Any + Send>;
    fn encode(&self) -> Result<Vec<u8>>;
}

impl<T: Data, M: Send + 'static> PartialValue for Partial<T, M> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_object(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.value.unwrap_or(self.zero))
    }
    fn encode(&self) -> Result<Vec<u8>> {
        codec::to_vec(self.value.as_ref().unwrap_or(&self.zero))
            .map_err(|e| Error::Other(format!("encoding an accumulator update: {e}")))
    }
}

type TaskPartials = Vec<(u64, Box<dyn PartialValue>)>;

thread_local! {
    static TASK: RefCell<TaskPartials> = const { RefCell::new(Vec::new()) };
    static DONE: RefCell<TaskPartials> = const { RefCell::new(Vec::new()) };
}

/// Start a task on this thread: no partials yet.
pub(crate) fn begin_task() {
    TASK.with(|t| t.borrow_mut().clear());
    DONE.with(|d| d.borrow_mut().clear());
}

/// End a task: keep its partials for the caller if it succeeded, drop them otherwise.
pub(crate) fn end_task(succeeded: bool) {
    let parts = TASK.with(|t| std::mem::take(&mut *t.borrow_mut()));
    DONE.with(|d| *d.borrow_mut() = if succeeded { parts } else { Vec::new() });
}

/// Updates a task made, as they travel to the driver's scheduler.
#[derive(Default)]
pub enum Updates {
    /// None.
    #[default]
    None,
    /// Values (local mode: same process).
    Objects(Vec<(u64, Box<dyn Any + Send>)>),
    /// Encoded values (from executors).
    Encoded(Vec<(u64, Vec<u8>)>),
}

impl fmt::Debug for Updates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Updates::None => f.write_str("Updates::None"),
            Updates::Objects(v) => write!(f, "Updates::Objects({} accumulators)", v.len()),
            Updates::Encoded(v) => write!(f, "Updates::Encoded({} accumulators)", v.len()),
        }
    }
}

/// The updates of the task that just ran on this thread, as objects (local mode).
pub fn take_objects() -> Updates {
    let parts = DONE.with(|d| std::mem::take(&mut *d.borrow_mut()));
    if parts.is_empty() {
        return Updates::None;
    }
    Updates::Objects(
        parts
            .into_iter()
            .map(|(id, p)| (id, p.into_object()))
            .collect(),
    )
}

/// The updates of the task that just ran on this thread, encoded (executors).
pub fn take_encoded() -> Result<Vec<(u64, Vec<u8>)>> {
    let parts = DONE.with(|d| std::mem::take(&mut *d.borrow_mut()));
    parts.iter().map(|(id, p)| Ok((*id, p.encode()?))).collect()
}

/// Apply one successful task's updates to the driver's accumulators (updates of
/// accumulators that no longer exist are dropped).
pub fn apply(updates: Updates) {
    let find = |id: u64| {
        registry()
            .lock()
            .ok()
            .and_then(|r| r.get(&id).and_then(Weak::upgrade))
    };
    match updates {
        Updates::None => {}
        Updates::Objects(v) => {
            for (id, u) in v {
                if let Some(acc) = find(id) {
                    acc.merge_object(u);
                }
            }
        }
        Updates::Encoded(v) => {
            for (id, bytes) in v {
                if let Some(acc) = find(id)
                    && let Err(e) = acc.merge_encoded(&bytes)
                {
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_updates_apply_only_when_handed_over() {
        let acc = Accumulator::new(0u64);
        acc.add(5); // on the driver: direct
        assert_eq!(acc.value(), 5);
        // a task: partial, collected at its end
        begin_task();
        crate::task::with_in_task(|| {
            acc.add(2);
            acc.add(3);
        });
        end_task(true);
        assert_eq!(acc.value(), 5, "not applied until the scheduler says so");
        let updates = take_objects();
        apply(updates);
        assert_eq!(acc.value(), 10);
        // a failed task contributes nothing
        begin_task();
        crate::task::with_in_task(|| acc.add(100));
        end_task(false);
        assert!(matches!(take_objects(), Updates::None));
        // encoded updates (executors) merge the same way
        begin_task();
        crate::task::with_in_task(|| acc.add(1));
        end_task(true);
        let enc = take_encoded().expect("encodes");
        apply(Updates::Encoded(enc));
        assert_eq!(acc.value(), 11);
    }

    #[test]
    fn custom_merges_and_copies_without_the_driver_value() {
        let acc = Accumulator::merged_by(Vec::<String>::new(), |mut a, b| {
            a.extend(b);
            a
        });
        begin_task();
        crate::task::with_in_task(|| {
            acc.add(vec!["x".into()]);
            acc.add(vec!["y".into()]);
        });
        end_task(true);
        apply(take_objects());
        assert_eq!(acc.value(), vec!["x".to_string(), "y".to_string()]);
        let bytes = codec::to_vec(&Accumulator::new(7i64)).expect("encode");
        let copy: Accumulator<i64> = codec::from_slice(&bytes).expect("decode");
        assert_eq!(copy.value(), 7, "a copy off the driver reads its zero");
    }
}
