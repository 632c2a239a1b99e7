//! Where kvstore keeps its state in the coordinator's tree:
//!
//! ```text
//! /kvstore/<cluster>/shards/<shard>/nodes/<node-id>  ephemeral: NodeInfo (address)
//! /kvstore/<cluster>/shards/<shard>/leader           ephemeral: the leader's node id (a lock)
//! /kvstore/<cluster>/shards/<shard>/state            persistent: ShardState (epoch, leader, ISR),
//!                                                    changed only by version-checked writes
//! /kvstore/<cluster>/gates/<gate-id>                 ephemeral: a gate's addresses
//! /kvstore/<cluster>/ring                            persistent: RingState (versioned ring, move)
//! /kvstore/<cluster>/ring-lock                       ephemeral: the ring manager's lock
//! /kvstore/<cluster>/removing/<shard>                persistent: a shard to drain and remove
//! /kvstore/<cluster>/users                           persistent: the users (Redis ACL file text,
//!                                                    passwords hashed), changed by version-checked
//!                                                    writes
//! ```

/// Path builder for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: String,
}

impl Paths {
    /// Paths of cluster `name` (validated with [`validate_name`]).
    pub fn new(cluster: &str) -> Paths {
        Paths {
            root: format!("/kvstore/{cluster}"),
        }
    }

    /// The cluster's root node.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Parent of all shards.
    pub fn shards(&self) -> String {
        format!("{}/shards", self.root)
    }

    /// One shard's node.
    pub fn shard(&self, shard: &str) -> String {
        format!("{}/shards/{shard}", self.root)
    }

    /// Parent of a shard's server registrations.
    pub fn nodes(&self, shard: &str) -> String {
        format!("{}/shards/{shard}/nodes", self.root)
    }

    /// One server's registration.
    pub fn node(&self, shard: &str, id: &str) -> String {
        format!("{}/shards/{shard}/nodes/{id}", self.root)
    }

    /// A shard's leader lock.
    pub fn leader(&self, shard: &str) -> String {
        format!("{}/shards/{shard}/leader", self.root)
    }

    /// A shard's persistent state.
    pub fn state(&self, shard: &str) -> String {
        format!("{}/shards/{shard}/state", self.root)
    }

    /// The stored ring.
    pub fn ring(&self) -> String {
        format!("{}/ring", self.root)
    }

    /// The ring manager's lock.
    pub fn ring_lock(&self) -> String {
        format!("{}/ring-lock", self.root)
    }

    /// Parent of removal requests.
    /// The cluster's users: one store every gate and server follows.
    pub fn users(&self) -> String {
        format!("{}/users", self.root)
    }

    pub fn removing(&self) -> String {
        format!("{}/removing", self.root)
    }

    /// A request to drain and remove `shard`.
    pub fn removing_shard(&self, shard: &str) -> String {
        format!("{}/removing/{shard}", self.root)
    }

    /// Parent of gate registrations.
    pub fn gates(&self) -> String {
        format!("{}/gates", self.root)
    }

    /// One gate's registration.
    pub fn gate(&self, id: &str) -> String {
        format!("{}/gates/{id}", self.root)
    }
}

/// Checks a cluster or shard name: 1–64 characters from `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > 64 || !ok_chars || name == "." || name == ".." {
        return Err(format!(
            "invalid {what} name `{name}`: use 1-64 characters from A-Z a-z 0-9 _ . -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = Paths::new("prod");
        assert_eq!(p.node("s1", "n1"), "/kvstore/prod/shards/s1/nodes/n1");
        assert_eq!(p.state("s1"), "/kvstore/prod/shards/s1/state");
        assert_eq!(p.gate("g"), "/kvstore/prod/gates/g");
        assert!(validate_name("shard", "s-1.a_b").is_ok());
        assert!(validate_name("shard", "a/b").is_err());
        assert!(validate_name("shard", "").is_err());
        assert!(validate_name("shard", "..").is_err());
    }
}
