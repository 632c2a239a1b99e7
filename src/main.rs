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
        println!(
            "kvstore local cluster: {} shards x {} replicas, gate on http://{http} and redis://{resp}",
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
        println!("Try it:");
        println!("  curl -X POST http://{http}/api/cache/put -d '{{\"key\":\"hello\",\"value\":\"d29ybGQ=\"}}'");
        println!("  curl http://{http}/api/cache/get?key=hello");
        println!("  cargo run --release --bin kvctl -- --host {http} get hello");
        println!("  cargo run --release --bin kvctl -- --host {http} cluster");
        println!("  cargo run --release --bin kvctl -- --host {http} -i");
        println!("  redis-cli -p {} set greeting hello", resp.port());
        println!();
        println!("Ctrl-C stops the cluster.");
        kvstore::shutdown_signal().await;
        println!("stopping...");
        cluster.shutdown().await;
        ExitCode::SUCCESS
    })
}
