//! Reply and command writers that append straight into an output buffer, so the hot path
//! builds no intermediate [`crate::Frame`] values.

use std::ops::{Deref, DerefMut};

use bytes::{BufMut, Bytes, BytesMut};

use crate::Protocol;

/// A connection's output buffer and the protocol its client negotiated. The writers above
/// take it as a `BytesMut` (it derefs to one); what differs between RESP2 and RESP3 is
/// written through its methods, so each reply is written once, in the client's protocol.
#[derive(Debug, Default)]
pub struct Out {
    buf: BytesMut,
    pub proto: Protocol,
    /// The client speaks Redis Cluster's protocol (a kvserver's client port): a key served
    /// elsewhere is answered `MOVED <slot> <host:port>`, multi-key commands must stay in one
    /// slot. False for peers (gates), which route by shard.
    pub cluster_client: bool,
    /// Set for a client on a TLS port: the addresses it is redirected to are TLS ones.
    pub tls_addrs: Option<std::sync::Arc<crate::addrs::ClientAddrs>>,
}

impl Out {
    /// An empty RESP2 buffer of `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Out {
        Out {
            buf: BytesMut::with_capacity(capacity),
            proto: Protocol::Resp2,
            cluster_client: false,
            tls_addrs: None,
        }
    }

    /// `plain`, a server's client address, as this client should reach it.
    pub fn client_addr(&self, plain: &str) -> String {
        match &self.tls_addrs {
            Some(a) => a.tls(plain),
            None => plain.to_string(),
        }
    }

    /// A `MOVED`/`ASK` text with its address as this client should reach it.
    pub fn redirect_text(&self, text: String) -> String {
        match &self.tls_addrs {
            Some(a) => a.tls_redirect(&text),
            None => text,
        }
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.buf.put_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.buf.put_slice(b"_\r\n"),
        }
    }

    /// The header of a map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => header(&mut self.buf, b'*', n * 2),
            Protocol::Resp3 => header(&mut self.buf, b'%', n),
        }
    }

    /// The header of a set of `n` members: `~n` in RESP3, an array in RESP2.
    pub fn set(&mut self, n: usize) {
        let kind = if self.proto == Protocol::Resp3 { b'~' } else { b'*' };
        header(&mut self.buf, kind, n);
    }

    /// A double, as Redis writes it for this protocol.
    pub fn double(&mut self, d: f64) {
        double(&mut self.buf, d, self.proto)
    }

    /// A frame, in this connection's protocol.
    pub fn frame(&mut self, f: &crate::Frame) {
        f.encode_as(&mut self.buf, self.proto)
    }
}

impl Deref for Out {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

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

/// `$-1\r\n`: RESP2's null (see [`Out::null`] for a connection's own).
pub fn null(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// `*n\r\n`
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n);
}

/// `<kind>n\r\n`: the header of an aggregate (`*`, `%`, `~`, `>`) or a length-prefixed
/// value (`$`, `=`).
pub fn header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    put_decimal(out, n as i64);
    out.put_slice(b"\r\n");
}

/// A double: `,d` in RESP3, a bulk string in RESP2, written as Redis 7.0 writes it.
pub fn double(out: &mut BytesMut, d: f64, proto: Protocol) {
    let mut buf = [0u8; 32];
    let text = format_double(d, &mut buf);
    match proto {
        Protocol::Resp3 => {
            out.put_u8(b',');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Protocol::Resp2 => bulk(out, text),
    }
}

/// Formats `d` as C's `printf("%.17g")` does (what Redis 7.0 replies with: 17 significant
/// digits, enough to read back the same double), into `buf`; `inf`, `-inf` and `nan` as Redis
/// spells them.
pub fn format_double(d: f64, buf: &mut [u8; 32]) -> &[u8] {
    use std::io::Write as _;
    let len = {
        let mut w = &mut buf[..];
        let before = w.len();
        let _ = if d.is_nan() {
            w.write_all(b"nan")
        } else if d.is_infinite() {
            w.write_all(if d > 0.0 { b"inf" } else { b"-inf" })
        } else {
            // `{:.16e}`: 17 significant digits, rounded exactly, as glibc does.
            let sci = format!("{d:.16e}");
            let (mantissa, exp) = sci.split_once('e').expect("an exponent");
            let exp: i32 = exp.parse().expect("a decimal exponent");
            if !(-4..17).contains(&exp) {
                let mantissa = trim_fraction(mantissa);
                write!(
                    w,
                    "{mantissa}e{}{:02}",
                    if exp < 0 { '-' } else { '+' },
                    exp.unsigned_abs()
                )
            } else {
                let fixed = format!("{d:.*}", (16 - exp) as usize);
                w.write_all(trim_fraction(&fixed).as_bytes())
            }
        };
        before - w.len()
    };
    &buf[..len]
}

/// `1.2300` → `1.23`, `4.000` → `4` (what `%g` drops).
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
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

    /// Expected strings from redis-server 7.0.15's replies (`ZSCORE` of these scores) and
    /// from C's `printf("%.17g")`.
    #[test]
    fn doubles_as_redis_writes_them() {
        let cases: &[(f64, &str)] = &[
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (1e300, "1.0000000000000001e+300"),
            (3.0, "3"),
            (1.5e-7, "1.4999999999999999e-07"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (123456789.125, "123456789.125"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "4.9406564584124654e-324"),
            (-0.0, "-0"),
        ];
        let mut buf = [0u8; 32];
        for (d, want) in cases {
            assert_eq!(std::str::from_utf8(format_double(*d, &mut buf)).unwrap(), *want, "{d}");
        }
    }

    #[test]
    fn out_writes_in_its_protocol() {
        let mut out = Out::default();
        out.null();
        out.map(1);
        out.set(2);
        out.proto = Protocol::Resp3;
        out.null();
        out.map(1);
        out.set(2);
        assert_eq!(&out[..], b"$-1\r\n*2\r\n*2\r\n_\r\n%1\r\n~2\r\n");
    }

    #[test]
    fn errors_cannot_break_framing() {
        let mut out = BytesMut::new();
        error(&mut out, b"ERR a\r\nb");
        assert_eq!(&out[..], b"-ERR a  b\r\n");
    }
}
