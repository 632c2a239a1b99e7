//! Configuration plumbing shared by kvserver, kvgate and the local cluster.
//!
//! Every setting is a clap flag with an environment variable; [`parse_args`] adds an optional
//! config file. Precedence, highest first: command-line flag, environment variable, config
//! file, built-in default. The file is flat TOML whose keys are the long flag names:
//!
//! ```toml
//! shard = "s1"
//! port = 7001
//! max-keys = 100000
//! maxmemory = "256mb"
//! ```
//!
//! - [`parse_args`]: clap parsing with the config file merged in.
//! - [`parse_size`]: `"64mb"`-style byte sizes, as Redis writes them.
//! - [`RespLimits`]: the bounds on RESP clients, shared by kvserver and kvgate.
//! - [`ClusterAuth`]: the cluster secret's file, shared by kvserver and kvgate.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags (also `--help` and `--version`, which clap reports as errors to exit on).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The config file is not valid TOML or names an unknown setting.
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Parses `args` (program name first) into `T`, merging the file named by `--config` (an
/// argument with id `config` of type `PathBuf`) under the flags and environment variables.
pub fn parse_args<T>(args: Vec<OsString>) -> Result<T, ConfigError>
where
    T: CommandFactory + FromArgMatches,
{
    let command = T::command().args_override_self(true);
    let matches = command.clone().try_get_matches_from(&args)?;
    let config_path = matches.try_get_one::<PathBuf>("config").ok().flatten().cloned();
    let Some(path) = config_path else {
        return Ok(T::from_arg_matches(&matches)?);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.clone(),
        message,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| invalid(e.to_string()))?;
    let mut merged = args;
    for (key, value) in &table {
        let wanted = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(wanted.as_str()))
            .ok_or_else(|| invalid(format!("unknown setting `{key}`")))?;
        if wanted == "config" {
            return Err(invalid("a config file cannot name another".into()));
        }
        let from_user = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if from_user {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>(),
            other => scalar(other).map(|v| vec![v]),
        }
        .map_err(|m| invalid(format!("setting `{key}`: {m}")))?;
        for v in values {
            match arg.get_action() {
                ArgAction::SetTrue => {
                    if v == "true" {
                        merged.push(format!("--{wanted}").into());
                    }
                }
                _ => merged.push(format!("--{wanted}={v}").into()),
            }
        }
    }
    let matches = command.try_get_matches_from(merged)?;
    Ok(T::from_arg_matches(&matches)?)
}

fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("unsupported value of type {}", other.type_str())),
    }
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// Bounds on RESP clients (Redis's own defaults), the same flags on kvserver and kvgate.
#[derive(Debug, Clone, clap::Args)]
pub struct RespLimits {
    /// Largest bulk string (key or value) in a request.
    #[arg(long, env = "KVSTORE_PROTO_MAX_BULK_LEN", default_value = "512mb", value_parser = size)]
    pub proto_max_bulk_len: u64,

    /// Most arguments in one request.
    #[arg(long, env = "KVSTORE_PROTO_MAX_MULTIBULK_LEN", default_value_t = 1024 * 1024)]
    pub proto_max_multibulk_len: u64,

    /// Longest inline (telnet-style) request line.
    #[arg(long, env = "KVSTORE_PROTO_MAX_INLINE_LEN", default_value = "64kb", value_parser = size)]
    pub proto_max_inline_len: u64,

    /// Most bytes buffered for one client's incomplete request.
    #[arg(long, env = "KVSTORE_CLIENT_QUERY_BUFFER_LIMIT", default_value = "1gb", value_parser = size)]
    pub client_query_buffer_limit: u64,

    /// Longest key a RESP command may name; a longer one gets an error and the command does
    /// not run. The default, 512mb, is Redis's (a key is any bulk string); set it lower to
    /// keep clients from filling memory with huge keys (HTTP has --max-key-bytes on the gate).
    #[arg(long, env = "KVSTORE_MAX_KEY_LEN", default_value = "512mb", value_parser = size)]
    pub max_key_len: u64,

    /// Most RESP client connections; more are refused with an error.
    #[arg(long, env = "KVSTORE_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,

    /// Close a RESP client that sent nothing for this many seconds (Redis's `timeout`);
    /// 0, the default, never. Subscribers and clients waiting in a blocking pop are exempt.
    #[arg(long, env = "KVSTORE_TIMEOUT", default_value_t = 0)]
    pub timeout: u64,
}

impl RespLimits {
    /// `--timeout`: how long a client may stay silent; `None` for ever.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout))
    }

    /// `--max-key-len` when it is below what the parser already bounds (no check is needed
    /// otherwise: the common case costs nothing).
    pub fn key_limit(&self) -> Option<usize> {
        (self.max_key_len < self.proto_max_bulk_len).then_some(self.max_key_len as usize)
    }

    /// The parser bounds.
    pub fn limits(&self) -> kv_proto::Limits {
        kv_proto::Limits {
            max_bulk_len: self.proto_max_bulk_len as usize,
            max_multibulk_len: self.proto_max_multibulk_len as usize,
            max_inline_len: self.proto_max_inline_len as usize,
            max_query_buffer: self.client_query_buffer_limit as usize,
        }
    }

    /// Checks the bounds make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_clients == 0 {
            return Err("--max-clients must be at least 1".into());
        }
        if self.proto_max_bulk_len == 0
            || self.proto_max_multibulk_len == 0
            || self.proto_max_inline_len == 0
            || self.max_key_len == 0
        {
            return Err("protocol limits must be at least 1".into());
        }
        if self.client_query_buffer_limit < self.proto_max_inline_len {
            return Err("--client-query-buffer-limit is below --proto-max-inline-len".into());
        }
        Ok(())
    }
}

/// How a server or gate proves it belongs to its cluster when it opens a connection to a
/// cluster port (the same flag on kvserver and kvgate).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterAuth {
    /// File holding the cluster's shared secret (at least 16 bytes, e.g. from
    /// `openssl rand -hex 32`); every server and gate of a cluster uses the same one. Peers
    /// prove they hold it with a challenge-response: it never crosses the wire. Without it,
    /// anyone who can reach a cluster port can read and change everything.
    #[arg(long, env = "KVSTORE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// File holding `user:password` for ZooKeeper's digest scheme. With it, every node the
    /// cluster creates in ZooKeeper is readable and writable only by sessions that
    /// authenticated as that user (ACL `auth::cdrwa`); without it, nodes are open to anyone
    /// who reaches ZooKeeper. Every server and gate of a cluster uses the same file.
    #[arg(long, env = "KVSTORE_ZK_AUTH_FILE")]
    pub zk_auth_file: Option<PathBuf>,
}

/// Who may connect: the users a gate (or server) knows, as Redis configures them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserAuth {
    /// The default user's password (Redis's `requirepass`): clients must `AUTH` first.
    /// Without it, and without an --aclfile that defines the default user, the default
    /// user needs no password.
    #[arg(long, env = "KVSTORE_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// An ACL file in Redis's syntax (`user <name> on >password ~keys* +@read …`, one per
    /// line): the users and their permissions. `ACL SAVE` and `ACL LOAD` write and read it.
    #[arg(long, env = "KVSTORE_ACLFILE")]
    pub aclfile: Option<PathBuf>,
    /// Redis's protected mode: while the default user needs no password, RESP clients
    /// connecting from anywhere but the loopback interface are refused (`-DENIED …`) and
    /// disconnected. `no` serves them anyway.
    #[arg(long, env = "KVSTORE_PROTECTED_MODE", default_value = "yes", value_parser = yes_no, action = ArgAction::Set)]
    pub protected_mode: bool,
}

/// True when protected mode (`--protected-mode`) refuses a client from `peer`: it is on,
/// the default user needs no password, and the client is not on the loopback interface.
pub fn protected_mode_refuses(protected_mode: bool, peer: std::net::IpAddr, default_user_open: bool) -> bool {
    protected_mode && default_user_open && !peer.is_loopback()
}

/// Redis's refusal in protected mode, adapted to kvstore's flags.
pub const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. To accept other clients, set a password (--requirepass, --aclfile or ACL SETUSER default) or start with --protected-mode no, after making sure the port is not reachable from untrusted networks.\r\n";

/// Parses Redis's `yes`/`no` (also `true`/`false`).
pub fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("`{s}`: expected yes or no")),
    }
}

/// Parses a byte size: a plain number of bytes or a number with a unit, as Redis accepts
/// them: `b`, `k`/`kb`, `m`/`mb`, `g`/`gb` (powers of 1024; case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 1048576, 512kb, 64mb, 2gb)"))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = "KV_CONFIG_TEST_PORT", default_value_t = 1)]
        port: u16,
        #[arg(long, default_value = "x")]
        name: String,
        #[arg(long)]
        verbose: bool,
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("demo")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn file_fills_in_under_flags() {
        let dir = std::env::temp_dir().join(format!("kv-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "port = 7\nname = \"from-file\"\nverbose = true\n").unwrap();
        let f = file.to_str().unwrap();
        let d: Demo = parse_args(args(&["--config", f])).unwrap();
        assert_eq!((d.port, d.name.as_str(), d.verbose), (7, "from-file", true));
        let d: Demo = parse_args(args(&["--config", f, "--port", "9"])).unwrap();
        assert_eq!(d.port, 9, "a flag beats the file");
        std::fs::write(&file, "bogus = 1\n").unwrap();
        let err = parse_args::<Demo>(args(&["--config", f])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        let d: Demo = parse_args(args(&["--port", "3"])).unwrap();
        assert_eq!(d.port, 3);
    }

    #[derive(Parser, Debug)]
    struct WithUsers {
        #[command(flatten)]
        users: UserAuth,
    }

    #[test]
    fn protected_mode_takes_yes_or_no() {
        let parse = |a: &[&str]| WithUsers::try_parse_from(args(a)).map(|w| w.users.protected_mode);
        assert!(parse(&[]).unwrap(), "on by default, as in Redis");
        assert!(!parse(&["--protected-mode", "no"]).unwrap());
        assert!(parse(&["--protected-mode", "yes"]).unwrap());
        assert!(parse(&["--protected-mode", "maybe"]).is_err());
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let far: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        assert!(protected_mode_refuses(true, far, true));
        assert!(!protected_mode_refuses(true, lo, true));
        assert!(!protected_mode_refuses(true, far, false), "a password lifts it");
        assert!(!protected_mode_refuses(false, far, true));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("mb").is_err());
    }
}
