//! `POST /api/zoom/rtms/control` against the simulator: single-flight
//! refresh under concurrency (in one process and across two instances on
//! Redis), dead refresh tokens, per-account tokens, input validation and
//! Zoom's errors.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Kind;
use crate::support::install::*;
use crate::support::rig::Rig;
use crate::support::rig::second_instance;
use crate::support::{TestApp, on_both_stores};

on_both_stores!(
    workers = 4;
    fifty_concurrent_control_calls_with_an_expired_token_make_exactly_one_refresh,
    a_revoked_refresh_token_needs_auth_keeps_the_tokens_and_a_reinstall_fixes_it,
    a_refresh_token_rotated_elsewhere_needs_auth_without_touching_the_tokens,
);

async fn fifty_concurrent_control_calls_with_an_expired_token_make_exactly_one_refresh(rig: Rig) {
    let app = &rig.app;
    let cookie = install(app, None).await;
    let engagement = new_engagement(app, None).await;
    let (code, _) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK);

    fault(app, json!({ "expire_tokens": true })).await;
    let refreshes_before = refresh_grants(app);
    let ok_before = rest_calls(app, 204);
    let rejected_before = rest_calls(app, 401);
    let answers = join_all((0..50).map(|_| app.stop_rtms(Some(&cookie), &engagement))).await;
    for (code, body) in &answers {
        assert_eq!(*code, StatusCode::OK, "{body}");
        assert_eq!(body["ok"], true);
    }
    let refreshes = refresh_grants(app) - refreshes_before;
    let ok = rest_calls(app, 204) - ok_before;
    let rejected = rest_calls(app, 401) - rejected_before;
    println!(
        "[{}] 50 concurrent control calls, expired access token: {refreshes} refresh grant(s), \
         {ok} REST 204, {rejected} REST 401",
        app.state.store.backend_name()
    );
    assert_eq!(refreshes, 1, "exactly one refresh grant");
    assert_eq!(ok, 50, "50 successful REST calls");
    rig.app.shutdown().await;
}

async fn a_revoked_refresh_token_needs_auth_keeps_the_tokens_and_a_reinstall_fixes_it(rig: Rig) {
    let app = &rig.app;
    let cookie = install(app, None).await;
    let user = app.sim.default_user();
    let engagement = new_engagement(app, None).await;
    let before = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens");

    fault(
        app,
        json!({ "expire_tokens": true, "revoke_refresh_tokens": true }),
    )
    .await;
    let (code, body) = app.start_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["needsAuth"], true);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("re-authorize"),
        "{body}"
    );
    let st = app.auth_status(Some(&cookie)).await;
    assert_eq!(st["authenticated"], false);
    assert_eq!(st["needsAuth"], true);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("zcc_rtms_token_refreshes_total{outcome=\"revoked\"} 1\n"),
        "{metrics}"
    );

    let after = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens kept");
    assert!(after.needs_auth);
    assert_eq!(after.access_token, before.access_token, "tokens untouched");
    assert_eq!(
        after.refresh_token, before.refresh_token,
        "tokens untouched"
    );

    // A dead token is not tried again and again.
    let refreshes = refresh_grants(app);
    let (code, _) = app.start_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh_grants(app), refreshes);

    let cookie = install(app, None).await;
    assert_eq!(app.auth_status(Some(&cookie)).await["authenticated"], true);
    let (code, body) = app.start_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    rig.app.shutdown().await;
}

async fn a_refresh_token_rotated_elsewhere_needs_auth_without_touching_the_tokens(rig: Rig) {
    let app = &rig.app;
    let cookie = install(app, None).await;
    let user = app.sim.default_user();
    let engagement = new_engagement(app, None).await;
    let before = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens");
    // Someone else (an uncoordinated copy of the old app) rotates the pair.
    let resp = app
        .state
        .http
        .post(format!("{}/oauth/token", app.sim_base))
        .basic_auth(
            &app.sim_cfg.client_id,
            Some(app.sim_cfg.client_secret.expose()),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", before.refresh_token.as_str()),
        ])
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), StatusCode::OK);
    fault(app, json!({ "expire_tokens": true })).await;

    let (code, body) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["needsAuth"], true);
    let after = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens kept");
    assert_eq!(
        (&after.access_token, &after.refresh_token),
        (&before.access_token, &before.refresh_token)
    );
    rig.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_accounts_each_use_their_own_token() {
    let app = TestApp::spawn().await;
    let a = app.sim.default_user();
    let b = app.sim.create_user();
    assert_ne!(a.account_id, b.account_id);
    let cookie_a = install(&app, None).await;
    let cookie_b = install(&app, Some(&b.user_id)).await;
    let ea = new_engagement(&app, None).await;
    let eb = new_engagement(&app, Some(&b.user_id)).await;

    let st_a = app.auth_status(Some(&cookie_a)).await;
    let st_b = app.auth_status(Some(&cookie_b)).await;
    assert_eq!(st_a["accountId"], a.account_id.as_str());
    assert_eq!(st_b["accountId"], b.account_id.as_str());

    // The simulator knows an engagement only to its own account's token.
    assert_eq!(app.stop_rtms(Some(&cookie_a), &ea).await.0, StatusCode::OK);
    assert_eq!(app.stop_rtms(Some(&cookie_b), &eb).await.0, StatusCode::OK);
    let (code, body) = app.stop_rtms(Some(&cookie_a), &eb).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains(&eb), "{body}");
    assert_eq!(
        app.stop_rtms(Some(&cookie_b), &ea).await.0,
        StatusCode::NOT_FOUND
    );

    // Account A losing its authorization leaves account B alone.
    fault(&app, json!({ "expire_tokens": true })).await;
    app.state
        .store
        .put_raw_tokens(&a.account_id, &a.user_id, b"garbage".to_vec())
        .await
        .expect("corrupt A");
    let (code, body) = app.stop_rtms(Some(&cookie_a), &ea).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["needsAuth"], true);
    assert_eq!(app.stop_rtms(Some(&cookie_b), &eb).await.0, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_requests_get_a_400_with_a_reason() {
    let app = TestApp::spawn().await;
    let cookie = install(&app, None).await;
    for (body, needle) in [
        (&b"{"[..], "JSON"),
        (b"{}", "engagementId"),
        (br#"{"engagementId":"E1"}"#, "action"),
        (
            br#"{"engagementId":"E1","action":"explode"}"#,
            "start, stop, pause, resume",
        ),
        (
            br#"{"engagementId":"../../users","action":"stop"}"#,
            "characters",
        ),
    ] {
        let (code, reply) = app.control_raw(Some(&cookie), body.to_vec()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{reply}");
        assert!(
            reply["error"].as_str().unwrap_or("").contains(needle),
            "{reply} lacks {needle}"
        );
    }
    let (code, _) = app.control_raw(Some(&cookie), vec![b' '; 64 * 1024]).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_errors_become_clear_answers() {
    let app = TestApp::spawn().await;
    // No session in Zoom mode: the page must run inside Zoom.
    let (code, body) = app.start_rtms(None, "E1").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap_or("").contains("inside Zoom"),
        "{body}"
    );

    let cookie = install(&app, None).await;
    let (code, body) = app.start_rtms(Some(&cookie), "NO_SUCH_ENGAGEMENT").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");

    let ended = new_engagement(&app, None).await;
    app.sim.end_engagement(&ended).await.expect("end");
    let (code, body) = app.start_rtms(Some(&cookie), &ended).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("still active"),
        "{body}"
    );

    let live = new_engagement(&app, None).await;
    fault(&app, json!({ "fail_rest": { "count": 1, "status": 500 } })).await;
    let (code, body) = app.stop_rtms(Some(&cookie), &live).await;
    assert_eq!(code, StatusCode::BAD_GATEWAY, "{body}");
    fault(&app, json!({ "fail_rest": { "count": 1, "status": 429 } })).await;
    let (code, _) = app.stop_rtms(Some(&cookie), &live).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    // A failing token endpoint during a refresh is transient: no needs-auth.
    fault(
        &app,
        json!({ "expire_tokens": true, "fail_token": { "count": 1, "status": 503 } }),
    )
    .await;
    let (code, body) = app.stop_rtms(Some(&cookie), &live).await;
    assert_eq!(code, StatusCode::BAD_GATEWAY, "{body}");
    assert_ne!(body["needsAuth"], true);
    let (code, body) = app.stop_rtms(Some(&cookie), &live).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_redis_refresh_once_between_them() {
    let rig = Rig::spawn(Kind::Redis).await;
    let app = &rig.app;
    let cookie = install(app, None).await;
    let engagement = new_engagement(app, None).await;
    let (other_base, stop, task) = second_instance(&rig).await;

    fault(app, json!({ "expire_tokens": true })).await;
    let refreshes_before = refresh_grants(app);
    let ok_before = rest_calls(app, 204);
    let body = json!({ "engagementId": engagement, "action": "stop" }).to_string();
    let calls = (0..50).map(|i| {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            other_base.clone()
        };
        let req = app
            .state
            .http
            .post(format!("{base}/api/zoom/rtms/control"))
            .header("content-type", "application/json")
            .header("cookie", cookie.clone())
            .body(body.clone());
        async move {
            let resp = req.send().await.expect("control");
            let code = resp.status();
            (code, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    for (code, body) in join_all(calls).await {
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let refreshes = refresh_grants(app) - refreshes_before;
    let ok = rest_calls(app, 204) - ok_before;
    println!(
        "[redis, 2 instances] 50 concurrent control calls: {refreshes} refresh grant(s), {ok} REST 204"
    );
    assert_eq!(refreshes, 1);
    assert_eq!(ok, 50);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("second instance stops")
        .expect("join")
        .expect("ran");
    rig.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_about_to_expire_is_refreshed_before_the_call() {
    let app = TestApp::spawn().await;
    let cookie = install(&app, None).await;
    let user = app.sim.default_user();
    let engagement = new_engagement(&app, None).await;
    let store = &app.state.store;
    let mut record = store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens");
    // Thirty seconds left: inside the refresh margin.
    record.expires_at_ms = zcc_rtms::time::now_ms() + 30_000;
    store.update_tokens(&record).await.expect("update");

    let rejected_before = rest_calls(&app, 401);
    let (code, body) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(refresh_grants(&app), 1, "refreshed ahead of expiry");
    assert_eq!(
        rest_calls(&app, 401),
        rejected_before,
        "no call was refused"
    );
    let fresh = store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens");
    assert_ne!(
        fresh.refresh_token, record.refresh_token,
        "rotated pair stored"
    );
    assert!(fresh.expires_at_ms > record.expires_at_ms + 60_000);
    app.shutdown().await;
}
