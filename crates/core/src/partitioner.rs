//! How a key finds its reduce partition.
//!
//! The partition hash must be the same in every process (same binary, fixed seed), and it
//! must be *independent* of the hash that the reduce side's hash map uses: if the low bits
//! that pick a partition were also the bits that pick a bucket, every key of one reduce
//! partition would share bucket bits and the map would cluster. So the partition index is
//! taken from a 64-bit finalizer (murmur3's fmix64) of the key hash, not the raw hash.

use std::hash::{BuildHasher, Hash};

/// The key hash used by combiners and partitioners: FxHash, deterministic across processes.
#[inline]
pub fn key_hash<K: Hash + ?Sized>(k: &K) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(k)
}

#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Maps keys to reduce partitions. Partitioners ship with map tasks.
///
/// A custom partitioner is a serde type implementing this trait; pass it as
/// `Partitioning::by(p)` wherever an operation takes a [`Partitioning`]
/// (`reduce_by_key_n`, `partition_by`, `join_n`, …). Two RDDs partitioned by partitioners that are
/// [`Partitioner::same_as`] each other are joined without shuffling either.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use spate::partitioner::{Partitioner, Partitioning};
///
/// /// Keys by their remainder: partition `k mod n`.
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Modulo(usize);
///
/// impl Partitioner<u64> for Modulo {
///     fn num_partitions(&self) -> usize { self.0 }
///     fn partition(&self, key: &u64) -> usize { (*key % self.0 as u64) as usize }
///     fn same_as(&self, other: &dyn std::any::Any) -> bool {
///         other.downcast_ref::<Modulo>().is_some_and(|o| o.0 == self.0)
///     }
/// }
///
/// # let ctx = spate::Context::builder().master("local[2]").build()?;
/// let counts = ctx
///     .range(0, 100, 4)
///     .map(|x| (x as u64 % 10, 1u32))
///     .reduce_by_key_n(|a, b| a + b, Partitioning::by(Modulo(5)));
/// assert_eq!(counts.glom().collect()?[3].iter().map(|(k, _)| *k).collect::<Vec<_>>().len(), 2); // keys 3 and 8
/// # Ok::<(), spate::Error>(())
/// ```
pub trait Partitioner<K>: std::any::Any + crate::ship::EncodeSelf + Send + Sync + 'static {
    /// How many reduce partitions there are.
    fn num_partitions(&self) -> usize;
    /// The partition of `key`, in `0..num_partitions()`.
    fn partition(&self, key: &K) -> usize;
    /// Whether `other` (a partitioner, as `Any`) places every key in the same partition as
    /// this one: then data partitioned by either is not shuffled again to match the other.
    /// `false` (the default) is always safe.
    fn same_as(&self, _other: &dyn std::any::Any) -> bool {
        false
    }
}

/// Where an operation puts its output: a partition count (hash partitioning) or a
/// partitioner. Operations ending in `_n` take `impl Into<Partitioning<K>>`: a count
/// (`rdd.reduce_by_key_n(f, 8)`), a [`HashPartitioner`], or any partitioner as
/// `Partitioning::by(p)`.
pub enum Partitioning<K: 'static> {
    /// `n` hash partitions.
    Count(usize),
    /// This partitioner.
    By(crate::ship::SerArc<dyn Partitioner<K>>),
}

impl<K: 'static> From<usize> for Partitioning<K> {
    fn from(n: usize) -> Self {
        Partitioning::Count(n)
    }
}

impl<K: Hash + 'static> From<HashPartitioner> for Partitioning<K> {
    fn from(p: HashPartitioner) -> Self {
        Partitioning::By(crate::ship::SerArc::new(p))
    }
}

impl<K: 'static> Partitioning<K> {
    /// A custom partitioner (a serde type implementing [`Partitioner`]).
    pub fn by<P>(p: P) -> Self
    where
        P: Partitioner<K> + serde::Serialize + serde::de::DeserializeOwned,
    {
        Partitioning::By(crate::ship::SerArc::new(p))
    }
}

impl<K: Hash + 'static> Partitioning<K> {
    /// The partitioner: a count becomes a [`HashPartitioner`].
    pub fn partitioner(self) -> crate::ship::SerArc<dyn Partitioner<K>> {
        match self {
            Partitioning::Count(n) => crate::ship::SerArc::new(HashPartitioner::new(n)),
            Partitioning::By(p) => p,
        }
    }
}

/// Whether two partitioners place keys alike ([`Partitioner::same_as`]).
pub fn same<K: 'static>(
    a: &crate::ship::SerArc<dyn Partitioner<K>>,
    b: &crate::ship::SerArc<dyn Partitioner<K>>,
) -> bool {
    let b: &dyn std::any::Any = &**b.arc();
    a.same_as(b)
}

impl<K: 'static, C: Partitioner<K>> crate::ship::Upcast<dyn Partitioner<K>> for C {
    fn upcast(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn Partitioner<K>> {
        self
    }
}

/// Hash partitioning: `hash(key) mod n` over a well-mixed hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashPartitioner {
    partitions: usize,
}

impl HashPartitioner {
    /// A hash partitioner with `partitions` (at least 1) partitions.
    pub fn new(partitions: usize) -> Self {
        HashPartitioner {
            partitions: partitions.max(1),
        }
    }
}

impl<K: Hash + 'static> Partitioner<K> for HashPartitioner {
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    #[inline]
    fn partition(&self, key: &K) -> usize {
        (fmix64(key_hash(key)) % self.partitions as u64) as usize
    }
    fn same_as(&self, other: &dyn std::any::Any) -> bool {
        other.downcast_ref::<HashPartitioner>() == Some(self)
    }
}

/// Range partitioning for sorts: partition `i` holds keys between `bounds[i-1]` and
/// `bounds[i]`, so concatenating sorted partitions gives a sorted whole.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangePartitioner<K> {
    bounds: Vec<K>,
    ascending: bool,
}

impl<K: Ord + Clone> RangePartitioner<K> {
    /// Choose up to `partitions - 1` bounds at the quantiles of a key sample.
    pub fn from_sample(mut sample: Vec<K>, partitions: usize, ascending: bool) -> Self {
        sample.sort();
        let partitions = partitions.max(1);
        let mut bounds: Vec<K> = Vec::with_capacity(partitions.saturating_sub(1));
        if !sample.is_empty() {
            for i in 1..partitions {
                let idx = i * sample.len() / partitions;
                let candidate = &sample[idx.min(sample.len() - 1)];
                if bounds.last().is_none_or(|last| last < candidate) {
                    bounds.push(candidate.clone());
                }
            }
        }
        RangePartitioner { bounds, ascending }
    }
}

/// Up to this many bounds, [`RangePartitioner::partition`] counts instead of searching.
const LINEAR_BOUNDS: usize = 32;

impl<K: Ord + serde::Serialize + Send + Sync + 'static> Partitioner<K> for RangePartitioner<K> {
    fn num_partitions(&self) -> usize {
        self.bounds.len() + 1
    }
    fn partition(&self, key: &K) -> usize {
        // Few bounds (the usual: one per reduce partition, tens of them) of plain keys
        // (no heap data, so comparing is cheap): counting the ones below the key has no
        // branch to mispredict and vectorizes, where a binary search stalls on each
        // comparison (measured: +5 % on `shuffle_bench`). Keys such as strings, whose
        // comparisons cost more, are searched.
        let p = if !std::mem::needs_drop::<K>() && self.bounds.len() <= LINEAR_BOUNDS {
            self.bounds.iter().filter(|b| *b < key).count()
        } else {
            self.bounds.partition_point(|b| b < key)
        };
        if self.ascending {
            p
        } else {
            self.bounds.len() - p
        }
    }
    fn same_as(&self, _other: &dyn std::any::Any) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_partitions_are_in_range_and_spread() {
        let p = HashPartitioner::new(7);
        let mut counts = [0usize; 7];
        for i in 0..7000u64 {
            let r = Partitioner::<u64>::partition(&p, &i);
            counts[r] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn range_partitioner_orders_partitions() {
        let p = RangePartitioner::from_sample((0..100).collect::<Vec<i32>>(), 4, true);
        assert_eq!(Partitioner::<i32>::num_partitions(&p), 4);
        let parts: Vec<usize> = (0..100).map(|k| p.partition(&k)).collect();
        assert!(parts.windows(2).all(|w| w[0] <= w[1]));
        let d = RangePartitioner::from_sample((0..100).collect::<Vec<i32>>(), 4, false);
        let parts: Vec<usize> = (0..100).map(|k| d.partition(&k)).collect();
        assert!(parts.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn range_partitions_are_where_a_binary_search_puts_keys() {
        // Counting (few bounds) and searching (many) agree with a plain search, for keys
        // below, between, on and above the bounds, ascending and descending.
        let counts = [1, 2, 3, 16, LINEAR_BOUNDS, LINEAR_BOUNDS + 1, 200];
        for parts in counts {
            let words: Vec<String> = (0..1000).map(|i| format!("{i:05}")).collect();
            let p = RangePartitioner::from_sample(words, parts, true);
            for key in (0..1001).map(|i| format!("{i:05}")) {
                let below = p.bounds.iter().take_while(|b| **b < key).count();
                assert_eq!(p.partition(&key), below, "{parts} partitions, key {key}");
            }
            let sample: Vec<i64> = (0..1000).map(|i| i * 10).collect();
            for ascending in [true, false] {
                let p = RangePartitioner::from_sample(sample.clone(), parts, ascending);
                let n = p.bounds.len();
                for key in -5..10_010 {
                    let below = p.bounds.iter().take_while(|b| **b < key).count();
                    let want = if ascending { below } else { n - below };
                    assert_eq!(p.partition(&key), want, "{parts} partitions, key {key}");
                }
            }
        }
    }

    #[test]
    fn range_partitioner_with_duplicate_sample_dedups_bounds() {
        let p = RangePartitioner::from_sample(vec![5; 50], 8, true);
        assert_eq!(Partitioner::<i32>::num_partitions(&p), 2);
    }
}
