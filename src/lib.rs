//! Process-level glue shared by the binaries (`kvserver`, `kvgate`, `kvctl` and the embedded
//! local cluster `kvstore`): logging and shutdown signals. The system itself lives in
//! `crates/`; see the README for the map.

pub mod local;
pub mod secure;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Parses `T` from the command line, environment and `--config` file. `--help` and
/// `--version` print and exit; a bad configuration prints the reason and yields exit code 2.
pub fn load_config<T: clap::CommandFactory + clap::FromArgMatches>(bin: &str) -> Result<T, ExitCode> {
    match kv_config::parse_args(std::env::args_os().collect()) {
        Ok(c) => Ok(c),
        Err(kv_config::ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("{bin}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The process's tokio runtime: with one thread, a current-thread runtime (tasks and I/O on
/// the main thread, no cross-thread queues: measured faster for a single-threaded kvserver);
/// otherwise a multi-threaded one with `threads` workers (0 = one per core).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread().enable_all().build();
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    // The main thread's size rather than tokio's 2 MiB: a script's libraries recurse up to
    // 1,000 levels deep (`cmsgpack.unpack`, `cjson.encode`), as Redis's do.
    b.thread_stack_size(8 << 20);
    b.enable_all().build()
}

/// Logs to stderr with the given filter (`RUST_LOG` wins when set).
pub fn init_logging(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The ZooKeeper credentials named by `--zk-auth-file`, if any.
pub fn zk_auth(auth: &kv_config::ClusterAuth) -> Result<Option<kv_cluster::ZkAuth>, String> {
    auth.zk_auth_file
        .as_deref()
        .map(kv_cluster::ZkAuth::from_file)
        .transpose()
}
