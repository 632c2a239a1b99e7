//! Lua scripting: `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO` and `SCRIPT
//! LOAD/EXISTS/FLUSH/KILL`, in Lua 5.1 as Redis embeds it (a vendored interpreter, `mlua`).
//!
//! A script runs on the leader under the node's exclusive transaction lock, as `EXEC` does:
//! nothing else runs between its commands. Its `redis.call`s are the server's own commands,
//! so their writes are logged as effects, between `MULTI`/`EXEC` entries: followers apply a
//! script's writes whole, never a script's code (nothing random or time-dependent is
//! re-run). Keys a script touches must be on this shard: a command on another's fails with
//! Redis Cluster's "non local key" error — except, for a gate, in a script that declared no
//! keys and has written nothing yet, which ends with [`REROUTE`] so that the gate runs it
//! on that key's shard.
//!
//! A runaway script is stopped at `busy-reply-threshold` (`lua-time-limit`, 5 s by default):
//! the interpreter checks every 10,000 instructions and fails it with an error that neither
//! `pcall` nor a coroutine can outlive (`watchdog`); a library's code gets 500 ms to load,
//! as in Redis. Redis keeps such a script running until `SCRIPT KILL`; a kvserver serves
//! its clients from as few as one thread, which a running script holds, so it cannot wait
//! for one. What the script wrote before stays, replicated whole. `SCRIPT KILL` stops a
//! script that has not written, when another thread can serve it.
//!
//! Scripts are cached by SHA1 on each server: `EVAL` and `SCRIPT LOAD` add to the cache; a
//! gate sends `SCRIPT LOAD` to every server, followers included, so an `EVALSHA` after a
//! failover finds it. Otherwise `NOSCRIPT`, and clients retry with `EVAL` (redis-py's
//! `Script`, every cluster client).
//!
//! Functions (`FUNCTION LOAD`, `FCALL`, `FCALL_RO`, `FUNCTION LIST/DELETE/FLUSH`) are
//! libraries of Lua functions registered with `redis.register_function`, run like scripts
//! but called by name with `KEYS` and `ARGV` as arguments; a gate loads them on every
//! server.
//!
//! Scripts see Redis's libraries (`libs`: `bit`, `cjson`, `cmsgpack`; `struct_lib`) and
//! read-only globals (`sandbox`). Not yet: `FUNCTION DUMP/RESTORE/STATS/KILL`.

mod libs;
mod sandbox;
mod struct_lib;
mod watchdog;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv_proto::{Frame, Out, Protocol, Request};
use mlua::{Lua, MultiValue, Value};
use sha1::{Digest, Sha1};

use super::Command;
use crate::connection::Connection;
use crate::node::{Node, Pending};

/// A library of functions (`FUNCTION LOAD`).
struct Library {
    code: Bytes,
    /// Its functions, and whether each is flagged `no-writes`.
    functions: Vec<(String, bool)>,
}

/// The loaded libraries, and which library each function name belongs to.
#[derive(Default)]
struct Functions {
    libraries: std::collections::BTreeMap<String, Library>,
    by_name: HashMap<String, (String, bool)>,
}

/// The server's interpreter and script cache.
pub struct Scripts {
    lua: Mutex<Lua>,
    cache: Mutex<HashMap<String, Bytes>>,
    functions: Mutex<Functions>,
    /// `SCRIPT KILL` asked the running script to stop (read by the interpreter's hook).
    kill: std::sync::Arc<AtomicBool>,
    /// A script is running (for `SCRIPT KILL`'s `NOTBUSY`).
    running: AtomicBool,
    /// The running script has written (then it may not be killed).
    wrote: AtomicBool,
    /// `--script-memory` (0: no limit).
    memory_limit: usize,
}

impl Scripts {
    /// Scripts in the cache (`INFO memory`'s `number_of_cached_scripts`).
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }

    /// An interpreter holding at most `memory_limit` bytes (0: no limit).
    pub fn new(memory_limit: u64) -> Self {
        Scripts {
            lua: Mutex::new(new_lua(memory_limit as usize)),
            cache: Mutex::default(),
            functions: Mutex::default(),
            kill: Default::default(),
            running: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            memory_limit: memory_limit as usize,
        }
    }
}

/// A fresh interpreter with Redis's libraries (those built so far) and `redis.*` helpers that
/// need no server, holding at most `memory_limit` bytes (0: no limit).
fn new_lua(memory_limit: usize) -> Lua {
    let lua = sandbox::new_interpreter();
    let setup = || -> mlua::Result<()> {
        let redis = lua.create_table()?;
        redis.set(
            "sha1hex",
            lua.create_function(|_, args: MultiValue| match args.iter().next() {
                Some(Value::String(s)) if args.len() == 1 => Ok(sha1_hex(&s.as_bytes())),
                Some(Value::Integer(_) | Value::Number(_)) if args.len() == 1 => {
                    Ok(sha1_hex(args[0].to_string()?.as_bytes()))
                }
                _ => Err(mlua::Error::RuntimeError(
                    "wrong number of arguments to redis.sha1hex()".into(),
                )),
            })?,
        )?;
        // `{err = s}` and `{ok = s}`: what a script returns for an error or a status reply.
        // Anything but one string is answered (not raised) with Redis's error.
        for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
            redis.set(
                name,
                lua.create_function(move |lua, args: MultiValue| {
                    let t = lua.create_table()?;
                    match args.iter().next() {
                        Some(Value::String(s)) if args.len() == 1 && field == "err" => {
                            t.set(field, lua.create_string(error_reply_text(&s.as_bytes()))?)?
                        }
                        Some(Value::String(s)) if args.len() == 1 => t.set(field, s)?,
                        _ => t.set("err", "ERR wrong number or type of arguments")?,
                    }
                    Ok(t)
                })?,
            )?;
        }
        redis.set("log", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
        for (name, level) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
        ] {
            redis.set(name, level)?;
        }
        // Kept in the registry: the server sets `call`, `pcall`, `register_function` on the
        // real table; scripts see a read-only view of it.
        lua.set_named_registry_value("redis", redis.clone())?;
        lua.globals().set("redis", redis)?;
        libs::register(&lua)?;
        sandbox::seal(&lua)
    };
    setup().expect("the redis table is set up");
    let noop = lua.create_function(|_, ()| Ok(())).expect("a function");
    lua.set_named_registry_value("noop", noop)
        .expect("the registry takes it");
    watchdog::install(&lua);
    lua.set_memory_limit(memory_limit)
        .expect("the interpreter is made with mlua's allocator, which can limit memory");
    lua
}

/// `redis.error_reply(s)`'s error, as Redis makes it: a leading `-` dropped, the first word
/// the error code when a space follows it (else the code is `ERR`), line ends trimmed from
/// the message. So `""` gives `"ERR "` and `"MY_CODE text"` stays as it is.
fn error_reply_text(s: &[u8]) -> Vec<u8> {
    let s = s.strip_prefix(b"-").unwrap_or(s);
    let (code, msg) = match s.iter().position(|&c| c == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (&b"ERR"[..], s),
    };
    let crlf = |c: &u8| *c != b'\r' && *c != b'\n';
    let start = msg.iter().position(crlf).unwrap_or(msg.len());
    let end = msg.iter().rposition(crlf).map_or(start, |i| i + 1);
    [code, b" ", &msg[start..end]].concat()
}

/// The real `redis` table (scripts see it through a read-only view).
fn redis_table(lua: &Lua) -> mlua::Result<mlua::Table> {
    lua.named_registry_value("redis")
}

/// SHA1 of `body`, in lower-case hex (script ids, `redis.sha1hex`).
pub fn sha1_hex(body: &[u8]) -> String {
    let digest = Sha1::digest(body);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `EVAL`/`EVALSHA` (and `_RO`): `args[0]` is the command name.
#[allow(clippy::too_many_arguments)]
fn eval(
    node: &Node,
    args: &[Bytes],
    numkeys: usize,
    by_sha: bool,
    read_only: bool,
    caller: Option<&Caller>,
    out: &mut Out,
) -> Option<Pending> {
    let scripts = &node.scripts;
    let (sha, body) = if by_sha {
        let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match lock(&scripts.cache).get(&sha) {
            Some(body) => (sha, body.clone()),
            None => return error(out, "NOSCRIPT No matching script. Please use EVAL."),
        }
    } else {
        let sha = sha1_hex(&args[1]);
        lock(&scripts.cache).insert(sha.clone(), args[1].clone());
        (sha, args[1].clone())
    };
    let flags = match shebang_flags(&body) {
        Ok(f) => f,
        Err(e) => return error(out, &e),
    };
    if flags.contains(&"no-cluster") {
        return error(out, "ERR Can not run script on cluster, 'no-cluster' flag is set.");
    }
    execute(
        node,
        Callable::Script { sha: &sha, body: &body },
        &args[3..],
        numkeys,
        read_only || flags.contains(&"no-writes"),
        caller,
        out,
    )
}

/// The flags of a script's `#!lua flags=...` first line (none without one), checked as
/// Redis checks them.
fn shebang_flags(body: &[u8]) -> Result<Vec<&'static str>, String> {
    const KNOWN: [&str; 5] = [
        "no-writes",
        "allow-oom",
        "allow-stale",
        "no-cluster",
        "allow-cross-slot-keys",
    ];
    let Some(rest) = body.strip_prefix(b"#!") else {
        return Ok(vec![]);
    };
    let line = &rest[..rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len())];
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let engine = words.next().unwrap_or_default();
    if engine != "lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = Vec::new();
    for w in words {
        let Some(list) = w.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {w}"));
        };
        for f in list.split(',').filter(|f| !f.is_empty()) {
            match KNOWN.iter().find(|k| **k == f) {
                Some(k) => flags.push(*k),
                None => return Err(format!("ERR Unexpected flag in script shebang: {f}")),
            }
        }
    }
    Ok(flags)
}

/// Who runs a script, when their user is restricted: each `redis.call` is checked against
/// the user's rules, as the command itself would be (refusals logged in `ACL LOG`, context
/// `lua`). `None` for users allowed everything, and for peers (gates check their clients).
pub struct Caller {
    pub user: std::sync::Arc<kv_acl::User>,
    pub client: String,
}

/// What runs: a script's body, or a loaded function by name.
#[derive(Clone, Copy)]
enum Callable<'a> {
    Script { sha: &'a str, body: &'a Bytes },
    Function { name: &'a str },
}

/// Runs `what` with `rest` (`numkeys` keys, then the arguments) atomically on the leader,
/// its writes logged between transaction marks.
fn execute(
    node: &Node,
    what: Callable<'_>,
    rest: &[Bytes],
    numkeys: usize,
    read_only: bool,
    caller: Option<&Caller>,
    out: &mut Out,
) -> Option<Pending> {
    let scripts = &node.scripts;
    let keys = &rest[..numkeys];
    let argv = &rest[numkeys..];
    let _exclusive = node.exclusive();
    node.begin_exec();
    if !read_only {
        let _ = node.write_internal(|w| w.mark_transaction(true));
    }
    scripts.kill.store(false, Ordering::Relaxed);
    scripts.wrote.store(false, Ordering::Relaxed);
    scripts.running.store(true, Ordering::Relaxed);
    let pending = std::cell::Cell::new(None);
    let limit = node
        .settings
        .number("busy-reply-threshold")
        .map_or(Duration::from_secs(5), |ms| Duration::from_millis(ms.max(1) as u64));
    let result = {
        let lua = lock(&scripts.lua);
        let cluster_client = out.cluster_client;
        let context = Context {
            node,
            read_only,
            cluster_client,
            caller,
            limit,
        };
        run(&lua, &context, what, keys, argv, &pending)
    };
    let mut pending = pending.get();
    scripts.running.store(false, Ordering::Relaxed);
    match result {
        Ok(reply) => out.frame(&reply),
        Err(e) => kv_proto::write::error(out, e.as_bytes()),
    }
    if !read_only && let Ok((_, p)) = node.write_internal(|w| w.mark_transaction(false)) {
        pending = Pending::max(pending, p);
    }
    Pending::max(pending, node.end_exec())
}

fn error(out: &mut Out, text: &str) -> Option<Pending> {
    kv_proto::write::error(out, text.as_bytes());
    None
}

/// What a script runs under.
struct Context<'a> {
    node: &'a Node,
    read_only: bool,
    cluster_client: bool,
    caller: Option<&'a Caller>,
    /// `busy-reply-threshold`: past it the script is stopped.
    limit: Duration,
}

/// Runs the script; its reply as a frame, or the error text.
fn run(
    lua: &Lua,
    cx: &Context<'_>,
    what: Callable<'_>,
    keys: &[Bytes],
    argv: &[Bytes],
    pending: &std::cell::Cell<Option<Pending>>,
) -> Result<Frame, String> {
    let (node, cluster_client, limit) = (cx.node, cx.cluster_client, cx.limit);
    let id = match what {
        Callable::Script { sha, .. } => sha.to_string(),
        Callable::Function { name } => name.to_string(),
    };
    let sha = id.as_str();
    let lua_err = |e: mlua::Error| script_error(&e, sha);
    let strings = |items: &[Bytes]| -> mlua::Result<mlua::Table> {
        let t = lua.create_table()?;
        for (i, a) in items.iter().enumerate() {
            t.set(i + 1, lua.create_string(&a[..])?)?;
        }
        Ok(t)
    };
    let keys_table = strings(keys).map_err(lua_err)?;
    let argv_table = strings(argv).map_err(lua_err)?;
    let (compiled, with_args): (mlua::Function, bool) = match what {
        Callable::Function { name } => (
            lua.named_registry_value::<mlua::Function>(&format!("fn_{name}"))
                .map_err(|_| "ERR Function not found".to_string())?,
            true,
        ),
        Callable::Script { sha, body } => {
            lua.globals().set("KEYS", keys_table.clone()).map_err(lua_err)?;
            lua.globals().set("ARGV", argv_table.clone()).map_err(lua_err)?;
            (compiled_script(lua, sha, body)?, false)
        }
    };
    let _watch = watchdog::watch(
        Instant::now() + limit,
        format!(
            "ERR Script killed: it ran past busy-reply-threshold ({} ms)",
            limit.as_millis()
        ),
        Some((
            node.scripts.kill.clone(),
            "ERR Script killed by user with SCRIPT KILL...",
        )),
    );
    refill_error_slots(lua);
    let resp = std::cell::Cell::new(2u8);
    let reroute = !cluster_client && keys.is_empty();
    let call = |lua: &Lua, args: MultiValue, protected: bool| -> mlua::Result<Value> {
        // A script stopped inside a `pcall` runs no more commands.
        if let Some(stop) = watchdog::stopped() {
            return Err(mlua::Error::RuntimeError(stop));
        }
        let reply = call_command(cx, reroute, args, resp.get(), pending);
        match reply {
            // Not for the script to handle: the whole script runs elsewhere.
            Err(e) if e.starts_with(REROUTE) => Err(mlua::Error::RuntimeError(e)),
            Ok(Frame::Error(e)) if !protected => {
                Err(mlua::Error::RuntimeError(String::from_utf8_lossy(&e).into_owned()))
            }
            Ok(f) => to_lua(lua, f),
            Err(e) if !protected => Err(mlua::Error::RuntimeError(e)),
            Err(e) => to_lua(lua, Frame::error(e)),
        }
    };
    let call = &call;
    let resp = &resp;
    let result = lua.scope(|scope| {
        let redis = redis_table(lua)?;
        redis.set(
            "call",
            scope.create_function(move |lua, args: MultiValue| call(lua, args, false))?,
        )?;
        redis.set(
            "pcall",
            scope.create_function(move |lua, args: MultiValue| call(lua, args, true))?,
        )?;
        redis.set(
            "acl_check_cmd",
            scope.create_function(move |_, args: MultiValue| acl_check_cmd(cx.caller, args))?,
        )?;
        redis.set(
            "setresp",
            scope.create_function(move |_, v: i64| match v {
                2 | 3 => {
                    resp.set(v as u8);
                    Ok(())
                }
                _ => Err(mlua::Error::RuntimeError("RESP version must be 2 or 3.".into())),
            })?,
        )?;
        if with_args {
            compiled.call::<Value>((keys_table, argv_table))
        } else {
            compiled.call::<Value>(())
        }
    });
    release_garbage(lua, node.scripts.memory_limit);
    // A stopped script ends with the stop's own text (a coroutine may have prefixed it).
    if let Some(stop) = watchdog::stopped() {
        return Err(stop);
    }
    let value = result.map_err(|e| script_error(&e, sha))?;
    Ok(from_lua(&value, resp.get() == 3))
}

/// A script compiled once per interpreter, kept in the registry by SHA.
fn compiled_script(lua: &Lua, sha: &str, body: &Bytes) -> Result<mlua::Function, String> {
    if let Ok(f) = lua.named_registry_value::<mlua::Function>(&format!("f_{sha}")) {
        return Ok(f);
    }
    let env = sandbox::environment(lua).map_err(|e| script_error(&e, sha))?;
    // A shebang line is not Lua: left out, its line kept (so line numbers stay right).
    let code = match body.strip_prefix(b"#!") {
        Some(rest) => &rest[rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len())..],
        None => &body[..],
    };
    let f = lua
        .load(code)
        .set_name("@user_script")
        .set_environment(env)
        .into_function()
        .map_err(|e| format!("ERR Error compiling script (new function): {}", compile_error(&e)))?;
    lua.set_named_registry_value(&format!("f_{sha}"), f.clone())
        .map_err(|e| script_error(&e, sha))?;
    Ok(f)
}

/// A script's command and arguments as bytes.
fn call_args(args: &MultiValue) -> Result<Vec<Bytes>, String> {
    let mut parts = Vec::with_capacity(args.len());
    for a in args.iter() {
        match a {
            Value::String(s) => parts.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => parts.push(Bytes::from(n.to_string())),
            Value::Number(n) => parts.push(Bytes::from(n.to_string())),
            _ => return Err("ERR Lua redis lib command arguments must be strings or integers".into()),
        }
    }
    Ok(parts)
}

/// `redis.acl_check_cmd(command, args…)`: whether the script's user may run it.
fn acl_check_cmd(caller: Option<&Caller>, args: MultiValue) -> mlua::Result<bool> {
    let parts = call_args(&args).map_err(mlua::Error::RuntimeError)?;
    let info = parts
        .first()
        .and_then(|name| kv_proto::commands::lookup(name))
        .filter(|info| info.arity_ok(parts.len()))
        .ok_or_else(|| mlua::Error::RuntimeError("ERR Invalid command passed to redis.acl_check_cmd()".into()))?;
    Ok(caller.is_none_or(|c| c.user.check(info, &parts).is_ok()))
}

/// One `redis.call`: the command run as any client's (inside the script's lock), its reply
/// parsed back from the bytes it wrote.
fn call_command(
    cx: &Context<'_>,
    reroute: bool,
    args: MultiValue,
    resp: u8,
    pending: &std::cell::Cell<Option<Pending>>,
) -> Result<Frame, String> {
    let (node, cluster_client, read_only) = (cx.node, cx.cluster_client, cx.read_only);
    let parts = call_args(&args)?;
    if parts.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    // Internal commands (`KV.*`) are not in the table: unknown to scripts.
    let Some(info) = kv_proto::commands::lookup(&parts[0]) else {
        return Err("ERR Unknown Redis command called from script".into());
    };
    if !info.arity_ok(parts.len()) {
        return Err("ERR Wrong number of args calling Redis command from script".into());
    }
    if not_in_scripts(info.name, &parts) {
        return Err("ERR This Redis command is not allowed from script".into());
    }
    if let Some(c) = cx.caller
        && let Err(denied) = c.user.check(info, &parts)
    {
        node.acl_log.denied_in_script(&c.user.name, &denied, &c.client);
        return Err(denied.error());
    }
    let keys: Vec<Bytes> = info.keys(&parts).cloned().collect();
    let first_key = keys.first().cloned();
    // A cluster client's keys are checked against the slots as its commands are (a gate's
    // are checked by the command itself, against the shard).
    if cluster_client
        && !keys.is_empty()
        && !matches!(
            node.cluster_client_route(&keys, !info.flags.contains(&"write"), false),
            crate::node::ClientRoute::Serve
        )
    {
        return Ok(Frame::error(
            "ERR Script attempted to access a non local key in a cluster node",
        ));
    }
    let wrote_before = node.scripts.wrote.load(Ordering::Relaxed);
    let req = Request::new(parts);
    let command = match Command::from_request_with(req, Some(info)) {
        Ok(c) => c,
        Err(e) => return Err(e.to_string()),
    };
    if matches!(command, Command::Quit | Command::Hello(_) | Command::ReadOnly(_)) {
        return Err("ERR This Redis command is not allowed from script".into());
    }
    // The command table's flags say what writes (PING, RANDOMKEY, DBSIZE do not).
    if info.flags.contains(&"write") {
        if read_only {
            return Err("ERR Write commands are not allowed from read-only scripts.".into());
        }
        node.scripts.wrote.store(true, Ordering::Relaxed);
    }
    let mut out = Out::with_capacity(64);
    out.proto = if resp == 3 { Protocol::Resp3 } else { Protocol::Resp2 };
    IN_SCRIPT.set(true);
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_SCRIPT.set(false);
        }
    }
    let _leave = Leave;
    // A key served elsewhere is the redirection this client understands.
    out.cluster_client = cluster_client;
    if node.notifying() {
        crate::node::events::set_command(Some(info.name));
    }
    let p = match command {
        // Inside a script a blocking pop does not wait (Redis's rule).
        Command::Block(b) => b.try_now(node, &mut out),
        c => c.apply(node, &mut out),
    };
    pending.set(Pending::max(pending.get(), p));
    let mut buf = BytesMut::from(&out[..]);
    match kv_proto::parse_reply(&mut buf, &kv_proto::Limits::REDIS) {
        // A key this shard does not serve: Redis Cluster's error, not a redirection (the
        // script runs here; the client must not be sent elsewhere to re-run it).
        Ok(Some(Frame::Error(e))) if e.starts_with(b"MOVED ") || e.starts_with(b"ASK ") => match first_key {
            // Nothing written yet, no key declared, and a gate asking: it may run the
            // script again where this key lives (see `REROUTE`).
            Some(key)
                if reroute && !wrote_before && std::str::from_utf8(&key).is_ok_and(|k| !k.contains(['\r', '\n'])) =>
            {
                Err(format!("{REROUTE}{}", String::from_utf8_lossy(&key)))
            }
            _ => Ok(Frame::error(
                "ERR Script attempted to access a non local key in a cluster node",
            )),
        },
        Ok(Some(frame)) => Ok(frame),
        _ => Err("ERR the command's reply could not be read".into()),
    }
}

/// A script without declared keys, sent by a gate, that touched a key another shard serves
/// before writing anything ends with this error and the key, and the gate runs it again on
/// that key's shard: a client of one Redis may not declare its keys. Redis Cluster's
/// clients must, and get Redis Cluster's error.
use kv_peer::command::SCRIPT_REROUTE as REROUTE;

thread_local! {
    /// A command runs inside a script (this thread is running one).
    static IN_SCRIPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while a script's command runs on this thread: `SORT BY <constant>` then sorts a
/// set's members, as Redis does so that a script's reply is the same on every server.
pub fn in_script() -> bool {
    IN_SCRIPT.get()
}

/// Commands Redis flags `noscript`: blocking ones, transactions, pub/sub, scripts and
/// connection state.
fn not_in_scripts(name: &str, args: &[Bytes]) -> bool {
    matches!(
        name,
        "blpop"
            | "brpop"
            | "brpoplpush"
            | "blmove"
            | "blmpop"
            | "bzpopmin"
            | "bzpopmax"
            | "bzmpop"
            | "multi"
            | "exec"
            | "discard"
            | "watch"
            | "unwatch"
            | "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "eval"
            | "evalsha"
            | "eval_ro"
            | "evalsha_ro"
            | "fcall"
            | "fcall_ro"
            | "script"
            | "function"
            | "quit"
            | "hello"
            | "readonly"
            | "readwrite"
            | "asking"
    ) || (name == "cluster" && args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"RESET")))
}

/// A reply as Redis hands it to Lua (RESP2 rules, RESP3 types as `setresp(3)` shows them).
fn to_lua(lua: &Lua, f: Frame) -> mlua::Result<Value> {
    let table_of = |items: Vec<Frame>| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        for (i, item) in items.into_iter().enumerate() {
            t.set(i + 1, to_lua(lua, item)?)?;
        }
        Ok(Value::Table(t))
    };
    let field = |name: &str, v: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.set(name, v)?;
        Ok(Value::Table(t))
    };
    Ok(match f {
        Frame::Integer(n) => Value::Integer(n),
        Frame::Bulk(b) | Frame::BigNumber(b) => Value::String(lua.create_string(&b[..])?),
        Frame::Verbatim { text, .. } => Value::String(lua.create_string(&text[..])?),
        Frame::Simple(s) => field("ok", Value::String(lua.create_string(&s[..])?))?,
        Frame::Error(e) => field("err", Value::String(lua.create_string(&e[..])?))?,
        Frame::Null | Frame::NullArray => Value::Boolean(false),
        Frame::Array(items) | Frame::Push(items) => table_of(items)?,
        Frame::Set(items) => {
            let t = lua.create_table()?;
            for item in items {
                t.set(to_lua(lua, item)?, true)?;
            }
            field("set", Value::Table(t))?
        }
        Frame::Map(pairs) => {
            let t = lua.create_table()?;
            for (k, v) in pairs {
                t.set(to_lua(lua, k)?, to_lua(lua, v)?)?;
            }
            field("map", Value::Table(t))?
        }
        Frame::Double(d) => field("double", Value::Number(d))?,
        Frame::Boolean(b) => Value::Boolean(b),
        Frame::Relayed(_) => Value::Nil,
    })
}

/// A script's return value as Redis replies it: numbers truncated to integers, `{ok=…}` a
/// status, `{err=…}` an error, an array up to its first nil, `true` 1, `false`/nil null.
/// `resp3`: the script chose RESP3 (`redis.setresp(3)`), so booleans stay booleans.
fn from_lua(v: &Value, resp3: bool) -> Frame {
    from_lua_at(v, resp3, 0)
}

/// Nesting a reply may have (a gate reads replies nested up to 16 deep): a table that
/// contains itself ends here, with Redis's error.
const MAX_REPLY_DEPTH: usize = 16;

fn from_lua_at(v: &Value, resp3: bool, depth: usize) -> Frame {
    if depth >= MAX_REPLY_DEPTH {
        return Frame::error("ERR reached lua stack limit");
    }
    match v {
        Value::Boolean(b) if resp3 => Frame::Boolean(*b),
        Value::Integer(n) => Frame::Integer(*n),
        Value::Number(n) => Frame::Integer(*n as i64),
        Value::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Table(t) => {
            if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
                return Frame::Error(Bytes::copy_from_slice(&e.as_bytes()));
            }
            if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
                return Frame::Simple(Bytes::copy_from_slice(&s.as_bytes()));
            }
            if let Ok(Value::Number(d)) = t.raw_get::<Value>("double") {
                return Frame::Double(d);
            }
            if let Ok(Value::String(n)) = t.raw_get::<Value>("big_number") {
                return Frame::BigNumber(Bytes::copy_from_slice(&n.as_bytes()));
            }
            if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
                let pairs = m
                    .pairs::<Value, Value>()
                    .filter_map(Result::ok)
                    .map(|(k, v)| (from_lua_at(&k, resp3, depth + 1), from_lua_at(&v, resp3, depth + 1)))
                    .collect();
                return Frame::Map(pairs);
            }
            if let Ok(Value::Table(m)) = t.raw_get::<Value>("set") {
                let members = m
                    .pairs::<Value, Value>()
                    .filter_map(Result::ok)
                    .map(|(k, _)| from_lua_at(&k, resp3, depth + 1))
                    .collect();
                return Frame::Set(members);
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(v) => items.push(from_lua_at(&v, resp3, depth + 1)),
                }
            }
            Frame::Array(items)
        }
        _ => Frame::Null,
    }
}

/// Gives `mlua` a spare error slot before a script runs. Each call of a Rust function takes
/// one from a pool, made ahead of time so that an error can be raised without allocating;
/// an error uses its slot up, and an empty pool makes a new slot on the caller's stack. A
/// `redis.call` with close to Lua's 8,000 arguments has no room there ("stack overflow (not
/// enough stack slots available)"), so after a failed call such a script failed. A call of
/// a Rust function from here, where the stack is empty, refills the pool.
fn refill_error_slots(lua: &Lua) {
    if let Ok(noop) = lua.named_registry_value::<mlua::Function>("noop") {
        let _ = noop.call::<()>(());
    }
}

/// Collects the garbage a script left when it fills half the memory limit or more: Lua 5.1
/// does not collect before failing an allocation, so the next script would fail on what
/// the last one left. The limit is lifted meanwhile: a collection allocates too (it resizes
/// the string table), and one that fails at the limit frees nothing.
fn release_garbage(lua: &Lua, limit: usize) {
    if limit > 0 && lua.used_memory() >= limit / 2 {
        let _ = lua.set_memory_limit(0);
        let _ = lua.gc_collect();
        let _ = lua.set_memory_limit(limit);
    }
}

/// A script's allocation past `--script-memory`.
const OUT_OF_MEMORY: &str = "ERR not enough memory: scripts hold --script-memory bytes at most";

/// A runtime error as Redis 7 words it: the message, then which script.
fn script_error(e: &mlua::Error, sha: &str) -> String {
    let line = error_line(e);
    if line.starts_with("ERR Script killed") || line.starts_with("NOSCRIPT") || line.starts_with(REROUTE) {
        return line;
    }
    format!("{line} script: {sha}, on @user_script:1.")
}

/// The first line of a Lua error, with its error code: a command's own error raised by
/// `redis.call` keeps its code, anything else gets `ERR`.
fn error_line(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return error_line(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::MemoryError(_) => return OUT_OF_MEMORY.to_string(),
        other => other.to_string(),
    };
    let first = text.lines().next().unwrap_or_default().to_string();
    let coded = first
        .split(' ')
        .next()
        .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase()));
    if coded { first } else { format!("ERR {first}") }
}

/// A compile error's first line, without `mlua`'s "syntax error: " (Redis gives Lua's own).
fn compile_error(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_string()
}

/// Serves `EVAL`, `EVALSHA`, their `_RO` forms and `SCRIPT`; `None` for other commands.
/// `as_user` describes the user a gate's client runs the script as (`KV.AS`); otherwise a
/// client's own user applies.
pub fn intercept(conn: &mut Connection, node: &Node, req: &Request, as_user: Option<&[u8]>) -> Option<Option<Pending>> {
    let name = req.name();
    // Upper-cased on the stack: this runs for every command.
    let (buf, len) = super::args::upper(name)?;
    let upper = &buf[..len];
    let args = req.args();
    // (function call, by SHA, read-only)
    let (call, by_sha, read_only) = match upper {
        b"EVAL" => (false, false, false),
        b"EVALSHA" => (false, true, false),
        b"EVAL_RO" => (false, false, true),
        b"EVALSHA_RO" => (false, true, true),
        b"FCALL" => (true, false, false),
        b"FCALL_RO" => (true, false, true),
        b"SCRIPT" if args.len() >= 2 => return Some(script(node, args, &mut conn.output)),
        b"FUNCTION" if args.len() >= 2 => return Some(function(node, args, &mut conn.output)),
        b"SCRIPT" | b"FUNCTION" => return Some(arity(&mut conn.output, name)),
        _ => return None,
    };
    if args.len() < 3 {
        return Some(arity(&mut conn.output, name));
    }
    if conn.output.cluster_client && super::cross_slot(req) {
        return Some(error(
            &mut conn.output,
            "CROSSSLOT Keys in request don't hash to the same slot",
        ));
    }
    let numkeys = match std::str::from_utf8(&args[2]).ok().and_then(|n| n.parse::<i64>().ok()) {
        Some(n) if n < 0 => return Some(error(&mut conn.output, "ERR Number of keys can't be negative")),
        Some(n) if n as usize > args.len() - 3 => {
            return Some(error(
                &mut conn.output,
                "ERR Number of keys can't be greater than number of args",
            ));
        }
        Some(n) => n as usize,
        None => return Some(error(&mut conn.output, "ERR value is not an integer or out of range")),
    };
    let client = || conn.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let caller = match as_user {
        Some(description) => match kv_acl::User::from_description(&String::from_utf8_lossy(description)) {
            Ok(user) => Some(Caller {
                user: std::sync::Arc::new(user),
                client: format!("{} (via a gate)", client()),
            }),
            Err(e) => return Some(error(&mut conn.output, &format!("ERR KV.AS: {e}"))),
        },
        None => conn.user.as_ref().map(|s| Caller {
            user: s.user.clone(),
            client: client(),
        }),
    }
    .filter(|c| !c.user.unrestricted());
    let caller = caller.as_ref();
    Some(match call {
        true => fcall(node, args, numkeys, read_only, caller, &mut conn.output),
        false => eval(node, args, numkeys, by_sha, read_only, caller, &mut conn.output),
    })
}

fn arity(out: &mut Out, name: &[u8]) -> Option<Pending> {
    let text = format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    );
    error(out, &text)
}

/// `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP`.
pub fn script(node: &Node, args: &[Bytes], out: &mut Out) -> Option<Pending> {
    let scripts = &node.scripts;
    let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let reply = match (&sub[..], args.len()) {
        (b"LOAD", 3) => {
            // Compiled in the server's interpreter, where EVALSHA will find it compiled.
            let sha = sha1_hex(&args[2]);
            let compiled = compiled_script(&lock(&scripts.lua), &sha, &args[2]);
            if let Err(e) = compiled {
                Frame::error(e)
            } else {
                lock(&scripts.cache).insert(sha.clone(), args[2].clone());
                Frame::bulk(sha)
            }
        }
        (b"EXISTS", n) if n >= 3 => {
            let cache = lock(&scripts.cache);
            Frame::Array(
                args[2..]
                    .iter()
                    .map(
                        |s| Frame::Integer(cache.contains_key(&String::from_utf8_lossy(s).to_ascii_lowercase()) as i64),
                    )
                    .collect(),
            )
        }
        (b"FLUSH", 2 | 3) => {
            let mut cache = lock(&scripts.cache);
            let lua = lock(&scripts.lua);
            for sha in cache.keys() {
                let _ = lua.unset_named_registry_value(&format!("f_{sha}"));
            }
            cache.clear();
            Frame::simple("OK")
        }
        (b"KILL", 2) => {
            if !scripts.running.load(Ordering::Relaxed) {
                Frame::error("NOTBUSY No scripts in execution right now.")
            } else if scripts.wrote.load(Ordering::Relaxed) {
                Frame::error(
                    "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
                )
            } else {
                scripts.kill.store(true, Ordering::Relaxed);
                Frame::simple("OK")
            }
        }
        (b"HELP", 2) => Frame::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "FLUSH [ASYNC|SYNC]",
                "KILL",
                "LOAD <script>",
                "HELP",
            ]
            .iter()
            .map(|l| Frame::simple(l))
            .collect(),
        ),
        _ => Frame::unknown_subcommand("SCRIPT", args.get(1).map_or(&b""[..], |a| &a[..])),
    };
    out.frame(&reply);
    None
}

/// `FCALL`/`FCALL_RO name numkeys key ... arg ...`.
fn fcall(
    node: &Node,
    args: &[Bytes],
    numkeys: usize,
    read_only: bool,
    caller: Option<&Caller>,
    out: &mut Out,
) -> Option<Pending> {
    let name = String::from_utf8_lossy(&args[1]).into_owned();
    let no_writes = match lock(&node.scripts.functions).by_name.get(&name) {
        Some((_, no_writes)) => *no_writes,
        None => return error(out, "ERR Function not found"),
    };
    if read_only && !no_writes {
        return error(out, "ERR Can not execute a script with write flag using *_ro command.");
    }
    execute(
        node,
        Callable::Function { name: &name },
        &args[3..],
        numkeys,
        read_only || no_writes,
        caller,
        out,
    )
}

/// `FUNCTION LOAD [REPLACE] code | LIST [WITHCODE] [LIBRARYNAME pattern] | DELETE lib | FLUSH`.
fn function(node: &Node, args: &[Bytes], out: &mut Out) -> Option<Pending> {
    let sub = args[1].to_ascii_uppercase();
    let reply = match &sub[..] {
        b"LOAD" => match &args[2..] {
            [code] => load_library(node, code, false),
            [r, code] if r.eq_ignore_ascii_case(b"REPLACE") => load_library(node, code, true),
            _ => Err("ERR unknown subcommand or wrong number of arguments for 'load'. Try FUNCTION HELP.".into()),
        }
        .map_or_else(Frame::error, Frame::bulk),
        b"DELETE" if args.len() == 3 => {
            let lib = String::from_utf8_lossy(&args[2]).into_owned();
            let mut f = lock(&node.scripts.functions);
            match f.libraries.remove(&lib) {
                Some(l) => {
                    let lua = lock(&node.scripts.lua);
                    for (name, _) in l.functions {
                        f.by_name.remove(&name);
                        let _ = lua.unset_named_registry_value(&format!("fn_{name}"));
                    }
                    Frame::simple("OK")
                }
                None => Frame::error("ERR Library not found"),
            }
        }
        b"FLUSH" if args.len() <= 3 => {
            let mut f = lock(&node.scripts.functions);
            let lua = lock(&node.scripts.lua);
            for name in f.by_name.keys() {
                let _ = lua.unset_named_registry_value(&format!("fn_{name}"));
            }
            *f = Functions::default();
            Frame::simple("OK")
        }
        b"LIST" => {
            let with_code = args[2..].iter().any(|a| a.eq_ignore_ascii_case(b"WITHCODE"));
            let pattern = args[2..]
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case(b"LIBRARYNAME"))
                .map(|w| w[1].clone());
            let f = lock(&node.scripts.functions);
            Frame::Array(
                f.libraries
                    .iter()
                    .filter(|(name, _)| {
                        pattern
                            .as_ref()
                            .is_none_or(|p| kv_proto::glob::matches(p, name.as_bytes()))
                    })
                    .map(|(name, lib)| {
                        let functions = lib
                            .functions
                            .iter()
                            .map(|(f, no_writes)| {
                                let flags = if *no_writes {
                                    vec![Frame::bulk("no-writes")]
                                } else {
                                    vec![]
                                };
                                Frame::Map(vec![
                                    (Frame::bulk("name"), Frame::bulk(f.clone())),
                                    (Frame::bulk("description"), Frame::Null),
                                    (Frame::bulk("flags"), Frame::Set(flags)),
                                ])
                            })
                            .collect();
                        let mut pairs = vec![
                            (Frame::bulk("library_name"), Frame::bulk(name.clone())),
                            (Frame::bulk("engine"), Frame::bulk("LUA")),
                            (Frame::bulk("functions"), Frame::Array(functions)),
                        ];
                        if with_code {
                            pairs.push((Frame::bulk("library_code"), Frame::Bulk(lib.code.clone())));
                        }
                        Frame::Map(pairs)
                    })
                    .collect(),
            )
        }
        _ => Frame::unknown_subcommand("FUNCTION", &args[1]),
    };
    out.frame(&reply);
    None
}

/// The library name of `#!lua name=<name>` (the first line of a library's code).
pub fn library_name(code: &[u8]) -> Result<String, String> {
    let first = code.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(header) = first.strip_prefix(b"#!") else {
        return Err("ERR Missing library metadata".into());
    };
    let header = String::from_utf8_lossy(header);
    let mut words = header.split_whitespace();
    let engine = words.next().unwrap_or_default();
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    for w in words {
        match w.split_once('=') {
            Some(("name", name)) if !name.is_empty() => return Ok(name.to_string()),
            Some(("name", _)) => {}
            _ => return Err(format!("ERR Invalid metadata value given: {w}")),
        }
    }
    Err("ERR Library name was not given".into())
}

/// How long a library's code may run when loaded (Redis's `LOAD_TIMEOUT_MS`).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs a library's code with `redis.register_function`, then records its functions.
fn load_library(node: &Node, code: &Bytes, replace: bool) -> Result<String, String> {
    let name = library_name(code)?;
    let mut f = lock(&node.scripts.functions);
    if f.libraries.contains_key(&name) && !replace {
        return Err(format!("ERR Library '{name}' already exists"));
    }
    let lua = lock(&node.scripts.lua);
    // The shebang line is not Lua: blanked, so that line numbers stay right.
    let body_start = code.iter().position(|b| *b == b'\n').map_or(code.len(), |i| i);
    let body = &code[body_start..];
    let registered: std::cell::RefCell<Vec<(String, mlua::Function, bool)>> = Default::default();
    let result = lua.scope(|scope| {
        let redis = redis_table(&lua)?;
        let register = scope.create_function(|_, args: MultiValue| {
            // Redis's texts.
            let fail = |text: &str| Err(mlua::Error::RuntimeError(format!("ERR {text}")));
            let (fname, callback, no_writes) = match (args.len(), args.iter().next()) {
                (1, Some(Value::Table(t))) => {
                    let fname: Option<String> = t.get("function_name")?;
                    let callback: Option<mlua::Function> = t.get("callback")?;
                    let (Some(fname), Some(callback)) = (fname, callback) else {
                        if !t.contains_key("function_name")? {
                            return fail("redis.register_function must get a function name argument");
                        }
                        return fail("redis.register_function must get a callback argument");
                    };
                    let flags: Option<mlua::Table> = t.get("flags")?;
                    let no_writes = flags.is_some_and(|fl| {
                        fl.sequence_values::<String>()
                            .any(|v| v.is_ok_and(|v| v == "no-writes"))
                    });
                    (fname, callback, no_writes)
                }
                (2, Some(n @ (Value::String(_) | Value::Integer(_) | Value::Number(_)))) => {
                    let Some(Value::Function(cb)) = args.iter().nth(1) else {
                        return fail("second argument to redis.register_function must be a function");
                    };
                    (n.to_string()?, cb.clone(), false)
                }
                _ => return fail("wrong number of arguments to redis.register_function"),
            };
            registered.borrow_mut().push((fname, callback, no_writes));
            Ok(())
        })?;
        redis.set("register_function", register)?;
        // Redis gives a library's code 500 ms to register its functions.
        let chunk = lua
            .load(body)
            .set_name("@user_function")
            .set_environment(sandbox::environment(&lua)?)
            .into_function();
        let ran = match chunk {
            Err(e) => Err(format!("ERR Error compiling function: {}", compile_error(&e))),
            Ok(chunk) => {
                let _watch = watchdog::watch(Instant::now() + LOAD_TIMEOUT, "ERR FUNCTION LOAD timeout".into(), None);
                let ran = chunk.call::<()>(());
                // A stop's own text, not the one a coroutine may have prefixed.
                let ran = ran.map_err(|e| watchdog::stopped().unwrap_or_else(|| error_line(&e)));
                ran.map_err(|e| format!("ERR Error registering functions: {e}"))
            }
        };
        redis.set("register_function", Value::Nil)?;
        Ok(ran)
    });
    result.unwrap_or_else(|e| Err(format!("ERR Error registering functions: {}", error_line(&e))))?;
    let registered = registered.into_inner();
    if registered.is_empty() {
        return Err("ERR No functions registered".into());
    }
    for (fname, _, _) in &registered {
        if let Some((lib, _)) = f.by_name.get(fname)
            && *lib != name
        {
            return Err(format!("ERR Function {fname} already exists"));
        }
    }
    if let Some(old) = f.libraries.remove(&name) {
        for (fname, _) in old.functions {
            f.by_name.remove(&fname);
            let _ = lua.unset_named_registry_value(&format!("fn_{fname}"));
        }
    }
    let mut functions = Vec::new();
    for (fname, callback, no_writes) in registered {
        lua.set_named_registry_value(&format!("fn_{fname}"), callback)
            .map_err(|e| e.to_string())?;
        f.by_name.insert(fname.clone(), (name.clone(), no_writes));
        functions.push((fname, no_writes));
    }
    f.libraries.insert(
        name.clone(),
        Library {
            code: code.clone(),
            functions,
        },
    );
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_past_the_memory_limit_fails_and_the_next_one_runs() {
        let limit = 8 << 20;
        let lua = new_lua(limit);
        let hog = "local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 100) .. i end";
        let e = lua.load(hog).exec().unwrap_err();
        assert_eq!(error_line(&e), OUT_OF_MEMORY);
        release_garbage(&lua, limit);
        assert!(lua.used_memory() < limit / 2, "{}", lua.used_memory());
        let fits = "local t = {} for i = 1, 1000 do t[i] = string.rep('x', 1000) .. i end return #t";
        assert_eq!(lua.load(fits).eval::<i64>().unwrap(), 1000);
    }

    #[test]
    fn a_call_with_lua_s_most_arguments_works_after_a_failed_call() {
        let lua = new_lua(0);
        let count = lua.create_function(|_, a: MultiValue| Ok(a.len())).unwrap();
        let fail = lua
            .create_function(|_, ()| Err::<(), _>(mlua::Error::RuntimeError("no".into())))
            .unwrap();
        lua.globals().raw_set("count", count).unwrap();
        lua.globals().raw_set("fail", fail).unwrap();
        let script = "local a = {} for i = 1, 7999 do a[i] = 1 end return count('lpush', 'l', unpack(a))";
        assert!(lua.load("pcall(fail)").exec().is_ok());
        assert!(
            lua.load(script).eval::<usize>().is_err(),
            "the failure this guards against"
        );
        assert!(lua.load("pcall(fail)").exec().is_ok());
        refill_error_slots(&lua);
        assert_eq!(lua.load(script).eval::<usize>().unwrap(), 8001);
    }

    #[test]
    fn error_reply_texts_are_redis_s() {
        let t = |s: &str| String::from_utf8(error_reply_text(s.as_bytes())).unwrap();
        assert_eq!(t(""), "ERR ");
        assert_eq!(t("-"), "ERR ");
        assert_eq!(t("-X"), "ERR X");
        assert_eq!(t("hello"), "ERR hello");
        assert_eq!(t("MY_ERR_CODE custom msg"), "MY_ERR_CODE custom msg");
        assert_eq!(t("-WRONGTYPE bad\r\n"), "WRONGTYPE bad");
        assert_eq!(t("a\r\n"), "ERR a");
    }
}
