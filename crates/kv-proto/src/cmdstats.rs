//! `INFO commandstats`: per command, the calls served, the time they took, and the calls
//! refused before running (`rejected_calls`) or failing as they ran (`failed_calls`), as
//! Redis counts them. Gates and servers keep one table each; `CONFIG RESETSTAT` zeroes it.
//!
//! One slot of relaxed atomic counters per command of [`COMMANDS`], indexed by the
//! command's position: recording is a few adds, no lock and no lookup.
//!
//! Time is measured per batch (the requests one read brought), not per call: the batch's
//! time is shared equally among its calls. A clock read costs ~50 ns on this class of
//! machine (a VM's vDSO); two per call were 12% of a server's time under `redis-benchmark
//! -P 16` (perf), two per batch are noise. Totals are exact; a pipeline mixing slow and fast
//! commands spreads its time evenly between them. Unpipelined clients (one request per
//! batch) are timed exactly.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::commands::{COMMANDS, CommandInfo};

/// How a call ended, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and replied (an error reply counts as failed).
    Ran { failed: bool },
    /// Refused before it ran (arity, `CROSSSLOT`, a redirection): not a call.
    Rejected,
    /// A blocking pop: a call, but its wait is not run time (nor its batch's).
    Blocked,
}

#[derive(Debug, Default)]
struct Slot {
    calls: AtomicU64,
    nanos: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// The counters of every command.
#[derive(Debug)]
pub struct CommandStats {
    slots: Box<[Slot]>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            slots: COMMANDS.iter().map(|_| Slot::default()).collect(),
        }
    }
}

impl CommandStats {
    /// Counts the calls of one batch, which took `took` together.
    pub fn record_batch(&self, calls: &[(&CommandInfo, Outcome)], took: Duration) {
        let timed = calls.iter().filter(|(_, o)| matches!(o, Outcome::Ran { .. })).count();
        let share = if timed == 0 {
            Duration::ZERO
        } else {
            took / timed as u32
        };
        for (info, outcome) in calls {
            self.record(info, share, *outcome);
        }
    }

    /// Counts one call of `info` that took `took`.
    pub fn record(&self, info: &CommandInfo, took: Duration, outcome: Outcome) {
        let Some(slot) = self.slots.get(info.index()) else {
            return;
        };
        match outcome {
            Outcome::Ran { failed } => {
                slot.calls.fetch_add(1, Ordering::Relaxed);
                slot.nanos
                    .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
                if failed {
                    slot.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Rejected => {
                slot.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Blocked => {
                slot.calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Calls of `name` counted so far (for tests and `INFO stats`).
    pub fn calls(&self, name: &str) -> u64 {
        crate::commands::lookup(name.as_bytes())
            .and_then(|i| self.slots.get(i.index()))
            .map_or(0, |s| s.calls.load(Ordering::Relaxed))
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for s in self.slots.iter() {
            for c in [&s.calls, &s.nanos, &s.rejected, &s.failed] {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The `# Commandstats` section: one line per command that was called or refused, by
    /// name, in Redis's format.
    pub fn section(&self, out: &mut String) {
        out.push_str("# Commandstats\r\n");
        let mut lines: Vec<(&str, [u64; 4])> = COMMANDS
            .iter()
            .zip(self.slots.iter())
            .map(|(info, s)| {
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                (
                    info.name,
                    [load(&s.calls), load(&s.nanos), load(&s.rejected), load(&s.failed)],
                )
            })
            .filter(|(_, [calls, _, rejected, _])| calls + rejected > 0)
            .collect();
        lines.sort_unstable_by_key(|(name, _)| *name);
        for (name, [calls, nanos, rejected, failed]) in lines {
            let usec = nanos / 1000;
            let per_call = if calls == 0 {
                0.0
            } else {
                nanos as f64 / 1000.0 / calls as f64
            };
            let _ = write!(
                out,
                "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                 rejected_calls={rejected},failed_calls={failed}\r\n"
            );
        }
        out.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> &'static CommandInfo {
        crate::commands::lookup(name.as_bytes()).unwrap()
    }

    #[test]
    fn counts_calls_time_failures_and_rejections_per_command() {
        let s = CommandStats::default();
        s.record(info("get"), Duration::from_micros(3), Outcome::Ran { failed: false });
        s.record(info("get"), Duration::from_micros(2), Outcome::Ran { failed: true });
        s.record(info("set"), Duration::ZERO, Outcome::Rejected);
        // A batch's time is shared by the calls that ran in it.
        let batch = [
            (info("lpush"), Outcome::Ran { failed: false }),
            (info("lpush"), Outcome::Ran { failed: false }),
            (info("blpop"), Outcome::Blocked),
        ];
        s.record_batch(&batch, Duration::from_micros(8));
        let mut text = String::new();
        s.section(&mut text);
        assert_eq!(
            text,
            "# Commandstats\r\n\
             cmdstat_blpop:calls=1,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_get:calls=2,usec=5,usec_per_call=2.50,rejected_calls=0,failed_calls=1\r\n\
             cmdstat_lpush:calls=2,usec=8,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_set:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n\r\n"
        );
        assert_eq!(s.calls("GET"), 2);
        s.reset();
        let mut text = String::new();
        s.section(&mut text);
        assert_eq!(text, "# Commandstats\r\n\r\n");
    }

    #[test]
    fn every_command_has_its_own_slot() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(c.index(), i, "{}", c.name);
        }
    }
}
