//! kvserver: one replica of one shard, coordinated through ZooKeeper.

use std::process::ExitCode;
use std::sync::Arc;

use kv_cluster::ZkCoordinator;
use kv_server::{Config, Server};

fn main() -> ExitCode {
    let config: Config = match kvstore::load_config("kvserver") {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.validate() {
        eprintln!("kvserver: {e}");
        return ExitCode::from(2);
    }
    let Some(zk) = config.zk.clone() else {
        eprintln!("kvserver: --zk CONNECT_STRING (or KVSERVER_ZK) is required");
        return ExitCode::from(2);
    };
    let zk_auth = match kvstore::zk_auth(&config.cluster_auth) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kvserver: --zk-auth-file: {e}");
            return ExitCode::from(2);
        }
    };
    kvstore::init_logging(&config.log);
    let rt = kvstore::runtime(config.threads).expect("tokio runtime");
    rt.block_on(async move {
        let coord = tokio::select! {
            c = ZkCoordinator::connect_retrying(&zk, config.session_timeout(), zk_auth) => Arc::new(c),
            _ = kvstore::shutdown_signal() => return ExitCode::SUCCESS,
        };
        let server = match Server::start(config, coord).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kvserver: {e}");
                return ExitCode::from(2);
            }
        };
        // One machine-readable line on stdout: scripts and tests learn the port from it.
        let tls = server
            .node()
            .tls_addr
            .as_ref()
            .map(|a| format!(" tls={a}"))
            .unwrap_or_default();
        let metrics = server
            .metrics_addr()
            .map(|a| format!(" metrics={a}"))
            .unwrap_or_default();
        println!(
            "kvserver listening on {} cluster={} shard={} node={}{tls}{metrics}",
            server.addr(),
            server.node().cluster_addr,
            server.node().shard,
            server.id()
        );
        kvstore::shutdown_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}
