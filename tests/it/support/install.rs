//! The browser's side of the OAuth install, done by hand (every redirect
//! followed explicitly, the session cookie carried along), against anything
//! that is `Ends`: an in-process `TestApp` or the real binary. Also the
//! simulator's fault switch and counters as these tests read them.

#![allow(dead_code)]

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::Value;

pub use super::ends::{Ends, new_engagement};

fn location(resp: &reqwest::Response) -> String {
    assert!(
        resp.status().is_redirection(),
        "expected a redirect, got {}",
        resp.status()
    );
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned()
}

/// The session cookie (`name=value`) set by a response, if any.
fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    cookie_named(resp, "zcc_session=")
}

/// A cookie (`name=value`) set by a response, if any (not a removal).
pub fn cookie_named(resp: &reqwest::Response, prefix: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(prefix) && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .filter(|pair| pair.len() > prefix.len())
        .map(str::to_owned)
}

/// Outcome of a callback: where the browser was sent and the cookie it got.
#[derive(Debug)]
pub struct Landing {
    pub location: String,
    pub cookie: Option<String>,
}

impl Landing {
    pub fn succeeded(&self) -> bool {
        self.location.contains("auth=success")
    }

    pub fn reason(&self) -> Option<String> {
        let url = url::Url::parse("http://x/")
            .expect("base")
            .join(&self.location)
            .expect("landing url");
        url.query_pairs()
            .find(|(k, _)| k == "reason")
            .map(|(_, v)| v.into_owned())
    }
}

/// `GET /api/auth/install` → Zoom's authorize URL (the browser's nonce
/// cookie is dropped: see [`begin_install_in`]).
pub async fn begin_install(app: &impl Ends) -> url::Url {
    begin_install_in(app).await.0
}

/// `GET /api/auth/install` → Zoom's authorize URL and the nonce cookie
/// (`name=value`) that ties its `state` to this browser.
pub async fn begin_install_in(app: &impl Ends) -> (url::Url, String) {
    let resp = app.get_as("/api/auth/install", None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "install redirects");
    let authorize = url::Url::parse(&location(&resp)).expect("authorize URL");
    assert!(authorize.as_str().starts_with(app.sim_base()));
    let nonce = cookie_named(&resp, "zcc_oauth=").expect("the install sets a nonce cookie");
    (authorize, nonce)
}

/// The user approves at the simulator's authorize page; returns the
/// callback path+query Zoom redirects the browser to.
pub async fn approve(app: &impl Ends, mut authorize: url::Url, sim_user: Option<&str>) -> String {
    if let Some(user) = sim_user {
        authorize.query_pairs_mut().append_pair("sim_user", user);
    }
    // The app's own client trusts the simulator's CA and follows no redirects.
    let resp = app.http().get(authorize).send().await.expect("authorize");
    let callback = url::Url::parse(&location_of(&resp)).expect("callback URL");
    assert_eq!(callback.path(), "/api/auth/callback");
    format!(
        "{}?{}",
        callback.path(),
        callback.query().expect("callback query")
    )
}

fn location_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("authorize answered {} without a redirect", resp.status()))
        .to_owned()
}

/// A browser with no cookies arrives at the app's callback.
pub async fn land(app: &impl Ends, callback: &str) -> Landing {
    land_in(app, callback, None).await
}

/// The browser arrives at the app's callback carrying `cookie`.
pub async fn land_in(app: &impl Ends, callback: &str, cookie: Option<&str>) -> Landing {
    let resp = app.get_as(callback, cookie).await;
    Landing {
        location: location(&resp),
        cookie: session_cookie(&resp),
    }
}

/// The whole web install for `sim_user` (default user when None); returns
/// the session cookie.
pub async fn install(app: &impl Ends, sim_user: Option<&str>) -> String {
    let (authorize, nonce) = begin_install_in(app).await;
    let callback = approve(app, authorize, sim_user).await;
    let landing = land_in(app, &callback, Some(&nonce)).await;
    assert!(landing.succeeded(), "install failed: {landing:?}");
    landing.cookie.expect("the install signs the browser in")
}

/// A code from a Zoom-initiated install (Marketplace "Add"): no state, no
/// PKCE; returns the callback path+query.
pub async fn zoom_initiated_callback(app: &impl Ends, sim_user: Option<&str>) -> String {
    let mut authorize =
        url::Url::parse(&format!("{}/oauth/authorize", app.sim_base())).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", app.client_id())
        .append_pair("redirect_uri", &redirect_uri(app));
    approve(app, authorize, sim_user).await
}

/// The redirect URI the app registers by default (no `PUBLIC_URL`).
pub fn redirect_uri(app: &impl Ends) -> String {
    let port = url::Url::parse(app.base())
        .expect("base")
        .port()
        .expect("port");
    format!("http://localhost:{port}/api/auth/callback")
}

/// `POST /sim/faults`.
pub async fn fault(app: &impl Ends, body: Value) {
    let resp = app
        .http()
        .post(format!("{}/sim/faults", app.sim_base()))
        .json(&body)
        .send()
        .await
        .expect("faults");
    assert!(
        resp.status().is_success(),
        "fault {body}: {}",
        resp.status()
    );
}

/// Refresh grants the simulator has answered.
pub fn refresh_grants(app: &impl Ends) -> u64 {
    app.sim().stats()["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap_or(0)
}

/// REST calls the simulator answered with `status`.
pub fn rest_calls(app: &impl Ends, status: u16) -> u64 {
    app.sim().stats()["rest_calls"][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}
