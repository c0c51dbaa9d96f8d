//! The browser session: an encrypted cookie binding a browser to a Zoom user
//! and account, set after the app context is verified (`GET /api/context`).
//!
//! The cookie is `SameSite=None; Secure` and, per the PWA seed, not HttpOnly.
//! Its content is encrypted (AES-GCM, key from `SESSION_SECRET`), so it can be
//! neither read nor forged by the page.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::secret::Secret;
use crate::state::AppState;
use crate::time::now_ms;

pub const COOKIE_NAME: &str = "zcc_session";
/// How long a session lasts without a fresh app context.
pub const SESSION_TTL_MS: i64 = 8 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    pub user_id: String,
    pub account_id: Option<String>,
    pub expires_at_ms: i64,
}

/// The 64-byte cookie key derived from `SESSION_SECRET`.
pub fn cookie_key(secret: &Secret) -> Key {
    let digest = Sha512::digest(secret.expose().as_bytes());
    Key::from(digest.as_slice())
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.cookie_key.clone()
    }
}

/// Build the session cookie for `data`.
pub fn cookie(data: &SessionData) -> Cookie<'static> {
    let value = serde_json::to_string(data).unwrap_or_default();
    Cookie::build((COOKIE_NAME, value))
        .path("/")
        .secure(true)
        .http_only(false)
        .same_site(SameSite::None)
        .build()
}

/// Read the session from a private jar; expired or unreadable is `None`.
pub fn read(jar: &PrivateCookieJar) -> Option<SessionData> {
    let cookie = jar.get(COOKIE_NAME)?;
    let data: SessionData = serde_json::from_str(cookie.value()).ok()?;
    (data.expires_at_ms > now_ms()).then_some(data)
}

/// Whether a session was issued at or before its user's revocation (they
/// removed the app at `revoked_at_ms`).
pub fn revoked(data: &SessionData, revoked_at_ms: i64) -> bool {
    data.expires_at_ms.saturating_sub(SESSION_TTL_MS) <= revoked_at_ms
}

/// `data` unless its user removed the app after it was issued. A store
/// failure keeps the session (the narrower view; data routes then answer
/// 503 on their own).
pub async fn unless_revoked(state: &AppState, data: SessionData) -> Option<SessionData> {
    match state.store.sessions_revoked_at(&data.user_id).await {
        Ok(Some(at)) if revoked(&data, at) => None,
        Ok(_) => Some(data),
        Err(e) => {
            tracing::warn!(error = %e, "checking session revocation");
            Some(data)
        }
    }
}

/// Extractor: the caller's session, if any. Never rejects.
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<SessionData>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = PrivateCookieJar::from_headers(&parts.headers, state.cookie_key.clone());
        Ok(MaybeSession(match read(&jar) {
            Some(data) => unless_revoked(state, data).await,
            None => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_issued_up_to_the_revocation_are_revoked_later_ones_are_not() {
        let session = |issued: i64| SessionData {
            user_id: "u".into(),
            account_id: None,
            expires_at_ms: issued + SESSION_TTL_MS,
        };
        assert!(revoked(&session(1_000), 1_000));
        assert!(revoked(&session(999), 1_000));
        assert!(!revoked(&session(1_001), 1_000));
        assert!(revoked(
            &SessionData {
                expires_at_ms: i64::MIN,
                ..session(0)
            },
            0
        ));
    }
}
