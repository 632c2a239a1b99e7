//! The consistent-hash ring. Each shard owns `vnodes` points on a 64-bit circle; a key
//! belongs to the shard owning the first point at or after the key's hash (wrapping).
//! Adding a shard moves only the keys that now fall before its points.

use kv_proto::hash::hash64;

/// Points per shard. 160 is ketama's choice; it keeps shards within a few percent of an
/// even split.
pub const DEFAULT_VNODES: u32 = 160;

/// An immutable ring over a set of shard names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// (point, index into `shards`), sorted.
    points: Vec<(u64, u32)>,
    shards: Vec<String>,
}

impl Ring {
    /// A ring over `shards` (order and duplicates do not matter).
    pub fn new<S: AsRef<str>>(shards: impl IntoIterator<Item = S>, vnodes: u32) -> Ring {
        let mut names: Vec<String> = shards.into_iter().map(|s| s.as_ref().to_string()).collect();
        names.sort();
        names.dedup();
        let mut points = Vec::with_capacity(names.len() * vnodes as usize);
        for (i, name) in names.iter().enumerate() {
            for v in 0..vnodes {
                points.push((hash64(format!("{name}#{v}").as_bytes()), i as u32));
            }
        }
        // Ties broken by shard name order, so the ring is a pure function of its inputs.
        points.sort_unstable();
        Ring { points, shards: names }
    }

    /// The shard that owns `key`, or `None` on an empty ring.
    pub fn shard_for(&self, key: &[u8]) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash64(key);
        let i = self.points.partition_point(|&(p, _)| p < h);
        let (_, shard) = self.points[if i == self.points.len() { 0 } else { i }];
        Some(&self.shards[shard as usize])
    }

    /// The shard names, sorted.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// True when no shard is on the ring.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: a refactor that changes any of these would move keys between shards
    /// on a live cluster. Do not update them without a migration plan.
    #[test]
    fn golden_placement() {
        let ring = Ring::new(["shard-1", "shard-2", "shard-3"], DEFAULT_VNODES);
        let got: Vec<&str> = (0..12)
            .map(|i| ring.shard_for(format!("key:{i}").as_bytes()).unwrap())
            .collect();
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: [&str; 12] = [
        "shard-3", "shard-3", "shard-2", "shard-1", "shard-3", "shard-1", "shard-1", "shard-2", "shard-3", "shard-2",
        "shard-1", "shard-2",
    ];

    #[test]
    fn balanced_and_stable() {
        let two = Ring::new(["a", "b"], DEFAULT_VNODES);
        let three = Ring::new(["c", "b", "a"], DEFAULT_VNODES);
        let n = 20_000;
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for i in 0..n {
            let key = format!("k{i}");
            let s2 = two.shard_for(key.as_bytes()).unwrap();
            let s3 = three.shard_for(key.as_bytes()).unwrap();
            counts[(s3.as_bytes()[0] - b'a') as usize] += 1;
            if s2 != s3 {
                assert_eq!(s3, "c", "adding a shard only moves keys to it");
                moved += 1;
            }
        }
        for c in counts {
            assert!(
                (c as f64) > n as f64 * 0.25 && (c as f64) < n as f64 * 0.42,
                "{counts:?}"
            );
        }
        assert_eq!(moved, counts[2]);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(Ring::new(Vec::<String>::new(), 10).shard_for(b"x"), None);
        assert_eq!(Ring::new(["only"], 10).shard_for(b"x"), Some("only"));
        assert_eq!(Ring::new(["b", "a", "b"], 4).shards(), ["a", "b"]);
    }
}
