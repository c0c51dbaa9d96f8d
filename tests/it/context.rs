//! `GET /api/context`: the app context binds the browser session; anything
//! forged, expired, truncated or tampered is a 401 with a reason and leaves
//! the session as it was. Contexts are made here with an encoder of our own
//! (not the app's), keyed with the simulator's client secret.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use axum_extra::extract::PrivateCookieJar;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use zcc_rtms::http::session::{self, SessionData};

use crate::support::TestApp;
use crate::support::ends::Ends as _;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    crate::support::now_secs() * 1000
}

/// Encrypt `claims` as Zoom does (docs/zoom-platform.md §2.2), base64url.
fn seal(secret: &str, claims: &Value) -> Vec<u8> {
    let key = Sha256::digest(secret.as_bytes());
    let iv: [u8; 12] = rand::random();
    let aad = b"";
    let mut buf = claims.to_string().into_bytes();
    let tag = AesGcm::<Aes256, U12>::new(&key)
        .encrypt_in_place_detached(Nonce::<U12>::from_slice(&iv), aad, &mut buf)
        .expect("encrypt");
    let mut out = vec![12u8];
    out.extend_from_slice(&iv);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(buf.len() as u32).to_le_bytes());
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    out
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(app: &TestApp, user: &str, exp: i64) -> Value {
    json!({
        "typ": "panel",
        "uid": user,
        "aud": app.sim_cfg.client_id,
        "iss": "marketplace.zoom.us",
        "ts": exp - 120_000,
        "exp": exp,
        "entitlements": [],
    })
}

fn token_for(app: &TestApp, user: &str) -> String {
    b64url(&seal(
        app.sim_cfg.client_secret.expose(),
        &claims(app, user, now_ms() + 120_000),
    ))
}

async fn get_context(app: &TestApp, token: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url("/api/context"))
        .query(&[("token", token)]);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.expect("GET /api/context")
}

fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_valid_app_context_binds_a_same_site_none_secure_session_cookie() {
    let app = TestApp::spawn().await;
    let resp = get_context(&app, &token_for(&app, "agent-1"), None).await;
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp).expect("a session cookie");
    assert!(cookie.starts_with("zcc_session="), "{cookie}");
    assert!(cookie.contains("SameSite=None"), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains("HttpOnly"), "{cookie}");
    assert!(
        !cookie.contains("agent-1"),
        "the cookie is encrypted: {cookie}"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["userId"], "agent-1");
    assert!(body["accountId"].is_null(), "{body}");
    assert!(body["expiresAt"].as_i64().expect("expiresAt") > now_ms());
    app.shutdown().await;
}

#[tokio::test]
async fn the_standard_base64_alphabet_and_the_header_are_accepted_but_the_header_is_not_required() {
    let app = TestApp::spawn().await;
    let raw = seal(
        app.sim_cfg.client_secret.expose(),
        &claims(&app, "agent-2", now_ms() + 60_000),
    );
    let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
    let resp = get_context(&app, &standard, None).await;
    assert_eq!(resp.status(), 200);

    let resp = app
        .client
        .get(app.url("/api/context"))
        .header("x-zoom-app-context", b64url(&raw))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn forged_expired_truncated_and_tampered_contexts_get_401_with_a_reason_and_no_cookie() {
    let app = TestApp::spawn().await;
    let secret = app.sim_cfg.client_secret.expose().to_owned();
    let good = seal(&secret, &claims(&app, "agent-3", now_ms() + 120_000));
    let mut tampered = good.clone();
    let i = tampered.len() - 20;
    tampered[i] ^= 0x04;
    let mut other_app = claims(&app, "agent-3", now_ms() + 120_000);
    other_app["aud"] = json!("someone-else");
    let mut bad_issuer = claims(&app, "agent-3", now_ms() + 120_000);
    bad_issuer["iss"] = json!("evil.example");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged with another secret",
            b64url(&seal(
                "not-the-secret",
                &claims(&app, "agent-3", now_ms() + 120_000),
            )),
            "failed authentication",
        ),
        (
            "expired",
            b64url(&seal(&secret, &claims(&app, "agent-3", now_ms() - 1))),
            "expired",
        ),
        ("truncated tag", b64url(&good[..good.len() - 4]), "16"),
        ("truncated body", b64url(&good[..10]), "truncated"),
        ("tampered", b64url(&tampered), "failed authentication"),
        (
            "for another app",
            b64url(&seal(&secret, &other_app)),
            "another app",
        ),
        (
            "bad issuer",
            b64url(&seal(&secret, &bad_issuer)),
            "Marketplace",
        ),
        ("not base64", "%%%not-base64%%%".to_owned(), "base64"),
    ];
    for (what, token, reason) in cases {
        let resp = get_context(&app, &token, None).await;
        assert_eq!(resp.status(), 401, "{what}");
        assert!(set_cookie(&resp).is_none(), "{what}: no cookie on refusal");
        let body: Value = resp.json().await.expect("json");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {body}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_refused_context_leaves_an_existing_session_unchanged() {
    let app = TestApp::spawn().await;
    let resp = get_context(&app, &token_for(&app, "agent-4"), None).await;
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp).expect("cookie");
    let pair = cookie.split(';').next().expect("name=value").to_owned();

    let expired = b64url(&seal(
        app.sim_cfg.client_secret.expose(),
        &claims(&app, "intruder", now_ms() - HOUR_MS),
    ));
    let resp = get_context(&app, &expired, Some(&pair)).await;
    assert_eq!(resp.status(), 401);
    assert!(
        set_cookie(&resp).is_none(),
        "the session cookie is untouched"
    );

    // The same cookie still identifies agent-4 to the page's later calls:
    // a second valid context for agent-4 re-binds without trouble.
    let resp = get_context(&app, &token_for(&app, "agent-4"), Some(&pair)).await;
    assert_eq!(resp.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_missing_token_is_a_400_with_a_reason() {
    let app = TestApp::spawn().await;
    let resp = app.get("/api/context").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("token"),
        "{body}"
    );
    let resp = app
        .client
        .get(app.url("/api/context"))
        .query(&[("token", "A".repeat(20_000))])
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 401);
    app.shutdown().await;
}

/// A session cookie as the app would set it (the install callback does).
fn session_cookie(app: &TestApp, data: &SessionData) -> String {
    use axum::response::IntoResponse as _;
    let jar = PrivateCookieJar::new(app.state.cookie_key.clone()).add(session::cookie(data));
    let resp = (jar, ()).into_response();
    let header = resp.headers()["set-cookie"].to_str().expect("ascii");
    header.split(';').next().expect("name=value").to_owned()
}

fn read_session(app: &TestApp, set_cookie: &str) -> Option<SessionData> {
    let pair = set_cookie.split(';').next()?;
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", pair.parse().ok()?);
    session::read(&PrivateCookieJar::from_headers(
        &headers,
        app.state.cookie_key.clone(),
    ))
}

#[tokio::test]
async fn the_session_keeps_its_account_for_the_same_user_and_drops_it_for_another() {
    let app = TestApp::spawn().await;
    let installed = session_cookie(
        &app,
        &SessionData {
            user_id: "agent-5".into(),
            account_id: Some("acct-5".into()),
            expires_at_ms: now_ms() + HOUR_MS,
        },
    );

    let resp = get_context(&app, &token_for(&app, "agent-5"), Some(&installed)).await;
    assert_eq!(resp.status(), 200);
    let same = read_session(&app, &set_cookie(&resp).expect("cookie")).expect("session");
    assert_eq!(same.user_id, "agent-5");
    assert_eq!(same.account_id.as_deref(), Some("acct-5"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["accountId"], "acct-5");

    let resp = get_context(&app, &token_for(&app, "agent-6"), Some(&installed)).await;
    assert_eq!(resp.status(), 200);
    let other = read_session(&app, &set_cookie(&resp).expect("cookie")).expect("session");
    assert_eq!(other.user_id, "agent-6");
    assert_eq!(other.account_id, None);
    app.shutdown().await;
}

#[tokio::test]
async fn contexts_made_by_the_simulator_decrypt_and_bind_its_agent() {
    let app = TestApp::spawn().await;
    let user = app.sim.default_user();
    let (id, secret) = (
        app.sim_cfg.client_id.clone(),
        app.sim_cfg.client_secret.expose().to_owned(),
    );
    // Many vectors: each has a fresh IV.
    for _ in 0..50 {
        let token = app.sim.app_context(&user.user_id);
        let ctx = zcc_rtms::context::verify(&token, &id, &secret, now_ms())
            .unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(ctx.user_id(), user.user_id);
        assert!(ctx.expires_at_ms() > now_ms());
    }
    let resp = get_context(&app, &app.sim.app_context(&user.user_id), None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["userId"], user.user_id.as_str());
    app.shutdown().await;
}

#[tokio::test]
async fn the_simulators_tampered_context_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.sim.default_user();
    app.sim
        .apply_faults(zoom_sim::FaultRequest {
            tamper_next_app_context: Some(true),
            ..Default::default()
        })
        .expect("fault applied");
    let tampered = app.sim.app_context(&user.user_id);
    let resp = get_context(&app, &tampered, None).await;
    assert_eq!(resp.status(), 401);
    assert!(set_cookie(&resp).is_none());
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("failed authentication"),
        "{body}"
    );
    // One-shot: the next one is fine again.
    let resp = get_context(&app, &app.sim.app_context(&user.user_id), None).await;
    assert_eq!(resp.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_context_in_a_browser_that_never_installed_finds_the_users_account() {
    let app = TestApp::spawn().await;
    // The agent installed the app elsewhere (the system browser).
    let _elsewhere = crate::support::install::install(&app, None).await;
    let user = app.sim.default_user();
    // Zoom's webview: no cookie, only the app context.
    let resp = get_context(&app, &token_for(&app, &user.user_id), None).await;
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp).expect("session cookie");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["accountId"], user.account_id.as_str());
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let engagement = crate::support::install::new_engagement(&app, None).await;
    let (status, answer) = app.start_rtms(Some(&pair), &engagement).await;
    assert_eq!(status, 200, "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn active_engagements_are_the_callers_own_once_the_browser_has_a_session() {
    let app = TestApp::spawn().await;
    let ann = app.sim.default_user();
    let bob = app.sim.create_user();
    let for_ann = app
        .sim
        .create_engagement_for(&ann.user_id)
        .await
        .expect("ann's");
    let for_bob = app
        .sim
        .create_engagement_for(&bob.user_id)
        .await
        .expect("bob's");
    crate::support::eventually("both engagements tracked", || async {
        let v = app.active().await;
        (v["engagements"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let resp = get_context(&app, &app.sim.app_context(&ann.user_id), None).await;
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(&resp).expect("session");
    let pair = cookie.split(';').next().expect("pair");
    let mine: Value = app
        .get_as("/api/engagement/active", Some(pair))
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = mine["engagements"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["engagement_id"].as_str())
        .collect();
    assert_eq!(ids, [for_ann.as_str()], "not {for_bob}");
    assert_eq!(mine["engagementId"], for_ann.as_str());
    app.shutdown().await;
}
