//! The simulator's Zoom HTTP side (OAuth, REST), control routes and the
//! client-side helpers (app context, client events), plus `zcc-rtms simulate`.

use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::sim::*;

struct Authorized {
    code: String,
    state: Option<String>,
}

async fn authorize(sim: &TestSim, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &sim.cfg.client_id),
        ("redirect_uri", "http://127.0.0.1:9/api/auth/callback"),
    ];
    q.extend_from_slice(extra);
    sim.http()
        .get(format!("{}/oauth/authorize", sim.base_url))
        .query(&q)
        .send()
        .await
        .expect("authorize")
}

async fn authorized(sim: &TestSim, extra: &[(&str, &str)]) -> Authorized {
    let r = authorize(sim, extra).await;
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().expect("ascii")).expect("url");
    assert!(
        loc.as_str()
            .starts_with("http://127.0.0.1:9/api/auth/callback?")
    );
    let get = |k: &str| {
        loc.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_string())
    };
    Authorized {
        code: get("code").expect("code"),
        state: get("state"),
    }
}

async fn token(sim: &TestSim, form: &[(&str, &str)], secret: Option<&str>) -> (u16, Value) {
    let r = sim
        .http()
        .post(format!("{}/oauth/token", sim.base_url))
        .basic_auth(
            &sim.cfg.client_id,
            Some(secret.unwrap_or(sim.cfg.client_secret.expose())),
        )
        .form(form)
        .send()
        .await
        .expect("token");
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn exchange(sim: &TestSim, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:9/api/auth/callback"),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    token(sim, &form, None).await
}

async fn me(sim: &TestSim, access: &str) -> (u16, Value) {
    let r = sim
        .http()
        .get(format!("{}/v2/users/me", sim.base_url))
        .bearer_auth(access)
        .send()
        .await
        .expect("me");
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn rtms_status(
    sim: &TestSim,
    access: &str,
    engagement: &str,
    body: Value,
) -> (u16, Option<Value>) {
    let r = sim
        .http()
        .put(format!(
            "{}/v2/contact_center/{engagement}/rtms_app/status",
            sim.base_url
        ))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .expect("put");
    let status = r.status().as_u16();
    (status, r.json().await.ok())
}

#[tokio::test]
async fn the_oauth_code_flow_with_s256_pkce_gives_tokens_that_read_users_me() {
    let sim = TestSim::start(|_| {}).await;
    let verifier = "a-long-random-verifier-string-0123456789-abcdefghijkl";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let a = authorized(
        &sim,
        &[
            ("state", "xyz"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(a.state.as_deref(), Some("xyz"));

    let (status, body) = exchange(&sim, &a.code, Some("wrong-verifier")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The failed attempt used up the code.
    let a = authorized(
        &sim,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert!(a.state.is_none());
    let (status, t) = exchange(&sim, &a.code, Some(verifier)).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "bearer");
    assert!(t["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(
        t["scope"]
            .as_str()
            .is_some_and(|s| s.contains("contact_center:update:engagement_rtms_app_status"))
    );
    assert_eq!(t["api_url"], sim.base_url.as_str());
    let (status, again) = exchange(&sim, &a.code, Some(verifier)).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "codes are single-use"
    );

    let (status, u) = me(&sim, t["access_token"].as_str().expect("access")).await;
    assert_eq!(status, 200);
    let default = sim.handle.default_user();
    assert_eq!(u["id"], default.user_id.as_str());
    assert_eq!(u["account_id"], default.account_id.as_str());
    for k in [
        "email",
        "first_name",
        "last_name",
        "display_name",
        "type",
        "status",
    ] {
        assert!(!u[k].is_null(), "{k}: {u}");
    }
    let (status, err) = me(&sim, "nope").await;
    assert_eq!((status, err["code"].as_i64()), (401, Some(124)));
    assert_eq!(err["message"], "Invalid access token.");
    let stats = sim.handle.stats_snapshot();
    assert_eq!(stats.token_requests.get("authorization_code"), Some(&3));
    assert_eq!(stats.rest_calls.get("200"), Some(&1));
    assert_eq!(stats.rest_calls.get("401"), Some(&1));
    sim.stop().await;
}

#[tokio::test]
async fn plain_pkce_and_no_pkce_both_work_and_sim_user_picks_the_user() {
    let sim = TestSim::start(|_| {}).await;
    let a = authorized(
        &sim,
        &[(
            "code_challenge",
            "plain-verifier-1234567890123456789012345678901",
        )],
    )
    .await;
    assert_eq!(
        exchange(
            &sim,
            &a.code,
            Some("plain-verifier-1234567890123456789012345678901")
        )
        .await
        .0,
        200
    );
    let other = sim.handle.create_user();
    let a = authorized(&sim, &[("sim_user", &other.user_id)]).await;
    let (status, t) = exchange(&sim, &a.code, None).await;
    assert_eq!(status, 200);
    let (_, u) = me(&sim, t["access_token"].as_str().expect("access")).await;
    assert_eq!(u["id"], other.user_id.as_str());
    assert_ne!(other.account_id, sim.handle.default_user().account_id);
    sim.stop().await;
}

#[tokio::test]
async fn bad_authorize_and_token_requests_get_zoom_shaped_errors() {
    let sim = TestSim::start(|_| {}).await;
    let r = sim
        .http()
        .get(format!(
            "{}/oauth/authorize?response_type=code&client_id=other&redirect_uri=http://x/",
            sim.base_url
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 400);
    let a = authorized(&sim, &[]).await;
    let (status, body) = token(
        &sim,
        &[("grant_type", "authorization_code"), ("code", &a.code)],
        Some("bad-secret"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(body["reason"].is_string());
    let (status, body) = token(&sim, &[("grant_type", "password")], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = token(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("code", &a.code),
            ("redirect_uri", "http://elsewhere/"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    sim.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_an_old_one_is_invalid_grant() {
    let sim = TestSim::start(|_| {}).await;
    let t = sim
        .handle
        .issue_tokens(&sim.handle.default_user().user_id)
        .expect("tokens");
    let (status, fresh) = token(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh_token),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(fresh["refresh_token"], t.refresh_token.as_str());
    let (status, body) = token(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh_token),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"reason": "Invalid Token!", "error": "invalid_grant"})
    );
    // revoke_refresh_tokens kills the current one too.
    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"revoke_refresh_tokens": true})).expect("faults"),
        )
        .expect("applies");
    let rt = fresh["refresh_token"].as_str().expect("rt");
    let (status, _) = token(
        &sim,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        sim.handle
            .stats_snapshot()
            .token_requests
            .get("refresh_token"),
        Some(&3)
    );
    sim.stop().await;
}

#[tokio::test]
async fn access_tokens_expire_after_their_ttl_and_on_the_expire_fault() {
    let sim = TestSim::start(|c| c.access_token_ttl = Duration::from_secs(2)).await;
    let t = sim
        .handle
        .issue_tokens(&sim.handle.default_user().user_id)
        .expect("tokens");
    assert_eq!(me(&sim, &t.access_token).await.0, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while me(&sim, &t.access_token).await.0 != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "token never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sim2 = TestSim::start(|_| {}).await;
    let t = sim2
        .handle
        .issue_tokens(&sim2.handle.default_user().user_id)
        .expect("tokens");
    sim2.handle
        .apply_faults(serde_json::from_value(json!({"expire_tokens": true})).expect("faults"))
        .expect("applies");
    assert_eq!(me(&sim2, &t.access_token).await.0, 401);
    sim.stop().await;
    sim2.stop().await;
}

#[tokio::test]
async fn rtms_app_status_drives_the_stream_and_checks_token_account_and_body() {
    let mut rx = Receiver::start(0, String::new()).await;
    let sim = TestSim::start(|c| c.app_url = Some(rx.url.clone())).await;
    let me_user = sim.handle.default_user();
    let t = sim.handle.issue_tokens(&me_user.user_id).expect("tokens");
    let eid = sim.handle.create_engagement().await.expect("engagement");
    let start = json!({"action": "start", "settings": {"client_id": sim.cfg.client_id}});

    assert_eq!(rtms_status(&sim, "bad", &eid, start.clone()).await.0, 401);
    assert_eq!(
        rtms_status(&sim, &t.access_token, "unknown", start.clone())
            .await
            .0,
        404
    );
    let (status, err) =
        rtms_status(&sim, &t.access_token, &eid, json!({"action": "explode"})).await;
    assert_eq!(status, 400);
    assert!(err.expect("json")["message"].is_string());
    let wrong_client = json!({"action": "start", "settings": {"client_id": "someone-else"}});
    assert_eq!(
        rtms_status(&sim, &t.access_token, &eid, wrong_client)
            .await
            .0,
        400
    );

    // Another account's token cannot see this engagement.
    let stranger = sim.handle.create_user();
    let st = sim.handle.issue_tokens(&stranger.user_id).expect("tokens");
    assert_eq!(
        rtms_status(&sim, &st.access_token, &eid, start.clone())
            .await
            .0,
        404
    );

    assert_eq!(
        rtms_status(&sim, &t.access_token, &eid, start.clone())
            .await
            .0,
        204
    );
    let started = rx
        .next_event("contact_center.voice_rtms_started")
        .await
        .json();
    let sid = sim
        .handle
        .engagement(&eid)
        .expect("known")
        .rtms_stream_id
        .expect("running");
    assert_eq!(started["payload"]["rtms_stream_id"], sid.as_str());

    let stop = json!({"action": "stop", "settings": {"client_id": sim.cfg.client_id}});
    assert_eq!(rtms_status(&sim, &t.access_token, &eid, stop).await.0, 204);
    let stopped = rx
        .next_event("contact_center.voice_rtms_stopped")
        .await
        .json();
    assert_eq!(stopped["payload"]["stop_reason"], 25);

    sim.handle.end_engagement(&eid).await.expect("end");
    assert_eq!(rtms_status(&sim, &t.access_token, &eid, start).await.0, 400);

    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"fail_rest": {"status": 503, "count": 2}}))
                .expect("faults"),
        )
        .expect("applies");
    assert_eq!(me(&sim, &t.access_token).await.0, 503);
    assert_eq!(me(&sim, &t.access_token).await.0, 503);
    assert_eq!(me(&sim, &t.access_token).await.0, 200);
    let stats = sim.handle.stats_snapshot();
    assert_eq!(stats.rest_calls.get("503"), Some(&2));
    assert_eq!(stats.rest_calls.get("204"), Some(&2));
    sim.stop().await;
}

#[tokio::test]
async fn control_routes_answer_json_and_reject_unknown_ids_and_bad_input() {
    let sim = TestSim::start(|_| {}).await;
    let http = sim.http();
    let base = &sim.base_url;
    let r = http
        .post(format!("{base}/sim/engagements"))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 200);
    let eid = r.json::<Value>().await.expect("json")["engagement_id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = http
        .post(format!("{base}/sim/engagements/{eid}/rtms/start"))
        .send()
        .await
        .expect("start");
    let sid = r.json::<Value>().await.expect("json")["rtms_stream_id"]
        .as_str()
        .expect("sid")
        .to_string();
    assert_eq!(sid.len(), 32);
    let stop = |body: &'static str| {
        http.post(format!("{base}/sim/engagements/{eid}/rtms/stop"))
            .body(body)
            .send()
    };
    let r = stop(r#"{"stop_reason": 99}"#).await.expect("post");
    assert_eq!(r.status(), 400, "not an RTMS stop reason");
    // Any stop reason, e.g. STREAM_REVOKED.
    let r = stop(r#"{"stop_reason": 8}"#).await.expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["stop_reason"], 8);
    let r = http
        .post(format!("{base}/sim/engagements/{eid}/end"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "end");
    for path in ["rtms/start", "rtms/stop", "end"] {
        let r = http
            .post(format!("{base}/sim/engagements/nope/{path}"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.json::<Value>().await.expect("json body")["error"].is_string());
    }
    let r = http
        .post(format!("{base}/sim/engagements/{eid}/rtms/start"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "an ended engagement cannot start RTMS");
    for body in [
        "{not json",
        r#"{"explode": true}"#,
        r#"{"fail_rest": {"status": 200, "count": 1}}"#,
    ] {
        let r = http
            .post(format!("{base}/sim/faults"))
            .body(body)
            .send()
            .await
            .expect("faults");
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.json::<Value>().await.expect("json body")["error"].is_string());
    }
    let r = http
        .post(format!("{base}/sim/engagements"))
        .body("[1]")
        .send()
        .await
        .expect("bad");
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    let stats: Value = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    for k in [
        "token_requests",
        "rest_calls",
        "webhooks",
        "signaling",
        "media",
        "handshakes",
        "frames_sent",
        "keepalives",
    ] {
        assert!(!stats[k].is_null(), "{k}: {stats}");
    }
    let user: Value = http
        .post(format!("{base}/sim/users"))
        .send()
        .await
        .expect("user")
        .json()
        .await
        .expect("json");
    let r = http
        .post(format!("{base}/sim/engagements"))
        .json(&json!({"user_id": user["user_id"]}))
        .send()
        .await
        .expect("create");
    let e = r.json::<Value>().await.expect("json");
    assert_eq!(e["engagement"]["account_id"], user["account_id"]);
    sim.stop().await;
}

fn decrypt_context(secret: &str, ctx: &str) -> Result<Value, String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(ctx)
        .map_err(|e| e.to_string())?;
    let iv_len = raw[0] as usize;
    let iv = &raw[1..1 + iv_len];
    let aad_len = u16::from_le_bytes([raw[1 + iv_len], raw[2 + iv_len]]) as usize;
    let aad = &raw[3 + iv_len..3 + iv_len + aad_len];
    let p = 3 + iv_len + aad_len;
    let ct_len = u32::from_le_bytes(raw[p..p + 4].try_into().map_err(|_| "len")?) as usize;
    let ct = &raw[p + 4..p + 4 + ct_len];
    let tag = &raw[p + 4 + ct_len..];
    if tag.len() != 16 {
        return Err("tag".into());
    }
    let key = sha2::Sha256::digest(secret.as_bytes());
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
    let sealed = [ct, tag].concat();
    let plain = cipher
        .decrypt(
            aes_gcm::Nonce::from_slice(iv),
            Payload { msg: &sealed, aad },
        )
        .map_err(|_| "decrypt".to_string())?;
    serde_json::from_slice(&plain).map_err(|e| e.to_string())
}

#[tokio::test]
async fn app_context_decrypts_with_the_client_secret_and_the_tamper_fault_breaks_it_once() {
    let sim = TestSim::start(|_| {}).await;
    let user = sim.handle.default_user();
    let ctx = sim.handle.app_context(&user.user_id);
    let claims = decrypt_context(sim.cfg.client_secret.expose(), &ctx).expect("decrypts");
    assert_eq!(claims["typ"], "panel");
    assert_eq!(claims["uid"], user.user_id.as_str());
    assert_eq!(claims["aud"], sim.cfg.client_id.as_str());
    assert_eq!(claims["iss"], "marketplace.zoom.us");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["ts"].as_i64().expect("ts"),
        120_000
    );
    sim.handle
        .apply_faults(
            serde_json::from_value(json!({"tamper_next_app_context": true})).expect("faults"),
        )
        .expect("applies");
    assert!(
        decrypt_context(
            sim.cfg.client_secret.expose(),
            &sim.handle.app_context(&user.user_id)
        )
        .is_err()
    );
    assert!(
        decrypt_context(
            sim.cfg.client_secret.expose(),
            &sim.handle.app_context(&user.user_id)
        )
        .is_ok()
    );
    sim.stop().await;
}

#[tokio::test]
async fn client_events_announce_engagements_starting_and_ending() {
    let sim = TestSim::start(|_| {}).await;
    let mut events = sim.handle.client_events();
    let id = sim.handle.create_engagement().await.expect("engagement");
    let e = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(
        matches!(e, zoom_sim::ClientEvent::EngagementStarted { ref engagement } if engagement.engagement_id == id)
    );
    sim.handle.end_engagement(&id).await.expect("end");
    let e = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(
        matches!(e, zoom_sim::ClientEvent::EngagementEnded { ref engagement } if engagement.state == "ended")
    );
    sim.stop().await;
}

#[tokio::test]
async fn zcc_rtms_simulate_with_tls_prints_its_ready_line_and_serves_https() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zcc-rtms"))
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--app-url",
            "http://127.0.0.1:9",
            "--tls",
        ])
        .env_remove("ZOOM_APP_CLIENT_ID")
        .env_remove("ZOOM_APP_CLIENT_SECRET")
        .env_remove("ZOOM_SECRET_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("ready in time")
        .expect("read")
        .expect("a line");
    let ready: Value = serde_json::from_str(&line).expect("JSON ready line");
    let base = ready["base_url"].as_str().expect("base_url");
    assert!(base.starts_with("https://127.0.0.1:"), "{ready}");
    assert!(
        ready["rtms_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("wss://"))
    );
    let ca = std::path::PathBuf::from(ready["ca_cert"].as_str().expect("ca_cert"));
    assert!(ca.is_file());
    let tls = zcc_rtms::tls::client_config(Some(&ca)).expect("tls");
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .expect("client");
    let r = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .expect("https with the CA");
    assert_eq!(r.status(), 200);
    child.kill().await.expect("kill");
}
