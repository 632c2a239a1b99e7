//! The backlog: the most recent log entries, bounded in bytes.

use std::collections::VecDeque;

use bytes::Bytes;

/// One entry: its position and its encoded `KV.OP` frame.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub epoch: u64,
    pub frame: Bytes,
}

/// Entries `base + 1 ..= last` (offsets are contiguous), the oldest dropped first when over
/// `max_bytes`. `base` is the last offset no longer held; `base_epoch` its epoch.
#[derive(Debug)]
pub struct Backlog {
    entries: VecDeque<LogEntry>,
    base: u64,
    base_epoch: u64,
    bytes: usize,
    max_bytes: usize,
}

/// The requested entries were already dropped from the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed;

impl Backlog {
    /// An empty backlog at offset 0 keeping at most `max_bytes` of entries.
    pub fn new(max_bytes: usize) -> Backlog {
        Backlog {
            entries: VecDeque::new(),
            base: 0,
            base_epoch: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// Offset of the newest entry (or of the base when empty).
    pub fn last_offset(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Epoch of the newest entry (or of the base when empty).
    pub fn last_epoch(&self) -> u64 {
        self.entries.back().map_or(self.base_epoch, |e| e.epoch)
    }

    /// The offset the next entry gets.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Bytes of entries held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the entry at [`Backlog::next_offset`], then drops the oldest entries while over
    /// the byte bound.
    pub fn append(&mut self, epoch: u64, frame: Bytes) {
        self.bytes += frame.len();
        self.entries.push_back(LogEntry { epoch, frame });
        while self.bytes > self.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= old.frame.len();
            self.base += 1;
            self.base_epoch = old.epoch;
        }
    }

    /// Moves to the next offset without keeping an entry (nobody could use it: see
    /// `Data::keeps_log`). Only on an empty backlog.
    pub fn skip(&mut self, epoch: u64) {
        debug_assert!(self.entries.is_empty());
        self.base += 1;
        self.base_epoch = epoch;
    }

    /// Forgets everything: the store was replaced by a snapshot taken at `(epoch, offset)`.
    pub fn reset(&mut self, epoch: u64, offset: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.base = offset;
        self.base_epoch = epoch;
    }

    /// The epoch of the entry at `offset`, when the backlog can still tell (the base counts).
    pub fn epoch_at(&self, offset: u64) -> Option<u64> {
        if offset == self.base {
            return Some(self.base_epoch);
        }
        if offset < self.base || offset > self.last_offset() {
            return None;
        }
        Some(self.entries[(offset - self.base - 1) as usize].epoch)
    }

    /// True when a replica whose last entry is `(epoch, offset)` holds a prefix of this log
    /// that the backlog can continue: same entry at that offset, and everything after it held.
    pub fn can_resume(&self, epoch: u64, offset: u64) -> bool {
        self.epoch_at(offset) == Some(epoch)
    }

    /// Appends the frames of entries `from ..` (at most `max`) to `out`.
    pub fn read_from(&self, from: u64, max: usize, out: &mut Vec<Bytes>) -> Result<(), Trimmed> {
        if from <= self.base {
            return Err(Trimmed);
        }
        let start = (from - self.base - 1) as usize;
        out.extend(self.entries.iter().skip(start).take(max).map(|e| e.frame.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn append_read_trim() {
        let mut b = Backlog::new(30);
        for _ in 0..3 {
            b.append(1, frame(10));
        }
        assert_eq!((b.last_offset(), b.bytes()), (3, 30));
        let mut out = Vec::new();
        b.read_from(2, 10, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        b.append(2, frame(10));
        assert_eq!(b.last_offset(), 4);
        assert_eq!(b.read_from(1, 10, &mut Vec::new()), Err(Trimmed));
        assert_eq!(b.epoch_at(1), Some(1), "the base remembers its epoch");
        assert_eq!(b.epoch_at(4), Some(2));
        assert_eq!(b.epoch_at(0), None);
        assert_eq!(b.epoch_at(5), None);
        assert!(b.can_resume(1, 3));
        assert!(!b.can_resume(2, 3), "same offset, other epoch: diverged");
        let mut out = Vec::new();
        b.read_from(5, 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn skipping_keeps_offsets_contiguous() {
        let mut b = Backlog::new(100);
        b.skip(2);
        b.skip(2);
        assert_eq!((b.last_offset(), b.last_epoch()), (2, 2));
        assert!(b.can_resume(2, 2));
        b.append(2, frame(5));
        assert_eq!(b.last_offset(), 3);
    }

    #[test]
    fn reset_after_snapshot() {
        let mut b = Backlog::new(100);
        b.append(1, frame(5));
        b.reset(3, 40);
        assert_eq!((b.last_offset(), b.last_epoch(), b.next_offset()), (40, 3, 41));
        assert!(b.can_resume(3, 40));
        assert!(!b.can_resume(3, 39));
    }
}
