//! `INFO commandstats` and `latencystats`, and the Prometheus command families: per
//! command, the calls served, the time they took (total and as a [`Histogram`]), and the
//! calls refused before running (`rejected_calls`) or failing as they ran (`failed_calls`),
//! as Redis counts them. Gates and servers keep one table each; `CONFIG RESETSTAT` zeroes it.
//!
//! One slot of relaxed atomic counters per command of [`COMMANDS`], indexed by the
//! command's position: recording is a few adds, no lock and no lookup. (The `metrics` crate's
//! registry would look each labelled counter up by name on every call.)
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

use kv_proto::commands::{COMMANDS, CommandInfo};

use crate::histogram::{Histogram, Snapshot};

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
    latency: Histogram,
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
        self.record_n(info, took, outcome, 1);
    }

    /// Counts `n` calls of `info` that took `took` each, ended the same way: the same
    /// counts as `n` [`CommandStats::record`]s, with one atomic add per counter instead of
    /// `n` (a pipelined batch is mostly runs of one command).
    pub fn record_n(&self, info: &CommandInfo, took: Duration, outcome: Outcome, n: u64) {
        let Some(slot) = self.slots.get(info.index()) else {
            return;
        };
        match outcome {
            Outcome::Ran { failed } => {
                slot.calls.fetch_add(n, Ordering::Relaxed);
                let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
                slot.nanos.fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
                slot.latency.record_n(took, n);
                if failed {
                    slot.failed.fetch_add(n, Ordering::Relaxed);
                }
            }
            Outcome::Rejected => {
                slot.rejected.fetch_add(n, Ordering::Relaxed);
            }
            Outcome::Blocked => {
                slot.calls.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Calls of `name` counted so far (for tests and `INFO stats`).
    pub fn calls(&self, name: &str) -> u64 {
        kv_proto::commands::lookup(name.as_bytes())
            .and_then(|i| self.slots.get(i.index()))
            .map_or(0, |s| s.calls.load(Ordering::Relaxed))
    }

    /// Calls of every command.
    pub fn total_calls(&self) -> u64 {
        self.slots.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum()
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for s in self.slots.iter() {
            for c in [&s.calls, &s.nanos, &s.rejected, &s.failed] {
                c.store(0, Ordering::Relaxed);
            }
            s.latency.reset();
        }
    }

    /// Every command that was called or refused: its name, counters and latency, by name.
    pub fn commands(&self) -> Vec<CommandFigures> {
        let mut out: Vec<CommandFigures> = COMMANDS
            .iter()
            .zip(self.slots.iter())
            .filter_map(|(info, s)| {
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let f = CommandFigures {
                    name: info.name,
                    calls: load(&s.calls),
                    nanos: load(&s.nanos),
                    rejected: load(&s.rejected),
                    failed: load(&s.failed),
                    latency: s.latency.snapshot(),
                };
                (f.calls + f.rejected > 0).then_some(f)
            })
            .collect();
        out.sort_unstable_by_key(|f| f.name);
        out
    }

    /// Every command's latency added together (the dashboard's p99 of a server).
    pub fn latency(&self) -> Snapshot {
        let mut all = Snapshot::default();
        for s in self.slots.iter() {
            all.add(&s.latency.snapshot());
        }
        all
    }

    /// The `# Latencystats` section: for each command called, the latency percentiles
    /// `percentiles` (Redis's `latency-tracking-info-percentiles`, default 50 99 99.9), in
    /// microseconds, as estimated by [`Snapshot::quantile`].
    pub fn latency_section(&self, percentiles: &[f64], out: &mut String) {
        out.push_str("# Latencystats\r\n");
        for f in self.commands() {
            if f.latency.count() == 0 {
                continue;
            }
            let _ = write!(out, "latency_percentiles_usec_{}:", f.name);
            for (i, p) in percentiles.iter().enumerate() {
                let us = f.latency.quantile(p / 100.0).unwrap_or_default().as_nanos() as f64 / 1000.0;
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(out, "{sep}p{}={us:.3}", format_percentile(*p));
            }
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
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

/// A percentile as Redis names it: `50`, `99`, `99.9`.
fn format_percentile(p: f64) -> String {
    let s = format!("{p:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One command's figures.
#[derive(Debug, Clone)]
pub struct CommandFigures {
    pub name: &'static str,
    pub calls: u64,
    pub nanos: u64,
    pub rejected: u64,
    pub failed: u64,
    pub latency: Snapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> &'static CommandInfo {
        kv_proto::commands::lookup(name.as_bytes()).unwrap()
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
        let mut text = String::new();
        s.latency_section(&[50.0, 99.0, 99.9], &mut text);
        assert_eq!(
            text,
            "# Latencystats\r\n\
             latency_percentiles_usec_get:p50=2.000,p99=3.150,p99.9=3.150\r\n\
             latency_percentiles_usec_lpush:p50=4.000,p99=4.000,p99.9=4.000\r\n\r\n"
        );
        assert_eq!(s.latency().count(), 4);
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
