//! Reads a `/metrics` page with Prometheus's own text parser (the `prometheus_client`
//! Python package that `scripts/ensure-deps.sh pyredis` installs): a page it cannot parse
//! fails the test.

use std::collections::BTreeMap;

/// One sample of a page.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    /// The family (counters without their `_total`, as the parser names them).
    pub family: String,
    /// `counter`, `gauge`, `histogram` …
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed page.
#[derive(Debug)]
pub struct Scrape(pub Vec<Sample>);

impl Scrape {
    /// The value of sample `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// The samples named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.0.iter().filter(|s| s.name == name).collect()
    }

    /// The type the page declares for `family`.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.0.iter().find(|s| s.family == family).map(|s| s.kind.as_str())
    }
}

const PARSE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", sys.argv[2])
with urllib.request.urlopen(req, timeout=10) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode()
assert ctype.startswith("text/plain; version=0.0.4"), ctype
out = []
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Fetches and parses `url` (`authorization`: an `Authorization` header value).
pub fn scrape(url: &str, authorization: Option<&str>) -> Scrape {
    let out = std::process::Command::new(super::pyredis())
        .args(["-c", PARSE, url])
        .args(authorization)
        .output()
        .expect("run the Prometheus parser");
    assert!(
        out.status.success(),
        "parsing {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Scrape(serde_json::from_slice(&out.stdout).expect("the parser's JSON"))
}
