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

/// Checks one register's history (all ops on one key) against a register starting unset.
/// `Err(None)` when the search gave up after `budget` steps.
pub fn check_register(ops: &[Op], budget: usize) -> Result<(), Option<Violation>> {
    // Events in time order; at equal times calls first (the more permissive order).
    let mut events: Vec<(Duration, u8, Event)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, Event::Call(i)));
        if let Some(r) = op.ret {
            events.push((r, 1, Event::Return(i)));
        }
    }
    events.sort_by_key(|(t, order, _)| (*t, *order));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    // A doubly linked list over the events, so linearized ops can be lifted out and put back.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).collect(); // n = end
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // usize::MAX = head
    let mut head = if n == 0 { n } else { 0 };
    let mut ret_of = vec![usize::MAX; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if let Event::Return(op) = e {
            ret_of[*op] = i;
        }
    }
    let mut returns_left = events.iter().filter(|e| matches!(e, Event::Return(_))).count();

    let unlink = |i: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[i], next[i]);
        if p == usize::MAX {
            *head = q;
        } else {
            next[p] = q;
        }
        if q < n {
            prev[q] = p;
        }
    };
    let relink = |i: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[i], next[i]);
        if p == usize::MAX {
            *head = i;
        } else {
            next[p] = i;
        }
        if q < n {
            prev[q] = i;
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<&str> = None;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // (call event index, state before)
    let mut stack: Vec<(usize, Option<&str>)> = Vec::new();
    let mut entry = head;
    let mut steps = 0usize;
    // The latest return that forced a backtrack: where the history breaks, if it does.
    let mut worst: Option<usize> = None;
    while returns_left > 0 {
        steps += 1;
        if steps > budget {
            return Err(None);
        }
        if entry >= n {
            // Every remaining op is a pending call that cannot go next: backtrack.
            match backtrack(&mut stack, &mut state, &mut linearized, &events, &mut entry, &ret_of) {
                Some(call) => {
                    if let Some(r) = ret_of_call(&events, call, &ret_of) {
                        relink(r, &mut head, &mut next, &mut prev);
                        returns_left += 1;
                    }
                    relink(call, &mut head, &mut next, &mut prev);
                    entry = next[call];
                    continue;
                }
                None => return Err(Some(Violation("no order fits".into()))),
            }
        }
        match events[entry] {
            Event::Call(op) => {
                let after = match &ops[op].kind {
                    Kind::Write(v) => Some(Some(v.as_str())),
                    Kind::Read(v) if v.as_deref() == state => Some(state),
                    Kind::Read(_) => None,
                };
                if let Some(new_state) = after {
                    linearized[op / 64] |= 1 << (op % 64);
                    if cache.insert((linearized.clone(), new_state.map(str::to_string))) {
                        stack.push((entry, state));
                        state = new_state;
                        unlink(entry, &mut head, &mut next, &mut prev);
                        if ret_of[op] != usize::MAX {
                            unlink(ret_of[op], &mut head, &mut next, &mut prev);
                            returns_left -= 1;
                        }
                        entry = head;
                        continue;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                }
                entry = next[entry];
            }
            Event::Return(op) => {
                // `op` returned before it could be placed: undo the last choice.
                let at = ops[op].ret;
                if worst.is_none_or(|w| ops[w].ret < at) {
                    worst = Some(op);
                }
                match backtrack(&mut stack, &mut state, &mut linearized, &events, &mut entry, &ret_of) {
                    Some(call) => {
                        if let Some(r) = ret_of_call(&events, call, &ret_of) {
                            relink(r, &mut head, &mut next, &mut prev);
                            returns_left += 1;
                        }
                        relink(call, &mut head, &mut next, &mut prev);
                        entry = next[call];
                    }
                    None => {
                        let o = &ops[worst.unwrap_or(op)];
                        return Err(Some(Violation(format!(
                            "no order fits; the furthest any order got: client {} {:?} of {} over [{:?}, {:?}] fits nowhere",
                            o.client, o.kind, o.key, o.call, o.ret
                        ))));
                    }
                }
            }
        }
    }
    Ok(())
}

fn ret_of_call(events: &[Event], call: usize, ret_of: &[usize]) -> Option<usize> {
    match events[call] {
        Event::Call(op) if ret_of[op] != usize::MAX => Some(ret_of[op]),
        _ => None,
    }
}

/// Pops the last linearized op: restores the state and returns its call event.
fn backtrack<'a>(
    stack: &mut Vec<(usize, Option<&'a str>)>,
    state: &mut Option<&'a str>,
    linearized: &mut [u64],
    events: &[Event],
    _entry: &mut usize,
    _ret_of: &[usize],
) -> Option<usize> {
    let (call, before) = stack.pop()?;
    *state = before;
    if let Event::Call(op) = events[call] {
        linearized[op / 64] &= !(1 << (op % 64));
    }
    Some(call)
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
