//! The calls of one batch of requests (what one read from a connection brought), recorded
//! together when the batch is done: counters, latency histograms, the slow log and the
//! latency monitor.
//!
//! Clocks are read per batch, not per call (see [`crate::cmdstats`]), except around the
//! commands that can take long on their own ([`timed_alone`]): their own time is exact and
//! the rest of the batch's time is shared among the others. The slow log needs a logged
//! command's arguments after the command has consumed them, so each call keeps its
//! request's bytes (a reference count, not a copy) until the batch is recorded, and only a
//! call that reached the threshold is parsed again.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_proto::commands::{CommandInfo, PerCommand};

use crate::Observer;
use crate::cmdstats::Outcome;
use crate::slowlog::Client;

/// One call of a batch.
#[derive(Debug)]
struct Call {
    info: &'static CommandInfo,
    outcome: Outcome,
    /// Its own time, when it was timed alone.
    took: Option<Duration>,
    /// Its request's bytes, for the slow log.
    raw: Option<Bytes>,
}

/// The calls of the batch under way; one per connection, reused.
#[derive(Debug, Default)]
pub struct Batch {
    calls: Vec<Call>,
}

/// True for commands timed on their own: every command Redis does not
/// call `@fast`, except single-key writes (`SET`, `INCR`, `APPEND` … are constant-time, and
/// `SORT … STORE` is not one of them;
/// two clock reads per `SET` were measurable under `redis-benchmark -P 16`).
static TIMED_ALONE: PerCommand<bool> = PerCommand::new(|c| {
    let fast = c.flags.contains(&"fast");
    let single_key_write = c.flags.contains(&"write") && c.first_key > 0 && c.at_most_one_key();
    !fast && !single_key_write
});

/// True when `info`'s calls are timed on their own.
pub fn timed_alone(info: &CommandInfo) -> bool {
    TIMED_ALONE.get(info).copied().unwrap_or(true)
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Adds a call; `took` when it was timed alone; `raw` its request's bytes.
    pub fn push(&mut self, info: &'static CommandInfo, outcome: Outcome, took: Option<Duration>, raw: Option<Bytes>) {
        self.calls.push(Call {
            info,
            outcome,
            took,
            raw,
        });
    }

    /// Records the batch, which took `elapsed` in all, and empties it.
    pub fn record(&mut self, obs: &Observer, elapsed: Duration, client: impl Fn() -> Client) {
        let ran = |c: &&Call| matches!(c.outcome, Outcome::Ran { .. });
        let alone: Duration = self.calls.iter().filter(ran).filter_map(|c| c.took).sum();
        let shared = self.calls.iter().filter(ran).filter(|c| c.took.is_none()).count();
        let share = match u32::try_from(shared) {
            Ok(n) if n > 0 => elapsed.saturating_sub(alone) / n,
            _ => Duration::ZERO,
        };
        let slow = obs.slowlog.threshold();
        let spike = obs.latency.threshold();
        // Consecutive calls of one command that ended alike and took the same time are
        // counted together (`record_n`).
        let mut run: Option<(&'static CommandInfo, Duration, Outcome, u64)> = None;
        for call in self.calls.drain(..) {
            let took = match call.outcome {
                Outcome::Ran { .. } => call.took.unwrap_or(share),
                // A blocking command's wait is not its time (as in Redis, which logs it when
                // it is served, without the wait); a refused call took none.
                Outcome::Blocked | Outcome::Rejected => Duration::ZERO,
            };
            match &mut run {
                Some((info, t, o, n)) if std::ptr::eq(*info, call.info) && *t == took && *o == call.outcome => *n += 1,
                _ => {
                    if let Some((info, t, o, n)) = run.replace((call.info, took, call.outcome, 1)) {
                        obs.commands.record_n(info, t, o, n);
                    }
                }
            }
            if call.outcome == Outcome::Rejected {
                continue;
            }
            if slow.is_some_and(|t| took >= t)
                && let Some(args) = call.raw.as_ref().and_then(parse)
            {
                obs.slowlog.offer(took, &args, &client);
            }
            if spike.is_some_and(|t| took >= t) {
                obs.latency.offer_command(took, call.info.flags.contains(&"fast"));
            }
        }
        if let Some((info, t, o, n)) = run {
            obs.commands.record_n(info, t, o, n);
        }
    }
}

/// A request's arguments from its bytes.
fn parse(raw: &Bytes) -> Option<Vec<Bytes>> {
    let mut parser = kv_proto::RequestParser::new(kv_proto::Limits::REDIS);
    let mut buf = BytesMut::from(&raw[..]);
    parser.parse(&mut buf).ok().flatten().map(|r| r.into_args())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> &'static CommandInfo {
        kv_proto::commands::lookup(name.as_bytes()).unwrap()
    }

    fn raw(words: &[&str]) -> Option<Bytes> {
        Some(kv_proto::write::command(words.iter().map(|w| w.as_bytes())))
    }

    #[test]
    fn constant_time_commands_share_the_batch_time_and_the_rest_are_timed_alone() {
        for c in ["get", "set", "incr", "lpush", "hset", "ping"] {
            assert!(!timed_alone(info(c)), "{c}");
        }
        for c in [
            "keys",
            "lrange",
            "smembers",
            "sort",
            "eval",
            "mset",
            "del",
            "zunionstore",
            "flushall",
        ] {
            assert!(timed_alone(info(c)), "{c}");
        }
    }

    #[test]
    fn runs_of_one_command_count_as_the_calls_one_by_one() {
        let ran = Outcome::Ran { failed: false };
        let failed = Outcome::Ran { failed: true };
        let calls = [
            ("get", ran, None),
            ("get", ran, None),
            ("get", failed, None),
            ("set", ran, None),
            ("get", ran, None),
            ("get", Outcome::Rejected, None),
            ("get", Outcome::Rejected, None),
            ("keys", ran, Some(Duration::from_millis(3))),
            ("keys", ran, Some(Duration::from_millis(4))),
            ("blpop", Outcome::Blocked, None),
            ("get", ran, None),
        ];
        let batched = Observer::default();
        let mut b = Batch::default();
        for (name, outcome, took) in calls {
            b.push(info(name), outcome, took, None);
        }
        b.record(&batched, Duration::from_millis(13), Client::default);
        // One by one: 13 ms less the 7 of the KEYS shared by the 6 calls that ran untimed.
        let single = Observer::default();
        for (name, outcome, took) in calls {
            let took = match outcome {
                Outcome::Ran { .. } => took.unwrap_or(Duration::from_millis(1)),
                _ => Duration::ZERO,
            };
            single.commands.record(info(name), took, outcome);
        }
        let figures = |o: &Observer| {
            o.commands
                .commands()
                .into_iter()
                .map(|f| (f.name, f.calls, f.nanos, f.rejected, f.failed, f.latency))
                .collect::<Vec<_>>()
        };
        let got = figures(&batched);
        assert_eq!(got, figures(&single));
        assert!(
            got.iter().any(|f| f.0 == "get" && f.1 == 5 && f.3 == 2 && f.4 == 1),
            "{got:?}"
        );
    }

    #[test]
    fn slow_calls_reach_the_slow_log_with_their_arguments() {
        let obs = Observer::default();
        obs.slowlog.configure(1_000, 10);
        obs.latency.configure(1);
        let mut b = Batch::default();
        let ran = Outcome::Ran { failed: false };
        b.push(info("get"), ran, None, raw(&["GET", "a"]));
        b.push(info("keys"), ran, Some(Duration::from_millis(5)), raw(&["KEYS", "*"]));
        b.push(info("get"), ran, None, raw(&["GET", "b"]));
        // 6 ms in all: 5 for KEYS alone, 0.5 each for the GETs.
        b.record(&obs, Duration::from_millis(6), || Client {
            addr: "1.2.3.4:5".into(),
            name: String::new(),
        });
        assert!(b.is_empty());
        let logged = obs.slowlog.newest(None);
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].args, [Bytes::from("KEYS"), Bytes::from("*")]);
        assert_eq!(logged[0].micros, 5_000);
        assert_eq!(logged[0].client_addr, "1.2.3.4:5");
        assert_eq!(obs.commands.calls("get"), 2);
        // A blocking pop is logged when served, without its wait.
        obs.slowlog.configure(0, 10);
        b.push(info("blpop"), Outcome::Blocked, None, raw(&["BLPOP", "l", "0"]));
        b.record(&obs, Duration::from_secs(3), Client::default);
        let newest = &obs.slowlog.newest(Some(1))[0];
        assert_eq!((newest.args[0].as_ref(), newest.micros), (&b"BLPOP"[..], 0));
        obs.slowlog.configure(1_000, 10);
        let get = obs.commands.commands().into_iter().find(|f| f.name == "get").unwrap();
        assert_eq!(get.nanos, 1_000_000);
        let kv_proto::Frame::Array(latest) = obs.latency.command(&[Bytes::from("latency"), Bytes::from("latest")])
        else {
            panic!()
        };
        assert_eq!(latest.len(), 1);
    }
}
