//! The leader's lease, renewed by its own task so that nothing else a leader does (a ring
//! change waiting for replication, a slow coordinator write) can delay it.
//!
//! Every sixth of the session timeout the task asks the coordinator, after a `sync` with
//! its quorum, whether the leader lock is still this session's. A yes extends the lease to
//! two thirds of the session timeout after the question was *sent*: the lock cannot vanish
//! sooner. A no means someone else may lead: the task asks to step down. No answer leaves
//! the lease to run out, after which the leader refuses reads and writes.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::debug;

use super::{Ctx, StepDown, lease_after};

pub(super) async fn run(ctx: Ctx, term: u64, step_down: mpsc::Sender<StepDown>) {
    let timeout = ctx.coord.session_timeout();
    let mut tick = tokio::time::interval((timeout / 6).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lock = ctx.paths.leader(&ctx.node.shard);
    loop {
        tick.tick().await;
        let sent = Instant::now();
        match tokio::time::timeout(timeout / 3, ctx.coord.confirm_owner(&lock)).await {
            Ok(Ok(true)) => ctx.node.extend_lease(term, lease_after(ctx.coord.as_ref(), sent)),
            Ok(Ok(false)) => {
                let _ = step_down
                    .send((term, "the leader lock is no longer this session's".into()))
                    .await;
                return;
            }
            Ok(Err(e)) => debug!(error = %e, "cannot confirm the leader lock"),
            Err(_) => debug!("confirming the leader lock timed out"),
        }
    }
}
