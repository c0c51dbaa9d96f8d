//! The simulator's OAuth: the code flow with and without PKCE, Zoom-shaped
//! errors, refresh-token rotation and access-token expiry.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use sha2::Digest as _;

use crate::support::sim::*;
use crate::support::zoom_http::*;

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
