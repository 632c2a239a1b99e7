//! Histories of operations on registers, recorded by concurrent clients, and their checks:
//! a linearizability checker (Wing & Gong's search with Lowe's memoization, as Knossos and
//! Porcupine do it) and a count of stale reads.
//!
//! A write whose outcome the client does not know (a timeout, a closed connection, an error
//! that does not say "not applied") is recorded without a completion: it may take effect at
//! any moment after it was invoked, or never. Reads that failed are left out (they changed
//! nothing and returned nothing).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Set the register to a value (unique per write).
    Write(String),
    /// Read the register: its value, `None` when unset.
    Read(Option<String>),
}

/// One operation on one register.
#[derive(Debug, Clone)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub kind: Kind,
    /// When it was invoked, since the history began.
    pub call: Duration,
    /// When it completed; `None` for a write whose outcome is unknown.
    pub ret: Option<Duration>,
}

/// Why a history is not linearizable: the operation that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

#[derive(Debug, Clone, Copy)]
enum Event {
    Call(usize),
    Return(usize),
}

/// The events not linearized yet, as a doubly linked list whose nodes can be lifted out and
/// put back in reverse order (dancing links).
struct Events {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    /// The return event of each op, `None` for a write of unknown outcome.
    ret_of: Vec<Option<usize>>,
    /// Return events still in the list: the search is done when none is left.
    returns_left: usize,
}

const NONE: usize = usize::MAX;

impl Events {
    fn new(ops: &[Op]) -> Events {
        // In time order; at equal times calls first (the more permissive order).
        let mut timed: Vec<(Duration, u8, Event)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.call, 0, Event::Call(i)));
            if let Some(r) = op.ret {
                timed.push((r, 1, Event::Return(i)));
            }
        }
        timed.sort_by_key(|(t, order, _)| (*t, *order));
        let events: Vec<Event> = timed.into_iter().map(|(_, _, e)| e).collect();
        let n = events.len();
        let mut ret_of = vec![None; ops.len()];
        for (i, e) in events.iter().enumerate() {
            if let Event::Return(op) = e {
                ret_of[*op] = Some(i);
            }
        }
        Events {
            next: (1..=n).map(|i| if i == n { NONE } else { i }).collect(),
            prev: (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect(),
            head: if n == 0 { NONE } else { 0 },
            returns_left: ret_of.iter().flatten().count(),
            ret_of,
            events,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, q) = (self.prev[i], self.next[i]);
        if p == NONE {
            self.head = q
        } else {
            self.next[p] = q
        }
        if q != NONE {
            self.prev[q] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, q) = (self.prev[i], self.next[i]);
        if p == NONE {
            self.head = i
        } else {
            self.next[p] = i
        }
        if q != NONE {
            self.prev[q] = i;
        }
    }

    /// Takes op `op` (called at event `call`) out: it is linearized.
    fn lift(&mut self, call: usize, op: usize) {
        self.unlink(call);
        if let Some(r) = self.ret_of[op] {
            self.unlink(r);
            self.returns_left -= 1;
        }
    }

    /// Puts op `op` back, in the reverse order of [`Events::lift`].
    fn unlift(&mut self, call: usize, op: usize) {
        if let Some(r) = self.ret_of[op] {
            self.relink(r);
            self.returns_left += 1;
        }
        self.relink(call);
    }
}

/// Checks one register's history (all ops on one key) against a register starting unset.
/// `Err(None)` when the search gave up after `budget` steps.
pub fn check_register(ops: &[Op], budget: usize) -> Result<(), Option<Violation>> {
    let mut list = Events::new(ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut state: Option<&str> = None;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // The choices made: (call event, op, state before).
    let mut stack: Vec<(usize, usize, Option<&str>)> = Vec::new();
    // The latest return that forced a backtrack: where the history breaks, if it does.
    let mut worst: Option<usize> = None;
    let mut entry = list.head;
    for _ in 0..budget {
        if list.returns_left == 0 {
            // Every op that completed is placed; writes of unknown outcome may stay out.
            return Ok(());
        }
        let backtrack = match list.events.get(entry) {
            Some(Event::Call(op)) => {
                let op = *op;
                let after = match &ops[op].kind {
                    Kind::Write(v) => Some(Some(v.as_str())),
                    Kind::Read(v) if v.as_deref() == state => Some(state),
                    Kind::Read(_) => None,
                };
                match after {
                    Some(new_state) => {
                        linearized[op / 64] |= 1 << (op % 64);
                        if cache.insert((linearized.clone(), new_state.map(str::to_string))) {
                            stack.push((entry, op, state));
                            state = new_state;
                            list.lift(entry, op);
                            entry = list.head;
                            continue;
                        }
                        linearized[op / 64] &= !(1 << (op % 64));
                        false
                    }
                    None => false,
                }
            }
            Some(Event::Return(op)) => {
                // `op` returned before it could be placed: undo the last choice.
                if worst.is_none_or(|w| ops[w].ret < ops[*op].ret) {
                    worst = Some(*op);
                }
                true
            }
            // Past the end (only pending calls were left to try): undo the last choice.
            None => true,
        };
        if !backtrack {
            entry = list.next[entry];
            continue;
        }
        let Some((call, op, before)) = stack.pop() else {
            let o = worst.map_or(&ops[0], |w| &ops[w]);
            return Err(Some(Violation(format!(
                "no order fits; the furthest any order got: client {} {:?} of {} over [{:?}, {:?}] fits nowhere",
                o.client, o.kind, o.key, o.call, o.ret
            ))));
        };
        state = before;
        linearized[op / 64] &= !(1 << (op % 64));
        list.unlift(call, op);
        entry = list.next[call];
    }
    Err(None)
}

/// Reads that returned a value already overwritten by a write acknowledged before the read
/// began (or nothing, after a write was acknowledged): the reads no single up-to-date copy
/// could have served. Counted per key over a history without deletes.
pub fn stale_reads(ops: &[Op]) -> Vec<Op> {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut stale = Vec::new();
    for ops in by_key.values() {
        let writes: HashMap<&str, &Op> = ops
            .iter()
            .filter_map(|o| match &o.kind {
                Kind::Write(v) => Some((v.as_str(), *o)),
                _ => None,
            })
            .collect();
        for r in ops {
            let Kind::Read(seen) = &r.kind else { continue };
            // Writes acknowledged before the read began.
            let before = ops
                .iter()
                .filter(|w| matches!(w.kind, Kind::Write(_)) && w.ret.is_some_and(|t| t < r.call));
            let overwritten = match seen {
                None => before.count() > 0,
                Some(v) => {
                    let Some(w) = writes.get(v.as_str()) else {
                        // A value nobody wrote: worse than stale.
                        stale.push((*r).clone());
                        continue;
                    };
                    // Some write acknowledged before the read began was invoked after the
                    // write of the value read had completed: it certainly overwrote it.
                    let written = w.ret;
                    before.into_iter().any(|w2| written.is_some_and(|t| t < w2.call))
                }
            };
            if overwritten {
                stale.push((*r).clone());
            }
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn w(client: usize, v: &str, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            key: "k".into(),
            kind: Kind::Write(v.into()),
            call: ms(call),
            ret: ret.map(ms),
        }
    }

    fn r(client: usize, v: Option<&str>, call: u64, ret: u64) -> Op {
        Op {
            client,
            key: "k".into(),
            kind: Kind::Read(v.map(String::from)),
            call: ms(call),
            ret: Some(ms(ret)),
        }
    }

    fn ok(ops: &[Op]) -> bool {
        match check_register(ops, 1_000_000) {
            Ok(()) => true,
            Err(Some(_)) => false,
            Err(None) => panic!("search budget exhausted"),
        }
    }

    #[test]
    fn good_histories_pass() {
        assert!(ok(&[]));
        assert!(ok(&[r(0, None, 0, 1)]));
        assert!(ok(&[w(0, "a", 0, Some(1)), r(1, Some("a"), 2, 3)]));
        // A read concurrent with a write may see either value.
        assert!(ok(&[
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(10)),
            r(1, Some("a"), 3, 4),
            r(2, Some("b"), 5, 6)
        ]));
        assert!(ok(&[w(0, "a", 0, Some(10)), r(1, None, 1, 2), r(1, Some("a"), 3, 4)]));
        // A write of unknown outcome may take effect late, or never.
        assert!(ok(&[w(0, "a", 0, None), r(1, None, 5, 6), r(1, Some("a"), 7, 8)]));
        assert!(ok(&[w(0, "a", 0, None), r(1, None, 5, 6)]));
        assert!(ok(&[
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, None),
            r(2, Some("a"), 5, 6),
            r(2, Some("b"), 7, 8)
        ]));
    }

    #[test]
    fn known_bad_histories_fail() {
        // A stale read: b was acknowledged before the read began.
        assert!(!ok(&[
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(3)),
            r(1, Some("a"), 4, 5)
        ]));
        // A lost write: acknowledged, then gone.
        assert!(!ok(&[w(0, "a", 0, Some(1)), r(1, None, 2, 3)]));
        // Non-monotonic reads during a long write: b seen, then a again.
        assert!(!ok(&[
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(20)),
            r(1, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6)
        ]));
        // A write of unknown outcome seen, then unseen.
        assert!(!ok(&[w(0, "a", 0, None), r(1, Some("a"), 5, 6), r(1, None, 7, 8)]));
        // A value nobody wrote.
        assert!(!ok(&[w(0, "a", 0, Some(1)), r(1, Some("z"), 2, 3)]));
        // Two clients see two writes in opposite orders.
        assert!(!ok(&[
            w(0, "a", 0, Some(10)),
            w(1, "b", 0, Some(10)),
            r(2, Some("a"), 11, 12),
            r(3, Some("b"), 13, 14),
            r(2, Some("a"), 15, 16)
        ]));
    }

    #[test]
    fn stale_reads_are_counted() {
        let h = [
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(3)),
            r(1, Some("a"), 4, 5),
            r(1, Some("b"), 6, 7),
        ];
        assert_eq!(stale_reads(&h).len(), 1);
        let h = [w(0, "a", 0, Some(1)), r(1, None, 2, 3)];
        assert_eq!(stale_reads(&h).len(), 1, "nothing, after a write was acknowledged");
        let h = [w(0, "a", 0, Some(10)), w(1, "b", 2, Some(3)), r(1, Some("a"), 4, 5)];
        assert!(
            stale_reads(&h).is_empty(),
            "a and b were concurrent: a may be the later"
        );
    }

    #[test]
    fn a_long_history_is_checked_quickly() {
        // 4 clients, 400 ops each on one register, every other op a write of unknown outcome
        // now and then.
        let mut ops = Vec::new();
        let mut t = 0;
        let mut last = None;
        for i in 0..1600u64 {
            let c = (i % 4) as usize;
            t += 1;
            if i % 2 == 0 {
                let v = format!("v{i}");
                let ret = if i % 50 == 0 { None } else { Some(t + 2) };
                ops.push(w(c, &v, t, ret));
                if ret.is_some() {
                    last = Some(v);
                }
            } else {
                ops.push(r(c, last.as_deref(), t + 3, t + 4));
            }
        }
        assert!(ok(&ops));
    }
}
