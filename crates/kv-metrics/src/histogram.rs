//! A latency histogram of relaxed atomic counters: recording is one search of a small
//! fixed table and one add, no lock.
//!
//! Bucket bounds follow the R10 preferred numbers (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8
//! per decade) from 1 µs to 100 s, so a percentile read from them is within 28% of the true
//! value (Redis's `INFO latencystats` is exact to two digits; ours is an estimate, reported
//! as the bucket's upper bound), and the bounds Prometheus users expect (10 µs, 25 µs, 50 µs
//! … 10 s) are among them, exported exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The mantissas of a decade, in thousandths.
const R10: [u64; 10] = [1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000];

/// Decades covered: 1 µs … 100 s.
const DECADES: usize = 8;

/// Upper bounds of the buckets in nanoseconds; one more bucket holds everything above.
pub const BOUNDS: [u64; R10.len() * DECADES + 1] = bounds();

const fn bounds() -> [u64; R10.len() * DECADES + 1] {
    let mut out = [0u64; R10.len() * DECADES + 1];
    let mut scale = 1u64; // ns per thousandth of a µs … of 10^7 µs
    let mut d = 0;
    while d < DECADES {
        let mut m = 0;
        while m < R10.len() {
            out[d * R10.len() + m] = R10[m] * scale;
            m += 1;
        }
        scale *= 10;
        d += 1;
    }
    out[R10.len() * DECADES] = 1000 * scale; // 100 s
    out
}

/// Number of buckets: one per bound, and the overflow.
pub const BUCKETS: usize = BOUNDS.len() + 1;

/// The bounds exported to Prometheus, in nanoseconds: 10 µs, 25 µs, 50 µs, 100 µs … 10 s
/// (Prometheus's customary 1-2.5-5 series).
pub fn exported_bounds() -> impl Iterator<Item = (usize, u64)> {
    BOUNDS.iter().copied().enumerate().filter(|&(_, b)| {
        let mut m = b;
        while m >= 10_000 && m % 10 == 0 {
            m /= 10;
        }
        (10_000..=10_000_000_000).contains(&b) && [1000, 2500, 5000].contains(&m)
    })
}

/// The bucket of a duration: the first whose bound is at least it.
pub fn bucket_of(took: Duration) -> usize {
    let ns = took.as_nanos().min(u64::MAX as u128) as u64;
    BOUNDS.partition_point(|&b| b < ns)
}

/// Counts per bucket.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Counts `n` observations of `took`.
    pub fn record_n(&self, took: Duration, n: u64) {
        self.counts[bucket_of(took)].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one observation of `took`.
    pub fn record(&self, took: Duration) {
        self.record_n(took, 1);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect())
    }

    pub fn reset(&self) {
        self.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
    }
}

/// A histogram's counts at one moment; snapshots add up (several commands' into one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub Vec<u64>);

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot(vec![0; BUCKETS])
    }
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another snapshot's counts.
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let ns = BOUNDS.get(i).copied().unwrap_or(BOUNDS[BOUNDS.len() - 1]);
                return Some(Duration::from_nanos(ns));
            }
        }
        None
    }

    /// Observations at or below each exported bound (Prometheus's cumulative buckets), with
    /// the bound in nanoseconds.
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut seen = 0;
        let mut next = 0;
        for (i, bound) in exported_bounds() {
            seen += self.0[next..=i].iter().sum::<u64>();
            next = i + 1;
            out.push((bound, seen));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_rise_from_one_microsecond_to_a_hundred_seconds() {
        assert_eq!(BOUNDS[0], 1_000);
        assert_eq!(BOUNDS[1], 1_250);
        assert_eq!(BOUNDS[10], 10_000);
        assert_eq!(*BOUNDS.last().unwrap(), 100_000_000_000);
        assert!(BOUNDS.windows(2).all(|w| w[0] < w[1]));
        // No bucket is wider than 28% of its lower bound.
        assert!(BOUNDS.windows(2).all(|w| (w[1] - w[0]) * 100 <= w[0] * 28));
    }

    #[test]
    fn exports_prometheus_customary_bounds() {
        let secs: Vec<f64> = exported_bounds().map(|(_, b)| b as f64 / 1e9).collect();
        assert_eq!(
            secs,
            [
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0, 10.0
            ]
        );
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_that_holds_it() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_nanos(1_000)), 0);
        assert_eq!(bucket_of(Duration::from_nanos(1_001)), 1);
        assert_eq!(bucket_of(Duration::from_micros(10)), 10);
        assert_eq!(bucket_of(Duration::from_secs(1000)), BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_cumulative_counts() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(Duration::from_micros(20));
        }
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(20));
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(20)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_nanos(3_150_000)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_secs(20)));
        let cum = s.cumulative();
        assert_eq!(cum[0], (10_000, 0));
        assert_eq!(cum[1], (25_000, 98));
        assert_eq!(cum.iter().find(|(b, _)| *b == 5_000_000).unwrap().1, 99);
        assert_eq!(cum.last().unwrap(), &(10_000_000_000, 99));
        assert_eq!(Snapshot::default().quantile(0.5), None);
    }
}
