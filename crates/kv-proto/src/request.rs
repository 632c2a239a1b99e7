//! The server-side request parser.
//!
//! A request is an array of bulk strings (what every Redis client sends) or an inline line
//! (what a human types into telnet). The parser is resumable: when a request is incomplete it
//! remembers how far it got, so a large request arriving in many reads costs one pass over its
//! headers, not one pass per read. Elements are returned as zero-copy slices of the input.

use bytes::{Bytes, BytesMut};

use crate::limits::MAX_HEADER_LINE;
use crate::{Limits, ProtocolError};

/// One parsed request: the command name followed by its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    args: Vec<Bytes>,
    /// The request's own bytes (for a multibulk request, its exact encoding).
    raw: Bytes,
}

impl Request {
    /// A request from its arguments (used by tests and internal callers).
    pub fn new(args: Vec<Bytes>) -> Request {
        let raw = crate::write::command(args.iter().map(|a| &a[..]));
        Request { args, raw }
    }

    /// The bytes this request was parsed from: a follower keeps the leader's log entries
    /// in its own backlog without re-encoding them.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// True when there are no arguments at all.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// All arguments, the command name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// Takes the arguments.
    pub fn into_args(self) -> Vec<Bytes> {
        self.args
    }

    /// The command name as sent.
    pub fn name(&self) -> &[u8] {
        self.args.first().map(|b| &b[..]).unwrap_or(b"")
    }
}

#[derive(Debug)]
enum State {
    /// Between requests.
    Start,
    /// Inside `*<expected>`: `RequestParser::ranges` holds the element ranges seen so far and
    /// `pos` is where the next element's `$` header starts. Ranges index the (unconsumed)
    /// input buffer.
    MultiBulk { expected: usize, pos: usize },
}

/// Parses requests from a connection's input buffer. One parser per connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Element ranges of the request being parsed; reused from request to request.
    ranges: Vec<(usize, usize)>,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Start,
            ranges: Vec::new(),
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses and consumes the next complete request at the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed: append them to `buf` and call again. The
    /// parser keeps its progress in between, so the caller must not consume from `buf`
    /// itself. An `Err` means the stream is malformed or over a limit and the connection
    /// should be closed after the error is reported.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let result = match self.state {
                State::Start => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if buf[0] == b'*' {
                        self.start_multibulk(buf)?
                    } else {
                        self.parse_inline(buf)?
                    }
                }
                State::MultiBulk { .. } => self.continue_multibulk(buf)?,
            };
            match result {
                Step::Done(req) => return Ok(Some(req)),
                Step::Skip => continue,
                Step::NeedMore => {
                    if buf.len() > self.limits.max_query_buffer {
                        return Err(ProtocolError::QueryBufferExceeded(self.limits.max_query_buffer));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn start_multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let (n, line_end) = match plain_header(buf, 1) {
            Some((n, line_end)) => (n as i64, line_end),
            None => {
                let Some(line_end) = find_crlf(buf, 1, MAX_HEADER_LINE)? else {
                    return Ok(Step::NeedMore);
                };
                let n = parse_int(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                (n, line_end)
            }
        };
        if n > self.limits.max_multibulk_len as i64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if n <= 0 {
            // Redis ignores empty (and null) arrays between commands.
            let _ = buf.split_to(line_end + 2);
            return Ok(Step::Skip);
        }
        // `ranges` grows with the elements that arrive, never with the declared count.
        self.ranges.clear();
        self.state = State::MultiBulk {
            expected: n as usize,
            pos: line_end + 2,
        };
        self.continue_multibulk(buf)
    }

    fn continue_multibulk(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let State::MultiBulk { expected, pos } = &mut self.state else {
            unreachable!("continue_multibulk outside a multibulk");
        };
        let args = &mut self.ranges;
        while args.len() < *expected {
            if *pos >= buf.len() {
                return Ok(Step::NeedMore);
            }
            if buf[*pos] != b'$' {
                return Err(ProtocolError::ExpectedBulk(buf[*pos] as char));
            }
            let (len, line_end) = match plain_header(buf, *pos + 1) {
                Some((len, line_end)) => (len as i64, line_end),
                None => {
                    let Some(line_end) = find_crlf(buf, *pos + 1, MAX_HEADER_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let len = parse_int(&buf[*pos + 1..line_end]).ok_or(ProtocolError::InvalidBulkLength)?;
                    (len, line_end)
                }
            };
            if len < 0 || len > self.limits.max_bulk_len as i64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let start = line_end + 2;
            let end = start + len as usize;
            if buf.len() < end + 2 {
                return Ok(Step::NeedMore);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            args.push((start, end));
            *pos = end + 2;
        }
        let total = *pos;
        self.state = State::Start;
        let frame = buf.split_to(total).freeze();
        let args = self.ranges.iter().map(|&(s, e)| frame.slice(s..e)).collect();
        Ok(Step::Done(Request { args, raw: frame }))
    }

    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let limit = self.limits.max_inline_len;
        let Some(nl) = buf.iter().take(limit + 1).position(|b| *b == b'\n') else {
            if buf.len() > limit {
                return Err(ProtocolError::InlineTooLong);
            }
            return Ok(Step::NeedMore);
        };
        let raw = buf.split_to(nl + 1).freeze();
        let mut line = &raw[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let args = split_inline(line)?;
        if args.is_empty() {
            return Ok(Step::Skip);
        }
        if looks_like_http(&args) {
            return Err(ProtocolError::HttpOnRespPort);
        }
        Ok(Step::Done(Request {
            args: args.into_iter().map(Bytes::from).collect(),
            raw,
        }))
    }
}

enum Step {
    Done(Request),
    Skip,
    NeedMore,
}

/// The count in a header line whose digits start at `from`, and where its CR is, when the
/// line is complete and plain (1 to 18 digits, then CRLF): what clients send, read in one
/// pass. Anything else (a sign, a partial or malformed line) is `None`, and the caller takes
/// the general path ([`find_crlf`], [`parse_int`]), which tells those apart; for a plain line
/// both give the same answer. Each header was scanned twice before (for its CR, then for its
/// digits): this is about a tenth of a SET's parse in the gate and in the kvserver.
#[inline]
fn plain_header(buf: &[u8], from: usize) -> Option<(u64, usize)> {
    let digits = buf.get(from..)?;
    let mut value: u64 = 0;
    let mut n = 0;
    // At most 18 digits: no overflow, no check in the loop.
    while n < digits.len() && n <= 18 {
        let d = digits[n].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = value * 10 + d as u64;
        n += 1;
    }
    match digits.get(n..n + 2) {
        Some(b"\r\n") if (1..=18).contains(&n) => Some((value, from + n)),
        _ => None,
    }
}

/// Finds the CRLF that ends the header line starting at `from`. A line longer than `max`
/// is an error rather than a reason to keep buffering.
fn find_crlf(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from.min(buf.len())..buf.len().min(from + max + 1)];
    match window.iter().position(|b| *b == b'\r') {
        Some(i) => {
            let cr = from + i;
            if cr + 1 >= buf.len() {
                Ok(None)
            } else if buf[cr + 1] == b'\n' {
                Ok(Some(cr))
            } else {
                Err(ProtocolError::MissingCrlf)
            }
        }
        None if buf.len() > from + max => Err(ProtocolError::HeaderTooLong),
        None => Ok(None),
    }
}

/// Parses a decimal integer the way RESP writes it: optional `-`, digits, nothing else.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if negative { -v } else { v })
}

/// Splits an inline command line into arguments, honouring Redis-style quoting:
/// `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes and `'...'` with `\'`.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let cur = match line[i] {
            q @ (b'"' | b'\'') => {
                let (word, next) = quoted(line, i + 1, q)?;
                i = next;
                word
            }
            _ => {
                let start = i;
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    i += 1;
                }
                line[start..i].to_vec()
            }
        };
        args.push(cur);
    }
    Ok(args)
}

/// Reads a quoted word starting after its opening quote `q` at `i`; returns the word and the
/// index after the closing quote. In `"..."` the escapes `\n \r \t \b \a \xHH` and `\<c>`
/// apply; in `'...'` only `\'`. A closing quote must be followed by a space or the end.
fn quoted(line: &[u8], mut i: usize, q: u8) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut word = Vec::new();
    let double = q == b'"';
    loop {
        let Some(&c) = line.get(i) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        let next = line.get(i + 1).copied();
        match c {
            b'\\' if double && next == Some(b'x') && line.len() > i + 3 => {
                match std::str::from_utf8(&line[i + 2..i + 4])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        word.push(b);
                        i += 4;
                    }
                    None => {
                        word.push(b'x');
                        i += 2;
                    }
                }
            }
            b'\\' if double && next.is_some() => {
                word.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
            }
            b'\\' if !double && next == Some(b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            c if c == q => {
                i += 1;
                if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                return Ok((word, i));
            }
            _ => {
                word.push(c);
                i += 1;
            }
        }
    }
}

/// An HTTP request line (`GET /path HTTP/1.1`) or header (`Host: ...`) typed at a RESP port.
fn looks_like_http(args: &[Vec<u8>]) -> bool {
    const METHODS: [&[u8]; 7] = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"];
    let first = &args[0];
    if first.eq_ignore_ascii_case(b"host:") || first.eq_ignore_ascii_case(b"post") {
        return true;
    }
    args.len() == 3 && METHODS.iter().any(|m| first.eq_ignore_ascii_case(m)) && args[2].starts_with(b"HTTP/")
}

#[cfg(test)]
mod tests;
