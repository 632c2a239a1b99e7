//! PING, ECHO, SELECT: connection-level commands.

use bytes::{Bytes, BytesMut};

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

    pub fn apply(self, out: &mut BytesMut) {
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

    pub fn apply(self, out: &mut BytesMut) {
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

    pub fn apply(self, out: &mut BytesMut) {
        if self.0 == 0 {
            kv_proto::write::ok(out);
        } else {
            kv_proto::write::error(out, b"ERR DB index is out of range");
        }
    }
}
