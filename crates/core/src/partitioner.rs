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
pub trait Partitioner<K>: crate::ship::EncodeSelf + Send + Sync + 'static {
    /// How many reduce partitions there are.
    fn num_partitions(&self) -> usize;
    /// The partition of `key`, in `0..num_partitions()`.
    fn partition(&self, key: &K) -> usize;
    /// Equal partitioners place equal keys in equal partitions; used to avoid re-shuffling
    /// data that is already partitioned the same way.
    fn same_as(&self, other: &dyn std::any::Any) -> bool;
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

impl<K: Ord + serde::Serialize + Send + Sync + 'static> Partitioner<K> for RangePartitioner<K> {
    fn num_partitions(&self) -> usize {
        self.bounds.len() + 1
    }
    fn partition(&self, key: &K) -> usize {
        let p = self.bounds.partition_point(|b| b < key);
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
    fn range_partitioner_with_duplicate_sample_dedups_bounds() {
        let p = RangePartitioner::from_sample(vec![5; 50], 8, true);
        assert_eq!(Partitioner::<i32>::num_partitions(&p), 2);
    }
}
