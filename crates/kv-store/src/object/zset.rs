//! [`ZSetObj`]: a sorted set's general form: members with their scores in a [`Table`], and
//! `(score, member)` in a B-tree for the order, the member's bytes shared by both (one
//! allocation per member: a second copy was measured at +30% memory for a large set). Ranges by score or member are O(log n + m);
//! a rank is O(rank) (a B-tree keeps no subtree counts; an order-statistic tree would make
//! it O(log n), as Redis's skiplist spans do).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use super::table::{Keyed, Table};
use super::{ELEMENT_OVERHEAD, element_digest};

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
    name: Arc<[u8]>,
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
    order: BTreeSet<(Score, Arc<[u8]>)>,
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

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

    /// Sets `member`'s score; returns the score it had.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let old = self.remove(member);
        self.digest ^= digest(member, score);
        self.bytes += member.len() + 2 * ELEMENT_OVERHEAD;
        let name: Arc<[u8]> = Arc::from(member);
        self.order.insert((Score(score), name.clone()));
        self.members.insert(Member { name, score });
        old
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let m = self.members.remove(member)?;
        self.order.remove(&(Score(m.score), m.name));
        self.digest ^= digest(member, m.score);
        self.bytes -= member.len() + 2 * ELEMENT_OVERHEAD;
        Some(m.score)
    }

    /// Members in ascending order (score, then member bytes).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (&m[..], s.0))
    }

    /// Members from the first with a score of at least `min`, ascending.
    pub fn from_score(&self, min: f64) -> impl Iterator<Item = (&[u8], f64)> {
        let start: (Score, Arc<[u8]>) = (Score(min), Arc::from(&b""[..]));
        self.order
            .range((Bound::Included(start), Bound::Unbounded))
            .map(|(s, m)| (&m[..], s.0))
    }

    /// Members down from the last with a score of at most `max`, descending.
    pub fn down_from_score(&self, max: f64) -> impl Iterator<Item = (&[u8], f64)> {
        // Every member with score `max` sorts before (Score(next above max), "").
        let above = next_up(max);
        let end: (Score, Arc<[u8]>) = (Score(above), Arc::from(&b""[..]));
        let bound = if above == max {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        self.order
            .range((Bound::Unbounded, bound))
            .rev()
            .map(|(s, m)| (&m[..], s.0))
    }

    /// `member`'s position in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let key: (Score, Arc<[u8]>) = (Score(score), Arc::from(member));
        Some(self.order.range(..key).count())
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
