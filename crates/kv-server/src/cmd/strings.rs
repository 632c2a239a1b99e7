//! The rest of the string family: GETEX, GETRANGE (SUBSTR), SETRANGE, INCRBYFLOAT, MSETNX,
//! LCS. Like every write here, each is replicated as the resulting value (`Mutation::Set`),
//! never as the operation, so replaying the log converges.
//!
//! These are not on the hot path: replies are built as [`Frame`]s.

use bytes::Bytes;
use kv_proto::{Frame, Out};

use super::args::parse_i64;
use super::{Args, CmdError, reply, reply_written};
use crate::node::{Node, Pending};

const OOM: &str = "OOM value too large for this server's --maxmemory";
const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

fn frame_reply(out: &mut Out, result: Result<(Frame, Option<Pending>), crate::node::Refusal>) -> Option<Pending> {
    reply(out, result, |out, f| out.frame(&f))
}

/// What GETEX does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GetExExpiry {
    Keep,
    Persist,
    /// Relative milliseconds.
    In(i64),
    /// Unix milliseconds.
    At(i64),
}

/// `GETEX key [EX s | PX ms | EXAT unix-s | PXAT unix-ms | PERSIST]`.
#[derive(Debug)]
pub struct GetEx {
    key: Bytes,
    expiry: GetExExpiry,
}

impl GetEx {
    pub fn parse(args: &mut Args) -> Result<GetEx, CmdError> {
        let key = args.arg()?;
        let mut expiry = GetExExpiry::Keep;
        while let Some(opt) = args.arg_opt() {
            let upper = opt.to_ascii_uppercase();
            match upper.as_slice() {
                b"PERSIST" if expiry == GetExExpiry::Keep => expiry = GetExExpiry::Persist,
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry == GetExExpiry::Keep => {
                    let n = args.arg_opt().ok_or(CmdError::Syntax)?;
                    let n = parse_i64(&n).ok_or(CmdError::NotInteger)?;
                    let unit = if upper.starts_with(b"EX") { 1000 } else { 1 };
                    let invalid = || CmdError::InvalidExpire("getex".into());
                    if n <= 0 {
                        return Err(invalid());
                    }
                    let ms = n.checked_mul(unit).ok_or_else(invalid)?;
                    expiry = if upper.ends_with(b"AT") {
                        GetExExpiry::At(ms)
                    } else {
                        GetExExpiry::In(ms)
                    };
                }
                _ => return Err(CmdError::Syntax),
            }
        }
        Ok(GetEx { key, expiry })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| {
            let Some((value, current)) = w.get(&self.key) else {
                return Frame::Null;
            };
            let at = match self.expiry {
                GetExExpiry::Keep => return Frame::Bulk(value),
                GetExExpiry::Persist => None,
                GetExExpiry::In(ms) => match (w.now() as i64).checked_add(ms) {
                    Some(at) => Some(at),
                    None => return Frame::error("ERR invalid expire time in 'getex' command"),
                },
                GetExExpiry::At(at) => Some(at),
            };
            match at {
                None if current.is_some() => {
                    w.expire(&self.key, None);
                }
                None => {}
                Some(at) if at <= w.now() as i64 => {
                    w.del(&self.key);
                }
                Some(at) => {
                    w.expire(&self.key, Some(at as u64));
                }
            }
            Frame::Bulk(value)
        });
        frame_reply(out, result)
    }
}

/// Redis's start/end arithmetic for GETRANGE: negative indices count from the end; the
/// range is clamped to the string. `None` when empty.
pub fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return None;
    }
    let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(len - 1));
    (start <= end).then_some((start as usize, end as usize))
}

/// `GETRANGE key start end` (and its old name `SUBSTR`).
#[derive(Debug)]
pub struct GetRange {
    key: Bytes,
    start: i64,
    end: i64,
}

impl GetRange {
    pub fn parse(args: &mut Args) -> Result<GetRange, CmdError> {
        let key = args.arg()?;
        let start = args.arg_i64()?;
        let end = args.arg_i64()?;
        args.finish()?;
        Ok(GetRange { key, start, end })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let mark = out.len();
        let result = node.read([&self.key[..]], |r| {
            r.get(&self.key, |v| {
                let v = v.unwrap_or_default();
                match clamp_range(self.start, self.end, v.len()) {
                    Some((s, e)) => kv_proto::write::bulk(out, &v[s..=e]),
                    None => kv_proto::write::bulk(out, b""),
                }
            })
        });
        reply_written(out, mark, result)
    }
}

/// `SETRANGE key offset value`: the new length.
#[derive(Debug)]
pub struct SetRange {
    key: Bytes,
    offset: i64,
    value: Bytes,
}

impl SetRange {
    pub fn parse(args: &mut Args) -> Result<SetRange, CmdError> {
        let key = args.arg()?;
        let offset = args.arg_i64()?;
        let value = args.arg()?;
        args.finish()?;
        if offset < 0 {
            return Err(CmdError::Other("offset is out of range".into()));
        }
        Ok(SetRange { key, offset, value })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let max = node.config.resp.proto_max_bulk_len;
        let result = node.write([&self.key[..]], |w| {
            let old = w.get(&self.key);
            if self.value.is_empty() {
                return Frame::Integer(old.map_or(0, |(v, _)| v.len() as i64));
            }
            let offset = self.offset as u64;
            if offset + self.value.len() as u64 > max {
                return Frame::error(TOO_BIG);
            }
            let (old, expires_at) = old.unwrap_or_default();
            let end = offset as usize + self.value.len();
            let len = end.max(old.len());
            if !w.fits(self.key.len(), len) {
                return Frame::error(OOM);
            }
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(&old);
            v.resize(len, 0);
            v[offset as usize..end].copy_from_slice(&self.value);
            w.set(&self.key, &v, expires_at);
            Frame::Integer(len as i64)
        });
        frame_reply(out, result)
    }
}

/// Parses a float as Redis's `string2ld` does: no surrounding spaces, the whole string,
/// not NaN.
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty()
        || s.starts_with(|c: char| c.is_ascii_whitespace())
        || s.ends_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A float as INCRBYFLOAT writes it: plain decimal notation, no exponent, no trailing zeros
/// (Redis's "human friendly" form). Rust's shortest round-trip form is exactly that.
pub fn format_float(v: f64) -> String {
    let s = format!("{v}");
    if s == "-0" { "0".into() } else { s }
}

/// `INCRBYFLOAT key increment`.
#[derive(Debug)]
pub struct IncrByFloat {
    key: Bytes,
    delta: f64,
}

impl IncrByFloat {
    pub fn parse(args: &mut Args) -> Result<IncrByFloat, CmdError> {
        let key = args.arg()?;
        let delta = parse_float(&args.arg()?).ok_or_else(|| CmdError::Other("value is not a valid float".into()))?;
        args.finish()?;
        Ok(IncrByFloat { key, delta })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| {
            let (current, expires_at) = match w.get(&self.key) {
                Some((v, at)) => match parse_float(&v) {
                    Some(n) => (n, at),
                    None => return Frame::error("ERR value is not a valid float"),
                },
                None => (0.0, None),
            };
            let next = current + self.delta;
            if !next.is_finite() {
                return Frame::error("ERR increment would produce NaN or Infinity");
            }
            let text = format_float(next);
            w.set(&self.key, text.as_bytes(), expires_at);
            Frame::bulk(text)
        });
        frame_reply(out, result)
    }
}

/// `MSETNX key value [key value ...]`: sets all only when none exists; 1 or 0.
#[derive(Debug)]
pub struct MSetNx {
    pairs: Vec<Bytes>,
}

impl MSetNx {
    pub fn parse(args: &mut Args) -> Result<MSetNx, CmdError> {
        let pairs = args.rest_at_least_one()?;
        if !pairs.len().is_multiple_of(2) {
            return Err(args.arity());
        }
        Ok(MSetNx { pairs })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let keys = self.pairs.iter().step_by(2).map(|k| &k[..]);
        let result = node.write(keys, |w| {
            if self.pairs.chunks_exact(2).any(|p| w.exists(&p[0])) {
                return Frame::Integer(0);
            }
            if self.pairs.chunks_exact(2).any(|p| !w.fits(p[0].len(), p[1].len())) {
                return Frame::error(OOM);
            }
            for p in self.pairs.chunks_exact(2) {
                w.set(&p[0], &p[1], None);
            }
            Frame::Integer(1)
        });
        frame_reply(out, result)
    }
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`.
#[derive(Debug)]
pub struct Lcs {
    a: Bytes,
    b: Bytes,
    len: bool,
    idx: bool,
    min_match: usize,
    with_match_len: bool,
}

impl Lcs {
    pub fn parse(args: &mut Args) -> Result<Lcs, CmdError> {
        let a = args.arg()?;
        let b = args.arg()?;
        let mut lcs = Lcs {
            a,
            b,
            len: false,
            idx: false,
            min_match: 0,
            with_match_len: false,
        };
        while let Some(opt) = args.arg_opt() {
            match opt.to_ascii_uppercase().as_slice() {
                b"LEN" => lcs.len = true,
                b"IDX" => lcs.idx = true,
                b"WITHMATCHLEN" => lcs.with_match_len = true,
                b"MINMATCHLEN" => {
                    let n = args.arg_opt().ok_or(CmdError::Syntax)?;
                    let n = parse_i64(&n).ok_or(CmdError::NotInteger)?;
                    lcs.min_match = n.max(0) as usize;
                }
                _ => return Err(CmdError::Syntax),
            }
        }
        if lcs.len && lcs.idx {
            return Err(CmdError::Other(
                "If you want both the length and indexes, please just use IDX.".into(),
            ));
        }
        Ok(lcs)
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        // The table is transient memory a client controls through the sizes of its two
        // values: bounded like a bulk string.
        let max = node.config.resp.proto_max_bulk_len;
        let result = node.read([&self.a[..], &self.b[..]], |r| {
            let a = r.get(&self.a, |v| v.map(Bytes::copy_from_slice).unwrap_or_default());
            let b = r.get(&self.b, |v| v.map(Bytes::copy_from_slice).unwrap_or_default());
            let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
            if cells.saturating_mul(4) > max {
                return Frame::error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
            }
            self.compute(&a, &b)
        });
        frame_reply(out, result)
    }

    fn compute(&self, a: &[u8], b: &[u8]) -> Frame {
        let (n, m) = (a.len(), b.len());
        let w = m + 1;
        // table[i][j]: LCS length of a[..i] and b[..j].
        let mut table = vec![0u32; (n + 1) * w];
        for i in 1..=n {
            for j in 1..=m {
                table[i * w + j] = if a[i - 1] == b[j - 1] {
                    table[(i - 1) * w + j - 1] + 1
                } else {
                    table[(i - 1) * w + j].max(table[i * w + j - 1])
                };
            }
        }
        let total = table[n * w + m] as usize;
        if self.len {
            return Frame::Integer(total as i64);
        }
        // Walk back from the end, collecting the common string and, for IDX, the matching
        // ranges (from the last to the first, as Redis reports them).
        let mut common = vec![0u8; total];
        let mut k = total;
        let mut matches = Vec::new();
        let (mut i, mut j) = (n, m);
        // The range being extended backwards: (a_start, a_end, b_start, b_end).
        let mut range: Option<(usize, usize, usize, usize)> = None;
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                common[k - 1] = a[i - 1];
                k -= 1;
                range = match range {
                    None => Some((i - 1, i - 1, j - 1, j - 1)),
                    Some((as_, ae, bs, be)) if as_ == i && bs == j => Some((as_ - 1, ae, bs - 1, be)),
                    Some(r) => {
                        emit = true;
                        Some(r)
                    }
                };
                if let Some((as_, _, bs, _)) = range
                    && (as_ == 0 || bs == 0)
                {
                    emit = true;
                }
                i -= 1;
                j -= 1;
            } else {
                if table[(i - 1) * w + j] > table[i * w + j - 1] {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit |= range.is_some();
            }
            if emit && let Some((as_, ae, bs, be)) = range.take() {
                let len = ae - as_ + 1;
                if self.min_match == 0 || len >= self.min_match {
                    let pair =
                        |s: usize, e: usize| Frame::Array(vec![Frame::Integer(s as i64), Frame::Integer(e as i64)]);
                    let mut item = vec![pair(as_, ae), pair(bs, be)];
                    if self.with_match_len {
                        item.push(Frame::Integer(len as i64));
                    }
                    matches.push(Frame::Array(item));
                }
            }
        }
        if self.idx {
            return Frame::Map(vec![
                (Frame::bulk("matches"), Frame::Array(matches)),
                (Frame::bulk("len"), Frame::Integer(total as i64)),
            ]);
        }
        Frame::Bulk(Bytes::from(common))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(clamp_range(0, -1, 5), Some((0, 4)));
        assert_eq!(clamp_range(-3, -1, 5), Some((2, 4)));
        assert_eq!(clamp_range(-1, -5, 5), None);
        assert_eq!(clamp_range(3, 100, 5), Some((3, 4)));
        assert_eq!(clamp_range(10, 100, 5), None);
        assert_eq!(clamp_range(-100, 0, 5), Some((0, 0)));
        assert_eq!(clamp_range(0, -100, 5), Some((0, 0)));
        assert_eq!(clamp_range(0, 0, 0), None);
    }

    #[test]
    fn floats_read_and_print_like_redis() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"1 "), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b""), None);
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(5.0e3), "5000");
    }

    #[test]
    fn lcs_matches_redis_examples() {
        let lcs = |opts: &[&str]| {
            let mut all = vec!["LCS", "a", "b"];
            all.extend_from_slice(opts);
            let req = kv_proto::Request::new(all.iter().map(|s| Bytes::from(s.to_string())).collect());
            Lcs::parse(&mut Args::new(req)).unwrap()
        };
        let (a, b) = (b"ohmytext".as_slice(), b"mynewtext".as_slice());
        assert_eq!(lcs(&[]).compute(a, b), Frame::bulk("mytext"));
        assert_eq!(lcs(&["LEN"]).compute(a, b), Frame::Integer(6));
        let pair = |s, e| Frame::Array(vec![Frame::Integer(s), Frame::Integer(e)]);
        assert_eq!(
            lcs(&["IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]).compute(a, b),
            Frame::Map(vec![
                (
                    Frame::bulk("matches"),
                    Frame::Array(vec![Frame::Array(vec![pair(4, 7), pair(5, 8), Frame::Integer(4)])])
                ),
                (Frame::bulk("len"), Frame::Integer(6)),
            ])
        );
        assert_eq!(
            lcs(&["IDX"]).compute(a, b),
            Frame::Map(vec![
                (
                    Frame::bulk("matches"),
                    Frame::Array(vec![
                        Frame::Array(vec![pair(4, 7), pair(5, 8)]),
                        Frame::Array(vec![pair(2, 3), pair(0, 1)]),
                    ])
                ),
                (Frame::bulk("len"), Frame::Integer(6)),
            ])
        );
    }
}
