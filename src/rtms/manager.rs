//! Starts, stops and supervises RTMS sessions by stream id.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RtmsConfig;
use crate::secret::Secret;
use crate::status::StatusBus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub engagement_id: String,
    pub rtms_stream_id: String,
    pub server_urls: String,
}

/// What every session needs.
#[derive(Clone)]
pub struct SessionDeps {
    pub client_id: String,
    pub client_secret: Secret,
    pub tls: Arc<rustls::ClientConfig>,
    pub bus: StatusBus,
    pub config: RtmsConfig,
}

#[derive(Clone)]
pub struct RtmsManager {
    #[allow(dead_code)]
    deps: SessionDeps,
    #[allow(dead_code)]
    cancel: CancellationToken,
    #[allow(dead_code)]
    tracker: TaskTracker,
}

impl RtmsManager {
    pub fn new(deps: SessionDeps, cancel: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            deps,
            cancel,
            tracker,
        }
    }

    pub fn start(&self, _spec: StreamSpec) {}

    pub fn stop_stream(&self, _rtms_stream_id: &str) {}

    pub fn stop_engagement(&self, _engagement_id: &str) {}

    pub fn interrupted(&self, _rtms_stream_id: &str) {}
}
