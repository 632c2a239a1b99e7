//! Clients blocked in a pop (`BLPOP` …), as Redis serves them: in the order they blocked,
//! by the write that gives them something, before that write's reply leaves. A waiter is
//! registered under the same lock as its failed first try, and every write checks the
//! waiters under the lock it applied with, so no wake-up is lost between the two. The pop
//! made for a waiter is logged like any write; the waiter's reply waits for it to be
//! replicated, as the writer's does.
//!
//! A transaction's writes serve nobody until `EXEC` ends ([`Node::end_exec`]): a waiter sees
//! the transaction's result, never a state in the middle of it.

use std::sync::Arc;

use kv_proto::Frame;

use super::{Node, Pending, Writer};

/// A blocked client, as the node sees it.
pub trait Waiting: Send + Sync {
    /// Tries the client's pop with `w`: its reply when something was popped for it.
    fn serve(&self, w: &mut Writer<'_>) -> Option<Frame>;
    /// Hands the reply over, with what it must wait for.
    fn deliver(&self, reply: Frame, pending: Option<Pending>);
}

/// The waiters of a node, oldest first.
#[derive(Default)]
pub struct Waiters {
    list: Vec<Arc<dyn Waiting>>,
    /// Set while a transaction runs: its writes serve nobody until it ends.
    pub deferred: bool,
}

impl Waiters {
    pub fn add(&mut self, w: Arc<dyn Waiting>) {
        self.list.push(w);
    }

    /// Removes `w`; false when it was not there (it was served meanwhile).
    pub fn remove(&mut self, w: &Arc<dyn Waiting>) -> bool {
        let before = self.list.len();
        self.list.retain(|x| !Arc::ptr_eq(x, w));
        self.list.len() != before
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Serves waiters, oldest first, until a round serves nobody (a waiter's own push, as
    /// `BLMOVE`'s, may serve another). Returns the served ones and their replies.
    pub fn serve(w: &mut Writer<'_>) -> Vec<(Arc<dyn Waiting>, Frame)> {
        let mut served = Vec::new();
        loop {
            let waiting = w.waiters().list.clone();
            let mut progress = false;
            for waiter in waiting {
                if let Some(reply) = waiter.serve(w) {
                    w.waiters().remove(&waiter);
                    served.push((waiter, reply));
                    progress = true;
                }
            }
            if !progress {
                return served;
            }
        }
    }
}

impl Node {
    /// A transaction ends: the waiters its writes made ready are served now.
    pub fn end_exec(&self) -> Option<Pending> {
        self.lock().waiters.deferred = false;
        // A write that changes nothing, for its serving of the waiters.
        self.write_internal(|_| ()).ok().and_then(|(_, p)| p)
    }

    /// A transaction starts: its writes serve nobody until [`Node::end_exec`].
    pub fn begin_exec(&self) {
        self.lock().waiters.deferred = true;
    }

    /// Forgets `w` (timed out, or its client left); false when it was served meanwhile.
    pub fn forget_waiter(&self, w: &Arc<dyn Waiting>) -> bool {
        self.lock().waiters.remove(w)
    }
}
