//! `ACL …` and its replies, as Redis 7.0 gives them, over an [`Acl`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use kv_proto::Frame;

use crate::category;
use crate::user::{Denied, User};
use crate::users::{Acl, Users};

/// `ACL LOG` keeps at most this many entries (Redis's `acllog-max-len` default).
pub const LOG_MAX: usize = 128;

/// One refusal in `ACL LOG`; repeats of the same refusal are counted in it.
#[derive(Debug, Clone)]
struct Entry {
    count: u64,
    reason: &'static str,
    context: &'static str,
    object: String,
    username: String,
    at: Instant,
    client: String,
}

/// `ACL LOG`: recent refusals, newest first.
#[derive(Debug, Default)]
pub struct Log {
    entries: Mutex<VecDeque<Entry>>,
}

impl Log {
    /// Records a refusal of `user`'s command (`in_multi`: inside a transaction).
    pub fn denied(&self, user: &str, denied: &Denied, in_multi: bool, client: &str) {
        let (reason, object) = match denied {
            Denied::Command(c) => ("command", c.clone()),
            Denied::Key(k) => ("key", String::from_utf8_lossy(k).into_owned()),
            Denied::Channel(c) => ("channel", String::from_utf8_lossy(c).into_owned()),
        };
        self.push(
            reason,
            if in_multi { "multi" } else { "toplevel" },
            object,
            user,
            client,
        );
    }

    /// Records a failed `AUTH` for `user`.
    /// A refusal of a command a script called (`redis.call`): context `lua`, as Redis logs it.
    pub fn denied_in_script(&self, user: &str, denied: &Denied, client: &str) {
        let (reason, object) = match denied {
            Denied::Command(c) => ("command", c.clone()),
            Denied::Key(k) => ("key", String::from_utf8_lossy(k).into_owned()),
            Denied::Channel(c) => ("channel", String::from_utf8_lossy(c).into_owned()),
        };
        self.push(reason, "lua", object, user, client);
    }

    pub fn auth_failed(&self, user: &str, client: &str) {
        self.push("auth", "toplevel", "AUTH".into(), user, client);
    }

    fn push(&self, reason: &'static str, context: &'static str, object: String, username: &str, client: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.reason == reason && e.context == context && e.object == object && e.username == username)
        {
            e.count += 1;
            e.at = now;
            e.client = client.to_string();
            return;
        }
        entries.push_front(Entry {
            count: 1,
            reason,
            context,
            object,
            username: username.to_string(),
            at: now,
            client: client.to_string(),
        });
        entries.truncate(LOG_MAX);
    }

    fn reply(&self, count: usize) -> Frame {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        Frame::Array(
            entries
                .iter()
                .take(count)
                .map(|e| {
                    Frame::Map(vec![
                        (bulk("count"), Frame::Integer(e.count as i64)),
                        (bulk("reason"), bulk(e.reason)),
                        (bulk("context"), bulk(e.context)),
                        (bulk("object"), bulk(&e.object)),
                        (bulk("username"), bulk(&e.username)),
                        (bulk("age-seconds"), Frame::Double(e.at.elapsed().as_secs_f64())),
                        (bulk("client-info"), bulk(&e.client)),
                    ])
                })
                .collect(),
        )
    }

    fn reset(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Print this help.",
];

/// What `ACL SAVE` and `ACL LOAD` do with the users: the caller owns where they are kept
/// (a file, or the cluster's coordinator).
pub trait Storage: Send + Sync {
    /// Stores the users' file text.
    fn save(&self, text: &str) -> Result<(), String>;
    /// The stored users' file text.
    fn load(&self) -> Result<String, String>;
}

/// No ACL file: `SAVE` and `LOAD` answer as Redis does without `aclfile`.
pub struct NoStorage;

const NO_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

impl Storage for NoStorage {
    fn save(&self, _: &str) -> Result<(), String> {
        Err(NO_FILE.into())
    }
    fn load(&self) -> Result<String, String> {
        Err(NO_FILE.into())
    }
}

/// An ACL file on disk (`--aclfile`): `ACL SAVE` replaces it atomically (a temporary file
/// renamed over it), `ACL LOAD` reads it.
pub struct FileStorage(pub std::path::PathBuf);

impl Storage for FileStorage {
    fn save(&self, text: &str) -> Result<(), String> {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.0))
            .map_err(|e| {
                format!(
                    "There was an error trying to save the ACLs. Please check the server logs for more information: {e}"
                )
            })
    }
    fn load(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.0)
            .map_err(|e| format!("Error loading ACLs, opening file '{}': {e}", self.0.display()))
    }
}

/// Users from `--aclfile` (when given) and `--requirepass` (the default user's password),
/// as a process starts.
pub fn initial_users(aclfile: Option<&std::path::Path>, requirepass: Option<&str>) -> Result<Users, String> {
    let Some(path) = aclfile else {
        return Ok(Users::new(requirepass.map(str::as_bytes)));
    };
    let text = FileStorage(path.to_path_buf()).load()?;
    let mut users = Users::parse(&text).map_err(|e| format!("{}: {}", path.display(), e.0))?;
    if let Some(pass) = requirepass {
        users = users.with_default_password(pass.as_bytes());
    }
    Ok(users)
}

/// `ACL <subcommand> …` (`args[0]` is `ACL`) for a connection authenticated as `me`.
pub fn acl(acl: &Acl, log: &Log, storage: &dyn Storage, me: &User, args: &[Bytes]) -> Frame {
    let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    let n = args.len();
    let wrong = || Frame::unknown_subcommand("ACL", &args[1]);
    match sub.as_slice() {
        b"WHOAMI" if n == 2 => bulk(&me.name),
        b"USERS" if n == 2 => Frame::Array(
            acl.users()
                .to_file()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1).map(bulk))
                .collect(),
        ),
        b"LIST" if n == 2 => Frame::Array(acl.users().to_file().lines().map(bulk).collect()),
        b"GETUSER" if n == 3 => match acl.users().get(&text(&args[2])) {
            Some(u) => u.getuser_reply(),
            None => Frame::Null,
        },
        b"SETUSER" if n >= 3 => {
            let name = text(&args[2]);
            if name.contains(' ') || name.contains('\0') || args[2].is_empty() {
                return Frame::error("ERR Usernames can't contain spaces or null characters");
            }
            let r = acl.update(|users| {
                let mut user = users.get(&name).map_or_else(|| User::new(&name), |u| (**u).clone());
                user.apply_all(args[3..].iter().map(|a| &a[..]))?;
                users.insert(name.clone(), Arc::new(user));
                Ok(())
            });
            match r {
                Ok(()) => Frame::simple("OK"),
                Err(e) => Frame::error(format!("ERR {e}")),
            }
        }
        b"DELUSER" if n >= 3 => {
            let names: Vec<String> = args[2..].iter().map(text).collect();
            if names.iter().any(|n| n == "default") {
                return Frame::error("ERR The 'default' user cannot be removed");
            }
            let r = acl.update(|users| Ok(names.iter().filter(|n| users.remove(*n).is_some()).count()));
            Frame::Integer(r.unwrap_or(0) as i64)
        }
        b"CAT" if n == 2 => Frame::Array(category::CATEGORIES.iter().map(|c| bulk(c)).collect()),
        b"CAT" if n == 3 => match category::bit(&text(&args[2]).to_ascii_lowercase()) {
            Some(bit) => Frame::Array(
                kv_proto::commands::COMMANDS
                    .iter()
                    .filter(|c| category::of(c) & bit != 0)
                    .map(|c| bulk(c.name))
                    .collect(),
            ),
            None => Frame::error(format!("ERR Unknown category '{}'", text(&args[2]))),
        },
        b"GENPASS" if n <= 3 => {
            let bits = match args.get(2).map(|b| text(b).parse::<i64>()) {
                None => 256,
                Some(Ok(b)) if (1..=4096).contains(&b) => b as usize,
                _ => {
                    return Frame::error(
                        "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                    );
                }
            };
            let chars = bits.div_ceil(4);
            let mut raw = vec![0u8; chars.div_ceil(2)];
            getrandom::fill(&mut raw).expect("the operating system's random source");
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            bulk(&hex[..chars])
        }
        b"LOG" if n <= 3 => match args.get(2) {
            None => log.reply(10),
            Some(a) if a.eq_ignore_ascii_case(b"RESET") => {
                log.reset();
                Frame::simple("OK")
            }
            Some(a) => match text(a).parse::<i64>() {
                Ok(c) if c >= 0 => log.reply(c as usize),
                _ => Frame::error("ERR value is out of range, must be positive"),
            },
        },
        b"DRYRUN" if n >= 4 => {
            let users = acl.users();
            let Some(user) = users.get(&text(&args[2])) else {
                return Frame::error(format!("ERR User '{}' not found", text(&args[2])));
            };
            let Some(info) = kv_proto::commands::lookup(&args[3]) else {
                return Frame::error(format!("ERR Command '{}' not found", text(&args[3])));
            };
            if !info.arity_ok(n - 3) {
                return Frame::error(format!("ERR wrong number of arguments for '{}' command", info.name));
            }
            match user.check(info, &args[3..]) {
                Ok(()) => Frame::simple("OK"),
                Err(d) => bulk(&dryrun_text(&d)),
            }
        }
        b"SAVE" if n == 2 => match storage.save(&acl.users().to_file()) {
            Ok(()) => Frame::simple("OK"),
            Err(e) => Frame::error(format!("ERR {e}")),
        },
        b"LOAD" if n == 2 => match storage.load().and_then(|t| Users::parse(&t).map_err(|e| e.0)) {
            Ok(users) => {
                acl.replace(users);
                Frame::simple("OK")
            }
            Err(e) => Frame::error(format!("ERR {e}")),
        },
        b"HELP" if n == 2 => Frame::Array(HELP.iter().map(|l| Frame::simple(l)).collect()),
        b"WHOAMI" | b"USERS" | b"LIST" | b"GETUSER" | b"SETUSER" | b"DELUSER" | b"CAT" | b"GENPASS" | b"LOG"
        | b"DRYRUN" | b"SAVE" | b"LOAD" | b"HELP" => wrong(),
        _ => Frame::error(format!("ERR unknown subcommand '{}'. Try ACL HELP.", text(&args[1]))),
    }
}

/// True for the `ACL` subcommands that change users (`SETUSER`, `DELUSER`, `LOAD`): a
/// cluster applies them to its stored users ([`crate::store::Store::change`]).
pub fn changes_users(args: &[Bytes]) -> bool {
    args.get(1).is_some_and(|s| {
        [&b"SETUSER"[..], b"DELUSER", b"LOAD"]
            .iter()
            .any(|c| s.eq_ignore_ascii_case(c))
    })
}

/// `ACL DRYRUN`'s text for a refusal.
fn dryrun_text(d: &Denied) -> String {
    match d {
        Denied::Command(c) => format!("This user has no permissions to run the '{c}' command"),
        Denied::Key(k) => format!(
            "This user has no permissions to access the '{}' key",
            String::from_utf8_lossy(k)
        ),
        Denied::Channel(c) => format!(
            "This user has no permissions to access the '{}' channel",
            String::from_utf8_lossy(c)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &Acl, log: &Log, line: &str) -> Frame {
        let args: Vec<Bytes> = line.split_whitespace().map(|s| Bytes::from(s.to_string())).collect();
        let me = a.users().get("default").unwrap().clone();
        acl(a, log, &NoStorage, &me, &args)
    }

    #[test]
    fn the_acl_command_answers_as_redis() {
        let a = Acl::new(Users::new(None));
        let log = Log::default();
        assert_eq!(run(&a, &log, "ACL WHOAMI"), Frame::Bulk(Bytes::from("default")));
        assert_eq!(run(&a, &log, "ACL SETUSER newuser"), Frame::simple("OK"));
        assert_eq!(
            run(&a, &log, "ACL LIST"),
            Frame::Array(vec![
                Frame::Bulk(Bytes::from("user default on nopass sanitize-payload ~* &* +@all")),
                Frame::Bulk(Bytes::from("user newuser off sanitize-payload resetchannels -@all")),
            ])
        );
        assert!(
            run(&a, &log, "ACL SETUSER newuser +bogus")
                .as_error()
                .unwrap()
                .starts_with(b"ERR Error in ACL SETUSER modifier '+bogus'")
        );
        assert_eq!(run(&a, &log, "ACL DELUSER newuser nobody"), Frame::Integer(1));
        assert!(run(&a, &log, "ACL DELUSER default").as_error().is_some());
        assert_eq!(run(&a, &log, "ACL GETUSER nobody"), Frame::Null);
        assert!(
            run(&a, &log, "ACL CAT NON_EXISTS")
                .as_error()
                .unwrap()
                .ends_with(b"Unknown category 'NON_EXISTS'")
        );
        let Frame::Bulk(p) = run(&a, &log, "ACL GENPASS") else {
            panic!()
        };
        assert_eq!(p.len(), 64);
        let Frame::Bulk(p) = run(&a, &log, "ACL GENPASS 5") else {
            panic!()
        };
        assert_eq!(p.len(), 2);
        run(&a, &log, "ACL SETUSER scripter on nopass +@read");
        assert_eq!(
            run(&a, &log, "ACL DRYRUN scripter SET k v"),
            Frame::Bulk(Bytes::from("This user has no permissions to run the 'set' command"))
        );
        assert!(
            run(&a, &log, "ACL SAVE")
                .as_error()
                .unwrap()
                .starts_with(b"ERR This Redis instance")
        );
        log.denied("u", &Denied::Key(Bytes::from("k")), false, "id=1");
        log.denied("u", &Denied::Key(Bytes::from("k")), false, "id=1");
        let Frame::Array(entries) = run(&a, &log, "ACL LOG") else {
            panic!()
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(run(&a, &log, "ACL LOG RESET"), Frame::simple("OK"));
        assert_eq!(run(&a, &log, "ACL LOG"), Frame::Array(vec![]));
    }
}
