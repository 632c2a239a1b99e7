//! The users of a cluster: one immutable snapshot ([`Users`]) that connections read without
//! locking, replaced whole when `ACL SETUSER`, `DELUSER` or `LOAD` change it ([`Acl`]).
//!
//! A connection keeps its user and the generation it was read at; one atomic load per
//! request tells it whether to look its user up again (a user changed or deleted applies to
//! connections already authenticated, as in Redis).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kv_proto::Frame;

use crate::user::User;

/// Every user, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<String, Arc<User>>,
}

/// The ACL file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclFileError(pub String);

impl Users {
    /// Just the default user (`requirepass`: its password, or none).
    pub fn new(requirepass: Option<&[u8]>) -> Users {
        let mut users = BTreeMap::new();
        users.insert("default".to_string(), Arc::new(User::default_user(requirepass)));
        Users { users }
    }

    /// Users from an ACL file's text (`user <name> <rules…>` per line; `#` comments). The
    /// default user, when the file does not define it, is `on nopass ~* &* +@all`.
    pub fn parse(text: &str) -> Result<Users, AclFileError> {
        let mut users = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some("user"), Some(name)) = (words.next(), words.next()) else {
                return Err(AclFileError(format!("line {}: should start with user keyword", n + 1)));
            };
            if users.contains_key(name) {
                return Err(AclFileError(format!("line {}: Duplicate user '{name}' found", n + 1)));
            }
            let mut user = User::new(name);
            user.apply_all(words.map(str::as_bytes))
                .map_err(|e| AclFileError(format!("line {}: {e}", n + 1)))?;
            users.insert(name.to_string(), Arc::new(user));
        }
        users
            .entry("default".to_string())
            .or_insert_with(|| Arc::new(User::default_user(None)));
        Ok(Users { users })
    }

    /// The ACL file's text for these users.
    pub fn to_file(&self) -> String {
        self.users.values().map(|u| u.describe() + "\n").collect()
    }

    /// These users with the default user's passwords replaced by `password`.
    pub fn with_default_password(mut self, password: &[u8]) -> Users {
        let mut rule = b">".to_vec();
        rule.extend_from_slice(password);
        let mut user = self
            .users
            .get("default")
            .map_or_else(|| User::default_user(None), |u| (**u).clone());
        user.apply_all([&b"resetpass"[..], &rule])
            .expect("password rules are valid");
        self.users.insert("default".into(), Arc::new(user));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// The user `name` opened by `password`: `None` for a wrong pair or a user that is off.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let user = self.users.get(std::str::from_utf8(name).ok()?)?;
        (user.enabled() && user.password_ok(password)).then(|| user.clone())
    }

    /// True when a new connection is authenticated as `default` without `AUTH` (the default
    /// user is on and needs no password).
    pub fn default_is_open(&self) -> bool {
        self.users.get("default").is_some_and(|u| u.enabled() && u.nopass())
    }
}

/// The live user set: readers take a snapshot, writers replace it.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<Arc<Users>>,
    generation: AtomicU64,
}

impl Acl {
    pub fn new(users: Users) -> Acl {
        Acl {
            users: RwLock::new(Arc::new(users)),
            generation: AtomicU64::new(0),
        }
    }

    /// The users now.
    pub fn users(&self) -> Arc<Users> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bumped on every change: a connection compares it with the one it read its user at.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the users.
    pub fn replace(&self, users: Users) {
        let mut guard = self.users.write().unwrap_or_else(|e| e.into_inner());
        if **guard != users {
            *guard = Arc::new(users);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes the users with `f` (given a copy); nothing changes when it fails.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Arc<User>>) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut guard = self.users.write().unwrap_or_else(|e| e.into_inner());
        let mut next = guard.users.clone();
        let out = f(&mut next)?;
        if next != guard.users {
            *guard = Arc::new(Users { users: next });
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(out)
    }
}

/// A connection's user, re-read when the users change.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: Arc<User>,
    generation: u64,
    /// False until `AUTH` when the default user is not open: every command but `AUTH`,
    /// `HELLO` and `QUIT` gets `NOAUTH`.
    pub authenticated: bool,
}

/// What [`Session::admit`] decided for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Run it.
    Pass,
    /// Answer this instead: `AUTH`'s (or a failed `HELLO … AUTH`'s) reply.
    Reply(kv_proto::Frame),
    /// Refused before running (`NOAUTH`, `NOPERM`): answer this; counted as a rejected call
    /// and, inside `MULTI`, the transaction is discarded at `EXEC`, as in Redis.
    Refused(kv_proto::Frame),
    /// Answer this and close the connection (its user was deleted).
    Close(kv_proto::Frame),
}

/// What a session's refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    Same,
    /// Its user was deleted: the connection is closed, as Redis closes it.
    Deleted,
}

impl Session {
    /// A new connection: `default`, authenticated when that user is open.
    pub fn new(acl: &Acl) -> Session {
        let generation = acl.generation();
        let users = acl.users();
        let user = users
            .get("default")
            .cloned()
            .unwrap_or_else(|| Arc::new(User::new("default")));
        Session {
            authenticated: users.default_is_open(),
            user,
            generation,
        }
    }

    /// Re-reads the user if the users changed since it was read.
    pub fn refresh(&mut self, acl: &Acl) -> Fresh {
        let generation = acl.generation();
        if generation == self.generation {
            return Fresh::Same;
        }
        self.generation = generation;
        match acl.users().get(&self.user.name) {
            Some(u) => {
                self.user = u.clone();
                Fresh::Same
            }
            None => Fresh::Deleted,
        }
    }

    /// Checks a request before it runs, as Redis does after the command lookup and arity
    /// check: `AUTH` is answered; `HELLO … AUTH` authenticates first; before authenticating
    /// only those and `QUIT` pass (`NOAUTH`); then the user's rules (`NOPERM`, logged).
    /// `client` names the connection in `ACL LOG`.
    pub fn admit(
        &mut self,
        acl: &Acl,
        log: &crate::command::Log,
        info: &kv_proto::commands::CommandInfo,
        args: &[Bytes],
        in_multi: bool,
        client: &str,
    ) -> Admit {
        if self.refresh(acl) == Fresh::Deleted {
            return Admit::Close(Frame::error("ERR the user of this connection was deleted"));
        }
        if info.name == "auth" {
            let reply = self.auth(acl, args);
            if reply.as_error().is_some() {
                let name = if args.len() == 3 { &args[1][..] } else { b"default" };
                log.auth_failed(&String::from_utf8_lossy(name), client);
            }
            return Admit::Reply(reply);
        }
        if info.name == "hello" {
            // `HELLO [protover] [AUTH user pass] …`: authenticate first.
            if let Some(at) = args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH"))
                && at + 2 < args.len()
            {
                let auth = [Bytes::from_static(b"AUTH"), args[at + 1].clone(), args[at + 2].clone()];
                let reply = self.auth(acl, &auth);
                if reply.as_error().is_some() {
                    log.auth_failed(&String::from_utf8_lossy(&args[at + 1]), client);
                    return Admit::Reply(reply);
                }
                return Admit::Pass;
            }
            if !self.authenticated {
                return Admit::Refused(Frame::error(
                    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
                ));
            }
            return Admit::Pass;
        }
        if !self.authenticated {
            return match info.name {
                "quit" => Admit::Pass,
                _ => Admit::Refused(Frame::error("NOAUTH Authentication required.")),
            };
        }
        if self.user.unrestricted() {
            return Admit::Pass;
        }
        match self.user.check(info, args) {
            Ok(()) => Admit::Pass,
            Err(denied) => {
                log.denied(&self.user.name, &denied, in_multi, client);
                Admit::Refused(Frame::error(denied.error()))
            }
        }
    }

    /// `AUTH [user] password` (`args[0]` is `AUTH`), and `HELLO … AUTH user pass`.
    pub fn auth(&mut self, acl: &Acl, args: &[Bytes]) -> Frame {
        let (name, pass) = match args.len() {
            2 => (&b"default"[..], &args[1][..]),
            3 => (&args[1][..], &args[2][..]),
            _ => return Frame::error("ERR syntax error"),
        };
        let users = acl.users();
        if args.len() == 2 && users.default_is_open() {
            return Frame::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        match users.authenticate(name, pass) {
            Some(user) => {
                self.user = user;
                self.generation = acl.generation();
                self.authenticated = true;
                Frame::simple("OK")
            }
            None => Frame::error("WRONGPASS invalid username-password pair or user is disabled."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split_whitespace().map(|a| Bytes::from(a.to_string())).collect()
    }

    #[test]
    fn the_acl_file_round_trips() {
        let text = "user alice on allcommands allkeys &* >alice\nuser bob on -@all +@set +acl ~set* &* >bob\n";
        let users = Users::parse(text).unwrap();
        assert!(users.authenticate(b"alice", b"alice").is_some());
        assert!(users.authenticate(b"bob", b"alice").is_none());
        assert!(users.default_is_open());
        let again = Users::parse(&users.to_file()).unwrap();
        assert_eq!(again, users);
        assert!(
            Users::parse("user a on\nuser a off")
                .unwrap_err()
                .0
                .contains("Duplicate")
        );
        assert!(Users::parse("usr a").is_err());
        assert!(Users::parse("user a bogus").unwrap_err().0.contains("Syntax error"));
    }

    #[test]
    fn sessions_authenticate_and_follow_changes() {
        let acl = Acl::new(Users::new(Some(b"pw")));
        let mut s = Session::new(&acl);
        assert!(!s.authenticated);
        assert!(s.auth(&acl, &args("AUTH nope")).as_error().is_some());
        assert_eq!(s.auth(&acl, &args("AUTH pw")), Frame::simple("OK"));
        assert!(s.authenticated && s.user.unrestricted());
        acl.update(|u| {
            let mut n = crate::User::new("n");
            n.apply_all(["on", ">x", "+get", "~*"].map(str::as_bytes))?;
            u.insert("n".into(), Arc::new(n));
            Ok(())
        })
        .unwrap();
        assert_eq!(s.auth(&acl, &args("AUTH n x")), Frame::simple("OK"));
        assert!(!s.user.unrestricted());
        acl.update(|u| {
            u.remove("n");
            Ok(())
        })
        .unwrap();
        assert_eq!(s.refresh(&acl), Fresh::Deleted);
        let open = Acl::new(Users::new(None));
        let mut s = Session::new(&open);
        assert!(s.authenticated);
        assert!(
            s.auth(&open, &args("AUTH x"))
                .as_error()
                .unwrap()
                .starts_with(b"ERR AUTH <password> called without")
        );
    }
}
