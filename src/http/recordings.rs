//! Call recordings: `GET /api/recordings?engagement_id=…` lists an
//! engagement's recordings on this instance; `GET /api/recordings/{engagement_id}/{file}`
//! downloads one, streamed from disk.
//!
//! Both answer whoever may see the engagement (the access policy, through
//! [`Visibility`]); to anyone else an engagement's recordings do not exist
//! (404, the same answer as for an unknown engagement). With recording off
//! both say so (404 with a reason). Never writes or deletes a recording.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::access::{Caller, Visibility};
use crate::error::{AppError, AppResult};
use crate::recording::Recorder;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/recordings", get(list))
        .route("/api/recordings/{engagement_id}/{file}", get(download))
}

fn recorder(state: &AppState) -> AppResult<&Recorder> {
    state.rtms.recorder().ok_or_else(|| {
        AppError::NotFound("recording is off on this instance (RECORDINGS_DIR is not set)".into())
    })
}

/// 404 unless the caller may see the engagement.
async fn visible(state: &AppState, caller: Caller, engagement_id: &str) -> AppResult<()> {
    let mut v = Visibility::new(caller, state.bus.clone(), state.store.clone());
    if v.sees(engagement_id).await {
        Ok(())
    } else {
        Err(AppError::NotFound("no such engagement".into()))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    engagement_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Value>> {
    let recorder = recorder(&state)?;
    let id = q
        .engagement_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::BadRequest("engagement_id is required".into()))?;
    if crate::recording::layout::engagement_dir(&id).is_none() {
        return Err(AppError::BadRequest("engagement_id is too long".into()));
    }
    visible(&state, caller, &id).await?;
    let enc = crate::recording::layout::url_segment(&id);
    let recordings: Vec<Value> = recorder
        .list(&id)
        .await
        .into_iter()
        .map(|r| {
            let url = format!(
                "/api/recordings/{enc}/{}",
                crate::recording::layout::url_segment(&r.file)
            );
            let mut v = json!(r);
            v["url"] = json!(url);
            v
        })
        .collect();
    Ok(Json(json!({"engagement_id": id, "recordings": recordings})))
}

async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((engagement_id, file)): Path<(String, String)>,
) -> AppResult<Response> {
    let recorder = recorder(&state)?;
    let path = recorder
        .file(&engagement_id, &file)
        .ok_or_else(|| AppError::NotFound("no such recording".into()))?;
    visible(&state, caller, &engagement_id).await?;
    let missing = || AppError::NotFound("no such recording".into());
    let f = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let len = f.metadata().await.map_err(|_| missing())?.len();
    // A file being written grows: serve what it held when opened.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f.take(len)));
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}
