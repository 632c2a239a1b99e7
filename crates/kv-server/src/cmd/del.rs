//! Deletes: DEL and UNLINK (an alias here: deletion is always immediate), GETDEL.

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError, reply, write_opt};
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

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write(self.keys.iter().map(|k| &k[..]), |w| {
            self.keys.iter().filter(|k| w.del(k)).count()
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}

/// `GETDEL key`: the value (or nil), and the key is gone.
#[derive(Debug)]
pub struct GetDel {
    key: Bytes,
}

impl GetDel {
    pub fn parse(args: &mut Args) -> Result<GetDel, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(GetDel { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| {
            let old = w.get(&self.key).map(|(v, _)| v);
            if old.is_some() {
                w.del(&self.key);
            }
            old
        });
        reply(out, result, |out, old| write_opt(out, old.as_ref()))
    }
}
