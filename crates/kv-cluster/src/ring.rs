//! The consistent-hash ring, over Redis Cluster's slots. A key belongs to a slot
//! (`kv_proto::slot`: CRC16 of the key or of its `{hash tag}`, mod 16384), and a slot to a
//! shard: the slots lie evenly around a 64-bit circle, each shard owns `vnodes` points on it,
//! and a slot belongs to the shard owning the first point at or after the slot's position
//! (wrapping). Adding a shard moves only the slots that now fall before its points (about
//! 1/N of them), and keys sharing a hash tag always share a shard.
//!
//! Slots rather than keys on the circle: cluster-aware clients learn the slot map
//! (`CLUSTER SLOTS`) and compute slots themselves, and ownership comes in contiguous ranges
//! (about `vnodes` per shard) instead of one entry per slot.

use kv_proto::hash::hash64;
use kv_proto::slot::{SLOTS, key_slot};

/// Points per shard. 160 is ketama's choice; it keeps shards within a few percent of an
/// even split.
pub const DEFAULT_VNODES: u32 = 160;

/// An immutable ring over a set of shard names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// (point, index into `shards`), sorted.
    points: Vec<(u64, u32)>,
    shards: Vec<String>,
    /// The owner (index into `shards`) of each slot, precomputed: a key's lookup is a CRC16
    /// and an index. Empty on an empty ring.
    slot_owner: Vec<u16>,
}

/// Where slot `slot` lies on the circle: the start of its 1/16384 arc.
fn slot_point(slot: u16) -> u64 {
    (slot as u64) << (64 - SLOTS.trailing_zeros())
}

impl Ring {
    /// A ring over `shards` (order and duplicates do not matter).
    pub fn new<S: AsRef<str>>(shards: impl IntoIterator<Item = S>, vnodes: u32) -> Ring {
        let mut names: Vec<String> = shards.into_iter().map(|s| s.as_ref().to_string()).collect();
        names.sort();
        names.dedup();
        assert!(names.len() <= u16::MAX as usize, "at most 65535 shards");
        let mut points = Vec::with_capacity(names.len() * vnodes as usize);
        for (i, name) in names.iter().enumerate() {
            for v in 0..vnodes {
                points.push((hash64(format!("{name}#{v}").as_bytes()), i as u32));
            }
        }
        // Ties broken by shard name order, so the ring is a pure function of its inputs.
        points.sort_unstable();
        let slot_owner = if points.is_empty() {
            Vec::new()
        } else {
            (0..SLOTS)
                .map(|slot| {
                    let p = slot_point(slot);
                    let i = points.partition_point(|&(q, _)| q < p);
                    points[if i == points.len() { 0 } else { i }].1 as u16
                })
                .collect()
        };
        Ring {
            points,
            shards: names,
            slot_owner,
        }
    }

    /// The shard that owns `key`, or `None` on an empty ring.
    pub fn shard_for(&self, key: &[u8]) -> Option<&str> {
        self.shard_for_slot(key_slot(key))
    }

    /// The index in [`Ring::shards`] of the shard that owns `slot`, or `None` on an empty
    /// ring: for tables kept alongside the ring, one entry per shard.
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        self.slot_owner.get(slot as usize).map(|&i| usize::from(i))
    }

    /// The shard that owns `slot`, or `None` on an empty ring.
    pub fn shard_for_slot(&self, slot: u16) -> Option<&str> {
        let owner = *self.slot_owner.get(slot as usize)?;
        Some(&self.shards[owner as usize])
    }

    /// Ownership as contiguous ranges `(first slot, last slot, shard)`, in slot order.
    pub fn slot_ranges(&self) -> Vec<(u16, u16, &str)> {
        let mut ranges: Vec<(u16, u16, &str)> = Vec::new();
        for (slot, &owner) in self.slot_owner.iter().enumerate() {
            let shard = self.shards[owner as usize].as_str();
            match ranges.last_mut() {
                Some(last) if last.2 == shard => last.1 = slot as u16,
                _ => ranges.push((slot as u16, slot as u16, shard)),
            }
        }
        ranges
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
        let ranges = ring.slot_ranges();
        assert_eq!((ranges.len(), ranges[0], ranges[ranges.len() - 1]), GOLDEN_RANGES);
    }

    const GOLDEN: [&str; 12] = [
        "shard-3", "shard-3", "shard-2", "shard-2", "shard-1", "shard-2", "shard-3", "shard-3", "shard-2", "shard-3",
        "shard-2", "shard-2",
    ];
    /// `(first slot, last slot, shard)`.
    type Range = (u16, u16, &'static str);
    const GOLDEN_RANGES: (usize, Range, Range) = (309, (0, 27, "shard-1"), (16374, 16383, "shard-1"));

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
    fn slots_in_contiguous_ranges_and_tags_together() {
        let ring = Ring::new(["a", "b", "c"], DEFAULT_VNODES);
        let ranges = ring.slot_ranges();
        assert_eq!(ranges.first().map(|r| r.0), Some(0));
        assert_eq!(ranges.last().map(|r| r.1), Some(SLOTS - 1));
        for w in ranges.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "ranges tile the slots");
            assert_ne!(w[0].2, w[1].2, "neighbouring ranges have different owners");
        }
        assert!(ranges.len() <= 3 * DEFAULT_VNODES as usize, "{}", ranges.len());
        for (first, last, shard) in &ranges {
            assert!((*first..=*last).all(|s| ring.shard_for_slot(s) == Some(*shard)));
        }
        let tagged: Vec<&str> = (0..50)
            .map(|i| ring.shard_for(format!("{{user1000}}:{i}").as_bytes()).unwrap())
            .collect();
        assert!(tagged.iter().all(|s| *s == tagged[0]), "{tagged:?}");
        assert_eq!(
            ring.shard_for(b"{user1000}:x"),
            ring.shard_for_slot(key_slot(b"user1000"))
        );
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(Ring::new(Vec::<String>::new(), 10).shard_for(b"x"), None);
        assert!(Ring::new(Vec::<String>::new(), 10).slot_ranges().is_empty());
        assert_eq!(Ring::new(["only"], 10).shard_for(b"x"), Some("only"));
        assert_eq!(Ring::new(["only"], 10).slot_ranges(), [(0, SLOTS - 1, "only")]);
        assert_eq!(Ring::new(["b", "a", "b"], 4).shards(), ["a", "b"]);
    }
}
