//! `TestApp`: the simulator and the app on port 0 with a fresh data dir, with
//! methods for what most tests do (GET, post a webhook, open the live feed);
//! the SSE reader, webhook signing, `eventually` and `on_both_stores!`.
//! Waits are bounded; nothing sleeps blindly.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zcc_rtms::config::{CredentialArgs, ServeArgs};
use zcc_rtms::{App, AppState, Config};
use zoom_sim::{SimConfig, SimHandle, Simulator};

pub const WAIT: Duration = Duration::from_secs(15);

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

pub fn init() {
    zcc_rtms::tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
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

    /// GET as the operator (sees everything), expecting JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.operator.get(self.url(path)).send().await.expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    /// `GET /metrics` as the operator: the exposition text.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .operator
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert!(
            resp.status().is_success(),
            "GET /metrics: {}",
            resp.status()
        );
        resp.text().await.expect("body")
    }

    /// POST a webhook body signed as Zoom signs it, timestamp now.
    pub async fn post_webhook(&self, event: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(event).expect("json");
        let ts = now_secs().to_string();
        self.post_webhook_raw(
            &body,
            &ts,
            &sign(self.sim_cfg.secret_token.expose(), &ts, &body),
        )
        .await
    }

    pub async fn post_webhook_raw(
        &self,
        body: &[u8],
        ts: &str,
        signature: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/webhooks/zoom"))
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

    /// Stop the app (and the simulator) and wait for both to finish.
    pub async fn shutdown(mut self) {
        self.stop_app().await;
        if let Some(tx) = self.sim_stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.sim_task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("simulator stops in time")
                .expect("join")
                .expect("simulator ran");
        }
    }

    pub async fn stop_app(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.app_task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("app stops in time")
                .expect("join")
                .expect("app ran");
        }
    }
}

pub struct Sse {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// One read of a feed: an event, the end of the stream (the server closed
/// it, or it broke), or nothing within the time given (still open).
#[derive(Debug)]
pub enum SseRead {
    Event(SseEvent),
    Ended,
    TimedOut,
}

/// For SSE: no overall timeout (the feed stays open), connect bounded.
pub fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(WAIT)
        .build()
        .expect("client")
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

impl Sse {
    /// Open as an anonymous caller (demo mode).
    pub async fn open(url: &str) -> Sse {
        Self::open_with(reqwest::Client::new().get(url)).await
    }

    /// Open with a prepared request (a cookie, a token); expects 200.
    pub async fn open_with(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.expect("SSE");
        assert_eq!(resp.status(), 200, "SSE refused");
        Self::from_response(resp)
    }

    pub fn from_response(resp: reqwest::Response) -> Sse {
        Sse {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event; None when the stream ended. Nothing within `WAIT`
    /// is a failure: the feed is open and silent.
    pub async fn next(&mut self) -> Option<SseEvent> {
        match self.read_within(WAIT).await {
            SseRead::Event(ev) => Some(ev),
            SseRead::Ended => None,
            SseRead::TimedOut => panic!("SSE: no event within {WAIT:?}"),
        }
    }

    /// The next event within `within`; None when the stream ended *or* the
    /// time passed. Use [`Sse::read_within`] when the difference matters.
    pub async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        match self.read_within(within).await {
            SseRead::Event(ev) => Some(ev),
            SseRead::Ended | SseRead::TimedOut => None,
        }
    }

    /// The next event, the end of the stream, or a timeout after `within`.
    pub async fn read_within(&mut self, within: Duration) -> SseRead {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return SseRead::Event(SseEvent { event, data });
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return SseRead::TimedOut,
                Ok(None | Some(Err(_))) => return SseRead::Ended,
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Skip events until one matches, within `WAIT`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_within(left).await {
                SseRead::Event(ev) if pred(&ev) => return ev,
                SseRead::Event(_) => continue,
                SseRead::Ended => panic!("SSE: the stream ended before {what}"),
                SseRead::TimedOut => panic!("SSE: no {what} within {WAIT:?}"),
            }
        }
    }

    /// Wait for a status line with exactly this message.
    pub async fn wait_for_status(&mut self, message: &str) -> SseEvent {
        self.wait_for(message, |ev| {
            ev.event == "status" && ev.data["message"] == message
        })
        .await
    }
}

/// `x-zm-signature` for `body` sent at `ts` (any text: tests sign bad
/// timestamps too), made as Zoom makes it — by the simulator's signer, which
/// is written apart from the app's verifier (`zoom_sim::sign`).
pub fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    zoom_sim::sign::webhook_signature_at(secret, ts, body)
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Poll `check` every 20 ms until it returns Some, within `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One test per store backend: for each `name`, `name::embedded` and
/// `name::redis`, each calling `name(setup(Kind::…).await)` on a
/// multi-threaded runtime. `setup` defaults to `Rig::spawn` (the app and
/// the simulator on that store) and `workers` to 2:
///
/// `on_both_stores!(a, b)`, `on_both_stores!(workers = 4; a)`,
/// `on_both_stores!(setup = Fixture::new; a)` (paths as seen from the
/// calling module).
macro_rules! on_both_stores {
    (setup = $setup:path, workers = $workers:tt; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn embedded() {
                super::$name($setup($crate::store::Kind::Embedded).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn redis() {
                super::$name($setup($crate::store::Kind::Redis).await).await;
            }
        }
    )*};
    (setup = $setup:path; $($name:ident),* $(,)?) => {
        $crate::helpers::on_both_stores!(setup = $setup, workers = 2; $($name),*);
    };
    (workers = $workers:tt; $($name:ident),* $(,)?) => {
        $crate::helpers::on_both_stores!(
            setup = $crate::auth_harness::Rig::spawn, workers = $workers; $($name),*
        );
    };
    ($($name:ident),* $(,)?) => {
        $crate::helpers::on_both_stores!(workers = 2; $($name),*);
    };
}
pub(crate) use on_both_stores;
