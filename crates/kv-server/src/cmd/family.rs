//! The collection families (hashes, lists, sets, sorted sets): each command is one function
//! that parses its arguments and applies itself, found by name in one table. The families
//! have some hundred commands with small parsers each; a function per command keeps each in
//! one place without an enum variant and a struct apiece.

use std::sync::LazyLock;

use bytes::Bytes;
use kv_proto::commands::CommandInfo;
use kv_proto::{Frame, Out};

use super::{geo, hashes, hll, lists, sets, sort, zsets};
use crate::node::{Node, Pending, Refusal};

/// A command's function: `args[0]` is its name.
pub type Run = fn(&Node, &[Bytes], &mut Out) -> Option<Pending>;

/// One entry of a family's table: name (lower case), function, true when it only reads.
pub type Entry = (&'static str, Run, bool);

/// A collection command, ready to apply.
pub struct Call {
    pub name: &'static str,
    pub run: Run,
    pub read: bool,
    pub args: Vec<Bytes>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Call({})", self.name)
    }
}

/// Every family's commands.
const FAMILIES: [&[Entry]; 7] = [
    hashes::COMMANDS,
    lists::COMMANDS,
    sets::COMMANDS,
    zsets::COMMANDS,
    hll::COMMANDS,
    geo::COMMANDS,
    sort::COMMANDS,
];

/// The families' commands, indexed by their position in `kv_proto`'s command table
/// ([`CommandInfo::index`]). Found for every collection command from the `CommandInfo` the
/// caller already has, so no second lookup by name: a `HashMap` by name (SipHash) and an owned
/// lower-case copy of the name were about 300 instructions of an `LPUSH` at `-P 16`
/// (callgrind). A family command missing from the command table would be unknown; a unit test
/// holds them all in it.
static TABLE: LazyLock<Vec<Option<Entry>>> = LazyLock::new(|| {
    let mut table = vec![None; kv_proto::commands::COMMANDS.len()];
    for e in FAMILIES.into_iter().flatten() {
        if let Some(info) = kv_proto::commands::lookup(e.0.as_bytes()) {
            table[info.index()] = Some(*e);
        }
    }
    table
});

/// The collection command `info` describes, if it is one.
pub fn find(info: &'static CommandInfo) -> Option<Found> {
    let entry = TABLE.get(info.index())?.as_ref()?;
    Some(Found { entry, info })
}

/// A collection command found, not yet given its arguments.
pub struct Found {
    entry: &'static Entry,
    info: &'static CommandInfo,
}

impl Found {
    /// The command with `args` (`args[0]` its name), or the arity error when the count of
    /// arguments does not suit it.
    pub fn call(self, args: Vec<Bytes>) -> Result<Call, String> {
        let &(name, run, read) = self.entry;
        if !self.info.arity_ok(args.len()) {
            return Err(format!("ERR wrong number of arguments for '{name}' command"));
        }
        Ok(Call { name, run, read, args })
    }
}

/// Every command of the families, for tests.
#[cfg(test)]
pub fn names() -> impl Iterator<Item = &'static str> {
    FAMILIES.into_iter().flatten().map(|e| e.0)
}

/// Reads the collection at `a[1]` (of `kind`, seen through `view`) and replies with `f`'s
/// frame; another kind is `WRONGTYPE`.
pub fn read<T>(
    node: &Node,
    a: &[Bytes],
    out: &mut Out,
    kind: kv_proto::Kind,
    view: fn(&kv_store::Object) -> Option<&T>,
    f: impl FnOnce(Option<&T>) -> Frame,
) -> Option<Pending> {
    let key = &a[1];
    let result = node.read([&key[..]], |r| r.object(key, kind, |o| f(o.and_then(view))));
    frame_reply(out, result)
}

/// [`read`] for replies that can be long (`LRANGE`, `HGETALL`, `SMEMBERS`): `f` writes
/// straight into `out` under the read lock, so no frame nor copy of each element is made
/// (profiled with `LRANGE 0 599`: the per-element allocations were half the server's time).
pub fn read_into<T>(
    node: &Node,
    a: &[Bytes],
    out: &mut Out,
    kind: kv_proto::Kind,
    view: fn(&kv_store::Object) -> Option<&T>,
    f: impl FnOnce(&mut Out, Option<&T>),
) -> Option<Pending> {
    let key = &a[1];
    let mark = out.len();
    let result = node.read([&key[..]], |r| r.object(key, kind, |o| f(out, o.and_then(view))));
    super::reply_written(out, mark, result)
}

/// Parses `<first>|<second> [COUNT count]` of the `*MPOP` commands: true for `first`.
pub fn mpop_options(opts: &[Bytes], first: &[u8], second: &[u8]) -> Result<(bool, usize), &'static str> {
    let Some((dir, rest)) = opts.split_first() else {
        return Err(SYNTAX);
    };
    let is_first = if dir.eq_ignore_ascii_case(first) {
        true
    } else if dir.eq_ignore_ascii_case(second) {
        false
    } else {
        return Err(SYNTAX);
    };
    let count = match rest {
        [] => 1,
        [c, n] if c.eq_ignore_ascii_case(b"COUNT") => match int(n) {
            Ok(n) if n > 0 => n as usize,
            _ => return Err("ERR count should be greater than 0"),
        },
        _ => return Err(SYNTAX),
    };
    Ok((is_first, count))
}

/// Writes a reply built as a frame, or the refusal.
pub fn frame_reply(out: &mut Out, result: Result<(Frame, Option<Pending>), Refusal>) -> Option<Pending> {
    super::reply(out, result, |out, f| out.frame(&f))
}

/// Writes an error reply (`msg` with its code) for a command that did not run.
pub fn error(out: &mut Out, msg: &str) -> Option<Pending> {
    kv_proto::write::error(out, msg.as_bytes());
    None
}

pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";

/// An integer argument, as Redis parses one.
pub fn int(b: &[u8]) -> Result<i64, &'static str> {
    super::args::parse_i64(b).ok_or(NOT_INTEGER)
}

/// A count that must not be negative (`ERR value is out of range, must be positive`).
pub fn positive(b: &[u8]) -> Result<usize, &'static str> {
    match int(b)? {
        n if n < 0 => Err("ERR value is out of range, must be positive"),
        n => Ok(n as usize),
    }
}

/// Pairs as Redis 7 replies with them (`HRANDFIELD … WITHVALUES`, `ZRANGE … WITHSCORES`):
/// an array of two-element arrays in RESP3, one flat array in RESP2.
pub fn pairs(resp3: bool, items: Vec<(Frame, Frame)>) -> Frame {
    if resp3 {
        Frame::Array(items.into_iter().map(|(a, b)| Frame::Array(vec![a, b])).collect())
    } else {
        Frame::Array(items.into_iter().flat_map(|(a, b)| [a, b]).collect())
    }
}

/// True when `out`'s client speaks RESP3.
pub fn resp3(out: &Out) -> bool {
    out.proto == kv_proto::Protocol::Resp3
}

/// A bulk frame of bytes.
pub fn bulk(b: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(b))
}

/// Parses `[MATCH pattern] [COUNT n]` of the `*SCAN` commands (after the cursor); `Err`
/// with the error reply.
pub fn scan_options(a: &[Bytes]) -> Result<(Option<Bytes>, usize), &'static str> {
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = 0;
    while i < a.len() {
        let opt = a[i].to_ascii_uppercase();
        let v = a.get(i + 1).ok_or(SYNTAX)?;
        match &opt[..] {
            b"MATCH" => pattern = Some(v.clone()).filter(|p| &p[..] != b"*"),
            b"COUNT" => {
                count = match int(v)? {
                    n if n < 1 => return Err(SYNTAX),
                    n => n as usize,
                }
            }
            _ => return Err(SYNTAX),
        }
        i += 2;
    }
    Ok((pattern, count))
}

/// Parses `key [count [<with>]]` of `SRANDMEMBER` (no `with`), `HRANDFIELD` (`WITHVALUES`)
/// and `ZRANDMEMBER` (`WITHSCORES`): the count, and whether `with` was given; `Err` with
/// Redis's error, in Redis's order.
pub fn random_options(a: &[Bytes], with: Option<&[u8]>) -> Result<(Option<i64>, bool), &'static str> {
    let count = a.get(2).map(|c| int(c)).transpose()?;
    let with = match a.get(3) {
        None => false,
        Some(o) if with.is_some_and(|w| o.eq_ignore_ascii_case(w)) && a.len() == 4 => true,
        Some(_) => return Err(SYNTAX),
    };
    if count.is_some_and(|c| c < -(i64::MAX / 2)) {
        return Err("ERR value is out of range");
    }
    Ok((count, with))
}

/// A `*SCAN` cursor: a decimal position; `Err` with Redis's error.
pub fn cursor(b: &[u8]) -> Result<usize, &'static str> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|c| usize::try_from(c).unwrap_or(usize::MAX))
        .ok_or("ERR invalid cursor")
}

/// The reply of a `*SCAN`: the next cursor and the items.
pub fn scan_reply(next: usize, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(items)])
}

/// One element a collection scan visits: its name (what `MATCH` is matched against) and
/// what follows it in the reply.
pub enum Scanned<'a> {
    Member(&'a [u8]),
    Field(&'a [u8], &'a [u8]),
    Scored(&'a [u8], f64),
}

/// Where a collection scan starts: `Whole` for a compact collection, returned whole with
/// cursor 0 (as Redis returns a listpack or an intset), else the cursor and `COUNT`.
pub enum ScanFrom {
    Whole,
    Cursor(usize, usize),
}

/// `HSCAN`, `SSCAN` and `ZSCAN`: `key cursor [MATCH pattern] [COUNT count]` over the
/// collection at `a[1]` of `kind`. `walk` visits the elements from where it is told and
/// returns the next cursor (0 when done).
pub fn scan<T>(
    node: &Node,
    a: &[Bytes],
    out: &mut Out,
    kind: kv_proto::Kind,
    view: fn(&kv_store::Object) -> Option<&T>,
    walk: impl Fn(&T, ScanFrom, &mut dyn FnMut(Scanned<'_>)) -> usize,
) -> Option<Pending> {
    let (cursor, (pattern, count)) = match cursor(&a[2]).and_then(|c| Ok((c, scan_options(&a[3..])?))) {
        Ok(x) => x,
        Err(e) => return error(out, e),
    };
    let key = &a[1];
    let result = node.read([&key[..]], |r| {
        let compact = r.value(key, |v| matches!(v, Some((kv_store::Val::Packed(..), _))));
        r.object(key, kind, |o| {
            let Some(c) = o.and_then(view) else {
                return scan_reply(0, vec![]);
            };
            let mut items = Vec::new();
            let mut visit = |e: Scanned<'_>| {
                let name = match e {
                    Scanned::Member(n) | Scanned::Field(n, _) | Scanned::Scored(n, _) => n,
                };
                if pattern.as_ref().is_some_and(|p| !kv_proto::glob::matches(p, name)) {
                    return;
                }
                items.push(bulk(name));
                match e {
                    Scanned::Member(_) => {}
                    Scanned::Field(_, v) => items.push(bulk(v)),
                    Scanned::Scored(_, s) => {
                        let mut buf = [0u8; 32];
                        items.push(bulk(kv_proto::write::format_double(s, &mut buf)));
                    }
                }
            };
            let from = if compact {
                ScanFrom::Whole
            } else {
                ScanFrom::Cursor(cursor, count)
            };
            let next = walk(c, from, &mut visit);
            scan_reply(next, items)
        })
    });
    frame_reply(out, result)
}

/// `[start, end]` of a sequence of `len` from Redis's inclusive, possibly negative indices;
/// `None` when empty.
pub fn index_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { len + end } else { end.min(len - 1) };
    (start <= end && start < len && end >= 0).then_some((start as usize, end as usize))
}

/// A random pick from 0..n for the `*RAND*` commands and `SPOP`.
pub fn pick() -> usize {
    fastrand::usize(..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_command_is_in_the_shared_table() {
        for name in names() {
            let info = kv_proto::commands::lookup(name.as_bytes());
            assert!(info.is_some(), "{name}");
            assert_eq!(info.and_then(find).map(|f| f.entry.0), Some(name));
        }
    }

    #[test]
    fn index_ranges_as_redis_clamps_them() {
        assert_eq!(index_range(0, -1, 3), Some((0, 2)));
        assert_eq!(index_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(index_range(2, 1, 3), None);
        assert_eq!(index_range(5, 10, 3), None);
        assert_eq!(index_range(0, -4, 3), None);
        assert_eq!(index_range(0, 0, 0), None);
    }
}
