//! Reading `/metrics`: the operator's scrape as a Prometheus parser reads
//! it, and one sample's value by name and labels. Whether the text is good
//! OpenMetrics is the `metrics` tests' business.

use prometheus_parse::{Scrape, Value};

use super::TestApp;

impl TestApp {
    /// `GET /metrics` as the operator, parsed.
    pub async fn scrape(&self) -> Scrape {
        let body = self.metrics_text().await;
        Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses")
    }
}

/// The first sample of `metric` carrying every one of `labels` (0 when none
/// does, or when it is a histogram or summary).
pub fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map_or(0.0, |s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
}
