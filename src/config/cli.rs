//! The command line: `Cli`, its subcommands, and the raw flags they carry
//! (`ServeArgs`, `CredentialArgs`, `HealthcheckArgs`), each flag also read
//! from its environment variable (through clap, the app's only reader of
//! the environment). Owns the flag and variable names, their help texts and
//! a `Debug` that shows only whether a secret is set.
//!
//! Never validates a value: every flag stays the string it was given until
//! `Config::from_args` checks it (the health check's port aside).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::ConfigError;
use super::parse::parse_port;

#[derive(Debug, Parser)]
#[command(
    name = "zcc-rtms",
    version,
    about = "Zoom Contact Center RTMS app (serve), Zoom simulator (simulate), set-up check (doctor)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the app (the default).
    Serve(ServeArgs),
    /// Run the Zoom simulator on its own.
    Simulate(zoom_sim::SimulateArgs),
    /// Check the configuration and what it points at, then exit.
    Doctor(ServeArgs),
    /// Ask the app running on this host for `GET /health`; exit 0 when it
    /// answers ok (the container health check: no shell or curl needed).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args, Default)]
pub struct HealthcheckArgs {
    /// Port the app listens on (as it was started).
    #[arg(long = "port", env = "BACKEND_PORT")]
    pub port: Option<String>,
}

impl HealthcheckArgs {
    /// The port to ask: `BACKEND_PORT` as the app reads it (0 is refused:
    /// a running app never listens there).
    pub fn port(&self) -> Result<u16, ConfigError> {
        match parse_port(self.port.as_deref())? {
            0 => Err(ConfigError::Malformed {
                var: "BACKEND_PORT",
                reason: "0 picks a free port at start: pass the port the app took".into(),
            }),
            p => Ok(p),
        }
    }
}

/// The Zoom app credentials the app runs with.
#[derive(Clone, Args, Default)]
pub struct CredentialArgs {
    /// OAuth client id of the Zoom app.
    #[arg(long, env = "ZOOM_APP_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OAuth client secret of the Zoom app (also keys the RTMS signature and the app context).
    #[arg(long, env = "ZOOM_APP_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Webhook secret token (Event Subscriptions).
    #[arg(long, env = "ZOOM_SECRET_TOKEN", hide_env_values = true)]
    pub secret_token: Option<String>,
}

#[derive(Clone, Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Port to listen on (0 picks a free one).
    #[arg(long = "port", env = "BACKEND_PORT")]
    pub port: Option<String>,
    /// Address to bind.
    #[arg(long = "bind", env = "BIND_ADDR")]
    pub bind: Option<String>,
    /// Public https URL of this app (webhooks, OAuth redirect).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the browser goes after the OAuth install.
    #[arg(long, env = "FRONTEND_URL")]
    pub frontend_url: Option<String>,
    /// OAuth redirect URL (default `{PUBLIC_URL}/api/auth/callback`).
    #[arg(long, env = "ZOOM_REDIRECT_URL")]
    pub redirect_url: Option<String>,
    /// Zoom OAuth host.
    #[arg(long, env = "ZOOM_HOST")]
    pub zoom_host: Option<String>,
    /// Zoom REST base URL.
    #[arg(long, env = "ZOOM_API_URL")]
    pub zoom_api_url: Option<String>,
    /// Extra root certificate (PEM) trusted for Zoom HTTPS and RTMS wss, e.g. a simulator's CA.
    #[arg(long, env = "ZOOM_CA_CERT")]
    pub zoom_ca_cert: Option<PathBuf>,
    /// Zoom Apps SDK script URL; the CSP `script-src` follows its origin.
    #[arg(long, env = "ZOOM_APPS_SDK_URL")]
    pub apps_sdk_url: Option<String>,
    /// Redis URL; when set, state is shared through Redis (`rediss://` for TLS).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Root certificate (PEM) trusted for a `rediss://` Redis instead of the system's.
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<PathBuf>,
    /// Secret for signing sessions and OAuth state (at least 32 characters).
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,
    /// Key (64 hex chars or base64 of 32 bytes) encrypting tokens at rest.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEY", hide_env_values = true)]
    pub token_encryption_key: Option<String>,
    /// Prefix of every store key (several apps can share one Redis).
    #[arg(long, env = "STORE_PREFIX")]
    pub store_prefix: Option<String>,
    /// Directory of the embedded store.
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Most RTMS streams consumed at once by this instance.
    #[arg(long, env = "RTMS_MAX_STREAMS")]
    pub max_streams: Option<String>,
    /// Milliseconds without any message from Zoom before an RTMS connection counts as lost.
    #[arg(long, env = "RTMS_IDLE_TIMEOUT_MS")]
    pub rtms_idle_timeout_ms: Option<String>,
    /// Milliseconds a stream lease lives between renewals (with Redis).
    #[arg(long, env = "RTMS_LEASE_TTL_MS")]
    pub rtms_lease_ttl_ms: Option<String>,
    /// Milliseconds another instance's unfinished webhook waits before this one takes it over (with Redis).
    #[arg(long, env = "INBOX_CLAIM_IDLE_MS")]
    pub inbox_claim_idle_ms: Option<String>,
    /// Seconds after which an engagement never reported ended is closed.
    #[arg(long, env = "ENGAGEMENT_MAX_AGE_SECS")]
    pub engagement_max_age_secs: Option<String>,
    /// In demo mode: do not drive engagements automatically.
    #[arg(long, env = "DEMO_MANUAL")]
    pub demo_manual: Option<String>,
    /// Redis URL of the feed for downstream consumers (lifecycle events and
    /// transcript lines on a Redis stream); unset = no feed.
    #[arg(long, env = "SINK_REDIS_URL", hide_env_values = true)]
    pub sink_redis_url: Option<String>,
    /// Publish every audio frame to the feed too (`true`/`false`).
    #[arg(long, env = "SINK_AUDIO")]
    pub sink_audio: Option<String>,
    /// About how many entries the feed's events stream keeps.
    #[arg(long, env = "SINK_EVENTS_MAXLEN")]
    pub sink_events_maxlen: Option<String>,
    /// About how many frames each engagement's audio stream keeps.
    #[arg(long, env = "SINK_AUDIO_MAXLEN")]
    pub sink_audio_maxlen: Option<String>,
    /// Operator bearer token (at least 32 characters): read-only view of everything and `/api/stats`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Zoom user ids that see every engagement of their own account (comma-separated).
    #[arg(long, env = "SUPERVISOR_USER_IDS")]
    pub supervisor_user_ids: Option<String>,
    /// Origins, besides the app's own, allowed to make state-changing requests (comma-separated; `*.` wildcards).
    #[arg(long, env = "ZOOM_CLIENT_ORIGINS")]
    pub zoom_client_origins: Option<String>,
    /// Milliseconds a connection may take to send a request's headers; also the idle keep-alive limit.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<String>,
    /// Milliseconds a request body may take to arrive.
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS")]
    pub http_body_timeout_ms: Option<String>,
    /// Most open client connections at once.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<String>,
    /// Most live-feed (SSE) subscribers at once, overall.
    #[arg(long, env = "SSE_MAX_SUBSCRIBERS")]
    pub sse_max_subscribers: Option<String>,
    /// Most live-feed (SSE) subscribers at once per session (per user; per address when anonymous in demo).
    #[arg(long, env = "SSE_MAX_PER_SESSION")]
    pub sse_max_per_session: Option<String>,
    /// Requests per minute per client address on the anonymous routes that write.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<String>,
    /// Burst allowed above that rate.
    #[arg(long, env = "RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<String>,
    /// Record calls (one WAV per engagement and channel) under this directory.
    #[arg(long, env = "RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    #[arg(long, env = "RECORDINGS_RETENTION_DAYS")]
    pub recordings_retention_days: Option<String>,
}

/// `Some("***")` for a set secret, so `Debug` output shows presence only.
fn redacted(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "***")
}

impl std::fmt::Debug for CredentialArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialArgs")
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("secret_token", &redacted(&self.secret_token))
            .finish()
    }
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("credentials", &self.credentials)
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("zoom_host", &self.zoom_host)
            .field("zoom_api_url", &self.zoom_api_url)
            .field("redis_url", &redacted(&self.redis_url))
            .field("sink_redis_url", &redacted(&self.sink_redis_url))
            .field("session_secret", &redacted(&self.session_secret))
            .field(
                "token_encryption_key",
                &redacted(&self.token_encryption_key),
            )
            .field("data_dir", &self.data_dir)
            .field("admin_token", &redacted(&self.admin_token))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PORT;

    #[test]
    fn the_health_check_asks_the_configured_port_and_never_port_zero() {
        let port = |p: Option<&str>| {
            HealthcheckArgs {
                port: p.map(Into::into),
            }
            .port()
        };
        assert_eq!(port(None), Ok(DEFAULT_PORT));
        assert_eq!(port(Some("8080")), Ok(8080));
        for bad in ["0", "eighty"] {
            let err = port(Some(bad)).expect_err(bad);
            assert!(err.to_string().contains("BACKEND_PORT"), "{err}");
        }
    }
}
