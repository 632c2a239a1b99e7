//! The client-side reply parser: any RESP2 or RESP3 value (attributes aside), bounded by
//! [`Limits`].
//!
//! Replies are checked for completeness first (no allocation), then built as zero-copy
//! slices of one frozen buffer.

use bytes::{Bytes, BytesMut};

use crate::limits::MAX_HEADER_LINE;
use crate::request::parse_int;
use crate::{Frame, Limits, ProtocolError};

/// Deepest nesting of arrays accepted in a reply.
const MAX_DEPTH: usize = 16;

/// Parses and consumes one complete reply from the front of `buf`; `Ok(None)` when more
/// bytes are needed (nothing is consumed then).
pub fn parse_reply(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    // Every write's reply: taken without a line search or a shared slice of the buffer.
    if buf.starts_with(b"+OK\r\n") {
        bytes::Buf::advance(buf, 5);
        return Ok(Some(Frame::simple("OK")));
    }
    let Some(end) = check(buf, 0, 0, limits)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(end).freeze();
    let (frame, used) = build(&bytes, 0);
    debug_assert_eq!(used, end);
    Ok(Some(frame))
}

/// [`parse_reply`] for a reply that is relayed unread (a gate passing a server's reply to
/// its client): a non-empty aggregate (array, map, set) comes back as its encoded bytes,
/// [`Frame::Relayed`], without building a frame per element. Profiled relaying `LRANGE 0
/// 599`: building and re-encoding the elements was over half of the gate's time. Other
/// replies (errors, nulls, scalars) are parsed, so callers still act on them.
pub fn parse_reply_relayed(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let aggregate = matches!(buf.first(), Some(b'*' | b'%' | b'~')) && !buf[1..].starts_with(b"-1\r\n");
    if !aggregate {
        return parse_reply(buf, limits);
    }
    let Some(end) = check(buf, 0, 0, limits)? else {
        return Ok(None);
    };
    Ok(Some(Frame::Relayed(buf.split_to(end).freeze())))
}

fn line(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_HEADER_LINE + 1)];
    // A byte search, not `windows(2)`: this runs once per element of every reply (profiled:
    // the slice compares were most of the check's time relaying long arrays).
    let mut at = 0;
    let found = loop {
        match window[at..].iter().position(|&b| b == b'\n') {
            Some(i) if at + i > 0 && window[at + i - 1] == b'\r' => break Some(at + i - 1),
            Some(i) => at += i + 1,
            None => break None,
        }
    };
    match found {
        Some(i) => Ok(Some(from + i)),
        None if buf.len() > from + MAX_HEADER_LINE => Err(ProtocolError::HeaderTooLong),
        None => Ok(None),
    }
}

/// Returns the end offset of the frame starting at `pos` when it is complete.
fn check(buf: &[u8], pos: usize, depth: usize, limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    let header = &buf[pos + 1..eol];
    let after = eol + 2;
    match kind {
        b'+' | b'-' => Ok(Some(after)),
        b':' => parse_int(header)
            .map(|_| Some(after))
            .ok_or(ProtocolError::InvalidInteger),
        b'_' if header.is_empty() => Ok(Some(after)),
        b'#' if header == b"t" || header == b"f" => Ok(Some(after)),
        b',' => parse_double(header)
            .map(|_| Some(after))
            .ok_or(ProtocolError::InvalidInteger),
        b'(' if big_number(header) => Ok(Some(after)),
        b'$' | b'=' | b'!' => {
            let n = parse_int(header).ok_or(ProtocolError::InvalidBulkLength)?;
            if n == -1 && kind == b'$' {
                return Ok(Some(after));
            }
            if kind == b'=' && n < 4 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            if n < 0 || n > limits.max_bulk_len as i64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let end = after + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            Ok(Some(end + 2))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = parse_int(header).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if n == -1 && kind == b'*' {
                return Ok(Some(after));
            }
            // A map's limit counts its keys and values, as its RESP2 form (a flat array) does:
            // what one protocol accepts, the other does too.
            let elements = if kind == b'%' { n.saturating_mul(2) } else { n };
            if n < 0 || elements > limits.max_multibulk_len as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if depth >= MAX_DEPTH {
                return Err(ProtocolError::TooDeep);
            }
            let mut p = after;
            for _ in 0..elements {
                match check(buf, p, depth + 1, limits)? {
                    Some(next) => p = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        other => Err(ProtocolError::UnknownType(other as char)),
    }
}

/// Builds the frame at `pos` of a buffer that [`check`] accepted.
fn build(bytes: &Bytes, pos: usize) -> (Frame, usize) {
    let eol = line(bytes, pos + 1).ok().flatten().expect("checked");
    let header = &bytes[pos + 1..eol];
    let after = eol + 2;
    match bytes[pos] {
        b'+' => (Frame::Simple(bytes.slice(pos + 1..eol)), after),
        b'-' => (Frame::Error(bytes.slice(pos + 1..eol)), after),
        b':' => (Frame::Integer(parse_int(header).expect("checked")), after),
        b'_' => (Frame::Null, after),
        b'#' => (Frame::Boolean(header == b"t"), after),
        b',' => (Frame::Double(parse_double(header).expect("checked")), after),
        b'(' => (Frame::BigNumber(bytes.slice(pos + 1..eol)), after),
        kind @ (b'$' | b'=' | b'!') => match parse_int(header).expect("checked") {
            -1 => (Frame::Null, after),
            n => {
                let end = after + n as usize;
                let frame = match kind {
                    b'$' => Frame::Bulk(bytes.slice(after..end)),
                    b'!' => Frame::Error(bytes.slice(after..end)),
                    _ => Frame::Verbatim {
                        format: bytes[after..after + 3].try_into().expect("checked length"),
                        text: bytes.slice(after + 4..end),
                    },
                };
                (frame, end + 2)
            }
        },
        b'%' => {
            let n = parse_int(header).expect("checked") as usize;
            // `2n` elements were all seen by `check`, so this capacity is backed by bytes.
            let mut pairs = Vec::with_capacity(n);
            let mut p = after;
            for _ in 0..n {
                let (k, next) = build(bytes, p);
                let (v, next) = build(bytes, next);
                pairs.push((k, v));
                p = next;
            }
            (Frame::Map(pairs), p)
        }
        kind => match parse_int(header).expect("checked") {
            -1 => (Frame::NullArray, after),
            n => {
                // `n` elements were all seen by `check`, so this capacity is backed by bytes.
                let mut items = Vec::with_capacity(n as usize);
                let mut p = after;
                for _ in 0..n {
                    let (f, next) = build(bytes, p);
                    items.push(f);
                    p = next;
                }
                let frame = match kind {
                    b'~' => Frame::Set(items),
                    b'>' => Frame::Push(items),
                    _ => Frame::Array(items),
                };
                (frame, p)
            }
        },
    }
}

/// A RESP3 double: decimal or scientific, or `inf`, `-inf`, `nan`.
fn parse_double(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => s.parse().ok(),
        _ => None,
    }
}

/// A RESP3 big number: an optional sign, then digits.
fn big_number(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_aggregate_is_its_bytes_and_the_rest_is_parsed() {
        let array = Frame::Array(vec![Frame::bulk("a"), Frame::Integer(2)]).to_bytes();
        let mut buf = BytesMut::new();
        for part in [
            &array[..],
            b"-MOVED 1 h:1\r\n",
            b"*-1\r\n",
            b"%1\r\n+k\r\n:1\r\n",
            b"$1\r\nx\r\n",
        ] {
            buf.extend_from_slice(part);
        }
        let mut got = Vec::new();
        // Fed a byte at a time, as a slow server's reply arrives: nothing is consumed early.
        let mut partial = BytesMut::new();
        for b in buf.iter() {
            partial.extend_from_slice(&[*b]);
            while let Some(f) = parse_reply_relayed(&mut partial, &Limits::REDIS).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Relayed(array),
                Frame::error("MOVED 1 h:1"),
                Frame::NullArray,
                Frame::Relayed(Bytes::from_static(b"%1\r\n+k\r\n:1\r\n")),
                Frame::bulk("x"),
            ]
        );
        assert!(partial.is_empty());
        let mut bad = BytesMut::from(&b"*1\r\n$2\r\nabXY"[..]);
        assert!(
            parse_reply_relayed(&mut bad, &Limits::REDIS).is_err(),
            "checked, even unread"
        );
    }

    #[test]
    fn round_trips_nested_frames_at_every_split() {
        let frame = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"a\r\n")),
            Frame::Array(vec![Frame::Integer(3), Frame::Null, Frame::simple("OK")]),
            Frame::error("ERR x"),
            Frame::NullArray,
        ]);
        let bytes = frame.to_bytes();
        for split in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..split]);
            assert_eq!(parse_reply(&mut buf, &Limits::REDIS).unwrap(), None);
            buf.extend_from_slice(&bytes[split..]);
            assert_eq!(parse_reply(&mut buf, &Limits::REDIS).unwrap(), Some(frame.clone()));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn round_trips_resp3_at_every_split() {
        let frame = Frame::Map(vec![
            (
                Frame::bulk("set"),
                Frame::Set(vec![Frame::simple("a"), Frame::Integer(1)]),
            ),
            (Frame::bulk("double"), Frame::Double(1.5)),
            (Frame::bulk("bool"), Frame::Boolean(true)),
            (
                Frame::bulk("big"),
                Frame::BigNumber(Bytes::from_static(b"-123456789012345678901234")),
            ),
            (Frame::bulk("text"), Frame::text("a\r\nb")),
            (Frame::bulk("push"), Frame::Push(vec![Frame::Boolean(false)])),
        ]);
        let bytes = frame.to_bytes_as(crate::Protocol::Resp3);
        for split in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..split]);
            assert_eq!(parse_reply(&mut buf, &Limits::REDIS).unwrap(), None);
            buf.extend_from_slice(&bytes[split..]);
            assert_eq!(parse_reply(&mut buf, &Limits::REDIS).unwrap(), Some(frame.clone()));
        }
        let run = |b: &[u8]| parse_reply(&mut BytesMut::from(b), &Limits::REDIS);
        assert_eq!(run(b"_\r\n"), Ok(Some(Frame::Null)));
        assert_eq!(run(b"!7\r\nERR bad\r\n"), Ok(Some(Frame::error("ERR bad"))));
        assert_eq!(run(b",inf\r\n"), Ok(Some(Frame::Double(f64::INFINITY))));
        assert!(run(b"#x\r\n").is_err() && run(b"(12a\r\n").is_err() && run(b",1x\r\n").is_err());
        assert!(run(b"=2\r\nab\r\n").is_err(), "verbatim text needs its format");
        // Found by fuzzing: a map counts keys and values against the limit, as its RESP2 form.
        let small = Limits {
            max_multibulk_len: 2,
            ..Limits::REDIS
        };
        let map = |n: usize| {
            let mut b = format!("%{n}\r\n").into_bytes();
            for _ in 0..n * 2 {
                b.extend_from_slice(b":1\r\n");
            }
            parse_reply(&mut BytesMut::from(&b[..]), &small)
        };
        assert!(map(1).is_ok());
        assert_eq!(map(2), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn rejects_garbage_and_over_limit() {
        let small = Limits {
            max_bulk_len: 4,
            max_multibulk_len: 2,
            ..Limits::REDIS
        };
        let run = |b: &[u8]| parse_reply(&mut BytesMut::from(b), &small);
        assert_eq!(run(b"?x\r\n"), Err(ProtocolError::UnknownType('?')));
        assert_eq!(run(b"$5\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(run(b"*3\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(run(b":1x\r\n"), Err(ProtocolError::InvalidInteger));
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(
            parse_reply(&mut BytesMut::from(&deep[..]), &Limits::REDIS),
            Err(ProtocolError::TooDeep)
        );
    }
}
