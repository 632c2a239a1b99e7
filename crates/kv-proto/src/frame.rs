//! The RESP2 value.

use bytes::{BufMut, Bytes, BytesMut};

/// One RESP2 value. Replies are decoded into frames; requests use the flatter
/// [`crate::Request`] because a request is always an array of bulk strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-text`; by convention the first word is an error code (`ERR`, `NOTLEADER`, ...).
    Error(Bytes),
    /// `:n`
    Integer(i64),
    /// `$n` followed by `n` bytes.
    Bulk(Bytes),
    /// `$-1`
    Null,
    /// `*n` followed by `n` frames.
    Array(Vec<Frame>),
    /// `*-1`
    NullArray,
}

impl Frame {
    /// A simple string frame from static text.
    pub fn simple(s: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(s.as_bytes()))
    }

    /// An error frame.
    pub fn error(s: impl Into<String>) -> Frame {
        Frame::Error(Bytes::from(s.into()))
    }

    /// Appends the encoding of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => crate::write::simple(out, s),
            Frame::Error(s) => crate::write::error(out, s),
            Frame::Integer(n) => crate::write::integer(out, *n),
            Frame::Bulk(b) => crate::write::bulk(out, b),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                crate::write::array_header(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// The frame's encoding as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
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

    /// Bytes of a simple string or bulk frame.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) => Some(b),
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
        assert_eq!(Frame::error("NOTLEADER s1").error_code(), Some(&b"NOTLEADER"[..]));
    }
}
