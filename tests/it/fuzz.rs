//! The webhook receiver under 100,000 generated requests: mutated valid
//! events, truncated bodies, wrong types, huge numbers, deep nesting, odd
//! headers. The real router (verification, parsing, the durable inbox) is
//! called in-process; its worker is not running, so the inbox holds exactly
//! what was stored. Every answer is 2xx or 4xx with a reason, nothing
//! panics, and only the deliveries answered "accepted" were stored.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{now_secs, sign};

const CASES: usize = 100_000;
const SECRET: &str = "fuzz-webhook-secret";

fn valid(rng: &mut StdRng) -> Value {
    let id = format!("E{}", rng.gen_range(0..5_000u32));
    let ts = now_secs() * 1000 + rng.gen_range(0..1_000i64);
    match rng.gen_range(0..7) {
        0 => json!({"event": "contact_center.engagement_started", "event_ts": ts,
            "payload": {"account_id": "A", "object": {"engagement_id": id, "user_id": "U"}}}),
        1 => json!({"event": "contact_center.engagement_ended", "event_ts": ts,
            "payload": {"object": {"engagement_id": id}}}),
        2 => json!({"event": "contact_center.voice_rtms_started", "event_ts": ts,
            "payload": {"engagement_id": id, "rtms_stream_id": "S1", "server_urls": "wss://127.0.0.1:1/x"}}),
        3 => json!({"event": "contact_center.voice_rtms_stopped", "event_ts": ts,
            "payload": {"engagement_id": id, "rtms_stream_id": "S1", "stop_reason": 6}}),
        4 => json!({"event": "contact_center.voice_rtms_interrupted", "event_ts": ts,
            "payload": {"engagement_id": id, "rtms_stream_id": "S1"}}),
        5 => json!({"event": "endpoint.url_validation", "event_ts": ts,
            "payload": {"plainToken": id}}),
        _ => json!({"event": "meeting.started", "event_ts": ts, "payload": {}}),
    }
}

fn odd_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(i64::MIN),
        3 => json!(u64::MAX),
        4 => json!(-1.5e300),
        5 => json!([1, "two", {"three": 3}]),
        6 => json!({"nested": {"deeper": []}}),
        7 => json!(""),
        _ => json!("\u{0}\u{202e}é😀"),
    }
}

/// Replace a random leaf or field of `v` with an odd value.
fn mutate(v: &mut Value, rng: &mut StdRng) {
    let fields = ["event", "event_ts", "payload"];
    let f = fields[rng.gen_range(0..fields.len())];
    if f == "payload"
        && rng.gen_bool(0.7)
        && let Some(p) = v["payload"].as_object_mut()
    {
        let keys: Vec<String> = p.keys().cloned().collect();
        if let Some(k) = keys.get(rng.gen_range(0..keys.len().max(1))) {
            p.insert(k.clone(), odd_value(rng));
            return;
        }
    }
    v[f] = odd_value(rng);
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"event":"contact_center.engagement_started","payload":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// One generated request: body, timestamp header, signature header.
fn case(rng: &mut StdRng) -> (Vec<u8>, Option<String>, Option<String>) {
    let mut body = match rng.gen_range(0..10) {
        0..=2 => serde_json::to_vec(&valid(rng)).expect("json"),
        3 | 4 => {
            let mut v = valid(rng);
            mutate(&mut v, rng);
            serde_json::to_vec(&v).expect("json")
        }
        5 => {
            let b = serde_json::to_vec(&valid(rng)).expect("json");
            let cut = rng.gen_range(0..b.len());
            b[..cut].to_vec()
        }
        6 => {
            let mut b = serde_json::to_vec(&valid(rng)).expect("json");
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.r#gen();
            }
            b
        }
        7 => nested(rng.gen_range(1..5_000)).into_bytes(),
        8 => format!(
            r#"{{"event":"contact_center.engagement_started","event_ts":{},"payload":{{"object":{{"engagement_id":"E{}"}}}}}}"#,
            ["1e400", "-99999999999999999999999", "18446744073709551616", "0.5", "NaN"]
                [rng.gen_range(0..5)],
            rng.gen_range(0..100)
        )
        .into_bytes(),
        _ => (0..rng.gen_range(0..256)).map(|_| rng.r#gen()).collect(),
    };
    if rng.gen_range(0..2_000) == 0 {
        body.resize(70 * 1024, b' '); // over the size limit
    }
    let now = now_secs();
    let ts = match rng.gen_range(0..12) {
        0 => None,
        1 => Some(i64::MAX.to_string()),
        2 => Some(i64::MIN.to_string()),
        3 => Some("99999999999999999999999".to_owned()),
        4 => Some("soon".to_owned()),
        5 => Some((now - 301).to_string()),
        6 => Some(format!(" {now} ")),
        _ => Some(now.to_string()),
    };
    let sig = match rng.gen_range(0..12) {
        0 => None,
        1 => Some("v0=deadbeef".to_owned()),
        2 => Some(sign("another-secret", ts.as_deref().unwrap_or(""), &body)),
        3 => Some(sign(SECRET, ts.as_deref().unwrap_or(""), &body).to_uppercase()),
        _ => Some(sign(SECRET, ts.as_deref().unwrap_or("").trim(), &body)),
    };
    (body, ts, sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_generated_webhooks_get_an_answer_with_a_reason_and_only_accepted_ones_are_stored()
 {
    crate::support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = zcc_rtms::config::ServeArgs {
        credentials: zcc_rtms::config::CredentialArgs {
            client_id: Some("fuzz-client".into()),
            client_secret: Some("fuzz-client-secret".into()),
            secret_token: Some(SECRET.into()),
        },
        port: Some("0".into()),
        bind: Some("127.0.0.1".into()),
        session_secret: Some(zcc_rtms::util::random_hex(32)),
        token_encryption_key: Some(zcc_rtms::util::random_hex(32)),
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let config = zcc_rtms::Config::from_args(&args).expect("config");
    // Built, not run: the inbox worker stays off, so stored entries stay.
    let app = zcc_rtms::App::build(config).await.expect("app");
    let state = app.state().clone();
    let router = zcc_rtms::http::router(state.clone());

    let mut rng = StdRng::seed_from_u64(0x9e37_79b9);
    let cases: Vec<_> = (0..CASES).map(|_| case(&mut rng)).collect();
    let answers: Vec<(StatusCode, Value, usize)> = futures_util::stream::iter(cases)
        .enumerate()
        .map(|(i, (body, ts, sig))| {
            let router = router.clone();
            async move {
                let mut req =
                    Request::post("/api/webhooks/zoom").header("content-type", "application/json");
                if let Some(ts) = ts {
                    req = req.header("x-zm-request-timestamp", ts);
                }
                if let Some(sig) = sig {
                    req = req.header("x-zm-signature", sig);
                }
                let resp = router
                    .oneshot(req.body(Body::from(body)).expect("request"))
                    .await
                    .expect("infallible");
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .expect("body");
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    i,
                )
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let mut accepted = 0usize;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (status, body, i) in &answers {
        *by_status.entry(status.as_u16()).or_default() += 1;
        assert!(
            status.is_success() || status.is_client_error(),
            "case {i}: {status} {body}"
        );
        if status.is_client_error() {
            assert!(
                body["error"].as_str().is_some_and(|r| !r.is_empty()),
                "case {i}: {status} without a reason: {body}"
            );
        } else if body["status"] == "accepted" {
            accepted += 1;
        } else {
            assert!(
                body["status"] == "duplicate" || body["encryptedToken"].is_string(),
                "case {i}: {body}"
            );
        }
    }
    assert_eq!(answers.len(), CASES);
    assert!(
        accepted > 1_000,
        "the generator reaches the inbox: {by_status:?}"
    );
    assert!(by_status.keys().any(|s| *s == 401) && by_status.keys().any(|s| *s == 400));
    let stored = state.inbox.backlog().await.expect("backlog");
    assert_eq!(stored, accepted, "stored = accepted: {by_status:?}");
    println!("[fuzz] {CASES} webhooks: {by_status:?}, {accepted} stored");
}
