//! EXISTS key [key ...]

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

/// `EXISTS key [key ...]`: how many of the keys exist (a key named twice counts twice).
#[derive(Debug)]
pub struct Exists {
    keys: Vec<Bytes>,
}

impl Exists {
    pub fn parse(args: &mut Args) -> Result<Exists, CmdError> {
        Ok(Exists {
            keys: args.rest_at_least_one()?,
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let keys = self.keys.iter().map(|k| &k[..]);
        let result = node.read(keys, |r| self.keys.iter().filter(|k| r.exists(k)).count());
        reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}
