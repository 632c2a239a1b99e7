//! kvgate: the front door of a kvstore cluster.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kv_cluster::ZkCoordinator;
use kv_gate::{Config, Gate};

fn main() -> ExitCode {
    let mut config: Config = match kvstore::load_config("kvgate") {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.validate() {
        eprintln!("kvgate: {e}");
        return ExitCode::from(2);
    }
    let Some(zk) = config.zk.clone() else {
        eprintln!("kvgate: a ZooKeeper connection string is required: kvgate CONNECT_STRING [PORT] or --zk");
        return ExitCode::from(2);
    };
    let zk_auth = match kvstore::zk_auth(&config.cluster_auth) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kvgate: --zk-auth-file: {e}");
            return ExitCode::from(2);
        }
    };
    kvstore::init_logging(&config.log);
    let rt = kvstore::runtime(config.worker_threads()).expect("tokio runtime");
    rt.block_on(async move {
        let timeout = Duration::from_millis(config.zk_session_timeout_ms);
        let coord = tokio::select! {
            c = ZkCoordinator::connect_retrying(&zk, timeout, zk_auth) => Arc::new(c),
            _ = kvstore::shutdown_signal() => return ExitCode::SUCCESS,
        };
        let gate = match Gate::start(config, coord).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("kvgate: {e}");
                return ExitCode::from(2);
            }
        };
        // One machine-readable line on stdout: scripts and tests learn the ports from it.
        let mut extra = String::new();
        if let Some(a) = gate.tls_addr() {
            extra.push_str(&format!(" tls={a}"));
        }
        if let Some(a) = gate.https_addr() {
            extra.push_str(&format!(" https={a}"));
        }
        println!(
            "kvgate listening on {} resp={}{extra}",
            gate.http_addr(),
            gate.resp_addr()
        );
        kvstore::shutdown_signal().await;
        gate.shutdown().await;
        ExitCode::SUCCESS
    })
}
