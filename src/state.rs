//! The application state every handler and task shares: configuration, the
//! store, the engine, the status bus and the rest, cheap to clone. Owns no
//! behaviour and never builds itself (`app` builds and wires it).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engagements::Engagements;
use crate::inbox::Inbox;
use crate::rtms::RtmsManager;
use crate::status::StatusBus;
use crate::store::Store;
use crate::zoom::ZoomClient;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub bus: StatusBus,
    pub engagements: Engagements,
    pub rtms: RtmsManager,
    /// Verified webhooks, stored before they are answered.
    pub inbox: Inbox,
    /// This instance's name (stream leases, inbox consumer).
    pub instance: Arc<str>,
    /// Tokens, engagements, de-duplication keys, stream ownership.
    pub store: Store,
    /// Zoom OAuth and REST, with single-flight token refresh.
    pub zoom: ZoomClient,
    pub http: reqwest::Client,
    /// Fires on shutdown: SSE streams and sessions end with it.
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// Encrypts the session cookie; derived from `SESSION_SECRET`.
    pub cookie_key: axum_extra::extract::cookie::Key,
    /// Rate limit and live-feed caps.
    pub edge: crate::http::edge::Edge,
    /// What `GET /metrics` exposes beyond the counters kept elsewhere.
    pub metrics: crate::metrics::Metrics,
    /// Demo mode only: who a request without a session acts as.
    pub demo_user: Option<crate::demo::DemoUser>,
}
