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
pub mod security;
mod webhooks;

use axum::Router;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

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
        .merge(assets::router())
        // Every route above, and only those, pass the access rules.
        .route_layer(access)
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(state.config.edge.body_timeout))
        .layer(headers)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> crate::error::AppError {
    crate::error::AppError::NotFound(format!("no route for {}", uri.path()))
}
