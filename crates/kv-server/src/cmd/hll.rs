//! HyperLogLog commands over string values in Redis's format (`kv_store::hll`). They
//! replicate as the resulting string (`SET`), as every string write does.

use bytes::Bytes;
use kv_proto::{Frame, Out};
use kv_store::hll;

use super::family::{Entry, frame_reply};
use crate::node::{Node, Pending};

pub const COMMANDS: &[Entry] = &[
    ("pfadd", pfadd, false),
    ("pfcount", pfcount, true),
    ("pfmerge", pfmerge, false),
];

/// `hll-sparse-max-bytes`: past it, an HLL is held dense.
fn max_sparse(node: &Node) -> usize {
    node.settings
        .number("hll-sparse-max-bytes")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(3000)
}

/// `PFADD key [element ...]`: 1 when the HLL was created or a register changed.
fn pfadd(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let max = max_sparse(node);
    let result = node.write([&key[..]], |w| {
        let current = w.get(key);
        if w.failed() {
            return Frame::Null;
        }
        let (old, expires_at) = match &current {
            Some((v, at)) => (Some(&v[..]), *at),
            None => (None, None),
        };
        match hll::add(old, &a[2..], max) {
            Err(e) => Frame::error(e.message()),
            Ok(None) => Frame::Integer(0),
            Ok(Some(v)) => {
                let v = if old.is_some() || a.len() > 2 {
                    hll::changed(v)
                } else {
                    v
                };
                w.set(key, &v, expires_at);
                Frame::Integer(1)
            }
        }
    });
    frame_reply(out, result)
}

/// The registers of the HLLs at `keys`, merged; absent keys count as empty.
pub fn merged(values: &[Option<Bytes>]) -> Result<Vec<u8>, hll::HllError> {
    let mut regs = vec![0u8; hll::REGISTERS];
    for v in values.iter().flatten() {
        hll::merge(&mut regs, &hll::registers(v)?);
    }
    Ok(regs)
}

/// `PFCOUNT key [key ...]`: the estimated cardinality of their union. For one key the
/// leader caches the result in the HLL's header, as Redis does (a write, replicated as the
/// resulting string); a replica answers without caching.
fn pfcount(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let keys = &a[1..];
    if let [key] = keys {
        let result = node.write([&key[..]], |w| {
            let Some((v, expires_at)) = w.get(key) else {
                return Frame::Integer(0);
            };
            if let Err(e) = hll::validate(&v) {
                return Frame::error(e.message());
            }
            if let Some(card) = hll::cached(&v) {
                return Frame::Integer(card as i64);
            }
            match hll::registers(&v) {
                Ok(regs) => {
                    let card = hll::count(&regs);
                    w.set(key, &hll::with_cache(v.to_vec(), card), expires_at);
                    Frame::Integer(card as i64)
                }
                Err(e) => Frame::error(e.message()),
            }
        });
        if !matches!(result, Err(crate::node::Refusal::NotLeader { .. })) {
            return frame_reply(out, result);
        }
    }
    let result = node.read(keys.iter().map(|k| &k[..]), |r| {
        let values: Vec<Option<Bytes>> = keys
            .iter()
            .map(|k| r.get(k, |v| v.map(Bytes::copy_from_slice)))
            .collect();
        if let [Some(v)] = &values[..]
            && hll::validate(v).is_ok()
            && let Some(card) = hll::cached(v)
        {
            return Frame::Integer(card as i64);
        }
        match merged(&values) {
            Ok(regs) => Frame::Integer(hll::count(&regs) as i64),
            Err(e) => Frame::error(e.message()),
        }
    });
    frame_reply(out, result)
}

/// `PFMERGE destkey [sourcekey ...]`: the union into `destkey` (dense, as Redis 7.0 writes
/// it).
fn pfmerge(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let dst = &a[1];
    let result = node.write(a[1..].iter().map(|k| &k[..]), |w| {
        let values: Vec<Option<Bytes>> = a[1..].iter().map(|k| w.get(k).map(|(v, _)| v)).collect();
        if w.failed() {
            return Frame::Null;
        }
        match merged(&values) {
            Ok(regs) => {
                let expires_at = w.expiry_of(dst).flatten();
                w.set(dst, &hll::dense_of(&regs), expires_at);
                Frame::simple("OK")
            }
            Err(e) => Frame::error(e.message()),
        }
    });
    frame_reply(out, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_registers_skip_absent_keys_and_refuse_non_hlls() {
        let one = Bytes::from(hll::add(None, &["a"], 3000).unwrap().unwrap());
        let regs = merged(&[None, Some(one)]).unwrap();
        assert_eq!(hll::count(&regs), 1);
        assert_eq!(merged(&[Some(Bytes::from_static(b"nope"))]), Err(hll::HllError::NotHll));
    }
}
