//! The interactive shell (rustyline: history, completion) and piped input.

use std::io::BufRead;

use clap::Parser;
use kv_client::GateClient;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use tokio::runtime::Runtime;

use crate::args::{COMPLETIONS, Line, LineCmd};
use crate::run::{Exit, Style, execute};
use crate::words;

const HELP: &str = "\
commands:
  get KEY                     print the value of KEY
  put KEY VALUE [--ttl-ms MS] store VALUE under KEY (quote values with spaces)
  del KEY                     delete KEY
  cluster [--json]            shards, replicas, roles, epochs, key counts
  top [--iterations N]        live view: ops/s, p99, lag, memory (Ctrl-C stops)
  help                        this list
  quit | exit                 leave (or Ctrl-D)";

/// What one line asked for.
enum Step {
    Continue(Exit),
    Quit,
}

fn run_line(rt: &Runtime, client: &GateClient, line: &str) -> Step {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Step::Continue(Exit::Ok);
    }
    let words = match words::split(line) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return Step::Continue(Exit::Error);
        }
    };
    match Line::try_parse_from(words) {
        Ok(Line { cmd: LineCmd::Cmd(cmd) }) => Step::Continue(rt.block_on(execute(client, cmd, Style::Shell))),
        Ok(Line { cmd: LineCmd::Help }) => {
            println!("{HELP}");
            Step::Continue(Exit::Ok)
        }
        Ok(Line { cmd: LineCmd::Quit }) => Step::Quit,
        Err(e) => {
            let text = e.render().to_string();
            // clap's own usage hint names the binary; the shell's `help` is more useful.
            eprintln!("{}", text.lines().next().unwrap_or("error: bad command"));
            eprintln!("type `help` for the commands");
            Step::Continue(Exit::Error)
        }
    }
}

/// Runs commands read from `input`, one per line. Exits with the code of the last command
/// that failed, or 0.
pub fn piped(rt: &Runtime, client: &GateClient, input: impl BufRead) -> Exit {
    let mut worst = Exit::Ok;
    for line in input.lines() {
        let Ok(line) = line else { return Exit::Error };
        match run_line(rt, client, &line) {
            Step::Continue(Exit::Ok) => {}
            Step::Continue(code) => worst = code,
            Step::Quit => break,
        }
    }
    worst
}

struct ShellHelper;

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let first = line[..start].trim().is_empty();
        let candidates = COMPLETIONS
            .iter()
            .filter(|c| c.starts_with(word) && (first != c.starts_with("--")))
            .map(|c| Pair {
                display: c.to_string(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kvctl_history"))
}

/// The interactive shell.
pub fn interactive(rt: &Runtime, client: &GateClient) -> Exit {
    let mut editor: Editor<ShellHelper, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the shell: {e}");
            return Exit::Error;
        }
    };
    editor.set_helper(Some(ShellHelper));
    let history = history_file();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "kvctl shell on {} — `help` lists the commands, Ctrl-D leaves",
        client.hosts().join(", ")
    );
    let mut last = Exit::Ok;
    loop {
        match editor.readline("kvctl> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match run_line(rt, client, &line) {
                    Step::Continue(code) => last = code,
                    Step::Quit => break,
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                last = Exit::Error;
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    if last == Exit::Error { Exit::Error } else { Exit::Ok }
}
