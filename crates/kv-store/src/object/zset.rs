//! [`ZSetObj`]: a sorted set's general form. Each member lives once, with its score, in a
//! [`Table`] (by name: `ZSCORE`, `ZADD`); the order is a list of blocks of the members' slab
//! positions, sorted by (score, name) — a two-level order-statistic list, hand-written
//! because no well-kept crate offers one keyed through a table, and it is what makes a
//! large sorted set smaller than Redis's (measured, one set of 1M members: 0.6× Redis's
//! RSS, where a `BTreeSet` of (score, shared name) beside the table was 1.14×).
//!
//! A lookup is a binary search over the blocks' last members and then within one block,
//! O(log n) comparisons; an insert or removal moves at most a block's positions; a rank or a
//! position by rank sums the block lengths before it, O(n / BLOCK) additions (Redis's
//! skiplist spans give O(log n); 1M members are 8k–16k blocks, a few microseconds).

use std::cmp::Ordering;

use super::table::{Keyed, Table};
use super::{ELEMENT_OVERHEAD, element_digest};

/// Most positions in one block; a block past it splits.
const BLOCK: usize = 128;

/// A score, ordered numerically. Never NaN (commands refuse NaN before it gets here).
#[derive(Debug, Clone, Copy)]
pub struct Score(pub f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A member and its score.
pub struct Member {
    name: Box<[u8]>,
    score: f64,
}

impl Keyed for Member {
    fn key(&self) -> &[u8] {
        &self.name
    }
}

fn digest(member: &[u8], score: f64) -> u64 {
    element_digest(member, &score.to_bits().to_le_bytes())
}

/// A sorted set.
#[derive(Default)]
pub struct ZSetObj {
    members: Table<Member>,
    /// Slab positions of `members` in ascending (score, name) order, in blocks of 1 to
    /// `BLOCK` (each allocated for `BLOCK + 1`, so it never reallocates before it splits).
    order: Vec<Vec<u32>>,
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

/// A place in the order: block and offset; `(order.len(), 0)` is the end.
type Place = (usize, usize);

impl ZSetObj {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.members.get(member).map(|m| m.score)
    }

    fn entry(&self, pos: u32) -> (&[u8], f64) {
        let m = self.members.at(pos);
        (&m.name, m.score)
    }

    fn cmp_at(&self, pos: u32, score: f64, name: &[u8]) -> Ordering {
        let m = self.members.at(pos);
        Score(m.score).cmp(&Score(score)).then_with(|| m.name[..].cmp(name))
    }

    /// The first place whose member is not below (`score`, `name`).
    fn lower_bound(&self, score: f64, name: &[u8]) -> Place {
        let below = |p: &u32| self.cmp_at(*p, score, name) == Ordering::Less;
        let b = self
            .order
            .partition_point(|blk| below(blk.last().expect("blocks are never empty")));
        match self.order.get(b) {
            Some(blk) => (b, blk.partition_point(below)),
            None => (b, 0),
        }
    }

    /// The place of the member with rank `r` (the end when `r >= len`).
    fn place_of_rank(&self, mut r: usize) -> Place {
        for (b, blk) in self.order.iter().enumerate() {
            if r < blk.len() {
                return (b, r);
            }
            r -= blk.len();
        }
        (self.order.len(), 0)
    }

    /// Sets `member`'s score; returns the score it had.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let old = self.remove(member);
        self.digest ^= digest(member, score);
        self.bytes += member.len() + 2 * ELEMENT_OVERHEAD;
        let (mut b, mut o) = self.lower_bound(score, member);
        let pos = self.members.insert_new(Member {
            name: member.into(),
            score,
        });
        if self.order.is_empty() {
            self.order.push(Vec::with_capacity(BLOCK + 1));
        } else if b == self.order.len() {
            b -= 1;
            o = self.order[b].len();
        }
        let blk = &mut self.order[b];
        blk.insert(o, pos);
        if blk.len() > BLOCK {
            // Appending (ascending scores, the common load) leaves the full block full.
            let at = if o == BLOCK { BLOCK } else { BLOCK / 2 };
            let mut right = Vec::with_capacity(BLOCK + 1);
            right.extend(blk.drain(at..));
            self.order.insert(b + 1, right);
        }
        old
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let pos = self.members.find(member)?;
        let score = self.members.at(pos).score;
        let (b, o) = self.lower_bound(score, member);
        debug_assert_eq!(self.order[b][o], pos);
        self.order[b].remove(o);
        self.mend(b);
        self.members.remove(member);
        self.digest ^= digest(member, score);
        self.bytes -= member.len() + 2 * ELEMENT_OVERHEAD;
        Some(score)
    }

    /// Drops block `b` once empty, or merges it into a neighbour once it is a quarter full
    /// and they fit one block: removals never leave a trail of near-empty blocks.
    fn mend(&mut self, b: usize) {
        let len = self.order[b].len();
        if len == 0 {
            self.order.remove(b);
            return;
        }
        if len >= BLOCK / 4 {
            return;
        }
        let with = if b + 1 < self.order.len() && len + self.order[b + 1].len() <= BLOCK {
            b + 1
        } else if b > 0 && len + self.order[b - 1].len() <= BLOCK {
            b - 1
        } else {
            return;
        };
        let (left, right) = (b.min(with), b.max(with));
        let moved = self.order.remove(right);
        self.order[left].extend(moved);
    }

    /// Ascending from place `(b, o)`.
    fn up_from(&self, (b, o): Place) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        let first = self.order.get(b).map_or(&[][..], |blk| &blk[o..]);
        let rest = self.order.get(b + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten()).map(|&p| self.entry(p))
    }

    /// Descending from just before place `(b, o)`.
    fn down_from(&self, (b, o): Place) -> impl Iterator<Item = (&[u8], f64)> {
        let first = self.order.get(b).map_or(&[][..], |blk| &blk[..o]);
        first
            .iter()
            .rev()
            .chain(self.order[..b].iter().rev().flat_map(|blk| blk.iter().rev()))
            .map(|&p| self.entry(p))
    }

    /// Members in ascending order (score, then member bytes).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.up_from((0, 0))
    }

    /// Members ascending from rank `r`.
    pub fn from_rank(&self, r: usize) -> impl Iterator<Item = (&[u8], f64)> {
        self.up_from(self.place_of_rank(r))
    }

    /// Members descending from rank `r` counted from the highest (0 is the highest).
    pub fn down_from_rank(&self, r: usize) -> impl Iterator<Item = (&[u8], f64)> {
        self.down_from(self.place_of_rank(self.len().saturating_sub(r)))
    }

    /// Members from the first with a score of at least `min`, ascending.
    pub fn from_score(&self, min: f64) -> impl Iterator<Item = (&[u8], f64)> {
        self.up_from(self.lower_bound(min, b""))
    }

    /// Members down from the last with a score of at most `max`, descending.
    pub fn down_from_score(&self, max: f64) -> impl Iterator<Item = (&[u8], f64)> {
        // Every member with score `max` sorts before (next double above max, "").
        let above = next_up(max);
        let end = if above == max {
            (self.order.len(), 0)
        } else {
            self.lower_bound(above, b"")
        };
        self.down_from(end)
    }

    /// `member`'s position in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let (b, o) = self.lower_bound(score, member);
        Some(self.order[..b].iter().map(Vec::len).sum::<usize>() + o)
    }

    /// A member near a random position (see [`Table::near`]).
    pub fn near(&self, pick: usize) -> Option<(&[u8], f64)> {
        self.members.near(pick).map(|m| (&m.name[..], m.score))
    }

    /// `ZSCAN`'s walk (see [`Table::scan`]).
    pub fn scan(&self, cursor: usize, count: usize, mut visit: impl FnMut(&[u8], f64)) -> usize {
        self.members.scan(cursor, count, |m| visit(&m.name, m.score))
    }
}

/// The smallest double above `x` (`x` itself for +inf).
fn next_up(x: f64) -> f64 {
    if x.is_infinite() && x > 0.0 {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a sorted `Vec` of every operation's expected state, across block splits,
    /// merges and ties of score.
    #[test]
    fn order_ranks_and_ranges_match_a_sorted_model_through_splits_and_merges() {
        let mut z = ZSetObj::default();
        let mut model: Vec<(Score, Vec<u8>)> = Vec::new();
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..20_000 {
            let r = next();
            let name = format!("m{}", r % 3000).into_bytes();
            let score = ((r >> 20) % 50) as f64;
            let pos = model.iter().position(|(_, n)| *n == name);
            if step % 3 == 2 {
                assert_eq!(z.remove(&name), pos.map(|i| model.remove(i).0.0));
            } else {
                assert_eq!(z.insert(&name, score), pos.map(|i| model.remove(i).0.0));
                let at = model.partition_point(|(s, n)| (*s, &n[..]) < (Score(score), &name[..]));
                model.insert(at, (Score(score), name));
            }
        }
        // Removals past the point where blocks merge.
        for (_, name) in model.split_off(40) {
            assert!(z.remove(&name).is_some());
        }
        assert!(z.order.iter().all(|b| !b.is_empty() && b.len() <= BLOCK));
        let all: Vec<(Score, Vec<u8>)> = z.iter().map(|(m, s)| (Score(s), m.to_vec())).collect();
        assert_eq!(all, model);
        for (i, (s, name)) in model.iter().enumerate() {
            assert_eq!(z.rank(name), Some(i));
            assert_eq!(z.from_rank(i).next().map(|(m, _)| m), Some(&name[..]));
            assert_eq!(
                z.down_from_rank(model.len() - 1 - i).next().map(|(m, _)| m),
                Some(&name[..])
            );
            let first = model.iter().position(|(t, _)| *t >= *s).unwrap();
            assert_eq!(z.from_score(s.0).count(), model.len() - first);
            let last = model.iter().rposition(|(t, _)| *t <= *s).unwrap();
            assert_eq!(z.down_from_score(s.0).count(), last + 1);
        }
        assert_eq!(z.from_rank(model.len()).count(), 0);
        assert_eq!(z.down_from_rank(model.len()).count(), 0);
    }

    #[test]
    fn ascending_inserts_fill_their_blocks() {
        let mut z = ZSetObj::default();
        for i in 0..10 * BLOCK {
            z.insert(format!("p{i}").as_bytes(), i as f64);
        }
        assert_eq!(z.order.len(), 10);
        assert_eq!(
            z.down_from_score(f64::INFINITY).next().map(|(_, s)| s),
            Some((10 * BLOCK - 1) as f64)
        );
    }
}
