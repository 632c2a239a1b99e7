//! `HELLO [protover [AUTH username password] [SETNAME clientname]]`: protocol negotiation,
//! shared by the gate and the servers so both parse it, refuse it and answer it as Redis 7
//! does.

use bytes::Bytes;

use crate::{Frame, Protocol};

/// The Redis version whose behaviour kvstore matches, as `HELLO` and `INFO` report it:
/// clients gate features on it.
pub const REDIS_VERSION: &str = "7.0.15";

/// A parsed `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol asked for; `None` keeps the connection's.
    pub proto: Option<Protocol>,
    pub auth: Option<(Bytes, Bytes)>,
    /// The client name to set; empty clears it.
    pub setname: Option<Bytes>,
}

/// Why a `HELLO` is refused: `Display` is Redis's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("ERR Protocol version is not an integer or out of range")]
    NotInteger,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("ERR Syntax error in HELLO option '{0}'")]
    Syntax(String),
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadName,
}

impl Hello {
    /// Parses `args` (the command name first), in Redis's order of checks.
    pub fn parse(args: &[Bytes]) -> Result<Hello, HelloError> {
        let mut hello = Hello {
            proto: None,
            auth: None,
            setname: None,
        };
        if let Some(v) = args.get(1) {
            let v: i64 = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HelloError::NotInteger)?;
            hello.proto = Some(match v {
                2 => Protocol::Resp2,
                3 => Protocol::Resp3,
                _ => return Err(HelloError::NoProto),
            });
        }
        let mut i = 2;
        while i < args.len() {
            let more = args.len() - 1 - i;
            let opt = &args[i];
            if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                hello.auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                hello.setname = Some(args[i + 1].clone());
                i += 2;
            } else {
                return Err(HelloError::Syntax(String::from_utf8_lossy(opt).into_owned()));
            }
        }
        if let Some(name) = &hello.setname
            && !valid_client_name(name)
        {
            return Err(HelloError::BadName);
        }
        Ok(hello)
    }
}

/// Redis's rule for client names: printable ASCII without spaces (empty clears the name).
pub fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|c| (b'!'..=b'~').contains(c))
}

/// What `HELLO` reports about the connection and the server.
pub struct HelloReply<'a> {
    pub proto: Protocol,
    pub id: u64,
    /// `standalone` or `cluster`.
    pub mode: &'a str,
    /// `master` or `replica`.
    pub role: &'a str,
}

impl HelloReply<'_> {
    /// The reply: a map in RESP3, a flat array in RESP2.
    pub fn frame(&self) -> Frame {
        let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        Frame::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(REDIS_VERSION)),
            (bulk("proto"), Frame::Integer(self.proto.version())),
            (bulk("id"), Frame::Integer(self.id as i64)),
            (bulk("mode"), bulk(self.mode)),
            (bulk("role"), bulk(self.role)),
            (bulk("modules"), Frame::Array(vec![])),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Hello, HelloError> {
        let args: Vec<Bytes> = line.split(' ').map(|s| Bytes::from(s.to_string())).collect();
        Hello::parse(&args)
    }

    /// Error texts as redis-server 7.0.15 sends them for the same lines.
    #[test]
    fn refusals_match_redis() {
        let cases = [
            ("HELLO 4", "NOPROTO unsupported protocol version"),
            ("HELLO 1", "NOPROTO unsupported protocol version"),
            ("HELLO x", "ERR Protocol version is not an integer or out of range"),
            ("HELLO 3 FOO", "ERR Syntax error in HELLO option 'FOO'"),
            ("HELLO 2 SETNAME a b", "ERR Syntax error in HELLO option 'b'"),
            ("HELLO 3 SETNAME", "ERR Syntax error in HELLO option 'SETNAME'"),
            ("HELLO 3 AUTH default", "ERR Syntax error in HELLO option 'AUTH'"),
            (
                "HELLO 3 SETNAME a\nb",
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).unwrap_err().to_string(), want, "{line}");
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("HELLO").unwrap().proto, None);
        let h = parse("hello 3 auth default secret setname app").unwrap();
        assert_eq!(h.proto, Some(Protocol::Resp3));
        assert_eq!(h.setname.as_deref(), Some(&b"app"[..]));
        assert_eq!(parse("HELLO 2").unwrap().proto, Some(Protocol::Resp2));
    }

    /// Byte for byte redis-server 7.0.15's `HELLO 3` (client id 7), and its RESP2 form.
    #[test]
    fn the_reply_matches_redis() {
        let r = HelloReply {
            proto: Protocol::Resp3,
            id: 7,
            mode: "standalone",
            role: "master",
        };
        assert_eq!(
            &r.frame().to_bytes_as(Protocol::Resp3)[..],
            &b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n\
               $2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
               $7\r\nmodules\r\n*0\r\n"[..]
        );
        assert!(r.frame().to_bytes().starts_with(b"*14\r\n$6\r\nserver\r\n"));
    }
}
