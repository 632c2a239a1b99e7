//! A process's RESP clients (a gate's, or a kvserver's client port), for `CLIENT LIST`,
//! `CLIENT KILL` and `CLIENT INFO`.
//!
//! The registry is touched when a client connects or leaves (and by `CLIENT` commands);
//! a session records its last command and the time in its own entry once per batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use kv_proto::Frame;
use tokio::sync::Notify;

fn upper(b: &[u8]) -> Vec<u8> {
    b.to_ascii_uppercase()
}

/// One connected client.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    created: Instant,
    /// Milliseconds after `created` of the last request.
    last_active_ms: AtomicU64,
    /// The last command's name ("" before the first).
    last_cmd: Mutex<&'static str>,
    name: Mutex<Option<String>>,
    /// RESP protocol version (2 or 3).
    resp: AtomicU64,
    pub no_evict: AtomicBool,
    /// Woken by `CLIENT KILL`: the session closes.
    pub killed: Notify,
    /// Set while the client waits in a blocking pop.
    pub blocked: AtomicBool,
    /// Woken by `CLIENT UNBLOCK`: the wait ends, with an error when `unblock_error`.
    pub unblock: Notify,
    pub unblock_error: AtomicBool,
}

impl ClientInfo {
    /// Records a request of `cmd` now.
    pub fn touch(&self, now: Instant, cmd: &'static str) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
        *self.last_cmd.lock().unwrap_or_else(|e| e.into_inner()) = cmd;
    }

    pub fn set_name(&self, name: Option<String>) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = name;
    }

    pub fn name(&self) -> Option<String> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_resp(&self, version: i64) {
        self.resp.store(version as u64, Ordering::Relaxed);
    }

    /// The `CLIENT LIST` / `CLIENT INFO` line (without the newline), in Redis's field order.
    pub fn line(&self) -> String {
        let age = self.created.elapsed().as_secs();
        let idle = self
            .created
            .elapsed()
            .as_millis()
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed) as u128)
            / 1000;
        let cmd = *self.last_cmd.lock().unwrap_or_else(|e| e.into_inner());
        let flags = if self.no_evict.load(Ordering::Relaxed) {
            "e"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={age} idle={idle} flags={flags} db=0 sub=0 psub=0 ssub=0 \
             multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 \
             events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.name().unwrap_or_default(),
            if cmd.is_empty() { "NULL" } else { cmd },
            self.resp.load(Ordering::Relaxed)
        )
    }
}

/// Every connected client, by id.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

impl Clients {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientInfo>>> {
        // Insertions and removals leave the map whole: a poisoned lock still holds it.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new client; it stays listed until [`Clients::remove`].
    pub fn add(&self, id: u64, addr: String, laddr: String) -> Arc<ClientInfo> {
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            last_cmd: Mutex::new(""),
            name: Mutex::new(None),
            resp: AtomicU64::new(2),
            no_evict: AtomicBool::new(false),
            killed: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock: Notify::new(),
            unblock_error: AtomicBool::new(false),
        });
        self.map().insert(id, info.clone());
        info
    }

    pub fn remove(&self, id: u64) {
        self.map().remove(&id);
    }

    /// Client `id`, if connected.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.map().get(&id).cloned()
    }

    /// The clients, by id.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        self.map().values().cloned().collect()
    }

    /// Ends the wait of client `id` if it is blocked (`CLIENT UNBLOCK`): as a timeout, or
    /// with an error. False when it is not waiting.
    pub fn unblock(&self, id: u64, error: bool) -> bool {
        let Some(c) = self.map().get(&id).cloned() else {
            return false;
        };
        if !c.blocked.load(Ordering::Acquire) {
            return false;
        }
        c.unblock_error.store(error, Ordering::Release);
        c.unblock.notify_one();
        true
    }

    /// Closes every client `matches` selects; returns how many.
    pub fn kill(&self, matches: impl Fn(&ClientInfo) -> bool) -> usize {
        let victims: Vec<Arc<ClientInfo>> = self.map().values().filter(|c| matches(c)).cloned().collect();
        for v in &victims {
            v.killed.notify_one();
        }
        victims.len()
    }

    /// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`: every client listed is a
    /// normal one.
    pub fn list_reply(&self, opts: &[Bytes]) -> Frame {
        let mut ids: Option<Vec<u64>> = None;
        let mut normal = true;
        match opts.first().map(|o| upper(o)).as_deref() {
            None => {}
            Some(b"TYPE") if opts.len() == 2 => match upper(&opts[1]).as_slice() {
                b"NORMAL" => {}
                b"MASTER" | b"REPLICA" | b"SLAVE" | b"PUBSUB" => normal = false,
                _ => {
                    return Frame::error(format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(&opts[1])
                    ));
                }
            },
            Some(b"ID") if opts.len() >= 2 => {
                let parsed: Option<Vec<u64>> = opts[1..]
                    .iter()
                    .map(|i| std::str::from_utf8(i).ok()?.parse().ok())
                    .collect();
                match parsed {
                    Some(list) => ids = Some(list),
                    None => return Frame::error("ERR Invalid client ID"),
                }
            }
            _ => return Frame::error("ERR syntax error"),
        }
        let mut out = String::new();
        for c in self.list() {
            if normal && ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                out.push_str(&c.line());
                out.push('\n');
            }
        }
        Frame::text(out)
    }

    /// `CLIENT KILL <filter> <value> ...`: how many clients were closed.
    pub fn kill_reply(&self, opts: &[Bytes], me: u64) -> Frame {
        let mut id = None;
        let mut addr = None;
        let mut laddr = None;
        let mut skip_me = true;
        let mut kind_matches = true;
        for pair in opts.chunks_exact(2) {
            let value = &pair[1];
            match upper(&pair[0]).as_slice() {
                b"ID" => match std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()) {
                    Some(v) if v > 0 => id = Some(v),
                    _ => return Frame::error("ERR client-id should be greater than 0"),
                },
                b"ADDR" => addr = Some(value.clone()),
                b"LADDR" => laddr = Some(value.clone()),
                b"USER" => kind_matches &= &value[..] == b"default",
                b"TYPE" => match upper(value).as_slice() {
                    b"NORMAL" => {}
                    b"MASTER" | b"REPLICA" | b"SLAVE" | b"PUBSUB" => kind_matches = false,
                    _ => {
                        return Frame::error(format!("ERR Unknown client type '{}'", String::from_utf8_lossy(value)));
                    }
                },
                b"SKIPME" => match upper(value).as_slice() {
                    b"YES" => skip_me = true,
                    b"NO" => skip_me = false,
                    _ => return Frame::error("ERR syntax error"),
                },
                _ => return Frame::error("ERR syntax error"),
            }
        }
        let n = self.kill(|c| {
            kind_matches
                && id.is_none_or(|id| c.id == id)
                && addr.as_ref().is_none_or(|a| c.addr.as_bytes() == &a[..])
                && laddr.as_ref().is_none_or(|a| c.laddr.as_bytes() == &a[..])
                && !(skip_me && c.id == me)
        });
        Frame::Integer(n as i64)
    }
}
