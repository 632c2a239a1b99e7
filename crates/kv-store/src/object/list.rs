//! [`ListObj`]: a list, a deque of elements (O(1) at both ends, O(1) by index).

use std::collections::VecDeque;

use super::element_digest;

/// Bytes charged per element on top of its length: the deque slot and the allocation.
const LIST_OVERHEAD: usize = 32;

/// A list.
#[derive(Default)]
pub struct ListObj {
    items: VecDeque<Box<[u8]>>,
    /// The wrapping sum of the elements' digests: it counts duplicates (a XOR would cancel
    /// them) but not their order.
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

impl ListObj {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn added(&mut self, v: &[u8]) {
        self.digest = self.digest.wrapping_add(element_digest(v, b""));
        self.bytes += v.len() + LIST_OVERHEAD;
    }

    fn removed(&mut self, v: &[u8]) {
        self.digest = self.digest.wrapping_sub(element_digest(v, b""));
        self.bytes -= v.len() + LIST_OVERHEAD;
    }

    pub fn push_front(&mut self, v: &[u8]) {
        self.added(v);
        self.items.push_front(Box::from(v));
    }

    pub fn push_back(&mut self, v: &[u8]) {
        self.added(v);
        self.items.push_back(Box::from(v));
    }

    pub fn pop_front(&mut self) -> Option<Box<[u8]>> {
        let v = self.items.pop_front()?;
        self.removed(&v);
        Some(v)
    }

    pub fn pop_back(&mut self) -> Option<Box<[u8]>> {
        let v = self.items.pop_back()?;
        self.removed(&v);
        Some(v)
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.items.get(i).map(|v| &v[..])
    }

    /// Replaces element `i`; false when out of range.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        let Some(old) = self.items.get(i).cloned() else {
            return false;
        };
        self.removed(&old);
        self.added(v);
        self.items[i] = Box::from(v);
        true
    }

    /// Inserts `v` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, v: &[u8]) {
        self.added(v);
        self.items.insert(i, Box::from(v));
    }

    pub fn remove(&mut self, i: usize) -> Option<Box<[u8]>> {
        let v = self.items.remove(i)?;
        self.removed(&v);
        Some(v)
    }

    /// Keeps only positions `start..end`.
    pub fn retain_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.items.len());
        let start = start.min(end);
        for v in self.items.drain(end..).collect::<Vec<_>>() {
            self.removed(&v);
        }
        for v in self.items.drain(..start).collect::<Vec<_>>() {
            self.removed(&v);
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator {
        self.items.iter().map(|v| &v[..])
    }
}
