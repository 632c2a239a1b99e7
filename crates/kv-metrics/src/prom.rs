//! The Prometheus text exposition format (version 0.0.4), written by hand: a page of
//! `# HELP`, `# TYPE` and sample lines is a few `write!`s, and the figures already live in
//! our own atomic tables ([`crate::cmdstats`]), so an exporter crate would only copy them.

use std::fmt::Write as _;

use crate::cmdstats::CommandStats;
use crate::errors::ErrorStats;
use crate::histogram::Snapshot;

/// The `Content-Type` of a page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A page being written.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    /// Starts a family: its help text and type. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
        self
    }

    /// One sample of the family just started (`name` may carry a histogram's `_bucket`,
    /// `_sum` or `_count` suffix).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The samples of one series of histogram family `name` (its family already started):
    /// cumulative buckets at the exported bounds, `+Inf`, the sum (from `nanos`) and count.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Snapshot, nanos: u64) -> &mut Self {
        let bucket = format!("{name}_bucket");
        let mut sample = |le: &str, n: u64| {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, n as f64);
        };
        let mut le = String::new();
        for (bound, n) in h.cumulative() {
            le.clear();
            write_value(&mut le, bound as f64 / 1e9);
            sample(&le, n);
        }
        sample("+Inf", h.count());
        self.sample(&format!("{name}_sum"), labels, nanos as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, h.count() as f64)
    }

    /// The command families: calls, time histograms, refusals and failures per command, and
    /// error replies by kind.
    pub fn commands(&mut self, stats: &CommandStats, errors: &ErrorStats) -> &mut Self {
        let commands = stats.commands();
        self.family(
            "kvstore_commands_total",
            Kind::Counter,
            "Commands run, by command (refused ones are not counted here).",
        );
        for f in &commands {
            self.sample("kvstore_commands_total", &[("command", f.name)], f.calls as f64);
        }
        self.family(
            "kvstore_command_duration_seconds",
            Kind::Histogram,
            "Time spent running commands (a pipelined batch's time is shared among its commands).",
        );
        for f in &commands {
            let labels = [("command", f.name)];
            self.histogram("kvstore_command_duration_seconds", &labels, &f.latency, f.nanos);
        }
        self.family(
            "kvstore_commands_rejected_total",
            Kind::Counter,
            "Commands refused before they ran (arity, permissions, redirections), by command.",
        );
        for f in &commands {
            self.sample(
                "kvstore_commands_rejected_total",
                &[("command", f.name)],
                f.rejected as f64,
            );
        }
        self.family(
            "kvstore_commands_failed_total",
            Kind::Counter,
            "Commands that ran and answered an error, by command.",
        );
        for f in &commands {
            self.sample("kvstore_commands_failed_total", &[("command", f.name)], f.failed as f64);
        }
        self.family(
            "kvstore_errors_total",
            Kind::Counter,
            "Error replies by kind (their first word: ERR, WRONGTYPE, MOVED, NOPERM ...).",
        );
        for (kind, n) in errors.counts() {
            self.sample("kvstore_errors_total", &[("kind", &kind)], n as f64);
        }
        self
    }

    /// The coordinator session's families (gates and servers alike): connected now, times
    /// the connection came back, sessions that expired and were replaced.
    pub fn zookeeper(&mut self, connected: bool, reconnects: u64, expired: u64) -> &mut Self {
        self.single(
            "kvstore_zookeeper_connected",
            Kind::Gauge,
            "1 while connected to ZooKeeper.",
            if connected { 1.0 } else { 0.0 },
        );
        self.single(
            "kvstore_zookeeper_reconnects_total",
            Kind::Counter,
            "Times the ZooKeeper connection came back after it was lost.",
            reconnects as f64,
        );
        self.single(
            "kvstore_zookeeper_sessions_expired_total",
            Kind::Counter,
            "ZooKeeper sessions that expired and were replaced.",
            expired as f64,
        )
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value: integers without a fraction, the rest in Rust's shortest exact form.
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdstats::Outcome;
    use std::time::Duration;

    #[test]
    fn writes_families_samples_and_escaped_labels() {
        let mut p = Page::new();
        p.single("kvstore_keys", Kind::Gauge, "Keys held.", 3.0);
        p.family("kvstore_x_total", Kind::Counter, "A line\nbreak.").sample(
            "kvstore_x_total",
            &[("kind", "a\"b\\c\nd"), ("n", "1")],
            0.5,
        );
        assert_eq!(
            p.finish(),
            "# HELP kvstore_keys Keys held.\n# TYPE kvstore_keys gauge\nkvstore_keys 3\n\
             # HELP kvstore_x_total A line\\nbreak.\n# TYPE kvstore_x_total counter\n\
             kvstore_x_total{kind=\"a\\\"b\\\\c\\nd\",n=\"1\"} 0.5\n"
        );
    }

    #[test]
    fn command_families_carry_each_commands_histogram() {
        let stats = CommandStats::default();
        let get = kv_proto::commands::lookup(b"get").unwrap();
        stats.record(get, Duration::from_micros(30), Outcome::Ran { failed: false });
        stats.record(get, Duration::from_millis(2), Outcome::Ran { failed: true });
        let errors = ErrorStats::default();
        errors.record(b"ERR x");
        let mut p = Page::new();
        p.commands(&stats, &errors);
        let text = p.finish();
        for line in [
            "kvstore_commands_total{command=\"get\"} 2",
            "kvstore_command_duration_seconds_bucket{command=\"get\",le=\"0.000025\"} 0",
            "kvstore_command_duration_seconds_bucket{command=\"get\",le=\"0.00005\"} 1",
            "kvstore_command_duration_seconds_bucket{command=\"get\",le=\"0.0025\"} 2",
            "kvstore_command_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 2",
            "kvstore_command_duration_seconds_sum{command=\"get\"} 0.00203",
            "kvstore_command_duration_seconds_count{command=\"get\"} 2",
            "kvstore_commands_failed_total{command=\"get\"} 1",
            "kvstore_errors_total{kind=\"ERR\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
