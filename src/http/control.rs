//! `POST /api/zoom/rtms/control {engagementId, action}`: start, stop, pause
//! or resume RTMS on an engagement with the caller's account token.
//!
//! Validates input (400 with a reason), asks the access policy whether the
//! caller is the engagement's agent (403/404 otherwise, and nothing is sent
//! to Zoom), maps Zoom's answers to clear ones. The token handling (refresh,
//! single-flight, needs-auth) is the Zoom client's.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::access::{self, Caller, Control};
use crate::error::{AppError, AppResult};
use crate::http::session::MaybeSession;
use crate::state::AppState;
use crate::zoom::{RtmsAction, ZoomError};

/// Longest engagement id accepted.
const MAX_ENGAGEMENT_ID: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/zoom/rtms/control",
        post(control).layer(DefaultBodyLimit::max(4 * 1024)),
    )
}

/// Parse and check the body; every problem is a 400 with a reason.
pub fn parse_request(body: &[u8]) -> Result<(String, RtmsAction), AppError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        AppError::BadRequest(format!(
            "expected a JSON object {{\"engagementId\", \"action\"}}: {e}"
        ))
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| AppError::BadRequest("expected a JSON object".into()))?;
    let engagement_id = obj
        .get("engagementId")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::BadRequest("engagementId is missing or empty".into()))?;
    // It becomes a URL path segment at Zoom: no slashes, no dot segments.
    if engagement_id.len() > MAX_ENGAGEMENT_ID
        || engagement_id.bytes().all(|b| b == b'.')
        || !engagement_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~=+".contains(&b))
    {
        return Err(AppError::BadRequest(
            "engagementId has unexpected characters or is too long".into(),
        ));
    }
    let action = obj
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::BadRequest("action is missing".into()))?;
    let action = RtmsAction::parse(action).ok_or_else(|| {
        AppError::BadRequest("action must be one of start, stop, pause, resume".into())
    })?;
    Ok((engagement_id.to_owned(), action))
}

async fn control(
    State(state): State<AppState>,
    who: Caller,
    session: MaybeSession,
    body: Bytes,
) -> AppResult<Json<Value>> {
    let (engagement_id, action) = parse_request(&body)?;
    let engagement = state.store.load_engagement(&engagement_id).await?;
    match access::policy::may_control(&who, engagement.as_ref().map(access::owner_of).as_ref()) {
        Control::Allow => {}
        Control::SignIn => {
            return Err(AppError::Unauthorized(
                "sign in first: open the app inside Zoom".into(),
            ));
        }
        Control::Forbidden(reason) => return Err(AppError::Forbidden(reason.into())),
        Control::NotFound => {
            tracing::info!(%engagement_id, "RTMS control refused: not the caller's engagement");
            return Err(AppError::NotFound(format!(
                "no engagement {engagement_id} is assigned to you (if it has just started, \
                 Zoom's notice of it may still be on its way: try again in a moment)"
            )));
        }
    }
    let caller = super::auth::require_caller(&state, &session)?;
    match state
        .zoom
        .set_rtms_status(&caller, &engagement_id, action)
        .await
    {
        Ok(()) => {
            tracing::info!(%engagement_id, action = action.as_str(), "RTMS control accepted by Zoom");
            Ok(Json(json!({
                "ok": true,
                "engagementId": engagement_id,
                "action": action.as_str(),
            })))
        }
        Err(e) => Err(explain(e, &engagement_id, action)),
    }
}

/// Zoom's REST errors, in words the agent can act on.
fn explain(e: ZoomError, engagement_id: &str, action: RtmsAction) -> AppError {
    let ZoomError::Api {
        status, message, ..
    } = &e
    else {
        return e.into();
    };
    tracing::warn!(%engagement_id, status, %message, "Zoom refused RTMS control");
    match *status {
        404 => AppError::Upstream {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "Zoom does not know engagement {engagement_id} for this account ({message})"
            ),
        },
        400 => AppError::Upstream {
            status: StatusCode::CONFLICT,
            message: format!(
                "Zoom refused to {} RTMS for engagement {engagement_id}: {message}. Is the engagement still active?",
                action.as_str()
            ),
        },
        403 => AppError::Forbidden(format!(
            "Zoom denied the RTMS control ({message}); check the app's scopes and that the agent's queue has the app"
        )),
        401 => AppError::Upstream {
            status: StatusCode::BAD_GATEWAY,
            message: "Zoom refused even a freshly refreshed access token".into(),
        },
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_body_is_validated_with_reasons() {
        let ok = parse_request(br#"{"engagementId":"ENG1","action":"Start","x":1}"#);
        assert!(matches!(ok, Ok((ref id, RtmsAction::Start)) if id == "ENG1"));
        for (body, needle) in [
            (&b"not json"[..], "JSON"),
            (b"[]", "object"),
            (b"{}", "engagementId"),
            (br#"{"engagementId":"  "}"#, "engagementId"),
            (br#"{"engagementId":"E","action":"launch"}"#, "start, stop"),
            (br#"{"engagementId":"E"}"#, "action"),
            (br#"{"engagementId":"a b","action":"stop"}"#, "characters"),
            (br#"{"engagementId":"a/b","action":"stop"}"#, "characters"),
            (br#"{"engagementId":"..","action":"stop"}"#, "characters"),
            (br#"{"engagementId":7,"action":"stop"}"#, "engagementId"),
        ] {
            let err = parse_request(body).expect_err("invalid");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
