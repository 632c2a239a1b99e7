//! What a gate or a server measures about the commands it serves, and how it reports it.
//!
//! - [`histogram`]: latency histograms of atomic counters, with percentile estimates.
//! - [`cmdstats`]: per-command calls, time, refusals and failures (`INFO commandstats`,
//!   `INFO latencystats`).
//! - [`errors`]: error replies by kind (`INFO errorstats`).
//! - [`slowlog`]: the `SLOWLOG` command and its entries.
//! - [`latency`]: the `LATENCY` command, Redis's latency monitor.
//! - [`batch`]: the calls of one batch of requests, recorded into all of the above at once.
//! - [`prom`]: the Prometheus text format.
//!
//! One [`Observer`] per process holds them; its settings follow `CONFIG SET`.

pub mod batch;
pub mod cmdstats;
pub mod errors;
pub mod histogram;
pub mod latency;
pub mod prom;
pub mod slowlog;

use std::sync::Mutex;

pub use batch::Batch;
pub use slowlog::Client;

/// Everything one process records about its commands.
#[derive(Debug)]
pub struct Observer {
    pub commands: cmdstats::CommandStats,
    pub errors: errors::ErrorStats,
    pub slowlog: slowlog::SlowLog,
    pub latency: latency::LatencyMonitor,
    /// `latency-tracking-info-percentiles`.
    percentiles: Mutex<Vec<f64>>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            commands: Default::default(),
            errors: Default::default(),
            slowlog: Default::default(),
            latency: Default::default(),
            percentiles: Mutex::new(vec![50.0, 99.0, 99.9]),
        }
    }
}

impl Observer {
    /// Applies the settings it follows: `slowlog-log-slower-than`, `slowlog-max-len`,
    /// `latency-monitor-threshold`, `latency-tracking-info-percentiles`.
    pub fn configure(&self, settings: &kv_proto::settings::Settings) {
        let threshold = settings.number("slowlog-log-slower-than").unwrap_or(10_000);
        let max_len = settings.number("slowlog-max-len").unwrap_or(128).max(0) as usize;
        self.slowlog.configure(threshold, max_len);
        let spike = settings.number("latency-monitor-threshold").unwrap_or(0).max(0) as u64;
        self.latency.configure(spike);
        if let Some(text) = settings.text("latency-tracking-info-percentiles") {
            let ps: Vec<f64> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            *self.percentiles.lock().expect("percentiles") = ps;
        }
    }

    /// `CONFIG RESETSTAT`: the command and error tables (not the slow log, as in Redis).
    pub fn reset(&self) {
        self.commands.reset();
        self.errors.reset();
    }

    /// The `# Latencystats` section.
    pub fn latency_section(&self, out: &mut String) {
        let ps = self.percentiles.lock().expect("percentiles").clone();
        self.commands.latency_section(&ps, out);
    }
}
