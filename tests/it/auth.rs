//! The OAuth install against the simulator: web flow with state + PKCE,
//! Zoom-initiated (state-less) installs, replays, in-client OAuth, status,
//! and demo mode's automatic install. Key flows run on both stores.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::install::*;
use crate::support::rig::Rig;
use crate::support::{TestApp, eventually, on_both_stores};

on_both_stores!(
    full_web_install_authenticates_the_account,
    a_zoom_initiated_install_without_state_is_accepted_and_its_code_cannot_be_replayed,
);

async fn full_web_install_authenticates_the_account(rig: Rig) {
    let app = &rig.app;
    let before = app.auth_status(None).await;
    assert_eq!(before["authenticated"], false);
    assert_eq!(before["needsContext"], true, "{before}");
    assert_eq!(before["mode"], "zoom");
    assert_eq!(before["installUrl"], "/api/auth/install");

    let (authorize, nonce) = begin_install_in(app).await;
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], app.sim_cfg.client_id);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q.contains_key("state"));
    assert!(!q.contains_key("scope"), "Zoom rejects scopes in the URL");

    let callback = approve(app, authorize, None).await;
    let landing = land_in(app, &callback, Some(&nonce)).await;
    assert!(landing.succeeded(), "{landing:?}");
    assert_eq!(landing.location, "/?auth=success");
    let cookie = landing.cookie.expect("signed in");

    let user = app.sim.default_user();
    let after = app.auth_status(Some(&cookie)).await;
    assert_eq!(after["authenticated"], true, "{after}");
    assert_eq!(after["needsAuth"], false);
    assert_eq!(after["accountId"], user.account_id.as_str());
    assert_eq!(after["userId"], user.user_id.as_str());
    let stored = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("load")
        .expect("tokens stored before the redirect");
    assert!(!stored.needs_auth);
    rig.app.shutdown().await;
}

async fn a_zoom_initiated_install_without_state_is_accepted_and_its_code_cannot_be_replayed(
    rig: Rig,
) {
    let app = &rig.app;
    let callback = zoom_initiated_callback(app, None).await;
    assert!(!callback.contains("state="), "{callback}");
    let first = land(app, &callback).await;
    assert!(first.succeeded(), "{first:?}");
    // The tokens are stored, but the browser is not signed in by it.
    assert!(first.cookie.is_none(), "{first:?}");
    let user = app.sim.default_user();
    assert!(
        app.state
            .store
            .load_tokens(&user.account_id, &user.user_id)
            .await
            .expect("load")
            .is_some(),
        "tokens stored"
    );

    let replay = land(app, &callback).await;
    assert!(!replay.succeeded());
    assert_eq!(replay.reason().as_deref(), Some("code_rejected"));
    assert!(replay.cookie.is_none());
    rig.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_a_forged_state_is_rejected_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let authorize = begin_install(&app).await;
    let callback = approve(&app, authorize, None).await;
    let mut url = url::Url::parse(&format!("http://x{callback}")).expect("url");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(k, v)| {
            if k == "state" {
                (k.clone(), format!("{v}x"))
            } else {
                (k.clone(), v.clone())
            }
        }));
    let forged = format!("{}?{}", url.path(), url.query().expect("query"));
    let landing = land(&app, &forged).await;
    assert_eq!(landing.reason().as_deref(), Some("invalid_state"));
    assert!(landing.cookie.is_none());
    let user = app.sim.default_user();
    assert!(
        app.state
            .store
            .load_account_tokens(&user.account_id, None)
            .await
            .expect("load")
            .is_none()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_returned_with_another_installs_state_is_rejected() {
    let app = TestApp::spawn().await;
    let first = begin_install(&app).await;
    let (second, nonce_of_second) = begin_install_in(&app).await;
    let code_of_first = approve(&app, first, None).await;
    let state_of_second = second
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let code = url::Url::parse(&format!("http://x{code_of_first}"))
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let mixed = format!(
        "/api/auth/callback?code={}&state={}",
        urlencode(&code),
        urlencode(&state_of_second)
    );
    let landing = land_in(&app, &mixed, Some(&nonce_of_second)).await;
    // The second install's PKCE verifier does not match the first's challenge.
    assert_eq!(landing.reason().as_deref(), Some("code_rejected"));
    app.shutdown().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_is_rejected() {
    let app = TestApp::spawn().await;
    let (authorize, nonce) = begin_install_in(&app).await;
    let callback = approve(&app, authorize, None).await;
    assert!(land_in(&app, &callback, Some(&nonce)).await.succeeded());
    let replay = land_in(&app, &callback, Some(&nonce)).await;
    assert_eq!(replay.reason().as_deref(), Some("state_used"));
    assert!(replay.cookie.is_none());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_without_a_code_or_with_a_zoom_error_land_with_a_reason() {
    let app = TestApp::spawn().await;
    for (path, reason) in [
        ("/api/auth/callback", "missing_code"),
        ("/api/auth/callback?error=access_denied", "access_denied"),
        ("/api/auth/callback?error=server_error", "zoom_error"),
        ("/api/auth/callback?code=&state=", "missing_code"),
        ("/api/auth/callback?code=abc&state=garbage", "invalid_state"),
        ("/api/auth/callback?code=abc", "code_rejected"),
    ] {
        let landing = land(&app, path).await;
        assert_eq!(landing.reason().as_deref(), Some(reason), "{path}");
        assert!(landing.cookie.is_none());
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_client_oauth_exchanges_the_code_with_the_stored_verifier_once() {
    let app = TestApp::spawn().await;
    let resp = app.get_as("/api/auth/challenge", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let nonce = cookie_named(&resp, "zcc_oauth=").expect("the challenge ties its state");
    let ch: Value = resp.json().await.expect("json");
    assert_eq!(ch["codeChallengeMethod"], "plain");
    let challenge = ch["codeChallenge"].as_str().expect("challenge");
    let state = ch["state"].as_str().expect("state");

    // What zoomSdk.authorize does inside the client, then onAuthorized.
    let redirect = format!("{}/zoom-home", app.base);
    let mut authorize = url::Url::parse(&format!("{}/oauth/authorize", app.sim_base)).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.sim_cfg.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "plain");
    let back = app
        .state
        .http
        .get(authorize)
        .send()
        .await
        .expect("authorize");
    let back = url::Url::parse(
        back.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("redirect"),
    )
    .expect("url");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");

    let body = json!({ "code": code, "state": state, "redirectUri": redirect });
    let exchange = |body: Value| {
        app.state
            .http
            .post(app.url("/api/auth/exchange"))
            .header("cookie", &nonce)
            .json(&body)
            .send()
    };
    let resp = exchange(body.clone()).await.expect("exchange");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap_or("").starts_with("zcc_session="))
    );
    let ok: Value = resp.json().await.expect("json");
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["accountId"], app.sim.default_user().account_id.as_str());

    let replay = exchange(body).await.expect("exchange");
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let reason: Value = replay.json().await.expect("json");
    assert!(
        reason["error"]
            .as_str()
            .unwrap_or("")
            .contains("already used"),
        "{reason}"
    );
    for bad in [
        json!({}),
        json!({ "code": "x", "state": "forged.1.sig" }),
        json!({ "code": "", "state": state }),
    ] {
        let resp = exchange(bad.clone()).await.expect("exchange");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let bad_method = app.get_as("/api/auth/challenge?method=md5", None).await;
    assert_eq!(bad_method.status(), StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_installs_itself_on_the_simulator_with_a_real_oauth_flow() {
    let app = TestApp::spawn_demo().await;
    let st = eventually("the demo install", || async {
        let st = app.auth_status(None).await;
        (st["authenticated"] == true).then_some(st)
    })
    .await;
    assert_eq!(st["mode"], "demo");
    assert_eq!(st["accountId"], app.sim.default_user().account_id.as_str());
    let stats = app.sim.stats();
    assert_eq!(stats["token_requests"]["authorization_code"], 1, "{stats}");
    app.shutdown().await;
}
