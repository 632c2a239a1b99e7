//! Pub/sub, as one server (a kvserver) or one gate sees it: [`Hub`] knows which connection
//! is subscribed to which channel (and pattern, and shard channel) and fans a published
//! message out to their [`Inbox`]es; [`Client`] is one connection's side: the subscribe
//! commands, their replies and its count of subscriptions, as Redis writes them in RESP2
//! (arrays; a subscribed connection may then only subscribe, unsubscribe, `PING`, `QUIT`,
//! `RESET`) and RESP3 (push frames; anything goes).
//!
//! A subscriber that does not read is bounded by `client-output-buffer-limit pubsub`: once
//! the messages queued for it exceed the hub's limit it is dropped (its inbox ends and the
//! connection closes), as Redis closes such a client — never unbounded memory.
//!
//! Cluster-wide delivery is the gates' job (`kv_gate::pubsub`): a gate subscribes on its
//! clients' behalf at each channel's home (the leader of the shard owning the channel's
//! slot) with a weight — how many of its clients listen — so `PUBLISH` at the home counts
//! every client that receives the message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kv_proto::{Frame, Protocol};
use tokio::sync::mpsc;

/// Plain channels (`SUBSCRIBE`/`PUBLISH`) or shard channels (`SSUBSCRIBE`/`SPUBLISH`): two
/// separate namespaces, as in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    Global,
    Shard,
}

impl Space {
    fn index(self) -> usize {
        self as usize
    }
}

/// A message on its way to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub space: Space,
    /// The pattern it matched (`pmessage`), if delivered for one.
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message {
    /// Bytes it holds while queued (what the output limit counts).
    fn size(&self) -> usize {
        self.channel.len() + self.payload.len() + self.pattern.as_ref().map_or(0, Bytes::len) + 32
    }

    /// Writes it as Redis does: `message`, `pmessage` or `smessage`, an array in RESP2 and a
    /// push frame in RESP3.
    pub fn encode(&self, out: &mut BytesMut, proto: Protocol) {
        let (kind, n): (&[u8], usize) = match (&self.pattern, self.space) {
            (Some(_), _) => (b"pmessage", 4),
            (None, Space::Global) => (b"message", 3),
            (None, Space::Shard) => (b"smessage", 3),
        };
        push_header(out, n, proto);
        kv_proto::write::bulk(out, kind);
        if let Some(p) = &self.pattern {
            kv_proto::write::bulk(out, p);
        }
        kv_proto::write::bulk(out, &self.channel);
        kv_proto::write::bulk(out, &self.payload);
    }
}

fn push_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    let kind = if proto == Protocol::Resp3 { b'>' } else { b'*' };
    kv_proto::write::header(out, kind, n);
}

/// A subscriber's id in its hub.
pub type SubId = u64;

struct Mailbox {
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Inner {
    /// Per [`Space`]: channel → subscribers and their weights.
    channels: [HashMap<Bytes, HashMap<SubId, u64>>; 2],
    patterns: HashMap<Bytes, HashMap<SubId, u64>>,
    boxes: HashMap<SubId, Mailbox>,
}

/// See the crate documentation.
pub struct Hub {
    inner: Mutex<Inner>,
    next: AtomicU64,
    /// Bytes queued for one subscriber past which it is dropped (0: no limit).
    limit: AtomicUsize,
}

/// Where one connection's messages arrive. Dropping it unsubscribes everything.
pub struct Inbox {
    pub id: SubId,
    rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
    hub: Arc<Hub>,
}

impl Inbox {
    /// The next message; `None` once the subscriber was dropped for exceeding the output
    /// limit (the connection must close).
    pub async fn recv(&mut self) -> Option<Message> {
        if self.overflowed.load(Ordering::Acquire) {
            return None;
        }
        let m = self.rx.recv().await?;
        self.queued.fetch_sub(m.size(), Ordering::Relaxed);
        Some(m)
    }

    /// A message already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        let m = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(m.size(), Ordering::Relaxed);
        Some(m)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub dropping subscribers with more than `limit` bytes queued (0: no limit).
    pub fn new(limit: usize) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::default(),
            next: AtomicU64::new(1),
            limit: AtomicUsize::new(limit),
        })
    }

    /// Changes the output limit (`CONFIG SET client-output-buffer-limit`).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// A new subscriber's inbox.
    pub fn inbox(self: &Arc<Self>) -> Inbox {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        lock(&self.inner).boxes.insert(
            id,
            Mailbox {
                tx,
                queued: queued.clone(),
                overflowed: overflowed.clone(),
            },
        );
        Inbox {
            id,
            rx,
            queued,
            overflowed,
            hub: self.clone(),
        }
    }

    /// Subscribes `id` to `channel` with `weight` (a gate's count of its clients; 1 for a
    /// client); a second subscribe sets the weight. True when it was not subscribed.
    pub fn subscribe(&self, id: SubId, space: Space, channel: &Bytes, weight: u64) -> bool {
        let mut inner = lock(&self.inner);
        let subs = inner.channels[space.index()].entry(channel.clone()).or_default();
        subs.insert(id, weight).is_none()
    }

    /// True when `id` was subscribed to `channel`.
    pub fn unsubscribe(&self, id: SubId, space: Space, channel: &[u8]) -> bool {
        let mut inner = lock(&self.inner);
        let map = &mut inner.channels[space.index()];
        let Some(subs) = map.get_mut(channel) else {
            return false;
        };
        let was = subs.remove(&id).is_some();
        if subs.is_empty() {
            map.remove(channel);
        }
        was
    }

    /// [`Hub::subscribe`] for a pattern.
    pub fn psubscribe(&self, id: SubId, pattern: &Bytes, weight: u64) -> bool {
        let mut inner = lock(&self.inner);
        inner
            .patterns
            .entry(pattern.clone())
            .or_default()
            .insert(id, weight)
            .is_none()
    }

    /// [`Hub::unsubscribe`] for a pattern.
    pub fn punsubscribe(&self, id: SubId, pattern: &[u8]) -> bool {
        let mut inner = lock(&self.inner);
        let Some(subs) = inner.patterns.get_mut(pattern) else {
            return false;
        };
        let was = subs.remove(&id).is_some();
        if subs.is_empty() {
            inner.patterns.remove(pattern);
        }
        was
    }

    /// Delivers `payload` to `channel`'s subscribers and (plain channels) to those of every
    /// matching pattern; returns how many received it (weights added).
    pub fn publish(&self, space: Space, channel: &Bytes, payload: &Bytes) -> u64 {
        let mut n = self.deliver_channel(space, channel, payload);
        if space == Space::Global {
            let patterns: Vec<Bytes> = {
                let inner = lock(&self.inner);
                inner
                    .patterns
                    .keys()
                    .filter(|p| kv_proto::glob::matches(p, channel))
                    .cloned()
                    .collect()
            };
            for p in patterns {
                n += self.deliver_pattern(&p, channel, payload);
            }
        }
        n
    }

    /// Delivers to `channel`'s own subscribers only (a gate relaying a `message` from the
    /// channel's home); returns the weights reached.
    pub fn deliver_channel(&self, space: Space, channel: &Bytes, payload: &Bytes) -> u64 {
        let msg = Message {
            space,
            pattern: None,
            channel: channel.clone(),
            payload: payload.clone(),
        };
        let mut inner = lock(&self.inner);
        let targets: Vec<(SubId, u64)> = match inner.channels[space.index()].get(&channel[..]) {
            Some(subs) => subs.iter().map(|(id, w)| (*id, *w)).collect(),
            None => return 0,
        };
        self.send_all(&mut inner, &targets, &msg)
    }

    /// Delivers to the subscribers of exactly `pattern` (a gate relaying a `pmessage`).
    pub fn deliver_pattern(&self, pattern: &Bytes, channel: &Bytes, payload: &Bytes) -> u64 {
        let msg = Message {
            space: Space::Global,
            pattern: Some(pattern.clone()),
            channel: channel.clone(),
            payload: payload.clone(),
        };
        let mut inner = lock(&self.inner);
        let targets: Vec<(SubId, u64)> = match inner.patterns.get(&pattern[..]) {
            Some(subs) => subs.iter().map(|(id, w)| (*id, *w)).collect(),
            None => return 0,
        };
        self.send_all(&mut inner, &targets, &msg)
    }

    fn send_all(&self, inner: &mut Inner, targets: &[(SubId, u64)], msg: &Message) -> u64 {
        let limit = self.limit.load(Ordering::Relaxed);
        let size = msg.size();
        let mut n = 0;
        let mut overflowed = Vec::new();
        for (id, weight) in targets {
            let Some(mb) = inner.boxes.get(id) else { continue };
            let queued = mb.queued.fetch_add(size, Ordering::Relaxed) + size;
            if limit > 0 && queued > limit {
                mb.overflowed.store(true, Ordering::Release);
                overflowed.push(*id);
                continue;
            }
            if mb.tx.send(msg.clone()).is_ok() {
                n += weight;
            }
        }
        for id in overflowed {
            Self::forget(inner, id);
        }
        n
    }

    fn forget(inner: &mut Inner, id: SubId) {
        // Dropping the sender ends the inbox (after the overflow flag already did).
        inner.boxes.remove(&id);
        for map in inner.channels.iter_mut().chain(std::iter::once(&mut inner.patterns)) {
            map.retain(|_, subs| {
                subs.remove(&id);
                !subs.is_empty()
            });
        }
    }

    /// Forgets subscriber `id` and all its subscriptions.
    pub fn remove(&self, id: SubId) {
        Self::forget(&mut lock(&self.inner), id);
    }

    /// Channels with at least one subscriber, matching `pattern` if given
    /// (`PUBSUB CHANNELS`, `PUBSUB SHARDCHANNELS`).
    pub fn channels(&self, space: Space, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let inner = lock(&self.inner);
        inner.channels[space.index()]
            .keys()
            .filter(|c| pattern.is_none_or(|p| kv_proto::glob::matches(p, c)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel`, weights added (`PUBSUB NUMSUB`, `SHARDNUMSUB`).
    pub fn numsub(&self, space: Space, channel: &[u8]) -> u64 {
        let inner = lock(&self.inner);
        inner.channels[space.index()]
            .get(channel)
            .map_or(0, |s| s.values().sum())
    }

    /// Patterns with at least one subscriber (`PUBSUB NUMPAT` counts them).
    pub fn patterns(&self) -> Vec<Bytes> {
        lock(&self.inner).patterns.keys().cloned().collect()
    }

    /// Every channel and pattern with its total weight: what a gate subscribes upstream.
    pub fn weights(&self) -> Weights {
        let inner = lock(&self.inner);
        let mut channels = Vec::new();
        for space in [Space::Global, Space::Shard] {
            for (c, subs) in &inner.channels[space.index()] {
                channels.push((space, c.clone(), subs.values().sum()));
            }
        }
        let patterns = inner
            .patterns
            .iter()
            .map(|(p, s)| (p.clone(), s.values().sum()))
            .collect();
        (channels, patterns)
    }
}

/// Channels (with their space) and patterns, each with its subscribers' total weight.
pub type Weights = (Vec<(Space, Bytes, u64)>, Vec<(Bytes, u64)>);

/// Which subscribe command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Subscribe(Space),
    Unsubscribe(Space),
    PSubscribe,
    PUnsubscribe,
}

impl Op {
    /// The subscribe command `name` is, if it is one (any case).
    pub fn of(name: &[u8]) -> Option<Op> {
        // Asked of every request a gate serves: most are not these (all 9 to 12 bytes long).
        if !(9..=12).contains(&name.len()) {
            return None;
        }
        let ops = [
            (&b"SUBSCRIBE"[..], Op::Subscribe(Space::Global)),
            (b"UNSUBSCRIBE", Op::Unsubscribe(Space::Global)),
            (b"SSUBSCRIBE", Op::Subscribe(Space::Shard)),
            (b"SUNSUBSCRIBE", Op::Unsubscribe(Space::Shard)),
            (b"PSUBSCRIBE", Op::PSubscribe),
            (b"PUNSUBSCRIBE", Op::PUnsubscribe),
        ];
        ops.iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|(_, op)| *op)
    }

    fn reply_name(self) -> &'static [u8] {
        match self {
            Op::Subscribe(Space::Global) => b"subscribe",
            Op::Unsubscribe(Space::Global) => b"unsubscribe",
            Op::Subscribe(Space::Shard) => b"ssubscribe",
            Op::Unsubscribe(Space::Shard) => b"sunsubscribe",
            Op::PSubscribe => b"psubscribe",
            Op::PUnsubscribe => b"punsubscribe",
        }
    }

    /// True for the commands that need at least one argument.
    pub fn needs_args(self) -> bool {
        matches!(self, Op::Subscribe(_) | Op::PSubscribe)
    }
}

/// One connection's subscriptions (see the crate documentation).
pub struct Client {
    hub: Arc<Hub>,
    pub inbox: Inbox,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard: BTreeSet<Bytes>,
}

impl Client {
    pub fn new(hub: &Arc<Hub>) -> Client {
        Client {
            inbox: hub.inbox(),
            hub: hub.clone(),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard: BTreeSet::new(),
        }
    }

    /// True while subscribed to anything: a RESP2 connection is then in subscribed mode.
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    /// The count a reply to `op` carries: channels and patterns, or shard channels.
    fn count(&self, op: Op) -> usize {
        match op {
            Op::Subscribe(Space::Shard) | Op::Unsubscribe(Space::Shard) => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// Runs `op` on `args` (channels or patterns; none to unsubscribe from all) and writes
    /// one reply per name, as Redis does. `weight` is 1 for a client.
    pub fn apply(&mut self, op: Op, args: &[Bytes], weight: u64, out: &mut BytesMut, proto: Protocol) {
        let all: Vec<Bytes>;
        let names: &[Bytes] = match op {
            Op::Unsubscribe(Space::Global) if args.is_empty() => {
                all = self.channels.iter().cloned().collect();
                &all
            }
            Op::Unsubscribe(Space::Shard) if args.is_empty() => {
                all = self.shard.iter().cloned().collect();
                &all
            }
            Op::PUnsubscribe if args.is_empty() => {
                all = self.patterns.iter().cloned().collect();
                &all
            }
            _ => args,
        };
        if names.is_empty() {
            // Nothing to leave: one reply with a null name.
            push_header(out, 3, proto);
            kv_proto::write::bulk(out, op.reply_name());
            Frame::Null.encode_as(out, proto);
            kv_proto::write::integer(out, self.count(op) as i64);
            return;
        }
        for name in names {
            let id = self.inbox.id;
            match op {
                Op::Subscribe(space) => {
                    self.hub.subscribe(id, space, name, weight);
                    self.set(space).insert(name.clone());
                }
                Op::Unsubscribe(space) => {
                    self.hub.unsubscribe(id, space, name);
                    self.set(space).remove(name);
                }
                Op::PSubscribe => {
                    self.hub.psubscribe(id, name, weight);
                    self.patterns.insert(name.clone());
                }
                Op::PUnsubscribe => {
                    self.hub.punsubscribe(id, name);
                    self.patterns.remove(name);
                }
            }
            push_header(out, 3, proto);
            kv_proto::write::bulk(out, op.reply_name());
            kv_proto::write::bulk(out, name);
            kv_proto::write::integer(out, self.count(op) as i64);
        }
    }

    fn set(&mut self, space: Space) -> &mut BTreeSet<Bytes> {
        match space {
            Space::Global => &mut self.channels,
            Space::Shard => &mut self.shard,
        }
    }
}

/// The error a RESP2 connection in subscribed mode gets for any other command.
pub fn not_allowed(name: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}

/// True for the commands a RESP2 connection in subscribed mode may send.
pub fn allowed_while_subscribed(name: &[u8]) -> bool {
    Op::of(name).is_some()
        || [&b"PING"[..], b"QUIT", b"RESET"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
}

/// `PING [message]` in RESP2 subscribed mode: `["pong", message or ""]`.
pub fn subscribed_pong(out: &mut BytesMut, message: Option<&[u8]>) {
    kv_proto::write::array_header(out, 2);
    kv_proto::write::bulk(out, b"pong");
    kv_proto::write::bulk(out, message.unwrap_or(b""));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[tokio::test]
    async fn messages_reach_channel_and_pattern_subscribers_with_redis_replies() {
        let hub = Hub::new(0);
        let mut a = Client::new(&hub);
        let mut out = BytesMut::new();
        a.apply(
            Op::Subscribe(Space::Global),
            &[b("news"), b("sport")],
            1,
            &mut out,
            Protocol::Resp2,
        );
        assert_eq!(
            &out[..],
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
        );
        let mut p = Client::new(&hub);
        out.clear();
        p.apply(Op::PSubscribe, &[b("n*")], 3, &mut out, Protocol::Resp3);
        assert_eq!(&out[..], b">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n");
        assert_eq!(hub.publish(Space::Global, &b("news"), &b("hi")), 4, "1 + a weight of 3");
        let m = a.inbox.recv().await.unwrap();
        out.clear();
        m.encode(&mut out, Protocol::Resp2);
        assert_eq!(&out[..], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
        out.clear();
        p.inbox.recv().await.unwrap().encode(&mut out, Protocol::Resp3);
        assert_eq!(
            &out[..],
            b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        // Shard channels are another namespace, and patterns do not see them.
        assert_eq!(hub.publish(Space::Shard, &b("news"), &b("x")), 0);
        out.clear();
        a.apply(Op::Unsubscribe(Space::Global), &[], 1, &mut out, Protocol::Resp2);
        assert!(!a.active());
        out.clear();
        a.apply(Op::Unsubscribe(Space::Global), &[], 1, &mut out, Protocol::Resp2);
        assert_eq!(&out[..], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        assert_eq!(hub.numsub(Space::Global, b"news"), 0);
        assert_eq!(hub.patterns(), vec![b("n*")]);
        drop(p);
        assert!(hub.patterns().is_empty(), "a dropped connection leaves nothing");
    }

    #[tokio::test]
    async fn a_subscriber_past_the_output_limit_is_dropped() {
        let hub = Hub::new(1000);
        let mut slow = Client::new(&hub);
        let mut out = BytesMut::new();
        slow.apply(Op::Subscribe(Space::Global), &[b("c")], 1, &mut out, Protocol::Resp2);
        let payload = Bytes::from(vec![b'x'; 300]);
        let delivered: u64 = (0..10).map(|_| hub.publish(Space::Global, &b("c"), &payload)).sum();
        assert_eq!(delivered, 3, "three fit in 1000 bytes (333 each), then it is dropped");
        assert_eq!(slow.inbox.recv().await, None, "its connection must close");
        assert_eq!(hub.numsub(Space::Global, b"c"), 0);
    }
}
