//! The election decision, as pure functions (no I/O): who may lead, at which epoch, with
//! which in-sync set. The cluster runtime reads the state, asks here, and writes the answer
//! with a version-checked write.

use std::collections::BTreeSet;

use kv_cluster::ShardState;

/// What a node that won the leader lock writes before it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The new epoch: above both the stored one and any this node has seen.
    pub epoch: u64,
    /// The in-sync set to store: the new leader first, then the inherited followers.
    pub isr: Vec<String>,
    /// Followers kept from the previous in-sync set (alive and, like the new leader, holding
    /// every acknowledged write); the new leader's writes wait for them.
    pub inherited: BTreeSet<String>,
    /// The stored epoch was below one this node has seen: the coordinator lost data.
    pub regressed: bool,
}

/// True when `me` may lead given the stored `state` and whether each id is `alive`:
/// an in-sync member; any node when the shard never had a leader; with `unclean`, any node
/// when no in-sync member is alive.
pub fn eligible(me: &str, state: Option<&ShardState>, alive: impl Fn(&str) -> bool, unclean: bool) -> bool {
    match state {
        None => true,
        Some(s) if s.isr.iter().any(|id| id == me) => true,
        Some(s) => unclean && !s.isr.iter().any(|id| alive(id)),
    }
}

/// The state `me` writes on winning the election; `seen` is the highest epoch it has seen.
pub fn plan(me: &str, state: Option<&ShardState>, alive: impl Fn(&str) -> bool, seen: u64) -> Plan {
    let stored = state.map_or(0, |s| s.epoch);
    let inherited: BTreeSet<String> = match state {
        Some(s) if s.isr.iter().any(|id| id == me) => {
            s.isr.iter().filter(|id| *id != me && alive(id)).cloned().collect()
        }
        // An unclean or first election: nobody is known to hold what the leader holds.
        _ => BTreeSet::new(),
    };
    let mut isr = vec![me.to_string()];
    isr.extend(inherited.iter().cloned());
    Plan {
        epoch: stored.max(seen) + 1,
        isr,
        inherited,
        regressed: stored < seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: u64, isr: &[&str]) -> ShardState {
        ShardState {
            epoch,
            leader: isr.first().map(|s| s.to_string()),
            isr: isr.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_in_sync_members_may_lead_unless_none_is_alive() {
        let s = state(4, &["a", "b"]);
        assert!(eligible("b", Some(&s), |_| true, false));
        assert!(!eligible("c", Some(&s), |_| true, true), "an in-sync member is alive");
        assert!(!eligible("c", Some(&s), |_| false, false), "unclean elections disabled");
        assert!(eligible("c", Some(&s), |_| false, true));
        assert!(eligible("c", None, |_| false, false), "a shard that never had a leader");
    }

    #[test]
    fn a_clean_election_keeps_the_live_in_sync_members() {
        let s = state(4, &["a", "b", "c", "d"]);
        let p = plan("b", Some(&s), |id| id != "a" && id != "d", 4);
        assert_eq!(p.epoch, 5);
        assert_eq!(p.isr, ["b", "c"]);
        assert_eq!(p.inherited, BTreeSet::from(["c".to_string()]));
        assert!(!p.regressed);
    }

    #[test]
    fn an_unclean_election_keeps_nobody() {
        let s = state(4, &["a"]);
        let p = plan("c", Some(&s), |id| id == "b", 2);
        assert_eq!(p.isr, ["c"]);
        assert!(p.inherited.is_empty());
    }

    #[test]
    fn epochs_never_go_backwards() {
        // The coordinator lost the state (or was rolled back) after epoch 7 was seen.
        let p = plan("a", None, |_| true, 7);
        assert_eq!(p.epoch, 8);
        assert!(p.regressed);
        let p = plan("a", Some(&state(3, &["a"])), |_| true, 7);
        assert_eq!(p.epoch, 8);
        assert!(p.regressed);
        let p = plan("a", Some(&state(9, &["a"])), |_| true, 7);
        assert_eq!(p.epoch, 10);
        assert!(!p.regressed);
    }
}
