//! The authorized REST calls: `users/me` and the RTMS status of an
//! engagement, through [`ZoomClient::call`], which refreshes shortly before
//! expiry and once on a 401; Zoom's error answers become [`ZoomError::Api`].
//!
//! Never refreshes or stores tokens itself (that is `tokens`).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use url::Url;

use super::{CALL_TIMEOUT, Caller, REFRESH_MARGIN, RtmsAction, ZoomClient, ZoomError, ZoomUser};
use crate::time::now_ms;

impl ZoomClient {
    fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.config.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub async fn users_me(&self, access_token: &str) -> Result<ZoomUser, ZoomError> {
        let resp = self
            .inner
            .http
            .get(self.api_url(&["users", "me"]))
            .bearer_auth(access_token)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(ZoomError::Transport)?;
        let resp = api_result(resp).await?;
        resp.json()
            .await
            .map_err(|e| ZoomError::Malformed(format!("users/me: {e}")))
    }

    /// Make an authorized REST call for `caller`: refresh shortly before
    /// expiry; on a 401 refresh once (single-flight) and retry once.
    pub async fn call(
        &self,
        caller: &Caller,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ZoomError> {
        let mut record = self.tokens_for(caller).await?;
        if record.expires_at_ms - now_ms() < REFRESH_MARGIN.as_millis() as i64 {
            match self.refresh(&record).await {
                Ok(fresh) => record = fresh,
                // A transient failure while the token still has a little
                // life left: use it rather than fail the call.
                Err(e)
                    if !matches!(e, ZoomError::NeedsAuth(_)) && record.expires_at_ms > now_ms() =>
                {
                    tracing::warn!(error = %e, "early refresh failed; using the current token");
                }
                Err(e) => return Err(e),
            }
        }
        let send = |token: &str| {
            self.inner
                .counters
                .rest_calls
                .fetch_add(1, Ordering::Relaxed);
            build(&self.inner.http, token).timeout(CALL_TIMEOUT).send()
        };
        let resp = send(&record.access_token)
            .await
            .map_err(ZoomError::Transport)?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        tracing::info!("Zoom refused the access token; refreshing");
        let record = self.refresh(&record).await?;
        send(&record.access_token)
            .await
            .map_err(ZoomError::Transport)
    }

    /// Start/stop/pause/resume RTMS on an engagement.
    pub async fn set_rtms_status(
        &self,
        caller: &Caller,
        engagement_id: &str,
        action: RtmsAction,
    ) -> Result<(), ZoomError> {
        let url = self.api_url(&["contact_center", engagement_id, "rtms_app", "status"]);
        let body = json!({
            "action": action.as_str(),
            "settings": { "client_id": self.inner.config.client_id },
        });
        let resp = self
            .call(caller, |http, token| {
                http.put(url.clone()).bearer_auth(token).json(&body)
            })
            .await?;
        api_result(resp).await.map(drop)
    }
}

/// A REST answer: success passes through, errors become [`ZoomError::Api`]
/// with Zoom's `{code, message}` when present.
async fn api_result(resp: reqwest::Response) -> Result<reqwest::Response, ZoomError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(ZoomError::Api {
        status: status.as_u16(),
        code: v.get("code").and_then(Value::as_i64),
        message,
    })
}
