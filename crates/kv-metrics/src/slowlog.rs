//! `SLOWLOG GET | LEN | RESET | HELP`: the last commands that took at least
//! `slowlog-log-slower-than` microseconds (negative: none; 0: every command), at most
//! `slowlog-max-len` of them, newest first, as Redis keeps them.
//!
//! The settings are atomics read once per batch of requests; the entries sit behind a
//! mutex taken only to add a slow command or to answer `SLOWLOG`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kv_proto::Frame;

/// Arguments kept per entry; the last kept one says how many more there were.
const MAX_ARGS: usize = 32;
/// Bytes kept per argument; the rest is summarised.
const MAX_ARG_BYTES: usize = 128;

/// One logged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Unix time (seconds) at which it was logged.
    pub time: u64,
    pub micros: u64,
    /// The command and its arguments, trimmed and redacted.
    pub args: Vec<Bytes>,
    /// The client's address (`ip:port`) and name.
    pub client_addr: String,
    pub client_name: String,
}

/// Who ran a command, for its entry (asked only when a command is logged).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub addr: String,
    pub name: String,
}

/// The slow log of one process.
#[derive(Debug)]
pub struct SlowLog {
    /// `slowlog-log-slower-than`, µs.
    threshold: AtomicI64,
    /// `slowlog-max-len`.
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            threshold: AtomicI64::new(10_000),
            max_len: AtomicUsize::new(128),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }
}

impl SlowLog {
    /// Applies `slowlog-log-slower-than` (µs) and `slowlog-max-len`.
    pub fn configure(&self, threshold_us: i64, max_len: usize) {
        self.threshold.store(threshold_us, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
    }

    /// The duration from which commands are logged; `None` when logging is off.
    pub fn threshold(&self) -> Option<Duration> {
        let t = self.threshold.load(Ordering::Relaxed);
        (t >= 0).then(|| Duration::from_micros(t as u64))
    }

    /// Logs `args` if `took` reaches the threshold. `EXEC` is not logged (the commands it
    /// ran are), nor `AUTH`; passwords and rules are redacted.
    pub fn offer(&self, took: Duration, args: &[Bytes], client: impl FnOnce() -> Client) {
        if self.threshold().is_none_or(|t| took < t) {
            return;
        }
        let Some(name) = args.first() else { return };
        if name.eq_ignore_ascii_case(b"exec") || name.eq_ignore_ascii_case(b"auth") {
            return;
        }
        let client = client();
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            micros: took.as_micros() as u64,
            args: trim(&redact(args)),
            client_addr: client.addr,
            client_name: client.name,
        };
        let max = self.max_len.load(Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("slow log");
        entries.push_front(entry);
        entries.truncate(max);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("slow log").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest `count` entries (all of them for `None`).
    pub fn newest(&self, count: Option<usize>) -> Vec<Entry> {
        let entries = self.entries.lock().expect("slow log");
        entries.iter().take(count.unwrap_or(usize::MAX)).cloned().collect()
    }

    pub fn reset(&self) {
        self.entries.lock().expect("slow log").clear();
    }

    /// Answers `SLOWLOG …` (`args` from the command name on).
    pub fn command(&self, args: &[Bytes]) -> Frame {
        let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        match (&sub[..], args.len()) {
            (b"GET", 2 | 3) => {
                let count = match args.get(2) {
                    None => Some(10),
                    Some(n) => match std::str::from_utf8(n).ok().and_then(|n| n.parse::<i64>().ok()) {
                        Some(-1) => None,
                        Some(n) if n >= 0 => Some(n as usize),
                        _ => return Frame::error("ERR count should be greater than or equal to -1"),
                    },
                };
                Frame::Array(self.newest(count).iter().map(Entry::to_frame).collect())
            }
            (b"LEN", 2) => Frame::Integer(self.len() as i64),
            (b"RESET", 2) => {
                self.reset();
                Frame::simple("OK")
            }
            (b"HELP", 2) => Frame::help(&[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Prints this help.",
            ]),
            _ => Frame::unknown_subcommand("SLOWLOG", args.get(1).map_or(&b""[..], |s| &s[..])),
        }
    }
}

impl Entry {
    /// Redis's six-element entry.
    pub fn to_frame(&self) -> Frame {
        Frame::Array(vec![
            Frame::Integer(self.id as i64),
            Frame::Integer(self.time as i64),
            Frame::Integer(self.micros as i64),
            Frame::Array(self.args.iter().map(|a| Frame::Bulk(a.clone())).collect()),
            Frame::bulk(self.client_addr.clone()),
            Frame::bulk(self.client_name.clone()),
        ])
    }
}

/// Secrets replaced by `(redacted)`: `AUTH`'s, `HELLO … AUTH`'s, `ACL SETUSER`'s rules
/// (they may hold passwords) and `CONFIG SET` of a password.
fn redact(args: &[Bytes]) -> Vec<Bytes> {
    const REDACTED: Bytes = Bytes::from_static(b"(redacted)");
    let mut out = args.to_vec();
    let is = |i: usize, w: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(w));
    if is(0, b"hello") {
        for i in 1..out.len() {
            if is(i, b"auth") {
                out.iter_mut().skip(i + 1).take(2).for_each(|a| *a = REDACTED);
            }
        }
    } else if is(0, b"acl") && is(1, b"setuser") {
        out.iter_mut().skip(3).for_each(|a| *a = REDACTED);
    } else if is(0, b"config") && is(1, b"set") {
        for i in (2..out.len()).step_by(2) {
            if (is(i, b"requirepass") || is(i, b"masterauth"))
                && let Some(v) = out.get_mut(i + 1)
            {
                *v = REDACTED;
            }
        }
    }
    out
}

/// Keeps 32 arguments (the last of them saying how many more there were) and 128 bytes of
/// each (saying how many more there were), as Redis does.
fn trim(args: &[Bytes]) -> Vec<Bytes> {
    let kept = if args.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        args.len()
    };
    let mut out: Vec<Bytes> = args[..kept]
        .iter()
        .map(|a| {
            if a.len() <= MAX_ARG_BYTES {
                a.clone()
            } else {
                let mut s = a[..MAX_ARG_BYTES].to_vec();
                s.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes());
                Bytes::from(s)
            }
        })
        .collect();
    if args.len() > MAX_ARGS {
        out.push(Bytes::from(format!("... ({} more arguments)", args.len() - kept)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    fn bulk_args(f: &Frame) -> Vec<String> {
        let Frame::Array(e) = f else { panic!("{f:?}") };
        let Frame::Array(a) = &e[3] else { panic!() };
        a.iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes().unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn logs_commands_at_or_over_the_threshold_newest_first_up_to_the_limit() {
        let log = SlowLog::default();
        log.configure(100, 2);
        let client = || Client {
            addr: "127.0.0.1:5000".into(),
            name: "me".into(),
        };
        log.offer(Duration::from_micros(99), &args(&["get", "a"]), client);
        assert_eq!(log.len(), 0);
        for k in ["a", "b", "c"] {
            log.offer(Duration::from_micros(100), &args(&["get", k]), client);
        }
        let got = log.newest(None);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, got[1].id), (2, 1));
        assert_eq!(got[0].args, args(&["get", "c"]));
        let Frame::Array(entries) = log.command(&args(&["slowlog", "get", "1"])) else {
            panic!()
        };
        assert_eq!(entries.len(), 1);
        let Frame::Array(e) = &entries[0] else { panic!() };
        assert_eq!(e.len(), 6);
        assert_eq!(e[2], Frame::Integer(100));
        assert_eq!(e[4], Frame::bulk("127.0.0.1:5000"));
        assert_eq!(e[5], Frame::bulk("me"));
        assert_eq!(log.command(&args(&["slowlog", "len"])), Frame::Integer(2));
        assert_eq!(log.command(&args(&["slowlog", "reset"])), Frame::simple("OK"));
        assert!(log.is_empty());
        log.configure(-1, 2);
        log.offer(Duration::from_secs(9), &args(&["get", "a"]), client);
        assert!(log.is_empty());
    }

    #[test]
    fn trims_long_commands_and_arguments_as_redis_does() {
        let log = SlowLog::default();
        log.configure(0, 10);
        let mut many = args(&["sadd", "set"]);
        many.extend((3..=33).map(|i| Bytes::from(i.to_string())));
        log.offer(Duration::ZERO, &many, Client::default);
        let e = log.command(&args(&["slowlog", "get"]));
        let Frame::Array(entries) = e else { panic!() };
        let got = bulk_args(&entries[0]);
        assert_eq!(got.len(), 32);
        assert_eq!(got[30], "31");
        assert_eq!(got[31], "... (2 more arguments)");
        log.offer(
            Duration::ZERO,
            &args(&["sadd", "set", &"A".repeat(129)]),
            Client::default,
        );
        let Frame::Array(entries) = log.command(&args(&["slowlog", "get", "1"])) else {
            panic!()
        };
        assert_eq!(
            bulk_args(&entries[0])[2],
            format!("{}... (1 more bytes)", "A".repeat(128))
        );
    }

    #[test]
    fn secrets_are_redacted_and_exec_and_auth_are_not_logged() {
        let log = SlowLog::default();
        log.configure(0, 10);
        let c = Client::default;
        log.offer(Duration::ZERO, &args(&["auth", "pw"]), c);
        log.offer(Duration::ZERO, &args(&["EXEC"]), c);
        log.offer(Duration::ZERO, &args(&["acl", "setuser", "u", ">pw", "+get"]), c);
        log.offer(
            Duration::ZERO,
            &args(&["hello", "3", "AUTH", "u", "pw", "setname", "n"]),
            c,
        );
        log.offer(
            Duration::ZERO,
            &args(&["config", "set", "requirepass", "pw", "hz", "10"]),
            c,
        );
        let got: Vec<Vec<Bytes>> = log.newest(None).into_iter().map(|e| e.args).collect();
        assert_eq!(
            got,
            [
                args(&["config", "set", "requirepass", "(redacted)", "hz", "10"]),
                args(&["hello", "3", "AUTH", "(redacted)", "(redacted)", "setname", "n"]),
                args(&["acl", "setuser", "u", "(redacted)", "(redacted)"]),
            ]
        );
    }

    #[test]
    fn get_refuses_counts_below_minus_one() {
        let log = SlowLog::default();
        assert_eq!(
            log.command(&args(&["slowlog", "get", "-2"])),
            Frame::error("ERR count should be greater than or equal to -1")
        );
        assert!(
            log.command(&args(&["slowlog", "nope"]))
                .as_error()
                .is_some_and(|e| e.starts_with(b"ERR unknown subcommand"))
        );
    }
}
