//! Pub/sub at the gate. The gate's clients subscribe in its own [`Hub`]; the gate in turn
//! subscribes on their behalf where messages are published: each channel at its home, the
//! leader of the shard owning the channel's slot (where every gate sends a `PUBLISH` of
//! it), and each pattern at every shard's leader (a message is published only at its
//! channel's home, so a pattern sees it once). A message arriving from a home goes to this
//! gate's subscribers of exactly that channel or pattern. So a message published through any
//! gate reaches every subscriber on every gate, once.
//!
//! [`Links`] owns the upstream side, in a task of its own: one connection per shard leader
//! (the cluster port), subscribed with weights — how many of this gate's clients listen,
//! so a home's `PUBLISH` reply counts them all (`KV.SUBSCRIBE`, `kv_server::cmd::pubsub`).
//! It re-syncs what it sent with what the hub holds whenever a client subscribes or leaves,
//! the ring or a leader changes, or a link drops: a failover loses the messages published
//! while the new leader had no subscription yet (pub/sub is at most once, as in Redis).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_client::ConnOptions;
use kv_proto::{Frame, Limits};
use kv_pubsub::{Hub, Space};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::debug;

use crate::routing::{Routing, Target};

/// The gate's pub/sub: its hub, and the task that keeps the upstream subscriptions.
pub struct Links {
    pub hub: Arc<Hub>,
    changed: Arc<Notify>,
    synced: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// How long a subscribe waits for the homes to confirm before it answers anyway.
const SYNC_WAIT: Duration = Duration::from_secs(2);

impl Links {
    /// Starts the link task.
    pub fn start(routing: watch::Receiver<Arc<Routing>>, options: ConnOptions, output_limit: usize) -> Links {
        let hub = Hub::new(output_limit);
        let changed = Arc::new(Notify::new());
        let (synced, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(hub.clone(), routing, options, changed.clone(), requests));
        Links { hub, changed, synced }
    }

    /// A client left: the upstream subscriptions follow, in the background.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// A client subscribed or unsubscribed: returns once the homes confirmed the change (or
    /// after [`SYNC_WAIT`]), so that a `PUBLISH` after the reply counts the client, as it
    /// would on one Redis.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.synced.send(tx).is_ok() {
            let _ = tokio::time::timeout(SYNC_WAIT, rx).await;
        }
    }
}

/// One shard leader's connection and what was subscribed on it.
struct Link {
    addr: String,
    writer: kv_tls::WriteHalf,
    channels: HashMap<(Space, Bytes), u64>,
    patterns: HashMap<Bytes, u64>,
    reader: tokio::task::JoinHandle<()>,
    /// The last `PING` sent after subscription changes, and the last one answered: the
    /// server applied everything sent before an answered one.
    pinged: u64,
    ponged: watch::Receiver<u64>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn run(
    hub: Arc<Hub>,
    mut routing: watch::Receiver<Arc<Routing>>,
    options: ConnOptions,
    changed: Arc<Notify>,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut links: HashMap<String, Link> = HashMap::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        while let Ok(w) = requests.try_recv() {
            waiting.push(w);
        }
        let current = routing.borrow_and_update().clone();
        let retry = sync(&hub, &current, &options, &changed, &mut links).await;
        // Whoever asked before this pass began is answered once the homes confirmed it.
        if !waiting.is_empty() {
            for link in links.values_mut() {
                let target = link.pinged;
                let _ = tokio::time::timeout(SYNC_WAIT, link.ponged.wait_for(|p| *p >= target)).await;
            }
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
        }
        let backoff = async {
            match retry {
                true => tokio::time::sleep(Duration::from_millis(200)).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed.notified() => {}
            w = requests.recv() => match w {
                Some(w) => waiting.push(w),
                None => return,
            },
            r = routing.changed() => if r.is_err() { return },
            _ = backoff => {}
        }
    }
}

/// Brings every link in step with the hub; true when something failed (retry soon).
async fn sync(
    hub: &Arc<Hub>,
    routing: &Routing,
    options: &ConnOptions,
    changed: &Arc<Notify>,
    links: &mut HashMap<String, Link>,
) -> bool {
    let (channels, patterns) = hub.weights();
    let mut failed = false;
    // Links to shards gone from the ring, to old leaders, or whose reader ended, go.
    links.retain(|shard, link| {
        let leader = routing
            .target(&Target::Shard(shard.clone()), true)
            .ok()
            .map(|(_, pool)| pool.addr().to_string());
        leader.as_deref() == Some(link.addr.as_str()) && !link.reader.is_finished()
    });
    for shard in routing.shard_names() {
        let want_channels: HashMap<(Space, Bytes), u64> = channels
            .iter()
            // A keyspace notification is published at its key's leader, which may be any:
            // such channels are subscribed at every leader, as patterns are.
            .filter(|(space, c, _)| {
                routing.owner(c) == Some(shard.as_str())
                    || (*space == Space::Global && (c.starts_with(b"__keyspace@") || c.starts_with(b"__keyevent@")))
            })
            .map(|(s, c, w)| ((*s, c.clone()), *w))
            .collect();
        let want_patterns: HashMap<Bytes, u64> = patterns.iter().cloned().collect();
        if !links.contains_key(shard) {
            if want_channels.is_empty() && want_patterns.is_empty() {
                continue;
            }
            let target = Target::Shard(shard.clone());
            let Ok((_, pool)) = routing.target(&target, true) else {
                failed = true;
                continue;
            };
            match connect(pool.addr(), options, hub, changed).await {
                Ok(link) => {
                    links.insert(shard.clone(), link);
                }
                Err(e) => {
                    debug!(shard, error = %e, "pub/sub link failed to connect");
                    failed = true;
                    continue;
                }
            }
        }
        let link = links.get_mut(shard).expect("linked");
        let mut out = BytesMut::new();
        for ((space, c), w) in &want_channels {
            if link.channels.get(&(*space, c.clone())) != Some(w) {
                let op: &[u8] = if *space == Space::Global {
                    b"SUBSCRIBE"
                } else {
                    b"SSUBSCRIBE"
                };
                out.extend_from_slice(&command(*w, op, c));
            }
        }
        for (space, c) in link.channels.keys() {
            if !want_channels.contains_key(&(*space, c.clone())) {
                let op: &[u8] = if *space == Space::Global {
                    b"UNSUBSCRIBE"
                } else {
                    b"SUNSUBSCRIBE"
                };
                out.extend_from_slice(&command(0, op, c));
            }
        }
        for (p, w) in &want_patterns {
            if link.patterns.get(p) != Some(w) {
                out.extend_from_slice(&command(*w, b"PSUBSCRIBE", p));
            }
        }
        for p in link.patterns.keys() {
            if !want_patterns.contains_key(p) {
                out.extend_from_slice(&command(0, b"PUNSUBSCRIBE", p));
            }
        }
        if out.is_empty() {
            continue;
        }
        link.pinged += 1;
        let seq = link.pinged.to_string();
        out.extend_from_slice(&kv_proto::write::command([&b"PING"[..], seq.as_bytes()]));
        if link.writer.write_all(&out).await.is_err() {
            links.remove(shard);
            failed = true;
            continue;
        }
        link.channels = want_channels;
        link.patterns = want_patterns;
    }
    failed
}

fn command(weight: u64, op: &[u8], name: &[u8]) -> Bytes {
    let w = weight.to_string();
    kv_proto::write::command([&b"KV.SUBSCRIBE"[..], w.as_bytes(), op, name])
}

/// Opens a link to a leader's cluster port; its reader relays messages into `hub` and
/// nudges the task when the connection ends.
async fn connect(addr: &str, options: &ConnOptions, hub: &Arc<Hub>, changed: &Arc<Notify>) -> std::io::Result<Link> {
    let stream = kv_client::open(addr, options).await?;
    let (mut read, writer) = stream.into_split();
    let hub = hub.clone();
    let changed = changed.clone();
    let (pong, ponged) = watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                match kv_proto::parse_reply(&mut buf, &Limits::REDIS) {
                    Ok(Some(frame)) => match pong_seq(&frame) {
                        Some(seq) => {
                            pong.send_replace(seq);
                        }
                        None => relay(&hub, frame),
                    },
                    Ok(None) => break,
                    Err(_) => {
                        changed.notify_one();
                        return;
                    }
                }
            }
            match read.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => {
                    changed.notify_one();
                    return;
                }
            }
        }
    });
    Ok(Link {
        addr: addr.to_string(),
        writer,
        channels: HashMap::new(),
        patterns: HashMap::new(),
        reader,
        pinged: 0,
        ponged,
    })
}

/// The number a link's `PING <n>` came back with: `["pong", n]` while subscribed, `n`
/// otherwise.
fn pong_seq(frame: &Frame) -> Option<u64> {
    let n = match frame {
        Frame::Array(items) | Frame::Push(items)
            if items.len() == 2 && items[0].as_bytes().is_some_and(|k| &k[..] == b"pong") =>
        {
            items[1].as_bytes()?
        }
        Frame::Bulk(b) => b,
        _ => return None,
    };
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// Passes a message from a home to this gate's subscribers of exactly that channel or
/// pattern; subscribe confirmations are dropped.
fn relay(hub: &Hub, frame: Frame) {
    let items = match frame {
        Frame::Array(items) | Frame::Push(items) => items,
        _ => return,
    };
    let bulk = |i: usize| items.get(i).and_then(Frame::as_bytes).cloned();
    match bulk(0).as_deref() {
        Some(b"message") => {
            if let (Some(c), Some(p)) = (bulk(1), bulk(2)) {
                hub.deliver_channel(Space::Global, &c, &p);
            }
        }
        Some(b"smessage") => {
            if let (Some(c), Some(p)) = (bulk(1), bulk(2)) {
                hub.deliver_channel(Space::Shard, &c, &p);
            }
        }
        Some(b"pmessage") => {
            if let (Some(pattern), Some(c), Some(p)) = (bulk(1), bulk(2), bulk(3)) {
                hub.deliver_pattern(&pattern, &c, &p);
            }
        }
        _ => {}
    }
}
