//! DEL key [key ...] (and UNLINK, its alias here: deletion is always immediate)

use bytes::{Bytes, BytesMut};

use super::{Args, CmdError, reply_write};
use crate::node::{Node, Pending};

/// `DEL key [key ...]`: how many keys were removed.
#[derive(Debug)]
pub struct Del {
    keys: Vec<Bytes>,
}

impl Del {
    pub fn parse(args: &mut Args) -> Result<Del, CmdError> {
        Ok(Del {
            keys: args.rest_at_least_one()?,
        })
    }

    pub fn apply(self, node: &Node, out: &mut BytesMut) -> Option<Pending> {
        let result = node.write(|w| self.keys.iter().filter(|k| w.del(k)).count());
        reply_write(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}
