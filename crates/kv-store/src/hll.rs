//! HyperLogLog values in Redis's own format, so `GET`/`SET`/`DUMP` of an HLL and its error
//! bounds are Redis's: a string starting `HYLL`, 16 384 six-bit registers (precision 14),
//! held **sparse** (run-length opcodes) while small and **dense** (12 288 bytes) past
//! `hll-sparse-max-bytes`, with the last cardinality cached in the header. The estimator is
//! Redis's (Ertl's improved raw estimator), and the element hash is MurmurHash64A with
//! Redis's seed, so a kvstore HLL and a Redis HLL of the same elements are the same bytes.
//!
//! Hand-written: the format *is* the feature (clients may `GET` and `SET` these strings),
//! and no crate implements Redis's layout.

const P: u32 = 14;
const Q: u32 = 64 - P;
/// Registers per HLL.
pub const REGISTERS: usize = 1 << P;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
/// Header bytes: magic, encoding, 3 unused, 8 of cached cardinality.
pub const HEADER: usize = 16;
/// A dense HLL's length.
pub const DENSE_LEN: usize = HEADER + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// The largest value a sparse VAL opcode holds.
const SPARSE_VAL_MAX: u8 = 32;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// Why a value cannot be used as an HLL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HllError {
    /// Not an HLL at all (`WRONGTYPE Key is not a valid HyperLogLog string value.`).
    NotHll,
    /// An HLL whose sparse registers are corrupt (`INVALIDOBJ Corrupted HLL object detected`).
    Corrupt,
}

impl HllError {
    /// The error reply, in Redis's words.
    pub fn message(self) -> &'static str {
        match self {
            HllError::NotHll => "WRONGTYPE Key is not a valid HyperLogLog string value.",
            HllError::Corrupt => "INVALIDOBJ Corrupted HLL object detected",
        }
    }
}

/// MurmurHash64A, as Redis's `hyperloglog.c` uses it (little-endian reads).
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and the value it proposes (the run of zeros + 1).
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A new, empty HLL (sparse: one run of 16 384 zero registers).
pub fn empty() -> Vec<u8> {
    let mut v = header(SPARSE);
    let n = REGISTERS - 1;
    v.push(0x40 | (n >> 8) as u8);
    v.push((n & 0xff) as u8);
    v
}

fn header(encoding: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(DENSE_LEN);
    v.extend_from_slice(b"HYLL");
    v.push(encoding);
    v.extend_from_slice(&[0; 11]);
    v
}

/// Checks that `v` is an HLL (Redis's `isHLLObjectOrReply`).
pub fn validate(v: &[u8]) -> Result<(), HllError> {
    if v.len() < HEADER || &v[..4] != b"HYLL" || v[4] > SPARSE {
        return Err(HllError::NotHll);
    }
    if v[4] == DENSE && v.len() != DENSE_LEN {
        return Err(HllError::NotHll);
    }
    Ok(())
}

/// The registers of a valid HLL, one byte each.
pub fn registers(v: &[u8]) -> Result<Vec<u8>, HllError> {
    validate(v)?;
    let mut regs = vec![0u8; REGISTERS];
    if v[4] == DENSE {
        for (i, r) in regs.iter_mut().enumerate() {
            *r = dense_get(&v[HEADER..], i);
        }
        return Ok(regs);
    }
    let mut idx = 0usize;
    let mut p = HEADER;
    while p < v.len() {
        let op = v[p];
        let (run, val) = if op & 0xc0 == 0x00 {
            p += 1;
            ((op & 0x3f) as usize + 1, 0)
        } else if op & 0xc0 == 0x40 {
            let lo = *v.get(p + 1).ok_or(HllError::Corrupt)?;
            p += 2;
            ((((op & 0x3f) as usize) << 8 | lo as usize) + 1, 0)
        } else {
            p += 1;
            ((op & 0x3) as usize + 1, ((op >> 2) & 0x1f) + 1)
        };
        if idx + run > REGISTERS {
            return Err(HllError::Corrupt);
        }
        regs[idx..idx + run].fill(val);
        idx += run;
    }
    if idx != REGISTERS {
        return Err(HllError::Corrupt);
    }
    Ok(regs)
}

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let bit = i * BITS;
    let (byte, fb) = (bit / 8, bit % 8);
    let b0 = regs[byte] as u16;
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & REGISTER_MAX as u16) as u8
}

fn dense_set(regs: &mut [u8], i: usize, val: u8) {
    let bit = i * BITS;
    let (byte, fb) = (bit / 8, bit % 8);
    let v = val as u16;
    regs[byte] &= !((REGISTER_MAX as u16) << fb) as u8;
    regs[byte] |= (v << fb) as u8;
    if let Some(next) = regs.get_mut(byte + 1) {
        let fb8 = 8 - fb;
        *next &= !((REGISTER_MAX as u16) >> fb8) as u8;
        *next |= (v >> fb8) as u8;
    }
}

/// Encodes registers densely.
fn to_dense(regs: &[u8]) -> Vec<u8> {
    let mut v = header(DENSE);
    v.resize(DENSE_LEN, 0);
    for (i, &r) in regs.iter().enumerate() {
        if r != 0 {
            dense_set(&mut v[HEADER..], i, r);
        }
    }
    v
}

/// Encodes registers sparsely; `None` when a register is too large for the sparse form or
/// the result would pass `max_bytes`.
fn to_sparse(regs: &[u8], max_bytes: usize) -> Option<Vec<u8>> {
    let mut v = header(SPARSE);
    let mut i = 0;
    while i < REGISTERS {
        let val = regs[i];
        let mut run = 1;
        while i + run < REGISTERS && regs[i + run] == val {
            run += 1;
        }
        i += run;
        if val == 0 {
            let mut left = run;
            while left > 0 {
                if left > 64 {
                    let n = left.min(REGISTERS);
                    v.push(0x40 | ((n - 1) >> 8) as u8);
                    v.push(((n - 1) & 0xff) as u8);
                    left -= n;
                } else {
                    v.push((left - 1) as u8);
                    left = 0;
                }
            }
        } else {
            if val > SPARSE_VAL_MAX {
                return None;
            }
            let mut left = run;
            while left > 0 {
                let n = left.min(4);
                v.push(0x80 | ((val - 1) << 2) | (n - 1) as u8);
                left -= n;
            }
        }
        if v.len() > HEADER + max_bytes {
            return None;
        }
    }
    Some(v)
}

/// Encodes registers the way Redis keeps them: sparse while it can and the sparse form fits
/// `max_sparse` bytes, dense otherwise (and dense stays dense).
fn encode(regs: &[u8], was_dense: bool, max_sparse: usize) -> Vec<u8> {
    if !was_dense && let Some(v) = to_sparse(regs, max_sparse) {
        return v;
    }
    to_dense(regs)
}

/// `PFADD`: adds `elements` to the HLL `v` (`None`: absent, created). Returns the new value
/// and whether a register changed, or `None` when nothing changed.
pub fn add(v: Option<&[u8]>, elements: &[impl AsRef<[u8]>], max_sparse: usize) -> Result<Option<Vec<u8>>, HllError> {
    let Some(v) = v else {
        let mut regs = vec![0u8; REGISTERS];
        for e in elements {
            let (i, c) = pattern(e.as_ref());
            regs[i] = regs[i].max(c);
        }
        return Ok(Some(encode(&regs, false, max_sparse)));
    };
    let mut regs = registers(v)?;
    let mut changed = false;
    for e in elements {
        let (i, c) = pattern(e.as_ref());
        if c > regs[i] {
            regs[i] = c;
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(encode(&regs, v[4] == DENSE, max_sparse)))
}

/// The cached cardinality, when the header holds a valid one.
pub fn cached(v: &[u8]) -> Option<u64> {
    (v.len() >= HEADER && v[15] & 0x80 == 0).then(|| u64::from_le_bytes(v[8..16].try_into().expect("8 bytes")))
}

/// `v` with `card` cached in its header.
pub fn with_cache(mut v: Vec<u8>, card: u64) -> Vec<u8> {
    v[8..16].copy_from_slice(&card.to_le_bytes());
    v
}

/// Marks the cached cardinality stale (every change does).
fn invalidate(v: &mut [u8]) {
    v[15] |= 0x80;
}

/// `v` after a change: its cache marked stale.
pub fn changed(mut v: Vec<u8>) -> Vec<u8> {
    invalidate(&mut v);
    v
}

/// The estimated cardinality of registers (Redis's `hllCount`).
pub fn count(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[r as usize] += 1;
    }
    let q = Q as usize;
    let mut z = m * tau((m - histo[q + 1] as f64) / m);
    for j in (1..=q).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Merges registers into `into` (each the larger).
pub fn merge(into: &mut [u8], regs: &[u8]) {
    for (a, b) in into.iter_mut().zip(regs) {
        *a = (*a).max(*b);
    }
}

/// A dense HLL of merged registers, its cache stale (`PFMERGE`'s result, as Redis 7.0
/// writes it).
pub fn dense_of(regs: &[u8]) -> Vec<u8> {
    changed(to_dense(regs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_matches_the_reference() {
        // MurmurHash64A reference values (seed 0).
        assert_eq!(murmur64a(b"", 0), 0);
        assert_ne!(murmur64a(b"a", 0xadc8_3b19), murmur64a(b"b", 0xadc8_3b19));
    }

    #[test]
    fn counts_within_redis_error_bounds_in_both_encodings() {
        let elements: Vec<String> = (0..20_000).map(|i| format!("element:{i}")).collect();
        let mut v = add(None, &elements[..0], 3000).unwrap().unwrap();
        assert_eq!(count(&registers(&v).unwrap()), 0);
        let mut n = 0;
        for chunk in elements.chunks(1000) {
            v = add(Some(&v), chunk, 3000).unwrap().unwrap_or(v);
            n += chunk.len();
            let c = count(&registers(&v).unwrap()) as f64;
            assert!((c - n as f64).abs() / (n as f64) < 0.05, "{c} for {n}");
        }
        assert_eq!(v.len(), DENSE_LEN, "promoted to dense");
        assert_eq!(count(&registers(&empty()).unwrap()), 0);
    }

    #[test]
    fn sparse_and_dense_agree_and_corruption_is_caught() {
        let elements: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let sparse = add(None, &elements, 3000).unwrap().unwrap();
        assert_eq!(sparse[4], SPARSE);
        let regs = registers(&sparse).unwrap();
        let dense = to_dense(&regs);
        assert_eq!(registers(&dense).unwrap(), regs);
        assert_eq!(count(&regs), 50);
        let mut tail = sparse.clone();
        tail.extend_from_slice(b"hello");
        assert_eq!(registers(&tail), Err(HllError::Corrupt));
        let mut magic = sparse.clone();
        magic[..4].copy_from_slice(b"0123");
        assert_eq!(validate(&magic), Err(HllError::NotHll));
        let mut short = sparse;
        short[4] = 0;
        assert_eq!(validate(&short), Err(HllError::NotHll));
    }
}
