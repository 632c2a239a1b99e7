//! The leader's shard state in the coordinator: the in-sync set and readiness to receive
//! keys, written by this one task with version-checked writes.
//!
//! A follower the replication layer no longer wants leaves the in-sync set here first; only
//! once the coordinator confirmed that does the node stop waiting for it
//! ([`crate::node::Node::confirm_isr`]). A write that loses a version race re-reads the
//! state: still ours (epoch and leader), adopt its version and go on; otherwise step down.

use std::time::Duration;

use kv_cluster::{CoordError, ShardState};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::{Ctx, StepDown};

pub(super) async fn run(
    ctx: Ctx,
    term: u64,
    mut written: ShardState,
    mut version: i32,
    mut ready: watch::Receiver<u64>,
    step_down: mpsc::Sender<StepDown>,
) {
    let path = ctx.paths.state(&ctx.node.shard);
    loop {
        let Ok((desired, confirmed)) = ctx.node.isr(term) else {
            return;
        };
        let ring_ready = *ready.borrow_and_update();
        let isr_changed = desired != confirmed;
        if isr_changed || written.ring_ready != ring_ready {
            let mut isr = vec![ctx.node.id.clone()];
            isr.extend(desired.iter().cloned());
            let state = ShardState {
                isr,
                ring_ready,
                ..written.clone()
            };
            let data = serde_json::to_vec(&state).expect("ShardState serialises");
            match ctx.coord.set(&path, &data, Some(version)).await {
                Ok(v) => {
                    version = v;
                    if isr_changed {
                        ctx.node.confirm_isr(term, desired);
                        info!(shard = ctx.node.shard, isr = ?state.isr, "in-sync set changed");
                    }
                    written = state;
                    continue;
                }
                Err(CoordError::BadVersion) => match recheck(&ctx, &written).await {
                    Ok(Some(v)) => {
                        version = v;
                        continue;
                    }
                    Ok(None) => {
                        let _ = step_down.send((term, "the shard state changed under us".into())).await;
                        return;
                    }
                    Err(e) => debug!(error = %e, "cannot re-read the shard state"),
                },
                Err(e) => debug!(error = %e, "cannot write the shard state; will retry"),
            }
        }
        tokio::select! {
            _ = ctx.node.isr_poked() => {}
            r = ready.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The stored state's version if it is still this leader's (same epoch and leader).
async fn recheck(ctx: &Ctx, ours: &ShardState) -> Result<Option<i32>, CoordError> {
    match ctx.coord.get(&ctx.paths.state(&ctx.node.shard)).await? {
        Some((data, stat)) => match serde_json::from_slice::<ShardState>(&data) {
            Ok(s) if s.epoch == ours.epoch && s.leader == ours.leader => Ok(Some(stat.version)),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}
