//! [`SetObj`]: a set's general form, members in a [`Table`].

use super::table::Table;
use super::{ELEMENT_OVERHEAD, element_digest};

/// A set of members.
#[derive(Default)]
pub struct SetObj {
    table: Table<Box<[u8]>>,
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

impl SetObj {
    /// An empty set with room for `n` members.
    pub fn with_capacity(n: usize) -> SetObj {
        SetObj {
            table: Table::with_capacity(n),
            digest: 0,
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.table.get(member).is_some()
    }

    /// Adds `member`; true when it is new.
    pub fn add(&mut self, member: &[u8]) -> bool {
        if self.contains(member) {
            return false;
        }
        self.digest ^= element_digest(member, b"");
        self.bytes += member.len() + ELEMENT_OVERHEAD;
        self.table.insert(Box::from(member));
        true
    }

    /// Removes `member`; true when it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.table.remove(member) {
            Some(old) => {
                self.digest ^= element_digest(&old, b"");
                self.bytes -= old.len() + ELEMENT_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.table.iter().map(|m| &m[..])
    }

    /// A member near a random position (see [`Table::near`]).
    pub fn near(&self, pick: usize) -> Option<&[u8]> {
        self.table.near(pick).map(|m| &m[..])
    }

    /// `SSCAN`'s walk (see [`Table::scan`]).
    pub fn scan(&self, cursor: usize, count: usize, mut visit: impl FnMut(&[u8])) -> usize {
        self.table.scan(cursor, count, |m| visit(m))
    }
}
