//! Reply and command writers that append straight into an output buffer, so the hot path
//! builds no intermediate [`crate::Frame`] values.

use bytes::{BufMut, Bytes, BytesMut};

/// `+text\r\n`
pub fn simple(out: &mut BytesMut, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// `-text\r\n`. CR and LF inside `s` would break framing, so they become spaces.
pub fn error(out: &mut BytesMut, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(b'-');
    for &b in s {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// `:n\r\n`
pub fn integer(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// `$len\r\nbytes\r\n`
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    out.reserve(b.len() + 16);
    out.put_u8(b'$');
    put_decimal(out, b.len() as i64);
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// `$-1\r\n`
pub fn null(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// `*n\r\n`
pub fn array_header(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    put_decimal(out, n as i64);
    out.put_slice(b"\r\n");
}

/// `+OK\r\n`
pub fn ok(out: &mut BytesMut) {
    out.put_slice(b"+OK\r\n");
}

fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut buf = [0u8; 20];
    let s = format_decimal(n, &mut buf);
    out.put_slice(s);
}

/// Formats `n` into `buf` without allocating.
pub fn format_decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    format_digits(n < 0, n.unsigned_abs(), buf)
}

/// Formats `n` into `buf` without allocating.
pub fn format_unsigned(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    format_digits(false, n, buf)
}

fn format_digits(negative: bool, mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Builds one command (a RESP array of bulk strings) with a known argument count.
///
/// ```
/// let cmd = kv_proto::CommandBuilder::new(2).arg(b"GET").arg(b"k").finish();
/// assert_eq!(&cmd[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
/// ```
pub struct CommandBuilder {
    out: BytesMut,
}

impl CommandBuilder {
    /// Starts a command of `argc` arguments.
    pub fn new(argc: usize) -> Self {
        Self::with_payload(argc, 0)
    }

    /// Starts a command of `argc` arguments whose bulk contents total about `payload` bytes,
    /// so that the buffer is allocated once.
    pub fn with_payload(argc: usize, payload: usize) -> Self {
        let mut out = BytesMut::with_capacity(16 + argc * 16 + payload);
        array_header(&mut out, argc);
        CommandBuilder { out }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: &[u8]) -> Self {
        bulk(&mut self.out, a);
        self
    }

    /// Appends an integer argument (as a bulk string, as Redis clients do).
    pub fn int(mut self, n: i64) -> Self {
        let mut buf = [0u8; 20];
        bulk(&mut self.out, format_decimal(n, &mut buf));
        self
    }

    /// Appends an unsigned integer argument.
    pub fn uint(mut self, n: u64) -> Self {
        let mut buf = [0u8; 20];
        bulk(&mut self.out, format_unsigned(n, &mut buf));
        self
    }

    /// The encoded command.
    pub fn finish(self) -> Bytes {
        self.out.freeze()
    }
}

/// Encodes a whole command from its arguments.
pub fn command<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let args: Vec<&[u8]> = args.into_iter().collect();
    let mut b = CommandBuilder::new(args.len());
    for a in args {
        b = b.arg(a);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut buf = [0u8; 20];
        assert_eq!(format_decimal(0, &mut buf), b"0");
        assert_eq!(format_decimal(-12, &mut buf), b"-12");
        assert_eq!(format_decimal(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(format_decimal(i64::MAX, &mut buf), b"9223372036854775807");
    }

    #[test]
    fn errors_cannot_break_framing() {
        let mut out = BytesMut::new();
        error(&mut out, b"ERR a\r\nb");
        assert_eq!(&out[..], b"-ERR a  b\r\n");
    }
}
