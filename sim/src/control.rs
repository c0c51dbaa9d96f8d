//! The simulator's control surface (`/sim/*`, the simulator's contract in
//! `docs/architecture.md`): engagements, RTMS start/stop, users, faults, stats, webhooks.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::faults::FaultRequest;
use super::{SimError, SimHandle};

pub(crate) fn router() -> Router<SimHandle> {
    Router::new()
        .route(
            "/sim/engagements",
            post(create_engagement).get(list_engagements),
        )
        .route("/sim/engagements/{id}", get(get_engagement))
        .route("/sim/engagements/{id}/rtms/start", post(start_rtms))
        .route("/sim/engagements/{id}/rtms/stop", post(stop_rtms))
        .route("/sim/engagements/{id}/rtms/pause", post(pause_rtms))
        .route("/sim/engagements/{id}/rtms/resume", post(resume_rtms))
        .route("/sim/engagements/{id}/end", post(end_engagement))
        .route("/sim/engagements/{id}/events", post(voice_event))
        .route("/sim/users", post(create_user).get(list_users))
        .route("/sim/users/default", get(default_user))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", post(apply_faults).get(faults))
        .route("/sim/webhooks", get(webhook_log))
        .route("/sim/webhooks/validate", post(validate_webhook))
}

/// An optional JSON body: empty means default; malformed is a 400 with a reason.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, SimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEngagement {
    user_id: Option<String>,
}

async fn create_engagement(
    State(sim): State<SimHandle>,
    bytes: Bytes,
) -> Result<Json<Value>, SimError> {
    let req: NewEngagement = body(&bytes)?;
    let user = match req.user_id {
        Some(u) => u,
        None => sim.default_user().user_id,
    };
    let e = sim.shared.create_engagement(&user)?;
    Ok(Json(
        json!({"engagement_id": e.engagement_id, "engagement": e}),
    ))
}

async fn list_engagements(State(sim): State<SimHandle>) -> Json<Value> {
    Json(json!({"engagements": sim.engagements()}))
}

async fn get_engagement(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SimError> {
    let e = sim
        .shared
        .engagement(&id)
        .ok_or_else(|| SimError::NotFound(format!("unknown engagement {id}")))?;
    Ok(Json(json!(e)))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRtms {
    /// The stream's audio began this long ago (its first consumer gets the
    /// buffered part replayed).
    started_ago_ms: Option<u64>,
}

/// Longest back-dating accepted (an hour).
const MAX_STARTED_AGO_MS: u64 = 3_600_000;

async fn start_rtms(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, SimError> {
    let req: StartRtms = body(&bytes)?;
    let ago = req.started_ago_ms.unwrap_or(0);
    if ago > MAX_STARTED_AGO_MS {
        return Err(SimError::BadRequest(format!(
            "started_ago_ms must be at most {MAX_STARTED_AGO_MS}"
        )));
    }
    let sid = sim
        .shared
        .start_stream_at(&id, crate::util::now_ms() - ago as i64)?;
    Ok(Json(json!({"engagement_id": id, "rtms_stream_id": sid})))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopRtms {
    /// RTMS_STOP_REASON to end the stream with (default 25,
    /// MANUAL_API_TRIGGERED; 8 is STREAM_REVOKED).
    stop_reason: Option<i64>,
}

async fn stop_rtms(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, SimError> {
    let req: StopRtms = body(&bytes)?;
    let reason = req
        .stop_reason
        .unwrap_or(super::protocol::stop_reason::MANUAL_API_TRIGGERED);
    if !(0..=26).contains(&reason) {
        return Err(SimError::BadRequest(
            "stop_reason must be an RTMS stop reason (0 to 26)".into(),
        ));
    }
    sim.shared.stop_stream(&id, reason)?;
    Ok(Json(
        json!({"engagement_id": id, "stopped": true, "stop_reason": reason}),
    ))
}

async fn pause_rtms(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SimError> {
    sim.shared.pause_stream(&id, true)?;
    Ok(Json(json!({"engagement_id": id, "paused": true})))
}

async fn resume_rtms(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SimError> {
    sim.shared.pause_stream(&id, false)?;
    Ok(Json(json!({"engagement_id": id, "paused": false})))
}

async fn end_engagement(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
) -> Result<Json<Value>, SimError> {
    sim.shared.end_engagement(&id)?;
    Ok(Json(json!({"engagement_id": id, "state": "ended"})))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoiceEvent {
    event_type: i64,
}

async fn voice_event(
    State(sim): State<SimHandle>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, SimError> {
    let req: VoiceEvent = body(&bytes)?;
    let sent = sim.send_voice_event(&id, req.event_type)?;
    Ok(Json(json!({"sent": sent})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    account_id: Option<String>,
    role_name: Option<String>,
}

/// `POST /sim/users [{account_id, role_name}]`: a user in a new account, or
/// in the given one, with the given `users/me` role (default `Member`).
async fn create_user(State(sim): State<SimHandle>, bytes: Bytes) -> Result<Json<Value>, SimError> {
    let req: NewUser = body(&bytes)?;
    let role = req.role_name.as_deref().unwrap_or("Member");
    Ok(Json(json!(
        sim.create_user_in(req.account_id.as_deref(), role)
    )))
}

async fn list_users(State(sim): State<SimHandle>) -> Json<Value> {
    Json(json!({"users": sim.users()}))
}

async fn default_user(State(sim): State<SimHandle>) -> Json<Value> {
    Json(json!(sim.default_user()))
}

async fn stats(State(sim): State<SimHandle>) -> Json<Value> {
    Json(sim.stats())
}

async fn apply_faults(State(sim): State<SimHandle>, bytes: Bytes) -> Result<Json<Value>, SimError> {
    let req: FaultRequest = body(&bytes)?;
    let applied = sim.apply_faults(req)?;
    Ok(Json(json!({"applied": applied, "faults": sim.faults()})))
}

async fn faults(State(sim): State<SimHandle>) -> Json<Value> {
    Json(json!(sim.faults()))
}

async fn webhook_log(State(sim): State<SimHandle>) -> Json<Value> {
    Json(json!({"deliveries": sim.webhook_log()}))
}

async fn validate_webhook(State(sim): State<SimHandle>) -> Result<Json<Value>, SimError> {
    let v = sim
        .validate_webhook_endpoint()
        .await
        .map_err(|e| SimError::BadRequest(format!("URL validation could not be sent: {e:#}")))?;
    Ok(Json(json!(v)))
}
