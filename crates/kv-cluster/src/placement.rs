//! Where keys live over time: the versioned ring stored in the coordinator, the move from one
//! ring version to the next, and the ring manager's decisions (pure functions).
//!
//! A ring change goes through two phases recorded in [`RingState::next`]:
//!
//! 1. **prepare**: every shard of the next ring makes ready to receive keys (its leader logs a
//!    marker from which it and its followers remember deletes, so a copied old value never
//!    resurrects a key deleted meanwhile) and reports `ring_ready` in its state. Gates still
//!    route by the current ring.
//! 2. **moving**: gates send writes of moving keys to their new owner (then drop the old copy)
//!    and read the new owner first, falling back to the old one on a miss; each source leader
//!    streams its moving keys to their new owners and reports progress in its state.
//!
//! When every source reported done, the manager makes the next ring current; sources then
//! delete what they no longer own.

use std::collections::BTreeSet;
use std::sync::Arc;

use kv_proto::slot::key_slot;
use serde::{Deserialize, Serialize};

use crate::ring::DEFAULT_VNODES;
use crate::{ClusterView, Ring};

/// The ring as stored in the coordinator (`/kvstore/<cluster>/ring`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Grows with every change.
    pub version: u64,
    /// The shards keys are placed on (sorted).
    pub shards: Vec<String>,
    /// The ring being moved to, if a move is under way.
    #[serde(default)]
    pub next: Option<NextRing>,
}

/// The ring a move goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextRing {
    pub version: u64,
    pub shards: Vec<String>,
    pub phase: Phase,
}

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Prepare,
    Moving,
}

/// Key placement for routing: the current ring and, during a move, the next one.
#[derive(Debug, Clone)]
pub struct Placement {
    pub version: u64,
    current: Ring,
    next: Option<(u64, Ring, Phase)>,
}

impl Placement {
    /// Placement from the stored ring (empty when there is none yet).
    pub fn new(state: Option<&RingState>) -> Placement {
        let Some(s) = state else {
            return Placement {
                version: 0,
                current: Ring::new(Vec::<String>::new(), DEFAULT_VNODES),
                next: None,
            };
        };
        Placement {
            version: s.version,
            current: Ring::new(&s.shards, DEFAULT_VNODES),
            next: s
                .next
                .as_ref()
                .map(|n| (n.version, Ring::new(&n.shards, DEFAULT_VNODES), n.phase)),
        }
    }

    /// The current ring.
    pub fn current(&self) -> &Ring {
        &self.current
    }

    /// The next ring, its version and phase, during a move.
    pub fn next(&self) -> Option<(u64, &Ring, Phase)> {
        self.next.as_ref().map(|(v, r, p)| (*v, r, *p))
    }

    /// The shard a request for `key` goes to: its next owner while keys are moving, its current
    /// owner otherwise.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        self.owner_ring().shard_for(key)
    }

    /// The ring [`Placement::owner`] answers from: the next one while keys move to it.
    pub fn owner_ring(&self) -> &Ring {
        match &self.next {
            Some((_, next, Phase::Moving)) => next,
            _ => &self.current,
        }
    }

    /// `(from, to)` when `key` is moving between shards right now.
    pub fn moving(&self, key: &[u8]) -> Option<(&str, &str)> {
        let Some((_, next, Phase::Moving)) = &self.next else {
            return None;
        };
        let (from, to) = (self.current.shard_for(key)?, next.shard_for(key)?);
        (from != to).then_some((from, to))
    }

    /// True when `shard` must refuse writes of `key` (it is moving away from it).
    pub fn moved_away(&self, shard: &str, key: &[u8]) -> Option<&str> {
        self.moving(key).filter(|(from, _)| *from == shard).map(|(_, to)| to)
    }

    /// Whether `shard` serves a read (`write` false) or a write of `key` under this
    /// placement. A shard serves the keys it owns on the current ring; while keys move, a
    /// moving key's new owner serves it, and its old owner still serves reads of it (the
    /// gates' fallback while the copy is under way) but no writes.
    pub fn ownership(&self, shard: &str, key: &[u8], write: bool) -> Ownership<'_> {
        self.slot_ownership(shard, key_slot(key), write)
    }

    /// [`Placement::ownership`] of the keys of cluster slot `slot`.
    pub fn slot_ownership(&self, shard: &str, slot: u16, write: bool) -> Ownership<'_> {
        let Some(current) = self.current.shard_for_slot(slot) else {
            return Ownership::NoRing;
        };
        let next = match &self.next {
            Some((_, next, Phase::Moving)) => next.shard_for_slot(slot).unwrap_or(current),
            _ => current,
        };
        if next == shard || (!write && current == shard) {
            Ownership::Serve
        } else {
            Ownership::Elsewhere(next)
        }
    }

    /// The slots whose keys `shard` serves under this placement, for reads and for writes:
    /// a server asks for every key of every request, and a bit test is cheaper than the
    /// ring lookups and name comparisons of [`Placement::ownership`].
    pub fn served_slots(&self, shard: &str) -> ServedSlots {
        let mut served = ServedSlots {
            read: [0; SLOT_WORDS],
            write: [0; SLOT_WORDS],
        };
        for slot in 0..kv_proto::slot::SLOTS {
            let bit = 1u64 << (slot % 64);
            let word = usize::from(slot / 64);
            if self.slot_ownership(shard, slot, false) == Ownership::Serve {
                served.read[word] |= bit;
            }
            if self.slot_ownership(shard, slot, true) == Ownership::Serve {
                served.write[word] |= bit;
            }
        }
        served
    }
}

const SLOT_WORDS: usize = kv_proto::slot::SLOTS as usize / 64;

/// One shard's [`Placement::served_slots`]: a bit per cluster slot, for reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSlots {
    read: [u64; SLOT_WORDS],
    write: [u64; SLOT_WORDS],
}

impl ServedSlots {
    /// None: before any ring is known.
    pub const NONE: ServedSlots = ServedSlots {
        read: [0; SLOT_WORDS],
        write: [0; SLOT_WORDS],
    };

    /// True when the shard serves a read (`write` false) or a write of `slot`'s keys.
    pub fn serves(&self, slot: u16, write: bool) -> bool {
        let words = if write { &self.write } else { &self.read };
        words[usize::from(slot / 64)] & (1 << (slot % 64)) != 0
    }
}

/// The [`Placement`] of the last ring seen, rebuilt only when the ring changes (building one
/// hashes every shard's points).
#[derive(Debug, Default)]
pub struct PlacementCache {
    last: Option<(Option<RingState>, Arc<Placement>)>,
}

impl PlacementCache {
    /// The placement of `ring`.
    pub fn get(&mut self, ring: Option<&RingState>) -> Arc<Placement> {
        match &self.last {
            Some((seen, p)) if seen.as_ref() == ring => p.clone(),
            _ => {
                let p = Arc::new(Placement::new(ring));
                self.last = Some((ring.cloned(), p.clone()));
                p
            }
        }
    }
}

/// The answer of [`Placement::ownership`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// The shard serves the request.
    Serve,
    /// Another shard serves it.
    Elsewhere(&'a str),
    /// No ring is known yet: nobody serves anything.
    NoRing,
}

/// Inputs of the ring manager besides the stored ring and the view.
#[derive(Debug, Default, Clone)]
pub struct ManagerInput {
    /// Source shards whose leader reported (on the cluster port) that it sent every key
    /// moving to the next ring.
    pub done: BTreeSet<String>,
    /// Shards an operator asked to drain and remove.
    pub removing: BTreeSet<String>,
    /// Shards on the ring that have had no live server for longer than the grace period:
    /// their data is gone, so they leave the ring without moving anything.
    pub lost: BTreeSet<String>,
}

/// The ring manager's next write, if any: the ring to store (version-checked by the caller).
pub fn next_ring(ring: Option<&RingState>, view: &ClusterView, input: &ManagerInput) -> Option<RingState> {
    let led = |name: &str| view.shards.get(name).is_some_and(|s| s.leader().is_some());
    let Some(ring) = ring else {
        let shards: Vec<String> = view
            .shards
            .keys()
            .filter(|s| led(s) && !input.removing.contains(*s))
            .cloned()
            .collect();
        return (!shards.is_empty()).then_some(RingState {
            version: 1,
            shards,
            next: None,
        });
    };
    match &ring.next {
        None => {
            let mut desired: BTreeSet<String> = ring.shards.iter().cloned().collect();
            desired.extend(view.shards.keys().filter(|s| led(s)).cloned());
            desired.retain(|s| !input.removing.contains(s) && !input.lost.contains(s));
            let desired: Vec<String> = desired.into_iter().collect();
            if desired == ring.shards || desired.is_empty() {
                return None;
            }
            Some(RingState {
                next: Some(NextRing {
                    version: ring.version + 1,
                    shards: desired,
                    phase: Phase::Prepare,
                }),
                ..ring.clone()
            })
        }
        Some(next) if next.phase == Phase::Prepare => {
            // A shard of the next ring that was lost (or asked to leave) before any key moved:
            // prepare a ring without it instead, under a fresh version (versions are never
            // reused: a shard that finished receiving for one ignores late copies for it).
            let gone = |s: &String| input.lost.contains(s) || input.removing.contains(s);
            if next.shards.iter().any(gone) {
                let shards: Vec<String> = next.shards.iter().filter(|s| !gone(s)).cloned().collect();
                if shards.is_empty() {
                    return None;
                }
                return Some(RingState {
                    next: Some(NextRing {
                        version: next.version + 1,
                        shards,
                        phase: Phase::Prepare,
                    }),
                    ..ring.clone()
                });
            }
            let ready = next.shards.iter().all(|s| {
                view.shards
                    .get(s)
                    .and_then(|sv| sv.state.as_ref())
                    .is_some_and(|st| st.ring_ready >= next.version)
            });
            ready.then(|| RingState {
                next: Some(NextRing {
                    phase: Phase::Moving,
                    ..next.clone()
                }),
                ..ring.clone()
            })
        }
        Some(next) => {
            let done = ring.shards.iter().all(|s| {
                input.lost.contains(s)
                    || view.shards.get(s).is_none_or(|sv| sv.nodes.is_empty())
                    || input.done.contains(s)
            });
            done.then(|| RingState {
                version: next.version,
                shards: next.shards.clone(),
                next: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeInfo, ShardState, ShardView};

    fn view(shards: &[(&str, u64)]) -> ClusterView {
        let mut v = ClusterView::default();
        for (name, ready) in shards {
            let id = format!("{name}-a");
            let mut sv = ShardView {
                name: name.to_string(),
                ..Default::default()
            };
            sv.nodes.insert(
                id.clone(),
                NodeInfo {
                    id: id.clone(),
                    shard: name.to_string(),
                    addr: "h:1".into(),
                    cluster_addr: "h:2".into(),
                    tls_addr: None,
                },
            );
            sv.state = Some(ShardState {
                epoch: 1,
                leader: Some(id.clone()),
                isr: vec![id.clone()],
                ring_ready: *ready,
            });
            sv.leader_lock = Some(id);
            v.shards.insert(name.to_string(), sv);
        }
        v
    }

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_shard_joins_through_prepare_and_moving() {
        let input = ManagerInput::default();
        let first = next_ring(None, &view(&[("s1", 0)]), &input).unwrap();
        assert_eq!((first.version, first.shards.clone()), (1, names(&["s1"])));
        assert_eq!(next_ring(Some(&first), &view(&[("s1", 0)]), &input), None);

        let v = view(&[("s1", 0), ("s2", 0)]);
        let prepare = next_ring(Some(&first), &v, &input).unwrap();
        let next = prepare.next.clone().unwrap();
        assert_eq!(
            (next.version, next.phase, next.shards.clone()),
            (2, Phase::Prepare, names(&["s1", "s2"]))
        );
        assert_eq!(next_ring(Some(&prepare), &v, &input), None, "not ready yet");

        let v = view(&[("s1", 2), ("s2", 2)]);
        let moving = next_ring(Some(&prepare), &v, &input).unwrap();
        assert_eq!(moving.next.as_ref().unwrap().phase, Phase::Moving);
        assert_eq!(next_ring(Some(&moving), &v, &input), None, "the source is not done");

        let input = ManagerInput {
            done: ["s1".to_string()].into(),
            ..Default::default()
        };
        let last = next_ring(Some(&moving), &v, &input).unwrap();
        assert_eq!(
            last,
            RingState {
                version: 2,
                shards: names(&["s1", "s2"]),
                next: None
            }
        );
    }

    #[test]
    fn removal_drains_and_lost_shards_leave_at_once() {
        let ring = RingState {
            version: 3,
            shards: names(&["s1", "s2"]),
            next: None,
        };
        let v = view(&[("s1", 0), ("s2", 0)]);
        let input = ManagerInput {
            removing: ["s2".to_string()].into(),
            ..Default::default()
        };
        let next = next_ring(Some(&ring), &v, &input).unwrap().next.unwrap();
        assert_eq!((next.version, next.shards), (4, names(&["s1"])));
        let input = ManagerInput {
            removing: ["s1".to_string(), "s2".to_string()].into(),
            ..Default::default()
        };
        assert_eq!(next_ring(Some(&ring), &v, &input), None, "never an empty ring");
    }

    #[test]
    fn a_shard_lost_while_preparing_is_left_out_under_a_new_version() {
        let ring = RingState {
            version: 1,
            shards: names(&["s1"]),
            next: Some(NextRing {
                version: 2,
                shards: names(&["s1", "s2"]),
                phase: Phase::Prepare,
            }),
        };
        let v = view(&[("s1", 2)]);
        let input = ManagerInput {
            lost: ["s2".to_string()].into(),
            ..Default::default()
        };
        let next = next_ring(Some(&ring), &v, &input).unwrap().next.unwrap();
        assert_eq!(
            (next.version, next.shards, next.phase),
            (3, names(&["s1"]), Phase::Prepare)
        );
    }

    #[test]
    fn placement_routes_moving_keys_to_their_next_owner() {
        let mut state = RingState {
            version: 1,
            shards: names(&["s1"]),
            next: Some(NextRing {
                version: 2,
                shards: names(&["s1", "s2"]),
                phase: Phase::Prepare,
            }),
        };
        let p = Placement::new(Some(&state));
        assert!((0..100).all(|i| p.owner(format!("k{i}").as_bytes()) == Some("s1")));
        state.next.as_mut().unwrap().phase = Phase::Moving;
        let p = Placement::new(Some(&state));
        let moving = (0..1000)
            .filter(|i| p.moving(format!("k{i}").as_bytes()).is_some())
            .count();
        assert!(
            (300..700).contains(&moving),
            "{moving} of 1000 keys move to the new shard"
        );
        let k = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| p.moving(k.as_bytes()).is_some())
            .unwrap();
        assert_eq!(p.owner(k.as_bytes()), Some("s2"));
        assert_eq!(p.moved_away("s1", k.as_bytes()), Some("s2"));
        assert_eq!(p.moved_away("s2", k.as_bytes()), None);
    }

    #[test]
    fn served_slots_answer_as_ownership_does_in_every_phase() {
        let mut state = RingState {
            version: 1,
            shards: names(&["s1", "s2"]),
            next: Some(NextRing {
                version: 2,
                shards: names(&["s1", "s2", "s3"]),
                phase: Phase::Prepare,
            }),
        };
        let mut placements = vec![Placement::new(None), Placement::new(Some(&state))];
        state.next.as_mut().unwrap().phase = Phase::Moving;
        placements.push(Placement::new(Some(&state)));
        state.next = None;
        placements.push(Placement::new(Some(&state)));
        for p in &placements {
            for shard in ["s1", "s2", "s3"] {
                let served = p.served_slots(shard);
                for slot in 0..kv_proto::slot::SLOTS {
                    for write in [false, true] {
                        let serve = p.slot_ownership(shard, slot, write) == Ownership::Serve;
                        assert_eq!(served.serves(slot, write), serve, "{shard} slot {slot} write {write}");
                    }
                }
            }
        }
        // Moving: the new shard serves reads and writes of its slots, the old owner reads only.
        let moving = &placements[2];
        let (s1, s3) = (moving.served_slots("s1"), moving.served_slots("s3"));
        let slot = (0..kv_proto::slot::SLOTS)
            .find(|&s| s3.serves(s, true) && s1.serves(s, false))
            .expect("a slot moving from s1 to s3");
        assert!(!s1.serves(slot, true));
        assert_eq!(placements[0].served_slots("s1"), ServedSlots::NONE);
    }

    #[test]
    fn a_shard_serves_only_what_it_owns() {
        assert_eq!(Placement::new(None).ownership("s1", b"k", false), Ownership::NoRing);
        let mut state = RingState {
            version: 1,
            shards: names(&["s1", "s2"]),
            next: None,
        };
        let p = Placement::new(Some(&state));
        let k = b"some-key";
        let owner = p.current().shard_for(k).unwrap();
        let other = if owner == "s1" { "s2" } else { "s1" };
        assert_eq!(p.ownership(owner, k, true), Ownership::Serve);
        assert_eq!(p.ownership(other, k, false), Ownership::Elsewhere(owner));

        // s3 joins; while keys move, a moving key is written only at its new owner and read
        // at either.
        state.next = Some(NextRing {
            version: 2,
            shards: names(&["s1", "s2", "s3"]),
            phase: Phase::Prepare,
        });
        let k = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| {
                let mut moving = state.clone();
                moving.next.as_mut().unwrap().phase = Phase::Moving;
                Placement::new(Some(&moving)).moving(k.as_bytes()).is_some()
            })
            .unwrap();
        let k = k.as_bytes();
        let p = Placement::new(Some(&state));
        let old = p.current().shard_for(k).unwrap().to_string();
        assert_eq!(
            p.ownership("s3", k, false),
            Ownership::Elsewhere(&old),
            "prepare: old owner"
        );
        assert_eq!(p.ownership(&old, k, true), Ownership::Serve);
        state.next.as_mut().unwrap().phase = Phase::Moving;
        let p = Placement::new(Some(&state));
        assert_eq!(p.ownership("s3", k, true), Ownership::Serve);
        assert_eq!(p.ownership(&old, k, false), Ownership::Serve, "fallback reads");
        assert_eq!(p.ownership(&old, k, true), Ownership::Elsewhere("s3"));
    }
}
