//! `INFO errorstats` and `kvstore_errors_total{kind}`: error replies counted by their first
//! word (`ERR`, `WRONGTYPE`, `MOVED`, `NOPERM` …), as Redis counts them.
//!
//! Only error replies reach this table, so a mutex is fine here: the hot path of a
//! successful command never touches it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Distinct kinds kept; later new kinds are counted under [`OVERFLOW`] (a client cannot
/// grow the table without bound by inventing error words in scripts).
pub const MAX_KINDS: usize = 128;

/// Where kinds past [`MAX_KINDS`] are counted.
pub const OVERFLOW: &str = "ERRORSTATS_OVERFLOW";

/// Error replies by kind.
#[derive(Debug, Default)]
pub struct ErrorStats {
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl ErrorStats {
    /// Counts one error reply whose text (after `-`) begins `text`.
    pub fn record(&self, text: &[u8]) {
        let word = text.split(|&b| b == b' ' || b == b'\r').next().unwrap_or_default();
        let word = String::from_utf8_lossy(&word[..word.len().min(64)]);
        let mut kinds = self.kinds.lock().expect("error stats");
        if let Some(n) = kinds.get_mut(word.as_ref()) {
            *n += 1;
            return;
        }
        let key = if kinds.len() < MAX_KINDS {
            word.into_owned()
        } else {
            OVERFLOW.to_string()
        };
        *kinds.entry(key).or_default() += 1;
    }

    /// Counts the error reply at the start of `reply` (RESP `-…`), if it is one.
    pub fn record_reply(&self, reply: &[u8]) {
        if let Some(text) = reply.strip_prefix(b"-") {
            self.record(text);
        }
    }

    /// Every kind seen and its count, by kind.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let kinds = self.kinds.lock().expect("error stats");
        kinds.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Errors of every kind.
    pub fn total(&self) -> u64 {
        self.kinds.lock().expect("error stats").values().sum()
    }

    pub fn reset(&self) {
        self.kinds.lock().expect("error stats").clear();
    }

    /// The `# Errorstats` section, in Redis's format.
    pub fn section(&self, out: &mut String) {
        out.push_str("# Errorstats\r\n");
        for (kind, n) in self.counts() {
            let _ = write!(out, "errorstat_{kind}:count={n}\r\n");
        }
        out.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_error_replies_by_their_first_word() {
        let e = ErrorStats::default();
        e.record_reply(b"-ERR unknown command 'FOO'\r\n");
        e.record_reply(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        e.record_reply(b"-ERR syntax error\r\n");
        e.record_reply(b"+OK\r\n");
        e.record(b"MOVED 3999 127.0.0.1:6381");
        assert_eq!(
            e.counts(),
            [
                ("ERR".to_string(), 2),
                ("MOVED".to_string(), 1),
                ("WRONGTYPE".to_string(), 1)
            ]
        );
        assert_eq!(e.total(), 4);
        let mut text = String::new();
        e.section(&mut text);
        assert_eq!(
            text,
            "# Errorstats\r\nerrorstat_ERR:count=2\r\nerrorstat_MOVED:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n"
        );
    }

    #[test]
    fn kinds_past_the_limit_share_one_count() {
        let e = ErrorStats::default();
        for i in 0..MAX_KINDS + 10 {
            e.record(format!("E{i} x").as_bytes());
        }
        let counts = e.counts();
        assert_eq!(counts.len(), MAX_KINDS + 1);
        assert!(counts.contains(&(OVERFLOW.to_string(), 10)));
    }
}
