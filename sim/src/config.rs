//! The simulator's configuration: [`SimConfig`] (what tests and demo mode
//! build, with generated credentials) and its command line (`zcc-rtms
//! simulate`), whose flags and environment variables are turned into one.
//!
//! The app's binary embeds [`SimulateArgs`] as its `simulate` subcommand; the
//! simulator reads the same Zoom credential variables as the app so one `.env`
//! serves both, but parses them itself. Never prints a secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use url::Url;

use crate::util::{Secret, random_hex};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Where webhooks go: `{app_url}/api/webhooks/zoom`. May be set later
    /// through [`SimHandle::set_app_url`].
    pub app_url: Option<Url>,
    /// Serve https/wss with a self-signed certificate made at start.
    pub tls: bool,
    pub client_id: String,
    pub client_secret: Secret,
    pub secret_token: Secret,
    /// Period of KEEP_ALIVE_REQ on every RTMS socket.
    pub keepalive: Duration,
    /// Delays before each webhook retry (Zoom: 5, 20, 60 minutes).
    pub webhook_retry: Vec<Duration>,
    /// Lifetime of issued access tokens.
    pub access_token_ttl: Duration,
    /// A webhook not answered within this counts as failed (Zoom: 3 s).
    pub webhook_timeout: Duration,
    /// How long an interrupted stream waits for the client to reconnect
    /// before it ends (Zoom: about 60 s).
    pub reconnect_window: Duration,
    /// How long a new RTMS socket may take to send its handshake.
    pub handshake_timeout: Duration,
    /// Zoom's own Apps SDK to serve at `/sim/appssdk.js` instead of the
    /// stand-in: the CommonJS build of the npm package `@zoom/appssdk`
    /// (`dist/sdk.module.js`). None serves the stand-in (offline, demo mode).
    pub apps_sdk: Option<std::path::PathBuf>,
    /// Most audio buffered between a stream's start and its first consumer,
    /// replayed at once when the consumer connects (Zoom since 2026-05:
    /// 60 s, `buffer_data`). Zero turns buffering off.
    pub max_buffered: Duration,
}

impl SimConfig {
    /// A simulator on a free loopback port with freshly generated credentials.
    pub fn generated() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_url: None,
            tls: false,
            client_id: format!("sim_{}", random_hex(8)),
            client_secret: Secret::new(random_hex(24)),
            secret_token: Secret::new(random_hex(16)),
            keepalive: Duration::from_secs(10),
            webhook_retry: vec![
                Duration::from_secs(300),
                Duration::from_secs(1200),
                Duration::from_secs(3600),
            ],
            access_token_ttl: Duration::from_secs(3600),
            webhook_timeout: Duration::from_secs(3),
            reconnect_window: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            apps_sdk: None,
            max_buffered: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub credentials: SimCredentials,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Base URL of the app that receives webhooks.
    #[arg(long)]
    pub app_url: Option<Url>,
    /// Serve https/wss with a self-signed certificate made at start.
    #[arg(long)]
    pub tls: bool,
    /// Keep-alive period of the RTMS sockets, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub keepalive_ms: u64,
    /// Serve Zoom's Apps SDK at /sim/appssdk.js instead of the stand-in: the
    /// CommonJS build of the npm package @zoom/appssdk (dist/sdk.module.js).
    #[arg(long)]
    pub apps_sdk: Option<PathBuf>,
    /// Do not buffer audio before a stream's first consumer connects (Zoom
    /// replays up to 60 s of it by default).
    #[arg(long)]
    pub no_buffer_data: bool,
}

/// The simulated Zoom app's credentials; unset ones are generated.
#[derive(Clone, Args, Default)]
pub struct SimCredentials {
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

impl std::fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("SimCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .field("secret_token", &set(&self.secret_token))
            .finish()
    }
}

impl SimulateArgs {
    /// A generated configuration with what the flags set.
    pub fn config(self) -> SimConfig {
        let mut cfg = SimConfig::generated();
        cfg.listen = self.listen;
        cfg.app_url = self.app_url;
        cfg.tls = self.tls;
        cfg.keepalive = Duration::from_millis(self.keepalive_ms.max(1));
        cfg.apps_sdk = self.apps_sdk;
        if self.no_buffer_data {
            cfg.max_buffered = Duration::ZERO;
        }
        if let Some(id) = self.credentials.client_id {
            cfg.client_id = id;
        }
        if let Some(secret) = self.credentials.client_secret {
            cfg.client_secret = Secret::new(secret);
        }
        if let Some(token) = self.credentials.secret_token {
            cfg.secret_token = Secret::new(token);
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_which_secrets_are_set_but_never_their_values() {
        let creds = SimCredentials {
            client_id: Some("cid".into()),
            client_secret: Some("hunter2".into()),
            secret_token: None,
        };
        let text = format!("{creds:?}");
        assert!(text.contains("cid") && text.contains("***"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
