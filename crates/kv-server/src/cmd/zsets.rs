//! Sorted set commands. Writes replicate as `ZADD` of resulting scores (exact, as 8 bytes)
//! and `ZREM` of removed members: a `ZINCRBY` as the `ZADD` of the sum, a pop or a
//! `ZREMRANGEBY*` as the `ZREM` of what it removed, a `*STORE` as the whole result (`OBJ`).

use std::collections::HashMap;

use bytes::Bytes;
use kv_peer::ElemOp;
use kv_proto::{Frame, Kind, Out};
use kv_store::Object;
use kv_store::object::{SetObj, ZSetObj};

use super::family::{self, Entry, ScanFrom, Scanned, bulk, error, frame_reply, int};
use crate::node::{Node, Pending, Reader, Writer};

pub const COMMANDS: &[Entry] = &[
    ("zadd", zadd, false),
    ("zincrby", zincrby, false),
    ("zrem", zrem, false),
    ("zcard", zcard, true),
    ("zscore", zscore, true),
    ("zmscore", zmscore, true),
    ("zrank", zrank, true),
    ("zrevrank", zrank, true),
    ("zcount", zcount, true),
    ("zlexcount", zlexcount, true),
    ("zrange", zrange, true),
    ("zrangestore", zrangestore, false),
    ("zrevrange", zrange, true),
    ("zrangebyscore", zrange, true),
    ("zrevrangebyscore", zrange, true),
    ("zrangebylex", zrange, true),
    ("zrevrangebylex", zrange, true),
    ("zremrangebyrank", zremrange, false),
    ("zremrangebyscore", zremrange, false),
    ("zremrangebylex", zremrange, false),
    ("zpopmin", zpop, false),
    ("zpopmax", zpop, false),
    ("zmpop", zmpop, false),
    ("zrandmember", zrandmember, true),
    ("zscan", zscan, true),
    ("zunion", combine_cmd, true),
    ("zinter", combine_cmd, true),
    ("zdiff", combine_cmd, true),
    ("zunionstore", combine_cmd, false),
    ("zinterstore", combine_cmd, false),
    ("zdiffstore", combine_cmd, false),
    ("zintercard", zintercard, true),
];

fn as_zset(o: Option<&Object>) -> Option<&ZSetObj> {
    o.and_then(Object::as_zset)
}

fn read(node: &Node, a: &[Bytes], out: &mut Out, f: impl FnOnce(Option<&ZSetObj>) -> Frame) -> Option<Pending> {
    family::read(node, a, out, Kind::ZSet, Object::as_zset, f)
}

/// A score as Redis reads one (`inf`, `+inf`, `-inf` included); never NaN.
pub fn score(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let v = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => super::strings::parse_float(b)?,
    };
    (!v.is_nan()).then_some(v)
}

fn score_arg(v: f64) -> Bytes {
    Bytes::copy_from_slice(&v.to_le_bytes())
}

/// Logs and applies `ZADD` of these member scores.
fn add_scores(w: &mut Writer<'_>, key: &[u8], scores: &[(Bytes, f64)]) {
    if scores.is_empty() {
        return;
    }
    let args: Vec<Bytes> = scores.iter().flat_map(|(m, s)| [score_arg(*s), m.clone()]).collect();
    w.apply(key, ElemOp::ZAdd, &args);
}

fn remove_members(w: &mut Writer<'_>, key: &[u8], members: &[Bytes]) {
    if !members.is_empty() {
        w.apply(key, ElemOp::ZRem, members);
    }
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`.
fn zadd(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    zadd_args(node, a, out)
}

/// `ZADD` with these arguments (`GEOADD` is one).
pub fn zadd_args(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        match a[i].to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            b"CH" => ch = true,
            b"INCR" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = &a[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return error(out, family::SYNTAX);
    }
    if nx && xx {
        return error(out, "ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return error(out, "ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs.len() != 2 {
        return error(out, "ERR INCR option supports a single increment-element pair");
    }
    let mut wanted = Vec::with_capacity(pairs.len() / 2);
    for p in pairs.chunks_exact(2) {
        let Some(s) = score(&p[0]) else {
            return error(out, family::NOT_FLOAT);
        };
        wanted.push((p[1].clone(), s));
    }
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let current: Vec<Option<f64>> = w.read_obj(key, Kind::ZSet, |o| {
            let z = as_zset(o);
            wanted.iter().map(|(m, _)| z.and_then(|z| z.score(m))).collect()
        });
        if w.failed() {
            return Frame::Null;
        }
        let (mut added, mut changed) = (0, 0);
        let mut writes: Vec<(Bytes, f64)> = Vec::new();
        let mut pending: HashMap<Bytes, f64> = HashMap::new();
        let mut last = None;
        for ((m, s), cur) in wanted.iter().zip(current) {
            let cur = pending.get(m).copied().or(cur);
            let next = if incr { cur.unwrap_or(0.0) + s } else { *s };
            if next.is_nan() {
                return Frame::error("ERR resulting score is not a number (NaN)");
            }
            let allowed = match cur {
                None => !xx,
                Some(c) => !nx && (!gt || next > c) && (!lt || next < c),
            };
            if !allowed {
                last = None;
                continue;
            }
            match cur {
                None => added += 1,
                Some(c) if c != next => changed += 1,
                Some(_) => {}
            }
            last = Some(next);
            pending.insert(m.clone(), next);
            writes.push((m.clone(), next));
        }
        add_scores(w, key, &writes);
        if incr {
            return last.map_or(Frame::Null, Frame::Double);
        }
        Frame::Integer(if ch { added + changed } else { added })
    });
    frame_reply(out, result)
}

fn zincrby(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let Some(delta) = score(&a[2]) else {
        return error(out, family::NOT_FLOAT);
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let cur = w.read_obj(key, Kind::ZSet, |o| as_zset(o).and_then(|z| z.score(&a[3])));
        if w.failed() {
            return Frame::Null;
        }
        let next = cur.unwrap_or(0.0) + delta;
        if next.is_nan() {
            return Frame::error("ERR resulting score is not a number (NaN)");
        }
        add_scores(w, key, &[(a[3].clone(), next)]);
        Frame::Double(next)
    });
    frame_reply(out, result)
}

fn zrem(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        Frame::Integer(w.apply(key, ElemOp::ZRem, &a[2..]).count as i64)
    });
    frame_reply(out, result)
}

fn zcard(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |z| Frame::Integer(z.map_or(0, ZSetObj::len) as i64))
}

fn zscore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |z| {
        z.and_then(|z| z.score(&a[2])).map_or(Frame::Null, Frame::Double)
    })
}

fn zmscore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    read(node, a, out, |z| {
        Frame::Array(
            a[2..]
                .iter()
                .map(|m| z.and_then(|z| z.score(m)).map_or(Frame::Null, Frame::Double))
                .collect(),
        )
    })
}

fn zrank(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let rev = a[0].eq_ignore_ascii_case(b"ZREVRANK");
    read(node, a, out, |z| {
        let Some(z) = z else { return Frame::Null };
        match z.rank(&a[2]) {
            Some(r) if rev => Frame::Integer((z.len() - 1 - r) as i64),
            Some(r) => Frame::Integer(r as i64),
            None => Frame::Null,
        }
    })
}

/// One end of a score range.
#[derive(Debug, Clone, Copy)]
pub struct ScoreBound {
    value: f64,
    exclusive: bool,
}

impl ScoreBound {
    fn parse(b: &[u8]) -> Option<ScoreBound> {
        let (exclusive, rest) = match b.first() {
            Some(b'(') => (true, &b[1..]),
            _ => (false, b),
        };
        Some(ScoreBound {
            value: score(rest)?,
            exclusive,
        })
    }

    fn below(&self, s: f64) -> bool {
        if self.exclusive {
            self.value < s
        } else {
            self.value <= s
        }
    }

    fn above(&self, s: f64) -> bool {
        if self.exclusive {
            s < self.value
        } else {
            s <= self.value
        }
    }
}

/// One end of a lexicographic range.
#[derive(Debug, Clone)]
pub enum LexBound {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

impl LexBound {
    fn parse(b: &Bytes) -> Option<LexBound> {
        match b.first() {
            Some(b'-') if b.len() == 1 => Some(LexBound::Min),
            Some(b'+') if b.len() == 1 => Some(LexBound::Max),
            Some(b'[') => Some(LexBound::Incl(b.slice(1..))),
            Some(b'(') => Some(LexBound::Excl(b.slice(1..))),
            _ => None,
        }
    }

    /// True when `m` is at or past this lower bound.
    fn below(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Incl(b) => &b[..] <= m,
            LexBound::Excl(b) => &b[..] < m,
        }
    }

    /// True when `m` is at or before this upper bound.
    fn above(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Incl(b) => m <= &b[..],
            LexBound::Excl(b) => m < &b[..],
        }
    }
}

/// What a range command selects.
#[derive(Debug, Clone)]
pub enum Range {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

const BAD_SCORE_RANGE: &str = "ERR min or max is not a float";
const BAD_LEX_RANGE: &str = "ERR min or max not valid string range item";

/// The members `range` selects (ascending, or descending when `rev`), after skipping
/// `offset` and taking at most `count` (`None`: all).
fn select<'z>(z: &'z ZSetObj, range: &Range, rev: bool, offset: usize, count: Option<usize>) -> Vec<(&'z [u8], f64)> {
    let take = count.unwrap_or(usize::MAX);
    match range {
        Range::Rank(start, end) => {
            let Some((s, e)) = family::index_range(*start, *end, z.len()) else {
                return vec![];
            };
            let n = e - s + 1;
            if rev {
                z.down_from_rank(s).take(n).collect()
            } else {
                z.from_rank(s).take(n).collect()
            }
        }
        Range::Score(min, max) => {
            if rev {
                z.down_from_score(max.value)
                    .skip_while(|(_, s)| !max.above(*s))
                    .take_while(|(_, s)| min.below(*s))
                    .skip(offset)
                    .take(take)
                    .collect()
            } else {
                z.from_score(min.value)
                    .skip_while(|(_, s)| !min.below(*s))
                    .take_while(|(_, s)| max.above(*s))
                    .skip(offset)
                    .take(take)
                    .collect()
            }
        }
        Range::Lex(min, max) => {
            if rev {
                z.iter()
                    .rev()
                    .skip_while(|(m, _)| !max.above(m))
                    .take_while(|(m, _)| min.below(m))
                    .skip(offset)
                    .take(take)
                    .collect()
            } else {
                z.iter()
                    .skip_while(|(m, _)| !min.below(m))
                    .take_while(|(m, _)| max.above(m))
                    .skip(offset)
                    .take(take)
                    .collect()
            }
        }
    }
}

/// A parsed range command: `ZRANGE` and its older forms.
struct RangeCmd {
    range: Range,
    rev: bool,
    offset: usize,
    count: Option<usize>,
    with_scores: bool,
}

/// Parses `<min> <max> [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]` as `form`
/// (the command's name) takes them.
fn parse_range(form: &[u8], a: &[Bytes]) -> Result<RangeCmd, &'static str> {
    let form = form.to_ascii_uppercase();
    let (mut by_score, mut by_lex, mut rev, mut limit, mut with_scores) = (false, false, false, None, false);
    match &form[..] {
        b"ZREVRANGE" => rev = true,
        b"ZRANGEBYSCORE" => by_score = true,
        b"ZREVRANGEBYSCORE" => (by_score, rev) = (true, true),
        b"ZRANGEBYLEX" => by_lex = true,
        b"ZREVRANGEBYLEX" => (by_lex, rev) = (true, true),
        _ => {}
    }
    let general = &form[..] == b"ZRANGE" || &form[..] == b"ZRANGESTORE";
    let mut i = 2;
    while i < a.len() {
        match a[i].to_ascii_uppercase().as_slice() {
            b"WITHSCORES" if &form[..] != b"ZRANGEBYLEX" && &form[..] != b"ZREVRANGEBYLEX" => with_scores = true,
            b"LIMIT" if &form[..] != b"ZREVRANGE" && a.len() > i + 2 => {
                let off = family::int(&a[i + 1])?;
                let cnt = family::int(&a[i + 2])?;
                limit = Some((off, cnt));
                i += 2;
            }
            b"BYSCORE" if general && !by_lex => by_score = true,
            b"BYLEX" if general && !by_score => by_lex = true,
            b"REV" if general => rev = true,
            _ => return Err(family::SYNTAX),
        }
        i += 1;
    }
    if limit.is_some() && !by_score && !by_lex {
        return Err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
    }
    if with_scores && by_lex {
        return Err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // The reversed forms (and REV) name the maximum first.
    let (lo, hi) = if rev && (by_score || by_lex) {
        (&a[1], &a[0])
    } else {
        (&a[0], &a[1])
    };
    let range = if by_score {
        Range::Score(
            ScoreBound::parse(lo).ok_or(BAD_SCORE_RANGE)?,
            ScoreBound::parse(hi).ok_or(BAD_SCORE_RANGE)?,
        )
    } else if by_lex {
        Range::Lex(
            LexBound::parse(lo).ok_or(BAD_LEX_RANGE)?,
            LexBound::parse(hi).ok_or(BAD_LEX_RANGE)?,
        )
    } else {
        Range::Rank(family::int(lo)?, family::int(hi)?)
    };
    let (offset, count) = match limit {
        None => (0, None),
        Some((off, _)) if off < 0 => (usize::MAX, Some(0)),
        Some((off, cnt)) => (off as usize, (cnt >= 0).then_some(cnt as usize)),
    };
    Ok(RangeCmd {
        range,
        rev,
        offset,
        count,
        with_scores,
    })
}

fn scored(resp3: bool, with_scores: bool, items: Vec<(&[u8], f64)>) -> Frame {
    if with_scores {
        family::pairs(
            resp3,
            items.into_iter().map(|(m, s)| (bulk(m), Frame::Double(s))).collect(),
        )
    } else {
        Frame::Array(items.into_iter().map(|(m, _)| bulk(m)).collect())
    }
}

/// `ZRANGE` and `ZREVRANGE`, `ZRANGEBYSCORE`, `ZREVRANGEBYSCORE`, `ZRANGEBYLEX`,
/// `ZREVRANGEBYLEX`.
fn zrange(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let cmd = match parse_range(&a[0], &a[2..]) {
        Ok(c) => c,
        Err(e) => return error(out, e),
    };
    let resp3 = family::resp3(out);
    read(node, a, out, |z| {
        let items = z
            .map(|z| select(z, &cmd.range, cmd.rev, cmd.offset, cmd.count))
            .unwrap_or_default();
        scored(resp3, cmd.with_scores, items)
    })
}

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`.
fn zrangestore(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let cmd = match parse_range(&a[0], &a[3..]) {
        Ok(c) if !c.with_scores => c,
        Ok(_) => return error(out, family::SYNTAX),
        Err(e) => return error(out, e),
    };
    let (dst, src) = (&a[1], &a[2]);
    let result = node.write([&dst[..], &src[..]], |w| {
        let picked: Vec<(Bytes, f64)> = w.read_obj(src, Kind::ZSet, |o| {
            as_zset(o)
                .map(|z| {
                    select(z, &cmd.range, cmd.rev, cmd.offset, cmd.count)
                        .into_iter()
                        .map(|(m, s)| (Bytes::copy_from_slice(m), s))
                        .collect()
                })
                .unwrap_or_default()
        });
        if w.failed() {
            return Frame::Null;
        }
        let n = picked.len();
        w.set_object(dst, Object::ZSet(build(picked)), None);
        Frame::Integer(n as i64)
    });
    frame_reply(out, result)
}

fn build(items: impl IntoIterator<Item = (Bytes, f64)>) -> ZSetObj {
    let mut z = ZSetObj::default();
    for (m, s) in items {
        z.insert(&m, s);
    }
    z
}

fn zcount(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (Some(min), Some(max)) = (ScoreBound::parse(&a[2]), ScoreBound::parse(&a[3])) else {
        return error(out, BAD_SCORE_RANGE);
    };
    let range = Range::Score(min, max);
    read(node, a, out, |z| {
        Frame::Integer(z.map_or(0, |z| select(z, &range, false, 0, None).len()) as i64)
    })
}

fn zlexcount(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (Some(min), Some(max)) = (LexBound::parse(&a[2]), LexBound::parse(&a[3])) else {
        return error(out, BAD_LEX_RANGE);
    };
    let range = Range::Lex(min, max);
    read(node, a, out, |z| {
        Frame::Integer(z.map_or(0, |z| select(z, &range, false, 0, None).len()) as i64)
    })
}

/// `ZREMRANGEBYRANK key start stop`, `ZREMRANGEBYSCORE key min max`, `ZREMRANGEBYLEX key
/// min max`.
fn zremrange(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let range = match a[0].to_ascii_uppercase().as_slice() {
        b"ZREMRANGEBYRANK" => match (int(&a[2]), int(&a[3])) {
            (Ok(s), Ok(e)) => Range::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return error(out, e),
        },
        b"ZREMRANGEBYSCORE" => match (ScoreBound::parse(&a[2]), ScoreBound::parse(&a[3])) {
            (Some(min), Some(max)) => Range::Score(min, max),
            _ => return error(out, BAD_SCORE_RANGE),
        },
        _ => match (LexBound::parse(&a[2]), LexBound::parse(&a[3])) {
            (Some(min), Some(max)) => Range::Lex(min, max),
            _ => return error(out, BAD_LEX_RANGE),
        },
    };
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let doomed: Vec<Bytes> = w.read_obj(key, Kind::ZSet, |o| {
            as_zset(o)
                .map(|z| {
                    select(z, &range, false, 0, None)
                        .into_iter()
                        .map(|(m, _)| Bytes::copy_from_slice(m))
                        .collect()
                })
                .unwrap_or_default()
        });
        remove_members(w, key, &doomed);
        Frame::Integer(doomed.len() as i64)
    });
    frame_reply(out, result)
}

/// Pops up to `count` members with the lowest (`min`) or highest scores from `key`;
/// `None` when absent.
pub fn pop_from(w: &mut Writer<'_>, key: &[u8], min: bool, count: usize) -> Option<Vec<(Bytes, f64)>> {
    let picked: Option<Vec<(Bytes, f64)>> = w.read_obj(key, Kind::ZSet, |o| {
        as_zset(o).map(|z| {
            let it: Box<dyn Iterator<Item = (&[u8], f64)>> = if min {
                Box::new(z.iter())
            } else {
                Box::new(z.iter().rev())
            };
            it.take(count).map(|(m, s)| (Bytes::copy_from_slice(m), s)).collect()
        })
    });
    let picked = picked?;
    let members: Vec<Bytes> = picked.iter().map(|(m, _)| m.clone()).collect();
    remove_members(w, key, &members);
    Some(picked)
}

/// `ZPOPMIN key [count]`, `ZPOPMAX key [count]`.
fn zpop(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let min = a[0].eq_ignore_ascii_case(b"ZPOPMIN");
    if a.len() > 3 {
        return error(out, family::SYNTAX);
    }
    let count = match a.get(2).map(|c| family::positive(c)).transpose() {
        Ok(c) => c,
        Err(e) => return error(out, e),
    };
    let resp3 = family::resp3(out);
    let key = &a[1];
    let result = node.write([&key[..]], |w| {
        let popped = pop_from(w, key, min, count.unwrap_or(1)).unwrap_or_default();
        let items: Vec<(Frame, Frame)> = popped
            .into_iter()
            .map(|(m, s)| (Frame::Bulk(m), Frame::Double(s)))
            .collect();
        match count {
            Some(_) => family::pairs(resp3, items),
            None => Frame::Array(items.into_iter().flat_map(|(m, s)| [m, s]).collect()),
        }
    });
    frame_reply(out, result)
}

/// Parses `MIN|MAX [COUNT count]` of `ZMPOP`/`BZMPOP`.
pub fn mpop_options(opts: &[Bytes]) -> Result<(bool, usize), &'static str> {
    family::mpop_options(opts, b"MIN", b"MAX")
}

/// Pops from the first non-empty sorted set of `keys`: `[key, [[member, score], ...]]`.
pub fn mpop_first(w: &mut Writer<'_>, keys: &[Bytes], min: bool, count: usize) -> Option<Frame> {
    for key in keys {
        if let Some(p) = pop_from(w, key, min, count) {
            return Some(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::Array(
                    p.into_iter()
                        .map(|(m, s)| Frame::Array(vec![Frame::Bulk(m), Frame::Double(s)]))
                        .collect(),
                ),
            ]));
        }
        if w.failed() {
            return None;
        }
    }
    None
}

/// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]`.
fn zmpop(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (keys, opts) = match super::sets::numkeys(a) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let (min, count) = match mpop_options(opts) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let result = node.write(keys.iter().map(|k| &k[..]), |w| {
        mpop_first(w, keys, min, count).unwrap_or(Frame::NullArray)
    });
    frame_reply(out, result)
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`.
fn zrandmember(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (count, with_scores) = match family::random_options(a, Some(b"WITHSCORES")) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let resp3 = family::resp3(out);
    read(node, a, out, |z| {
        let picked: Vec<(&[u8], f64)> = match (z, count) {
            (None, _) => vec![],
            (Some(z), None) => z.near(family::pick()).into_iter().collect(),
            (Some(z), Some(c)) if c < 0 => (0..c.unsigned_abs()).filter_map(|_| z.near(family::pick())).collect(),
            (Some(z), Some(c)) => {
                let mut all: Vec<_> = z.iter().collect();
                fastrand::shuffle(&mut all);
                all.truncate(c as usize);
                all
            }
        };
        match count {
            None => picked.first().map_or(Frame::Null, |(m, _)| bulk(m)),
            Some(_) => scored(resp3, with_scores, picked),
        }
    })
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: a compact sorted set is returned whole.
fn zscan(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    family::scan(node, a, out, Kind::ZSet, Object::as_zset, |z, from, visit| match from {
        ScanFrom::Whole => {
            z.iter().for_each(|(m, s)| visit(Scanned::Scored(m, s)));
            0
        }
        ScanFrom::Cursor(cursor, count) => z.scan(cursor, count, |m, s| visit(Scanned::Scored(m, s))),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// A sorted set or a set (members scored 1) at `key` as member → score; `None` when
/// absent. Another kind fails the command.
fn load(
    kind: Option<Kind>,
    read: impl FnOnce(Kind, &mut dyn FnMut(Option<&Object>) -> Option<Vec<(Bytes, f64)>>) -> Option<Vec<(Bytes, f64)>>,
) -> Option<Vec<(Bytes, f64)>> {
    let kind = match kind {
        Some(Kind::Set) => Kind::Set,
        _ => Kind::ZSet,
    };
    read(kind, &mut |o| match o {
        Some(Object::ZSet(z)) => Some(z.iter().map(|(m, s)| (Bytes::copy_from_slice(m), s)).collect()),
        Some(Object::Set(s)) => Some(members_scored(s)),
        _ => None,
    })
}

fn members_scored(s: &SetObj) -> Vec<(Bytes, f64)> {
    s.iter().map(|m| (Bytes::copy_from_slice(m), 1.0)).collect()
}

fn load_r(r: &mut Reader<'_>, key: &[u8]) -> Option<Vec<(Bytes, f64)>> {
    let kind = r.kind_of(key).map(|(k, _)| k);
    load(kind, |k, f| r.object(key, k, f))
}

fn load_w(w: &mut Writer<'_>, key: &[u8]) -> Option<Vec<(Bytes, f64)>> {
    let kind = w.kind_of(key).map(|(k, _)| k);
    load(kind, |k, f| w.read_obj(key, k, f))
}

fn combine(op: Op, agg: Aggregate, weights: &[f64], inputs: Vec<Option<Vec<(Bytes, f64)>>>) -> Vec<(Bytes, f64)> {
    let fold = |a: f64, b: f64| {
        let v = match agg {
            Aggregate::Sum => a + b,
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        };
        if v.is_nan() { 0.0 } else { v }
    };
    let weigh = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() { 0.0 } else { v }
    };
    let mut inputs = inputs.into_iter().enumerate();
    let Some((_, first)) = inputs.next() else {
        return vec![];
    };
    let mut acc: HashMap<Bytes, f64> = first
        .unwrap_or_default()
        .into_iter()
        .map(|(m, s)| (m, if op == Op::Diff { s } else { weigh(s, weights[0]) }))
        .collect();
    for (i, input) in inputs {
        let input = input.unwrap_or_default();
        match op {
            Op::Union => {
                for (m, s) in input {
                    let s = weigh(s, weights[i]);
                    acc.entry(m).and_modify(|a| *a = fold(*a, s)).or_insert(s);
                }
            }
            Op::Inter => {
                let other: HashMap<Bytes, f64> = input.into_iter().collect();
                acc.retain(|m, _| other.contains_key(m));
                for (m, a) in acc.iter_mut() {
                    *a = fold(*a, weigh(other[m], weights[i]));
                }
            }
            Op::Diff => {
                for (m, _) in input {
                    acc.remove(&m);
                }
            }
        }
    }
    let mut items: Vec<(Bytes, f64)> = acc.into_iter().collect();
    items.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    items
}

/// `ZUNION|ZINTER|ZDIFF numkeys key ... [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]
/// [WITHSCORES]` and the `*STORE dst numkeys key ...` forms.
fn combine_cmd(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let name = a[0].to_ascii_uppercase();
    let store = name.ends_with(b"STORE");
    let op = match &name[..2 + 3] {
        b"ZUNIO" => Op::Union,
        b"ZINTE" => Op::Inter,
        _ => Op::Diff,
    };
    let args = if store { &a[1..] } else { a };
    let (keys, opts) = match input_keys(&a[0], args) {
        Ok(x) => x,
        Err(e) => return error(out, &e),
    };
    let mut weights = vec![1.0; keys.len()];
    let (mut agg, mut with_scores) = (Aggregate::Sum, false);
    let mut i = 0;
    while i < opts.len() {
        match opts[i].to_ascii_uppercase().as_slice() {
            b"WEIGHTS" if op != Op::Diff && opts.len() - i > keys.len() => {
                for (j, w) in weights.iter_mut().enumerate() {
                    match score(&opts[i + 1 + j]) {
                        Some(v) => *w = v,
                        None => return error(out, "ERR weight value is not a float"),
                    }
                }
                i += keys.len();
            }
            b"AGGREGATE" if op != Op::Diff && i + 1 < opts.len() => {
                agg = match opts[i + 1].to_ascii_uppercase().as_slice() {
                    b"SUM" => Aggregate::Sum,
                    b"MIN" => Aggregate::Min,
                    b"MAX" => Aggregate::Max,
                    _ => return error(out, family::SYNTAX),
                };
                i += 1;
            }
            b"WITHSCORES" if !store => with_scores = true,
            _ => return error(out, family::SYNTAX),
        }
        i += 1;
    }
    if !store {
        let resp3 = family::resp3(out);
        let result = node.read(keys.iter().map(|k| &k[..]), |r| {
            let inputs: Vec<_> = keys.iter().map(|k| load_r(r, k)).collect();
            let items = combine(op, agg, &weights, inputs);
            scored(resp3, with_scores, items.iter().map(|(m, s)| (&m[..], *s)).collect())
        });
        return frame_reply(out, result);
    }
    let dst = &a[1];
    let result = node.write(std::iter::once(&dst[..]).chain(keys.iter().map(|k| &k[..])), |w| {
        let inputs: Vec<_> = keys.iter().map(|k| load_w(w, k)).collect();
        if w.failed() {
            return Frame::Null;
        }
        let items = combine(op, agg, &weights, inputs);
        let n = items.len();
        w.set_object(dst, Object::ZSet(build(items)), None);
        Frame::Integer(n as i64)
    });
    frame_reply(out, result)
}

/// Parses `numkeys key [key ...]` at `args[1..]` as `ZUNION` and its family do (their
/// errors differ from `SINTERCARD`'s).
fn input_keys<'a>(name: &[u8], args: &'a [Bytes]) -> Result<(&'a [Bytes], &'a [Bytes]), String> {
    let n = family::int(&args[1])?;
    if n < 1 {
        return Err(format!(
            "ERR at least 1 input key is needed for '{}' command",
            String::from_utf8_lossy(name).to_lowercase()
        ));
    }
    let n = n as usize;
    if n > args.len() - 2 {
        return Err(family::SYNTAX.into());
    }
    Ok((&args[2..2 + n], &args[2 + n..]))
}

/// `ZINTERCARD numkeys key [key ...] [LIMIT limit]`.
fn zintercard(node: &Node, a: &[Bytes], out: &mut Out) -> Option<Pending> {
    let (keys, opts) = match input_keys(&a[0], a) {
        Ok(x) => x,
        Err(e) => return error(out, &e),
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
        let inputs: Vec<_> = keys.iter().map(|k| load_r(r, k)).collect();
        let n = combine(Op::Inter, Aggregate::Sum, &vec![1.0; keys.len()], inputs).len();
        Frame::Integer(if limit > 0 { n.min(limit) } else { n } as i64)
    });
    frame_reply(out, result)
}
