//! `TestApp`: the simulator and the app on port 0 with a fresh data dir,
//! started and stopped in this process, with one method per route the tests
//! call (GET, post a webhook, open the live feed, …). Owns the app's
//! clients (anonymous, operator); never a second instance (`rig`) or the
//! real binary (`binary`). Waits are bounded; nothing sleeps blindly.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zcc_rtms::config::{CredentialArgs, ServeArgs};
use zcc_rtms::{App, AppState, Config};
use zoom_sim::{SimConfig, SimHandle, Simulator};

use super::sse::{Sse, streaming_client};
use super::{WAIT, init, now_secs, sign};

pub struct TestApp {
    pub base: String,
    /// Anonymous: no cookie, no token.
    pub client: reqwest::Client,
    /// Sends the operator token (`ADMIN_TOKEN`): sees everything.
    pub operator: reqwest::Client,
    /// The operator token (empty in demo mode).
    pub admin_token: String,
    pub sim: SimHandle,
    pub sim_base: String,
    pub sim_cfg: SimConfig,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    app_task: Option<JoinHandle<anyhow::Result<()>>>,
    sim_stop: Option<oneshot::Sender<()>>,
    sim_task: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Clone)]
pub struct Options {
    pub tls: bool,
    pub keepalive: Duration,
    pub tweak: fn(&mut ServeArgs),
    /// Zoom's Apps SDK for the simulator to serve (see `appssdk`); None
    /// serves its stand-in.
    pub apps_sdk: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: true,
            keepalive: Duration::from_secs(10),
            tweak: |_| {},
            apps_sdk: None,
        }
    }
}

/// `Options::tweak` for recording on: `RECORDINGS_DIR` under the data dir.
pub fn with_recordings(args: &mut ServeArgs) {
    args.recordings_dir = args.data_dir.as_ref().map(|d| d.join("recordings"));
}

fn stopper() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        init();
        let mut sim_cfg = SimConfig::generated();
        sim_cfg.tls = opts.tls;
        sim_cfg.keepalive = opts.keepalive;
        sim_cfg.apps_sdk = opts.apps_sdk.clone();
        sim_cfg.webhook_retry = vec![Duration::from_millis(50), Duration::from_millis(100)];
        let sim = Simulator::build(sim_cfg.clone()).await.expect("simulator");
        let sim_base = sim.base_url().as_str().trim_end_matches('/').to_owned();
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut args = ServeArgs {
            credentials: CredentialArgs {
                client_id: Some(sim_cfg.client_id.clone()),
                client_secret: Some(sim_cfg.client_secret.expose().to_owned()),
                secret_token: Some(sim_cfg.secret_token.expose().to_owned()),
            },
            port: Some("0".into()),
            bind: Some("127.0.0.1".into()),
            zoom_host: Some(sim_base.clone()),
            zoom_api_url: Some(format!("{sim_base}/v2")),
            zoom_ca_cert: sim.ca_cert_path().map(Into::into),
            apps_sdk_url: Some(format!("{sim_base}/sim/appssdk.js")),
            session_secret: Some(zcc_rtms::util::random_hex(32)),
            token_encryption_key: Some(zcc_rtms::util::random_hex(32)),
            admin_token: Some(zcc_rtms::util::random_hex(24)),
            data_dir: Some(data_dir.path().to_owned()),
            ..ServeArgs::default()
        };
        (opts.tweak)(&mut args);
        let config = Config::from_args(&args).expect("config");
        Self::start(config, Some((sim, sim_cfg)), data_dir).await
    }

    /// Demo mode: no credentials at all.
    pub async fn spawn_demo() -> TestApp {
        init();
        let data_dir = tempfile::tempdir().expect("tempdir");
        let args = ServeArgs {
            port: Some("0".into()),
            bind: Some("127.0.0.1".into()),
            data_dir: Some(data_dir.path().to_owned()),
            ..ServeArgs::default()
        };
        let config = Config::from_args(&args).expect("config");
        Self::start(config, None, data_dir).await
    }

    async fn start(
        config: Config,
        sim: Option<(Simulator, SimConfig)>,
        data_dir: tempfile::TempDir,
    ) -> TestApp {
        let app = App::build(config).await.expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.local_addr().port());
        let state = app.state().clone();
        let (sim_handle, sim_base, sim_cfg, sim_stop, sim_task) = match sim {
            Some((sim, cfg)) => {
                let handle = sim.handle();
                handle.set_app_url(url::Url::parse(&base).expect("url"));
                let sim_base = sim.base_url().as_str().trim_end_matches('/').to_owned();
                let (tx, stop) = stopper();
                let task = tokio::spawn(sim.run_until_stopped(stop));
                (handle, sim_base, cfg, Some(tx), Some(task))
            }
            None => {
                let sim = app.simulator().expect("demo mode has a simulator");
                let handle = sim.handle();
                let sim_base = sim.base_url().as_str().trim_end_matches('/').to_owned();
                (handle, sim_base, SimConfig::generated(), None, None)
            }
        };
        let (stop, shutdown) = stopper();
        let app_task = tokio::spawn(app.run_until_stopped(shutdown));
        let admin_token = state
            .config
            .access
            .admin_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        TestApp {
            base,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(WAIT)
                .build()
                .expect("client"),
            operator: operator_client(&admin_token),
            admin_token,
            sim: sim_handle,
            sim_base,
            sim_cfg,
            state,
            data_dir,
            stop: Some(stop),
            app_task: Some(app_task),
            sim_stop,
            sim_task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET as an anonymous caller.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET as the operator (sees everything), whatever the answer.
    pub async fn operator_get(&self, path: &str) -> reqwest::Response {
        self.operator
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET as the operator, expecting a success.
    async fn operator_ok(&self, path: &str) -> reqwest::Response {
        let resp = self.operator_get(path).await;
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp
    }

    /// GET as the operator (sees everything), expecting JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.operator_ok(path).await.json().await.expect("json")
    }

    /// `GET /metrics` as the operator: the exposition text.
    pub async fn metrics_text(&self) -> String {
        self.operator_ok("/metrics")
            .await
            .text()
            .await
            .expect("body")
    }

    /// `GET /health` (anyone).
    pub async fn health(&self) -> Value {
        self.get_json("/health").await
    }

    /// `GET /ready` (anyone), expecting 200.
    pub async fn ready(&self) -> Value {
        self.get_json("/ready").await
    }

    /// `GET /api/engagement/active` as the operator.
    pub async fn active(&self) -> Value {
        self.get_json("/api/engagement/active").await
    }

    /// The engagement ids in the operator's `/api/engagement/active` list.
    pub async fn active_ids(&self) -> Vec<String> {
        self.active().await["engagements"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["engagement_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `GET /api/webhooks/events` (the status lines, newest first) as the
    /// operator: every line, or one engagement's.
    pub async fn status_events(&self, engagement_id: Option<&str>) -> Value {
        match engagement_id {
            Some(id) => {
                self.get_json(&format!("/api/webhooks/events?engagement_id={id}"))
                    .await
            }
            None => self.get_json("/api/webhooks/events").await,
        }
    }

    /// The messages of [`TestApp::status_events`], newest first.
    pub async fn status_messages(&self, engagement_id: Option<&str>) -> Vec<String> {
        messages(&self.status_events(engagement_id).await)
    }

    /// `GET /api/stats` as the operator.
    pub async fn stats(&self) -> Value {
        self.get_json("/api/stats").await
    }

    /// `GET /api/recordings?engagement_id=…` as the operator.
    pub async fn recordings(&self, engagement_id: &str) -> reqwest::Response {
        self.operator_get(&format!("/api/recordings?engagement_id={engagement_id}"))
            .await
    }

    /// `GET /api/recordings/{engagement_id}/{file}` as the operator, by the
    /// `url` a listing gave.
    pub async fn recording_file(&self, url: &str) -> reqwest::Response {
        self.operator_get(url).await
    }

    /// POST a webhook body signed as Zoom signs it, timestamp now.
    pub async fn post_webhook(&self, event: &Value) -> reqwest::Response {
        self.post_webhook_at(&self.base, event).await
    }

    /// [`TestApp::post_webhook`] to the instance at `base` (another one on
    /// the same simulator).
    pub async fn post_webhook_at(&self, base: &str, event: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(event).expect("json");
        let ts = now_secs().to_string();
        let signature = sign(self.sim_cfg.secret_token.expose(), &ts, &body);
        self.post_webhook_raw_at(base, &body, &ts, &signature).await
    }

    /// `POST /api/webhooks/zoom` with any body, timestamp and signature.
    pub async fn post_webhook_raw(
        &self,
        body: &[u8],
        ts: &str,
        signature: &str,
    ) -> reqwest::Response {
        self.post_webhook_raw_at(&self.base, body, ts, signature)
            .await
    }

    async fn post_webhook_raw_at(
        &self,
        base: &str,
        body: &[u8],
        ts: &str,
        signature: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/webhooks/zoom"))
            .header("content-type", "application/json; charset=utf-8")
            .header("x-zm-request-timestamp", ts)
            .header("x-zm-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("POST webhook")
    }

    /// Open the SSE feed as the operator.
    pub async fn events(&self, engagement_id: Option<&str>) -> Sse {
        let path = match engagement_id {
            Some(id) => format!("/api/events?engagement_id={id}"),
            None => "/api/events".to_owned(),
        };
        let mut req = streaming_client().get(self.url(&path));
        if !self.admin_token.is_empty() {
            req = req.bearer_auth(&self.admin_token);
        }
        Sse::open_with(req).await
    }

    /// Open the SSE feed as the browser holding `cookie` (the session
    /// cookie's `name=value`).
    pub async fn events_as(&self, cookie: &str) -> Sse {
        Sse::open_with(
            streaming_client()
                .get(self.url("/api/events"))
                .header(reqwest::header::COOKIE, cookie),
        )
        .await
    }

    /// Stop the app (and the simulator) and wait for both to finish.
    pub async fn shutdown(mut self) {
        self.stop_app().await;
        if let Some(tx) = self.sim_stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.sim_task.take() {
            join(task, "simulator").await;
        }
    }

    pub async fn stop_app(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.app_task.take() {
            join(task, "app").await;
        }
    }
}

/// Wait (bounded) for a stopped server's task; it must have run cleanly.
async fn join(task: JoinHandle<anyhow::Result<()>>, what: &str) {
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap_or_else(|_| panic!("{what} stops in time"))
        .expect("join")
        .unwrap_or_else(|e| panic!("{what} ran: {e:#}"));
}

/// A client that sends `Authorization: Bearer <token>` (none when empty).
pub fn operator_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if !token.is_empty() {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The `message`s of a `/api/webhooks/events` answer, in its order.
pub fn messages(events: &Value) -> Vec<String> {
    events["events"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
