//! Argument parsing shared by the commands, and the Redis-worded errors.

use bytes::Bytes;
use kv_proto::Request;

/// A command's arguments, consumed front to back.
#[derive(Debug)]
pub struct Args {
    /// All arguments, the name first; `next` indexes the next unconsumed one.
    all: Vec<Bytes>,
    next: usize,
}

/// A command that cannot run as given. `Display` is the Redis error text (without `-`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    Unknown { name: String, args: String },
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR {0}")]
    Other(String),
    /// An error with its own code (`NOPROTO`, `WRONGPASS`, ...).
    #[error("{0}")]
    Coded(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Args {
    /// Splits a request into its name and arguments.
    pub fn new(req: Request) -> Args {
        Args {
            all: req.into_args(),
            next: 1,
        }
    }

    /// Every argument, the name first.
    pub fn all(&self) -> &[Bytes] {
        &self.all
    }

    /// Every argument, the name first, given up (for a command that keeps them whole).
    pub fn into_all(self) -> Vec<Bytes> {
        self.all
    }

    /// The command name as sent.
    pub fn name(&self) -> &[u8] {
        self.all.first().map_or(&b""[..], |n| &n[..])
    }

    /// The command name, lower-case, for error messages.
    pub fn lower_name(&self) -> String {
        lossy(self.name()).to_ascii_lowercase()
    }

    /// Arguments not consumed yet.
    pub fn remaining(&self) -> usize {
        self.all.len().saturating_sub(self.next)
    }

    /// The next argument if any.
    pub fn arg_opt(&mut self) -> Option<Bytes> {
        let a = self.all.get(self.next).cloned();
        if a.is_some() {
            self.next += 1;
        }
        a
    }

    /// The next argument, or an arity error.
    pub fn arg(&mut self) -> Result<Bytes, CmdError> {
        self.arg_opt().ok_or_else(|| self.arity())
    }

    /// The next argument as a signed integer.
    pub fn arg_i64(&mut self) -> Result<i64, CmdError> {
        let b = self.arg()?;
        parse_i64(&b).ok_or(CmdError::NotInteger)
    }

    /// All remaining arguments (at least one, or an arity error).
    pub fn rest_at_least_one(&mut self) -> Result<Vec<Bytes>, CmdError> {
        if self.remaining() == 0 {
            return Err(self.arity());
        }
        let rest = self.all.split_off(self.next);
        self.next = self.all.len();
        Ok(rest)
    }

    /// Errors unless every argument was consumed.
    pub fn finish(&mut self) -> Result<(), CmdError> {
        if self.remaining() != 0 {
            return Err(self.arity());
        }
        Ok(())
    }

    /// The arity error for this command.
    pub fn arity(&self) -> CmdError {
        CmdError::Arity(self.lower_name())
    }

    /// The unknown-command error for this request.
    pub fn unknown(&self) -> CmdError {
        let args = self
            .all
            .iter()
            .skip(1)
            .take(3)
            .map(|a| format!("'{}' ", lossy(a)))
            .collect::<String>();
        CmdError::Unknown {
            name: lossy(self.name()),
            args,
        }
    }
}

/// `name` upper-cased into a stack buffer (command names and options are short), or `None`
/// when it is too long to be one we know.
pub fn upper(name: &[u8]) -> Option<([u8; 24], usize)> {
    let mut buf = [0u8; 24];
    if name.len() > buf.len() {
        return None;
    }
    for (b, c) in buf.iter_mut().zip(name) {
        *b = c.to_ascii_uppercase();
    }
    Some((buf, name.len()))
}

/// Parses an integer exactly as Redis does: optional `-`, digits, no spaces, no `+`.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 || b[0] == b'+' || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        Args::new(Request::new(a.iter().map(|s| Bytes::from(s.to_string())).collect()))
    }

    #[test]
    fn errors_read_like_redis() {
        assert_eq!(
            args(&["FOO", "a", "b"]).unknown().to_string(),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            args(&["GET"]).arg().unwrap_err().to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            args(&["X", "12a"]).arg_i64().unwrap_err().to_string(),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"007"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b"9223372036854775808"), None);
    }
}
