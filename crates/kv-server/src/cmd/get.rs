//! Reads of values: GET, MGET, STRLEN. Values are written from the store straight into the
//! reply, under the node's lock: no copy.

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError, reply, reply_written};
use crate::node::{Node, Pending};

/// `GET key`: the value, or nil.
#[derive(Debug)]
pub struct Get {
    key: Bytes,
}

impl Get {
    pub fn parse(args: &mut Args) -> Result<Get, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Get { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let mark = out.len();
        let result = node.read([&self.key[..]], |r| {
            r.get(&self.key, |v| match v {
                Some(v) => kv_proto::write::bulk(out, v),
                None => out.null(),
            })
        });
        reply_written(out, mark, result)
    }
}

/// `MGET key [key ...]`: an array of values (nil for absent keys), in the order asked.
#[derive(Debug)]
pub struct MGet {
    keys: Vec<Bytes>,
}

impl MGet {
    pub fn parse(args: &mut Args) -> Result<MGet, CmdError> {
        Ok(MGet {
            keys: args.rest_at_least_one()?,
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read(self.keys.iter().map(|k| &k[..]), |r| {
            kv_proto::write::array_header(out, self.keys.len());
            for k in &self.keys {
                r.get_string(k, |v| match v {
                    Some(v) => kv_proto::write::bulk(out, v),
                    None => out.null(),
                });
            }
        });
        reply(out, result, |_, ()| {})
    }
}

/// `STRLEN key`: the value's length, 0 when absent.
#[derive(Debug)]
pub struct StrLen {
    key: Bytes,
}

impl StrLen {
    pub fn parse(args: &mut Args) -> Result<StrLen, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(StrLen { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| r.get(&self.key, |v| v.map_or(0, <[u8]>::len)));
        reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}
