//! [`HashObj`]: a hash's general form, fields in a [`Table`].

use super::table::{Keyed, Table};
use super::{ELEMENT_OVERHEAD, element_digest};

/// One field and its value in one allocation (`field ++ value`).
pub struct Field {
    data: Box<[u8]>,
    field_len: u32,
}

impl Field {
    fn new(field: &[u8], value: &[u8]) -> Field {
        let mut data = Vec::with_capacity(field.len() + value.len());
        data.extend_from_slice(field);
        data.extend_from_slice(value);
        Field {
            data: data.into_boxed_slice(),
            field_len: field.len() as u32,
        }
    }

    pub fn field(&self) -> &[u8] {
        &self.data[..self.field_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.field_len as usize..]
    }

    fn cost(&self) -> usize {
        self.data.len() + ELEMENT_OVERHEAD
    }

    fn digest(&self) -> u64 {
        element_digest(self.field(), self.value())
    }
}

impl Keyed for Field {
    fn key(&self) -> &[u8] {
        self.field()
    }
}

/// A hash: fields to values.
#[derive(Default)]
pub struct HashObj {
    table: Table<Field>,
    pub(super) digest: u64,
    pub(super) bytes: usize,
}

impl HashObj {
    /// An empty hash with room for `n` fields.
    pub fn with_capacity(n: usize) -> HashObj {
        HashObj {
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

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.table.get(field).map(Field::value)
    }

    /// Sets `field`; true when it is new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        let f = Field::new(field, value);
        self.digest ^= f.digest();
        self.bytes += f.cost();
        match self.table.insert(f) {
            Some(old) => {
                self.digest ^= old.digest();
                self.bytes -= old.cost();
                false
            }
            None => true,
        }
    }

    /// Removes `field`; true when it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self.table.remove(field) {
            Some(old) => {
                self.digest ^= old.digest();
                self.bytes -= old.cost();
                true
            }
            None => false,
        }
    }

    /// Every field and value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.table.iter().map(|f| (f.field(), f.value()))
    }

    /// A field near a random position (see [`Table::near`]).
    pub fn near(&self, pick: usize) -> Option<(&[u8], &[u8])> {
        self.table.near(pick).map(|f| (f.field(), f.value()))
    }

    /// `HSCAN`'s walk (see [`Table::scan`]).
    pub fn scan(&self, cursor: usize, count: usize, mut visit: impl FnMut(&[u8], &[u8])) -> usize {
        self.table.scan(cursor, count, |f| visit(f.field(), f.value()))
    }
}
