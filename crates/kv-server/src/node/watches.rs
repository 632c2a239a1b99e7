//! [`Watches`]: the keys clients `WATCH`, and which of those watches a change has broken.
//!
//! A watch belongs to an [`Owner`]: a connection, and a session on it — a Redis client on
//! the client port has one (session 0); a gate multiplexes many clients over one pooled
//! connection and names each client's watch by a session number (`KV.WATCH`). When a
//! connection closes, every watch it owned goes with it, so what a gate that vanished left
//! behind is bounded by its open connections.
//!
//! Every logged change of a key marks the watches on it dirty (the node calls
//! [`Watches::touch`] for each mutation, so expiry, eviction and moves count as Redis
//! counts them); a flush touches the watched keys that existed. As in Redis 7.0, a key that
//! was live when watched and has expired by `EXEC` also fails the transaction — the node
//! checks that at `EXEC` with [`Watch::live_keys`].

use std::collections::HashMap;

use bytes::Bytes;

use super::{Node, Pending, Refusal};

/// Whose watch: (connection id, session on that connection).
pub type Owner = (u64, u64);

/// One owner's watched keys.
#[derive(Debug, Default)]
pub struct Watch {
    /// Each key, and whether it was live when watched.
    keys: Vec<(Box<[u8]>, bool)>,
    dirty: bool,
}

impl Watch {
    /// A watched key changed since it was watched.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// The keys that were live when watched (one that has expired since breaks the watch).
    pub fn live_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().filter(|(_, live)| *live).map(|(k, _)| &k[..])
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Watches {
    by_key: HashMap<Box<[u8]>, Vec<Owner>>,
    owners: HashMap<Owner, Watch>,
}

impl Watches {
    /// True when nobody watches anything: the check every mutation makes first.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// `owner` watches `key` (`live`: it holds a value now). Watching a key twice is once.
    pub fn add(&mut self, owner: Owner, key: &[u8], live: bool) {
        let watch = self.owners.entry(owner).or_default();
        if watch.keys.iter().any(|(k, _)| &k[..] == key) {
            return;
        }
        watch.keys.push((key.into(), live));
        self.by_key.entry(key.into()).or_default().push(owner);
    }

    /// `key` changed: every watch on it is broken.
    pub fn touch(&mut self, key: &[u8]) {
        if let Some(owners) = self.by_key.get(key) {
            for o in owners {
                if let Some(w) = self.owners.get_mut(o) {
                    w.dirty = true;
                }
            }
        }
    }

    /// Every watched key, for a flush to touch the ones that exist.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.by_key.keys().map(|k| &k[..])
    }

    /// Ends `owner`'s watch (`EXEC`, `DISCARD`, `UNWATCH`) and returns it.
    pub fn remove(&mut self, owner: Owner) -> Option<Watch> {
        let watch = self.owners.remove(&owner)?;
        for (k, _) in &watch.keys {
            if let Some(owners) = self.by_key.get_mut(&k[..]) {
                owners.retain(|o| *o != owner);
                if owners.is_empty() {
                    self.by_key.remove(&k[..]);
                }
            }
        }
        Some(watch)
    }

    /// Ends every watch of connection `conn` (it closed).
    pub fn remove_connection(&mut self, conn: u64) {
        let owned: Vec<Owner> = self.owners.keys().filter(|o| o.0 == conn).copied().collect();
        for o in owned {
            self.remove(o);
        }
    }

    /// Owners with a watch.
    pub fn len(&self) -> usize {
        self.owners.len()
    }
}

impl Node {
    /// `WATCH keys` for `owner`: refused as a write would be (not the leader, keys served
    /// elsewhere), so a watch is always held where the transaction will run.
    pub fn watch(&self, owner: Owner, keys: &[Bytes]) -> Result<((), Option<Pending>), Refusal> {
        self.write(keys.iter().map(|k| &k[..]), |w| {
            keys.iter().for_each(|k| w.watch(owner, k))
        })
    }

    /// Ends `owner`'s watch, if any (`UNWATCH`, `DISCARD`).
    pub fn unwatch(&self, owner: Owner) {
        let mut data = self.lock();
        if !data.watches.is_empty() {
            data.watches.remove(owner);
        }
    }

    /// Ends every watch of connection `conn`, which closed.
    pub fn unwatch_connection(&self, conn: u64) {
        self.lock().watches.remove_connection(conn);
    }

    /// At `EXEC`: ends `owner`'s watch and says whether the transaction may run — false when
    /// a watched key changed or expired, or when there is no watch (this node did not take
    /// it: a new leader since `WATCH`, a connection that dropped). Called under the
    /// exclusive transaction lock, so nothing changes between the check and the run.
    pub fn watch_holds(&self, owner: Owner) -> bool {
        let mut data = self.lock();
        let Some(watch) = data.watches.remove(owner) else {
            return false;
        };
        let now = kv_store::time::now_ms();
        !watch.dirty()
            && watch.live_keys().all(|k| {
                !matches!(
                    data.store.get(k, now),
                    kv_store::Lookup::Miss | kv_store::Lookup::Expired
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_breaks_exactly_the_watches_on_its_key() {
        let mut w = Watches::default();
        assert!(w.is_empty());
        w.add((1, 0), b"a", true);
        w.add((1, 0), b"a", true);
        w.add((2, 7), b"a", false);
        w.add((2, 8), b"b", true);
        w.touch(b"a");
        w.touch(b"zzz");
        let one = w.remove((1, 0)).unwrap();
        assert!(one.dirty());
        assert_eq!(one.live_keys().collect::<Vec<_>>(), vec![&b"a"[..]], "watched once");
        assert!(w.remove((1, 0)).is_none(), "gone after EXEC");
        // A removed watch is no longer reached by changes; the others still are.
        w.touch(b"a");
        assert!(w.remove((2, 7)).unwrap().dirty());
        let b = w.remove((2, 8)).unwrap();
        assert!(!b.dirty());
        assert_eq!(b.live_keys().count(), 1);
        assert!(w.is_empty() && w.keys().next().is_none(), "no key left indexed");
    }

    #[test]
    fn a_closed_connection_takes_all_its_sessions_watches() {
        let mut w = Watches::default();
        w.add((5, 1), b"a", true);
        w.add((5, 2), b"b", true);
        w.add((6, 1), b"a", true);
        w.remove_connection(5);
        assert_eq!(w.len(), 1);
        assert_eq!(w.keys().collect::<Vec<_>>(), vec![&b"a"[..]]);
    }
}
