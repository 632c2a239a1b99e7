//! Collections: hashes, lists, sets and sorted sets.
//!
//! Each has a general form ([`HashObj`], [`ListObj`], [`SetObj`], [`ZSetObj`]) and, while
//! small, a compact one: the [`packed`] encoding of its elements (for a list, its elements as
//! a block holds them, after their digest: [`ListObj::encode_compact`]), held by the store
//! inside the key's own allocation as a string value is (Redis's listpack and intset play
//! this part).
//! A small collection thus costs its key, its elements and a few bytes each; a large one a
//! table entry per element. Past the [`CompactLimits`] a collection converts to its general
//! form and stays there, as in Redis.
//!
//! Commands change a collection through its general form: the store decodes a compact one,
//! lets the command change it, and packs it again if it still fits (O(n) for n ≤ the limits,
//! as a listpack edit is in Redis).
//!
//! Every form keeps a digest of its elements (XOR for hashes, sets and sorted sets, whose
//! elements are unique; a wrapping sum for lists, which may repeat) and the bytes it is
//! charged, both updated per element, so the store's digest and `--maxmemory` accounting
//! stay O(1) per change.

pub mod hash;
pub mod list;
pub mod packed;
pub mod set;
pub mod table;
pub mod zset;

pub use hash::HashObj;
pub use kv_proto::Kind;
pub use list::ListObj;
pub use set::SetObj;
pub use zset::{Score, ZSetObj};

use kv_proto::hash::{fmix64, hash64};

/// Bytes charged per element of a general form on top of its own bytes: the slab slot, the
/// index slot and control byte, the allocation's header.
pub const ELEMENT_OVERHEAD: usize = 40;

/// One element's contribution to its collection's digest.
pub fn element_digest(a: &[u8], b: &[u8]) -> u64 {
    fmix64(hash64(a) ^ hash64(b).rotate_left(23) ^ 0x5851_f42d_4c95_7f2d)
}

/// A command met a key holding another kind of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

impl std::fmt::Display for WrongType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(kv_proto::kind::WRONGTYPE)
    }
}

impl std::error::Error for WrongType {}

/// Sizes up to which collections keep the compact encoding (Redis's parameters of the same
/// names, with Redis's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactLimits {
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub set_max_listpack_entries: usize,
    pub set_max_listpack_value: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    /// Lists: compact while at most this many elements fit in one block (4 KiB, half of
    /// Redis 7.2's `list-max-listpack-size -2`). Redis 7.0 has no compact list (every list
    /// is a quicklist, whose small node is a listpack anyway); a positive
    /// `list-max-listpack-size` sets it, as it caps a Redis 7.2 listpack's elements.
    pub list_max_compact_entries: usize,
}

impl Default for CompactLimits {
    fn default() -> Self {
        CompactLimits {
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_compact_entries: 128,
        }
    }
}

/// A collection in its general form.
pub enum Object {
    Hash(HashObj),
    List(ListObj),
    Set(SetObj),
    ZSet(ZSetObj),
}

/// Why a packed collection from a peer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPayload;

/// True for a member an intset would hold: the canonical decimal form of an i64.
pub fn is_int(m: &[u8]) -> bool {
    std::str::from_utf8(m)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .is_some_and(|n| n.to_string().as_bytes() == m)
}

impl Object {
    /// An empty collection of `kind` (`None` for strings).
    pub fn new(kind: Kind) -> Option<Object> {
        Some(match kind {
            Kind::String => return None,
            Kind::Hash => Object::Hash(HashObj::default()),
            Kind::List => Object::List(ListObj::default()),
            Kind::Set => Object::Set(SetObj::default()),
            Kind::ZSet => Object::ZSet(ZSetObj::default()),
        })
    }

    pub fn as_hash(&self) -> Option<&HashObj> {
        match self {
            Object::Hash(h) => Some(h),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&ListObj> {
        match self {
            Object::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_set(&self) -> Option<&SetObj> {
        match self {
            Object::Set(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_zset(&self) -> Option<&ZSetObj> {
        match self {
            Object::ZSet(z) => Some(z),
            _ => None,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Hash(_) => Kind::Hash,
            Object::List(_) => Kind::List,
            Object::Set(_) => Kind::Set,
            Object::ZSet(_) => Kind::ZSet,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Object::Hash(h) => h.len(),
            Object::List(l) => l.len(),
            Object::Set(s) => s.len(),
            Object::ZSet(z) => z.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest of the elements (see the module documentation).
    pub fn digest(&self) -> u64 {
        match self {
            Object::Hash(h) => h.digest,
            Object::List(l) => l.digest,
            Object::Set(s) => s.digest,
            Object::ZSet(z) => z.digest,
        }
    }

    /// The bytes charged for the general form.
    pub fn bytes(&self) -> usize {
        match self {
            Object::Hash(h) => h.bytes,
            Object::List(l) => l.bytes,
            Object::Set(s) => s.bytes,
            Object::ZSet(z) => z.bytes,
        }
    }

    /// Appends the [`packed`] encoding: a hash's fields and values, a list's or a set's
    /// elements, a sorted set's members and scores (8 bytes, little-endian IEEE 754) in order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Object::Hash(h) => h.iter().for_each(|(f, v)| {
                packed::push(out, f);
                packed::push(out, v);
            }),
            Object::List(l) => l.iter().for_each(|v| packed::push(out, v)),
            Object::Set(s) => s.iter().for_each(|m| packed::push(out, m)),
            Object::ZSet(z) => z.iter().for_each(|(m, s)| {
                packed::push(out, m);
                packed::push(out, &s.to_le_bytes());
            }),
        }
    }

    /// The packed encoding as a new buffer.
    pub fn to_packed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.packed_len());
        self.encode(&mut out);
        out
    }

    /// The length of the packed encoding ([`Object::encode`] appends exactly this much).
    pub fn packed_len(&self) -> usize {
        match self {
            Object::Hash(h) => h.iter().map(|(f, v)| packed::cost(f) + packed::cost(v)).sum(),
            Object::List(l) => l.iter().map(packed::cost).sum(),
            Object::Set(s) => s.iter().map(packed::cost).sum(),
            Object::ZSet(z) => z
                .iter()
                .map(|(m, s)| packed::cost(m) + packed::cost(&s.to_le_bytes()))
                .sum(),
        }
    }

    /// The bytes of the compact form the store holds after a small collection's key: the
    /// [`packed`] encoding, except for a list (see [`ListObj::encode_compact`]).
    pub fn compact_len(&self) -> usize {
        match self {
            Object::List(l) => l.compact_len(),
            _ => self.packed_len(),
        }
    }

    /// Appends the compact form ([`Object::compact_len`] bytes).
    pub fn encode_compact(&self, out: &mut Vec<u8>) {
        match self {
            Object::List(l) => l.encode_compact(out),
            _ => self.encode(out),
        }
    }

    /// Reads a collection of `kind` back from its compact form.
    pub fn decode_compact(kind: Kind, buf: &[u8]) -> Result<Object, BadPayload> {
        match kind {
            Kind::List => ListObj::decode_compact(buf).map(Object::List).ok_or(BadPayload),
            _ => Object::decode(kind, buf),
        }
    }

    /// The digest of the elements of a compact form (a list's is in its header).
    pub fn compact_digest(kind: Kind, buf: &[u8]) -> u64 {
        match kind {
            Kind::List => ListObj::compact_digest(buf).unwrap_or(0),
            _ => Object::decode(kind, buf).map_or(0, |o| o.digest()),
        }
    }

    /// The [`packed`] encoding of a compact form: the form itself, or a list's converted.
    pub fn compact_to_packed(kind: Kind, buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        match kind {
            Kind::List => {
                let mut out = Vec::with_capacity(buf.len());
                ListObj::compact_items(buf).for_each(|v| packed::push(&mut out, v));
                std::borrow::Cow::Owned(out)
            }
            _ => std::borrow::Cow::Borrowed(buf),
        }
    }

    /// Reads a collection of `kind` from its [`packed`] encoding.
    pub fn decode(kind: Kind, buf: &[u8]) -> Result<Object, BadPayload> {
        // Sized from the count of items (a pass over their lengths only), so that a
        // compact collection decoded for a change does not grow one element at a time.
        let n = packed::Items { buf }.count();
        let mut obj = match kind {
            Kind::String => return Err(BadPayload),
            Kind::Hash => Object::Hash(HashObj::with_capacity(n / 2)),
            Kind::Set => Object::Set(SetObj::with_capacity(n)),
            _ => Object::new(kind).ok_or(BadPayload)?,
        };
        let mut items = packed::Items { buf };
        match &mut obj {
            Object::Hash(h) => {
                while let Some(f) = items.next() {
                    h.set(f, items.next().ok_or(BadPayload)?);
                }
            }
            Object::List(l) => items.by_ref().for_each(|v| l.push_back(v)),
            Object::Set(s) => items.by_ref().for_each(|m| {
                s.add(m);
            }),
            Object::ZSet(z) => {
                while let Some(m) = items.next() {
                    let s = items
                        .next()
                        .and_then(|s| <[u8; 8]>::try_from(s).ok())
                        .ok_or(BadPayload)?;
                    let s = f64::from_le_bytes(s);
                    if s.is_nan() {
                        return Err(BadPayload);
                    }
                    z.insert(m, s);
                }
            }
        }
        if !items.buf.is_empty() {
            return Err(BadPayload);
        }
        Ok(obj)
    }

    /// True when the collection may be held compact under `limits`.
    pub fn fits_compact(&self, limits: &CompactLimits) -> bool {
        match self {
            Object::Hash(h) => {
                h.len() <= limits.hash_max_listpack_entries
                    && h.iter().all(|(f, v)| {
                        f.len() <= limits.hash_max_listpack_value && v.len() <= limits.hash_max_listpack_value
                    })
            }
            // Held packed after its key, a list of a few small elements costs about what its
            // elements do, where its own deque and the side table's entry cost several
            // hundred bytes (1M lists of 5 elements took 2.1× a redis-server's memory).
            Object::List(l) => l.fits_compact(limits.list_max_compact_entries),
            // An intset, or (as Redis 7.2 holds small sets) a listpack.
            Object::Set(s) => {
                (s.len() <= limits.set_max_intset_entries && s.iter().all(is_int))
                    || (s.len() <= limits.set_max_listpack_entries
                        && s.iter().all(|m| m.len() <= limits.set_max_listpack_value))
            }
            Object::ZSet(z) => {
                z.len() <= limits.zset_max_listpack_entries
                    && z.iter().all(|(m, _)| m.len() <= limits.zset_max_listpack_value)
            }
        }
    }

    /// The name `OBJECT ENCODING` gives this collection, compact (`packed`) or not.
    pub fn encoding(&self, packed: bool) -> &'static str {
        match (self, packed) {
            (Object::List(_), _) => "quicklist",
            (Object::Set(s), true) if s.iter().all(is_int) => "intset",
            (Object::Set(_), false) | (Object::Hash(_), false) => "hashtable",
            (Object::ZSet(_), false) => "skiplist",
            (_, true) => "listpack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_round_trip_keeps_elements_and_digest() {
        let mut h = Object::new(Kind::Hash).unwrap();
        if let Object::Hash(h) = &mut h {
            h.set(b"a", b"1");
            h.set(b"b", b"");
            h.set(b"a", b"2");
        }
        let mut z = Object::new(Kind::ZSet).unwrap();
        if let Object::ZSet(z) = &mut z {
            z.insert(b"x", 2.5);
            z.insert(b"y", -1.0);
        }
        let mut l = Object::new(Kind::List).unwrap();
        if let Object::List(l) = &mut l {
            l.push_back(b"q");
            l.push_back(b"q");
            l.push_front(b"p");
        }
        for obj in [h, z, l] {
            let back = Object::decode(obj.kind(), &obj.to_packed()).unwrap();
            assert_eq!(back.len(), obj.len());
            assert_eq!(back.digest(), obj.digest());
            assert_eq!(back.bytes(), obj.bytes());
            assert_eq!(back.to_packed(), obj.to_packed());
        }
    }

    #[test]
    fn emptied_collections_have_the_empty_digest_and_cost() {
        let mut s = SetObj::default();
        s.add(b"m");
        s.add(b"n");
        s.remove(b"m");
        s.remove(b"n");
        assert_eq!((s.digest, s.bytes), (0, 0));
        let mut l = ListObj::default();
        l.push_back(b"v");
        l.push_back(b"v");
        assert_ne!(l.digest, 0, "duplicates count");
        l.pop_back();
        l.pop_front();
        assert_eq!((l.digest, l.bytes), (0, 0));
    }

    #[test]
    fn compact_limits_and_encoding_names() {
        let limits = CompactLimits::default();
        let mut s = SetObj::default();
        (0..200).for_each(|i| {
            s.add(i.to_string().as_bytes());
        });
        let s = Object::Set(s);
        assert!(s.fits_compact(&limits));
        assert_eq!(s.encoding(true), "intset");
        let mut t = SetObj::default();
        (0..200).for_each(|i| {
            t.add(format!("m{i}").as_bytes());
        });
        assert!(!Object::Set(t).fits_compact(&limits), "past set-max-listpack-entries");
        let mut u = SetObj::default();
        u.add(b"m");
        let u = Object::Set(u);
        assert!(u.fits_compact(&limits));
        assert_eq!(u.encoding(true), "listpack");
        assert!(!is_int(b"007") && !is_int(b"1.0") && is_int(b"-12"));
        assert!(Object::decode(Kind::ZSet, b"\x01a\x01b").is_err(), "a score is 8 bytes");
    }

    #[test]
    fn sorted_set_order_ranks_and_score_ranges() {
        let mut z = ZSetObj::default();
        for (m, s) in [("c", 1.0), ("a", 1.0), ("b", 0.5), ("d", 3.0)] {
            z.insert(m.as_bytes(), s);
        }
        let names: Vec<_> = z.iter().map(|(m, _)| m.to_vec()).collect();
        assert_eq!(names, vec![b"b".to_vec(), b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(z.rank(b"c"), Some(2));
        assert_eq!(z.from_score(1.0).map(|(m, _)| m[0]).collect::<Vec<_>>(), b"acd");
        assert_eq!(z.down_from_score(1.0).map(|(m, _)| m[0]).collect::<Vec<_>>(), b"cab");
        assert_eq!(z.insert(b"a", 5.0), Some(1.0));
        assert_eq!(z.rank(b"a"), Some(3));
    }
}
