//! [`Kind`]: the type of a stored value, as `TYPE` names it. Shared by the store, the cluster
//! protocol (snapshots, key moves carry it) and the gate (`SCAN … TYPE`).

/// A value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    String = 0,
    List = 1,
    Set = 2,
    ZSet = 3,
    Hash = 4,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 5] = [Kind::String, Kind::List, Kind::Set, Kind::ZSet, Kind::Hash];

    /// The name `TYPE` replies with.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Hash => "hash",
        }
    }

    /// The kind named `name` (any case), as `SCAN … TYPE` takes it.
    pub fn from_name(name: &[u8]) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The one-byte tag of the cluster protocol.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The kind of a tag.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.get(tag as usize).copied()
    }
}

/// The error a command on a key of the wrong kind gets, in Redis's words.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name().to_uppercase().as_bytes()), Some(k));
            assert_eq!(Kind::from_tag(k.tag()), Some(k));
        }
        assert_eq!(Kind::from_name(b"stream"), None);
        assert_eq!(Kind::from_tag(9), None);
    }
}
