//! Actions on RDDs of numbers (Spark's `DoubleRDDFunctions`): sum, mean, variance and
//! standard deviation from one pass ([`StatCounter`], mergeable across partitions), and
//! histograms. Values are taken as `f64`, as Spark does.

use super::Rdd;
use crate::data::Data;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Element types the numeric actions accept.
pub trait Numeric: Data + Copy {
    /// The value as an `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
numeric!(f64, f32, i64, i32, i16, i8, u64, u32, u16, u8, usize, isize);

/// Count, mean, variance, min and max of numbers seen in one pass (Welford's update; two
/// counters merge exactly, so partitions are summarised where they are).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatCounter {
    count: u64,
    mean: f64,
    /// Sum of squared differences from the mean.
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for StatCounter {
    fn default() -> Self {
        StatCounter {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl StatCounter {
    /// The counter after seeing `x` too.
    pub fn push(mut self, x: f64) -> StatCounter {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self
    }

    /// The counter of both inputs.
    pub fn merge(self, other: StatCounter) -> StatCounter {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        StatCounter {
            count: self.count + other.count,
            mean: self.mean + delta * other.count as f64 / n,
            m2: self.m2 + other.m2 + delta * delta * self.count as f64 * other.count as f64 / n,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// Numbers seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their mean (NaN when there are none, as in Spark).
    pub fn mean(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.mean }
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.mean * self.count as f64
    }

    /// Population variance (divides by the count; NaN when empty).
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.m2 / self.count as f64
        }
    }

    /// Sample variance (divides by count − 1; NaN with fewer than two numbers).
    pub fn sample_variance(&self) -> f64 {
        if self.count < 2 {
            f64::NAN
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }

    /// Population standard deviation.
    pub fn stdev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Sample standard deviation.
    pub fn sample_stdev(&self) -> f64 {
        self.sample_variance().sqrt()
    }

    /// Smallest number seen (+∞ when none).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Largest number seen (−∞ when none).
    pub fn max(&self) -> f64 {
        self.max
    }
}

/// Which of the buckets bounded by `edges` (sorted, at least two) holds `x`: bucket `i`
/// is `[edges[i], edges[i + 1])`, the last one also holds its upper edge (as in Spark).
fn bucket_of(edges: &[f64], x: f64) -> Option<usize> {
    let last = edges.len().checked_sub(1)?;
    if x.is_nan() || x < edges[0] || x > edges[last] {
        return None;
    }
    if x == edges[last] {
        return Some(last - 1);
    }
    // The first edge greater than x closes its bucket.
    Some(edges.partition_point(|e| *e <= x) - 1)
}

impl<T: Numeric> Rdd<T> {
    /// Count, mean, variance, min and max in one pass.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let s = ctx.parallelize(vec![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 3).stats()?;
    /// assert_eq!((s.count(), s.mean(), s.stdev(), s.min(), s.max()), (8, 5.0, 2.0, 2.0, 9.0));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn stats(&self) -> Result<StatCounter> {
        self.aggregate(
            StatCounter::default(),
            |s: StatCounter, x: T| s.push(x.to_f64()),
            |a: StatCounter, b: StatCounter| a.merge(b),
        )
    }

    /// The sum of the elements, as `f64` (0 when empty).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(1, 101, 4).sum()?, 5050.0);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn sum(&self) -> Result<f64> {
        self.aggregate(0.0, |s: f64, x: T| s + x.to_f64(), |a: f64, b: f64| a + b)
    }

    /// The mean (NaN when empty).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.range(1, 5, 2).mean()?, 2.5);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn mean(&self) -> Result<f64> {
        Ok(self.stats()?.mean())
    }

    /// Population variance (Spark's `variance`).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![1.0, 3.0], 2).variance()?, 1.0);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn variance(&self) -> Result<f64> {
        Ok(self.stats()?.variance())
    }

    /// Population standard deviation (Spark's `stdev`).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![1.0, 3.0], 2).stdev()?, 1.0);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn stdev(&self) -> Result<f64> {
        Ok(self.stats()?.stdev())
    }

    /// Sample variance (divides by count − 1).
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![1.0, 3.0], 2).sample_variance()?, 2.0);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn sample_variance(&self) -> Result<f64> {
        Ok(self.stats()?.sample_variance())
    }

    /// Sample standard deviation.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// assert_eq!(ctx.parallelize(vec![1.0, 3.0], 2).sample_stdev()?, 2f64.sqrt());
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn sample_stdev(&self) -> Result<f64> {
        Ok(self.stats()?.sample_stdev())
    }

    /// How many elements fall in each bucket bounded by `edges` (sorted ascending, at
    /// least two): bucket `i` is `[edges[i], edges[i + 1])`, the last also holds its upper
    /// edge; elements outside (and NaN) are not counted.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let counts = ctx.range(0, 10, 3).histogram(&[0.0, 5.0, 9.0])?;
    /// assert_eq!(counts, vec![5, 5]);
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn histogram(&self, edges: &[f64]) -> Result<Vec<u64>> {
        if edges.len() < 2
            || edges
                .windows(2)
                .any(|w| w[0].partial_cmp(&w[1]).is_none_or(|o| o.is_ge()))
        {
            return Err(Error::InvalidArgument(format!(
                "histogram buckets need at least two strictly increasing edges, got {edges:?}"
            )));
        }
        let zeros = vec![0u64; edges.len() - 1];
        let per_partition = self.map_partitions_with(edges.to_vec(), |edges, it| {
            let mut counts = vec![0u64; edges.len() - 1];
            it.for_each(|x| {
                if let Some(b) = bucket_of(edges, x.to_f64()) {
                    counts[b] += 1;
                }
            });
            std::iter::once(counts)
        });
        Ok(per_partition
            .collect()?
            .into_iter()
            .fold(zeros, |mut all, counts| {
                for (a, c) in all.iter_mut().zip(counts) {
                    *a += c;
                }
                all
            }))
    }

    /// A histogram of `buckets` equal-width buckets between the smallest and the largest
    /// element: the edges and the counts (Spark's `histogram(bucketCount)`). An empty RDD
    /// or one of NaNs only is an error.
    ///
    /// ```
    /// # let ctx = spate::Context::builder().master("local[2]").build()?;
    /// let (edges, counts) = ctx.range(0, 11, 3).histogram_even(2)?;
    /// assert_eq!((edges, counts), (vec![0.0, 5.0, 10.0], vec![5, 6]));
    /// # Ok::<(), spate::Error>(())
    /// ```
    pub fn histogram_even(&self, buckets: usize) -> Result<(Vec<f64>, Vec<u64>)> {
        if buckets == 0 {
            return Err(Error::InvalidArgument(
                "a histogram needs at least one bucket".into(),
            ));
        }
        let s = self.stats()?;
        if s.count() == 0 || !s.min().is_finite() || !s.max().is_finite() {
            return Err(Error::InvalidArgument(format!(
                "histogram_even of an RDD without finite elements (min {}, max {})",
                s.min(),
                s.max()
            )));
        }
        let (lo, hi) = (s.min(), s.max());
        let edges: Vec<f64> = if lo == hi {
            vec![lo, hi + 1.0]
        } else {
            (0..=buckets)
                .map(|i| lo + (hi - lo) * i as f64 / buckets as f64)
                .collect()
        };
        let counts = self.histogram(&edges)?;
        Ok((edges, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_merge_like_one_pass() {
        let xs = [3.0, -1.5, 8.25, 0.0, 12.0, 7.5, -4.0];
        let all = xs.iter().fold(StatCounter::default(), |s, x| s.push(*x));
        let (a, b) = xs.split_at(3);
        let merged = a
            .iter()
            .fold(StatCounter::default(), |s, x| s.push(*x))
            .merge(b.iter().fold(StatCounter::default(), |s, x| s.push(*x)));
        assert_eq!(all.count(), merged.count());
        assert!((all.mean() - merged.mean()).abs() < 1e-12);
        assert!((all.variance() - merged.variance()).abs() < 1e-9);
        assert_eq!((merged.min(), merged.max()), (-4.0, 12.0));
        assert!(StatCounter::default().mean().is_nan());
        assert_eq!(StatCounter::default().merge(all), all);
    }

    #[test]
    fn buckets_are_half_open_but_the_last() {
        let edges = [0.0, 1.0, 2.0];
        assert_eq!(bucket_of(&edges, 0.0), Some(0));
        assert_eq!(bucket_of(&edges, 0.999), Some(0));
        assert_eq!(bucket_of(&edges, 1.0), Some(1));
        assert_eq!(bucket_of(&edges, 2.0), Some(1));
        assert_eq!(bucket_of(&edges, 2.5), None);
        assert_eq!(bucket_of(&edges, -0.1), None);
        assert_eq!(bucket_of(&edges, f64::NAN), None);
    }
}
