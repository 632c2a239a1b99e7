use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv_cluster::{Placement, RingState};
use kv_peer::{Mutation, SyncRequest};
use kv_proto::{Limits, Request, RequestParser};

use super::following::ApplyError;
use super::*;

fn node() -> Node {
    let n = Node::new(
        "n1".into(),
        "127.0.0.1:1".into(),
        "127.0.0.1:2".into(),
        Config::for_shard("s"),
    );
    n.set_placement(ring(&["s"]));
    n
}

fn ring(shards: &[&str]) -> Arc<Placement> {
    Arc::new(Placement::new(Some(&RingState {
        version: 1,
        shards: shards.iter().map(|s| s.to_string()).collect(),
        next: None,
    })))
}

fn lease() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn entries(frames: &[Bytes]) -> Vec<Request> {
    let mut buf = BytesMut::new();
    for f in frames {
        buf.extend_from_slice(f);
    }
    let mut p = RequestParser::new(Limits::REDIS);
    std::iter::from_fn(|| p.parse(&mut buf).unwrap()).collect()
}

fn k(key: &[u8]) -> [&[u8]; 1] {
    [key]
}

/// Attaches a streaming follower `id` to a leader and makes it wanted in the in-sync set.
fn attach(leader: &Node, id: &str) -> u64 {
    let sync = SyncRequest {
        node_id: id.into(),
        position: leader.position(),
        known_epoch: 0,
    };
    let conn = leader.next_conn_id();
    let plan = leader.plan_sync(&sync, conn).unwrap();
    assert!(plan.resume_after.is_some());
    leader.follower_acked(id, conn, leader.last_offset(), 1);
    leader.tick_followers();
    leader.tick_followers();
    conn
}

#[test]
fn only_a_leader_with_a_lease_writes() {
    let n = node();
    assert!(matches!(
        n.write(k(b"k"), |w| w.set(b"k", b"v", None)),
        Err(Refusal::NotLeader { .. })
    ));
    n.become_leader(1, Instant::now(), BTreeSet::new());
    assert!(matches!(
        n.write(k(b"k"), |w| w.set(b"k", b"v", None)),
        Err(Refusal::LeaseExpired { .. })
    ));
    let term = n.role_and_term().1;
    n.extend_lease(term, lease());
    let (_, pending) = n.write(k(b"k"), |w| w.set(b"k", b"v", None)).unwrap();
    assert_eq!(pending, None, "no follower to wait for");
    assert_eq!(n.position(), Some((1, 1)));
    n.change_role(Role::Follower { epoch: 2 });
    assert!(n.write(k(b"k"), |w| w.del(b"k")).is_err());
}

#[test]
fn reads_are_fenced_by_the_leases() {
    let n = node();
    n.become_leader(1, lease(), BTreeSet::new());
    n.write(k(b"k"), |w| w.set(b"k", b"v", None)).unwrap();
    let read = |n: &Node| n.read(k(b"k"), |r| r.get(b"k", |v| v.map(<[u8]>::to_vec)));
    assert_eq!(read(&n).unwrap().0.as_deref(), Some(&b"v"[..]));
    // The lease lapses (a paused or partitioned leader): no more reads.
    n.lease.set(Instant::now() - Duration::from_millis(1));
    assert!(matches!(read(&n), Err(Refusal::LeaseExpired { .. })));

    let f = node();
    let term = f.change_role(Role::Follower { epoch: 1 });
    assert!(
        matches!(read(&f), Err(Refusal::NotServingReads { .. })),
        "no read lease yet"
    );
    f.grant_read_lease(term, Instant::now() + Duration::from_secs(60));
    assert_eq!(read(&f).unwrap().0, None);
    f.grant_read_lease(term + 1, Instant::now() + Duration::from_secs(60));
    f.revoke_read_lease();
    assert!(
        matches!(read(&f), Err(Refusal::NotServingReads { .. })),
        "a stale grant is ignored"
    );
}

#[test]
fn keys_of_other_shards_are_refused_whole() {
    let n = node();
    n.set_placement(ring(&["s", "t"]));
    n.become_leader(1, lease(), BTreeSet::new());
    let placement = n.placement();
    let mine = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| placement.current().shard_for(k.as_bytes()) == Some("s"))
        .unwrap();
    let theirs = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| placement.current().shard_for(k.as_bytes()) == Some("t"))
        .unwrap();
    let keys = [mine.as_bytes(), theirs.as_bytes()];
    let r = n.write(keys, |w| {
        for key in keys {
            w.set(key, b"v", None);
        }
    });
    let refusal = r.unwrap_err();
    let slot = kv_proto::slot::key_slot(theirs.as_bytes());
    assert_eq!(
        refusal,
        Refusal::Moved {
            to: "t".into(),
            slot,
            addr: None
        }
    );
    // A cluster client learns the slot; with no known leader of `t`, to try again.
    assert!(
        refusal.cluster_text().starts_with("TRYAGAIN"),
        "{}",
        refusal.cluster_text()
    );
    assert_eq!(n.last_offset(), 0, "nothing was applied");
    assert!(n.read(k(theirs.as_bytes()), |_| ()).is_err());
    assert!(
        n.write(k(mine.as_bytes()), |w| w.set(mine.as_bytes(), b"v", None))
            .is_ok()
    );
    assert!(
        n.write_internal(|w| w.set(theirs.as_bytes(), b"v", None)).is_ok(),
        "moves are not refused"
    );
    assert_eq!(n.info().counters.not_owned, 2);

    let fresh = Node::new("n2".into(), "a".into(), "b".into(), Config::for_shard("s"));
    fresh.become_leader(1, lease(), BTreeSet::new());
    assert_eq!(
        fresh.write(k(b"x"), |_| ()).unwrap_err(),
        Refusal::NoRing { shard: "s".into() }
    );
}

#[test]
fn a_read_waits_for_what_it_may_have_seen_to_be_replicated() {
    let n = node();
    n.become_leader(1, lease(), BTreeSet::new());
    let conn = attach(&n, "f");
    let (_, pending) = n.write(k(b"k"), |w| w.set(b"k", b"v", None)).unwrap();
    let pending = pending.expect("the follower must confirm the write");
    let (_, read_pending) = n.read(k(b"k"), |r| r.get(b"k", |v| v.is_some())).unwrap();
    assert_eq!(read_pending, Some(pending), "the read saw an unreplicated write");
    n.follower_acked("f", conn, pending.offset, 2);
    let (_, read_pending) = n.read(k(b"k"), |_| ()).unwrap();
    assert_eq!(read_pending, None, "everything is replicated");
}

#[test]
fn a_follower_applies_the_leaders_log_in_order() {
    let leader = node();
    leader.become_leader(3, lease(), BTreeSet::new());
    // With a follower attached the leader keeps its log.
    attach(&leader, "f");
    leader.write(k(b"a"), |w| w.set(b"a", b"1", None)).unwrap();
    leader.write(k(b"b"), |w| w.set(b"b", b"2", Some(u64::MAX))).unwrap();
    leader.write(k(b"a"), |w| w.del(b"a")).unwrap();
    let term = leader.role_and_term().1;
    let mut frames = Vec::new();
    leader.read_log(term, 1, 10, &mut frames).unwrap();

    let follower = node();
    let term = follower.change_role(Role::Follower { epoch: 3 });
    let reqs = entries(&frames);
    assert_eq!(
        follower.apply_entries(term, &reqs[1..]),
        Err(ApplyError::Gap { expected: 1, got: 2 }),
        "a gap is refused"
    );
    assert_eq!(follower.apply_entries(term, &reqs), Ok(3));
    assert_eq!(follower.info().digest, leader.info().digest);
    assert_eq!(follower.apply_entries(term + 1, &reqs), Err(ApplyError::StaleTerm));
    // Older epochs are refused once a newer one was applied.
    let old = Mutation::Del { key: b"b" }.encode(2, 4);
    assert_eq!(
        follower.apply_entries(term, &entries(&[old])),
        Err(ApplyError::EpochRegressed { last: 3, got: 2 })
    );
}

#[test]
fn a_lone_leader_keeps_no_backlog() {
    let n = node();
    n.become_leader(1, lease(), BTreeSet::new());
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        n.write(k(&key), |w| w.set(&key, b"v", None)).unwrap();
    }
    let info = n.info();
    assert_eq!(
        (info.offset, info.backlog_bytes),
        (100, 0),
        "offsets advance, nothing is kept"
    );
}

#[test]
fn a_leader_elected_mid_snapshot_starts_a_fresh_log() {
    let n = node();
    let term = n.change_role(Role::Follower { epoch: 1 });
    n.begin_snapshot(term).unwrap();
    assert_eq!(n.position(), None);
    n.become_leader(2, lease(), BTreeSet::new());
    let (epoch, offset) = n.position().unwrap();
    assert_eq!((epoch, offset), (2, 1));
    assert!(!n.lock().log.can_resume(1, 0), "no follower resumes against this store");
}

#[test]
fn a_flush_mid_move_refuses_copies_made_before_it() {
    let leader = node();
    leader.become_leader(1, lease(), BTreeSet::new());
    attach(&leader, "f");
    let copy = |n: &Node, key: &'static [u8]| {
        n.write_internal(|w| {
            if w.inbound_done() >= 7 {
                return false;
            }
            w.set_if_new(key, kv_proto::Kind::String, b"old", None)
        })
        .unwrap()
        .0
    };
    leader.write_internal(|w| w.set_inbound(7)).unwrap();
    assert!(copy(&leader, b"a"), "copies land while the move runs");
    let (n, _) = leader.write_internal(|w| w.flush()).unwrap();
    assert_eq!(n, 1);
    assert!(!copy(&leader, b"b"), "a copy read before the flush is late now");
    assert_eq!(leader.info().keys, 0);
    // A follower applying the log makes the same decision.
    let term = leader.role_and_term().1;
    let mut frames = Vec::new();
    leader.read_log(term, 1, 10, &mut frames).unwrap();
    let follower = node();
    let fterm = follower.change_role(Role::Follower { epoch: 1 });
    follower.apply_entries(fterm, &entries(&frames)).unwrap();
    assert_eq!(follower.info().keys, 0);
    assert_eq!(follower.info().digest, leader.info().digest);
    assert!(follower.lock().inbound_done >= 7);
}

#[test]
fn a_snapshot_read_while_lists_change_loads_without_repeating_their_changes() {
    use kv_peer::ElemOp;
    let b = |items: &[&str]| items.iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
    let leader = node();
    leader.become_leader(3, lease(), BTreeSet::new());
    attach(&leader, "f");
    leader
        .write(k(b"l"), |w| w.apply(b"l", ElemOp::RPush, &b(&["a", "b", "c"])))
        .unwrap();
    leader
        .write(k(b"h"), |w| w.apply(b"h", ElemOp::HSet, &b(&["f", "1"])))
        .unwrap();
    let term = leader.role_and_term().1;
    let (at, _) = leader.snapshot_begin(term).unwrap();
    // Changes after the snapshot began and before the chunk holding the keys is read: the
    // chunk shows them, and the log replayed from `at` holds them too.
    leader
        .write(k(b"l"), |w| w.apply(b"l", ElemOp::RPush, &b(&["x"])))
        .unwrap();
    leader
        .write(k(b"l"), |w| w.apply(b"l", ElemOp::LPop, &b(&["1"])))
        .unwrap();
    leader
        .write(k(b"h"), |w| w.apply(b"h", ElemOp::HSet, &b(&["f", "2"])))
        .unwrap();
    let mut chunk = BytesMut::new();
    let (next, n, taken_at) = leader.snapshot_chunk(term, 0, 1000, usize::MAX, &mut chunk).unwrap();
    assert_eq!((next, n), (None, 2));
    leader
        .write(k(b"l"), |w| w.apply(b"l", ElemOp::LPush, &b(&["y"])))
        .unwrap();

    let mut msg = BytesMut::new();
    kv_peer::stream::write_snap_header(&mut msg, taken_at, n);
    msg.extend_from_slice(&chunk);
    let snap = &entries(&[msg.freeze()])[0];
    let follower = node();
    let fterm = follower.change_role(Role::Follower { epoch: 3 });
    follower.begin_snapshot(fterm).unwrap();
    assert_eq!(follower.load_snapshot_chunk(fterm, taken_at, &snap.args()[2..]), Ok(2));
    follower.finish_snapshot(fterm, 3, at).unwrap();
    let mut frames = Vec::new();
    leader.read_log(term, at + 1, 100, &mut frames).unwrap();
    assert_eq!(frames.len(), 4);
    follower.apply_entries(fterm, &entries(&frames)).unwrap();
    assert_eq!(
        follower.info().digest,
        leader.info().digest,
        "the list's pushes and pops before its chunk are not applied twice"
    );
}

#[test]
fn a_follower_applies_a_transaction_whole_or_not_at_all() {
    let leader = node();
    leader.become_leader(3, lease(), BTreeSet::new());
    attach(&leader, "f");
    leader.write(k(b"a"), |w| w.set(b"a", b"0", None)).unwrap();
    leader.write_internal(|w| w.mark_transaction(true)).unwrap();
    leader.write(k(b"a"), |w| w.set(b"a", b"1", None)).unwrap();
    leader.write(k(b"b"), |w| w.set(b"b", b"1", None)).unwrap();
    leader.write_internal(|w| w.mark_transaction(false)).unwrap();
    let term = leader.role_and_term().1;
    let mut frames = Vec::new();
    leader.read_log(term, 1, 10, &mut frames).unwrap();
    let reqs = entries(&frames);
    assert_eq!(reqs.len(), 5);

    let follower = node();
    let fterm = follower.change_role(Role::Follower { epoch: 3 });
    let value = |f: &Node, key: &[u8]| f.lock().store.peek(key).map(|(v, _)| v.payload().into_owned());
    // The stream breaks inside the transaction: nothing of it is applied or acknowledged.
    assert_eq!(follower.apply_entries(fterm, &reqs[..3]), Ok(1));
    assert_eq!(
        value(&follower, b"a"),
        Some(b"0".to_vec()),
        "half a transaction is not seen"
    );
    // The leader sends again from the follower's end: the transaction arrives whole, once.
    assert_eq!(follower.apply_entries(fterm, &reqs[1..4]), Ok(1));
    assert_eq!(value(&follower, b"b"), None);
    assert_eq!(follower.apply_entries(fterm, &reqs[4..]), Ok(5));
    assert_eq!(value(&follower, b"a"), Some(b"1".to_vec()));
    assert_eq!(follower.info().digest, leader.info().digest);
}

#[test]
fn a_positive_list_max_listpack_size_caps_compact_lists() {
    let n = node();
    let limit = |n: &Node| n.lock().store.compact_limits().list_max_compact_entries;
    let default = limit(&n);
    let set = |v: &str| {
        let a: Vec<Bytes> = ["CONFIG", "SET", "list-max-listpack-size", v]
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        assert!(n.settings.command(&a).as_error().is_none(), "CONFIG SET {v}");
        n.apply_settings();
    };
    set("5");
    assert_eq!(limit(&n), 5);
    set("-3");
    assert_eq!(limit(&n), default, "a byte size leaves the count");
}
