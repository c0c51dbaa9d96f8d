//! Demo mode, all of it: the in-process simulator standing in for Zoom, the
//! real OAuth install of the simulator's agent, the user a request without a
//! session acts as, and the driver that keeps a realistic engagement going.
//!
//! Everything here takes its inputs explicitly (the config to point at the
//! simulator, the Zoom client, the status bus, a cancellation token); it never
//! reaches for `AppState`. `app` starts it in demo mode and nowhere else;
//! Zoom mode never touches this module.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zoom_sim::{SimConfig, SimHandle, Simulator};

use crate::config::{Config, DEFAULT_APPS_SDK_URL};
use crate::secret::Secret;
use crate::status::{Level, StatusBus};
use crate::zoom::oauth::{self, PkceMethod};
use crate::zoom::{CALL_TIMEOUT, Caller, ZoomClient};

/// Start the simulator with generated credentials and point `config` at it:
/// Zoom's host, REST API and CA, and the page's Apps SDK stand-in.
pub async fn start_simulator(config: &mut Config) -> anyhow::Result<Simulator> {
    let sim_cfg = SimConfig::generated();
    config.zoom.client_id = sim_cfg.client_id.clone();
    config.zoom.client_secret = Secret::new(sim_cfg.client_secret.expose());
    config.zoom.secret_token = Secret::new(sim_cfg.secret_token.expose());
    let sim = Simulator::build(sim_cfg)
        .await
        .context("starting the demo simulator")?;
    config.zoom.host = sim.base_url().clone();
    config.zoom.api_url = sim.base_url().join("v2")?;
    config.zoom.ca_cert = sim.ca_cert_path().map(Into::into);
    // The page loads the simulator's stand-in for the Zoom Apps SDK (the real
    // one only works inside Zoom), unless a URL was chosen explicitly.
    if config.apps_sdk_url.as_str() == DEFAULT_APPS_SDK_URL {
        config.apps_sdk_url = sim.base_url().join("sim/appssdk.js")?;
    }
    Ok(sim)
}

/// Who a request without a session acts as: the simulator's agent, once the
/// automatic install has finished. Cheap to clone; set once.
#[derive(Clone, Default)]
pub struct DemoUser(Arc<OnceLock<Caller>>);

impl DemoUser {
    /// The installed agent, or `None` while the install is still running.
    pub fn caller(&self) -> Option<Caller> {
        self.0.get().cloned()
    }

    fn set(&self, caller: Caller) {
        // Installed once per process; a second value would be the same user.
        let _ = self.0.set(caller);
    }
}

/// What the running demo needs, passed in by `app`.
pub struct Inputs {
    pub zoom: ZoomClient,
    /// The app's outbound client (trusts the simulator's CA, follows no
    /// redirects).
    pub http: reqwest::Client,
    pub bus: StatusBus,
    pub user: DemoUser,
    /// Engagements come only from the simulator's console, never on their own.
    pub manual: bool,
    pub cancel: CancellationToken,
}

/// Run the demo on a simulator that is already built: serve it, install the
/// app for its agent, then (unless `manual`) keep engagements coming. Every
/// task is tracked by `tracker` and stops with `inputs.cancel`.
pub async fn run(sim: Simulator, inputs: Inputs, tracker: &TaskTracker) {
    let handle = sim.handle();
    let sim_cancel = inputs.cancel.clone();
    tracker.spawn(async move {
        if let Err(e) = sim
            .run_until_stopped(async move { sim_cancel.cancelled().await })
            .await
        {
            tracing::error!(error = ?e, "simulator stopped");
        }
    });
    // The simulator is serving now (its listener was bound when it was built).
    match install(&inputs.zoom, &inputs.http, &handle).await {
        Ok(caller) => {
            inputs.user.set(caller);
            tracing::info!("demo: installed the app for the simulated agent");
        }
        Err(e) => tracing::error!(error = ?e, "demo: installing the app on the simulator failed"),
    }
    if !inputs.manual {
        tracker.spawn(drive(handle, inputs.bus, inputs.cancel, Pace::default()));
    }
}

/// A real OAuth install against the simulator (authorize → code → token
/// exchange → users/me → store), so the demo exercises exactly the path a
/// real Zoom install takes. Returns the installed agent.
async fn install(
    zoom: &ZoomClient,
    http: &reqwest::Client,
    sim: &SimHandle,
) -> anyhow::Result<Caller> {
    let user = sim.default_user();
    let verifier = oauth::new_verifier();
    let challenge = oauth::challenge(&verifier, PkceMethod::S256);
    let url = zoom.authorize_url(
        None,
        Some((&challenge, PkceMethod::S256)),
        &[("sim_user", &user.user_id)],
    );
    // The client follows no redirects: read Zoom's answer ourselves.
    let resp = http
        .get(url)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .context("asking the simulator to authorize the demo user")?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("authorize answered {} without a redirect", resp.status()))?;
    let location = url::Url::parse(location).context("authorize redirect is not a URL")?;
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("authorize redirect carries no code")?;
    let redirect = zoom.config().redirect_url.to_string();
    let record = zoom
        .install(&code, &redirect, Some(&verifier))
        .await
        .context("exchanging the demo install's code")?;
    Ok(Caller {
        account_id: record.account_id,
        user_id: Some(record.user_id),
    })
}

/// Pace of the demo.
#[derive(Debug, Clone)]
struct Pace {
    auto_start_after: Duration,
    engagement_length: Duration,
    pause_between: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            auto_start_after: Duration::from_secs(2),
            engagement_length: Duration::from_secs(120),
            pause_between: Duration::from_secs(6),
        }
    }
}

/// An engagement starts, RTMS auto-starts shortly after (as a queue with
/// auto-start would), audio flows for a while, the engagement ends, a pause,
/// and the next one comes. Start/Stop on the page work at any time in
/// between. Stops with `cancel`.
async fn drive(sim: SimHandle, bus: StatusBus, cancel: CancellationToken, pace: Pace) {
    bus.status(
        None,
        Level::Info,
        "Demo mode: a built-in Zoom simulator is playing a contact-center call",
    );
    while !cancel.is_cancelled() {
        if let Err(e) = one_engagement(&sim, &pace, &cancel).await {
            tracing::warn!(error = %e, "demo engagement failed");
            if !wait(&cancel, Duration::from_secs(5)).await {
                break;
            }
        }
    }
}

async fn one_engagement(
    sim: &SimHandle,
    pace: &Pace,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let id = sim.create_engagement().await?;
    tracing::info!(engagement_id = %id, "demo engagement started");
    if !wait(cancel, pace.auto_start_after).await {
        return Ok(());
    }
    let running = sim
        .engagements()
        .iter()
        .any(|e| e.engagement_id == id && e.rtms_stream_id.is_some());
    if !running {
        sim.start_rtms(&id).await?;
    }
    if !wait(cancel, pace.engagement_length).await {
        return Ok(());
    }
    sim.end_engagement(&id).await?;
    wait(cancel, pace.pause_between).await;
    Ok(())
}

/// Sleep unless cancelled; false when cancelled.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
