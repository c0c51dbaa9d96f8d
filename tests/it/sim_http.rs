//! The simulator's Zoom REST side (the RTMS app status call), its control
//! routes and the client-side helpers (app context, client events), plus
//! `zcc-rtms simulate`. Its OAuth is `sim_oauth`'s.

use serde_json::{Value, json};

use crate::support::sim::*;
use crate::support::zoom_http::*;

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
