//! A local Zoom: OAuth, REST, signed webhooks, the RTMS signaling and media
//! WebSocket servers, a stand-in for the Zoom Apps SDK script, fault switches
//! and counters. Used by the tests, by demo mode and by `zcc-rtms simulate`.
//!
//! Shares no state with the app: it talks to it only over HTTP and WebSockets,
//! exactly as Zoom would. The surface is the design's *simulator contract*.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod client;

use anyhow::Context as _;
use url::Url;

use crate::config::random_hex;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Where webhooks go: `{app_url}/api/webhooks/zoom`. May be set later
    /// through [`SimHandle::set_app_url`].
    pub app_url: Option<Url>,
    /// Serve https/wss with a self-signed certificate made at start.
    pub tls: bool,
    pub client_id: String,
    pub client_secret: Secret,
    pub secret_token: Secret,
    /// Period of KEEP_ALIVE_REQ on every RTMS socket.
    pub keepalive: Duration,
    /// Delays before each webhook retry (Zoom: 5, 20, 60 minutes).
    pub webhook_retry: Vec<Duration>,
    /// Lifetime of issued access tokens.
    pub access_token_ttl: Duration,
}

impl SimConfig {
    /// A simulator on a free loopback port with freshly generated credentials.
    pub fn generated() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_url: None,
            tls: false,
            client_id: format!("sim_{}", random_hex(8)),
            client_secret: Secret::new(random_hex(24)),
            secret_token: Secret::new(random_hex(16)),
            keepalive: Duration::from_secs(10),
            webhook_retry: vec![
                Duration::from_secs(300),
                Duration::from_secs(1200),
                Duration::from_secs(3600),
            ],
            access_token_ttl: Duration::from_secs(3600),
        }
    }
}

/// A bound, not yet running simulator.
pub struct Simulator {
    listener: tokio::net::TcpListener,
    handle: SimHandle,
    base_url: Url,
    rtms_url: Url,
    ca_cert_path: Option<PathBuf>,
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
}

/// Controls a running simulator in-process (the same things `/sim/*` does).
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Mutex<Option<Url>>>,
}

impl SimHandle {
    pub fn set_app_url(&self, url: Url) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// Start an engagement (sends `contact_center.engagement_started`).
    pub async fn create_engagement(&self) -> anyhow::Result<String> {
        anyhow::bail!("not implemented yet")
    }

    /// Start RTMS as if the REST call had been made; returns the stream id.
    pub async fn start_rtms(&self, _engagement_id: &str) -> anyhow::Result<String> {
        anyhow::bail!("not implemented yet")
    }

    pub async fn stop_rtms(&self, _engagement_id: &str) -> anyhow::Result<()> {
        anyhow::bail!("not implemented yet")
    }

    /// End an engagement (stops its stream, sends `engagement_ended`).
    pub async fn end_engagement(&self, _engagement_id: &str) -> anyhow::Result<()> {
        anyhow::bail!("not implemented yet")
    }

    pub fn engagements(&self) -> Vec<SimEngagement> {
        Vec::new()
    }

    /// The default user (the agent the Zoom client is signed in as).
    pub fn default_user(&self) -> SimUser {
        SimUser {
            user_id: String::new(),
            account_id: String::new(),
            email: String::new(),
        }
    }

    /// Create another user in a new account.
    pub fn create_user(&self) -> SimUser {
        self.default_user()
    }

    pub fn client_events(&self) -> tokio::sync::broadcast::Receiver<ClientEvent> {
        tokio::sync::broadcast::channel(1).1
    }

    /// An app context for `user_id`, encrypted as Zoom does (zoom-platform §2).
    pub fn app_context(&self, _user_id: &str) -> String {
        String::new()
    }

    /// The counters of `GET /sim/stats`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

impl Simulator {
    pub async fn build(cfg: SimConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding the simulator to {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}"))?;
        let rtms_url = Url::parse(&format!("ws://{addr}/rtms/signaling"))?;
        Ok(Self {
            listener,
            handle: SimHandle {
                inner: Arc::new(Mutex::new(cfg.app_url)),
            },
            base_url,
            rtms_url,
            ca_cert_path: None,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn rtms_url(&self) -> &Url {
        &self.rtms_url
    }

    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert_path.as_deref()
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// The one JSON line printed by `zcc-rtms simulate` when ready.
    pub fn ready_line(&self) -> String {
        serde_json::json!({
            "base_url": self.base_url.as_str().trim_end_matches('/'),
            "rtms_url": self.rtms_url.as_str(),
            "ca_cert": self.ca_cert_path.as_ref().map(|p| p.display().to_string()),
        })
        .to_string()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = axum::Router::new().merge(client::router().with_state(self.handle.clone()));
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("simulator server")
    }
}

/// `zcc-rtms simulate`: run a simulator until `shutdown`, printing the ready line.
pub async fn run_cli(
    args: crate::config::SimulateArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut cfg = SimConfig::generated();
    cfg.listen = args.listen;
    cfg.app_url = args.app_url;
    cfg.tls = args.tls;
    cfg.keepalive = Duration::from_millis(args.keepalive_ms.max(1));
    if let Some(id) = args.credentials.client_id {
        cfg.client_id = id;
    }
    if let Some(secret) = args.credentials.client_secret {
        cfg.client_secret = Secret::new(secret);
    }
    if let Some(token) = args.credentials.secret_token {
        cfg.secret_token = Secret::new(token);
    }
    let sim = Simulator::build(cfg).await?;
    println!("{}", sim.ready_line());
    sim.run_until_stopped(shutdown).await
}
