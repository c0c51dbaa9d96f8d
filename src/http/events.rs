//! Live status: `GET /api/events` (SSE: a snapshot, then live events, per
//! engagement when asked) and `GET /api/webhooks/events` (the seed's list).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::status::{BusEvent, StatusBus};

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

async fn list(State(state): State<AppState>, Query(f): Query<Filter>) -> Json<Value> {
    let mut events = state
        .bus
        .status_lines(f.engagement_id.as_deref().filter(|s| !s.is_empty()));
    events.truncate(f.limit.unwrap_or(100).min(crate::status::RECENT_STATUS));
    Json(json!({ "events": events }))
}

struct Feed {
    bus: StatusBus,
    rx: Receiver<Arc<BusEvent>>,
    engagement: Option<String>,
    cancel: CancellationToken,
    pending_snapshot: Option<Event>,
}

fn snapshot_event(bus: &StatusBus, engagement: Option<&str>) -> Event {
    let snap = bus.snapshot_for(engagement);
    Event::default()
        .event("snapshot")
        .json_data(&snap)
        .unwrap_or_else(|_| Event::default().event("snapshot").data("{}"))
}

async fn sse(
    State(state): State<AppState>,
    Query(f): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let engagement = f.engagement_id.filter(|s| !s.is_empty());
    let (snap, rx) = state.bus.subscribe(engagement.as_deref());
    let first = Event::default()
        .event("snapshot")
        .json_data(&snap)
        .unwrap_or_else(|_| Event::default().event("snapshot").data("{}"));
    let feed = Feed {
        bus: state.bus.clone(),
        rx,
        engagement,
        cancel: state.cancel.clone(),
        pending_snapshot: Some(first),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        if let Some(ev) = feed.pending_snapshot.take() {
            return Some((Ok(ev), feed));
        }
        loop {
            let next = tokio::select! {
                _ = feed.cancel.cancelled() => return None,
                next = feed.rx.recv() => next,
            };
            match next {
                Ok(ev) => {
                    if let (Some(want), Some(have)) =
                        (feed.engagement.as_deref(), ev.engagement_id())
                        && want != have
                    {
                        continue;
                    }
                    let event = Event::default()
                        .event(ev.kind())
                        .json_data(&*ev)
                        .unwrap_or_else(|_| Event::default().comment("unserializable"));
                    return Some((Ok(event), feed));
                }
                // Too slow: start again from a fresh snapshot.
                Err(RecvError::Lagged(_)) => {
                    let ev = snapshot_event(&feed.bus, feed.engagement.as_deref());
                    return Some((Ok(ev), feed));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
