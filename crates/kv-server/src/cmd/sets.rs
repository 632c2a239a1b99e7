//! Set commands. Writes replicate as `SADD`/`SREM` of the members they changed: an `SPOP`
//! as the `SREM` of the members it picked, a `*STORE` as the whole result (`OBJ`).

use std::collections::HashSet;

use bytes::Bytes;
use kv_peer::ElemOp;
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;
use kv_store::object::SetObj;

use super::family::{self, Entry, ScanFrom, Scanned, bulk, error, frame_reply};
use crate::node::{Node, Pending, Reader, Writer};

pub const COMMANDS: &[Entry] = &[
    ("sadd", sadd, false),
    ("srem", srem, false),
    ("smembers", smembers, true),
    ("sismember", sismember, true),
    ("smismember", smismember, true),
    ("scard", scard, true),
    ("spop", spop, false),
    ("srandmember", srandmember, true),
    ("smove", smove, false),
    ("sinter", sinter, true),
    ("sintercard", sintercard, true),
    ("sinterstore", sinterstore, false),
    ("sunion", sunion, true),
    ("sunionstore", sunionstore, false),
    ("sdiff", sdiff, true),
    ("sdiffstore", sdiffstore, false),
    ("sscan", sscan, true),
];

fn as_set(o: Option<&Object>) -> Option<&SetObj> {
    o.and_then(Object::as_set)
}

fn read(node: &Node, a: &[Bytes], out: &mut Out, f: impl FnOnce(Option<&SetObj>) -> Frame) -> Option<Pending> {
    family::read(node, a, out, Kind::Set, Object::as_set, f)
}

fn sadd(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        Frame::Integer(w.apply(key, ElemOp::SAdd, &a[2..]).count as i64)
    });
    frame_reply(out, result)
}

fn srem(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        Frame::Integer(w.apply(key, ElemOp::SRem, &a[2..]).count as i64)
    });
    frame_reply(out, result)
}

fn members_frame(resp3: bool, members: impl Iterator<Item = Frame>) -> Frame {
    let items: Vec<Frame> = members.collect();
    if resp3 { Frame::Set(items) } else { Frame::Array(items) }
}

fn smembers(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::read_into(node, a, out, Kind::Set, Object::as_set, |out, s| {
        out.set(s.map_or(0, |s| s.len()));
        s.into_iter()
            .flat_map(|s| s.iter())
            .for_each(|m| kv_proto::write::bulk(out, m));
    })
}

fn sismember(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |s| {
        Frame::Integer(s.is_some_and(|s| s.contains(&a[2])) as i64)
    })
}

fn smismember(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |s| {
        Frame::Array(
            a[2..]
                .iter()
                .map(|m| Frame::Integer(s.is_some_and(|s| s.contains(m)) as i64))
                .collect(),
        )
    })
}

fn scard(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |s| Frame::Integer(s.map_or(0, |s| s.len()) as i64))
}

/// `count` distinct members at random (all when `count` ≥ the size).
fn distinct(s: &SetObj, count: usize) -> Vec<Bytes> {
    if count >= s.len() {
        return s.iter().map(Bytes::copy_from_slice).collect();
    }
    if count * 4 < s.len() {
        // Few of many: pick until enough distinct ones.
        let mut picked: HashSet<&[u8]> = HashSet::new();
        while picked.len() < count {
            if let Some(m) = s.near(family::pick()) {
                picked.insert(m);
            }
        }
        return picked.into_iter().map(Bytes::copy_from_slice).collect();
    }
    let mut all: Vec<&[u8]> = s.iter().collect();
    fastrand::shuffle(&mut all);
    all.truncate(count);
    all.into_iter().map(Bytes::copy_from_slice).collect()
}

fn spop(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let count = match a.get(2).map(|c| family::positive(c)).transpose() {
        Ok(c) => c,
        Err(e) => return error(out, e),
    };
    if a.len() > 3 {
        return error(out, family::SYNTAX);
    }
    let key = &a[1];
    let resp3 = family::resp3(out);
    let result = node.write([&key[..]], |w| {
        let picked = w.read_obj(key, Kind::Set, |o| as_set(o).map(|s| distinct(s, count.unwrap_or(1))));
        let Some(picked) = picked else {
            return if count.is_some() {
                members_frame(resp3, std::iter::empty())
            } else {
                Frame::Null
            };
        };
        if !picked.is_empty() {
            w.apply(key, ElemOp::SRem, &picked);
        }
        match count {
            None => picked.first().map_or(Frame::Null, |m| Frame::Bulk(m.clone())),
            Some(_) => members_frame(resp3, picked.into_iter().map(Frame::Bulk)),
        }
    });
    frame_reply(out, result)
}

fn srandmember(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let count = match family::random_options(a, None) {
        Ok((count, _)) => count,
        Err(e) => return error(out, e),
    };
    read(node, a, out, |s| match (s, count) {
        (None, None) => Frame::Null,
        (None, Some(_)) => Frame::Array(vec![]),
        (Some(s), None) => s.near(family::pick()).map_or(Frame::Null, bulk),
        (Some(s), Some(c)) if c < 0 => Frame::Array(
            (0..c.unsigned_abs())
                .filter_map(|_| s.near(family::pick()))
                .map(bulk)
                .collect(),
        ),
        (Some(s), Some(c)) => Frame::Array(distinct(s, c as usize).into_iter().map(Frame::Bulk).collect()),
    })
}

fn smove(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (src, dst, member) = (&a[1], &a[2], &a[3]);
    let result = node.write([&src[..], &dst[..]], |w| {
        let present = w.read_obj(src, Kind::Set, |o| as_set(o).map(|s| s.contains(member)));
        // The destination's kind is checked even when nothing moves, as Redis does.
        w.read_obj(dst, Kind::Set, |_| ());
        if w.failed() {
            return Frame::Null;
        }
        match present {
            Some(true) if src == dst => Frame::Integer(1),
            Some(true) => {
                w.apply(src, ElemOp::SRem, std::slice::from_ref(member));
                w.apply(dst, ElemOp::SAdd, std::slice::from_ref(member));
                Frame::Integer(1)
            }
            _ => Frame::Integer(0),
        }
    });
    frame_reply(out, result)
}

/// The members of the set at `key` (empty when absent); another kind fails the command.
fn load_r(r: &mut Reader<'_>, key: &[u8]) -> Option<HashSet<Bytes>> {
    r.object(key, Kind::Set, |o| {
        as_set(o).map(|s| s.iter().map(Bytes::copy_from_slice).collect())
    })
}

fn load_w(w: &mut Writer<'_>, key: &[u8]) -> Option<HashSet<Bytes>> {
    w.read_obj(key, Kind::Set, |o| {
        as_set(o).map(|s| s.iter().map(Bytes::copy_from_slice).collect())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algebra {
    Inter,
    Union,
    Diff,
}

/// Combines the sets as `op` says. `None` for a set: absent.
fn combine(op: Algebra, sets: Vec<Option<HashSet<Bytes>>>) -> HashSet<Bytes> {
    let mut sets = sets.into_iter();
    let Some(first) = sets.next() else {
        return HashSet::new();
    };
    match op {
        Algebra::Inter => {
            let mut acc = first.unwrap_or_default();
            for s in sets {
                let s = s.unwrap_or_default();
                acc.retain(|m| s.contains(m));
            }
            acc
        }
        Algebra::Union => {
            let mut acc = first.unwrap_or_default();
            sets.flatten().for_each(|s| acc.extend(s));
            acc
        }
        Algebra::Diff => {
            let mut acc = first.unwrap_or_default();
            for s in sets.flatten() {
                acc.retain(|m| !s.contains(m));
            }
            acc
        }
    }
}

fn algebra(node: &Node, a: &[Bytes], out: &mut Out, op: Algebra) -> Option<Pending> {
    let keys = &a[1..];
    let resp3 = family::resp3(out);
    let result = node.read(keys.iter().map(|k| &k[..]), |r| {
        let sets: Vec<_> = keys.iter().map(|k| load_r(r, k)).collect();
        members_frame(resp3, combine(op, sets).into_iter().map(Frame::Bulk))
    });
    frame_reply(out, result)
}

fn algebra_store(node: &Node, a: &[Bytes], out: &mut Out, op: Algebra) -> Option<Pending> {
    let (dst, keys) = (&a[1], &a[2..]);
    let result = node.write(a[1..].iter().map(|k| &k[..]), |w| {
        let sets: Vec<_> = keys.iter().map(|k| load_w(w, k)).collect();
        if w.failed() {
            return Frame::Null;
        }
        let result = combine(op, sets);
        let n = result.len();
        let mut set = SetObj::default();
        result.iter().for_each(|m| {
            set.add(m);
        });
        w.set_object(dst, Object::Set(set), None);
        Frame::Integer(n as i64)
    });
    frame_reply(out, result)
}

fn sinter(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra(node, a, out, Algebra::Inter)
}

fn sunion(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra(node, a, out, Algebra::Union)
}

fn sdiff(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra(node, a, out, Algebra::Diff)
}

fn sinterstore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra_store(node, a, out, Algebra::Inter)
}

fn sunionstore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra_store(node, a, out, Algebra::Union)
}

fn sdiffstore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    algebra_store(node, a, out, Algebra::Diff)
}

/// Parses `numkeys key [key ...]` at `a[1..]`, followed by options: the keys and the rest.
pub fn numkeys(a: &[Bytes]) -> Result<(&[Bytes], &[Bytes]), &'static str> {
    let n = family::int(&a[1]).map_err(|_| "ERR numkeys should be greater than 0")?;
    if n <= 0 {
        return Err("ERR numkeys should be greater than 0");
    }
    let n = n as usize;
    if n > a.len() - 2 {
        return Err("ERR Number of keys can't be greater than number of args");
    }
    Ok((&a[2..2 + n], &a[2 + n..]))
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]`.
fn sintercard(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (keys, opts) = match numkeys(a) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let limit = match opts {
        [] => 0,
        [l, n] if l.eq_ignore_ascii_case(b"LIMIT") => match family::int(n) {
            Ok(n) if n >= 0 => n as usize,
            _ => return error(out, "ERR LIMIT can't be negative"),
        },
        _ => return error(out, family::SYNTAX),
    };
    let result = node.read(keys.iter().map(|k| &k[..]), |r| {
        let sets: Vec<_> = keys.iter().map(|k| load_r(r, k)).collect();
        let n = combine(Algebra::Inter, sets).len();
        Frame::Integer(if limit > 0 { n.min(limit) } else { n } as i64)
    });
    frame_reply(out, result)
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: an intset is returned whole.
fn sscan(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::scan(node, a, out, Kind::Set, Object::as_set, |s, from, visit| match from {
        ScanFrom::Whole => {
            s.iter().for_each(|m| visit(Scanned::Member(m)));
            0
        }
        ScanFrom::Cursor(cursor, count) => s.scan(cursor, count, |m| visit(Scanned::Member(m))),
    })
}
