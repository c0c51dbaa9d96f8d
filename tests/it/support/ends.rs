//! `Ends`: an app under test as a browser reaches it (an in-process
//! `TestApp` or the real binary), with one method per route a signed-in
//! browser calls — its session cookie, or none, carried along, no redirect
//! followed. Requests that are themselves the point of a test (cross-site,
//! malformed, raw) are built by that test. Also `new_engagement`, which
//! returns once the app knows the engagement.

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use super::{TestApp, eventually};

/// An app under test as a browser reaches it: an in-process `TestApp` or
/// the real binary. The provided methods are the routes a browser calls.
pub trait Ends {
    /// `http://127.0.0.1:PORT` of the app.
    fn base(&self) -> &str;
    fn sim_base(&self) -> &str;
    /// Trusts the simulator's CA; follows no redirects.
    fn http(&self) -> &reqwest::Client;
    fn client_id(&self) -> &str;
    fn sim(&self) -> &zoom_sim::SimHandle;
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }
    /// Whether the app has recorded the engagement (its webhook was handled).
    async fn engagement_known(&self, engagement_id: &str) -> bool;

    /// GET as a browser with an optional session cookie.
    async fn get_as(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http().get(self.url(path));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.expect("GET")
    }

    /// `GET /api/auth/status`: the caller's own session, expecting 200.
    async fn auth_status(&self, cookie: Option<&str>) -> Value {
        let resp = self.get_as("/api/auth/status", cookie).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("status json")
    }

    /// `POST /api/zoom/rtms/control` with `{engagementId, action}`: the
    /// answer's status and JSON body (Null when it has none).
    async fn control(
        &self,
        cookie: Option<&str>,
        engagement_id: &str,
        action: &str,
    ) -> (StatusCode, Value) {
        self.control_raw(
            cookie,
            json!({ "engagementId": engagement_id, "action": action })
                .to_string()
                .into_bytes(),
        )
        .await
    }

    /// The control route's `start`.
    async fn start_rtms(&self, cookie: Option<&str>, engagement_id: &str) -> (StatusCode, Value) {
        self.control(cookie, engagement_id, "start").await
    }

    /// The control route's `stop`.
    async fn stop_rtms(&self, cookie: Option<&str>, engagement_id: &str) -> (StatusCode, Value) {
        self.control(cookie, engagement_id, "stop").await
    }

    /// `POST /api/zoom/rtms/control` with any body, as JSON from the same
    /// origin as far as headers go.
    async fn control_raw(&self, cookie: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self
            .http()
            .post(self.url("/api/zoom/rtms/control"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.expect("control");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl Ends for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
    fn sim_base(&self) -> &str {
        &self.sim_base
    }
    fn http(&self) -> &reqwest::Client {
        &self.state.http
    }
    fn client_id(&self) -> &str {
        &self.sim_cfg.client_id
    }
    fn sim(&self) -> &zoom_sim::SimHandle {
        &self.sim
    }
    async fn engagement_known(&self, engagement_id: &str) -> bool {
        matches!(
            self.state.store.load_engagement(engagement_id).await,
            Ok(Some(_))
        )
    }
}

/// A new engagement assigned to `user` (the simulator's default user when
/// None), returned once the app has recorded it: control is only for the
/// engagement's own agent, which the app learns from `engagement_started`.
pub async fn new_engagement(app: &impl Ends, user: Option<&str>) -> String {
    let id = match user {
        Some(u) => app.sim().create_engagement_for(u).await,
        None => app.sim().create_engagement().await,
    }
    .expect("engagement");
    eventually("the app records the engagement", || async {
        app.engagement_known(&id).await.then_some(())
    })
    .await;
    id
}
