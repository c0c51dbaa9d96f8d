//! A local Zoom: OAuth, REST, signed webhooks, the RTMS signaling and media
//! WebSocket servers, the simulated web client with the Zoom Apps SDK (Zoom's
//! own from npm, or a stand-in), fault switches and counters. Used by the
//! tests, by demo mode and by `zcc-rtms simulate`.
//!
//! A crate of its own that does not depend on the app: it shares no state and
//! no code with it and talks to it only over HTTP and WebSockets, exactly as
//! Zoom would. The surface is the *simulator's contract* (`docs/architecture.md`).
//! Its Zoom-side code (signatures, app context, RTMS wire format) is written
//! independently of the app's, so the two check each other.

mod api;
pub mod audio;
pub mod client;
mod config;
mod context;
mod control;
mod error;
pub mod faults;
mod net;
mod oauth;
pub mod protocol;
mod rtms;
pub mod sign;
mod state;
pub mod stats;
pub mod util;
mod webhooks;

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

pub use config::{SimConfig, SimCredentials, SimulateArgs};
pub use context::{AppContextClaims, CONTEXT_TTL_MS};
pub use error::SimError;
pub use faults::{FaultRequest, FaultState};
pub use net::{Certs, make_certs};
pub use stats::SimStats;

use state::{Shared, State, lock};
use util::now_ms;

/// A bound, not yet running simulator.
pub struct Simulator {
    listener: tokio::net::TcpListener,
    handle: SimHandle,
    certs: Option<net::Certs>,
}

/// One simulated ZCC engagement, as the simulator's control surface and the
/// Apps SDK stand-in see it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct SimEngagement {
    pub engagement_id: String,
    /// `active` or `ended`.
    pub state: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub account_id: String,
    /// The agent handling it.
    pub user_id: String,
    /// The current RTMS stream, if one is running.
    pub rtms_stream_id: Option<String>,
}

/// What the Zoom-client side (host page / Apps SDK stand-in) is told.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    EngagementStarted { engagement: SimEngagement },
    EngagementEnded { engagement: SimEngagement },
}

/// A simulated Zoom user (one per account unless more are made).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct SimUser {
    pub user_id: String,
    pub account_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    /// What `users/me` says in `role_name`: `Owner`, `Admin` or `Member`.
    pub role_name: String,
}

/// Tokens as a successful `/oauth/token` answer carries them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// One webhook delivery attempt (`GET /sim/webhooks`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookDelivery {
    pub event: String,
    pub event_ts: i64,
    /// 1 for the first attempt.
    pub attempt: usize,
    /// HTTP status, or none when no answer came.
    pub status: Option<u16>,
    pub ok: bool,
    pub at_ms: i64,
    pub body: String,
}

/// The result of an `endpoint.url_validation` round trip.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UrlValidation {
    /// The app answered 200 with the right `plainToken` and `encryptedToken`.
    pub ok: bool,
    pub status: u16,
    pub answer: serde_json::Value,
}

/// Controls a running simulator in-process (the same things `/sim/*` does).
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    pub fn set_app_url(&self, url: Url) {
        *lock(&self.shared.app_url) = Some(url);
    }

    pub fn client_id(&self) -> &str {
        &self.shared.cfg.client_id
    }

    pub fn base_url(&self) -> &Url {
        &self.shared.base_url
    }

    pub fn rtms_url(&self) -> &Url {
        &self.shared.rtms_url
    }

    /// Start an engagement (sends `contact_center.engagement_started`) for
    /// the default user.
    pub async fn create_engagement(&self) -> anyhow::Result<String> {
        let user = self.default_user().user_id;
        self.create_engagement_for(&user).await
    }

    /// Start an engagement handled by `user_id` (in that user's account).
    pub async fn create_engagement_for(&self, user_id: &str) -> anyhow::Result<String> {
        Ok(self.shared.create_engagement(user_id)?.engagement_id)
    }

    /// Start RTMS as if the REST call had been made; returns the stream id.
    pub async fn start_rtms(&self, engagement_id: &str) -> anyhow::Result<String> {
        Ok(self.shared.start_stream(engagement_id)?)
    }

    /// Start RTMS as if its audio had begun `ago` before now (the consumer
    /// connects late): the first consumer gets the buffered part replayed.
    pub async fn start_rtms_started_ago(
        &self,
        engagement_id: &str,
        ago: Duration,
    ) -> anyhow::Result<String> {
        let started_ms = now_ms() - ago.as_millis() as i64;
        Ok(self.shared.start_stream_at(engagement_id, started_ms)?)
    }

    /// Stop RTMS as if the REST call had been made (stop reason 25).
    pub async fn stop_rtms(&self, engagement_id: &str) -> anyhow::Result<()> {
        Ok(self
            .shared
            .stop_stream(engagement_id, protocol::stop_reason::MANUAL_API_TRIGGERED)?)
    }

    /// Stop RTMS with a given RTMS_STOP_REASON (e.g. 8, STREAM_REVOKED).
    pub async fn stop_rtms_with(&self, engagement_id: &str, reason: i64) -> anyhow::Result<()> {
        Ok(self.shared.stop_stream(engagement_id, reason)?)
    }

    pub async fn pause_rtms(&self, engagement_id: &str) -> anyhow::Result<()> {
        Ok(self.shared.pause_stream(engagement_id, true)?)
    }

    pub async fn resume_rtms(&self, engagement_id: &str) -> anyhow::Result<()> {
        Ok(self.shared.pause_stream(engagement_id, false)?)
    }

    /// End an engagement (stops its stream, sends `engagement_ended`).
    pub async fn end_engagement(&self, engagement_id: &str) -> anyhow::Result<()> {
        Ok(self.shared.end_engagement(engagement_id)?)
    }

    pub fn engagements(&self) -> Vec<SimEngagement> {
        let mut list: Vec<SimEngagement> = lock(&self.shared.state)
            .engagements
            .values()
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            a.started_at_ms
                .cmp(&b.started_at_ms)
                .then(a.engagement_id.cmp(&b.engagement_id))
        });
        list
    }

    pub fn engagement(&self, engagement_id: &str) -> Option<SimEngagement> {
        self.shared.engagement(engagement_id)
    }

    /// The default user (the agent the Zoom client is signed in as).
    pub fn default_user(&self) -> SimUser {
        lock(&self.shared.state).default_user()
    }

    /// Create another user in a new account.
    pub fn create_user(&self) -> SimUser {
        self.shared.create_user()
    }

    /// Create a user in `account_id` (a new account when None) with a
    /// `users/me` role (`Owner`, `Admin`, `Member`).
    pub fn create_user_in(&self, account_id: Option<&str>, role_name: &str) -> SimUser {
        self.shared.create_user_in(account_id, role_name)
    }

    pub fn users(&self) -> Vec<SimUser> {
        let mut users: Vec<SimUser> = lock(&self.shared.state).users.values().cloned().collect();
        users.sort_by(|a, b| a.email.cmp(&b.email));
        users
    }

    pub fn client_events(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared.client_tx.subscribe()
    }

    /// An app context for `user_id`, encrypted as Zoom does (docs/zoom-platform.md §2),
    /// valid for two minutes.
    pub fn app_context(&self, user_id: &str) -> String {
        let claims = AppContextClaims::panel(user_id, &self.shared.cfg.client_id, now_ms());
        let ctx = context::encrypt(self.shared.cfg.client_secret.expose(), &claims);
        let tamper = std::mem::take(&mut lock(&self.shared.faults).tamper_next_app_context);
        if tamper { context::tamper(&ctx) } else { ctx }
    }

    /// The counters of `GET /sim/stats`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self.stats_snapshot()).unwrap_or_default()
    }

    pub fn stats_snapshot(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    pub fn faults(&self) -> FaultState {
        lock(&self.shared.faults).clone()
    }

    /// Apply a fault request (the body of `POST /sim/faults`); returns what
    /// was done, e.g. `["drop: 2 sockets"]`.
    pub fn apply_faults(&self, req: FaultRequest) -> Result<Vec<String>, SimError> {
        self.shared.apply_faults(req)
    }

    /// Send a ZCC voice event (8–34) on an engagement's stream; only
    /// delivered if the client subscribed to it. Returns whether it was sent.
    pub fn send_voice_event(&self, engagement_id: &str, event_type: i64) -> Result<bool, SimError> {
        if !(8..=34).contains(&event_type) {
            return Err(SimError::BadRequest(
                "event_type must be a ZCC voice event (8–34)".into(),
            ));
        }
        let stream = self.shared.stream_of(engagement_id).ok_or_else(|| {
            SimError::BadRequest(format!("engagement {engagement_id} has no running stream"))
        })?;
        Ok(self.shared.voice_event(&stream, event_type))
    }

    /// Send `endpoint.url_validation` to the app and check its answer.
    pub async fn validate_webhook_endpoint(&self) -> anyhow::Result<UrlValidation> {
        webhooks::validate_endpoint(&self.shared).await
    }

    /// Recent webhook delivery attempts, oldest first.
    pub fn webhook_log(&self) -> Vec<WebhookDelivery> {
        lock(&self.shared.webhook_log).iter().cloned().collect()
    }
}

/// The whole simulator: Zoom's HTTP side, RTMS, control, client side.
///
/// Every response may be loaded cross-origin: the app's page runs under
/// COEP `require-corp` and loads the Apps SDK stand-in from here.
fn router(handle: SimHandle) -> Router {
    use axum::http::{HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    Router::new()
        .merge(oauth::router())
        .merge(api::router(handle.clone()))
        .merge(rtms::router())
        .merge(control::router())
        .merge(client::router())
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ))
        .with_state(handle)
}

async fn not_found(uri: axum::http::Uri) -> SimError {
    SimError::NotFound(format!("no simulator route for {}", uri.path()))
}

impl Simulator {
    pub async fn build(cfg: SimConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding the simulator to {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let host = net::url_host(addr.ip());
        let certs = if cfg.tls {
            Some(net::make_certs(addr.ip())?)
        } else {
            None
        };
        let (http, ws) = if cfg.tls {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let base_url = Url::parse(&format!("{http}://{host}:{}", addr.port()))?;
        let rtms_url = Url::parse(&format!(
            "{ws}://{host}:{}{}",
            addr.port(),
            rtms::SIGNALING_PATH
        ))?;
        let media_url = format!("{ws}://{host}:{}{}", addr.port(), rtms::MEDIA_PATH);
        let sdk_js = client::sdk_script(cfg.apps_sdk.as_deref())?;
        let http_client = net::http_client()?;
        let (webhook_tx, webhook_rx) = mpsc::unbounded_channel();
        let (client_tx, _) = broadcast::channel(64);
        let tracker = TaskTracker::new();
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            app_url: Mutex::new(cfg.app_url.clone()),
            cfg,
            base_url,
            rtms_url,
            media_url,
            sdk_js,
            state: Mutex::new(State::new()),
            stats: Default::default(),
            faults: Default::default(),
            stop_answering: Default::default(),
            webhook_tx,
            webhook_log: Mutex::new(VecDeque::new()),
            client_tx,
            cancel: CancellationToken::new(),
            tracker: tracker.clone(),
            http: http_client,
        });
        tracker.spawn(webhooks::run(shared.clone(), webhook_rx));
        tracker.spawn_blocking(audio::warm);
        Ok(Self {
            listener,
            handle: SimHandle { shared },
            certs,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.handle.shared.base_url
    }

    pub fn rtms_url(&self) -> &Url {
        &self.handle.shared.rtms_url
    }

    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.path())
    }

    /// The CA certificate (PEM) when TLS is on.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.certs.as_ref().map(|c| c.ca_pem.as_str())
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// The one JSON line printed by `zcc-rtms simulate` when ready.
    pub fn ready_line(&self) -> String {
        serde_json::json!({
            "base_url": self.base_url().as_str().trim_end_matches('/'),
            "rtms_url": self.rtms_url().as_str(),
            "ca_cert": self.ca_cert_path().map(|p| p.display().to_string()),
        })
        .to_string()
    }

    /// Serve until `shutdown`; then close every RTMS socket (1001) and wait
    /// (bounded) for the simulator's tasks.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Simulator {
            listener,
            handle,
            certs,
        } = self;
        let shared = handle.shared.clone();
        let listener = net::SimListener::start(
            listener,
            certs.as_ref().map(|c| c.server.clone()),
            shared.cancel.clone(),
            shared.tracker.clone(),
        )?;
        let app = router(handle).into_make_service_with_connect_info::<net::ConnInfo>();
        let cancel = shared.cancel.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => {},
                    _ = cancel.cancelled() => {},
                }
                cancel.cancel();
            })
            .await
            .context("simulator server");
        shared.cancel.cancel();
        shared.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("simulator tasks did not finish within 5 s");
        }
        drop(certs);
        served
    }
}

/// `zcc-rtms simulate`: run a simulator until `shutdown`, printing the ready line.
pub async fn run_cli(
    args: SimulateArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = Simulator::build(args.config()).await?;
    println!("{}", sim.ready_line());
    sim.run_until_stopped(shutdown).await
}
