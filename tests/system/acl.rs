//! Users and ACLs, from redis-cli: `--requirepass`, `AUTH`, `HELLO … AUTH`, `ACL SETUSER`
//! rules enforced on commands, keys and channels at gates and at servers' client ports, one
//! user store for the cluster, `ACL LOG`, and an `--aclfile` read at start and written by
//! `ACL SAVE`.

use std::time::Duration;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually};

/// A server and an open gate (gate 0, ready), then gate 1 started with `gate_args`, which
/// seed the cluster's users; gate 1's RESP address.
async fn cluster_with_gate(gate_args: &[&str]) -> (TestCluster, String) {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let i = c.start_gate(gate_args).await;
    let resp = c.gates[i].resp.clone().expect("the gate announces its RESP address");
    (c, resp)
}

/// Runs `redis-cli` with `commands` on its stdin: one connection, one command per line.
fn redis_cli_session(addr: &str, flags: &[&str], commands: &str) -> String {
    use std::io::Write;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut child = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(flags)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[tokio::test]
async fn requirepass_and_user_rules_are_enforced() {
    let (mut c, gate) = cluster_with_gate(&["--requirepass", "s3cret"]).await;
    let admin = |args: &[&str]| {
        let mut all = vec!["--no-auth-warning", "-a", "s3cret"];
        all.extend_from_slice(args);
        cli(&gate, &all)
    };
    // Nothing but AUTH, HELLO … AUTH and QUIT before authenticating.
    assert_eq!(cli(&gate, &["GET", "k"]), "NOAUTH Authentication required.");
    assert!(cli(&gate, &["HELLO", "3"]).starts_with("NOAUTH HELLO must be called"));
    assert_eq!(
        cli(&gate, &["AUTH", "wrong"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(admin(&["SET", "pub:1", "v"]), "OK");
    assert_eq!(admin(&["ACL", "WHOAMI"]), "default");
    assert_eq!(
        cli(&gate, &["HELLO", "2", "AUTH", "default", "s3cret"]).lines().nth(1),
        Some("redis")
    );

    // A user that may read `pub:*` and publish on `news.*`.
    assert_eq!(
        admin(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">rpw",
            "~pub:*",
            "resetchannels",
            "&news.*",
            "+@read",
            "+publish"
        ]),
        "OK"
    );
    assert!(admin(&["ACL", "SETUSER", "reader", "+nosuch"]).starts_with("ERR Error in ACL SETUSER modifier '+nosuch'"));
    let reader = |args: &[&str]| {
        let mut all = vec!["--no-auth-warning", "--user", "reader", "--pass", "rpw"];
        all.extend_from_slice(args);
        cli(&gate, &all)
    };
    assert_eq!(reader(&["GET", "pub:1"]), "v");
    assert_eq!(
        reader(&["SET", "pub:1", "x"]),
        "NOPERM this user has no permissions to run the 'set' command"
    );
    assert_eq!(
        reader(&["GET", "private"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(reader(&["PUBLISH", "news.a", "hi"]), "0");
    assert_eq!(
        reader(&["PUBLISH", "other", "hi"]),
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    );
    assert_eq!(admin(&["GET", "pub:1"]), "v", "the refused SET changed nothing");
    // One user store for the cluster: the server (started before any user existed) and a
    // gate started later know the same users.
    let server = c.servers[0].addr.clone();
    eventually("the server requires AUTH", Duration::from_secs(10), || async {
        (cli(&server, &["GET", "pub:1"]) == "NOAUTH Authentication required.").then_some(())
    })
    .await;
    let on_server = |args: &[&str]| {
        let mut all = vec!["-c", "--no-auth-warning", "--user", "reader", "--pass", "rpw"];
        all.extend_from_slice(args);
        cli(&server, &all)
    };
    eventually("the server knows reader", Duration::from_secs(10), || async {
        (on_server(&["GET", "pub:1"]) == "v").then_some(())
    })
    .await;
    assert_eq!(
        on_server(&["SET", "pub:1", "x"]),
        "NOPERM this user has no permissions to run the 'set' command"
    );
    // A refused command inside MULTI discards the transaction, as in Redis.
    assert_eq!(admin(&["ACL", "SETUSER", "reader", "+multi", "+exec"]), "OK");
    // (redis-cli prints an empty line after an error read from stdin.)
    let want = "OK\nQUEUED\nNOPERM this user has no permissions to run the 'set' command\n\n\
                EXECABORT Transaction discarded because of previous errors.";
    for addr in [&gate, &server] {
        let session = || {
            redis_cli_session(
                addr,
                &["--no-auth-warning", "--user", "reader", "--pass", "rpw"],
                "MULTI\nGET pub:1\nSET pub:1 x\nEXEC\n",
            )
        };
        // The server learns the change from the cluster's store.
        let seen = eventually(
            &format!("{addr} to allow reader MULTI"),
            Duration::from_secs(10),
            || async { Some(session()).filter(|s| s.starts_with("OK")) },
        )
        .await;
        assert_eq!(seen, want, "at {addr}");
    }
    let j = c.start_gate(&[]).await;
    let gate2 = c.gates[j].resp.clone().expect("the gate announces its RESP address");
    assert_eq!(cli(&gate2, &["GET", "pub:1"]), "NOAUTH Authentication required.");
    let args = ["--no-auth-warning", "--user", "reader", "--pass", "rpw", "GET", "pub:1"];
    assert_eq!(cli(&gate2, &args), "v");
    // A user defined at a server reaches the gates.
    let at_server = [
        "-c",
        "--no-auth-warning",
        "-a",
        "s3cret",
        "ACL",
        "SETUSER",
        "w",
        "on",
        ">w",
        "+set",
        "~*",
    ];
    assert_eq!(cli(&server, &at_server), "OK");
    eventually("the gate knows w", Duration::from_secs(10), || async {
        (cli(
            &gate,
            &["--no-auth-warning", "--user", "w", "--pass", "w", "SET", "w1", "1"],
        ) == "OK")
            .then_some(())
    })
    .await;
    // Each refusal is in the ACL log, with its reason and object.
    let log = admin(&["ACL", "LOG"]);
    for want in ["command", "set", "key", "private", "channel", "other", "reader"] {
        assert!(log.lines().any(|l| l == want), "{want} in {log}");
    }
    // Rules apply to connections already authenticated: a session sees its user change.
    assert_eq!(admin(&["ACL", "SETUSER", "reader", "-get"]), "OK");
    assert_eq!(
        reader(&["GET", "pub:1"]),
        "NOPERM this user has no permissions to run the 'get' command"
    );
    assert_eq!(admin(&["ACL", "DELUSER", "reader"]), "1");
    // redis-cli's AUTH now fails (it says so on stderr) and the command is refused.
    assert_eq!(reader(&["GET", "pub:1"]), "NOAUTH Authentication required.");
    // HTTP: the same users, as Basic credentials; the same permissions, as 401 and 403.
    let http = c.gates[1].addr.clone();
    let curl = |user: Option<&str>, method: &str, path: &str| -> (String, String) {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        if let Some(u) = user {
            cmd.args(["-u", u]);
        }
        let out = cmd.arg(format!("http://{http}{path}")).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    assert_eq!(curl(None, "GET", "/api/cache/get?key=pub:1").0, "401");
    assert_eq!(curl(Some("default:wrong"), "GET", "/api/cache/get?key=pub:1").0, "401");
    assert_eq!(
        curl(Some("default:s3cret"), "GET", "/api/cache/get?key=pub:1"),
        ("200".into(), "v".into())
    );
    assert_eq!(
        curl(None, "GET", "/health").0,
        "200",
        "health checks need no credentials"
    );
    assert_eq!(admin(&["ACL", "SETUSER", "web", "on", ">web", "+get", "~pub:*"]), "OK");
    eventually("the HTTP side knows web", Duration::from_secs(10), || async {
        (curl(Some("web:web"), "GET", "/api/cache/get?key=pub:1").0 == "200").then_some(())
    })
    .await;
    let (code, body) = curl(Some("web:web"), "DELETE", "/api/cache/delete?key=pub:1");
    assert_eq!(code, "403");
    assert!(
        body.contains("NOPERM this user has no permissions to run the 'del' command"),
        "{body}"
    );
    assert_eq!(curl(Some("web:web"), "GET", "/api/cache/get?key=private").0, "403");
    assert_eq!(curl(Some("web:web"), "POST", "/api/shards/remove").0, "403");
    // Keys are exact bytes: %FF and %FE are two keys.
    {
        use std::io::{Read, Write};
        let resp = gate.clone();
        let mut raw = std::net::TcpStream::connect(&resp).unwrap();
        raw.write_all(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*3\r\n$3\r\nSET\r\n$2\r\nb\xff\r\n$2\r\nff\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 10 {
            let n = raw.read(&mut buf).unwrap();
            assert!(n > 0, "the gate answered {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"+OK\r\n+OK\r\n");
    }
    assert_eq!(
        curl(Some("default:s3cret"), "GET", "/api/cache/get?key=b%FF"),
        ("200".into(), "ff".into())
    );
    assert_eq!(curl(Some("default:s3cret"), "GET", "/api/cache/get?key=b%FE").0, "404");
    let users = admin(&["ACL", "LIST"]);
    assert!(users.starts_with("user default on sanitize-payload #"), "{users}");
    assert_eq!(users.lines().count(), 3, "default, w and web: {users}");
}

#[tokio::test]
async fn an_acl_file_defines_the_users_and_acl_save_writes_it() {
    let mut c = TestCluster::start().await;
    let file = c.dir.path().join("users.acl");
    std::fs::write(
        &file,
        "user default off\nuser alice on >alice ~* &* +@all\nuser bob on >bob ~set* -@all +@set\n",
    )
    .unwrap();
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let i = c.start_gate(&["--aclfile", file.to_str().unwrap()]).await;
    let gate = c.gates[i].resp.clone().expect("the gate announces its RESP address");
    // The default user is off: every new connection must authenticate.
    assert_eq!(cli(&gate, &["PING"]), "NOAUTH Authentication required.");
    let as_user = |user: &str, args: &[&str]| {
        let mut all = vec!["--no-auth-warning", "--user", user, "--pass", user];
        all.extend_from_slice(args);
        cli(&gate, &all)
    };
    assert_eq!(as_user("bob", &["SADD", "set1", "a"]), "1");
    assert_eq!(
        as_user("bob", &["SET", "set2", "a"]),
        "NOPERM this user has no permissions to run the 'set' command"
    );
    assert_eq!(
        as_user("alice", &["ACL", "SETUSER", "carol", "on", "nopass", "+ping"]),
        "OK"
    );
    assert_eq!(as_user("alice", &["ACL", "SAVE"]), "OK");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("user carol on nopass sanitize-payload resetchannels -@all +ping"),
        "{saved}"
    );
    assert!(
        saved.contains(&format!("#{}", kv_acl::user::sha256_hex(b"alice"))),
        "{saved}"
    );
    assert!(!saved.contains(">alice"), "passwords are stored hashed: {saved}");
    // LOAD reads it back (and refuses a broken file, keeping the users it has).
    std::fs::write(&file, "user bob bogus\n").unwrap();
    assert!(as_user("alice", &["ACL", "LOAD"]).starts_with("ERR"));
    assert_eq!(as_user("bob", &["SADD", "set1", "b"]), "1");
}

/// This machine's first non-loopback IPv4 address, if it has one.
fn outside_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let word = text.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(word.split('/').next()?.to_string())
}

/// Protected mode, as Redis 7 has it: while the default user needs no password, a client
/// that is not on the loopback interface is refused with `-DENIED` at a gate and at a server;
/// once the default user has a password, it is served (after `AUTH`).
#[tokio::test]
async fn protected_mode_refuses_remote_clients_while_the_default_user_is_open() {
    let ip = outside_address().expect("a non-loopback IPv4 address (ip -4 addr show scope global)");
    let mut c = TestCluster::start().await;
    c.start_server("s1", &["--bind", "0.0.0.0"]).await;
    let g = c.start_gate(&["--bind", "0.0.0.0"]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let port = |a: &str| a.rsplit_once(':').unwrap().1.to_string();
    let gate_port = port(c.gates[g].resp.as_deref().unwrap());
    let server_port = port(&c.servers[0].addr);
    for p in [&gate_port, &server_port] {
        let remote = format!("{ip}:{p}");
        assert!(
            cli(&remote, &["PING"]).starts_with("DENIED Redis is running in protected mode"),
            "{remote}"
        );
        assert_eq!(cli(&format!("127.0.0.1:{p}"), &["PING"]), "PONG");
    }
    let local_gate = format!("127.0.0.1:{gate_port}");
    assert_eq!(cli(&local_gate, &["ACL", "SETUSER", "default", "on", ">pw"]), "OK");
    for p in [&gate_port, &server_port] {
        let remote = format!("{ip}:{p}");
        eventually(
            &format!("{remote} to serve clients with the password"),
            Duration::from_secs(10),
            || async { (cli(&remote, &["--no-auth-warning", "-a", "pw", "PING"]) == "PONG").then_some(()) },
        )
        .await;
        assert_eq!(cli(&remote, &["PING"]), "NOAUTH Authentication required.");
    }
}

/// The commands a script calls are checked against the caller's rules, at a gate (which
/// names its client's user to the server) and at a server's client port; refusals are in
/// `ACL LOG` with context `lua`; `redis.acl_check_cmd` answers what the user may run.
#[tokio::test]
async fn scripts_run_under_their_callers_rules() {
    let (c, gate) = cluster_with_gate(&["--requirepass", "s3cret"]).await;
    let admin = |addr: &str, args: &[&str]| {
        let mut all = vec!["--no-auth-warning", "-a", "s3cret"];
        all.extend_from_slice(args);
        cli(addr, &all)
    };
    let rules = ["ACL", "SETUSER", "scripter", "on", ">sp", "~s:*", "+@scripting", "+get"];
    assert_eq!(admin(&gate, &rules), "OK");
    assert_eq!(admin(&gate, &["SET", "s:1", "v"]), "OK");
    let server = c.servers[0].addr.clone();
    let set = "return redis.call('set', KEYS[1], 'x')";
    let get = "return redis.call('get', KEYS[1])";
    for addr in [&gate, &server] {
        let as_scripter = |args: &[&str]| {
            let mut all = vec!["-c", "--no-auth-warning", "--user", "scripter", "--pass", "sp"];
            all.extend_from_slice(args);
            cli(addr, &all)
        };
        eventually(&format!("{addr} to know scripter"), Duration::from_secs(10), || async {
            (as_scripter(&["EVAL", get, "1", "s:1"]) == "v").then_some(())
        })
        .await;
        let refused = as_scripter(&["EVAL", set, "1", "s:1"]);
        assert!(refused.contains("NOPERM"), "at {addr}: {refused}");
        let check = |script: &str| as_scripter(&["EVAL", script, "0"]);
        assert_eq!(check("return redis.acl_check_cmd('get', 's:1')"), "1", "at {addr}");
        assert_eq!(check("return redis.acl_check_cmd('set', 's:1', 'x')"), "", "at {addr}");
        assert_eq!(check("return redis.acl_check_cmd('get', 'other')"), "", "at {addr}");
        let invalid = as_scripter(&["EVAL", "return redis.acl_check_cmd('nosuch')", "0"]);
        assert!(
            invalid.contains("Invalid command passed to redis.acl_check_cmd()"),
            "{invalid}"
        );
    }
    assert_eq!(admin(&gate, &["GET", "s:1"]), "v", "no refused write ran");
    // The server that ran the scripts logged the refusals, in the context of Lua.
    let log = admin(&server, &["ACL", "LOG"]);
    assert!(log.lines().any(|l| l == "lua"), "{log}");
    assert!(log.lines().any(|l| l == "scripter"), "{log}");
}
