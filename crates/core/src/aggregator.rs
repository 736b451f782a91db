//! Combining values by key: the map side combines records into per-key combiners before
//! the shuffle, the reduce side merges combiners from all map outputs.

use crate::func::{Func, Func2};
use hashbrown::hash_map::{HashMap, RawEntryMut};
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Three functions that fold values `V` into combiners `C`. Aggregators ship with map and
/// reduce tasks, so they are serde types.
pub trait Aggregator<K, V, C>:
    Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// False only for the identity "aggregator" of plain repartitioning: records then
    /// pass through the shuffle untouched.
    const COMBINES: bool = true;
    /// Whether a combiner keeps growing with the values merged into it (collecting them,
    /// as `group_by_key` does) rather than staying about one value's size (a sum). Used to
    /// estimate map-side memory; unknown user combiners are assumed to grow.
    const GROWS: bool = false;
    /// First value of a key.
    fn create_combiner(&self, v: V) -> C;
    /// Another value of a key.
    fn merge_value(&self, c: C, v: V) -> C;
    /// Two combiners of a key from different map outputs.
    fn merge_combiners(&self, a: C, b: C) -> C;
}

/// Hash map of combiners with FxHash (keys are re-hashed for partitioning separately).
///
/// Combiners are merged in place, so buckets stay as small as `(K, C)`: in a word count
/// the table is the hot, cache-missing structure and its size is what counts.
pub struct CombineMap<K, C> {
    map: HashMap<K, C, FxBuildHasher>,
}

impl<K: Hash + Eq, C> Default for CombineMap<K, C> {
    fn default() -> Self {
        CombineMap {
            map: HashMap::with_hasher(FxBuildHasher),
        }
    }
}

impl<K: Hash + Eq, C> CombineMap<K, C> {
    /// Fold one value into its key's combiner.
    #[inline]
    pub fn insert_value<V, A: Aggregator<K, V, C>>(&mut self, agg: &A, k: K, v: V) {
        self.upsert(
            k,
            v,
            |v| agg.create_combiner(v),
            |c, v| agg.merge_value(c, v),
        );
    }

    /// Merge one combiner into its key's combiner.
    #[inline]
    pub fn insert_combiner<V, A: Aggregator<K, V, C>>(&mut self, agg: &A, k: K, c: C) {
        self.upsert(k, c, |c| c, |old, c| agg.merge_combiners(old, c));
    }

    /// `k`'s combiner becomes `merge(old, x)`, or `create(x)` for a new key.
    ///
    /// One hash and one probe, looking up by reference: on a hit (most records) the key is
    /// neither moved into an entry nor kept; on a miss it is inserted where the probe
    /// ended. The combiner is replaced in place: `merge` is user code and may panic after
    /// taking the old combiner, leaving a stale bitwise copy in the slot. A combiner
    /// without drop glue (counts, sums) can be left there: nothing will be dropped twice,
    /// and the map is dropped with the failed task. Otherwise the panic is caught, the
    /// entry removed and the stale copy forgotten before the panic continues.
    #[inline(always)]
    fn upsert<X>(
        &mut self,
        k: K,
        x: X,
        create: impl FnOnce(X) -> C,
        merge: impl FnOnce(C, X) -> C,
    ) {
        let hash = self.map.hasher().hash_one(&k);
        let slot: *mut C = match self.map.raw_entry_mut().from_key_hashed_nocheck(hash, &k) {
            RawEntryMut::Occupied(e) => e.into_mut(),
            RawEntryMut::Vacant(e) => {
                e.insert_hashed_nocheck(hash, k, create(x));
                return;
            }
        };
        // SAFETY: `slot` points to an initialized C owned by the table. It is moved out
        // and, on success, a new value is written back. On a panic, a type with drop glue
        // has its entry removed and the stale bits forgotten; a type without drop glue is
        // left as is, which cannot cause a double drop.
        unsafe {
            let old = std::ptr::read(slot);
            if !std::mem::needs_drop::<C>() {
                std::ptr::write(slot, merge(old, x));
                return;
            }
            match catch_unwind(AssertUnwindSafe(move || merge(old, x))) {
                Ok(new) => std::ptr::write(slot, new),
                Err(panic) => {
                    if let Some(stale) = self.map.remove(&k) {
                        std::mem::forget(stale);
                    }
                    resume_unwind(panic)
                }
            }
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No keys yet.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Consume into (key, combiner) pairs.
    pub fn into_pairs(self) -> impl Iterator<Item = (K, C)> {
        self.map.into_iter()
    }
}

/// `reduce_by_key`: the combiner is a value, merged with one function.
#[derive(Clone, Serialize, Deserialize)]
pub struct ReduceAgg<F>(pub F);
impl<K, V, F: Func2<V, V, V> + Clone + Serialize + serde::de::DeserializeOwned> Aggregator<K, V, V>
    for ReduceAgg<F>
{
    #[inline(always)]
    fn create_combiner(&self, v: V) -> V {
        v
    }
    #[inline(always)]
    fn merge_value(&self, c: V, v: V) -> V {
        self.0.call(c, v)
    }
    #[inline(always)]
    fn merge_combiners(&self, a: V, b: V) -> V {
        self.0.call(a, b)
    }
}

/// `fold_by_key`: like reduce, but every key starts from a zero value.
#[derive(Clone, Serialize, Deserialize)]
pub struct FoldAgg<V, F> {
    /// The neutral start value.
    pub zero: V,
    /// The fold function.
    pub f: F,
}
impl<K, V, F> Aggregator<K, V, V> for FoldAgg<V, F>
where
    V: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Func2<V, V, V> + Clone + Serialize + serde::de::DeserializeOwned,
{
    fn create_combiner(&self, v: V) -> V {
        self.f.call(self.zero.clone(), v)
    }
    fn merge_value(&self, c: V, v: V) -> V {
        self.f.call(c, v)
    }
    fn merge_combiners(&self, a: V, b: V) -> V {
        self.f.call(a, b)
    }
}

/// `aggregate_by_key`: a zero of another type, a sequence op and a combine op.
#[derive(Clone, Serialize, Deserialize)]
pub struct AggregateAgg<U, S, C> {
    /// Start value for each key.
    pub zero: U,
    /// Folds a value into the accumulator.
    pub seq: S,
    /// Merges two accumulators.
    pub comb: C,
}
impl<K, V, U, S, C> Aggregator<K, V, U> for AggregateAgg<U, S, C>
where
    U: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    S: Func2<U, V, U> + Clone + Serialize + serde::de::DeserializeOwned,
    C: Func2<U, U, U> + Clone + Serialize + serde::de::DeserializeOwned,
{
    fn create_combiner(&self, v: V) -> U {
        self.seq.call(self.zero.clone(), v)
    }
    fn merge_value(&self, c: U, v: V) -> U {
        self.seq.call(c, v)
    }
    fn merge_combiners(&self, a: U, b: U) -> U {
        self.comb.call(a, b)
    }
}

/// `combine_by_key` with three user functions.
#[derive(Clone, Serialize, Deserialize)]
pub struct CombineAgg<Cr, Mv, Mc> {
    /// First value → combiner.
    pub create: Cr,
    /// Combiner + value → combiner.
    pub merge_value: Mv,
    /// Combiner + combiner → combiner.
    pub merge_combiners: Mc,
}
impl<K, V, C, Cr, Mv, Mc> Aggregator<K, V, C> for CombineAgg<Cr, Mv, Mc>
where
    Cr: Func<V, C> + Clone + Serialize + serde::de::DeserializeOwned,
    Mv: Func2<C, V, C> + Clone + Serialize + serde::de::DeserializeOwned,
    Mc: Func2<C, C, C> + Clone + Serialize + serde::de::DeserializeOwned,
{
    const GROWS: bool = true;
    fn create_combiner(&self, v: V) -> C {
        self.create.call(v)
    }
    fn merge_value(&self, c: C, v: V) -> C {
        self.merge_value.call(c, v)
    }
    fn merge_combiners(&self, a: C, b: C) -> C {
        self.merge_combiners.call(a, b)
    }
}

/// `group_by_key`: collect all values of a key.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct GroupAgg;
impl<K, V: Send + 'static> Aggregator<K, V, Vec<V>> for GroupAgg {
    const GROWS: bool = true;
    fn create_combiner(&self, v: V) -> Vec<V> {
        vec![v]
    }
    fn merge_value(&self, mut c: Vec<V>, v: V) -> Vec<V> {
        c.push(v);
        c
    }
    fn merge_combiners(&self, mut a: Vec<V>, mut b: Vec<V>) -> Vec<V> {
        if a.len() < b.len() {
            std::mem::swap(&mut a, &mut b);
        }
        a.extend(b);
        a
    }
}

/// No aggregation: repartitioning and sorting move records unchanged.
#[derive(Serialize, Deserialize)]
pub struct NoAgg<V>(#[serde(skip)] PhantomData<fn() -> V>);
impl<V> Default for NoAgg<V> {
    fn default() -> Self {
        NoAgg(PhantomData)
    }
}
impl<V> Clone for NoAgg<V> {
    fn clone(&self) -> Self {
        NoAgg(PhantomData)
    }
}
impl<K, V: 'static> Aggregator<K, V, V> for NoAgg<V> {
    const COMBINES: bool = false;
    fn create_combiner(&self, v: V) -> V {
        v
    }
    fn merge_value(&self, _c: V, v: V) -> V {
        v
    }
    fn merge_combiners(&self, _a: V, b: V) -> V {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::func::Fun;

    #[test]
    fn reduce_combines_by_key() {
        let agg = ReduceAgg(Fun::new(|a: u64, b: u64| a + b));
        let mut m = CombineMap::default();
        for w in ["a", "b", "a", "c", "a"] {
            m.insert_value(&agg, w, 1u64);
        }
        let mut v: Vec<_> = m.into_pairs().collect();
        v.sort();
        assert_eq!(v, vec![("a", 3), ("b", 1), ("c", 1)]);
    }

    #[test]
    fn panic_in_merge_drops_each_combiner_exactly_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        struct Counted(u64);
        impl Counted {
            fn new(v: u64) -> Self {
                LIVE.fetch_add(1, Ordering::SeqCst);
                Counted(v)
            }
        }
        impl Drop for Counted {
            fn drop(&mut self) {
                LIVE.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let agg = CombineAgg {
            create: Fun::new(Counted::new),
            merge_value: Fun::new(|c: Counted, v: u64| {
                assert!(v != 99, "boom");
                Counted::new(c.0 + v)
            }),
            merge_combiners: Fun::new(|a: Counted, b: Counted| Counted::new(a.0 + b.0)),
        };
        let mut m = CombineMap::default();
        m.insert_value(&agg, "a", 1u64);
        m.insert_value(&agg, "b", 2u64);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.insert_value(&agg, "a", 99u64)
        }));
        assert!(r.is_err());
        assert_eq!(
            LIVE.load(Ordering::SeqCst),
            1,
            "a's combiner dropped once, b's alive"
        );
        m.insert_value(&agg, "b", 3u64);
        let v: Vec<_> = m.into_pairs().map(|(k, c)| (k, c.0)).collect();
        assert_eq!(v, vec![("b", 5)]);
        drop(v);
        assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn panic_in_merge_leaves_map_usable() {
        let agg = ReduceAgg(Fun::new(|a: u64, b: u64| {
            assert!(b != 99, "boom");
            a + b
        }));
        let mut m = CombineMap::default();
        m.insert_value(&agg, 1u8, 1u64);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.insert_value(&agg, 1u8, 99u64)
        }));
        assert!(r.is_err());
        m.insert_value(&agg, 2u8, 5u64);
        let mut v: Vec<_> = m.into_pairs().collect();
        v.sort();
        // A u64 combiner has no drop glue: the failed key keeps its pre-panic value.
        assert_eq!(v, vec![(1, 1), (2, 5)], "the map still works after a panic");
    }
}
