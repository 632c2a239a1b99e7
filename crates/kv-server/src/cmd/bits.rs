//! Bitmaps on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO.
//! Bit 0 is the most significant bit of byte 0, as in Redis. Writes are replicated as the
//! resulting value.

use bytes::Bytes;
use kv_proto::{Frame, Out};

use super::args::parse_i64;
use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

const OOM: &str = "OOM value too large for this server's --maxmemory";

fn bad_offset() -> CmdError {
    CmdError::Other("bit offset is not an integer or out of range".into())
}

/// A bit offset, bounded so the string stays within `proto-max-bulk-len` (checked again at
/// apply time against the server's setting).
fn parse_offset(b: &[u8]) -> Result<u64, CmdError> {
    match parse_i64(b) {
        Some(n) if n >= 0 && (n as u64 >> 3) < (1u64 << 32) => Ok(n as u64),
        _ => Err(bad_offset()),
    }
}

fn get_bit(v: &[u8], bit: u64) -> u8 {
    let byte = (bit >> 3) as usize;
    v.get(byte).map_or(0, |b| (b >> (7 - (bit & 7))) & 1)
}

/// `SETBIT key offset 0|1`: the bit's previous value.
#[derive(Debug)]
pub struct SetBit {
    key: Bytes,
    offset: u64,
    on: bool,
}

impl SetBit {
    pub fn parse(args: &mut Args) -> Result<SetBit, CmdError> {
        let key = args.arg()?;
        let offset = parse_offset(&args.arg()?)?;
        let on = match &args.arg()?[..] {
            b"1" => true,
            b"0" => false,
            _ => return Err(CmdError::Other("bit is not an integer or out of range".into())),
        };
        args.finish()?;
        Ok(SetBit { key, offset, on })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let max = node.config.resp.proto_max_bulk_len;
        let result = node.write([&self.key[..]], |w| {
            if self.offset >> 3 >= max {
                return Frame::error("ERR bit offset is not an integer or out of range");
            }
            let found = w.get(&self.key);
            let existed = found.is_some();
            let (old, expires_at) = found.unwrap_or_default();
            let byte = (self.offset >> 3) as usize;
            let len = old.len().max(byte + 1);
            let previous = get_bit(&old, self.offset);
            // Nothing changes: nothing is written (or replicated), as Redis counts no change.
            if existed && len == old.len() && (previous == 1) == self.on {
                return Frame::Integer(previous as i64);
            }
            if !w.fits(self.key.len(), len) {
                return Frame::error(OOM);
            }
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(&old);
            v.resize(len, 0);
            let mask = 1u8 << (7 - (self.offset & 7));
            if self.on {
                v[byte] |= mask;
            } else {
                v[byte] &= !mask;
            }
            w.set(&self.key, &v, expires_at);
            Frame::Integer(previous as i64)
        });
        reply(out, result, |out, f| out.frame(&f))
    }
}

/// `GETBIT key offset`.
#[derive(Debug)]
pub struct GetBit {
    key: Bytes,
    offset: u64,
}

impl GetBit {
    pub fn parse(args: &mut Args) -> Result<GetBit, CmdError> {
        let key = args.arg()?;
        let offset = parse_offset(&args.arg()?)?;
        args.finish()?;
        Ok(GetBit { key, offset })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            r.get(&self.key, |v| get_bit(v.unwrap_or_default(), self.offset))
        });
        reply(out, result, |out, b| kv_proto::write::integer(out, b as i64))
    }
}

/// A `start end [BYTE|BIT]` range as BITCOUNT and BITPOS take it, resolved against a string
/// of `len` bytes to an inclusive range of bits; `None` when empty.
fn bit_range(start: i64, end: i64, bits: bool, len: usize) -> Option<(u64, u64)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let total = if bits { len as i64 * 8 } else { len as i64 };
    let fix = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(total - 1));
    if start > end || total == 0 {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if bits { (start, end) } else { (start * 8, end * 8 + 7) })
}

/// Counts the set bits of `v` in the inclusive bit range.
fn count_bits(v: &[u8], (first, last): (u64, u64)) -> u64 {
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let mut n: u64 = v[fb..=lb].iter().map(|b| b.count_ones() as u64).sum();
    // Bits of the first and last bytes outside the range.
    let before_first = !(0xFFu8 >> (first & 7));
    let after_last = (0xFFu8 >> (last & 7)) >> 1;
    n -= (v[fb] & before_first).count_ones() as u64;
    n -= (v[lb] & after_last).count_ones() as u64;
    n
}

fn range_unit(b: &[u8]) -> Result<bool, CmdError> {
    match b.to_ascii_uppercase().as_slice() {
        b"BIT" => Ok(true),
        b"BYTE" => Ok(false),
        _ => Err(CmdError::Syntax),
    }
}

/// `BITCOUNT key [start end [BYTE|BIT]]`.
#[derive(Debug)]
pub struct BitCount {
    key: Bytes,
    range: Option<(i64, i64, bool)>,
}

impl BitCount {
    pub fn parse(args: &mut Args) -> Result<BitCount, CmdError> {
        let key = args.arg()?;
        let range = match args.remaining() {
            0 => None,
            2 | 3 => {
                let start = args.arg_i64()?;
                let end = args.arg_i64()?;
                let bits = match args.arg_opt() {
                    Some(u) => range_unit(&u)?,
                    None => false,
                };
                Some((start, end, bits))
            }
            _ => return Err(CmdError::Syntax),
        };
        Ok(BitCount { key, range })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            r.get(&self.key, |v| {
                let v = v.unwrap_or_default();
                let (start, end, bits) = self.range.unwrap_or((0, -1, false));
                bit_range(start, end, bits, v.len()).map_or(0, |range| count_bits(v, range))
            })
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}

/// `BITPOS key 0|1 [start [end [BYTE|BIT]]]`.
#[derive(Debug)]
pub struct BitPos {
    key: Bytes,
    bit: u8,
    start: Option<i64>,
    end: Option<i64>,
    bits: bool,
}

impl BitPos {
    pub fn parse(args: &mut Args) -> Result<BitPos, CmdError> {
        let key = args.arg()?;
        let bit = match args.arg_i64()? {
            0 => 0,
            1 => 1,
            _ => return Err(CmdError::Other("The bit argument must be 1 or 0.".into())),
        };
        if args.remaining() > 3 {
            return Err(CmdError::Syntax);
        }
        let start = args
            .arg_opt()
            .map(|a| parse_i64(&a).ok_or(CmdError::NotInteger))
            .transpose()?;
        let end = args
            .arg_opt()
            .map(|a| parse_i64(&a).ok_or(CmdError::NotInteger))
            .transpose()?;
        let bits = match args.arg_opt() {
            Some(u) => range_unit(&u)?,
            None => false,
        };
        Ok(BitPos {
            key,
            bit,
            start,
            end,
            bits,
        })
    }

    fn find(&self, v: &[u8]) -> i64 {
        let total = if self.bits { v.len() as i64 * 8 } else { v.len() as i64 };
        let Some((first, last)) = bit_range(
            self.start.unwrap_or(0),
            self.end.unwrap_or(total - 1),
            self.bits,
            v.len(),
        ) else {
            return -1;
        };
        // Whole bytes that cannot hold the bit sought are skipped at once.
        let skip = if self.bit == 1 { 0x00 } else { 0xFF };
        let mut i = first;
        while i <= last {
            if i & 7 == 0 && i + 7 <= last && v[(i >> 3) as usize] == skip {
                i += 8;
                continue;
            }
            if get_bit(v, i) == self.bit {
                return i as i64;
            }
            i += 1;
        }
        // A clear bit sought past a range with no explicit end: the string continues with
        // zeros, as Redis considers it.
        if self.bit == 0 && self.end.is_none() {
            return last as i64 + 1;
        }
        -1
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            r.get(&self.key, |v| match v {
                None => {
                    if self.bit == 1 {
                        -1
                    } else {
                        0
                    }
                }
                Some(v) => self.find(v),
            })
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitOpKind {
    And,
    Or,
    Xor,
    Not,
}

/// `BITOP AND|OR|XOR|NOT destkey key [key ...]`: the destination's length.
#[derive(Debug)]
pub struct BitOp {
    op: BitOpKind,
    dest: Bytes,
    sources: Vec<Bytes>,
}

impl BitOp {
    pub fn parse(args: &mut Args) -> Result<BitOp, CmdError> {
        let op = match args.arg()?.to_ascii_uppercase().as_slice() {
            b"AND" => BitOpKind::And,
            b"OR" => BitOpKind::Or,
            b"XOR" => BitOpKind::Xor,
            b"NOT" => BitOpKind::Not,
            _ => return Err(CmdError::Syntax),
        };
        let dest = args.arg()?;
        let sources = args.rest_at_least_one()?;
        if op == BitOpKind::Not && sources.len() != 1 {
            return Err(CmdError::Other(
                "BITOP NOT must be called with a single source key.".into(),
            ));
        }
        Ok(BitOp { op, dest, sources })
    }

    /// The keys, destination first.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.dest[..]).chain(self.sources.iter().map(|k| &k[..]))
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write(self.keys(), |w| {
            let values: Vec<Bytes> = self
                .sources
                .iter()
                .map(|k| w.get(k).map(|(v, _)| v).unwrap_or_default())
                .collect();
            let len = values.iter().map(|v| v.len()).max().unwrap_or(0);
            if len == 0 {
                w.del(&self.dest);
                return Frame::Integer(0);
            }
            if !w.fits(self.dest.len(), len) {
                return Frame::error(OOM);
            }
            let byte = |v: &Bytes, i: usize| v.get(i).copied().unwrap_or(0);
            let result: Vec<u8> = (0..len)
                .map(|i| match self.op {
                    BitOpKind::Not => !byte(&values[0], i),
                    BitOpKind::And => values.iter().fold(0xFF, |acc, v| acc & byte(v, i)),
                    BitOpKind::Or => values.iter().fold(0, |acc, v| acc | byte(v, i)),
                    BitOpKind::Xor => values.iter().fold(0, |acc, v| acc ^ byte(v, i)),
                })
                .collect();
            w.set(&self.dest, &result, None);
            Frame::Integer(len as i64)
        });
        reply(out, result, |out, f| out.frame(&f))
    }
}

/// An integer type of BITFIELD: `i1`..`i64` or `u1`..`u63`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldType {
    signed: bool,
    bits: u32,
}

impl FieldType {
    fn parse(b: &[u8]) -> Result<FieldType, CmdError> {
        let err = || {
            CmdError::Other(
                "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.".into(),
            )
        };
        let signed = match b.first().map(|c| c.to_ascii_lowercase()) {
            Some(b'i') => true,
            Some(b'u') => false,
            _ => return Err(err()),
        };
        let bits = parse_i64(&b[1..]).ok_or_else(err)?;
        let max = if signed { 64 } else { 63 };
        if bits < 1 || bits > max {
            return Err(err());
        }
        Ok(FieldType {
            signed,
            bits: bits as u32,
        })
    }

    fn min(self) -> i64 {
        if self.signed {
            -(1i128 << (self.bits - 1)) as i64
        } else {
            0
        }
    }

    fn max(self) -> i64 {
        if self.signed {
            ((1i128 << (self.bits - 1)) - 1) as i64
        } else {
            ((1i128 << self.bits) - 1) as i64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    op: FieldOp,
    ty: FieldType,
    offset: u64,
    overflow: Overflow,
}

/// `BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset increment]
/// [OVERFLOW WRAP|SAT|FAIL] ...` and `BITFIELD_RO key [GET type offset] ...`.
#[derive(Debug)]
pub struct BitField {
    key: Bytes,
    fields: Vec<Field>,
    read_only: bool,
}

impl BitField {
    pub fn parse(args: &mut Args, read_only: bool) -> Result<BitField, CmdError> {
        let key = args.arg()?;
        let mut fields = Vec::new();
        let mut overflow = Overflow::Wrap;
        while let Some(sub) = args.arg_opt() {
            let sub = sub.to_ascii_uppercase();
            if sub == b"OVERFLOW" {
                let o = args.arg_opt().ok_or(CmdError::Syntax)?;
                overflow = match o.to_ascii_uppercase().as_slice() {
                    b"WRAP" => Overflow::Wrap,
                    b"SAT" => Overflow::Sat,
                    b"FAIL" => Overflow::Fail,
                    _ => return Err(CmdError::Other("Invalid OVERFLOW type specified".into())),
                };
                continue;
            }
            let argc = match sub.as_slice() {
                b"GET" => 2,
                b"SET" | b"INCRBY" => 3,
                _ => return Err(CmdError::Syntax),
            };
            if args.remaining() < argc {
                return Err(CmdError::Syntax);
            }
            let ty = FieldType::parse(&args.arg()?)?;
            let off = args.arg()?;
            // `#n` means the n-th field of this type's width.
            let offset = match off.strip_prefix(b"#") {
                Some(n) => parse_i64(n)
                    .filter(|&n| n >= 0)
                    .and_then(|n| n.checked_mul(ty.bits as i64))
                    .ok_or_else(bad_offset)?,
                None => parse_i64(&off).filter(|&n| n >= 0).ok_or_else(bad_offset)?,
            } as u64;
            if offset >> 3 >= 1 << 32 {
                return Err(bad_offset());
            }
            let op = match sub.as_slice() {
                b"GET" => FieldOp::Get,
                b"SET" => FieldOp::Set(args.arg_i64()?),
                _ => FieldOp::IncrBy(args.arg_i64()?),
            };
            if read_only && !matches!(op, FieldOp::Get) {
                return Err(CmdError::Other("BITFIELD_RO only supports the GET subcommand".into()));
            }
            fields.push(Field {
                op,
                ty,
                offset,
                overflow,
            });
        }
        Ok(BitField { key, fields, read_only })
    }

    /// True when no subcommand writes (served as a read).
    pub fn is_read(&self) -> bool {
        self.read_only || self.fields.iter().all(|f| matches!(f.op, FieldOp::Get))
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        if self.is_read() {
            let result = node.read([&self.key[..]], |r| {
                r.get(&self.key, |v| {
                    let v = v.unwrap_or_default();
                    Frame::Array(
                        self.fields
                            .iter()
                            .map(|f| Frame::Integer(read_field(v, f.ty, f.offset)))
                            .collect(),
                    )
                })
            });
            return reply(out, result, |out, f| out.frame(&f));
        }
        let max = node.config.resp.proto_max_bulk_len;
        let result = node.write([&self.key[..]], |w| {
            let found = w.get(&self.key);
            let existed = found.is_some();
            let (old, expires_at) = found.unwrap_or_default();
            let mut v = old.to_vec();
            let need = self
                .fields
                .iter()
                .filter(|f| !matches!(f.op, FieldOp::Get))
                .map(|f| ((f.offset + f.ty.bits as u64 - 1) >> 3) + 1)
                .max()
                .unwrap_or(0);
            if need > max {
                return Frame::error("ERR bit offset is not an integer or out of range");
            }
            if need as usize > v.len() {
                if !w.fits(self.key.len(), need as usize) {
                    return Frame::error(OOM);
                }
                v.resize(need as usize, 0);
            }
            let mut replies = Vec::with_capacity(self.fields.len());
            // A new key is a change even when every field is set to zero.
            let mut changed = !existed;
            for f in &self.fields {
                let current = read_field(&v, f.ty, f.offset);
                let next = match f.op {
                    FieldOp::Get => {
                        replies.push(Frame::Integer(current));
                        continue;
                    }
                    FieldOp::Set(n) => fit(n as i128, f.ty, f.overflow),
                    FieldOp::IncrBy(d) => fit(current as i128 + d as i128, f.ty, f.overflow),
                };
                match next {
                    Some(n) => {
                        write_field(&mut v, f.ty, f.offset, n);
                        changed |= n != current;
                        replies.push(Frame::Integer(match f.op {
                            FieldOp::Set(_) => current,
                            _ => n,
                        }));
                    }
                    None => replies.push(Frame::Null),
                }
            }
            if changed || v.len() != old.len() {
                w.set(&self.key, &v, expires_at);
            }
            Frame::Array(replies)
        });
        reply(out, result, |out, f| out.frame(&f))
    }
}

/// The field's value as its type reads it.
fn read_field(v: &[u8], ty: FieldType, offset: u64) -> i64 {
    let mut raw: u64 = 0;
    for i in 0..ty.bits as u64 {
        raw = (raw << 1) | get_bit(v, offset + i) as u64;
    }
    if ty.signed && ty.bits < 64 && raw >> (ty.bits - 1) & 1 == 1 {
        (raw | (!0u64 << ty.bits)) as i64
    } else {
        raw as i64
    }
}

fn write_field(v: &mut [u8], ty: FieldType, offset: u64, value: i64) {
    let raw = value as u64;
    for i in 0..ty.bits as u64 {
        let bit = (raw >> (ty.bits as u64 - 1 - i)) & 1;
        let pos = offset + i;
        let mask = 1u8 << (7 - (pos & 7));
        let byte = &mut v[(pos >> 3) as usize];
        if bit == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// `n` brought into the type's range by the overflow policy; `None` when FAIL refuses it.
fn fit(n: i128, ty: FieldType, overflow: Overflow) -> Option<i64> {
    let (min, max) = (ty.min() as i128, ty.max() as i128);
    if (min..=max).contains(&n) {
        return Some(n as i64);
    }
    match overflow {
        Overflow::Fail => None,
        Overflow::Sat => Some(if n > max { max } else { min } as i64),
        Overflow::Wrap => {
            let span = 1i128 << ty.bits;
            let mut m = n.rem_euclid(span);
            if ty.signed && m > max {
                m -= span;
            }
            Some(m as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bits_in_ranges() {
        let v = b"foobar";
        assert_eq!(bit_range(0, -1, false, 6).map(|r| count_bits(v, r)), Some(26));
        assert_eq!(bit_range(1, 1, false, 6).map(|r| count_bits(v, r)), Some(6));
        assert_eq!(bit_range(5, 30, true, 6).map(|r| count_bits(v, r)), Some(17));
        assert_eq!(bit_range(-1, -2, false, 6), None);
    }

    #[test]
    fn finds_bits_like_redis() {
        let pos = |v: &[u8], bit: u8, start: Option<i64>, end: Option<i64>, bits: bool| {
            BitPos {
                key: Bytes::new(),
                bit,
                start,
                end,
                bits,
            }
            .find(v)
        };
        assert_eq!(pos(b"\xff\xf0\x00", 0, None, None, false), 12);
        assert_eq!(pos(b"\x00\xff\xf0", 1, Some(0), None, false), 8);
        assert_eq!(pos(b"\x00\xff\xf0", 1, Some(2), None, false), 16);
        assert_eq!(pos(b"\x00\xff\xf0", 1, Some(2), Some(-1), false), 16);
        assert_eq!(pos(b"\x00\xff\xf0", 1, Some(7), Some(15), true), 8);
        assert_eq!(pos(b"\xff\xff\xff", 0, None, None, false), 24);
        assert_eq!(pos(b"\xff\xff\xff", 0, Some(0), Some(-1), false), -1);
        assert_eq!(pos(b"\x00\x00\x00", 1, None, None, false), -1);
    }

    #[test]
    fn fields_wrap_saturate_and_fail() {
        let i8t = FieldType::parse(b"i8").unwrap();
        let u2 = FieldType::parse(b"u2").unwrap();
        assert_eq!(fit(128, i8t, Overflow::Wrap), Some(-128));
        assert_eq!(fit(128, i8t, Overflow::Sat), Some(127));
        assert_eq!(fit(-129, i8t, Overflow::Sat), Some(-128));
        assert_eq!(fit(128, i8t, Overflow::Fail), None);
        assert_eq!(fit(5, u2, Overflow::Wrap), Some(1));
        assert!(FieldType::parse(b"u64").is_err());
        assert!(FieldType::parse(b"i64").is_ok());
        let mut v = vec![0u8; 2];
        write_field(&mut v, i8t, 4, -1);
        assert_eq!(v, [0x0f, 0xf0]);
        assert_eq!(read_field(&v, i8t, 4), -1);
        assert_eq!(read_field(&v, FieldType::parse(b"u4").unwrap(), 4), 15);
    }
}
