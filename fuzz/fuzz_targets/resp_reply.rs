//! Fuzzes the client-side reply parser (the gate reading kvserver's replies): no panic, and a
//! parsed frame's encoding, in either protocol, is canonical (parsing and encoding it again
//! changes nothing).
#![no_main]

use bytes::BytesMut;
use kv_proto::{Limits, Protocol, parse_reply};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_multibulk_len: 64,
    max_inline_len: 1024,
    max_query_buffer: 16 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = parse_reply(&mut buf, &LIMITS) {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let encoded = frame.to_bytes_as(proto);
            let again = parse_reply(&mut BytesMut::from(&encoded[..]), &LIMITS)
                .expect("an encoded frame parses")
                .expect("an encoded frame is complete");
            assert_eq!(again.to_bytes_as(proto), encoded);
        }
    }
});
