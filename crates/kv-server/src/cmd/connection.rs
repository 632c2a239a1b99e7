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
