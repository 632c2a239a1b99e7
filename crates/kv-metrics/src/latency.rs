//! Redis's latency monitor: `LATENCY LATEST | HISTORY | RESET | DOCTOR | HELP`.
//!
//! While `latency-monitor-threshold` (ms) is above 0, every command that takes at least that
//! long is a sample of the event `command` (or `fast-command`, for Redis's `@fast`
//! commands). Each event keeps its all-time maximum and its last 160 samples, one per second
//! (the second's largest), as Redis keeps them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kv_proto::Frame;

/// Samples kept per event.
const HISTORY: usize = 160;

#[derive(Debug, Default, Clone)]
struct Event {
    /// (unix seconds, ms), oldest first.
    samples: VecDeque<(u64, u64)>,
    max: u64,
}

/// The monitor of one process.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    /// `latency-monitor-threshold`, ms; 0: off.
    threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Event>>,
}

impl LatencyMonitor {
    pub fn configure(&self, threshold_ms: u64) {
        self.threshold_ms.store(threshold_ms, Ordering::Relaxed);
    }

    /// The duration from which commands are samples; `None` when the monitor is off.
    pub fn threshold(&self) -> Option<Duration> {
        let t = self.threshold_ms.load(Ordering::Relaxed);
        (t > 0).then(|| Duration::from_millis(t))
    }

    /// Records a command that took `took` (a sample if it reaches the threshold).
    pub fn offer_command(&self, took: Duration, fast: bool) {
        if self.threshold().is_some_and(|t| took >= t) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let event = if fast { "fast-command" } else { "command" };
            self.add(event, now, took.as_millis() as u64);
        }
    }

    fn add(&self, event: &'static str, now: u64, ms: u64) {
        let mut events = self.events.lock().expect("latency events");
        let e = events.entry(event).or_default();
        e.max = e.max.max(ms);
        match e.samples.back_mut() {
            Some((t, m)) if *t == now => *m = (*m).max(ms),
            _ => {
                e.samples.push_back((now, ms));
                if e.samples.len() > HISTORY {
                    e.samples.pop_front();
                }
            }
        }
    }

    /// Answers `LATENCY …` (`args` from the command name on).
    pub fn command(&self, args: &[Bytes]) -> Frame {
        let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let events = || self.events.lock().expect("latency events").clone();
        match (&sub[..], args.len()) {
            (b"LATEST", 2) => Frame::Array(
                events()
                    .iter()
                    .filter_map(|(name, e)| {
                        let (t, ms) = *e.samples.back()?;
                        Some(Frame::Array(vec![
                            Frame::bulk(*name),
                            Frame::Integer(t as i64),
                            Frame::Integer(ms as i64),
                            Frame::Integer(e.max as i64),
                        ]))
                    })
                    .collect(),
            ),
            (b"HISTORY", 3) => {
                let name = String::from_utf8_lossy(&args[2]).into_owned();
                let samples = events()
                    .get(name.as_str())
                    .map(|e| e.samples.clone())
                    .unwrap_or_default();
                Frame::Array(
                    samples
                        .iter()
                        .map(|&(t, ms)| Frame::Array(vec![Frame::Integer(t as i64), Frame::Integer(ms as i64)]))
                        .collect(),
                )
            }
            (b"RESET", _) => {
                let mut events = self.events.lock().expect("latency events");
                let n = if args.len() == 2 {
                    let n = events.len();
                    events.clear();
                    n
                } else {
                    args[2..]
                        .iter()
                        .filter(|a| {
                            let name = String::from_utf8_lossy(a);
                            events.remove(name.as_ref()).is_some()
                        })
                        .count()
                };
                Frame::Integer(n as i64)
            }
            (b"DOCTOR", 2) => Frame::text(self.doctor()),
            (b"HELP", 2) => Frame::help(&[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HELP",
                "    Prints this help.",
            ]),
            _ => Frame::unknown_subcommand("LATENCY", args.get(1).map_or(&b""[..], |s| &s[..])),
        }
    }

    /// A short report in the spirit of Redis's `LATENCY DOCTOR`.
    fn doctor(&self) -> String {
        let events = self.events.lock().expect("latency events");
        let Some(t) = self.threshold() else {
            return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this kvstore \
                    process. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" \
                    in order to enable it.\n"
                .to_string();
        };
        if events.is_empty() {
            return format!(
                "No latency spikes of {} ms or more were observed during the lifetime of this process.\n",
                t.as_millis()
            );
        }
        let mut out = String::new();
        for (name, e) in events.iter() {
            let avg = e.samples.iter().map(|s| s.1).sum::<u64>() / e.samples.len().max(1) as u64;
            let _ = writeln!(
                out,
                "{name}: {} latency spikes (average {avg}ms, worst {}ms). Commands slower than the \
                 threshold: see SLOWLOG GET.",
                e.samples.len(),
                e.max
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    #[test]
    fn samples_commands_over_the_threshold_one_per_second() {
        let m = LatencyMonitor::default();
        m.offer_command(Duration::from_secs(1), false);
        assert_eq!(m.command(&args(&["latency", "latest"])), Frame::Array(vec![]));
        m.configure(100);
        m.offer_command(Duration::from_millis(99), false);
        assert_eq!(m.command(&args(&["latency", "latest"])), Frame::Array(vec![]));
        m.add("command", 10, 150);
        m.add("command", 10, 120);
        m.add("command", 11, 130);
        assert_eq!(
            m.command(&args(&["latency", "latest"])),
            Frame::Array(vec![Frame::Array(vec![
                Frame::bulk("command"),
                Frame::Integer(11),
                Frame::Integer(130),
                Frame::Integer(150)
            ])])
        );
        assert_eq!(
            m.command(&args(&["latency", "history", "command"])),
            Frame::Array(vec![
                Frame::Array(vec![Frame::Integer(10), Frame::Integer(150)]),
                Frame::Array(vec![Frame::Integer(11), Frame::Integer(130)]),
            ])
        );
        for s in 0..200 {
            m.add("fast-command", 100 + s, 1);
        }
        let Frame::Array(h) = m.command(&args(&["latency", "history", "fast-command"])) else {
            panic!()
        };
        assert_eq!(h.len(), HISTORY);
        assert_eq!(
            m.command(&args(&["latency", "reset", "command", "nope"])),
            Frame::Integer(1)
        );
        assert_eq!(m.command(&args(&["latency", "reset"])), Frame::Integer(1));
        assert_eq!(m.command(&args(&["latency", "latest"])), Frame::Array(vec![]));
    }

    #[test]
    fn a_slow_command_is_a_sample_of_its_event() {
        let m = LatencyMonitor::default();
        m.configure(1);
        m.offer_command(Duration::from_millis(5), true);
        let Frame::Array(latest) = m.command(&args(&["latency", "latest"])) else {
            panic!()
        };
        let Frame::Array(e) = &latest[0] else { panic!() };
        assert_eq!(e[0], Frame::bulk("fast-command"));
        assert_eq!(e[2], Frame::Integer(5));
        assert!(m.command(&args(&["latency", "bogus"])).as_error().is_some());
    }
}
