//! Executing commands against the gates.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use kv_client::{GateClient, GateError};

use crate::args::{Cmd, ShardCmd};
use crate::table;

/// kvctl's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    NotFound = 1,
    Error = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A one-shot command: `get` writes the raw bytes (a newline only on a terminal).
    OneShot,
    /// A shell line: every result ends with a newline; messages are human-friendly.
    Shell,
}

fn report(e: &GateError) -> Exit {
    eprintln!("error: {e}");
    Exit::Error
}

/// `kvctl top`: a frame per interval (the screen cleared first on a terminal) until
/// `iterations` frames or Ctrl-C.
async fn top(client: &GateClient, interval_ms: u64, iterations: Option<u64>, out: &mut impl Write) -> Exit {
    let mut view = crate::top::Top::default();
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms.max(100)));
    let mut shown = 0;
    while iterations.is_none_or(|n| shown < n) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Exit::Ok,
        }
        let frame = match client.cluster().await {
            Ok(info) => view.frame(&info),
            Err(e) => format!("error: {e}\n"),
        };
        let clear = if terminal {
            "\x1b[H\x1b[2J"
        } else if shown > 0 {
            "\n"
        } else {
            ""
        };
        let _ = write!(out, "{clear}{frame}");
        let _ = out.flush();
        shown += 1;
    }
    Exit::Ok
}

/// Runs one command.
pub async fn execute(client: &GateClient, cmd: Cmd, style: Style) -> Exit {
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Get { key } => match client.get(&key).await {
            Ok(Some(value)) => {
                let _ = out.write_all(&value);
                if style == Style::Shell || std::io::stdout().is_terminal() {
                    let _ = out.write_all(b"\n");
                }
                Exit::Ok
            }
            Ok(None) => {
                if style == Style::Shell {
                    let _ = writeln!(out, "(nil)");
                } else {
                    eprintln!("not found: {key}");
                }
                Exit::NotFound
            }
            Err(e) => report(&e),
        },
        Cmd::Put { key, value, ttl_ms } => {
            let bytes = if value == "-" {
                if style == Style::Shell {
                    eprintln!("error: `-` (value from stdin) works only as a one-shot command");
                    return Exit::Error;
                }
                let mut buf = Vec::new();
                if let Err(e) = std::io::stdin().lock().read_to_end(&mut buf) {
                    eprintln!("error: cannot read the value from stdin: {e}");
                    return Exit::Error;
                }
                buf
            } else {
                value.into_bytes()
            };
            match client.put(&key, &bytes, ttl_ms).await {
                Ok(()) => {
                    if style == Style::Shell {
                        let _ = writeln!(out, "OK");
                    }
                    Exit::Ok
                }
                Err(e) => report(&e),
            }
        }
        Cmd::Del { key } => match client.delete(&key).await {
            Ok(true) => {
                if style == Style::Shell {
                    let _ = writeln!(out, "(deleted)");
                }
                Exit::Ok
            }
            Ok(false) => {
                if style == Style::Shell {
                    let _ = writeln!(out, "(not found)");
                } else {
                    eprintln!("not found: {key}");
                }
                Exit::NotFound
            }
            Err(e) => report(&e),
        },
        Cmd::Cluster { json } => match client.cluster().await {
            Ok(info) => {
                let text = if json {
                    serde_json::to_string_pretty(&info).unwrap_or_default() + "\n"
                } else {
                    table::render(&info)
                };
                let _ = out.write_all(text.as_bytes());
                Exit::Ok
            }
            Err(e) => report(&e),
        },
        Cmd::Top {
            interval_ms,
            iterations,
        } => top(client, interval_ms, iterations, &mut out).await,
        Cmd::Shard {
            action: ShardCmd::Remove { name, no_wait },
        } => {
            if let Err(e) = client.remove_shard(&name).await {
                return report(&e);
            }
            let _ = writeln!(out, "removing shard {name}: its keys move to the other shards");
            let _ = out.flush();
            if no_wait {
                return Exit::Ok;
            }
            loop {
                match client.cluster().await {
                    Ok(info) => {
                        let on_ring =
                            info.ring.contains(&name) || info.next_ring.as_ref().is_some_and(|n| n.contains(&name));
                        if !on_ring {
                            let _ = writeln!(
                                out,
                                "shard {name} is off the ring (version {}); its servers can be stopped",
                                info.ring_version
                            );
                            return Exit::Ok;
                        }
                        for line in table::migration_lines(&info) {
                            let _ = writeln!(out, "{line}");
                        }
                        let _ = out.flush();
                    }
                    Err(e) => eprintln!("warning: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs a command given on the command line.
pub async fn one_shot(client: &GateClient, cmd: Cmd) -> Exit {
    execute(client, cmd, Style::OneShot).await
}
