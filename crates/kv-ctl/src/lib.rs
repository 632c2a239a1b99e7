//! kvctl, the command-line client. It talks to gates over the HTTP API.
//!
//! - [`args`]: the command line and the shell's command grammar (one clap definition).
//! - [`run`]: executing a command and mapping the result to an exit code.
//! - [`shell`]: the interactive shell (history, completion, `help`) and piped input.
//! - [`table`]: the `cluster` table.
//! - [`top`]: `kvctl top`, the live view.
//! - [`words`]: splitting a shell line into words (quotes, escapes).
//!
//! Exit codes: 0 success, 1 key not found, 2 usage, connection or server error.

pub mod args;
pub mod run;
pub mod shell;
pub mod table;
pub mod top;
pub mod words;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kv_client::GateClient;

pub use run::Exit;

/// kvctl's `main`.
pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Error } else { Exit::Ok };
            let _ = e.print();
            return code.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvctl: cannot start: {e}");
            return Exit::Error.into();
        }
    };
    let mut client = GateClient::new(cli.hosts.clone(), Duration::from_millis(cli.timeout_ms));
    if cli.user.is_some() || cli.pass.is_some() {
        let user = cli.user.as_deref().unwrap_or("default");
        client = client.with_credentials(user, cli.pass.as_deref().unwrap_or(""));
    }
    let exit = match cli.command {
        Some(cmd) => runtime.block_on(run::one_shot(&client, cmd)),
        None if cli.interactive || std::io::stdin().is_terminal() => shell::interactive(&runtime, &client),
        None => shell::piped(&runtime, &client, std::io::stdin().lock()),
    };
    exit.into()
}
