//! PING, ECHO, SELECT, HELLO: connection-level commands.

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError};

/// `PING [message]`
#[derive(Debug)]
pub struct Ping(Option<Bytes>);

impl Ping {
    pub fn parse(args: &mut Args) -> Result<Ping, CmdError> {
        let msg = args.arg_opt();
        args.finish()?;
        Ok(Ping(msg))
    }

    pub fn apply(self, out: &mut Out) {
        match self.0 {
            Some(m) => kv_proto::write::bulk(out, &m),
            None => kv_proto::write::simple(out, b"PONG"),
        }
    }
}

/// `ECHO message`
#[derive(Debug)]
pub struct Echo(Bytes);

impl Echo {
    pub fn parse(args: &mut Args) -> Result<Echo, CmdError> {
        let msg = args.arg()?;
        args.finish()?;
        Ok(Echo(msg))
    }

    pub fn apply(self, out: &mut Out) {
        kv_proto::write::bulk(out, &self.0);
    }
}

/// `SELECT index`: kvstore has one database, 0.
#[derive(Debug)]
pub struct Select(i64);

impl Select {
    pub fn parse(args: &mut Args) -> Result<Select, CmdError> {
        let db = args.arg_i64()?;
        args.finish()?;
        Ok(Select(db))
    }

    pub fn apply(self, out: &mut Out) {
        if self.0 == 0 {
            kv_proto::write::ok(out);
        } else {
            kv_proto::write::error(out, b"ERR DB index is out of range");
        }
    }
}

/// `HELLO`: switches the connection's protocol (and name), then reports it. Servers speak
/// Redis Cluster's side of the protocol, so the mode is `cluster`; a leader is a `master`.
pub fn hello(hello: kv_proto::hello::Hello, node: &crate::node::Node, conn: &mut crate::connection::Connection) {
    if let Some(name) = hello.setname {
        conn.name = (!name.is_empty()).then_some(name);
    }
    if let Some(proto) = hello.proto {
        conn.output.proto = proto;
    }
    let id = *conn.id.get_or_insert_with(|| node.next_conn_id());
    if let Some(me) = node.clients.get(id) {
        me.set_resp(conn.output.proto.version());
        me.set_name(conn.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()));
    }
    let reply = kv_proto::hello::HelloReply {
        proto: conn.output.proto,
        id,
        mode: "cluster",
        role: if node.role().name() == "leader" {
            "master"
        } else {
            "replica"
        },
    };
    let frame = reply.frame();
    conn.output.frame(&frame);
}

/// `CLIENT ID | SETNAME | GETNAME | SETINFO | INFO | NO-EVICT` for this connection, and
/// `CLIENT LIST | KILL` over the client port's connections ([`crate::node::Node::clients`]).
pub fn client(a: &[bytes::Bytes], node: &crate::node::Node, conn: &mut crate::connection::Connection) {
    use kv_proto::Frame;
    let sub = a.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let id = *conn.id.get_or_insert_with(|| node.next_conn_id());
    let reply = match (sub.as_slice(), a.len()) {
        (b"ID", 2) => Frame::Integer(id as i64),
        (b"SETNAME", 3) if !kv_proto::hello::valid_client_name(&a[2]) => {
            Frame::error("ERR Client names cannot contain spaces, newlines or special characters.")
        }
        (b"SETNAME", 3) => {
            conn.name = (!a[2].is_empty()).then(|| a[2].clone());
            if let Some(me) = node.clients.get(id) {
                me.set_name(conn.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()));
            }
            Frame::simple("OK")
        }
        (b"LIST", _) => node.clients.list_reply(&a[2..]),
        (b"KILL", n) if n >= 4 && n % 2 == 0 => node.clients.kill_reply(&a[2..], id),
        (b"KILL", 3) => match node.clients.kill(|c| c.addr.as_bytes() == &a[2][..]) {
            0 => Frame::error("ERR No such client"),
            _ => Frame::simple("OK"),
        },
        (b"GETNAME", 2) => conn.name.clone().map_or(Frame::Null, Frame::Bulk),
        (b"SETINFO", 4) => Frame::simple("OK"),
        (b"NO-EVICT", 3) if a[2].eq_ignore_ascii_case(b"ON") || a[2].eq_ignore_ascii_case(b"OFF") => {
            if let Some(me) = node.clients.get(id) {
                me.no_evict
                    .store(a[2].eq_ignore_ascii_case(b"ON"), std::sync::atomic::Ordering::Relaxed);
            }
            Frame::simple("OK")
        }
        (b"INFO", 2) => Frame::text(format!(
            "id={id} addr={} laddr={} name={} db=0 flags={} cmd=client|info user=default resp={}\n",
            conn.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            conn.stream.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            String::from_utf8_lossy(conn.name.as_deref().unwrap_or_default()),
            if conn.readonly { "r" } else { "N" },
            conn.output.proto.version()
        )),
        (b"ID" | b"SETNAME" | b"GETNAME" | b"SETINFO" | b"INFO" | b"NO-EVICT" | b"KILL", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&sub).to_ascii_lowercase()
        )),
        _ => Frame::error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(a.get(1).map_or(&b""[..], |s| &s[..]))
        )),
    };
    conn.output.frame(&reply);
}
