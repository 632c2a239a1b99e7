//! A hash that every process and every version of kvstore computes identically.
//!
//! Used where two processes must agree: the consistent-hash ring (gates route by it) and
//! content digests (replicas are compared by them). Hand-written on purpose: a hasher from a
//! crate may change its output in a new release, which would silently reshuffle every key in
//! the ring. Golden vectors in the ring tests pin the output.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// 64-bit hash of `data`: 8 bytes per step, finished with the MurmurHash3 mixer so that short
/// inputs that differ in one byte land far apart.
pub fn hash64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (data.len() as u64).wrapping_mul(K);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ v.wrapping_mul(K)).rotate_left(29).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        let v = u64::from_le_bytes(tail);
        h = (h ^ v.wrapping_mul(K)).rotate_left(29).wrapping_mul(K);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values() {
        // Changing these reshuffles every deployed ring: don't.
        for (input, want) in GOLDEN {
            assert_eq!(hash64(input), *want, "hash64({:?})", String::from_utf8_lossy(input));
        }
    }

    const GOLDEN: &[(&[u8], u64)] = &[
        (b"", 0xefd0_1f60_ba99_2926),
        (b"a", 0x8647_5790_cb50_7a19),
        (b"key:1", 0x0af7_de83_b287_db0a),
        (b"shard-1#0", 0x7fc6_fcaa_e6c9_7163),
        (b"0123456789abcdef0123", 0x4a21_c6cd_6a75_7d89),
    ];
}
