//! Configuration: command-line flags, environment and `.env`, turned into one
//! typed, validated [`Config`].
//!
//! This is the only module of the app that reads the environment (the
//! `simulate` subcommand's flags are the simulator's own,
//! `zoom_sim::SimulateArgs`). Every value is checked at start-up; a missing or
//! malformed one yields a [`ConfigError`] naming the variable. Secrets are wrapped in [`Secret`] and never printed.
//!
//! Mode: with none of `ZOOM_APP_CLIENT_ID`, `ZOOM_APP_CLIENT_SECRET`,
//! `ZOOM_SECRET_TOKEN` set the app runs in demo mode against the built-in
//! simulator; with all three set it talks to Zoom; a partial set is an error.
//!
//! Here: the validated [`Config`] and its parts, and `Config::from_args`,
//! which checks every raw flag. The flags themselves are in `cli`, the
//! single-value parsers in `parse`, who-may-do-what and the edge's limits in
//! `access`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::secret::Secret;
use crate::store::TokenKey;

mod access;
mod cli;
mod parse;
pub use access::{AccessConfig, DEFAULT_CLIENT_ORIGINS, EdgeConfig};
use access::{access_config, edge_config};
pub use cli::{Cli, Command, CredentialArgs, HealthcheckArgs, ServeArgs};
use parse::{at_least, opt_url, parse_bool, parse_key, parse_port};

pub const DEFAULT_PORT: u16 = 3001;
pub const DEFAULT_ZOOM_HOST: &str = "https://zoom.us";
pub const DEFAULT_ZOOM_API_URL: &str = "https://api.zoom.us/v2";
pub const DEFAULT_APPS_SDK_URL: &str = "https://appssdk.zoom.us/sdk.min.js";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is required {why}")]
    Missing {
        var: &'static str,
        why: &'static str,
    },
    #[error("{var} is malformed: {reason}")]
    Malformed { var: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Which Zoom the app talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No credentials: the built-in simulator stands in for Zoom.
    Demo {
        manual: bool,
    },
    Zoom,
}

impl Mode {
    /// The mode's one name, as `/health`, the page and `/api/auth/status` show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Demo { .. } => "demo",
            Mode::Zoom => "zoom",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ZoomConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub secret_token: Secret,
    pub host: Url,
    pub api_url: Url,
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen: SocketAddr,
    /// Zoom credentials and endpoints. In demo mode these are filled in by
    /// `App::build` once the in-process simulator is up.
    pub zoom: ZoomConfig,
    pub public_url: Option<Url>,
    pub frontend_url: Option<String>,
    pub redirect_url: Option<Url>,
    pub apps_sdk_url: Url,
    pub redis_url: Option<Secret>,
    /// Trusted root for `rediss://` (the system's roots otherwise).
    pub redis_ca_cert: Option<PathBuf>,
    pub session_secret: Secret,
    /// Encrypts tokens at rest. Required with Zoom credentials; demo mode
    /// makes one per run.
    pub token_encryption_key: TokenKey,
    pub store_prefix: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub rtms: RtmsConfig,
    pub inbox: crate::inbox::InboxConfig,
    /// Engagements not ended after this long are closed.
    pub engagement_max_age: Duration,
    /// The feed for downstream consumers, if any.
    pub sink: Option<crate::sink::SinkConfig>,
    /// Who may do what beyond the signed-in agent: operator, supervisors,
    /// trusted origins.
    pub access: AccessConfig,
    /// Timeouts and caps at the edge.
    pub edge: EdgeConfig,
    /// Call recording; None when `RECORDINGS_DIR` is unset.
    pub recordings: Option<crate::recording::RecordingConfig>,
}

/// Default of `ENGAGEMENT_MAX_AGE_SECS`: 12 hours.
pub const DEFAULT_ENGAGEMENT_MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);

#[derive(Debug, Clone)]
pub struct RtmsConfig {
    pub max_streams: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// With nothing heard from Zoom for this long (no media, no keep-alive),
    /// the connection is treated as lost (Zoom's documented 65 s).
    pub idle_timeout: Duration,
    /// Lifetime of a stream lease between renewals (several instances).
    pub lease_ttl: Duration,
}

impl Default for RtmsConfig {
    fn default() -> Self {
        Self {
            max_streams: 5_000,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(65),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Validate raw arguments into a config.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let creds = &args.credentials;
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let set = [
            present(&creds.client_id),
            present(&creds.client_secret),
            present(&creds.secret_token),
        ];
        let demo = set.iter().all(|s| !s);
        if !demo {
            for (i, var) in [
                "ZOOM_APP_CLIENT_ID",
                "ZOOM_APP_CLIENT_SECRET",
                "ZOOM_SECRET_TOKEN",
            ]
            .into_iter()
            .enumerate()
            {
                if !set[i] {
                    return Err(ConfigError::Missing {
                        var,
                        why: "when any Zoom credential is set (leave all three unset for demo mode)",
                    });
                }
            }
        }

        let port = parse_port(args.port.as_deref())?;
        let bind: IpAddr = match args.bind.as_deref().map(str::trim) {
            None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(b) => b.parse().map_err(|e| ConfigError::Malformed {
                var: "BIND_ADDR",
                reason: format!("{b:?} is not an IP address ({e})"),
            })?,
        };

        let public_url = opt_url("PUBLIC_URL", &args.public_url)?;
        let redirect_url = opt_url("ZOOM_REDIRECT_URL", &args.redirect_url)?;
        let frontend_url = args.frontend_url.clone().filter(|s| !s.trim().is_empty());
        let host = opt_url("ZOOM_HOST", &args.zoom_host)?
            .unwrap_or_else(|| Url::parse(DEFAULT_ZOOM_HOST).expect("constant URL"));
        let api_url = opt_url("ZOOM_API_URL", &args.zoom_api_url)?
            .unwrap_or_else(|| Url::parse(DEFAULT_ZOOM_API_URL).expect("constant URL"));
        let apps_sdk_url = opt_url("ZOOM_APPS_SDK_URL", &args.apps_sdk_url)?
            .unwrap_or_else(|| Url::parse(DEFAULT_APPS_SDK_URL).expect("constant URL"));
        if let Some(path) = &args.zoom_ca_cert
            && !path.is_file()
        {
            return Err(ConfigError::Malformed {
                var: "ZOOM_CA_CERT",
                reason: format!("{} is not a readable file", path.display()),
            });
        }

        let session_secret = match args.session_secret.as_deref() {
            Some(s) if s.len() >= 32 => Secret::new(s),
            Some(_) => {
                return Err(ConfigError::Malformed {
                    var: "SESSION_SECRET",
                    reason: "must be at least 32 characters".into(),
                });
            }
            None if demo => Secret::new(crate::util::random_hex(32)),
            None => {
                return Err(ConfigError::Missing {
                    var: "SESSION_SECRET",
                    why: "with Zoom credentials (at least 32 random characters)",
                });
            }
        };
        let token_encryption_key = match args.token_encryption_key.as_deref().map(str::trim) {
            Some(raw) if !raw.is_empty() => TokenKey::new(parse_key(raw)?),
            _ if demo => TokenKey::generate(),
            _ => {
                return Err(ConfigError::Missing {
                    var: "TOKEN_ENCRYPTION_KEY",
                    why: "with Zoom credentials (32 random bytes as 64 hex characters or base64)",
                });
            }
        };
        let store_prefix = match args.store_prefix.as_deref().map(str::trim) {
            None | Some("") => crate::store::DEFAULT_PREFIX.to_owned(),
            Some(p) if p.len() <= 64 && !p.chars().any(char::is_whitespace) => p.to_owned(),
            Some(_) => {
                return Err(ConfigError::Malformed {
                    var: "STORE_PREFIX",
                    reason: "must be at most 64 characters without spaces".into(),
                });
            }
        };

        let log_format = match args.log_format.as_deref() {
            None | Some("") | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Malformed {
                    var: "LOG_FORMAT",
                    reason: format!("{other:?} is neither \"pretty\" nor \"json\""),
                });
            }
        };
        let mut rtms = RtmsConfig::default();
        if let Some(n) = at_least(
            "RTMS_MAX_STREAMS",
            args.max_streams.as_deref(),
            1,
            "a positive integer",
        )? {
            rtms.max_streams = n;
        }
        let ms = |var, raw: &Option<String>, min: u64| {
            let what = format!("a number of milliseconds ≥ {min}");
            Ok::<_, ConfigError>(
                at_least(var, raw.as_deref(), min, &what)?.map(Duration::from_millis),
            )
        };
        if let Some(d) = ms("RTMS_IDLE_TIMEOUT_MS", &args.rtms_idle_timeout_ms, 100)? {
            rtms.idle_timeout = d;
        }
        if let Some(d) = ms("RTMS_LEASE_TTL_MS", &args.rtms_lease_ttl_ms, 300)? {
            rtms.lease_ttl = d;
        }
        let mut inbox = crate::inbox::InboxConfig::default();
        if let Some(d) = ms("INBOX_CLAIM_IDLE_MS", &args.inbox_claim_idle_ms, 200)? {
            inbox.claim_idle = d;
        }
        let engagement_max_age = at_least(
            "ENGAGEMENT_MAX_AGE_SECS",
            args.engagement_max_age_secs.as_deref(),
            1,
            "a positive number of seconds",
        )?
        .map_or(DEFAULT_ENGAGEMENT_MAX_AGE, Duration::from_secs);
        let redis_url = match args.redis_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                Url::parse(u).map_err(|e| ConfigError::Malformed {
                    var: "REDIS_URL",
                    reason: e.to_string(),
                })?;
                Some(Secret::new(u))
            }
        };
        let sink = sink_config(args)?;
        let redis_ca_cert = args.redis_ca_cert.clone();
        if let Some(path) = &redis_ca_cert {
            if !path.is_file() {
                return Err(ConfigError::Malformed {
                    var: "REDIS_CA_CERT",
                    reason: format!("{} is not a readable file", path.display()),
                });
            }
            let tls = |u: &Secret| u.expose().starts_with("rediss://");
            if !redis_url.as_ref().is_some_and(tls)
                && !sink.as_ref().is_some_and(|s| tls(&s.redis_url))
            {
                return Err(ConfigError::Malformed {
                    var: "REDIS_CA_CERT",
                    reason: "applies to a rediss:// REDIS_URL or SINK_REDIS_URL only".into(),
                });
            }
        }

        Ok(Config {
            mode: if demo {
                Mode::Demo {
                    manual: parse_bool(args.demo_manual.as_deref()),
                }
            } else {
                Mode::Zoom
            },
            listen: SocketAddr::new(bind, port),
            zoom: ZoomConfig {
                client_id: creds.client_id.clone().unwrap_or_default(),
                client_secret: Secret::new(creds.client_secret.clone().unwrap_or_default()),
                secret_token: Secret::new(creds.secret_token.clone().unwrap_or_default()),
                host,
                api_url,
                ca_cert: args.zoom_ca_cert.clone(),
            },
            public_url,
            frontend_url,
            redirect_url,
            apps_sdk_url,
            redis_url,
            redis_ca_cert,
            session_secret,
            token_encryption_key,
            store_prefix,
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data")),
            log_format,
            rtms,
            inbox,
            engagement_max_age,
            sink,
            access: access_config(args)?,
            edge: edge_config(args)?,
            recordings: recordings_config(args)?,
        })
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.mode, Mode::Demo { .. })
    }

    /// The origin (`scheme://host[:port]`) of the Apps SDK script, for the CSP.
    pub fn apps_sdk_origin(&self) -> String {
        self.apps_sdk_url.origin().ascii_serialization()
    }
}

/// `RECORDINGS_DIR` (blank = off) and `RECORDINGS_RETENTION_DAYS`.
fn recordings_config(
    args: &ServeArgs,
) -> Result<Option<crate::recording::RecordingConfig>, ConfigError> {
    let days = at_least(
        "RECORDINGS_RETENTION_DAYS",
        args.recordings_retention_days.as_deref(),
        1u64,
        "a positive number of days",
    )?;
    let dir = args
        .recordings_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty());
    Ok(dir.map(|dir| crate::recording::RecordingConfig {
        dir,
        retention: Duration::from_secs(
            days.unwrap_or(crate::recording::DEFAULT_RETENTION_DAYS)
                .saturating_mul(86_400),
        ),
    }))
}

/// The downstream feed's settings; None without `SINK_REDIS_URL`.
fn sink_config(args: &ServeArgs) -> Result<Option<crate::sink::SinkConfig>, ConfigError> {
    let url = match args.sink_redis_url.as_deref().map(str::trim) {
        None | Some("") => return Ok(None),
        Some(u) => u,
    };
    Url::parse(url).map_err(|e| ConfigError::Malformed {
        var: "SINK_REDIS_URL",
        reason: e.to_string(),
    })?;
    let max_len = |var, raw: &Option<String>, default| {
        at_least(var, raw.as_deref(), 1u64, "a positive number of entries")
            .map(|n| n.unwrap_or(default))
    };
    Ok(Some(crate::sink::SinkConfig {
        redis_url: Secret::new(url),
        audio: parse_bool(args.sink_audio.as_deref()),
        events_max_len: max_len(
            "SINK_EVENTS_MAXLEN",
            &args.sink_events_maxlen,
            crate::sink::DEFAULT_EVENTS_MAX_LEN,
        )?,
        audio_max_len: max_len(
            "SINK_AUDIO_MAXLEN",
            &args.sink_audio_maxlen,
            crate::sink::DEFAULT_AUDIO_MAX_LEN,
        )?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> ServeArgs {
        ServeArgs {
            credentials: CredentialArgs {
                client_id: Some("id".into()),
                client_secret: Some("secret".into()),
                secret_token: Some("token".into()),
            },
            session_secret: Some("s".repeat(32)),
            token_encryption_key: Some("ab".repeat(32)),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn the_feed_is_off_by_default_and_its_settings_are_checked() {
        assert!(Config::from_args(&creds()).expect("valid").sink.is_none());
        let mut args = creds();
        args.sink_redis_url = Some("redis://127.0.0.1:6379/".into());
        let sink = Config::from_args(&args).expect("valid").sink.expect("on");
        assert!(!sink.audio);
        assert_eq!(sink.events_max_len, crate::sink::DEFAULT_EVENTS_MAX_LEN);
        args.sink_audio = Some("true".into());
        args.sink_audio_maxlen = Some("500".into());
        let sink = Config::from_args(&args).expect("valid").sink.expect("on");
        assert!(sink.audio);
        assert_eq!(sink.audio_max_len, 500);
        assert!(!format!("{sink:?}").contains("6379"), "the URL is a secret");
        args.sink_events_maxlen = Some("0".into());
        let err = Config::from_args(&args).expect_err("zero");
        assert!(err.to_string().contains("SINK_EVENTS_MAXLEN"), "{err}");
        args.sink_events_maxlen = None;
        args.sink_redis_url = Some("not a url".into());
        let err = Config::from_args(&args).expect_err("bad url");
        assert!(err.to_string().contains("SINK_REDIS_URL"), "{err}");
    }

    #[test]
    fn no_credentials_means_demo_mode_on_port_3001() {
        let cfg = Config::from_args(&ServeArgs::default()).expect("valid");
        assert!(cfg.is_demo());
        assert_eq!(cfg.listen.port(), 3001);
    }

    #[test]
    fn a_partial_credential_set_names_the_missing_variable() {
        let mut args = creds();
        args.credentials.secret_token = None;
        let err = Config::from_args(&args).expect_err("partial");
        assert!(err.to_string().contains("ZOOM_SECRET_TOKEN"), "{err}");
    }

    #[test]
    fn malformed_port_names_backend_port() {
        let mut args = creds();
        args.port = Some("eighty".into());
        let err = Config::from_args(&args).expect_err("bad port");
        assert!(err.to_string().contains("BACKEND_PORT"), "{err}");
    }

    #[test]
    fn zoom_mode_requires_a_session_secret() {
        let mut args = creds();
        args.session_secret = None;
        let err = Config::from_args(&args).expect_err("no session secret");
        assert!(err.to_string().contains("SESSION_SECRET"), "{err}");
    }

    #[test]
    fn zoom_mode_requires_a_token_encryption_key_and_demo_mode_makes_one() {
        let mut args = creds();
        args.token_encryption_key = None;
        let err = Config::from_args(&args).expect_err("no token key");
        assert!(err.to_string().contains("TOKEN_ENCRYPTION_KEY"), "{err}");
        args.token_encryption_key = Some("short".into());
        let err = Config::from_args(&args).expect_err("short token key");
        assert!(err.to_string().contains("TOKEN_ENCRYPTION_KEY"), "{err}");
        let demo = Config::from_args(&ServeArgs::default()).expect("demo");
        let again = Config::from_args(&ServeArgs::default()).expect("demo");
        assert_ne!(demo.token_encryption_key, again.token_encryption_key);
        assert_eq!(demo.store_prefix, "zcc-rtms:");
    }

    #[test]
    fn each_mode_has_one_name() {
        assert_eq!(Mode::Demo { manual: false }.as_str(), "demo");
        assert_eq!(Mode::Demo { manual: true }.as_str(), "demo");
        assert_eq!(Mode::Zoom.as_str(), "zoom");
    }

    #[test]
    fn csp_origin_follows_the_sdk_url() {
        let mut args = creds();
        args.apps_sdk_url = Some("http://127.0.0.1:4444/sim/appssdk.js".into());
        let cfg = Config::from_args(&args).expect("valid");
        assert_eq!(cfg.apps_sdk_origin(), "http://127.0.0.1:4444");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let cfg = Config::from_args(&creds()).expect("valid");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("\"secret\""), "{dbg}");
        assert!(!dbg.contains(&"s".repeat(32)), "{dbg}");
        assert!(!dbg.contains("171, 171"), "token key bytes leak: {dbg}");
    }

    #[test]
    fn engine_numbers_below_their_minimum_name_the_variable_and_blank_means_the_default() {
        for (var, set) in [
            (
                "RTMS_MAX_STREAMS",
                (|a: &mut ServeArgs| a.max_streams = Some("0".into())) as fn(&mut ServeArgs),
            ),
            ("RTMS_IDLE_TIMEOUT_MS", |a| {
                a.rtms_idle_timeout_ms = Some("99".into())
            }),
            ("RTMS_LEASE_TTL_MS", |a| {
                a.rtms_lease_ttl_ms = Some("x".into())
            }),
            ("INBOX_CLAIM_IDLE_MS", |a| {
                a.inbox_claim_idle_ms = Some("199".into())
            }),
            ("ENGAGEMENT_MAX_AGE_SECS", |a| {
                a.engagement_max_age_secs = Some("-1".into())
            }),
        ] {
            let mut args = creds();
            set(&mut args);
            let err = Config::from_args(&args).expect_err(var);
            assert!(err.to_string().contains(var), "{err}");
        }
        let mut args = creds();
        args.rtms_lease_ttl_ms = Some(" ".into());
        args.rtms_idle_timeout_ms = Some("100".into());
        args.engagement_max_age_secs = Some("60".into());
        let cfg = Config::from_args(&args).expect("valid");
        assert_eq!(cfg.rtms.lease_ttl, RtmsConfig::default().lease_ttl);
        assert_eq!(cfg.rtms.idle_timeout, Duration::from_millis(100));
        assert_eq!(cfg.engagement_max_age, Duration::from_secs(60));
    }

    #[test]
    fn access_and_edge_settings_are_validated_with_the_variable_named() {
        let cfg = Config::from_args(&creds()).expect("valid");
        assert!(cfg.access.admin_token.is_none(), "no operator by default");
        assert!(
            cfg.access
                .client_origins
                .contains(&"https://*.zoom.us".to_owned())
        );
        assert_eq!(cfg.edge.header_timeout, Duration::from_secs(10));
        let mut args = creds();
        args.admin_token = Some("short".into());
        let err = Config::from_args(&args).expect_err("short token");
        assert!(err.to_string().contains("ADMIN_TOKEN"), "{err}");
        args.admin_token = Some("t".repeat(32));
        args.supervisor_user_ids = Some(" u1, ,u2 ".into());
        args.sse_max_per_session = Some("2".into());
        let cfg = Config::from_args(&args).expect("valid");
        assert_eq!(cfg.access.supervisor_user_ids, ["u1", "u2"]);
        assert_eq!(cfg.edge.sse_max_per_session, 2);
        assert!(
            !format!("{cfg:?}").contains(&"t".repeat(32)),
            "token redacted"
        );
        for (var, set) in [
            (
                "ZOOM_CLIENT_ORIGINS",
                (|a: &mut ServeArgs| a.zoom_client_origins = Some("zoom.us/path".into()))
                    as fn(&mut ServeArgs),
            ),
            ("HTTP_HEADER_TIMEOUT_MS", |a| {
                a.http_header_timeout_ms = Some("0".into())
            }),
            ("RATE_LIMIT_PER_MINUTE", |a| {
                a.rate_limit_per_minute = Some("many".into())
            }),
        ] {
            let mut args = creds();
            set(&mut args);
            let err = Config::from_args(&args).expect_err(var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
