//! The commands kvstore speaks, as `COMMAND` reports them: name, arity, flags and key
//! positions. One table for the gate and the servers: cluster-aware clients (redis-py's
//! `RedisCluster`, for one) read it to find each command's keys, and both ends must agree.

use bytes::Bytes;

use crate::Frame;

/// Who answers a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    Both,
    /// Only the gate (`CLIENT`, `INFO`, `COMMAND` today).
    Gate,
    /// Only servers (the Redis Cluster commands).
    Server,
}

/// One command.
#[derive(Debug)]
pub struct CommandInfo {
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub served_by: ServedBy,
}

impl CommandInfo {
    /// True when `argc` arguments (name included) suit the command.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The `COMMAND INFO` entry.
    pub fn describe(&self) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(self.name.as_bytes())),
            Frame::Integer(self.arity as i64),
            Frame::Set(
                self.flags
                    .iter()
                    .map(|f| Frame::Simple(Bytes::from_static(f.as_bytes())))
                    .collect(),
            ),
            Frame::Integer(self.first_key as i64),
            Frame::Integer(self.last_key as i64),
            Frame::Integer(self.step as i64),
        ])
    }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);
const RO: &[&str] = &["readonly", "fast"];
const WR: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const FAST: &[&str] = &["fast"];

const fn cmd(name: &'static str, arity: i32, flags: &'static [&'static str], keys: (i32, i32, i32)) -> CommandInfo {
    served(name, arity, flags, keys, ServedBy::Both)
}

const fn served(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    served_by: ServedBy,
) -> CommandInfo {
    CommandInfo {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        served_by,
    }
}

/// Every command, gate and servers together.
pub static COMMANDS: &[CommandInfo] = &[
    cmd("ping", -1, FAST, NONE),
    cmd("echo", 2, FAST, NONE),
    cmd("quit", -1, FAST, NONE),
    cmd("select", 2, FAST, NONE),
    cmd("hello", -1, FAST, NONE),
    served("client", -2, &["admin"], NONE, ServedBy::Gate),
    cmd("command", -1, &["loading"], NONE),
    served("info", -1, &["loading"], NONE, ServedBy::Gate),
    served("cluster", -2, &[], NONE, ServedBy::Server),
    served("readonly", 1, FAST, NONE, ServedBy::Server),
    served("readwrite", 1, FAST, NONE, ServedBy::Server),
    served("asking", 1, FAST, NONE, ServedBy::Server),
    cmd("dbsize", 1, RO, NONE),
    cmd("get", 2, RO, ONE),
    cmd("set", -3, WR, ONE),
    cmd("setnx", 3, WR, ONE),
    cmd("setex", 4, WR, ONE),
    cmd("psetex", 4, WR, ONE),
    cmd("getset", 3, WR, ONE),
    cmd("getdel", 2, WF, ONE),
    cmd("mget", -2, RO, ALL),
    cmd("mset", -3, WR, PAIRS),
    cmd("del", -2, &["write"], ALL),
    cmd("unlink", -2, WF, ALL),
    cmd("exists", -2, RO, ALL),
    cmd("expire", -3, WF, ONE),
    cmd("pexpire", -3, WF, ONE),
    cmd("expireat", -3, WF, ONE),
    cmd("pexpireat", -3, WF, ONE),
    cmd("persist", 2, WF, ONE),
    cmd("ttl", 2, RO, ONE),
    cmd("pttl", 2, RO, ONE),
    cmd("incr", 2, WR, ONE),
    cmd("incrby", 3, WR, ONE),
    cmd("decr", 2, WR, ONE),
    cmd("decrby", 3, WR, ONE),
    cmd("append", 3, WR, ONE),
    cmd("strlen", 2, RO, ONE),
];

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    COMMANDS.iter().find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// `COMMAND [COUNT | LIST | INFO name... | DOCS ...]` for the commands `who` serves.
pub fn command_reply(args: &[Bytes], who: ServedBy) -> Frame {
    let mine = || {
        COMMANDS
            .iter()
            .filter(move |c| c.served_by == ServedBy::Both || c.served_by == who)
    };
    let Some(sub) = args.get(1) else {
        return Frame::Array(mine().map(CommandInfo::describe).collect());
    };
    match sub.to_ascii_uppercase().as_slice() {
        b"COUNT" => Frame::Integer(mine().count() as i64),
        b"LIST" => Frame::Array(
            mine()
                .map(|c| Frame::Bulk(Bytes::from_static(c.name.as_bytes())))
                .collect(),
        ),
        b"INFO" => Frame::Array(
            args[2..]
                .iter()
                .map(|n| {
                    mine()
                        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(n))
                        .map_or(Frame::NullArray, CommandInfo::describe)
                })
                .collect(),
        ),
        // redis-cli asks for docs to show hints; having none is fine.
        b"DOCS" => Frame::Map(vec![]),
        _ => Frame::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_arity_follows_redis() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommandatall").is_none());
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let mset = lookup(b"MSET").unwrap();
        assert!(mset.arity_ok(3) && mset.arity_ok(5) && !mset.arity_ok(2));
    }

    #[test]
    fn each_side_lists_what_it_serves() {
        let names = |who| {
            let Frame::Array(list) = command_reply(&[Bytes::from("COMMAND"), Bytes::from("LIST")], who) else {
                panic!()
            };
            list.into_iter()
                .map(|f| String::from_utf8(f.as_bytes().unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let (gate, server) = (names(ServedBy::Gate), names(ServedBy::Server));
        assert!(gate.contains(&"info".to_string()) && !gate.contains(&"cluster".to_string()));
        assert!(server.contains(&"cluster".to_string()) && !server.contains(&"client".to_string()));
        assert!(gate.contains(&"get".to_string()) && server.contains(&"get".to_string()));
    }
}
