//! `DUMP` and `RESTORE` in Redis's serialization: a value in RDB encoding, the RDB version
//! (10, Redis 7.0's) as two little-endian bytes, and a CRC-64 (Jones) of both. Payloads move
//! between kvstore and Redis in either direction (`redis-cli --pipe`, `MIGRATE`-style tools).
//!
//! Only strings exist until the data types arrive; a payload of another type is refused as
//! bad data. Reading accepts every string encoding Redis writes: plain, integer, and LZF
//! compressed (hand-written: the format is a few lines, and no maintained crate reads
//! Redis's LZF blocks as they are laid out in an RDB).

use bytes::Bytes;
use kv_proto::{Frame, Out};

use kv_store::Object;

use super::args::parse_i64;
use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

const RDB_VERSION: u16 = 10;
const RDB_TYPE_STRING: u8 = 0;
const RDB_TYPE_LIST: u8 = 1;
const RDB_TYPE_SET: u8 = 2;
const RDB_TYPE_HASH: u8 = 4;
const RDB_TYPE_ZSET_2: u8 = 5;

/// CRC-64 with the Jones polynomial, reflected, as Redis checks dumps.
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5; // 0xad93d23594c935a9 reflected
    static TABLE: std::sync::LazyLock<[u64; 256]> = std::sync::LazyLock::new(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    data.iter()
        .fold(0u64, |crc, &b| TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8))
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

/// The `DUMP` payload of a string value.
pub fn dump_string(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 16);
    out.push(RDB_TYPE_STRING);
    put_string(&mut out, value);
    finish(out)
}

/// A `DUMP` payload of any value: strings as above; collections in the plain RDB types
/// every Redis version loads (list, set, hash, and sorted set with binary scores).
pub fn dump_value(value: kv_store::Val<'_>) -> Vec<u8> {
    let Some(obj) = value.object() else {
        return dump_string(match value {
            kv_store::Val::Str(v) => v,
            _ => b"",
        });
    };
    let mut out = Vec::new();
    match &*obj {
        Object::List(l) => {
            out.push(RDB_TYPE_LIST);
            put_len(&mut out, l.len());
            l.iter().for_each(|v| put_string(&mut out, v));
        }
        Object::Set(s) => {
            out.push(RDB_TYPE_SET);
            put_len(&mut out, s.len());
            s.iter().for_each(|m| put_string(&mut out, m));
        }
        Object::Hash(h) => {
            out.push(RDB_TYPE_HASH);
            put_len(&mut out, h.len());
            h.iter().for_each(|(f, v)| {
                put_string(&mut out, f);
                put_string(&mut out, v);
            });
        }
        Object::ZSet(z) => {
            out.push(RDB_TYPE_ZSET_2);
            put_len(&mut out, z.len());
            // Redis writes them from the highest score down; either order loads.
            z.iter().rev().for_each(|(m, s)| {
                put_string(&mut out, m);
                out.extend_from_slice(&s.to_le_bytes());
            });
        }
    }
    finish(out)
}

/// Appends the RDB version and the checksum.
fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// One RDB string. Integers that print back the same take the integer encoding, as Redis
/// writes them.
fn put_string(out: &mut Vec<u8>, value: &[u8]) {
    match parse_i64(value).filter(|_| value.len() <= 11) {
        Some(n) if i8::try_from(n).is_ok() => out.extend_from_slice(&[0xC0, n as i8 as u8]),
        Some(n) if i16::try_from(n).is_ok() => {
            out.push(0xC1);
            out.extend_from_slice(&(n as i16).to_le_bytes());
        }
        Some(n) if i32::try_from(n).is_ok() => {
            out.push(0xC2);
            out.extend_from_slice(&(n as i32).to_le_bytes());
        }
        _ => {
            put_len(out, value.len());
            out.extend_from_slice(value);
        }
    }
}

/// Why a payload was refused, worded as Redis words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPayload {
    /// Unknown RDB version or wrong checksum.
    Checksum,
    /// Well-formed envelope, unreadable (or not yet supported) value.
    Format,
}

impl BadPayload {
    fn text(self) -> &'static str {
        match self {
            BadPayload::Checksum => "ERR DUMP payload version or checksum are wrong",
            BadPayload::Format => "ERR Bad data format",
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BadPayload> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(BadPayload::Format)?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, BadPayload> {
        Ok(self.take(1)?[0])
    }

    /// A length (`Ok(Ok(n))`), or a special encoding (`Ok(Err(kind))`, its low 6 bits).
    fn len(&mut self) -> Result<Result<usize, u8>, BadPayload> {
        let b = self.byte()?;
        let n = match b >> 6 {
            0 => (b & 0x3f) as usize,
            1 => (((b & 0x3f) as usize) << 8) | self.byte()? as usize,
            2 if b == 0x80 => u32::from_be_bytes(self.take(4)?.try_into().unwrap()) as usize,
            2 if b == 0x81 => usize::try_from(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
                .map_err(|_| BadPayload::Format)?,
            2 => return Err(BadPayload::Format),
            _ => return Ok(Err(b & 0x3f)),
        };
        Ok(Ok(n))
    }

    /// Nothing may follow the value.
    fn done(&self) -> Result<(), BadPayload> {
        if self.at == self.data.len() {
            Ok(())
        } else {
            Err(BadPayload::Format)
        }
    }

    fn string(&mut self, max: usize) -> Result<Vec<u8>, BadPayload> {
        match self.len()? {
            Ok(n) if n <= max => Ok(self.take(n)?.to_vec()),
            Ok(_) => Err(BadPayload::Format),
            Err(0) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Err(1) => Ok(i16::from_le_bytes(self.take(2)?.try_into().unwrap())
                .to_string()
                .into_bytes()),
            Err(2) => Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap())
                .to_string()
                .into_bytes()),
            Err(3) => {
                let clen = self.len()?.map_err(|_| BadPayload::Format)?;
                let len = self.len()?.map_err(|_| BadPayload::Format)?;
                if len > max {
                    return Err(BadPayload::Format);
                }
                lzf_decompress(self.take(clen)?, len).ok_or(BadPayload::Format)
            }
            Err(_) => Err(BadPayload::Format),
        }
    }
}

/// LZF decompression (liblzf's format) into exactly `len` bytes.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            out.extend_from_slice(input.get(i..i + n)?);
            i += n;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += *input.get(i)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + *input.get(i)? as usize + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            for k in 0..n + 2 {
                out.push(out[start + k]);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// A value read from a `DUMP` payload.
pub enum Restored {
    Str(Vec<u8>),
    Obj(Object),
}

/// The value in a `DUMP` payload (a string, or a collection in the plain RDB types);
/// `max` bounds each string in it.
pub fn restore_value(payload: &[u8], max: usize) -> Result<Restored, BadPayload> {
    let mut r = open(payload)?;
    let kind = r.byte()?;
    let count = |r: &mut Reader<'_>| r.len()?.map_err(|_| BadPayload::Format);
    let obj = match kind {
        RDB_TYPE_STRING => {
            let v = r.string(max)?;
            return r.done().map(|()| Restored::Str(v));
        }
        RDB_TYPE_LIST => {
            let mut l = kv_store::object::ListObj::default();
            for _ in 0..count(&mut r)? {
                l.push_back(&r.string(max)?);
            }
            Object::List(l)
        }
        RDB_TYPE_SET => {
            let mut s = kv_store::object::SetObj::default();
            for _ in 0..count(&mut r)? {
                s.add(&r.string(max)?);
            }
            Object::Set(s)
        }
        RDB_TYPE_HASH => {
            let mut h = kv_store::object::HashObj::default();
            for _ in 0..count(&mut r)? {
                let f = r.string(max)?;
                h.set(&f, &r.string(max)?);
            }
            Object::Hash(h)
        }
        RDB_TYPE_ZSET_2 => {
            let mut z = kv_store::object::ZSetObj::default();
            for _ in 0..count(&mut r)? {
                let m = r.string(max)?;
                let s = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
                if s.is_nan() {
                    return Err(BadPayload::Format);
                }
                z.insert(&m, s);
            }
            Object::ZSet(z)
        }
        _ => return Err(BadPayload::Format),
    };
    r.done()?;
    if obj.is_empty() {
        return Err(BadPayload::Format);
    }
    Ok(Restored::Obj(obj))
}

/// The body of a payload whose version and checksum are right.
fn open(payload: &[u8]) -> Result<Reader<'_>, BadPayload> {
    if payload.len() < 10 {
        return Err(BadPayload::Checksum);
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version > RDB_VERSION || crc64(body) != u64::from_le_bytes(crc.try_into().unwrap()) {
        return Err(BadPayload::Checksum);
    }
    Ok(Reader {
        data: &body[..body.len() - 2],
        at: 0,
    })
}

/// The string value in a `DUMP` payload; `max` bounds its size.
#[cfg(test)]
fn restore_string(payload: &[u8], max: usize) -> Result<Vec<u8>, BadPayload> {
    match restore_value(payload, max)? {
        Restored::Str(v) => Ok(v),
        Restored::Obj(_) => Err(BadPayload::Format),
    }
}

/// `DUMP key`.
#[derive(Debug)]
pub struct Dump {
    key: Bytes,
}

impl Dump {
    pub fn parse(args: &mut Args) -> Result<Dump, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Dump { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            r.value(&self.key, |v| v.map(|(v, _)| dump_value(v)))
        });
        reply(out, result, |out, d| match d {
            Some(d) => kv_proto::write::bulk(out, &d),
            None => out.null(),
        })
    }
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`.
#[derive(Debug)]
pub struct Restore {
    key: Bytes,
    ttl: i64,
    payload: Bytes,
    replace: bool,
    absolute: bool,
}

impl Restore {
    pub fn parse(args: &mut Args) -> Result<Restore, CmdError> {
        let key = args.arg()?;
        let ttl = args.arg_i64()?;
        let payload = args.arg()?;
        let (mut replace, mut absolute, mut idle, mut freq) = (false, false, false, false);
        while let Some(opt) = args.arg_opt() {
            match opt.to_ascii_uppercase().as_slice() {
                b"REPLACE" => replace = true,
                b"ABSTTL" => absolute = true,
                b"IDLETIME" if !freq => {
                    let v = args.arg_opt().ok_or(CmdError::Syntax)?;
                    if parse_i64(&v).ok_or(CmdError::NotInteger)? < 0 {
                        return Err(CmdError::Other("Invalid IDLETIME value, must be >= 0".into()));
                    }
                    idle = true;
                }
                b"FREQ" if !idle => {
                    let v = args.arg_opt().ok_or(CmdError::Syntax)?;
                    if !(0..=255).contains(&parse_i64(&v).ok_or(CmdError::NotInteger)?) {
                        return Err(CmdError::Other("Invalid FREQ value, must be >= 0 and <= 255".into()));
                    }
                    freq = true;
                }
                _ => return Err(CmdError::Syntax),
            }
        }
        if ttl < 0 {
            return Err(CmdError::Other("Invalid TTL value, must be >= 0".into()));
        }
        Ok(Restore {
            key,
            ttl,
            payload,
            replace,
            absolute,
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let max = node.config.resp.proto_max_bulk_len as usize;
        let result = node.write([&self.key[..]], |w| {
            if !self.replace && w.exists(&self.key) {
                return Frame::error("BUSYKEY Target key name already exists.");
            }
            let value = match restore_value(&self.payload, max) {
                Ok(v) => v,
                Err(e) => return Frame::error(e.text()),
            };
            let expires_at = match (self.ttl, self.absolute) {
                (0, _) => None,
                (t, true) => Some(t as u64),
                (t, false) => Some(w.now().saturating_add(t as u64)),
            };
            if expires_at.is_some_and(|at| at <= w.now()) {
                // Already expired: nothing to restore (the old value goes with REPLACE).
                w.del(&self.key);
                return Frame::simple("OK");
            }
            match value {
                Restored::Str(value) => {
                    if !w.fits(self.key.len(), value.len()) {
                        return Frame::error("OOM value too large for this server's --maxmemory");
                    }
                    w.set(&self.key, &value, expires_at);
                }
                Restored::Obj(obj) => w.set_object(&self.key, obj, expires_at),
            }
            Frame::simple("OK")
        });
        reply(out, result, |out, f| out.frame(&f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_jones_check_value() {
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn round_trips_and_reads_redis_payloads() {
        for v in [
            &b"hello"[..],
            b"",
            b"12",
            b"-3000",
            b"123456789",
            b"0012",
            &[7u8; 20000],
        ] {
            assert_eq!(restore_string(&dump_string(v), usize::MAX).unwrap(), v);
        }
        // `DUMP` of `SET k hello` on redis-server 7.0.
        assert_eq!(dump_string(b"hello"), b"\x00\x05hello\n\x00cr\xdfve4 \n");
        assert_eq!(dump_string(b"12345"), b"\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\x08\xb9");
        // LZF: `SET k` 'a' x 100 on redis-server 7.0.
        let lzf = b"\x00\xc3\t@d\x01aa\xe0W\x00\x01aa\n\x00\xe8\xa3\xb5\x07\xb0m\xf2q";
        assert_eq!(restore_string(lzf, usize::MAX), Ok(vec![b'a'; 100]));
        let mut bad = dump_string(b"hello");
        bad[2] ^= 1;
        assert_eq!(restore_string(&bad, usize::MAX), Err(BadPayload::Checksum));
        assert_eq!(restore_string(b"\x00", usize::MAX), Err(BadPayload::Checksum));
        assert_eq!(restore_string(&dump_string(&[1u8; 100]), 10), Err(BadPayload::Format));
    }

    #[test]
    fn collections_round_trip() {
        let mut z = kv_store::object::ZSetObj::default();
        z.insert(b"a", 1.5);
        z.insert(b"b", -2.0);
        let mut h = kv_store::object::HashObj::default();
        h.set(b"f", b"12");
        h.set(b"g", b"text");
        for obj in [Object::ZSet(z), Object::Hash(h)] {
            let packed = obj.to_packed();
            let payload = dump_value(kv_store::Val::Big(&obj));
            let Ok(Restored::Obj(back)) = restore_value(&payload, usize::MAX) else {
                panic!("restores")
            };
            assert_eq!((back.kind(), back.digest()), (obj.kind(), obj.digest()));
            assert_eq!(back.to_packed().len(), packed.len());
        }
    }
}
