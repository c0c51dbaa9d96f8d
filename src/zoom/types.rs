//! What the app and Zoom exchange, as types: who a call is made for
//! ([`Caller`]), the RTMS control actions, the token and `users/me` answers,
//! and [`ZoomError`] with the HTTP answer each error becomes.
//!
//! No IO and no tokens kept; a token answer's `Debug` never shows a token.

use std::fmt;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::AppError;
use crate::store::StoreError;

/// Who a call is made for: the caller's account and, when known, user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: String,
    pub user_id: Option<String>,
}

/// RTMS control actions of `PUT /contact_center/{id}/rtms_app/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmsAction {
    Start,
    Stop,
    Pause,
    Resume,
}

impl RtmsAction {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZoomError {
    /// No usable authorization for the account: install (again).
    #[error("{0}")]
    NeedsAuth(String),
    /// The token endpoint refused a grant.
    #[error("Zoom's token endpoint answered {status}: {error} ({reason})")]
    Token {
        status: u16,
        error: String,
        reason: String,
    },
    /// A REST call answered with an error.
    #[error("Zoom answered {status}: {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("Zoom did not answer: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("unexpected answer from Zoom: {0}")]
    Malformed(String),
    #[error("another refresh of this account's token is taking too long")]
    LockTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ZoomError {
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, ZoomError::Token { error, .. } if error == "invalid_grant")
    }
}

impl From<ZoomError> for AppError {
    fn from(e: ZoomError) -> Self {
        match e {
            ZoomError::NeedsAuth(reason) => AppError::NeedsAuth(reason),
            ZoomError::Token { .. } => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            },
            ZoomError::Api { status: 429, .. } => {
                AppError::TooManyRequests("Zoom's rate limit was reached; try again shortly".into())
            }
            ZoomError::Api { .. } | ZoomError::Malformed(_) => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            },
            ZoomError::Transport(ref t) if t.is_timeout() => AppError::Upstream {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: "Zoom did not answer in time".into(),
            },
            ZoomError::Transport(_) => AppError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: "Zoom could not be reached".into(),
            },
            ZoomError::LockTimeout => AppError::Unavailable(e.to_string()),
            ZoomError::Store(s) => s.into(),
        }
    }
}

/// The token endpoint's success answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZoomUser {
    pub id: String,
    pub account_id: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `Owner`, `Admin`, `Member` or a custom role: owners and admins
    /// supervise their account.
    #[serde(default)]
    pub role_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_case_insensitively_and_reject_others() {
        assert_eq!(RtmsAction::parse("Start"), Some(RtmsAction::Start));
        assert_eq!(RtmsAction::parse("resume"), Some(RtmsAction::Resume));
        assert_eq!(RtmsAction::parse("launch"), None);
        assert_eq!(RtmsAction::parse(""), None);
    }

    #[test]
    fn zoom_errors_map_to_clear_http_answers() {
        let e: AppError = ZoomError::NeedsAuth("x".into()).into();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let e: AppError = ZoomError::Api {
            status: 500,
            code: None,
            message: "boom".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let e: AppError = ZoomError::Api {
            status: 429,
            code: None,
            message: "slow down".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
