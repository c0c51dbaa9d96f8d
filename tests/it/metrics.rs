//! `GET /metrics`: Prometheus text that a Prometheus parser reads, for the
//! operator only (open in demo mode), whose counters move during a
//! simulated call.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

use crate::support::install::new_engagement;
use crate::support::metrics::sample as value;
use crate::support::redis::RedisServer;
use crate::support::{Options, TestApp, eventually};

/// Every line is a comment Prometheus knows or a sample; parsed with a
/// Prometheus parser, every sample line yields a sample.
fn parse(text: &str) -> Scrape {
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")
        {
            continue;
        }
        assert!(
            !line.starts_with('#') || line == "# EOF",
            "stray line {line:?}"
        );
        if line != "# EOF" {
            samples += 1;
        }
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    // A histogram's bucket lines fold into one sample per label set.
    let bucket_lines = text.lines().filter(|l| l.contains("_bucket{")).count();
    let histograms: Vec<usize> = scrape
        .samples
        .iter()
        .filter_map(|s| match &s.value {
            Value::Histogram(b) => Some(b.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bucket_lines,
        histograms.iter().sum::<usize>(),
        "every bucket parsed"
    );
    assert_eq!(
        scrape.samples.len(),
        samples - bucket_lines + histograms.len(),
        "every sample line parsed:\n{text}"
    );
    scrape
}

async fn get(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.expect("GET /metrics")
}

/// The operator's scrape, parsed, and its text.
async fn scrape_text(app: &TestApp) -> (Scrape, String) {
    let resp = get(&app.operator, app.url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.expect("body");
    (parse(&text), text)
}

async fn scrape(app: &TestApp) -> Scrape {
    scrape_text(app).await.0
}

#[tokio::test]
async fn metrics_are_for_the_operator_parse_as_prometheus_text_and_move_during_a_call() {
    let app = TestApp::spawn().await;
    let anonymous = get(&app.client, app.url("/metrics")).await;
    assert_eq!(anonymous.status(), 401);

    let before = scrape(&app).await;
    let frames = "zcc_rtms_rtms_frames_total";
    assert_eq!(value(&before, frames, &[("kind", "audio")]), 0.0);
    assert_eq!(value(&before, "zcc_rtms_rtms_streams_active", &[]), 0.0);
    assert_eq!(value(&before, "zcc_rtms_inbox_depth", &[]), 0.0);

    // A webhook with a wrong signature is counted as rejected.
    let refused = app
        .client
        .post(app.url("/api/webhooks/zoom"))
        .header(
            "x-zm-request-timestamp",
            crate::support::now_secs().to_string(),
        )
        .header("x-zm-signature", "v0=00")
        .body(r#"{"event":"contact_center.engagement_started","payload":{}}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 401);

    let id = app.sim.create_engagement().await.expect("engagement");
    app.sim.start_rtms(&id).await.expect("rtms start");
    let during = eventually("frames counted while the stream runs", || async {
        let s = scrape(&app).await;
        (value(&s, frames, &[("kind", "audio")]) >= 50.0
            && value(&s, "zcc_rtms_rtms_streams_active", &[]) == 1.0)
            .then_some(s)
    })
    .await;
    let received = "zcc_rtms_webhooks_received_total";
    for event in ["engagement_started", "voice_rtms_started"] {
        assert_eq!(
            value(
                &during,
                received,
                &[("event", event), ("outcome", "stored")]
            ),
            1.0,
            "{event}"
        );
    }
    assert_eq!(
        value(
            &during,
            received,
            &[("event", "unknown"), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        value(&during, "zcc_rtms_rtms_sessions_started_total", &[]),
        1.0
    );
    let answers = during
        .samples
        .iter()
        .find(|s| s.metric == "zcc_rtms_webhook_answer_seconds")
        .expect("answer-time histogram");
    match &answers.value {
        Value::Histogram(b) => {
            let inf = b.iter().find(|c| c.less_than.is_infinite()).expect("+Inf");
            assert!(inf.count >= 3.0, "{b:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let stores = during
        .samples
        .iter()
        .find(|s| {
            s.metric == "zcc_rtms_store_operation_seconds"
                && s.labels.get("operation") == Some("inbox_append")
        })
        .expect("inbox append timings");
    assert_eq!(stores.labels.get("backend"), Some("embedded"));

    // Labels come from closed sets: no id of the call appears anywhere.
    let (_, text) = scrape_text(&app).await;
    assert!(!text.contains(&id), "an engagement id in the metrics");
    let labels: BTreeMap<&str, usize> = during
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str).collect::<Vec<_>>())
        .fold(BTreeMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    for key in labels.keys() {
        assert!(
            [
                "event",
                "outcome",
                "kind",
                "reason",
                "status",
                "backend",
                "operation",
                "consumer",
                "channel"
            ]
            .contains(key),
            "unexpected label {key}"
        );
    }

    app.sim.stop_rtms(&id).await.expect("rtms stop");
    eventually("the stream is no longer active", || async {
        let s = scrape(&app).await;
        (value(&s, "zcc_rtms_rtms_streams_active", &[]) == 0.0).then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_are_open_in_demo_mode() {
    let app = TestApp::spawn_demo().await;
    let resp = get(&app.client, app.url("/metrics")).await;
    assert_eq!(resp.status(), 200);
    let scrape = parse(&resp.text().await.expect("body"));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "zcc_rtms_rtms_streams_active"),
        "engine gauges are exposed"
    );
    app.shutdown().await;
}

/// How many observations a histogram (with these labels) holds.
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Histogram(b) => b
                .iter()
                .find(|c| c.less_than.is_infinite())
                .map_or(0.0, |c| c.count),
            _ => 0.0,
        })
        .sum()
}

/// A counter summed over every label set.
fn total(scrape: &Scrape, metric: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

tokio::task_local! {
    static REDIS_URL: String;
}

#[tokio::test]
async fn channels_keepalives_store_calls_and_leases_are_measured_on_redis() {
    let mut redis = RedisServer::start().await;
    let opts = Options {
        keepalive: std::time::Duration::from_secs(1),
        tweak: |args| args.redis_url = Some(REDIS_URL.with(Clone::clone)),
        ..Options::default()
    };
    let app = REDIS_URL
        .scope(redis.url(), TestApp::spawn_with(opts))
        .await;
    let id = new_engagement(&app, None).await;
    app.sim.start_rtms(&id).await.expect("rtms start");
    let frames = "zcc_rtms_rtms_frames_total";
    let during = eventually(
        "per-channel frames, a line, keep-alives, a lease",
        || async {
            let s = scrape(&app).await;
            let by = |channel| value(&s, frames, &[("kind", "audio"), ("channel", channel)]);
            (by("caller") >= 25.0
                && by("agent") >= 25.0
                && total(&s, "zcc_rtms_rtms_transcript_lines_total") >= 1.0
                && observations(&s, "zcc_rtms_rtms_keepalive_answer_seconds", &[]) >= 1.0
                && value(&s, "zcc_rtms_rtms_leases_held", &[]) == 1.0)
                .then_some(s)
        },
    )
    .await;
    assert!(observations(&during, "zcc_rtms_rtms_keepalive_age_seconds", &[]) >= 1.0);
    for operation in ["lease_claim", "put", "get"] {
        assert!(
            observations(
                &during,
                "zcc_rtms_store_operation_seconds",
                &[("backend", "redis"), ("operation", operation)]
            ) >= 1.0,
            "{operation} timed"
        );
    }

    app.sim.stop_rtms(&id).await.expect("rtms stop");
    eventually("the lease is given back", || async {
        let s = scrape(&app).await;
        (value(&s, "zcc_rtms_rtms_leases_held", &[]) == 0.0
            && value(&s, "zcc_rtms_rtms_streams_active", &[]) == 0.0)
            .then_some(())
    })
    .await;
    // The store going away shows as errors of its calls.
    redis.kill9().await;
    eventually("a failed store call counted", || async {
        let _ = app.get("/ready").await;
        let s = scrape(&app).await;
        (value(&s, "zcc_rtms_store_errors_total", &[("operation", "put")]) >= 1.0).then_some(())
    })
    .await;
    app.shutdown().await;
}
