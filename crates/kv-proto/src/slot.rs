//! Redis Cluster's key slots: `slot = CRC16(key) mod 16384`, hashing only the hash tag (the
//! part between the first `{` and the next `}`, when not empty) so that keys sharing a tag
//! share a slot, and therefore a shard.
//!
//! Hand-written: CRC16-CCITT (XMODEM) is a dozen lines, and the slot is part of the wire
//! contract with every cluster-aware client, pinned by golden vectors from Redis itself.

/// Slots in the key space.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), one table lookup per byte.
static TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16 of `data` as Redis Cluster computes it.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter()
        .fold(0u16, |crc, &b| (crc << 8) ^ TABLE[((crc >> 8) as u8 ^ b) as usize])
}

/// The part of `key` that is hashed: its hash tag when it has a non-empty one.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CLUSTER KEYSLOT` of redis-server 7.0.15 (cluster-enabled) for each key.
    #[test]
    fn golden_slots_from_redis() {
        let cases: &[(&str, u16)] = &[
            ("", 0),
            ("a", 15495),
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("key:1", 6657),
            ("{user1000}:following", 3443),
            ("{user1000}:followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("{}foo", 9500),
            ("123456789", 12739),
            ("{", 4092),
            ("}", 12090),
            ("a{b", 13340),
            ("user:{1}:x", 9842),
            ("漢字", 14191),
        ];
        for (key, slot) in cases {
            assert_eq!(key_slot(key.as_bytes()), *slot, "{key:?}");
        }
        // The CRC's check value.
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }
}
