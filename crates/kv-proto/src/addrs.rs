//! [`ClientAddrs`]: which address a TLS client is sent to for a server.
//!
//! A kvserver advertises its plain client address everywhere; one with a TLS port also
//! advertises that. As Redis Cluster does (7.0 with `tls-cluster`, and `cluster-response-tls`
//! since), a client on a TLS connection is given the TLS addresses in `MOVED`, `ASK` and
//! `CLUSTER SLOTS/SHARDS/NODES`, and a plain client the plain ones, so each can follow the
//! redirection over the transport it already uses.

use std::collections::HashMap;
use std::sync::RwLock;

/// Plain client address → TLS client address, for every server that has one. One per
/// server process, replaced whole when the cluster view changes; read only on redirections
/// and cluster-map commands.
#[derive(Debug, Default)]
pub struct ClientAddrs {
    tls: RwLock<HashMap<String, String>>,
}

impl ClientAddrs {
    /// Replaces the map.
    pub fn set(&self, map: HashMap<String, String>) {
        *self.tls.write().expect("client addrs") = map;
    }

    /// The TLS address of the server whose plain address is `plain`; `plain` itself when it
    /// has none.
    pub fn tls(&self, plain: &str) -> String {
        self.tls
            .read()
            .expect("client addrs")
            .get(plain)
            .cloned()
            .unwrap_or_else(|| plain.to_string())
    }

    /// A `MOVED <slot> <addr>` or `ASK <slot> <addr>` text with the address replaced by its
    /// TLS address; any other text unchanged.
    pub fn tls_redirect(&self, text: &str) -> String {
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(kind @ ("MOVED" | "ASK")), Some(slot), Some(addr)) => format!("{kind} {slot} {}", self.tls(addr)),
            _ => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_name_the_tls_address_when_there_is_one() {
        let a = ClientAddrs::default();
        a.set(HashMap::from([("h:7001".to_string(), "h:7101".to_string())]));
        assert_eq!(a.tls_redirect("MOVED 12 h:7001"), "MOVED 12 h:7101");
        assert_eq!(a.tls_redirect("ASK 5 h:7001"), "ASK 5 h:7101");
        assert_eq!(a.tls_redirect("MOVED 12 h:7002"), "MOVED 12 h:7002");
        assert_eq!(a.tls_redirect("TRYAGAIN no leader"), "TRYAGAIN no leader");
        assert_eq!(a.tls("h:7001"), "h:7101");
    }
}
