//! The simulator's one error type: what its handlers and its control surface
//! answer, a 4xx with a JSON `{"error": reason}` body as Zoom's own errors
//! read. Never carries a secret or a token in its reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Errors of the control surface and the simulator's routes.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
}

impl SimError {
    pub fn status(&self) -> StatusCode {
        match self {
            SimError::NotFound(_) => StatusCode::NOT_FOUND,
            SimError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
