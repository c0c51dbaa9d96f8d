//! Liveness, readiness, and the operator's engine counters and Prometheus
//! metrics.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(super::HEALTH_PATH, get(health))
        .route("/ready", get(ready))
        .route("/api/stats", get(stats))
        .route("/metrics", get(metrics))
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    let demo = state.config.is_demo();
    Json(json!({
        "status": "ok",
        "mode": state.config.mode.as_str(),
        // Demo data is simulated and belongs to no one, so demo mode is open.
        "access": if demo { "open (demo mode: simulated data, no sign-in)" } else { "signed-in callers see only their own engagements" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: a value written to the store is read back (503 with the
/// reason otherwise), so webhooks can be stored. Anonymous, so it tells
/// nothing about the calls going on (that is `/api/stats`, for the operator).
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, crate::error::AppError> {
    let started = std::time::Instant::now();
    let checked = state.store.check_write().await;
    state.metrics.store_call(
        crate::metrics::StoreOp::ReadyCheck,
        started.elapsed(),
        checked.is_ok(),
    );
    checked.map_err(|e| {
        crate::error::AppError::Unavailable(format!("{} store: {e}", state.store.backend_name()))
    })?;
    Ok(Json(json!({
        "status": "ready",
        "store": state.store.backend_name(),
        "instance": &*state.instance,
    })))
}

/// Engine counters: streams running, frames and transcripts received.
async fn stats(State(state): State<AppState>) -> Json<Value> {
    let mut v = state.rtms.counters().snapshot();
    v["streams_active"] = json!(state.rtms.active_streams());
    Json(v)
}

/// Prometheus metrics (text exposition): what is counted as it happens, and
/// the counters other parts keep, read now. The inbox depth is left out when
/// the store does not answer within a second (the scrape still succeeds).
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let engine = state.rtms.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let zoom = state.zoom.counters();
    let (refreshes, refresh_failures, refresh_revoked) = (
        load(&zoom.refreshes),
        load(&zoom.refresh_failures),
        load(&zoom.refresh_revoked),
    );
    let inbox_depth =
        tokio::time::timeout(std::time::Duration::from_secs(1), state.inbox.backlog())
            .await
            .ok()
            .and_then(Result::ok);
    let scraped = crate::metrics::Scraped {
        streams_active: state.rtms.active_streams() as u64,
        sessions_started: load(&engine.sessions_started),
        sessions_failed: load(&engine.sessions_failed),
        by_role: engine.by_role(),
        reconnects: engine.reconnects_by_reason(),
        handshake_failures: engine.handshake_refusals(),
        lease_takeovers: load(&engine.lease_takeovers),
        leases_held: load(&engine.leases_held),
        keepalive: Some((
            engine.keepalive_answer.0.clone(),
            engine.keepalive_age.0.clone(),
        )),
        sse_subscribers: state.edge.sse_subscribers() as u64,
        inbox_depth: inbox_depth.map(|n| n as u64),
        token_refreshes_ok: refreshes.saturating_sub(refresh_failures + refresh_revoked),
        token_refreshes_failed: refresh_failures,
        token_refreshes_revoked: refresh_revoked,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(&scraped),
    )
}
