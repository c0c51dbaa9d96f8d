//! Who may do what beyond a signed-in agent (operator token, supervisors,
//! trusted origins) and the edge's timeouts and caps, from the raw
//! arguments. Part of config: reads no environment itself, decides nothing
//! about requests.

use std::time::Duration;

use url::Url;

use super::parse::at_least;
use super::{ConfigError, ServeArgs};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `ADMIN_TOKEN`; None = no operator access.
    pub admin_token: Option<Secret>,
    pub supervisor_user_ids: Vec<String>,
    /// Origins (`scheme://host[:port]`, `*.` wildcard for subdomains) allowed
    /// to make state-changing requests besides the app's own.
    pub client_origins: Vec<String>,
}

/// The Zoom client's origins (the web client frames the app from them).
pub const DEFAULT_CLIENT_ORIGINS: &str =
    "https://zoom.us,https://*.zoom.us,https://zoom.com,https://*.zoom.com";

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            supervisor_user_ids: Vec::new(),
            client_origins: list(DEFAULT_CLIENT_ORIGINS),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub sse_max_subscribers: usize,
    pub sse_max_per_session: usize,
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            sse_max_subscribers: 5_000,
            sse_max_per_session: 8,
            rate_limit_per_minute: 120,
            rate_limit_burst: 30,
        }
    }
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A positive integer from `raw`, or `default` when unset.
fn positive<T: std::str::FromStr + PartialOrd + From<u8>>(
    var: &'static str,
    raw: Option<&str>,
    default: T,
) -> Result<T, ConfigError> {
    Ok(at_least(var, raw, T::from(1), "a positive integer")?.unwrap_or(default))
}

pub(super) fn access_config(args: &ServeArgs) -> Result<AccessConfig, ConfigError> {
    let admin_token = match args.admin_token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.len() >= 32 => Some(Secret::new(t)),
        Some(_) => {
            return Err(ConfigError::Malformed {
                var: "ADMIN_TOKEN",
                reason: "must be at least 32 characters".into(),
            });
        }
    };
    let client_origins = list(
        args.zoom_client_origins
            .as_deref()
            .unwrap_or(DEFAULT_CLIENT_ORIGINS),
    );
    for origin in &client_origins {
        let concrete = origin.replacen("://*.", "://x.", 1);
        let ok = Url::parse(&concrete).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.origin().ascii_serialization() == concrete.trim_end_matches('/')
        });
        if !ok {
            return Err(ConfigError::Malformed {
                var: "ZOOM_CLIENT_ORIGINS",
                reason: format!("{origin:?} is not an origin like https://*.zoom.us"),
            });
        }
    }
    Ok(AccessConfig {
        admin_token,
        supervisor_user_ids: list(args.supervisor_user_ids.as_deref().unwrap_or("")),
        client_origins,
    })
}

pub(super) fn edge_config(args: &ServeArgs) -> Result<EdgeConfig, ConfigError> {
    let d = EdgeConfig::default();
    let ms = |var, raw: &Option<String>, default: Duration| {
        positive(var, raw.as_deref(), default.as_millis() as u64).map(Duration::from_millis)
    };
    Ok(EdgeConfig {
        header_timeout: ms(
            "HTTP_HEADER_TIMEOUT_MS",
            &args.http_header_timeout_ms,
            d.header_timeout,
        )?,
        body_timeout: ms(
            "HTTP_BODY_TIMEOUT_MS",
            &args.http_body_timeout_ms,
            d.body_timeout,
        )?,
        max_connections: positive(
            "HTTP_MAX_CONNECTIONS",
            args.http_max_connections.as_deref(),
            d.max_connections,
        )?,
        sse_max_subscribers: positive(
            "SSE_MAX_SUBSCRIBERS",
            args.sse_max_subscribers.as_deref(),
            d.sse_max_subscribers,
        )?,
        sse_max_per_session: positive(
            "SSE_MAX_PER_SESSION",
            args.sse_max_per_session.as_deref(),
            d.sse_max_per_session,
        )?,
        rate_limit_per_minute: positive(
            "RATE_LIMIT_PER_MINUTE",
            args.rate_limit_per_minute.as_deref(),
            d.rate_limit_per_minute,
        )?,
        rate_limit_burst: positive(
            "RATE_LIMIT_BURST",
            args.rate_limit_burst.as_deref(),
            d.rate_limit_burst,
        )?,
    })
}
