//! Element ops ([`kv_peer::ElemOp`]) applied to a collection: one function for the leader,
//! which applies what a command decided and logs it, and for followers, which apply the log.
//! Sharing it is what keeps replicas equal.

use bytes::Bytes;
use kv_peer::ElemOp;
use kv_proto::Kind;
use kv_store::{Object, Store, WrongType};

/// The kind of collection an op changes.
pub fn op_kind(op: ElemOp) -> Kind {
    match op {
        ElemOp::HSet | ElemOp::HDel => Kind::Hash,
        ElemOp::SAdd | ElemOp::SRem => Kind::Set,
        ElemOp::ZAdd | ElemOp::ZRem => Kind::ZSet,
        _ => Kind::List,
    }
}

/// What an op did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Elements added (HSET: new fields; SADD, ZADD: new members; pushes: elements pushed),
    /// or removed (HDEL, SREM, ZREM, pops, removals).
    pub count: usize,
    /// The elements a pop removed, in order.
    pub popped: Vec<Box<[u8]>>,
    /// The collection's length afterwards (0: deleted, or the key held another kind).
    pub len: usize,
}

fn index(b: &[u8]) -> usize {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Applies `op` with `args` to `store`'s collection at `key` (created when absent, deleted
/// when left empty). `Err` when the key holds another kind (the op then did nothing).
pub fn apply(store: &mut Store, key: &[u8], op: ElemOp, args: &[Bytes]) -> Result<Applied, WrongType> {
    store.edit(key, op_kind(op), |obj| {
        let mut done = apply_to(obj, op, args);
        done.len = obj.len();
        done
    })
}

fn apply_to(obj: &mut Object, op: ElemOp, args: &[Bytes]) -> Applied {
    let mut done = Applied::default();
    match (obj, op) {
        (Object::Hash(h), ElemOp::HSet) => {
            for pair in args.chunks_exact(2) {
                done.count += h.set(&pair[0], &pair[1]) as usize;
            }
        }
        (Object::Hash(h), ElemOp::HDel) => done.count = args.iter().filter(|f| h.remove(f)).count(),
        (Object::Set(s), ElemOp::SAdd) => done.count = args.iter().filter(|m| s.add(m)).count(),
        (Object::Set(s), ElemOp::SRem) => done.count = args.iter().filter(|m| s.remove(m)).count(),
        (Object::ZSet(z), ElemOp::ZAdd) => {
            for pair in args.chunks_exact(2) {
                let Ok(bits) = <[u8; 8]>::try_from(&pair[0][..]) else {
                    continue;
                };
                let score = f64::from_le_bytes(bits);
                if !score.is_nan() {
                    done.count += z.insert(&pair[1], score).is_none() as usize;
                }
            }
        }
        (Object::ZSet(z), ElemOp::ZRem) => done.count = args.iter().filter(|m| z.remove(m).is_some()).count(),
        (Object::List(l), ElemOp::LPush) => {
            args.iter().for_each(|v| l.push_front(v));
            done.count = args.len();
        }
        (Object::List(l), ElemOp::RPush) => {
            args.iter().for_each(|v| l.push_back(v));
            done.count = args.len();
        }
        (Object::List(l), ElemOp::LPop | ElemOp::RPop) => {
            let n = args.first().map_or(1, |a| index(a));
            while done.popped.len() < n {
                let v = if op == ElemOp::LPop {
                    l.pop_front()
                } else {
                    l.pop_back()
                };
                match v {
                    Some(v) => done.popped.push(v),
                    None => break,
                }
            }
            done.count = done.popped.len();
        }
        (Object::List(l), ElemOp::LSet) => {
            if let [i, v] = args {
                done.count = l.set(index(i), v) as usize;
            }
        }
        (Object::List(l), ElemOp::LInsert) => {
            if let [i, v] = args {
                let i = index(i);
                if i <= l.len() {
                    l.insert(i, v);
                    done.count = 1;
                }
            }
        }
        (Object::List(l), ElemOp::LRemAt) => {
            // Positions ascending: remove from the last, so earlier ones do not shift.
            for i in args.iter().rev() {
                done.count += l.remove(index(i)).is_some() as usize;
            }
        }
        (Object::List(l), ElemOp::LTrim) => {
            if let [start, end] = args {
                let before = l.len();
                l.retain_range(index(start), index(end));
                done.count = before - l.len();
            }
        }
        // An op on another kind of collection: see kv_peer::log (it does nothing).
        _ => {}
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn ops_create_change_and_delete_collections() {
        let mut s = Store::new(Default::default());
        assert_eq!(
            apply(&mut s, b"h", ElemOp::HSet, &b(&["f", "1", "g", "2"]))
                .unwrap()
                .count,
            2
        );
        assert_eq!(apply(&mut s, b"h", ElemOp::HSet, &b(&["f", "3"])).unwrap().count, 0);
        assert!(apply(&mut s, b"h", ElemOp::SAdd, &b(&["m"])).is_err(), "WRONGTYPE");
        assert_eq!(
            apply(&mut s, b"h", ElemOp::HDel, &b(&["f", "g", "x"])).unwrap().count,
            2
        );
        assert!(!s.contains(b"h"), "an emptied hash is deleted");
        assert_eq!(s.used_bytes(), 0);
        assert_eq!(s.digest(), 0);

        apply(&mut s, b"l", ElemOp::RPush, &b(&["a", "b", "c", "d"])).unwrap();
        apply(&mut s, b"l", ElemOp::LRemAt, &b(&["1", "2"])).unwrap();
        let popped = apply(&mut s, b"l", ElemOp::LPop, &b(&["5"])).unwrap().popped;
        assert_eq!(popped, vec![Box::from(&b"a"[..]), Box::from(&b"d"[..])]);
        assert!(!s.contains(b"l"));

        let one = 1.5f64.to_le_bytes();
        let args = vec![Bytes::copy_from_slice(&one), Bytes::from_static(b"m")];
        assert_eq!(apply(&mut s, b"z", ElemOp::ZAdd, &args).unwrap().count, 1);
        assert_eq!(
            apply(&mut s, b"z", ElemOp::ZAdd, &args).unwrap().count,
            0,
            "replaying converges"
        );
        let z = s.object(b"z", Kind::ZSet).unwrap().unwrap();
        let Object::ZSet(z) = &*z else { panic!("a sorted set") };
        assert_eq!(z.score(b"m"), Some(1.5));
    }

    #[test]
    fn a_big_collection_converts_and_keeps_its_digest() {
        let mut a = Store::new(Default::default());
        let members: Vec<Bytes> = (0..300).map(|i| Bytes::from(format!("member-{i}"))).collect();
        for m in &members {
            apply(&mut a, b"s", ElemOp::SAdd, std::slice::from_ref(m)).unwrap();
        }
        let (val, _) = a.peek(b"s").unwrap();
        assert_eq!(val.encoding(), Some("hashtable"));
        // The same set loaded whole (a snapshot) has the same digest.
        let mut b2 = Store::new(Default::default());
        b2.set_payload(b"s", Kind::Set, &val.payload(), None).unwrap();
        assert_eq!(a.digest(), b2.digest());
        let mut small = Store::new(Default::default());
        apply(
            &mut small,
            b"s",
            ElemOp::SAdd,
            &[Bytes::from_static(b"1"), Bytes::from_static(b"-2")],
        )
        .unwrap();
        assert_eq!(small.peek(b"s").unwrap().0.encoding(), Some("intset"));
        apply(&mut small, b"s", ElemOp::SAdd, &members[..1]).unwrap();
        assert_eq!(small.peek(b"s").unwrap().0.encoding(), Some("listpack"));
    }
}
