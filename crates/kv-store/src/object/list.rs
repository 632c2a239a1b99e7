//! [`ListObj`]: a list, held as Redis holds one (a quicklist): a deque of blocks, each up to
//! [`BLOCK_BYTES`] of elements packed one after another.
//!
//! Why not a deque of boxed elements (what this was): each element then cost its own
//! allocation and a deque slot, about 48 bytes for a 3-byte element against 5 here, and
//! popping an element pushed long ago touched memory long out of cache. Packed, both ends are
//! O(1) (a block keeps room before its first element for pushes at the front), iteration
//! reads memory in order, and an element by index is found block by block, O(n / block
//! size), as in Redis.
//!
//! An element is its length, its bytes and its length again, so that a block can be read
//! from either end: one byte each for up to 127 bytes, else a marker byte and four bytes
//! little-endian (an element is at most 512 MB, the protocol's bulk limit).

use std::collections::VecDeque;

use super::element_digest;

/// A block's elements take at most this many bytes, encoded; an element larger than that
/// gets a block of its own. Redis's default (`list-max-listpack-size -2`) is 8 KiB; half
/// of it keeps an insert's copy short.
const BLOCK_BYTES: usize = 4096;

/// Bytes charged per element on top of its encoded length ([`encoded_len`]): its share of its
/// block's header and spare room.
const LIST_OVERHEAD: usize = 2;

/// The bytes an element of `n` bytes is charged.
fn charge(n: usize) -> usize {
    encoded_len(n) + LIST_OVERHEAD
}

/// The compact form's header: the elements' digest (8 bytes) and count (4), little-endian.
const HEADER_BYTES: usize = 12;

/// Marks a long element's lengths (a short one's length byte is below it).
const LONG: u8 = 0x80;

/// The bytes an element of `n` bytes takes in a block.
fn encoded_len(n: usize) -> usize {
    if n < LONG as usize { n + 2 } else { n + 10 }
}

/// Writes `v` encoded into `dst`, which is exactly [`encoded_len`] long.
fn write_entry(dst: &mut [u8], v: &[u8]) {
    let n = v.len();
    let end = dst.len();
    if n < LONG as usize {
        dst[0] = n as u8;
        dst[1..1 + n].copy_from_slice(v);
        dst[end - 1] = n as u8;
    } else {
        let len = (n as u32).to_le_bytes();
        dst[0] = LONG;
        dst[1..5].copy_from_slice(&len);
        dst[5..5 + n].copy_from_slice(v);
        dst[end - 5..end - 1].copy_from_slice(&len);
        dst[end - 1] = LONG;
    }
}

/// Appends `v` encoded to `buf`.
fn push_entry(buf: &mut Vec<u8>, v: &[u8]) {
    let n = v.len();
    if n < LONG as usize {
        buf.push(n as u8);
        buf.extend_from_slice(v);
        buf.push(n as u8);
    } else {
        let len = (n as u32).to_le_bytes();
        buf.push(LONG);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(v);
        buf.extend_from_slice(&len);
        buf.push(LONG);
    }
}

/// The element starting at `off`, and where the next one starts.
fn entry_at(buf: &[u8], off: usize) -> (&[u8], usize) {
    let first = buf[off];
    if first < LONG {
        let n = first as usize;
        (&buf[off + 1..off + 1 + n], off + n + 2)
    } else {
        let n = u32::from_le_bytes(buf[off + 1..off + 5].try_into().expect("4 bytes")) as usize;
        (&buf[off + 5..off + 5 + n], off + n + 10)
    }
}

/// [`entry_at`] for bytes that may be malformed: `None` past the end or on a bad length.
fn checked_entry_at(buf: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let first = *buf.get(off)?;
    let (head, n) = if first < LONG {
        (1, first as usize)
    } else {
        (
            5,
            u32::from_le_bytes(buf.get(off + 1..off + 5)?.try_into().ok()?) as usize,
        )
    };
    let next = off + 2 * head + n;
    let v = buf.get(off + head..off + head + n)?;
    (buf.get(next - 1..next)? == [first]).then_some((v, next))
}

/// The element ending at `end`, and where it starts.
fn entry_before(buf: &[u8], end: usize) -> (&[u8], usize) {
    let last = buf[end - 1];
    if last < LONG {
        let n = last as usize;
        (&buf[end - 1 - n..end - 1], end - n - 2)
    } else {
        let n = u32::from_le_bytes(buf[end - 5..end - 1].try_into().expect("4 bytes")) as usize;
        (&buf[end - 5 - n..end - 5], end - n - 10)
    }
}

/// Some of a list's elements, packed. Never empty while in a list.
#[derive(Default)]
struct Block {
    /// `buf[start..]` holds the elements; `buf[..start]` is room for pushes at the front.
    buf: Vec<u8>,
    start: usize,
    count: usize,
}

impl Block {
    fn used(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True when an element of `encoded` bytes may join (an empty block takes any one).
    fn has_room(&self, encoded: usize) -> bool {
        self.count == 0 || self.used() + encoded <= BLOCK_BYTES
    }

    fn push_back(&mut self, v: &[u8]) {
        push_entry(&mut self.buf, v);
        self.count += 1;
    }

    fn push_front(&mut self, v: &[u8]) {
        let e = encoded_len(v.len());
        if self.start < e {
            // Room at the front: as much again as the block holds (amortised O(1) per push,
            // at most twice the elements' bytes), but no more than it may still take.
            let used = self.used();
            let room = e.max(used.min(BLOCK_BYTES.saturating_sub(used)));
            let mut buf = Vec::with_capacity(room + used);
            buf.resize(room, 0);
            buf.extend_from_slice(&self.buf[self.start..]);
            self.buf = buf;
            self.start = room;
        }
        self.start -= e;
        write_entry(&mut self.buf[self.start..self.start + e], v);
        self.count += 1;
    }

    /// Removes the first element, handing it to `f`.
    fn pop_front_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (v, next) = entry_at(&self.buf, self.start);
        let r = f(v);
        self.start = next;
        self.count -= 1;
        r
    }

    /// Removes the last element, handing it to `f`.
    fn pop_back_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (v, at) = entry_before(&self.buf, self.buf.len());
        let r = f(v);
        self.buf.truncate(at);
        self.count -= 1;
        r
    }

    /// The byte offset of element `k` (`k == count`: the end), walked from the nearer end.
    fn offset_of(&self, k: usize) -> usize {
        if k <= self.count / 2 {
            (0..k).fold(self.start, |off, _| entry_at(&self.buf, off).1)
        } else {
            (k..self.count).fold(self.buf.len(), |end, _| entry_before(&self.buf, end).1)
        }
    }
}

/// A list.
#[derive(Default)]
pub struct ListObj {
    blocks: VecDeque<Block>,
    len: usize,
    /// The wrapping sum of the elements' digests: it counts duplicates (a XOR would cancel
    /// them) but not their order.
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

impl ListObj {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn added(&mut self, v: &[u8]) {
        self.digest = self.digest.wrapping_add(element_digest(v, b""));
        self.bytes += charge(v.len());
        self.len += 1;
    }

    fn removed(&mut self, v: &[u8]) {
        self.digest = self.digest.wrapping_sub(element_digest(v, b""));
        self.bytes -= charge(v.len());
        self.len -= 1;
    }

    pub fn push_front(&mut self, v: &[u8]) {
        self.added(v);
        match self.blocks.front_mut() {
            Some(b) if b.has_room(encoded_len(v.len())) => b.push_front(v),
            _ => self.push_block(v, true),
        }
    }

    pub fn push_back(&mut self, v: &[u8]) {
        self.added(v);
        match self.blocks.back_mut() {
            Some(b) if b.has_room(encoded_len(v.len())) => b.push_back(v),
            _ => self.push_block(v, false),
        }
    }

    /// Puts `v` in a new block of its own, first (`front`) or last.
    fn push_block(&mut self, v: &[u8], front: bool) {
        let mut b = Block::default();
        b.push_back(v);
        self.first_block();
        if front {
            self.blocks.push_front(b);
        } else {
            self.blocks.push_back(b);
        }
    }

    /// A list of one block (most lists) holds one block slot, not the deque's usual four.
    fn first_block(&mut self) {
        if self.blocks.capacity() == 0 {
            self.blocks.reserve_exact(1);
        }
    }

    /// Removes the first (`front`) or last element, handing it to `f`; `None` when empty.
    fn pop_with<R>(&mut self, front: bool, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let b = if front {
            self.blocks.front_mut()
        } else {
            self.blocks.back_mut()
        }?;
        let (mut digest, mut bytes) = (self.digest, self.bytes);
        let take = |v: &[u8]| {
            digest = digest.wrapping_sub(element_digest(v, b""));
            bytes -= charge(v.len());
            f(v)
        };
        let r = if front {
            b.pop_front_with(take)
        } else {
            b.pop_back_with(take)
        };
        if b.count == 0 {
            if front {
                self.blocks.pop_front();
            } else {
                self.blocks.pop_back();
            }
        }
        (self.digest, self.bytes, self.len) = (digest, bytes, self.len - 1);
        Some(r)
    }

    pub fn pop_front(&mut self) -> Option<Box<[u8]>> {
        self.pop_with(true, |v| Box::from(v))
    }

    pub fn pop_back(&mut self) -> Option<Box<[u8]>> {
        self.pop_with(false, |v| Box::from(v))
    }

    /// The block holding position `i` (< len) and the element's index in it, counted from
    /// the nearer end of the list.
    fn locate(&self, mut i: usize) -> (usize, usize) {
        if i < self.len / 2 {
            for (bi, b) in self.blocks.iter().enumerate() {
                if i < b.count {
                    return (bi, i);
                }
                i -= b.count;
            }
        } else {
            let mut from_end = self.len - 1 - i;
            for (bi, b) in self.blocks.iter().enumerate().rev() {
                if from_end < b.count {
                    return (bi, b.count - 1 - from_end);
                }
                from_end -= b.count;
            }
        }
        unreachable!("position {i} within a list of {}", self.len)
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        let (bi, k) = self.locate(i);
        let b = &self.blocks[bi];
        Some(entry_at(&b.buf, b.offset_of(k)).0)
    }

    /// Replaces element `i`; false when out of range.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        if i >= self.len {
            return false;
        }
        let (bi, k) = self.locate(i);
        let b = &mut self.blocks[bi];
        let off = b.offset_of(k);
        let (old, next) = entry_at(&b.buf, off);
        let old_digest = element_digest(old, b"");
        let old_len = old.len();
        let mut entry = Vec::with_capacity(encoded_len(v.len()));
        push_entry(&mut entry, v);
        b.buf.splice(off..next, entry);
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(element_digest(v, b""));
        self.bytes = self.bytes - charge(old_len) + charge(v.len());
        self.split_if_large(bi);
        true
    }

    /// Inserts `v` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, v: &[u8]) {
        if i >= self.len {
            return self.push_back(v);
        }
        if i == 0 {
            return self.push_front(v);
        }
        let (bi, k) = self.locate(i);
        self.added(v);
        let b = &mut self.blocks[bi];
        let off = b.offset_of(k);
        let mut entry = Vec::with_capacity(encoded_len(v.len()));
        push_entry(&mut entry, v);
        b.buf.splice(off..off, entry);
        b.count += 1;
        self.split_if_large(bi);
    }

    /// Splits block `bi` in two when an insert or a replacement grew it past a block's size.
    fn split_if_large(&mut self, bi: usize) {
        let b = &mut self.blocks[bi];
        if b.used() <= BLOCK_BYTES || b.count < 2 {
            return;
        }
        let keep = b.count / 2;
        let mid = b.offset_of(keep);
        let tail = Block {
            buf: b.buf[mid..].to_vec(),
            start: 0,
            count: b.count - keep,
        };
        b.buf.truncate(mid);
        b.buf.shrink_to_fit();
        b.count = keep;
        self.blocks.insert(bi + 1, tail);
    }

    pub fn remove(&mut self, i: usize) -> Option<Box<[u8]>> {
        if i >= self.len {
            return None;
        }
        let (bi, k) = self.locate(i);
        let b = &mut self.blocks[bi];
        let off = b.offset_of(k);
        let (v, next) = entry_at(&b.buf, off);
        let v: Box<[u8]> = Box::from(v);
        b.buf.drain(off..next);
        b.count -= 1;
        if b.count == 0 {
            self.blocks.remove(bi);
        }
        self.removed(&v);
        Some(v)
    }

    /// Keeps only positions `start..end`.
    pub fn retain_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.len);
        let start = start.min(end);
        for _ in end..self.len {
            self.pop_with(false, |_| ());
        }
        for _ in 0..start {
            self.pop_with(true, |_| ());
        }
    }

    /// True when the list may be held compact: at most `max_len` elements in one block of
    /// at most [`BLOCK_BYTES`] (so a change copies at most that much; one large element makes
    /// a list general, as it makes a Redis 7.2 list a quicklist). O(1): it is asked after
    /// every change.
    pub(super) fn fits_compact(&self, max_len: usize) -> bool {
        self.len <= max_len && self.blocks.len() <= 1 && self.blocks.front().is_none_or(|b| b.used() <= BLOCK_BYTES)
    }

    /// The bytes of the compact form ([`ListObj::encode_compact`]).
    pub(super) fn compact_len(&self) -> usize {
        HEADER_BYTES + self.blocks.iter().map(Block::used).sum::<usize>()
    }

    /// Appends the compact form, which the store holds after a small list's key: the
    /// elements' digest and count, then the elements as a block holds them.
    ///
    /// Why not the [`super::packed`] encoding other collections use: reading that back costs
    /// a hash per element (the digest) and a push per element, which made `LPUSH` on lists
    /// of 100 elements 3.5× slower than on general ones. This reads back as one copy into
    /// one block, as a listpack edit in Redis is one copy.
    pub(super) fn encode_compact(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.digest.to_le_bytes());
        out.extend_from_slice(&(self.len as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.buf[b.start..]);
        }
    }

    /// Reads the compact form back; `None` when it is malformed (it never leaves the store
    /// that wrote it, so that means a bug).
    pub(super) fn decode_compact(buf: &[u8]) -> Option<ListObj> {
        let digest = Self::compact_digest(buf)?;
        let count = u32::from_le_bytes(buf.get(8..HEADER_BYTES)?.try_into().ok()?) as usize;
        let entries = &buf[HEADER_BYTES..];
        // Every element's charge is its encoded length and LIST_OVERHEAD: no walk needed.
        let mut list = ListObj {
            digest,
            len: count,
            bytes: entries.len() + count * LIST_OVERHEAD,
            ..ListObj::default()
        };
        if count > 0 {
            list.first_block();
            list.blocks.push_back(Block {
                buf: entries.to_vec(),
                start: 0,
                count,
            });
        }
        debug_assert_eq!(list.iter().count(), count);
        (count > 0 || entries.is_empty()).then_some(list)
    }

    /// The elements' digest, read from the compact form.
    pub(super) fn compact_digest(buf: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(buf.get(..8)?.try_into().ok()?))
    }

    /// The elements of the compact form, in order; ends early at a malformed one.
    pub(super) fn compact_items(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
        let entries = buf.get(HEADER_BYTES..).unwrap_or_default();
        let mut off = 0;
        std::iter::from_fn(move || {
            let (v, next) = checked_entry_at(entries, off)?;
            off = next;
            Some(v)
        })
    }

    pub fn iter(&self) -> Iter<'_> {
        let (front, back) = match (self.blocks.front(), self.blocks.back()) {
            (Some(f), Some(b)) => ((0, 0, f.start), (self.blocks.len() - 1, b.count, b.buf.len())),
            _ => ((0, 0, 0), (0, 0, 0)),
        };
        Iter {
            blocks: &self.blocks,
            front,
            back,
            remaining: self.len,
        }
    }
}

/// The elements of a [`ListObj`], in order (or reversed: it reads blocks from either end).
pub struct Iter<'a> {
    blocks: &'a VecDeque<Block>,
    /// The next element from the front: its block, its index in the block, its offset.
    front: (usize, usize, usize),
    /// The next element from the back ends here: its block, one past its index, its end.
    back: (usize, usize, usize),
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let (mut bi, mut k, mut off) = self.front;
        if k == self.blocks[bi].count {
            bi += 1;
            (k, off) = (0, self.blocks[bi].start);
        }
        let (v, next) = entry_at(&self.blocks[bi].buf, off);
        self.front = (bi, k + 1, next);
        self.remaining -= 1;
        Some(v)
    }

    /// Skips whole blocks by their counts (`LRANGE` from far into a long list).
    fn nth(&mut self, mut n: usize) -> Option<&'a [u8]> {
        if n >= self.remaining {
            self.remaining = 0;
            return None;
        }
        let (mut bi, mut k, mut off) = self.front;
        while n > 0 {
            let left = self.blocks[bi].count - k;
            if n >= left {
                n -= left;
                self.remaining -= left;
                bi += 1;
                (k, off) = (0, self.blocks[bi].start);
            } else {
                off = (0..n).fold(off, |o, _| entry_at(&self.blocks[bi].buf, o).1);
                k += n;
                self.remaining -= n;
                n = 0;
            }
        }
        self.front = (bi, k, off);
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let (mut bi, mut k, mut end) = self.back;
        if k == 0 {
            bi -= 1;
            let b = &self.blocks[bi];
            (k, end) = (b.count, b.buf.len());
        }
        let (v, at) = entry_before(&self.blocks[bi].buf, end);
        self.back = (bi, k - 1, at);
        self.remaining -= 1;
        Some(v)
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_form_reads_back_whole() {
        for (n, size) in [(0, 1), (5, 3), (60, 64), (1, 5000)] {
            let mut l = ListObj::default();
            (0..n).for_each(|i| l.push_back(&vec![b'a' + (i % 26) as u8; size]));
            l.push_front(b"first");
            l.push_front(&[]);
            let mut buf = Vec::new();
            l.encode_compact(&mut buf);
            assert_eq!(buf.len(), l.compact_len());
            let back = ListObj::decode_compact(&buf).expect("well formed");
            assert!(back.iter().eq(l.iter()), "{n} x {size}");
            assert!(back.iter().rev().eq(l.iter().rev()));
            assert!(ListObj::compact_items(&buf).eq(l.iter()));
            assert_eq!((back.len, back.digest, back.bytes), (l.len, l.digest, l.bytes));
        }
        assert!(ListObj::decode_compact(b"short").is_none());
    }

    /// A small deterministic generator (xorshift), so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn step(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.step() % n.max(1) as u64) as usize
        }

        /// Mostly short elements, some past the one-byte length, a few past a block.
        fn element(&mut self) -> Vec<u8> {
            let n = match self.below(100) {
                0..=79 => self.below(20),
                80..=97 => 100 + self.below(400),
                _ => BLOCK_BYTES + self.below(3000),
            };
            let b = self.step() as u8;
            (0..n).map(|i| b.wrapping_add(i as u8)).collect()
        }
    }

    fn same(list: &ListObj, model: &VecDeque<Vec<u8>>) {
        assert_eq!(list.len(), model.len());
        assert!(list.iter().eq(model.iter().map(|v| &v[..])));
        assert!(list.iter().rev().eq(model.iter().rev().map(|v| &v[..])));
        let digest = model.iter().fold(0u64, |d, v| d.wrapping_add(element_digest(v, b"")));
        assert_eq!(list.digest, digest);
        let bytes: usize = model.iter().map(|v| charge(v.len())).sum();
        assert_eq!(list.bytes, bytes);
        assert!(
            list.blocks.iter().all(|b| b.count > 0),
            "an empty block left in the list"
        );
        assert_eq!(list.blocks.iter().map(|b| b.count).sum::<usize>(), list.len());
    }

    #[test]
    fn every_operation_matches_a_deque_of_elements() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut list = ListObj::default();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        for step in 0..20_000 {
            let len = model.len();
            match rng.below(12) {
                0..=2 => {
                    let v = rng.element();
                    list.push_back(&v);
                    model.push_back(v);
                }
                3..=5 => {
                    let v = rng.element();
                    list.push_front(&v);
                    model.push_front(v);
                }
                6 => assert_eq!(list.pop_front().map(Vec::from), model.pop_front(), "step {step}"),
                7 => assert_eq!(list.pop_back().map(Vec::from), model.pop_back(), "step {step}"),
                8 => {
                    let i = rng.below(len + 1);
                    let v = rng.element();
                    assert_eq!(list.set(i, &v), i < len);
                    if i < len {
                        model[i] = v;
                    }
                }
                9 => {
                    let i = rng.below(len + 1);
                    let v = rng.element();
                    list.insert(i, &v);
                    model.insert(i, v);
                }
                10 => {
                    let i = rng.below(len + 1);
                    assert_eq!(list.remove(i).map(Vec::from), model.remove(i), "step {step}");
                }
                _ => {
                    // Reads: by index, and iterators that skip and meet in the middle.
                    let i = rng.below(len + 1);
                    assert_eq!(list.get(i), model.get(i).map(|v| &v[..]), "step {step}");
                    let skip = rng.below(len + 1);
                    assert!(list.iter().skip(skip).eq(model.iter().skip(skip).map(|v| &v[..])));
                    let mut it = list.iter();
                    let mut from_model = model.iter().map(|v| &v[..]);
                    loop {
                        let (a, b) = if rng.below(2) == 0 {
                            (it.next(), from_model.next())
                        } else {
                            (it.next_back(), from_model.next_back())
                        };
                        assert_eq!(a, b, "step {step}");
                        assert_eq!(it.len(), from_model.len());
                        if a.is_none() {
                            break;
                        }
                    }
                }
            }
            if step % 500 == 0 {
                same(&list, &model);
            }
            // Keep it from growing without bound, through the trim.
            if model.len() > 3_000 {
                let (s, e) = (rng.below(500), 1_500 + rng.below(500));
                list.retain_range(s, e);
                model.truncate(e);
                model.drain(..s);
                same(&list, &model);
            }
        }
        same(&list, &model);
        list.retain_range(0, 0);
        model.clear();
        same(&list, &model);
        assert_eq!((list.digest, list.bytes, list.blocks.len()), (0, 0, 0));
    }

    #[test]
    fn small_elements_are_packed_two_bytes_each() {
        let mut list = ListObj::default();
        for i in 0..10_000u32 {
            let v = (i % 1000).to_string();
            if i % 2 == 0 {
                list.push_back(v.as_bytes());
            } else {
                list.push_front(v.as_bytes());
            }
        }
        let payload: usize = list.iter().map(<[u8]>::len).sum();
        let held: usize = list.blocks.iter().map(|b| b.buf.capacity()).sum();
        // Each element's two length bytes, and at most as much spare room again.
        assert!(
            held <= 2 * (payload + 2 * list.len()) + BLOCK_BYTES,
            "{held} bytes for {payload}"
        );
        assert!(list.blocks.iter().all(|b| b.used() <= BLOCK_BYTES));
    }

    #[test]
    fn a_large_element_has_a_block_of_its_own() {
        let mut list = ListObj::default();
        let big = vec![7u8; 3 * BLOCK_BYTES];
        list.push_back(b"a");
        list.push_back(&big);
        list.push_back(b"b");
        list.push_front(&big);
        assert_eq!(list.len(), 4);
        assert_eq!(list.get(1), Some(&b"a"[..]));
        assert_eq!(list.get(2), Some(&big[..]));
        assert_eq!(list.iter().rev().nth(1), Some(&big[..]));
        assert_eq!(list.pop_back().as_deref(), Some(&b"b"[..]));
        assert_eq!(list.pop_back().as_deref(), Some(&big[..]));
    }
}
