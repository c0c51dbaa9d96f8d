//! Live status: `GET /api/events` (SSE: a snapshot, then live events, per
//! engagement when asked) and `GET /api/webhooks/events` (the seed's list).
//!
//! Both carry only what the caller may see: every snapshot, live event and
//! list line passes the caller's [`Visibility`] first — on connect, after a
//! lag, and for events that arrived from other instances alike.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::access::{Caller, Visibility};
use crate::http::edge::{SsePermit, client_ip};
use crate::http::sse_body;
use crate::state::AppState;
use crate::status::{BusEvent, Snapshot, StatusBus, Watch};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(sse))
        .route("/api/webhooks/events", get(list))
}

#[derive(Debug, Deserialize)]
struct Filter {
    engagement_id: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(f): Query<Filter>,
) -> Json<Value> {
    let lines = state
        .bus
        .status_lines(f.engagement_id.as_deref().filter(|s| !s.is_empty()));
    let mut visibility = Visibility::new(caller, state.bus.clone(), state.store.clone());
    let mut events = visibility.lines(lines).await;
    events.truncate(f.limit.unwrap_or(100).min(crate::status::RECENT_STATUS));
    Json(json!({ "events": events }))
}

struct Feed {
    bus: StatusBus,
    rx: Receiver<Arc<BusEvent>>,
    engagement: Option<String>,
    visibility: Visibility,
    cancel: CancellationToken,
    pending_snapshot: Option<Snapshot>,
    /// Held while the feed is open (the subscriber caps).
    _permit: SsePermit,
    /// While the feed is open, the views it follows are published.
    _watch: Watch,
    /// Events skipped for being too slow (metrics).
    lagged: prometheus_client::metrics::counter::Counter,
}

impl Feed {
    /// The caller's part of a snapshot, as an SSE event.
    async fn snapshot_event(&mut self, snap: Snapshot) -> Bytes {
        let snap = self.visibility.snapshot(snap).await;
        sse_body::event("snapshot", &snap)
    }

    /// The next event for the caller; None when the feed ends.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(snap) = self.pending_snapshot.take() {
            return Some(self.snapshot_event(snap).await);
        }
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return None,
                next = self.rx.recv() => next,
            };
            match next {
                Ok(ev) => {
                    if let (Some(want), Some(have)) =
                        (self.engagement.as_deref(), ev.engagement_id())
                        && want != have
                    {
                        continue;
                    }
                    if !self.visibility.sees_event(&ev).await {
                        continue;
                    }
                    return Some(sse_body::event(ev.kind(), &*ev));
                }
                // Too slow: a fresh snapshot and a fresh receiver that starts
                // right after it, so nothing is sent twice.
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "SSE subscriber lagged; sending a fresh snapshot");
                    self.lagged.inc_by(skipped);
                    let (snap, rx) = self.bus.subscribe(self.engagement.as_deref());
                    self.rx = rx;
                    return Some(self.snapshot_event(snap).await);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

async fn sse(
    State(state): State<AppState>,
    caller: Caller,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Query(f): Query<Filter>,
) -> Response {
    let permit = match state
        .edge
        .sse_permit(&caller, client_ip(connect.as_ref().map(|c| &c.0)))
    {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let engagement = f.engagement_id.filter(|s| !s.is_empty());
    let watch = state.bus.watch(engagement.as_deref());
    let (snap, rx) = state.bus.subscribe(engagement.as_deref());
    let feed = Feed {
        bus: state.bus.clone(),
        rx,
        engagement,
        visibility: Visibility::new(caller, state.bus.clone(), state.store.clone()),
        cancel: state.cancel.clone(),
        pending_snapshot: Some(snap),
        _permit: permit,
        _watch: watch,
        lagged: state.metrics.bus_lagged(crate::metrics::BusConsumer::Sse),
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((event, feed))
    });
    sse_body::response(events)
}
