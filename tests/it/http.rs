//! Security headers, health, the page and the seed-compatible lists.

use crate::support::TestApp;

fn assert_security_headers(resp: &reqwest::Response, sdk_origin: &str) {
    let h = resp.headers();
    let csp = h
        .get("content-security-policy")
        .expect("CSP")
        .to_str()
        .expect("ascii");
    for part in [
        "default-src 'none'",
        "object-src 'none'",
        "worker-src 'none'",
        "connect-src 'self'",
        "font-src 'self'",
        "img-src 'self'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(part), "CSP lacks {part}: {csp}");
    }
    assert!(
        csp.contains(&format!("script-src 'self' {sdk_origin}")),
        "script-src follows the SDK origin: {csp}"
    );
    assert!(!csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("referrer-policy"));
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["cross-origin-embedder-policy"], "require-corp");
    assert!(!h.contains_key("x-frame-options"));
}

#[tokio::test]
async fn page_and_api_responses_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    let sdk_origin = app.sim_base.clone();
    for path in [
        "/",
        "/health",
        "/api/webhooks/events",
        "/api/engagement/active",
        "/no/such/route",
    ] {
        let resp = app.get(path).await;
        assert_security_headers(&resp, &sdk_origin);
    }
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("body");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("style="), "no inline style");
    app.shutdown().await;
}

#[tokio::test]
async fn health_reports_mode_and_unknown_routes_get_json_404() {
    let app = TestApp::spawn().await;
    let health = app.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "zoom");
    let ready = app.ready().await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "embedded");
    let missing = app.get("/api/nope").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("reason")
            .contains("/api/nope")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn seed_lists_start_empty_in_their_shapes() {
    let app = TestApp::spawn().await;
    let events = app.status_events(None).await;
    assert!(events["events"].as_array().expect("array").is_empty());
    let active = app.active().await;
    assert_eq!(active["active"], false);
    assert!(active["engagementId"].is_null());
    app.shutdown().await;
}
