//! HTTP: routes, security headers, SSE. One router per concern, merged here.
//!
//! Never talks to RTMS sockets; it asks the engine through `AppState`.

mod assets;
pub mod auth;
mod context;
mod control;
pub mod edge;
mod engagement;
mod events;
mod health;
mod recordings;
pub mod security;
pub mod session;
mod sse_body;
mod webhooks;

use axum::Router;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Liveness: what the container health check asks.
pub const HEALTH_PATH: &str = "/health";

/// The whole app. Pure: builds routes and layers, starts nothing.
pub fn router(state: AppState) -> Router {
    let headers = security::layer(&state.config);
    let access =
        axum::middleware::from_fn_with_state(state.clone(), crate::access::routes::enforce);
    Router::new()
        .merge(health::router())
        .merge(webhooks::router())
        .merge(events::router())
        .merge(engagement::router())
        .merge(context::router())
        .merge(auth::router())
        .merge(control::router())
        .merge(recordings::router())
        .merge(assets::router())
        // Every route above, and only those, pass the access rules.
        .route_layer(access)
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_client_errors))
        .layer(RequestBodyTimeoutLayer::new(state.config.edge.body_timeout))
        .layer(headers)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The framework's own 4xx answers (a body that could not be read, a method
/// the route does not take, a malformed query) are plain text or empty;
/// give them the JSON shape every other answer has.
async fn json_client_errors(resp: axum::response::Response) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse as _;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let reason = String::from_utf8_lossy(&text).trim().to_owned();
    let reason = if reason.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        reason
    };
    let mut json = (status, axum::Json(serde_json::json!({ "error": reason }))).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

async fn not_found(uri: axum::http::Uri) -> crate::error::AppError {
    crate::error::AppError::NotFound(format!("no route for {}", uri.path()))
}
