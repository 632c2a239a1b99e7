//! [`ErrorCode`]: the first word of an error reply, for the errors peers act on. Servers
//! write them through [`ErrorCode::reply`]; gates read them with [`ErrorCode::of`]. Nothing
//! else in the code matches on error text.

use kv_proto::Frame;

/// See the module documentation. Each variant says what the receiver should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A write reached a server that is not its shard's leader: send it to the leader.
    NotLeader,
    /// The server cannot serve this right now (its leadership lease is unconfirmed, or it
    /// is not ready to receive keys yet). Nothing was applied: retry shortly.
    TryAgain,
    /// Fewer in-sync replicas than `--min-insync`: nothing was applied.
    NoReplicas,
    /// The key is not this shard's under the ring the server knows (or is moving away from
    /// it). Nothing was applied: route by the current ring and retry.
    Moved,
    /// A follower that cannot vouch for its data (not in sync, or not hearing from its
    /// leader) refused a read: read from the leader.
    MasterDown,
    /// The server is still loading its data.
    Loading,
    /// No shard can serve the request (gate to client).
    ClusterDown,
    /// The value can never fit in the server's memory bound.
    Oom,
    /// The cluster port requires authentication first.
    NoAuth,
}

const ALL: [ErrorCode; 9] = [
    ErrorCode::NotLeader,
    ErrorCode::TryAgain,
    ErrorCode::NoReplicas,
    ErrorCode::Moved,
    ErrorCode::MasterDown,
    ErrorCode::Loading,
    ErrorCode::ClusterDown,
    ErrorCode::Oom,
    ErrorCode::NoAuth,
];

impl ErrorCode {
    /// The code as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotLeader => "NOTLEADER",
            ErrorCode::TryAgain => "TRYAGAIN",
            ErrorCode::NoReplicas => "NOREPLICAS",
            ErrorCode::Moved => "MOVED",
            ErrorCode::MasterDown => "MASTERDOWN",
            ErrorCode::Loading => "LOADING",
            ErrorCode::ClusterDown => "CLUSTERDOWN",
            ErrorCode::Oom => "OOM",
            ErrorCode::NoAuth => "NOAUTH",
        }
    }

    /// The code of an error frame, if it is one of these.
    pub fn of(frame: &Frame) -> Option<ErrorCode> {
        let code = frame.error_code()?;
        ALL.into_iter().find(|c| c.as_str().as_bytes() == code)
    }

    /// The error text `CODE message`.
    pub fn reply(self, message: impl std::fmt::Display) -> String {
        format!("{} {message}", self.as_str())
    }

    /// True when nothing was applied and the request may be sent again where the routing
    /// now points (after a failover, a ring change, or a lease renewal).
    pub fn retry_elsewhere(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader | ErrorCode::TryAgain | ErrorCode::Moved | ErrorCode::MasterDown | ErrorCode::Loading
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in ALL {
            assert_eq!(ErrorCode::of(&Frame::error(c.reply("x y"))), Some(c));
        }
        assert_eq!(ErrorCode::of(&Frame::error("ERR no")), None);
        assert_eq!(ErrorCode::of(&Frame::Null), None);
    }
}
