//! [`Table`]: the general form of hashes, sets and sorted sets' member index. Elements live
//! in a slab (a `Vec` with a free list) indexed by a `hashbrown::HashTable` of slab positions,
//! as the store itself keeps keys: each element is stored once, a random element is a random
//! slab position (`SPOP`, `HRANDFIELD`), and positions never move while an element lives, so
//! a position is a `SCAN` cursor that returns every element present for the whole walk.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// An element with a key.
pub trait Keyed {
    fn key(&self) -> &[u8];
}

impl Keyed for Box<[u8]> {
    fn key(&self) -> &[u8] {
        self
    }
}

pub struct Table<E> {
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    len: usize,
}

impl<E: Keyed> Default for Table<E> {
    fn default() -> Self {
        Table::with_capacity(0)
    }
}

impl<E: Keyed> Table<E> {
    /// An empty table with room for `n` elements (a compact form decoded: its count is
    /// known, and growing one element at a time reallocated the index and the slab twice
    /// for five fields).
    pub fn with_capacity(n: usize) -> Self {
        Table {
            index: HashTable::with_capacity(n),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(slots: &[Option<E>], i: u32) -> &E {
        slots[i as usize].as_ref().expect("live element")
    }

    /// The slab position of `key`'s element: stable while it lives (see [`Table::at`]).
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| Self::slot(&self.slots, i).key() == key)
            .copied()
    }

    /// The live element at slab position `i` (from [`Table::find`] or [`Table::insert_new`]).
    pub fn at(&self, i: u32) -> &E {
        Self::slot(&self.slots, i)
    }

    pub fn get(&self, key: &[u8]) -> Option<&E> {
        self.find(key).map(|i| Self::slot(&self.slots, i))
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut E> {
        let i = self.find(key)?;
        self.slots[i as usize].as_mut()
    }

    /// Inserts `e`, returning the element with the same key it replaced (the key hashed
    /// once for the search and the insert).
    pub fn insert(&mut self, e: E) -> Option<E> {
        let hash = self.hasher.hash_one(e.key());
        if let Some(&i) = self.index.find(hash, |&i| Self::slot(&self.slots, i).key() == e.key()) {
            return self.slots[i as usize].replace(e);
        }
        self.insert_hashed(e, hash);
        None
    }

    /// Inserts `e`, whose key is not in the table; returns its slab position.
    pub fn insert_new(&mut self, e: E) -> u32 {
        debug_assert!(self.find(e.key()).is_none());
        let hash = self.hasher.hash_one(e.key());
        self.insert_hashed(e, hash)
    }

    /// [`Table::insert_new`] with the key's hash computed.
    fn insert_hashed(&mut self, e: E, hash: u64) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(e);
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(Self::slot(slots, j).key()));
        self.len += 1;
        i
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<E> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(hash, |&i| Self::slot(slots, i).key() == key)
            .ok()?;
        let (i, _) = entry.remove();
        self.free.push(i);
        self.len -= 1;
        let e = self.slots[i as usize].take();
        if self.len == 0 {
            self.slots.clear();
            self.free.clear();
        }
        e
    }

    /// The element at or after slab position `pick` (taken modulo the slab), wrapping:
    /// close to uniform while the slab is dense.
    pub fn near(&self, pick: usize) -> Option<&E> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len();
        let start = pick % n;
        (start..n).chain(0..start).find_map(|i| self.slots[i].as_ref())
    }

    /// Visits elements from slab position `cursor` until `count` were visited; returns the
    /// position to continue from (0 when done).
    pub fn scan(&self, cursor: usize, count: usize, mut visit: impl FnMut(&E)) -> usize {
        let mut seen = 0;
        let mut i = cursor;
        while i < self.slots.len() {
            if seen >= count {
                return i;
            }
            if let Some(e) = &self.slots[i] {
                visit(e);
                seen += 1;
            }
            i += 1;
        }
        0
    }

    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.slots.iter().flatten()
    }
}
