//! Hash commands. Writes replicate as `HSET`/`HDEL` of the fields they changed (an
//! `HINCRBY` as the `HSET` of the result).

use bytes::Bytes;
use kv_peer::ElemOp;
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;

use super::family::{self, Entry, ScanFrom, Scanned, bulk, error, frame_reply, int};
use super::strings::{format_float, parse_float};
use crate::node::{Node, Pending};

pub const COMMANDS: &[Entry] = &[
    ("hset", hset, false),
    ("hmset", hset, false),
    ("hsetnx", hsetnx, false),
    ("hget", hget, true),
    ("hmget", hmget, true),
    ("hdel", hdel, false),
    ("hlen", hlen, true),
    ("hstrlen", hstrlen, true),
    ("hexists", hexists, true),
    ("hkeys", hkeys, true),
    ("hvals", hvals, true),
    ("hgetall", hgetall, true),
    ("hincrby", hincrby, false),
    ("hincrbyfloat", hincrbyfloat, false),
    ("hrandfield", hrandfield, true),
    ("hscan", hscan, true),
];

fn as_hash(o: Option<&Object>) -> Option<&kv_store::object::HashObj> {
    o.and_then(Object::as_hash)
}

/// Reads the hash at `a[1]` and replies with `f`'s frame.
fn read(
    node: &Node,
    a: &[Bytes],
    out: &mut Out,
    f: impl FnOnce(Option<&kv_store::object::HashObj>) -> Frame,
) -> Option<Pending> {
    family::read(node, a, out, Kind::Hash, Object::as_hash, f)
}

fn hset(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    if !a.len().is_multiple_of(2) {
        return error(
            out,
            &format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&a[0]).to_lowercase()
            ),
        );
    }
    let hmset = a[0].eq_ignore_ascii_case(b"HMSET");
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let n = w.apply(key, ElemOp::HSet, &a[2..]).count;
        if hmset {
            Frame::simple("OK")
        } else {
            Frame::Integer(n as i64)
        }
    });
    frame_reply(out, result)
}

fn hsetnx(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let exists = w.read_obj(key, Kind::Hash, |o| as_hash(o).is_some_and(|h| h.get(&a[2]).is_some()));
        if exists || w.failed() {
            return Frame::Integer(0);
        }
        w.apply(key, ElemOp::HSet, &a[2..4]);
        Frame::Integer(1)
    });
    frame_reply(out, result)
}

fn hget(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |h| h.and_then(|h| h.get(&a[2])).map_or(Frame::Null, bulk))
}

fn hmget(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |h| {
        Frame::Array(
            a[2..]
                .iter()
                .map(|f| h.and_then(|h| h.get(f)).map_or(Frame::Null, bulk))
                .collect(),
        )
    })
}

fn hdel(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        Frame::Integer(w.apply(key, ElemOp::HDel, &a[2..]).count as i64)
    });
    frame_reply(out, result)
}

fn hlen(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |h| Frame::Integer(h.map_or(0, |h| h.len()) as i64))
}

fn hstrlen(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |h| {
        Frame::Integer(h.and_then(|h| h.get(&a[2])).map_or(0, |v| v.len()) as i64)
    })
}

fn hexists(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |h| {
        Frame::Integer(h.is_some_and(|h| h.get(&a[2]).is_some()) as i64)
    })
}

fn hkeys(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::read_into(node, a, out, Kind::Hash, Object::as_hash, |out, h| {
        kv_proto::write::array_header(out, h.map_or(0, |h| h.len()));
        h.into_iter()
            .flat_map(|h| h.iter())
            .for_each(|(f, _)| kv_proto::write::bulk(out, f));
    })
}

fn hvals(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::read_into(node, a, out, Kind::Hash, Object::as_hash, |out, h| {
        kv_proto::write::array_header(out, h.map_or(0, |h| h.len()));
        h.into_iter()
            .flat_map(|h| h.iter())
            .for_each(|(_, v)| kv_proto::write::bulk(out, v));
    })
}

fn hgetall(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::read_into(node, a, out, Kind::Hash, Object::as_hash, |out, h| {
        out.map(h.map_or(0, |h| h.len()));
        for (f, v) in h.into_iter().flat_map(|h| h.iter()) {
            kv_proto::write::bulk(out, f);
            kv_proto::write::bulk(out, v);
        }
    })
}

fn hincrby(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let delta = match int(&a[3]) {
        Ok(d) => d,
        Err(e) => return error(out, e),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let current = w.read_obj(key, Kind::Hash, |o| {
            as_hash(o).map(|h| h.get(&a[2]).map(<[u8]>::to_vec))
        });
        if w.failed() {
            return Frame::Null;
        }
        let current = match current.flatten() {
            None => 0,
            Some(v) => match super::args::parse_i64(&v) {
                Some(n) => n,
                None => return Frame::error("ERR hash value is not an integer"),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Frame::error("ERR increment or decrement would overflow");
        };
        w.apply(key, ElemOp::HSet, &[a[2].clone(), Bytes::from(next.to_string())]);
        Frame::Integer(next)
    });
    frame_reply(out, result)
}

fn hincrbyfloat(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let Some(delta) = parse_float(&a[3]) else {
        return error(out, family::NOT_FLOAT);
    };
    if !delta.is_finite() {
        return error(out, "ERR value is NaN or Infinity");
    }
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let current = w.read_obj(key, Kind::Hash, |o| {
            as_hash(o).map(|h| h.get(&a[2]).map(<[u8]>::to_vec))
        });
        if w.failed() {
            return Frame::Null;
        }
        let current = match current.flatten() {
            None => 0.0,
            Some(v) => match parse_float(&v) {
                Some(n) => n,
                None => return Frame::error("ERR hash value is not a float"),
            },
        };
        let next = current + delta;
        if !next.is_finite() {
            return Frame::error("ERR increment would produce NaN or Infinity");
        }
        let text = Bytes::from(format_float(next));
        w.apply(key, ElemOp::HSet, &[a[2].clone(), text.clone()]);
        Frame::Bulk(text)
    });
    frame_reply(out, result)
}

/// `HRANDFIELD key [count [WITHVALUES]]`.
fn hrandfield(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (count, with_values) = match family::random_options(a, Some(b"WITHVALUES")) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let resp3 = family::resp3(out);
    read(node, a, out, |h| {
        let fields: Vec<(&[u8], &[u8])> = h.map(|h| random_fields(h, count)).unwrap_or_default();
        match count {
            None => fields.first().map_or(Frame::Null, |(f, _)| bulk(f)),
            Some(_) if with_values => family::pairs(resp3, fields.iter().map(|(f, v)| (bulk(f), bulk(v))).collect()),
            Some(_) => Frame::Array(fields.iter().map(|(f, _)| bulk(f)).collect()),
        }
    })
}

/// `count` fields at random: distinct when `count` ≥ 0, possibly repeated when negative;
/// one when `None`.
fn random_fields(h: &kv_store::object::HashObj, count: Option<i64>) -> Vec<(&[u8], &[u8])> {
    match count {
        None => h.near(family::pick()).into_iter().collect(),
        Some(c) if c < 0 => (0..c.unsigned_abs()).filter_map(|_| h.near(family::pick())).collect(),
        Some(c) => {
            let mut all: Vec<_> = h.iter().collect();
            fastrand::shuffle(&mut all);
            all.truncate(c as usize);
            all
        }
    }
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]`: a compact hash is returned whole
/// (cursor 0), as Redis returns a listpack's.
fn hscan(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::scan(node, a, out, Kind::Hash, Object::as_hash, |h, from, visit| match from {
        ScanFrom::Whole => {
            h.iter().for_each(|(f, v)| visit(Scanned::Field(f, v)));
            0
        }
        ScanFrom::Cursor(cursor, count) => h.scan(cursor, count, |f, v| visit(Scanned::Field(f, v))),
    })
}
