//! One ACL user: whether it is on, its passwords (SHA-256), and what it may run (commands,
//! categories, subcommands), read and write (key patterns) and publish or subscribe to
//! (channel patterns). Rules are applied as `ACL SETUSER` and the ACL file give them.

use bytes::Bytes;
use kv_proto::commands::{COMMANDS, CommandInfo};
use sha2::{Digest, Sha256};

use crate::category;

/// Why a request is refused, for `NOPERM` and `ACL LOG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command (or `command|subcommand`) is not allowed.
    Command(String),
    Key(Bytes),
    Channel(Bytes),
}

impl Denied {
    /// The `NOPERM` error Redis gives.
    pub fn error(&self) -> String {
        match self {
            Denied::Command(name) => format!("NOPERM this user has no permissions to run the '{name}' command"),
            Denied::Key(_) => "NOPERM this user has no permissions to access one of the keys used as arguments".into(),
            Denied::Channel(_) => {
                "NOPERM this user has no permissions to access one of the channels used as arguments".into()
            }
        }
    }
}

/// Whether a user may run one command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    No,
    All,
    /// Only these subcommands (or first arguments), lower-case.
    Only(Vec<String>),
    /// Every subcommand but these.
    AllBut(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    pattern: Vec<u8>,
    read: bool,
    write: bool,
}

/// The commands with subcommands (`CONFIG GET`, `CLIENT KILL` …) and theirs: `+config|get`
/// names a subcommand; `+select|0`, on a command without any, a first argument.
const CONTAINERS: &[(&str, &[&str])] = &[
    (
        "acl",
        &[
            "cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log", "save", "setuser",
            "users", "whoami",
        ],
    ),
    (
        "client",
        &[
            "caching",
            "getname",
            "getredir",
            "help",
            "id",
            "info",
            "kill",
            "list",
            "no-evict",
            "no-touch",
            "pause",
            "reply",
            "setname",
            "tracking",
            "trackinginfo",
            "unblock",
            "unpause",
        ],
    ),
    (
        "cluster",
        &[
            "countkeysinslot",
            "getkeysinslot",
            "help",
            "info",
            "keyslot",
            "myid",
            "nodes",
            "shards",
            "slots",
        ],
    ),
    (
        "command",
        &["count", "docs", "getkeys", "getkeysandflags", "help", "info", "list"],
    ),
    ("config", &["get", "help", "resetstat", "rewrite", "set"]),
    (
        "function",
        &[
            "delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats",
        ],
    ),
    ("memory", &["doctor", "help", "malloc-stats", "purge", "stats", "usage"]),
    ("object", &["encoding", "freq", "help", "idletime", "refcount"]),
    (
        "pubsub",
        &["channels", "help", "numpat", "numsub", "shardchannels", "shardnumsub"],
    ),
    ("script", &["debug", "exists", "flush", "help", "kill", "load"]),
];

fn subcommands(name: &str) -> Option<&'static [&'static str]> {
    CONTAINERS.iter().find(|(c, _)| *c == name).map(|(_, s)| *s)
}

/// Write commands that only write (Redis's key specs without `ACCESS`): a user with
/// write-only access to a key (`%W~`) may run them. Every other write also reads.
const BLIND_WRITES: &[&str] = &[
    "set",
    "setex",
    "psetex",
    "mset",
    "del",
    "unlink",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "hset",
    "hmset",
    "hdel",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "linsert",
    "lrem",
    "ltrim",
    "lset",
    "sadd",
    "srem",
    "zadd",
    "zrem",
    "zremrangebyscore",
    "zremrangebylex",
    "zremrangebyrank",
    "pfadd",
    "setrange",
    "append",
    "flushall",
];

/// `ACL SETUSER`'s reasons, as Redis words them.
pub const UNKNOWN: &str = "Unknown command or category name in ACL";
const SYNTAX: &str = "Syntax error";

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    enabled: bool,
    nopass: bool,
    passwords: Vec<[u8; 32]>,
    /// Per command of the table, by [`CommandInfo::index`].
    commands: Vec<Perm>,
    /// The command rules as `ACL GETUSER` shows them: `+@all`/`-@all` first, then what
    /// was added or taken away, with rules a later one overrides removed.
    rules: Vec<String>,
    keys: Vec<KeyPattern>,
    channels: Vec<Vec<u8>>,
    /// May run everything on every key and channel: no check is needed.
    unrestricted: bool,
}

pub fn sha256_hex(password: &[u8]) -> String {
    hex(&Sha256::digest(password).into())
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl User {
    /// A new user as `ACL SETUSER` creates it: off, no password, no commands, keys or
    /// channels.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            commands: vec![Perm::No; COMMANDS.len()],
            rules: vec!["-@all".into()],
            keys: Vec::new(),
            channels: Vec::new(),
            unrestricted: false,
        }
    }

    /// The default user of a server without ACL configuration: on, no password, all of
    /// everything (`on nopass ~* &* +@all`), or with `requirepass`'s password.
    pub fn default_user(requirepass: Option<&[u8]>) -> User {
        let mut u = User::new("default");
        let pass = requirepass.map(|p| {
            let mut r = b">".to_vec();
            r.extend_from_slice(p);
            r
        });
        let rules: [&[u8]; 5] = [b"on", pass.as_deref().unwrap_or(b"nopass"), b"~*", b"&*", b"+@all"];
        for r in rules {
            u.apply(r).expect("valid default rules");
        }
        u
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when no password is needed (`nopass`).
    pub fn nopass(&self) -> bool {
        self.nopass
    }

    /// True when `password` opens this user (it must also be on).
    pub fn password_ok(&self, password: &[u8]) -> bool {
        self.nopass || {
            let h: [u8; 32] = Sha256::digest(password).into();
            // Every stored hash is compared, so the time taken does not say which matched.
            self.passwords.iter().fold(false, |ok, p| ok | (*p == h))
        }
    }

    /// True when this user may do anything: no per-request check is needed.
    pub fn unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Applies the rules, left to right; on an error none of them is applied, and the error
    /// names the rule and Redis's reason.
    pub fn apply_all<'a>(&mut self, rules: impl IntoIterator<Item = &'a [u8]>) -> Result<(), String> {
        let mut next = self.clone();
        for rule in rules {
            next.apply(rule).map_err(|reason| {
                format!(
                    "Error in ACL SETUSER modifier '{}': {reason}",
                    String::from_utf8_lossy(rule)
                )
            })?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one rule; the error is Redis's reason.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), &'static str> {
        let r = std::str::from_utf8(rule).ok();
        let lower = r.map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("on") => self.enabled = true,
            Some("off") => self.enabled = false,
            Some("nopass") => {
                self.nopass = true;
                self.passwords.clear();
            }
            Some("resetpass") => {
                self.nopass = false;
                self.passwords.clear();
            }
            Some("allkeys") => return self.apply(b"~*"),
            Some("resetkeys") => self.keys.clear(),
            Some("allchannels") => return self.apply(b"&*"),
            Some("resetchannels") => self.channels.clear(),
            Some("allcommands") => return self.apply(b"+@all"),
            Some("nocommands") => return self.apply(b"-@all"),
            Some("sanitize-payload") | Some("skip-sanitize-payload") => {}
            Some("reset") => {
                // Off, no passwords, keys, channels or commands.
                let name = std::mem::take(&mut self.name);
                *self = User::new(&name);
            }
            _ => match rule.first() {
                Some(b'>') => {
                    let h: [u8; 32] = Sha256::digest(&rule[1..]).into();
                    self.add_password(h);
                }
                Some(b'#') => {
                    let h = r.and_then(|r| unhex(&r[1..])).ok_or(
                        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
                    )?;
                    self.add_password(h);
                }
                Some(b'<') => {
                    let h: [u8; 32] = Sha256::digest(&rule[1..]).into();
                    self.remove_password(h)?;
                }
                Some(b'!') => {
                    let h = r.and_then(|r| unhex(&r[1..])).ok_or(
                        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
                    )?;
                    self.remove_password(h)?;
                }
                Some(b'~') => self.add_keys(&rule[1..], true, true)?,
                Some(b'%') => {
                    let tilde = rule.iter().position(|&c| c == b'~').ok_or(SYNTAX)?;
                    let perms = &rule[1..tilde];
                    if perms.is_empty() || !perms.iter().all(|c| matches!(c.to_ascii_uppercase(), b'R' | b'W')) {
                        return Err(SYNTAX);
                    }
                    let has = |c: u8| perms.iter().any(|p| p.to_ascii_uppercase() == c);
                    self.add_keys(&rule[tilde + 1..], has(b'R'), has(b'W'))?;
                }
                Some(b'&') => {
                    let pattern = &rule[1..];
                    if self.channels.iter().any(|c| c == b"*") {
                        if pattern != b"*" {
                            return Err(
                                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
                            );
                        }
                    } else if pattern == b"*" {
                        self.channels = vec![b"*".to_vec()];
                    } else if !self.channels.iter().any(|c| c == pattern) {
                        self.channels.push(pattern.to_vec());
                    }
                }
                Some(b'+') | Some(b'-') => {
                    let rule = lower.as_deref().ok_or(UNKNOWN)?;
                    self.command_rule(rule)?;
                }
                _ => return Err(SYNTAX),
            },
        }
        self.unrestricted = self.rules == ["+@all"]
            && self.keys.iter().any(|k| k.pattern == b"*" && k.read && k.write)
            && self.channels.iter().any(|c| c == b"*");
        Ok(())
    }

    fn add_password(&mut self, h: [u8; 32]) {
        self.nopass = false;
        if !self.passwords.contains(&h) {
            self.passwords.push(h);
        }
    }

    fn remove_password(&mut self, h: [u8; 32]) -> Result<(), &'static str> {
        let before = self.passwords.len();
        self.passwords.retain(|p| *p != h);
        if self.passwords.len() == before {
            return Err("The password you are trying to remove from the user does not exist");
        }
        self.nopass = false;
        Ok(())
    }

    fn add_keys(&mut self, pattern: &[u8], read: bool, write: bool) -> Result<(), &'static str> {
        if self.keys.iter().any(|k| k.pattern == b"*" && k.read && k.write) {
            if pattern == b"*" && read && write {
                return Ok(());
            }
            return Err(
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            );
        }
        if pattern == b"*" && read && write {
            self.keys.clear();
        }
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(k) => {
                k.read |= read;
                k.write |= write;
            }
            None => self.keys.push(KeyPattern {
                pattern: pattern.to_vec(),
                read,
                write,
            }),
        }
        Ok(())
    }

    /// `+cmd`, `-cmd`, `+@cat`, `-@cat`, `+cmd|sub`, `-cmd|sub` (lower-case).
    fn command_rule(&mut self, rule: &str) -> Result<(), &'static str> {
        let allow = rule.starts_with('+');
        let what = &rule[1..];
        if let Some(cat) = what.strip_prefix('@') {
            if cat == "all" {
                self.commands.fill(if allow { Perm::All } else { Perm::No });
                self.rules = vec![rule.to_string()];
                return Ok(());
            }
            let bit = category::bit(cat).ok_or(UNKNOWN)?;
            for c in COMMANDS {
                if category::of(c) & bit != 0 {
                    self.commands[c.index()] = if allow { Perm::All } else { Perm::No };
                }
            }
            self.rules.retain(|r| r[1..] != *what);
            self.rules.push(rule.to_string());
            return Ok(());
        }
        let (name, sub) = match what.split_once('|') {
            Some((n, s)) => (n, Some(s)),
            None => (what, None),
        };
        let info = kv_proto::commands::lookup(name.as_bytes()).ok_or(UNKNOWN)?;
        let i = info.index();
        let Some(sub) = sub else {
            self.commands[i] = if allow { Perm::All } else { Perm::No };
            let sub_prefix = format!("{name}|");
            self.rules
                .retain(|r| r[1..] != *name && !r[1..].starts_with(&sub_prefix));
            self.rules.push(rule.to_string());
            return Ok(());
        };
        match subcommands(name) {
            Some(known) => {
                if sub.contains('|') {
                    return Err("Allowing first-arg of a subcommand is not supported");
                }
                if !known.contains(&sub) {
                    return Err(UNKNOWN);
                }
            }
            None if sub.contains('|') || sub.is_empty() => return Err(UNKNOWN),
            None => {}
        }
        let perm = &mut self.commands[i];
        let changed = match (allow, &mut *perm) {
            (true, Perm::All) | (false, Perm::No) => false,
            (true, Perm::No) => {
                *perm = Perm::Only(vec![sub.to_string()]);
                true
            }
            (false, Perm::All) => {
                *perm = Perm::AllBut(vec![sub.to_string()]);
                true
            }
            (true, Perm::Only(subs)) | (false, Perm::AllBut(subs)) => {
                if !subs.iter().any(|s| s == sub) {
                    subs.push(sub.to_string());
                }
                true
            }
            (true, Perm::AllBut(subs)) | (false, Perm::Only(subs)) => {
                subs.retain(|s| s != sub);
                true
            }
        };
        if changed {
            self.rules.retain(|r| r[1..] != *what);
            self.rules.push(rule.to_string());
        }
        Ok(())
    }

    /// Whether this user may run `info` with `args` (`args[0]` is the name): the command,
    /// then its keys, then its channels.
    pub fn check(&self, info: &CommandInfo, args: &[Bytes]) -> Result<(), Denied> {
        if self.unrestricted {
            return Ok(());
        }
        self.check_command(info, args)?;
        self.check_keys(info, args)?;
        self.check_channels(info.name, args)
    }

    /// True when every command of `category` is allowed whole (as `+@admin` allows them):
    /// what the HTTP API's admin endpoints require.
    pub fn has_category(&self, category: &str) -> bool {
        let Some(bit) = category::bit(category) else {
            return false;
        };
        COMMANDS
            .iter()
            .filter(|c| category::of(c) & bit != 0)
            .all(|c| self.commands[c.index()] == Perm::All)
    }

    /// The command alone (`ACL DRYRUN`'s first check, and scripts' commands).
    pub fn check_command(&self, info: &CommandInfo, args: &[Bytes]) -> Result<(), Denied> {
        let sub = || args.get(1).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
        let denied = |with_sub: bool| {
            let name = match (with_sub && subcommands(info.name).is_some(), sub()) {
                (true, Some(s)) => format!("{}|{s}", info.name),
                _ => info.name.to_string(),
            };
            Err(Denied::Command(name))
        };
        match &self.commands[info.index()] {
            Perm::All => Ok(()),
            Perm::No => denied(true),
            Perm::Only(subs) => match sub() {
                Some(s) if subs.contains(&s) => Ok(()),
                _ => denied(true),
            },
            Perm::AllBut(subs) => match sub() {
                Some(s) if subs.contains(&s) => denied(true),
                _ => Ok(()),
            },
        }
    }

    fn check_keys(&self, info: &CommandInfo, args: &[Bytes]) -> Result<(), Denied> {
        if self.keys.iter().any(|k| k.pattern == b"*" && k.read && k.write) {
            return Ok(());
        }
        let write = info.flags.contains(&"write");
        let read = !write || !BLIND_WRITES.contains(&info.name);
        for key in info.keys(args) {
            let ok = self
                .keys
                .iter()
                .any(|k| (k.read || !read) && (k.write || !write) && kv_proto::glob::matches(&k.pattern, key));
            if !ok {
                return Err(Denied::Key(key.clone()));
            }
        }
        Ok(())
    }

    fn check_channels(&self, name: &str, args: &[Bytes]) -> Result<(), Denied> {
        if self.channels.iter().any(|c| c == b"*") {
            return Ok(());
        }
        let (channels, literal) = match name {
            "publish" | "spublish" => (args.get(1..2).unwrap_or(&[]), false),
            "subscribe" | "ssubscribe" => (args.get(1..).unwrap_or(&[]), false),
            // A pattern subscription is allowed only for a pattern the user has, as written.
            "psubscribe" => (args.get(1..).unwrap_or(&[]), true),
            _ => return Ok(()),
        };
        for ch in channels {
            let ok = self.channels.iter().any(|p| {
                if literal {
                    p[..] == ch[..]
                } else {
                    kv_proto::glob::matches(p, ch)
                }
            });
            if !ok {
                return Err(Denied::Channel(ch.clone()));
            }
        }
        Ok(())
    }

    fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        f.push("sanitize-payload");
        f
    }

    fn password_hexes(&self) -> Vec<String> {
        self.passwords.iter().map(hex).collect()
    }

    fn keys_text(&self) -> String {
        let words: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let p = String::from_utf8_lossy(&k.pattern);
                match (k.read, k.write) {
                    (true, true) => format!("~{p}"),
                    (true, false) => format!("%R~{p}"),
                    _ => format!("%W~{p}"),
                }
            })
            .collect();
        words.join(" ")
    }

    fn channels_text(&self) -> String {
        if self.channels.iter().any(|c| c == b"*") {
            return "&*".into();
        }
        let mut words = vec!["resetchannels".to_string()];
        words.extend(self.channels.iter().map(|c| format!("&{}", String::from_utf8_lossy(c))));
        words.join(" ")
    }

    /// The command rules, as `ACL GETUSER` shows them.
    pub fn commands_text(&self) -> String {
        self.rules.join(" ")
    }

    /// This user as `ACL LIST` and the ACL file write it.
    pub fn describe(&self) -> String {
        let mut words = vec![format!("user {}", self.name)];
        words.extend(self.flags().iter().map(|s| s.to_string()));
        words.extend(self.password_hexes().into_iter().map(|h| format!("#{h}")));
        let keys = self.keys_text();
        if !keys.is_empty() {
            words.push(keys);
        }
        words.push(self.channels_text());
        words.push(self.commands_text());
        words.join(" ")
    }

    /// The user a [`User::describe`] text describes (`user <name> <rules…>`).
    pub fn from_description(text: &str) -> Result<User, String> {
        let mut words = text.split(' ').filter(|w| !w.is_empty());
        let (Some("user"), Some(name)) = (words.next(), words.next()) else {
            return Err(format!("not a user description: {text}"));
        };
        let mut user = User::new(name);
        user.apply_all(words.map(str::as_bytes))?;
        Ok(user)
    }

    /// `ACL GETUSER`'s reply.
    pub fn getuser_reply(&self) -> kv_proto::Frame {
        use kv_proto::Frame;
        let bulk = |s: String| Frame::Bulk(Bytes::from(s));
        let channels = if self.channels.iter().any(|c| c == b"*") {
            "&*".to_string()
        } else {
            self.channels
                .iter()
                .map(|c| format!("&{}", String::from_utf8_lossy(c)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        Frame::Map(vec![
            (
                bulk("flags".into()),
                Frame::Array(self.flags().into_iter().map(|f| bulk(f.into())).collect()),
            ),
            (
                bulk("passwords".into()),
                Frame::Array(self.password_hexes().into_iter().map(bulk).collect()),
            ),
            (bulk("commands".into()), bulk(self.commands_text())),
            (bulk("keys".into()), bulk(self.keys_text())),
            (bulk("channels".into()), bulk(channels)),
            (bulk("selectors".into()), Frame::Array(Vec::new())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &str) -> User {
        let mut u = User::new("u");
        u.apply_all(rules.split_whitespace().map(str::as_bytes)).unwrap();
        u
    }

    fn run(u: &User, args: &str) -> Result<(), Denied> {
        let args: Vec<Bytes> = args.split_whitespace().map(|a| Bytes::from(a.to_string())).collect();
        let info = kv_proto::commands::lookup(&args[0]).unwrap();
        u.check(info, &args)
    }

    #[test]
    fn the_default_user_may_do_anything() {
        let d = User::default_user(None);
        assert!(d.unrestricted() && d.enabled() && d.password_ok(b"any"));
        assert_eq!(d.describe(), "user default on nopass sanitize-payload ~* &* +@all");
        let p = User::default_user(Some(b"secret"));
        assert!(p.password_ok(b"secret") && !p.password_ok(b"other"));
        assert_eq!(
            p.describe(),
            format!(
                "user default on sanitize-payload #{} ~* &* +@all",
                sha256_hex(b"secret")
            )
        );
    }

    #[test]
    fn new_users_may_do_nothing() {
        let u = User::new("newuser");
        assert_eq!(u.describe(), "user newuser off sanitize-payload resetchannels -@all");
        assert_eq!(run(&u, "GET k"), Err(Denied::Command("get".into())));
    }

    #[test]
    fn commands_categories_and_subcommands_are_allowed_and_denied() {
        let u = user("+set");
        assert_eq!(run(&u, "SET foo bar"), Err(Denied::Key(Bytes::from("foo"))));
        let u = user("allcommands ~foo:* ~bar:*");
        assert_eq!(run(&u, "SET foo:1 a"), Ok(()));
        assert!(run(&u, "SET zap:3 c").is_err());
        let u = user("-@all +@set ~*");
        assert_eq!(run(&u, "SADD s a"), Ok(()));
        assert_eq!(run(&u, "SET k v"), Err(Denied::Command("set".into())));
        let u = user("+@all -client ~* +client|id +client|setname");
        assert_eq!(u.commands_text(), "+@all -client +client|id +client|setname");
        assert_eq!(run(&u, "CLIENT SETNAME x"), Ok(()));
        assert_eq!(run(&u, "CLIENT KILL x"), Err(Denied::Command("client|kill".into())));
        let u = user("+@all -client|kill");
        assert_eq!(u.commands_text(), "+@all -client|kill");
        let u = user("-@all +config -config|set ~*");
        assert_eq!(u.commands_text(), "-@all +config -config|set");
        assert_eq!(run(&u, "CONFIG GET x"), Ok(()));
        assert_eq!(run(&u, "CONFIG SET x y"), Err(Denied::Command("config|set".into())));
        // Engulfed by a later whole-command or @all rule.
        assert_eq!(user("+memory|doctor +memory").commands_text(), "-@all +memory");
        assert_eq!(user("+@all +client|id").commands_text(), "+@all");
        assert_eq!(user("+@all -memory|doctor -memory").commands_text(), "+@all -memory");
        let u = user("-@all +select|0 ~*");
        assert_eq!(run(&u, "SELECT 0"), Ok(()));
        assert_eq!(run(&u, "SELECT 1"), Err(Denied::Command("select".into())));
        for cat in crate::category::CATEGORIES {
            assert_eq!(
                user(&format!("+@all -@{cat}")).commands_text(),
                format!("+@all -@{cat}")
            );
            assert_eq!(
                user(&format!("-@all +@{cat}")).commands_text(),
                format!("-@all +@{cat}")
            );
        }
    }

    #[test]
    fn bad_rules_are_refused_whole_with_redis_reasons() {
        let mut u = User::new("u");
        let err = |u: &mut User, r: &str| u.apply_all(r.split_whitespace().map(str::as_bytes)).unwrap_err();
        assert!(err(&mut u, "+config|get|appendonly").ends_with("Allowing first-arg of a subcommand is not supported"));
        assert!(err(&mut u, "+config|asdf").ends_with(UNKNOWN));
        assert!(err(&mut u, "+get|key1|key2").ends_with(UNKNOWN));
        assert!(
            err(
                &mut u,
                "#34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e"
            )
            .contains("exactly 64")
        );
        assert_eq!(
            err(&mut u, "on bogus"),
            "Error in ACL SETUSER modifier 'bogus': Syntax error"
        );
        assert!(!u.enabled(), "nothing applied");
        assert!(err(&mut u, "~* ~foo").contains("'allkeys'"));
        assert!(err(&mut u, "<nope").contains("does not exist"));
    }

    #[test]
    fn key_permissions_split_reads_and_writes() {
        let u = user("+@all %R~r:* %W~w:*");
        assert_eq!(run(&u, "GET r:1"), Ok(()));
        assert!(run(&u, "SET r:1 v").is_err());
        assert_eq!(run(&u, "SET w:1 v"), Ok(()));
        assert!(run(&u, "GET w:1").is_err());
        // A write that returns what it read needs both.
        assert!(run(&u, "INCR w:1").is_err());
        assert_eq!(
            u.describe(),
            "user u off sanitize-payload %R~r:* %W~w:* resetchannels +@all"
        );
    }

    #[test]
    fn a_description_gives_back_the_same_user() {
        for rules in [
            "on >pw ~x* +@scripting +set",
            "+@all %R~r:* %W~w:* -del",
            "on nopass &c* +get|x",
        ] {
            let u = user(rules);
            let back = User::from_description(&u.describe()).unwrap();
            assert_eq!(back.describe(), u.describe(), "{rules}");
            assert_eq!(run(&back, "SET x1 v").is_ok(), run(&u, "SET x1 v").is_ok(), "{rules}");
        }
        assert!(User::from_description("nobody +@all").is_err());
    }

    #[test]
    fn channels_match_as_globs_and_patterns_literally() {
        let u = user("+@all ~* resetchannels &news.*");
        assert_eq!(run(&u, "PUBLISH news.sport x"), Ok(()));
        assert_eq!(run(&u, "PUBLISH other x"), Err(Denied::Channel(Bytes::from("other"))));
        assert_eq!(run(&u, "PSUBSCRIBE news.*"), Ok(()));
        assert!(run(&u, "PSUBSCRIBE news.s*").is_err());
    }

    #[test]
    fn passwords_by_text_or_hash() {
        let mut u = user("on >passwd1 >passwd2");
        assert!(u.password_ok(b"passwd1") && u.password_ok(b"passwd2") && !u.password_ok(b"x"));
        u.apply(b"<passwd1").unwrap();
        assert!(!u.password_ok(b"passwd1"));
        let h = sha256_hex(b"passwd4");
        u.apply(format!("#{h}").as_bytes()).unwrap();
        assert!(u.password_ok(b"passwd4"));
        u.apply(format!("!{h}").as_bytes()).unwrap();
        assert!(!u.password_ok(b"passwd4"));
        u.apply(b"nopass").unwrap();
        assert!(u.password_ok(b"anything"));
    }
}
