//! `CONFIG GET | SET | RESETSTAT | REWRITE | HELP`, answered alike by gates and servers.
//!
//! Clients, exporters and the upstream Redis test suite read and set Redis parameters by
//! name. Each process answers for itself: every parameter below reads back what was last set
//! on it (its starting value is the process's own setting or Redis's default). Most are
//! recorded, not applied — real limits come from each process's command line (see the
//! README). The [`CLUSTER_WIDE`] ones (the sizes up to which collections stay compact) are
//! applied by every server, and a gate passes a `CONFIG SET` of them on to every server.
//! Redis 7's old names (`*-ziplist-*`) are aliases of the new (`*-listpack-*`). Unknown
//! parameters are refused as Redis refuses them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::Frame;
use bytes::Bytes;

/// Parameters and their starting values (Redis 7.0's defaults unless the gate knows better).
const DEFAULTS: &[(&str, &str)] = &[
    ("activerehashing", "yes"),
    ("aof-use-rdb-preamble", "yes"),
    ("appendfsync", "everysec"),
    ("appendonly", "no"),
    ("busy-reply-threshold", "5000"),
    ("client-query-buffer-limit", "1073741824"),
    ("cluster-enabled", "no"),
    ("databases", "1"),
    ("hash-max-listpack-entries", "128"),
    ("hash-max-listpack-value", "64"),
    ("hash-max-ziplist-entries", "128"),
    ("hash-max-ziplist-value", "64"),
    ("hll-sparse-max-bytes", "3000"),
    ("hz", "10"),
    ("latency-monitor-threshold", "0"),
    ("latency-tracking", "yes"),
    ("latency-tracking-info-percentiles", "50 99 99.9"),
    ("lazyfree-lazy-user-flush", "no"),
    ("list-compress-depth", "0"),
    ("list-max-listpack-size", "-2"),
    (
        "client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    ),
    ("list-max-ziplist-size", "-2"),
    ("loglevel", "notice"),
    ("lua-time-limit", "5000"),
    ("maxclients", "10000"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "allkeys-lru"),
    ("maxmemory-samples", "5"),
    ("notify-keyspace-events", ""),
    ("proto-max-bulk-len", "536870912"),
    ("rdb-key-save-delay", "0"),
    ("replica-read-only", "yes"),
    ("save", ""),
    ("set-max-intset-entries", "512"),
    ("set-max-listpack-entries", "128"),
    ("set-max-listpack-value", "64"),
    ("slowlog-log-slower-than", "10000"),
    ("slowlog-max-len", "128"),
    ("tcp-keepalive", "300"),
    ("timeout", "0"),
    ("zset-max-listpack-entries", "128"),
    ("zset-max-listpack-value", "64"),
    ("zset-max-ziplist-entries", "128"),
    ("zset-max-ziplist-value", "64"),
];

/// Old names and the parameter they stand for: setting either sets both.
const ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("lua-time-limit", "busy-reply-threshold"),
];

/// The parameters every server applies (numbers), which a gate passes on to them.
/// The bytes of a memory size (`32mb`, `1024`); `None` when it is not one.
fn memory_bytes(v: &str) -> Option<usize> {
    if !is_memory(v) {
        return None;
    }
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let n: usize = v[..digits].parse().ok()?;
    let unit = match &v[digits..].to_ascii_lowercase()[..] {
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => 1,
    };
    n.checked_mul(unit)
}

/// A memory size as Redis reads one: digits and an optional unit (`b`, `k`, `kb`, `m`, `mb`,
/// `g`, `gb`, any case).
fn is_memory(v: &str) -> bool {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let unit = v[digits..].to_ascii_lowercase();
    digits > 0 && ["", "b", "k", "kb", "m", "mb", "g", "gb"].contains(&unit.as_str())
}

/// The parameters of the slow log and the latency monitor (integers; kv-metrics applies them).
pub const OBSERVING: &[&str] = &[
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
];

pub const CLUSTER_WIDE: &[&str] = &[
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "list-compress-depth",
    "hll-sparse-max-bytes",
    "notify-keyspace-events",
];

/// True when a `CONFIG SET` (`a[0]` is `CONFIG`) names a [`CLUSTER_WIDE`] parameter.
pub fn sets_cluster_wide(a: &[Bytes]) -> bool {
    a.len() >= 4
        && a[1].eq_ignore_ascii_case(b"SET")
        && a[2..]
            .iter()
            .step_by(2)
            .any(|n| CLUSTER_WIDE.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(n)))
}

/// True for `CONFIG RESETSTAT`: the caller zeroes its counters (`INFO commandstats`).
pub fn resets_stats(args: &[Bytes]) -> bool {
    args.len() == 2 && args[1].eq_ignore_ascii_case(b"RESETSTAT")
}

const HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Print this help.",
];

/// A process's parameter table.
pub struct Settings {
    values: Mutex<BTreeMap<&'static str, String>>,
}

impl Settings {
    /// The defaults, with the process's own `maxclients` and `proto-max-bulk-len`.
    pub fn new(max_clients: usize, max_bulk_len: usize) -> Settings {
        let mut values: BTreeMap<&'static str, String> = DEFAULTS.iter().map(|&(k, v)| (k, v.to_string())).collect();
        values.insert("maxclients", max_clients.to_string());
        values.insert("proto-max-bulk-len", max_bulk_len.to_string());
        Settings {
            values: Mutex::new(values),
        }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        // The map is never left half-changed: a poisoned lock still holds a valid table.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A parameter's value as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.values().get(name).cloned()
    }

    /// A numeric parameter's value (`None` when unknown or not a number).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.values().get(name)?.parse().ok()
    }

    /// The hard `client-output-buffer-limit` of class `class` (`pubsub` …) in bytes.
    pub fn output_limit(&self, class: &str) -> Option<usize> {
        let value = self.values().get("client-output-buffer-limit")?.clone();
        let words: Vec<&str> = value.split_whitespace().collect();
        let at = words.iter().position(|w| w.eq_ignore_ascii_case(class))?;
        memory_bytes(words.get(at + 1)?)
    }

    /// Serves `CONFIG ...` (`a[0]` is `CONFIG`).
    pub fn command(&self, a: &[Bytes]) -> Frame {
        let sub = a[1].to_ascii_uppercase();
        let arity = || {
            Frame::error(format!(
                "ERR wrong number of arguments for 'config|{}' command",
                String::from_utf8_lossy(&a[1]).to_ascii_lowercase()
            ))
        };
        match sub.as_slice() {
            b"GET" if a.len() >= 3 => {
                let values = self.values();
                let pairs = values
                    .iter()
                    .filter(|(k, _)| {
                        a[2..]
                            .iter()
                            .any(|p| crate::glob::matches(&p.to_ascii_lowercase(), k.as_bytes()))
                    })
                    .map(|(k, v)| (Frame::bulk(*k), Frame::bulk(v.clone())))
                    .collect();
                Frame::Map(pairs)
            }
            b"SET" if a.len() >= 4 && a.len().is_multiple_of(2) => {
                let mut values = self.values();
                let mut changes = Vec::new();
                for pair in a[2..].chunks_exact(2) {
                    let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                    let Some((&key, _)) = values.get_key_value(name.as_str()) else {
                        return Frame::error(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                            String::from_utf8_lossy(&pair[0])
                        ));
                    };
                    let mut value = String::from_utf8_lossy(&pair[1]).into_owned();
                    if key == "notify-keyspace-events" {
                        match crate::notify::parse(&value) {
                            Some(flags) => value = crate::notify::to_string(flags),
                            None => {
                                return Frame::error(format!(
                                    "ERR CONFIG SET failed (possibly related to argument '{key}') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
                                ));
                            }
                        }
                    } else if (CLUSTER_WIDE.contains(&key) || OBSERVING.contains(&key)) && value.parse::<i64>().is_err()
                    {
                        return Frame::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{key}') - argument couldn't be parsed into an integer"
                        ));
                    }
                    if key == "latency-tracking-info-percentiles"
                        && !value
                            .split_whitespace()
                            .all(|p| p.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p)))
                    {
                        return Frame::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{key}') - latency-tracking-info-percentiles: percentile must be between 0.0 and 100.0"
                        ));
                    }
                    if key == "maxmemory" && !is_memory(&value) {
                        return Frame::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{key}') - argument must be a memory value"
                        ));
                    }
                    changes.push((key, value));
                }
                for (k, v) in changes {
                    for &(old, new) in ALIASES {
                        if k == old {
                            values.insert(new, v.clone());
                        } else if k == new {
                            values.insert(old, v.clone());
                        }
                    }
                    values.insert(k, v);
                }
                Frame::simple("OK")
            }
            b"RESETSTAT" if a.len() == 2 => Frame::simple("OK"),
            b"REWRITE" if a.len() == 2 => Frame::error("ERR The server is running without a config file"),
            b"HELP" if a.len() == 2 => Frame::help(HELP),
            b"GET" | b"SET" | b"RESETSTAT" | b"REWRITE" | b"HELP" => arity(),
            _ => Frame::error(format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(&a[1])
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(s: &Settings, a: &[&str]) -> Frame {
        s.command(&a.iter().map(|x| Bytes::from(x.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn get_set_round_trip_and_unknown_names_are_refused() {
        let s = Settings::new(100, 1024);
        assert_eq!(
            call(&s, &["CONFIG", "GET", "maxclients"]),
            Frame::Map(vec![(Frame::bulk("maxclients"), Frame::bulk("100"))])
        );
        assert_eq!(call(&s, &["config", "set", "Save", "900 1"]), Frame::simple("OK"));
        assert_eq!(
            call(&s, &["CONFIG", "GET", "sav*"]),
            Frame::Map(vec![(Frame::bulk("save"), Frame::bulk("900 1"))])
        );
        let e = call(&s, &["CONFIG", "SET", "save", "", "nosuch", "1"]);
        assert_eq!(
            e.as_error(),
            Some(&b"ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"[..])
        );
        assert_eq!(
            call(&s, &["CONFIG", "GET", "save"]),
            Frame::Map(vec![(Frame::bulk("save"), Frame::bulk("900 1"))]),
            "a refused CONFIG SET changes nothing"
        );
        assert!(call(&s, &["CONFIG", "SET", "save"]).as_error().is_some());
        assert_eq!(call(&s, &["CONFIG", "SET", "maxmemory", "100MB"]), Frame::simple("OK"));
        assert_eq!(s.output_limit("pubsub"), Some(33554432));
        call(&s, &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 0 0"]);
        assert_eq!(s.output_limit("pubsub"), Some(1024 * 1024));
        let e = call(&s, &["CONFIG", "SET", "maxmemory", "bla"]);
        assert!(
            e.as_error()
                .unwrap()
                .starts_with(b"ERR CONFIG SET failed (possibly related to argument 'maxmemory')")
        );
    }

    #[test]
    fn old_names_alias_new_ones_and_sizes_are_numbers() {
        let s = Settings::new(100, 1024);
        assert_eq!(
            call(&s, &["CONFIG", "SET", "zset-max-ziplist-entries", "0"]),
            Frame::simple("OK")
        );
        assert_eq!(s.number("zset-max-listpack-entries"), Some(0));
        assert!(
            call(&s, &["CONFIG", "SET", "hash-max-listpack-value", "x"])
                .as_error()
                .is_some()
        );
        let a: Vec<Bytes> = ["config", "set", "Set-Max-Intset-Entries", "1"]
            .iter()
            .map(|x| Bytes::from(*x))
            .collect();
        assert!(sets_cluster_wide(&a));
        assert!(!sets_cluster_wide(&a[..3]));
    }
}
