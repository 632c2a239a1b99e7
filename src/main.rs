//! `cargo run --release`: a complete local kvstore cluster in one process, no setup.

use std::process::ExitCode;

use clap::Parser;
use kvstore::local::{LocalCluster, LocalOptions};

/// kvstore local cluster: shards × replicas of kvserver and a kvgate in one process, on the
/// in-process coordinator (no ZooKeeper needed).
#[derive(Debug, Parser)]
#[command(name = "kvstore", version, about)]
struct Args {
    /// Gate HTTP port.
    #[arg(long, default_value_t = 3000)]
    http_port: u16,
    /// Gate RESP (Redis protocol) port.
    #[arg(long, default_value_t = 7379)]
    resp_port: u16,
    /// Gate listen address.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Number of shards.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Replicas per shard.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Most keys per server (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_keys: u64,
    /// Log filter.
    #[arg(long, default_value = "warn")]
    log: String,
    /// A secured cluster: a password for the default user (HTTP and RESP), and TLS with
    /// client certificates on the gate (RESP on --resp-port + 1, HTTPS on --http-port + 443),
    /// on every server and between them. Password and certificates are made once in
    /// --secure-dir.
    #[arg(long)]
    secure: bool,
    /// Where --secure keeps its password and certificates.
    #[arg(long, default_value = ".kvstore-secure")]
    secure_dir: std::path::PathBuf,
}

/// Applies `--secure` to the gate's and servers' settings.
fn secure(s: &kvstore::secure::LocalSecrets, gate: &mut kv_gate::Config, server: &mut kv_server::Config) {
    for (users, tls) in [(&mut gate.users, &mut gate.tls), (&mut server.users, &mut server.tls)] {
        users.requirepass = Some(s.password.clone());
        tls.tls_cert_file = Some(s.file("server.crt"));
        tls.tls_key_file = Some(s.file("server.key"));
        tls.tls_ca_cert_file = Some(s.file("ca.crt"));
        tls.tls_port = Some(0);
        tls.tls_cluster = kv_tls::YesNo::Yes;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    kvstore::init_logging(&args.log);
    if args.shards == 0 || args.replicas == 0 {
        eprintln!("kvstore: --shards and --replicas must be at least 1");
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let mut gate = kv_gate::Config::local(args.http_port, args.resp_port);
        gate.bind = args.bind.clone();
        let mut server = kv_server::Config::for_shard("local");
        server.max_keys = args.max_keys;
        let secrets = if args.secure {
            let s = match kvstore::secure::ensure(&args.secure_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("kvstore: {e:#}");
                    return ExitCode::from(2);
                }
            };
            secure(&s, &mut gate, &mut server);
            gate.tls.tls_port = Some(args.resp_port.saturating_add(1));
            gate.https_port = Some(args.http_port.saturating_add(443));
            Some(s)
        } else {
            None
        };
        let opts = LocalOptions {
            shards: args.shards,
            replicas: args.replicas,
            gate,
            server,
        };
        let cluster = match LocalCluster::start(opts).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kvstore: cannot start the local cluster: {e:#}");
                return ExitCode::from(2);
            }
        };
        let http = cluster.gate.http_addr();
        let resp = cluster.gate.resp_addr();
        // The first line is machine-readable, as kvgate's: tests and scripts learn the ports.
        let mut extra = String::new();
        if let (Some(tls), Some(https)) = (cluster.gate.tls_addr(), cluster.gate.https_addr()) {
            extra = format!(" tls={tls} https={https}");
        }
        println!("kvstore local cluster listening on {http} resp={resp}{extra}");
        println!(
            "  {} shards x {} replicas, gate on http://{http} and redis://{resp}",
            args.shards, args.replicas
        );
        for s in &cluster.servers {
            println!(
                "  kvserver {:<22} shard {:<8} {}",
                s.addr(),
                s.node().shard,
                s.node().role().name()
            );
        }
        println!();
        if let Some(s) = &secrets {
            let (dir, pw) = (s.dir.display(), &s.password);
            let tls = format!("--cacert {dir}/ca.crt --cert {dir}/client.crt --key {dir}/client.key");
            let https = cluster.gate.https_addr().expect("a secured gate serves HTTPS");
            let resp_tls = cluster.gate.tls_addr().expect("a secured gate serves TLS");
            println!("Secured: the default user's password is {pw} (also in {dir}/password); certificates in {dir}/.");
            println!("Try it:");
            println!("  curl {tls} -u default:{pw} https://{https}/api/cache/get?key=hello");
            println!(
                "  redis-cli -p {} --tls {tls} -a {pw} set greeting hello",
                resp_tls.port()
            );
            println!("  cargo run --release --bin kvctl -- --host {http} --pass {pw} cluster");
        } else {
            println!("Try it:");
            println!("  curl -X POST http://{http}/api/cache/put -d '{{\"key\":\"hello\",\"value\":\"d29ybGQ=\"}}'");
            println!("  curl http://{http}/api/cache/get?key=hello");
            println!("  cargo run --release --bin kvctl -- --host {http} get hello");
            println!("  cargo run --release --bin kvctl -- --host {http} cluster");
            println!("  cargo run --release --bin kvctl -- --host {http} -i");
            println!("  redis-cli -p {} set greeting hello", resp.port());
        }
        println!("Watch it: http://{http}/dashboard, http://{http}/metrics, or kvctl --host {http} top");
        println!();
        println!("Ctrl-C stops the cluster.");
        kvstore::shutdown_signal().await;
        println!("stopping...");
        cluster.shutdown().await;
        ExitCode::SUCCESS
    })
}
