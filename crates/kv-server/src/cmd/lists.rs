//! List commands. Writes replicate as what they did to the list: pushes, pops of a count,
//! the positions an `LREM` removed, the position an `LINSERT` chose, the range an `LTRIM`
//! kept. Blocking pops are in `super::blocking`.

use bytes::Bytes;
use kv_peer::ElemOp;
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;
use kv_store::object::ListObj;

use super::family::{self, Entry, bulk, error, frame_reply, int};
use crate::node::{Node, Pending, Writer};

pub const COMMANDS: &[Entry] = &[
    ("lpush", lpush, false),
    ("rpush", rpush, false),
    ("lpushx", lpushx, false),
    ("rpushx", rpushx, false),
    ("lpop", pop, false),
    ("rpop", pop, false),
    ("llen", llen, true),
    ("lindex", lindex, true),
    ("lrange", lrange, true),
    ("lset", lset, false),
    ("linsert", linsert, false),
    ("lrem", lrem, false),
    ("ltrim", ltrim, false),
    ("lpos", lpos, true),
    ("lmove", lmove, false),
    ("rpoplpush", lmove, false),
    ("lmpop", lmpop, false),
];

fn as_list(o: Option<&Object>) -> Option<&ListObj> {
    o.and_then(Object::as_list)
}

fn read(node: &Node, a: &[Bytes], out: &mut Out, f: impl FnOnce(Option<&ListObj>) -> Frame) -> Option<Pending> {
    family::read(node, a, out, Kind::List, Object::as_list, f)
}

/// The length of the list at `key` (0 when absent; another kind fails the command).
fn len_of(w: &mut Writer<'_>, key: &[u8]) -> Option<usize> {
    w.read_obj(key, Kind::List, |o| as_list(o).map(ListObj::len))
}

fn push(node: &Node, a: &[Bytes], out: &mut Out, op: ElemOp, only_existing: bool) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        // The length comes back from the push: a small list is decoded once, not twice.
        if !w.holds(key, Kind::List) && (w.failed() || only_existing) {
            return Frame::Integer(0);
        }
        Frame::Integer(w.apply(key, op, &a[2..]).len as i64)
    });
    frame_reply(out, result)
}

fn lpush(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    push(node, a, out, ElemOp::LPush, false)
}

fn rpush(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    push(node, a, out, ElemOp::RPush, false)
}

fn lpushx(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    push(node, a, out, ElemOp::LPush, true)
}

fn rpushx(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    push(node, a, out, ElemOp::RPush, true)
}

/// Pops up to `count` from the head (`left`) or tail of the list at `key`; `None` when it
/// is absent.
pub fn pop_from(w: &mut Writer<'_>, key: &[u8], left: bool, count: usize) -> Option<Vec<Box<[u8]>>> {
    if !w.holds(key, Kind::List) {
        return None;
    }
    let op = if left { ElemOp::LPop } else { ElemOp::RPop };
    Some(w.apply(key, op, &[Bytes::from(count.to_string())]).popped)
}

/// `LPOP key [count]`, `RPOP key [count]`.
fn pop(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let left = a[0].eq_ignore_ascii_case(b"LPOP");
    if a.len() > 3 {
        return error(
            out,
            &format!(
                "ERR wrong number of arguments for '{}' command",
                if left { "lpop" } else { "rpop" }
            ),
        );
    }
    let count = match a.get(2).map(|c| family::positive(c)).transpose() {
        Ok(c) => c,
        Err(e) => return error(out, e),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        if count == Some(0) {
            return match len_of(w, key) {
                Some(_) => Frame::Array(vec![]),
                None => Frame::NullArray,
            };
        }
        match (pop_from(w, key, left, count.unwrap_or(1)), count) {
            (None, None) => Frame::Null,
            (None, Some(_)) => Frame::NullArray,
            (Some(p), None) => p.first().map_or(Frame::Null, |v| bulk(v)),
            (Some(p), Some(_)) => Frame::Array(p.iter().map(|v| bulk(v)).collect()),
        }
    });
    frame_reply(out, result)
}

fn llen(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |l| Frame::Integer(l.map_or(0, ListObj::len) as i64))
}

/// A list index (negative from the end) as a position, `None` when out of range.
fn position(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lindex(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let i = match int(&a[2]) {
        Ok(i) => i,
        Err(e) => return error(out, e),
    };
    read(node, a, out, |l| {
        l.and_then(|l| position(i, l.len()).and_then(|p| l.get(p)))
            .map_or(Frame::Null, bulk)
    })
}

fn lrange(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (start, end) = match (int(&a[2]), int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return error(out, e),
    };
    family::read_into(node, a, out, Kind::List, Object::as_list, |out, l| {
        match l.and_then(|l| Some((l, family::index_range(start, end, l.len())?))) {
            Some((l, (s, e))) => {
                kv_proto::write::array_header(out, e - s + 1);
                l.iter()
                    .skip(s)
                    .take(e - s + 1)
                    .for_each(|v| kv_proto::write::bulk(out, v));
            }
            None => kv_proto::write::array_header(out, 0),
        }
    })
}

fn lset(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let i = match int(&a[2]) {
        Ok(i) => i,
        Err(e) => return error(out, e),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let Some(len) = len_of(w, key) else {
            return Frame::error("ERR no such key");
        };
        let Some(p) = position(i, len) else {
            return Frame::error("ERR index out of range");
        };
        w.apply(key, ElemOp::LSet, &[Bytes::from(p.to_string()), a[3].clone()]);
        Frame::simple("OK")
    });
    frame_reply(out, result)
}

/// `LINSERT key BEFORE|AFTER pivot element`.
fn linsert(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let after = match a[2].to_ascii_uppercase().as_slice() {
        b"BEFORE" => false,
        b"AFTER" => true,
        _ => return error(out, family::SYNTAX),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let found = w.read_obj(key, Kind::List, |o| {
            as_list(o).map(|l| (l.len(), l.iter().position(|v| v == &a[3][..])))
        });
        match found {
            None => Frame::Integer(0),
            Some((_, None)) => Frame::Integer(-1),
            Some((len, Some(p))) => {
                let at = if after { p + 1 } else { p };
                w.apply(key, ElemOp::LInsert, &[Bytes::from(at.to_string()), a[4].clone()]);
                Frame::Integer(len as i64 + 1)
            }
        }
    });
    frame_reply(out, result)
}

/// `LREM key count element`: from the head when `count` > 0, from the tail when < 0, all
/// when 0.
fn lrem(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let count = match int(&a[2]) {
        Ok(c) => c,
        Err(e) => return error(out, e),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let positions: Vec<usize> = w
            .read_obj(key, Kind::List, |o| {
                as_list(o).map(|l| {
                    let hits = l.iter().enumerate().filter(|(_, v)| *v == &a[3][..]).map(|(i, _)| i);
                    let limit = if count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    let mut p: Vec<usize> = if count < 0 {
                        hits.rev().take(limit).collect()
                    } else {
                        hits.take(limit).collect()
                    };
                    p.sort_unstable();
                    p
                })
            })
            .unwrap_or_default();
        if !positions.is_empty() {
            let args: Vec<Bytes> = positions.iter().map(|p| Bytes::from(p.to_string())).collect();
            w.apply(key, ElemOp::LRemAt, &args);
        }
        Frame::Integer(positions.len() as i64)
    });
    frame_reply(out, result)
}

fn ltrim(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (start, end) = match (int(&a[2]), int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return error(out, e),
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        if let Some(len) = len_of(w, key) {
            let (s, e) = family::index_range(start, end, len).map_or((0, 0), |(s, e)| (s, e + 1));
            if (s, e) != (0, len) {
                w.apply(
                    key,
                    ElemOp::LTrim,
                    &[Bytes::from(s.to_string()), Bytes::from(e.to_string())],
                );
            }
        }
        Frame::simple("OK")
    });
    frame_reply(out, result)
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`.
fn lpos(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < a.len() {
        let Some(v) = a.get(i + 1) else {
            return error(out, family::SYNTAX);
        };
        let n = match int(v) {
            Ok(n) => n,
            Err(e) => return error(out, e),
        };
        match a[i].to_ascii_uppercase().as_slice() {
            b"RANK" if n == 0 => {
                return error(
                    out,
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                );
            }
            b"RANK" if n == i64::MIN => {
                return error(
                    out,
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                );
            }
            b"RANK" => rank = n,
            b"COUNT" if n < 0 => return error(out, "ERR COUNT can't be negative"),
            b"COUNT" => count = Some(n as usize),
            b"MAXLEN" if n < 0 => return error(out, "ERR MAXLEN can't be negative"),
            b"MAXLEN" => maxlen = n as usize,
            _ => return error(out, family::SYNTAX),
        }
        i += 2;
    }
    read(node, a, out, |l| {
        let want = count.map_or(1, |c| if c == 0 { usize::MAX } else { c });
        let mut found = Vec::new();
        if let Some(l) = l {
            let limit = if maxlen == 0 { usize::MAX } else { maxlen };
            let skip = rank.unsigned_abs() as usize - 1;
            let matches = |(i, v): (usize, &[u8])| (v == &a[2][..]).then_some(i);
            if rank > 0 {
                found.extend(
                    l.iter()
                        .enumerate()
                        .take(limit)
                        .filter_map(matches)
                        .skip(skip)
                        .take(want),
                );
            } else {
                let n = l.len();
                found.extend(
                    l.iter()
                        .rev()
                        .enumerate()
                        .take(limit)
                        .filter_map(|(i, v)| matches((n - 1 - i, v)))
                        .skip(skip)
                        .take(want),
                );
            }
        }
        match count {
            None => found.first().map_or(Frame::Null, |&p| Frame::Integer(p as i64)),
            Some(_) => Frame::Array(found.into_iter().map(|p| Frame::Integer(p as i64)).collect()),
        }
    })
}

/// `LEFT` (true) or `RIGHT`.
pub fn side(b: &[u8]) -> Option<bool> {
    match b.to_ascii_uppercase().as_slice() {
        b"LEFT" => Some(true),
        b"RIGHT" => Some(false),
        _ => None,
    }
}

/// Moves one element from `src` (its head when `from_left`) to `dst` (its head when
/// `to_left`); `None` when `src` is absent. Checks `dst`'s kind before anything moves.
pub fn move_one(w: &mut Writer<'_>, src: &[u8], dst: &[u8], from_left: bool, to_left: bool) -> Option<Box<[u8]>> {
    // The source first, as Redis checks them: with nothing to move, the destination's kind
    // does not matter (a null reply, and a blocking move waits).
    if !w.holds(src, Kind::List) {
        return None;
    }
    w.holds(dst, Kind::List);
    if w.failed() {
        return None;
    }
    let v = pop_from(w, src, from_left, 1)?.pop()?;
    let op = if to_left { ElemOp::LPush } else { ElemOp::RPush };
    w.apply(dst, op, &[Bytes::copy_from_slice(&v)]);
    Some(v)
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`, and `RPOPLPUSH source destination`.
fn lmove(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (from_left, to_left) = if a[0].eq_ignore_ascii_case(b"RPOPLPUSH") {
        (false, true)
    } else {
        match (side(&a[3]), side(&a[4])) {
            (Some(f), Some(t)) => (f, t),
            _ => return error(out, family::SYNTAX),
        }
    };
    let (src, dst) = (&a[1], &a[2]);
    let result = node.write([&src[..], &dst[..]], |w| {
        move_one(w, src, dst, from_left, to_left).map_or(Frame::Null, |v| bulk(&v))
    });
    frame_reply(out, result)
}

/// Parses `LEFT|RIGHT [COUNT count]` of `LMPOP`/`BLMPOP`.
pub fn mpop_options(opts: &[Bytes]) -> Result<(bool, usize), &'static str> {
    family::mpop_options(opts, b"LEFT", b"RIGHT")
}

/// Pops from the first non-empty list of `keys`: `[key, [elements]]`, or `None`.
pub fn mpop_first(w: &mut Writer<'_>, keys: &[Bytes], left: bool, count: usize) -> Option<Frame> {
    for key in keys {
        if let Some(p) = pop_from(w, key, left, count) {
            return Some(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::Array(p.iter().map(|v| bulk(v)).collect()),
            ]));
        }
        if w.failed() {
            return None;
        }
    }
    None
}

/// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]`.
fn lmpop(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (keys, opts) = match super::sets::numkeys(a) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let (left, count) = match mpop_options(opts) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let result = node.write(keys.iter().map(|k| &k[..]), |w| {
        mpop_first(w, keys, left, count).unwrap_or(Frame::NullArray)
    });
    frame_reply(out, result)
}
