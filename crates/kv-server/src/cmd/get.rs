//! GET key

use bytes::{Bytes, BytesMut};

use super::{Args, CmdError};
use crate::node::Node;

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

    pub fn apply(self, node: &Node, out: &mut BytesMut) {
        node.read(|r| {
            r.get(&self.key, |v| match v {
                Some(v) => kv_proto::write::bulk(out, v),
                None => kv_proto::write::null(out),
            })
        });
    }
}
