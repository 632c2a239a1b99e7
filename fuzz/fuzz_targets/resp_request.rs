//! Fuzzes the server-side request parser (used by kvserver and the gate's RESP front).
//!
//! The input is split into chunks (the first byte picks the chunk size) and fed as reads would
//! arrive. Properties checked: no panic; what it parses incrementally equals what it parses
//! from the whole input; buffered bytes never exceed the query buffer limit plus one chunk.
#![no_main]

use bytes::BytesMut;
use kv_proto::{Limits, ProtocolError, RequestParser};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_multibulk_len: 64,
    max_inline_len: 1024,
    max_query_buffer: 16 * 1024,
};

fn parse_all(chunks: &mut dyn Iterator<Item = &[u8]>) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(req)) => out.push(req.args().iter().map(|a| a.to_vec()).collect()),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() <= LIMITS.max_query_buffer + chunk.len());
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let chunk = (first as usize % 32) + 1;
    let (whole, whole_err) = parse_all(&mut std::iter::once(rest));
    let (split, split_err) = parse_all(&mut rest.chunks(chunk));
    // A query-buffer overflow depends on how the bytes arrived; everything else must agree.
    if !matches!(whole_err, Some(ProtocolError::QueryBufferExceeded(_)))
        && !matches!(split_err, Some(ProtocolError::QueryBufferExceeded(_)))
    {
        assert_eq!(whole, split);
        assert_eq!(whole_err, split_err);
    }
});
