//! [`Store`]: entries live in a slab (a `Vec` with a free list) threaded by an intrusive
//! doubly-linked list in insertion order; a `hashbrown::HashTable` maps keys to slab indices,
//! so each key is stored once.
//!
//! Eviction is LRU approximated by **second chance** (CLOCK): a hit only sets a bit in the
//! entry it already touched; eviction takes the oldest entry and, if its bit is set, clears it
//! and moves it to the front instead. Exact LRU relinks two neighbours on every hit — two
//! cache misses that profiling showed at ~9% of a SET-heavy run. Hand-written because this is the product's core and its memory per key is a
//! target (issue 3 compares RSS with redis-server): a general LRU crate stores the key twice.
//!
//! Slab indices never move while an entry lives, which gives [`Store::scan`] a stable cursor:
//! a replication snapshot walks the slab in chunks while writes continue.
//!
//! Entries are counted per Redis Cluster slot as they come and go ([`Store::count_in_slot`]):
//! 64 KiB per store, and a slot computed per insert and per removal (not per overwrite).

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use kv_proto::Kind;
use kv_proto::hash::hash64;
use kv_proto::slot::key_slot;

use crate::object::{BadPayload, CompactLimits, Object, WrongType};

/// Bytes charged per entry on top of its key and value: the slab slot (40), the hash table
/// slot and control byte at its load factor (~10), the allocator's header and rounding
/// (~14). An estimate, so that `--maxmemory` tracks real memory closely.
pub const ENTRY_OVERHEAD: usize = 64;

const NIL: u32 = u32::MAX;

/// Bounds on a store. Zero means unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most entries held.
    pub max_keys: usize,
    /// Most bytes held, counted as key + value + [`ENTRY_OVERHEAD`] per entry.
    pub max_bytes: usize,
}

/// One entry as copied out by [`Store::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Absolute expiry in Unix milliseconds.
    pub expires_at: Option<u64>,
}

/// The result of [`Store::get`].
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A string, present and not expired.
    Hit { value: &'a [u8], expires_at: Option<u64> },
    /// A collection, present and not expired (see [`Store::object`], [`Store::edit`]).
    Other { kind: Kind, expires_at: Option<u64> },
    /// Not present.
    Miss,
    /// Present but past its expiry time. Still stored: the caller decides whether to delete
    /// it (a leader does, and replicates the delete) or only to hide it (a follower).
    Expired,
}

/// One entry. Key and value share one allocation (`key ++ value`): one allocator header and
/// one pointer to chase instead of two, which is most of the memory per small entry.
struct Slot {
    data: Box<[u8]>,
    key_len: u32,
    prev: u32,
    next: u32,
    /// Used since it last reached the tail (second chance).
    referenced: bool,
    /// The value's [`Kind`] tag, with [`BIG`] set when the collection is in the store's
    /// side table (general form) rather than packed after the key.
    kind: u8,
    /// Unix milliseconds; 0 = never.
    expires_at: u64,
}

/// Set in [`Slot::kind`] for a collection held in its general form.
const BIG: u8 = 0x80;

impl Slot {
    fn new(key: &[u8], value: &[u8], expires_at: u64) -> Slot {
        let mut data = Vec::with_capacity(key.len() + value.len());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        Slot {
            data: data.into_boxed_slice(),
            key_len: key.len() as u32,
            prev: NIL,
            next: NIL,
            referenced: false,
            kind: Kind::String.tag(),
            expires_at,
        }
    }

    fn kind(&self) -> Kind {
        Kind::from_tag(self.kind & !BIG).expect("a valid kind tag")
    }

    fn is_big(&self) -> bool {
        self.kind & BIG != 0
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    /// Replaces the value, reusing the allocation when the size is unchanged.
    fn set_value(&mut self, value: &[u8]) {
        let k = self.key_len as usize;
        if self.data.len() - k == value.len() {
            self.data[k..].copy_from_slice(value);
        } else {
            let mut data = Vec::with_capacity(k + value.len());
            data.extend_from_slice(&self.data[..k]);
            data.extend_from_slice(value);
            self.data = data.into_boxed_slice();
        }
    }

    /// Replaces the value with the `len` bytes `write` appends, in the entry's own
    /// allocation when the size is unchanged (a compact collection changed in place: one
    /// allocation at most, not a growing buffer and a copy).
    fn set_value_with(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let k = self.key_len as usize;
        let mut data = Vec::from(std::mem::take(&mut self.data));
        data.truncate(k);
        data.reserve_exact(len);
        write(&mut data);
        debug_assert_eq!(data.len(), k + len);
        self.data = data.into_boxed_slice();
    }
}

/// The map. See the module documentation.
pub struct Store {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Newest (or most recently given a second chance).
    head: u32,
    /// Oldest: the next candidate for eviction.
    tail: u32,
    len: usize,
    used_bytes: usize,
    /// (expires_at, slot) of every entry with an expiry, for active expiry.
    expiries: BTreeSet<(u64, u32)>,
    /// XOR of every entry's digest ([`entry_digest`], [`object_digest`]).
    digest: u64,
    limits: StoreLimits,
    /// Collections in their general form, by slot.
    objects: HashMap<u32, Object>,
    compact: CompactLimits,
    /// Entries per Redis Cluster slot ([`kv_proto::slot::key_slot`] of their keys).
    per_slot: Box<[u32]>,
}

/// A stored value as [`Store::scan`] and [`Store::peek`] show it.
#[derive(Clone, Copy)]
pub enum Val<'a> {
    Str(&'a [u8]),
    /// A compact collection: its compact form ([`Object::encode_compact`]).
    Packed(Kind, &'a [u8]),
    /// A collection in its general form.
    Big(&'a Object),
}

impl<'a> Val<'a> {
    pub fn kind(&self) -> Kind {
        match self {
            Val::Str(_) => Kind::String,
            Val::Packed(k, _) => *k,
            Val::Big(o) => o.kind(),
        }
    }

    /// The bytes that carry the value between servers: a string's own bytes, a collection's
    /// packed encoding.
    pub fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Val::Str(v) => std::borrow::Cow::Borrowed(v),
            Val::Packed(k, v) => Object::compact_to_packed(*k, v),
            Val::Big(o) => std::borrow::Cow::Owned(o.to_packed()),
        }
    }

    /// The collection, decoded when compact; `None` for a string.
    pub fn object(self) -> Option<ObjRead<'a>> {
        match self {
            Val::Str(_) => None,
            Val::Packed(k, v) => Object::decode_compact(k, v).ok().map(ObjRead::Owned),
            Val::Big(o) => Some(ObjRead::Borrowed(o)),
        }
    }

    /// `OBJECT ENCODING`'s name for a collection.
    pub fn encoding(self) -> Option<&'static str> {
        let obj = self.object()?;
        Some(obj.encoding(matches!(self, Val::Packed(..))))
    }
}

/// A collection to read: borrowed from the store, or decoded from its compact form.
pub enum ObjRead<'a> {
    Owned(Object),
    Borrowed(&'a Object),
}

impl std::ops::Deref for ObjRead<'_> {
    type Target = Object;

    fn deref(&self) -> &Object {
        match self {
            ObjRead::Owned(o) => o,
            ObjRead::Borrowed(o) => o,
        }
    }
}

/// Bytes charged for a collection in its general form besides its elements: the side
/// table's entry and the structure's own header.
const OBJECT_OVERHEAD: usize = 96;

impl Store {
    /// An empty store with the given bounds.
    pub fn new(limits: StoreLimits) -> Store {
        Store {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            used_bytes: 0,
            expiries: BTreeSet::new(),
            digest: 0,
            limits,
            objects: HashMap::new(),
            compact: CompactLimits::default(),
            per_slot: vec![0; kv_proto::slot::SLOTS as usize].into_boxed_slice(),
        }
    }

    /// Number of entries, expired-but-not-yet-removed ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries whose keys hash to Redis Cluster slot `slot` (expired ones not yet removed
    /// included, as Redis counts them): `CLUSTER COUNTKEYSINSLOT` without a walk.
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.per_slot.get(slot as usize).map_or(0, |&n| n as usize)
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes charged against `max_bytes`.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// The bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The sizes up to which collections stay compact.
    pub fn compact_limits(&self) -> CompactLimits {
        self.compact
    }

    /// Changes the sizes up to which collections stay compact, for collections changed
    /// from now on (`CONFIG SET hash-max-listpack-entries` and the like).
    pub fn set_compact_limits(&mut self, compact: CompactLimits) {
        self.compact = compact;
    }

    /// An order-independent digest of the contents (keys, values and expiry times): two
    /// stores with equal contents have equal digests. Maintained on every change, O(1) to read.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The bytes one entry is charged.
    pub fn entry_cost(key_len: usize, value_len: usize) -> usize {
        key_len + value_len + ENTRY_OVERHEAD
    }

    /// False when a single entry of this size could never fit under `max_bytes`.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        self.limits.max_bytes == 0 || Self::entry_cost(key_len, value_len) <= self.limits.max_bytes
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        self.find_hashed(key, self.hash(key))
    }

    /// [`Store::find`] with the key's hash already computed (an insert after a miss reuses
    /// it).
    fn find_hashed(&self, key: &[u8], hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.table.find(hash, |&i| slot_ref(slots, i).key() == key).copied()
    }

    fn slot(&self, i: u32) -> &Slot {
        slot_ref(&self.slots, i)
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize].as_mut().expect("live slot")
    }

    fn val(&self, i: u32) -> Val<'_> {
        let s = self.slot(i);
        match s.kind() {
            Kind::String => Val::Str(s.value()),
            _ if s.is_big() => Val::Big(self.objects.get(&i).expect("a collection in the side table")),
            k => Val::Packed(k, s.value()),
        }
    }

    /// Slot `i`'s contribution to the digest and to the bytes used.
    fn weigh(&self, i: u32) -> (u64, usize) {
        self.weigh_keyed(i, hash64(self.slot(i).key()), None)
    }

    /// [`Store::weigh`] with the hash of the slot's key computed already (`kh`): a
    /// change weighs its slot before and after, and hashes the key once for both. `elements`
    /// is the digest of the collection's elements when the caller has it (a compact one is
    /// decoded to get it otherwise).
    fn weigh_keyed(&self, i: u32, kh: u64, elements: Option<u64>) -> (u64, usize) {
        let s = self.slot(i);
        match self.val(i) {
            Val::Str(v) => (
                entry_digest(kh, v, s.expires_at),
                Self::entry_cost(s.key().len(), v.len()),
            ),
            Val::Packed(k, v) => {
                let d = elements.unwrap_or_else(|| Object::compact_digest(k, v));
                (
                    object_digest(kh, k, d, s.expires_at),
                    Self::entry_cost(s.key().len(), v.len()),
                )
            }
            Val::Big(o) => (
                object_digest(kh, o.kind(), o.digest(), s.expires_at),
                Self::entry_cost(s.key().len(), o.bytes() + OBJECT_OVERHEAD),
            ),
        }
    }

    fn unaccount(&mut self, i: u32) {
        self.unaccount_keyed(i, hash64(self.slot(i).key()), None);
    }

    fn account(&mut self, i: u32) {
        self.account_keyed(i, hash64(self.slot(i).key()), None);
    }

    /// [`Store::unaccount`] with the key's hash `kh` and, when known, the elements'
    /// digest (see [`Store::weigh_keyed`]).
    fn unaccount_keyed(&mut self, i: u32, kh: u64, elements: Option<u64>) {
        let (d, c) = self.weigh_keyed(i, kh, elements);
        self.digest ^= d;
        self.used_bytes -= c;
    }

    /// [`Store::account`] with the key's hash `kh` and, when known, the elements'
    /// digest.
    fn account_keyed(&mut self, i: u32, kh: u64, elements: Option<u64>) {
        let (d, c) = self.weigh_keyed(i, kh, elements);
        self.digest ^= d;
        self.used_bytes += c;
    }

    /// True when `key` has an entry, expired or not (without touching it).
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    fn lookup_at(&self, i: u32) -> Lookup<'_> {
        let s = self.slot(i);
        let expires_at = (s.expires_at != 0).then_some(s.expires_at);
        match s.kind() {
            Kind::String => Lookup::Hit {
                value: s.value(),
                expires_at,
            },
            kind => Lookup::Other { kind, expires_at },
        }
    }

    /// Looks `key` up at time `now_ms`; a hit is marked as used.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Lookup<'_> {
        let Some(i) = self.find(key) else {
            return Lookup::Miss;
        };
        let expires_at = self.slot(i).expires_at;
        if expires_at != 0 && expires_at <= now_ms {
            return Lookup::Expired;
        }
        self.touch(i);
        self.lookup_at(i)
    }

    /// Like [`Store::get`], but an expired entry is removed (and reported as
    /// [`Lookup::Expired`]): what a leader does, before replicating the delete.
    pub fn get_expiring(&mut self, key: &[u8], now_ms: u64) -> Lookup<'_> {
        let Some(i) = self.find(key) else {
            return Lookup::Miss;
        };
        let expires_at = self.slot(i).expires_at;
        if expires_at != 0 && expires_at <= now_ms {
            self.remove_slot(i);
            return Lookup::Expired;
        }
        self.touch(i);
        self.lookup_at(i)
    }

    /// Sets `key` to a string, replacing whatever it held (a replaced entry is marked as
    /// used). Bounds are not enforced here: a leader follows up with
    /// [`Store::evict_over_limit`].
    pub fn set(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) {
        let expires_at = expires_at.unwrap_or(0);
        let hash = self.hash(key);
        if let Some(i) = self.find_hashed(key, hash) {
            let kh = hash64(key);
            self.unaccount_keyed(i, kh, None);
            let old_exp = self.slot(i).expires_at;
            if old_exp != 0 {
                self.expiries.remove(&(old_exp, i));
            }
            if expires_at != 0 {
                self.expiries.insert((expires_at, i));
            }
            if self.slot(i).is_big() {
                self.objects.remove(&i);
            }
            let slot = self.slot_mut(i);
            slot.set_value(value);
            slot.kind = Kind::String.tag();
            slot.expires_at = expires_at;
            self.account_keyed(i, kh, None);
            self.touch(i);
            return;
        }
        let i = self.insert_hashed(Slot::new(key, value, expires_at), hash);
        self.account(i);
    }

    /// Links a new slot in (no accounting) and returns its position.
    fn insert_slot(&mut self, slot: Slot) -> u32 {
        let hash = self.hash(slot.key());
        self.insert_hashed(slot, hash)
    }

    /// [`Store::insert_slot`] with the key's hash already computed.
    fn insert_hashed(&mut self, slot: Slot, hash: u64) -> u32 {
        let expires_at = slot.expires_at;
        self.per_slot[key_slot(slot.key()) as usize] += 1;
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table
            .insert_unique(hash, i, |&j| hasher.hash_one(slot_ref(slots, j).key()));
        self.push_front(i);
        if expires_at != 0 {
            self.expiries.insert((expires_at, i));
        }
        self.len += 1;
        i
    }

    /// Puts `obj` in slot `i` (whose key it is), compact when it was compact or is new
    /// (`prefer_compact`) and fits; no accounting.
    fn place(&mut self, i: u32, obj: Object, prefer_compact: bool) {
        let kind = obj.kind();
        if prefer_compact && obj.fits_compact(&self.compact) {
            self.objects.remove(&i);
            let slot = self.slot_mut(i);
            slot.set_value_with(obj.compact_len(), |out| obj.encode_compact(out));
            slot.kind = kind.tag();
        } else {
            let slot = self.slot_mut(i);
            if !slot.value().is_empty() {
                slot.set_value(b"");
            }
            slot.kind = kind.tag() | BIG;
            self.objects.insert(i, obj);
        }
    }

    /// Sets `key` to the collection `obj` (not empty), replacing whatever it held: a copy,
    /// a restore, a snapshot's or a key move's entry. Held compact when it fits.
    pub fn set_object(&mut self, key: &[u8], obj: Object, expires_at: Option<u64>) {
        self.remove(key);
        if obj.is_empty() {
            return;
        }
        let i = self.insert_slot(Slot::new(key, b"", expires_at.unwrap_or(0)));
        self.place(i, obj, true);
        self.account(i);
    }

    /// Sets `key` from its kind and the bytes that carry it between servers (see
    /// [`Val::payload`]); `Err` for a collection whose payload is malformed.
    pub fn set_payload(
        &mut self,
        key: &[u8],
        kind: Kind,
        payload: &[u8],
        expires_at: Option<u64>,
    ) -> Result<(), BadPayload> {
        if kind == Kind::String {
            self.set(key, payload, expires_at);
            return Ok(());
        }
        let obj = Object::decode(kind, payload)?;
        self.set_object(key, obj, expires_at);
        Ok(())
    }

    /// Changes the collection at `key`, created empty when absent: `f` gets its general
    /// form (a compact one decoded, and packed again afterwards when it still fits). A
    /// collection left empty is deleted. Expiry is the caller's to check first.
    pub fn edit<R>(&mut self, key: &[u8], kind: Kind, f: impl FnOnce(&mut Object) -> R) -> Result<R, WrongType> {
        let Some(i) = self.find(key) else {
            let mut obj = Object::new(kind).ok_or(WrongType)?;
            let r = f(&mut obj);
            if !obj.is_empty() {
                let i = self.insert_slot(Slot::new(key, b"", 0));
                self.place(i, obj, true);
                self.account(i);
            }
            return Ok(r);
        };
        if self.slot(i).kind() != kind || kind == Kind::String {
            return Err(WrongType);
        }
        let kh = hash64(key);
        self.touch(i);
        if self.slot(i).is_big() {
            self.unaccount_keyed(i, kh, None);
            let obj = self.objects.get_mut(&i).expect("a collection in the side table");
            let r = f(obj);
            if obj.is_empty() {
                self.detach(i);
                return Ok(r);
            }
            self.account_keyed(i, kh, None);
            return Ok(r);
        }
        // A compact one is decoded once: its elements' digest before and after the change
        // come from the decoded form (weighing the packed bytes would decode them again,
        // before and after).
        let mut obj = Object::decode_compact(kind, self.slot(i).value()).expect("a well-formed compact collection");
        self.unaccount_keyed(i, kh, Some(obj.digest()));
        let r = f(&mut obj);
        if obj.is_empty() {
            self.detach(i);
            return Ok(r);
        }
        let elements = obj.digest();
        self.place(i, obj, true);
        self.account_keyed(i, kh, Some(elements));
        Ok(r)
    }

    /// The collection at `key` (expired or not: the caller looked it up first), decoded
    /// when compact; `Err` when it holds another kind, `None` when absent.
    pub fn object(&self, key: &[u8], kind: Kind) -> Result<Option<ObjRead<'_>>, WrongType> {
        let Some(i) = self.find(key) else {
            return Ok(None);
        };
        if self.slot(i).kind() != kind {
            return Err(WrongType);
        }
        Ok(self.val(i).object())
    }

    /// Changes the expiry of an existing key; false when the key is absent.
    pub fn set_expiry(&mut self, key: &[u8], expires_at: Option<u64>) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        let expires_at = expires_at.unwrap_or(0);
        let kh = hash64(key);
        self.unaccount_keyed(i, kh, None);
        let old_exp = self.slot(i).expires_at;
        if old_exp != 0 {
            self.expiries.remove(&(old_exp, i));
        }
        if expires_at != 0 {
            self.expiries.insert((expires_at, i));
        }
        self.slot_mut(i).expires_at = expires_at;
        self.account_keyed(i, kh, None);
        true
    }

    /// Removes `key`; false when it was absent.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.find(key) {
            Some(i) => {
                self.remove_slot(i);
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, i: u32) -> Box<[u8]> {
        self.unaccount(i);
        self.detach(i)
    }

    /// Unlinks slot `i` and frees it (no accounting); returns its key.
    fn detach(&mut self, i: u32) -> Box<[u8]> {
        let hash = self.hash(self.slot(i).key());
        match self.table.find_entry(hash, |&j| j == i) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("slot {i} missing from the table"),
        }
        self.unlink(i);
        let slot = self.slots[i as usize].take().expect("live slot");
        if slot.expires_at != 0 {
            self.expiries.remove(&(slot.expires_at, i));
        }
        if slot.is_big() {
            self.objects.remove(&i);
        }
        self.free.push(i);
        self.len -= 1;
        self.per_slot[key_slot(slot.key()) as usize] -= 1;
        let mut key = slot.data.into_vec();
        key.truncate(slot.key_len as usize);
        key.into_boxed_slice()
    }

    /// True when the store is over one of its bounds.
    pub fn over_limit(&self) -> bool {
        (self.limits.max_keys != 0 && self.len > self.limits.max_keys)
            || (self.limits.max_bytes != 0 && self.used_bytes > self.limits.max_bytes)
    }

    /// Evicts entries not used recently (second chance, see the module documentation) until
    /// the store is within its bounds, and returns the evicted keys in eviction order.
    pub fn evict_over_limit(&mut self) -> Vec<Box<[u8]>> {
        let mut evicted = Vec::new();
        while self.over_limit() && self.tail != NIL {
            let i = self.tail;
            let slot = self.slot_mut(i);
            if slot.referenced {
                slot.referenced = false;
                self.unlink(i);
                self.push_front(i);
                continue;
            }
            evicted.push(self.remove_slot(i));
        }
        evicted
    }

    /// Removes up to `max` entries whose expiry is at or before `now_ms` and returns their keys.
    pub fn take_expired(&mut self, now_ms: u64, max: usize) -> Vec<Box<[u8]>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(at, i)) = self.expiries.first() else {
                break;
            };
            if at > now_ms {
                break;
            }
            out.push(self.remove_slot(i));
        }
        out
    }

    /// The earliest expiry time in the store, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|&(at, _)| at)
    }

    /// Visits up to `count` entries starting at `cursor` (0 to begin) and returns the cursor
    /// to continue from, or `None` when the walk is complete. `visit` returning false ends
    /// this call early (after that entry), e.g. when a chunk reached its byte budget.
    /// Entries that exist for the whole walk are visited exactly once; entries added or
    /// removed during it may or may not be (a snapshot is made consistent by replaying the
    /// log from where it began).
    pub fn scan(
        &self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&[u8], Val<'_>, Option<u64>) -> bool,
    ) -> Option<usize> {
        let mut i = cursor;
        let mut seen = 0;
        while i < self.slots.len() {
            if seen == count {
                return Some(i);
            }
            if let Some(s) = &self.slots[i] {
                seen += 1;
                let val = self.val(i as u32);
                if !visit(s.key(), val, (s.expires_at != 0).then_some(s.expires_at)) {
                    return (i + 1 < self.slots.len()).then_some(i + 1);
                }
            }
            i += 1;
        }
        None
    }

    /// A live-or-expired entry near slab position `pick` (any number; taken modulo the slab):
    /// the first occupied slot from there, wrapping. With a uniform `pick` this is close to
    /// uniform while the slab is dense, as Redis's `RANDOMKEY` is close to uniform.
    pub fn entry_near(&self, pick: usize) -> Option<(&[u8], Option<u64>)> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len();
        let start = pick % n;
        (start..n).chain(0..start).find_map(|i| {
            self.slots[i]
                .as_ref()
                .map(|s| (s.key(), (s.expires_at != 0).then_some(s.expires_at)))
        })
    }

    /// The value and expiry stored for `key`, expired or not, without marking it used
    /// (`OBJECT`, `DEBUG`-like inspection).
    pub fn peek(&self, key: &[u8]) -> Option<(Val<'_>, Option<u64>)> {
        let i = self.find(key)?;
        let s = slot_ref(&self.slots, i);
        Some((self.val(i), (s.expires_at != 0).then_some(s.expires_at)))
    }

    /// The bytes `key` is charged (`MEMORY USAGE`).
    pub fn charged(&self, key: &[u8]) -> Option<usize> {
        self.find(key).map(|i| self.weigh(i).1)
    }

    /// Removes everything (a follower does this before loading a full snapshot).
    pub fn clear(&mut self) {
        let compact = self.compact;
        *self = Store::new(self.limits);
        self.compact = compact;
    }

    /// Marks a hit: the entry gets a second chance at eviction time.
    fn touch(&mut self, i: u32) {
        self.slot_mut(i).referenced = true;
    }

    fn push_front(&mut self, i: u32) {
        let old_head = self.head;
        {
            let s = self.slot_mut(i);
            s.prev = NIL;
            s.next = old_head;
        }
        if old_head != NIL {
            self.slot_mut(old_head).prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = self.slot(i);
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slot_mut(prev).next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.slot_mut(next).prev = prev;
        } else {
            self.tail = prev;
        }
    }
}

fn slot_ref(slots: &[Option<Slot>], i: u32) -> &Slot {
    slots[i as usize].as_ref().expect("live slot")
}

/// A collection's contribution to [`Store::digest`]: its key (`kh`, its hash), kind,
/// expiry and elements.
fn object_digest(kh: u64, kind: Kind, elements: u64, expires_at: u64) -> u64 {
    kv_proto::hash::fmix64(
        kh ^ (kind.tag() as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
            ^ elements.rotate_left(31)
            ^ expires_at.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// One string entry's contribution to [`Store::digest`] (`kh`: its key's hash).
fn entry_digest(kh: u64, value: &[u8], expires_at: u64) -> u64 {
    kv_proto::hash::fmix64(kh ^ hash64(value).rotate_left(17) ^ expires_at.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests;
