//! Serving a Redis Cluster client's command on a key that is moving to this shard
//! ([`crate::node::ClientRoute::Moving`]): the new owner answers for the key from the moment
//! the move starts, so a key not copied yet is pulled from the old owner's leader first
//! (`KV.FETCH`, then imported as `KV.MIGRATE` would: never over a newer write or a delete
//! made here), and after a write the old copy is dropped there (`KV.DROP`), so no read of
//! the old owner can see it again. The gate does the same for its clients
//! (`kv_gate::forward`); here it happens inside the server, for clients with no gate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kv_client::{ConnOptions, Pool};
use kv_peer::command::parse_fetch_reply;
use kv_peer::{MigrateItem, PeerCommand};
use tracing::debug;

use crate::node::{Node, Pending};

/// Connections to other shards' leaders, shared by every client connection.
pub struct Puller {
    options: ConnOptions,
    /// How long one call to the old owner may take (`--replica-timeout-ms`, the bound on
    /// every call between servers).
    timeout: Duration,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Puller {
    pub fn new(options: ConnOptions, timeout: Duration) -> Puller {
        Puller {
            options,
            timeout,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, addr: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Pool::new(addr, 1, self.options.clone())))
            .clone()
    }

    /// Copies `keys` from the leader at `source` for ring `version`. Returns what the
    /// client's reply must wait for, or why the command cannot run now (`TRYAGAIN`).
    pub async fn pull(
        &self,
        node: &Node,
        version: u64,
        source: &str,
        keys: &[Bytes],
    ) -> Result<Option<Pending>, String> {
        let pool = self.pool(source);
        let mut items = Vec::new();
        for key in keys {
            let fetch = PeerCommand::Fetch { key: key.clone() }.encode();
            let reply = pool
                .call(fetch, self.timeout)
                .await
                .map_err(|e| format!("TRYAGAIN cannot reach the shard the key is moving from: {e}"))?;
            match parse_fetch_reply(&reply) {
                Ok(Some(found)) => items.push(MigrateItem {
                    key: key.clone(),
                    kind: found.kind,
                    value: found.value,
                    expires_at: found.expires_at,
                }),
                Ok(None) => {}
                Err(_) => {
                    return Err(format!(
                        "TRYAGAIN the shard the key is moving from answered: {}",
                        reply.as_error().map(String::from_utf8_lossy).unwrap_or_default()
                    ));
                }
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        match super::moves::import(node, version, &items) {
            Ok((Ok(_), pending)) => Ok(pending),
            Ok((Err(v), _)) => Err(format!("TRYAGAIN not yet receiving keys for ring version {v}")),
            Err(refusal) => Err(refusal.cluster_text()),
        }
    }

    /// Drops the old copies of `keys` at the leader at `source` after a write here. Best
    /// effort: the move's own clean-up drops whatever is left when it ends.
    pub async fn drop_old(&self, source: &str, keys: Vec<Bytes>) {
        let request = PeerCommand::Drop { keys }.encode();
        if let Err(e) = self.pool(source).call(request, self.timeout).await {
            debug!(error = %e, source, "could not drop the old copy of a moved key");
        }
    }
}
