//! The RESP value, RESP3's types included, and its encoding for either protocol version.

use bytes::{BufMut, Bytes, BytesMut};

/// Which RESP a connection speaks: RESP2 until a client sends `HELLO 3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The version number `HELLO` reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One RESP value. Replies are decoded into frames; requests use the flatter
/// [`crate::Request`] because a request is always an array of bulk strings.
///
/// The RESP3 types encode as Redis encodes them for a RESP2 client: a map as a flat array of
/// keys and values, a set or push as an array, a double or big number as a bulk string, a
/// boolean as an integer, verbatim text as a bulk string.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-text` (or RESP3's `!len`); by convention the first word is an error code (`ERR`,
    /// `NOTLEADER`, ...).
    Error(Bytes),
    /// `:n`
    Integer(i64),
    /// `$n` followed by `n` bytes.
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// `*n` followed by `n` frames.
    Array(Vec<Frame>),
    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// RESP3 `%n`: `n` key-value pairs.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`.
    Set(Vec<Frame>),
    /// RESP3 `>n`: out-of-band data (pub/sub messages).
    Push(Vec<Frame>),
    /// RESP3 `,`.
    Double(f64),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `(`: an integer beyond 64 bits, in decimal.
    BigNumber(Bytes),
    /// RESP3 `=len\r\nfmt:text`: text with a three-letter format (`txt`, `mkd`).
    Verbatim { format: [u8; 3], text: Bytes },
    /// A reply already encoded for the client it goes to, written as is: a server's
    /// aggregate reply that a gate relays unread ([`crate::parse_reply_relayed`]).
    Relayed(Bytes),
}

impl Frame {
    /// A simple string frame from static text.
    pub fn simple(s: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(s.as_bytes()))
    }

    /// A `HELP` subcommand's reply: its lines as simple strings.
    pub fn help(lines: &[&'static str]) -> Frame {
        Frame::Array(lines.iter().map(|l| Frame::simple(l)).collect())
    }

    /// Redis's error for an unknown subcommand of `command` (`SLOWLOG`, `LATENCY` …), or a
    /// known one with the wrong number of arguments.
    pub fn unknown_subcommand(command: &str, sub: &[u8]) -> Frame {
        Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try {command} HELP.",
            String::from_utf8_lossy(sub)
        ))
    }

    /// An error frame.
    pub fn error(s: impl Into<String>) -> Frame {
        Frame::Error(Bytes::from(s.into()))
    }

    /// A bulk frame.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// Plain text (`INFO`, `CLIENT INFO`): verbatim `txt` in RESP3, bulk in RESP2.
    pub fn text(s: impl Into<Bytes>) -> Frame {
        Frame::Verbatim {
            format: *b"txt",
            text: s.into(),
        }
    }

    /// Appends the RESP2 encoding of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_as(out, Protocol::Resp2)
    }

    /// Appends the encoding of this frame for a `proto` client to `out`.
    pub fn encode_as(&self, out: &mut BytesMut, proto: Protocol) {
        use crate::write;
        let resp3 = proto == Protocol::Resp3;
        match self {
            Frame::Simple(s) => write::simple(out, s),
            Frame::Error(s) => write::error(out, s),
            Frame::Integer(n) => write::integer(out, *n),
            Frame::Bulk(b) => write::bulk(out, b),
            Frame::Null if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                write::array_header(out, items.len());
                items.iter().for_each(|i| i.encode_as(out, proto));
            }
            Frame::Set(items) | Frame::Push(items) => {
                let kind = match (self, resp3) {
                    (_, false) => b'*',
                    (Frame::Set(_), true) => b'~',
                    _ => b'>',
                };
                write::header(out, kind, items.len());
                items.iter().for_each(|i| i.encode_as(out, proto));
            }
            Frame::Map(pairs) => {
                if resp3 {
                    write::header(out, b'%', pairs.len());
                } else {
                    write::array_header(out, pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode_as(out, proto);
                    v.encode_as(out, proto);
                }
            }
            Frame::Double(d) => write::double(out, *d, proto),
            Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Boolean(b) => write::integer(out, *b as i64),
            Frame::BigNumber(n) if resp3 => {
                out.put_u8(b'(');
                out.put_slice(n);
                out.put_slice(b"\r\n");
            }
            Frame::BigNumber(n) => write::bulk(out, n),
            Frame::Verbatim { format, text } if resp3 => {
                write::header(out, b'=', text.len() + 4);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(b"\r\n");
            }
            Frame::Verbatim { text, .. } => write::bulk(out, text),
            Frame::Relayed(bytes) => out.put_slice(bytes),
        }
    }

    /// The frame's RESP2 encoding as bytes.
    pub fn to_bytes(&self) -> Bytes {
        self.to_bytes_as(Protocol::Resp2)
    }

    /// The frame's encoding for `proto` as bytes.
    pub fn to_bytes_as(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_as(&mut out, proto);
        out.freeze()
    }

    /// The error text when this is an error frame.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The first word of an error frame (`ERR`, `NOTLEADER`, `TRYAGAIN`, ...).
    pub fn error_code(&self) -> Option<&[u8]> {
        self.as_error().map(|e| e.split(|b| *b == b' ').next().unwrap_or(e))
    }

    /// Bytes of a simple string, bulk or verbatim frame.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// The value of an integer frame.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// True for a RESP2 or RESP3 null.
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::Null | Frame::NullArray)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_kind() {
        let f = Frame::Array(vec![
            Frame::simple("OK"),
            Frame::error("ERR bad"),
            Frame::Integer(-7),
            Frame::Bulk(Bytes::from_static(b"a\r\nb")),
            Frame::Null,
            Frame::NullArray,
        ]);
        assert_eq!(
            &f.to_bytes()[..],
            b"*6\r\n+OK\r\n-ERR bad\r\n:-7\r\n$4\r\na\r\nb\r\n$-1\r\n*-1\r\n"
        );
        assert_eq!(
            &f.to_bytes_as(Protocol::Resp3)[..],
            b"*6\r\n+OK\r\n-ERR bad\r\n:-7\r\n$4\r\na\r\nb\r\n_\r\n_\r\n"
        );
        assert_eq!(Frame::error("NOTLEADER s1").error_code(), Some(&b"NOTLEADER"[..]));
    }

    /// Byte for byte what redis-server 7.0.15 sends each protocol (captured from it).
    #[test]
    fn resp3_types_and_their_resp2_forms_match_redis() {
        let cases: &[(Frame, &[u8], &[u8])] = &[
            (
                Frame::Map(vec![(Frame::bulk("maxmemory"), Frame::bulk("0"))]),
                b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
                b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
            ),
            (Frame::Set(vec![]), b"~0\r\n", b"*0\r\n"),
            (
                Frame::Set(vec![Frame::simple("readonly"), Frame::simple("fast")]),
                b"~2\r\n+readonly\r\n+fast\r\n",
                b"*2\r\n+readonly\r\n+fast\r\n",
            ),
            (
                Frame::Double(1.1),
                b",1.1000000000000001\r\n",
                b"$18\r\n1.1000000000000001\r\n",
            ),
            (Frame::Double(3.0), b",3\r\n", b"$1\r\n3\r\n"),
            (Frame::Double(f64::INFINITY), b",inf\r\n", b"$3\r\ninf\r\n"),
            (Frame::Boolean(true), b"#t\r\n", b":1\r\n"),
            (Frame::Boolean(false), b"#f\r\n", b":0\r\n"),
            (
                Frame::BigNumber(Bytes::from_static(b"3492890328409238509324850943850943825024385")),
                b"(3492890328409238509324850943850943825024385\r\n",
                b"$43\r\n3492890328409238509324850943850943825024385\r\n",
            ),
            (
                Frame::text("# Keyspace\r\n"),
                b"=16\r\ntxt:# Keyspace\r\n\r\n",
                b"$12\r\n# Keyspace\r\n\r\n",
            ),
            (
                Frame::Push(vec![Frame::bulk("message"), Frame::bulk("c"), Frame::bulk("m")]),
                b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
                b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
            ),
        ];
        for (frame, resp3, resp2) in cases {
            assert_eq!(&frame.to_bytes_as(Protocol::Resp3)[..], *resp3, "{frame:?} in RESP3");
            assert_eq!(&frame.to_bytes()[..], *resp2, "{frame:?} in RESP2");
        }
    }
}
