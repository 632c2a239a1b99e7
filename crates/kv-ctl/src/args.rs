//! The command line, and the grammar shared by one-shot commands and the shell.

use clap::{Parser, Subcommand};

/// kvctl: the kvstore command-line client.
///
/// With no command it starts an interactive shell on a terminal, or runs the commands piped
/// on standard input, one per line.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, about = "kvctl: the kvstore command-line client", long_about = None)]
pub struct Cli {
    /// Gate address; repeat to give several, tried in order until one answers.
    #[arg(
        long = "host",
        value_name = "HOST:PORT",
        default_value = "localhost:3000",
        env = "KVCTL_HOST",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,

    /// User to authenticate as (HTTP Basic), on a cluster with users (`--requirepass`,
    /// `--aclfile`). `default` when only --pass is given.
    #[arg(long, env = "KVCTL_USER")]
    pub user: Option<String>,

    /// Password for --user (or the default user's, as `--requirepass` set it).
    #[arg(long, env = "KVCTL_PASSWORD", hide_env_values = true)]
    pub pass: Option<String>,

    /// How long to wait for a gate's answer, per attempt.
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    pub timeout_ms: u64,

    /// Start the interactive shell.
    #[arg(short = 'i', long)]
    pub interactive: bool,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// A kvctl command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Cmd {
    /// Print the value of KEY (raw bytes).
    Get { key: String },
    /// Store VALUE under KEY; a VALUE of `-` reads the value from standard input.
    Put {
        key: String,
        value: String,
        /// Expire the key after this many milliseconds.
        #[arg(long, value_name = "MS")]
        ttl_ms: Option<u64>,
    },
    /// Delete KEY.
    #[command(alias = "delete")]
    Del { key: String },
    /// Show shards, replicas, roles, epochs and key counts, and keys moving between shards.
    Cluster {
        /// Print the gate's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A live view: replicas' roles, lag, keys, memory, operations per second and p99
    /// latency, and keys moving between shards, refreshed every interval until Ctrl-C.
    Top {
        /// Time between refreshes.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many refreshes.
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
    },
    /// Shard operations.
    Shard {
        #[command(subcommand)]
        action: ShardCmd,
    },
}

/// `kvctl shard ...`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ShardCmd {
    /// Drain shard NAME (its keys move to the other shards), then take it off the ring; shows
    /// progress until done. Its servers can be stopped afterwards.
    Remove {
        name: String,
        /// Return once the request is recorded instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
}

/// One line typed into the shell.
#[derive(Debug, Parser)]
#[command(
    name = "kvctl>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true
)]
pub struct Line {
    #[command(subcommand)]
    pub cmd: LineCmd,
}

/// What a shell line can say.
#[derive(Debug, Subcommand)]
pub enum LineCmd {
    #[command(flatten)]
    Cmd(Cmd),
    /// List the commands.
    Help,
    /// Leave the shell.
    #[command(alias = "exit")]
    Quit,
}

/// Words the shell completes.
pub const COMPLETIONS: &[&str] = &[
    "get",
    "put",
    "del",
    "cluster",
    "top",
    "help",
    "quit",
    "exit",
    "--json",
    "--ttl-ms",
    "--iterations",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let c = Cli::parse_from([
            "kvctl", "--host", "a:1", "--host", "b:2", "put", "k", "v", "--ttl-ms", "5",
        ]);
        assert_eq!(c.hosts, ["a:1", "b:2"]);
        assert_eq!(
            c.command,
            Some(Cmd::Put {
                key: "k".into(),
                value: "v".into(),
                ttl_ms: Some(5)
            })
        );
        let c = Cli::parse_from(["kvctl", "get", "k"]);
        assert_eq!(c.hosts, ["localhost:3000"]);
        assert!(Cli::try_parse_from(["kvctl", "get"]).is_err());
        let l = Line::try_parse_from(["cluster", "--json"]).unwrap();
        assert!(matches!(l.cmd, LineCmd::Cmd(Cmd::Cluster { json: true })));
        assert!(matches!(Line::try_parse_from(["exit"]).unwrap().cmd, LineCmd::Quit));
    }
}
