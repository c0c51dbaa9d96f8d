//! The real binary (`zcc-rtms`) as a child process on a free port, its store
//! in a directory or on Redis, killed by PID (SIGKILL on request, or when
//! dropped); beside it a simulator running in this process. Reached through
//! `Ends`, like an in-process `TestApp`.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use zoom_sim::{SimConfig, SimHandle, Simulator};

use super::ends::Ends;
use super::redis::RedisServer;
use super::{WAIT, init};

/// The binaries' `ADMIN_TOKEN` (for `/api/stats`).
pub const OPERATOR_TOKEN: &str = "operator-token-for-the-crash-tests-0123456789";

/// A simulator running in this process.
pub struct Sim {
    pub handle: SimHandle,
    pub base: String,
    pub cfg: SimConfig,
    ca_cert: Option<std::path::PathBuf>,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Sim {
    pub async fn start() -> Sim {
        init();
        let mut cfg = SimConfig::generated();
        cfg.tls = true;
        let sim = Simulator::build(cfg.clone()).await.expect("simulator");
        let base = sim.base_url().as_str().trim_end_matches('/').to_owned();
        let ca_cert = sim.ca_cert_path().map(ToOwned::to_owned);
        let tls = zcc_rtms::tls::client_config(ca_cert.as_deref()).expect("tls");
        let http = zcc_rtms::tls::http_client(&tls).expect("client");
        let handle = sim.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Sim {
            handle,
            base,
            cfg,
            ca_cert,
            http,
            _stop: tx,
        }
    }
}

/// Where the binary keeps its state.
pub enum StoreAt<'a> {
    Dir(&'a std::path::Path),
    Redis(&'a RedisServer),
}

/// The real binary, serving on a free port, killed by PID when dropped.
pub struct Binary<'a> {
    sim: &'a Sim,
    pub child: Child,
    pub base: String,
}

impl Ends for Binary<'_> {
    fn base(&self) -> &str {
        &self.base
    }
    fn sim_base(&self) -> &str {
        &self.sim.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.sim.http
    }
    fn client_id(&self) -> &str {
        &self.sim.cfg.client_id
    }
    fn sim(&self) -> &SimHandle {
        &self.sim.handle
    }
    async fn engagement_known(&self, engagement_id: &str) -> bool {
        self.operator_json("/api/engagement/active")
            .await
            .is_some_and(|v| {
                v["engagements"].as_array().is_some_and(|list| {
                    list.iter()
                        .any(|e| e["engagement_id"].as_str() == Some(engagement_id))
                })
            })
    }
}

pub struct Secrets {
    pub key: [u8; 32],
    session: String,
}

impl Secrets {
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        for (i, b) in zcc_rtms::util::random_hex(32)
            .as_bytes()
            .chunks(2)
            .enumerate()
        {
            key[i] = u8::from_str_radix(std::str::from_utf8(b).expect("hex"), 16).expect("hex");
        }
        Self {
            key,
            session: zcc_rtms::util::random_hex(32),
        }
    }
}

impl<'a> Binary<'a> {
    pub async fn spawn(
        sim: &'a Sim,
        at: &StoreAt<'_>,
        secrets: &Secrets,
        cwd: &std::path::Path,
    ) -> Binary<'a> {
        Self::spawn_env(sim, at, secrets, cwd, &[]).await
    }

    pub async fn spawn_env(
        sim: &'a Sim,
        at: &StoreAt<'_>,
        secrets: &Secrets,
        cwd: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Binary<'a> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zcc-rtms"));
        cmd.env_clear()
            .current_dir(cwd)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .env("BIND_ADDR", "127.0.0.1")
            .env("BACKEND_PORT", "0")
            .env("ZOOM_APP_CLIENT_ID", &sim.cfg.client_id)
            .env("ZOOM_APP_CLIENT_SECRET", sim.cfg.client_secret.expose())
            .env("ZOOM_SECRET_TOKEN", sim.cfg.secret_token.expose())
            .env("ZOOM_HOST", &sim.base)
            .env("ZOOM_API_URL", format!("{}/v2", sim.base))
            .env("SESSION_SECRET", &secrets.session)
            .env("ADMIN_TOKEN", OPERATOR_TOKEN)
            .env("TOKEN_ENCRYPTION_KEY", hex::encode(secrets.key))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(ca) = &sim.ca_cert {
            cmd.env("ZOOM_CA_CERT", ca);
        }
        cmd.envs(extra.iter().copied());
        match at {
            StoreAt::Dir(dir) => cmd.env("DATA_DIR", dir),
            StoreAt::Redis(redis) => cmd.env("REDIS_URL", redis.url()),
        };
        let mut child = cmd.spawn().expect("spawn zcc-rtms");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"] == "listening" {
                    return v["fields"]["addr"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("the binary starts listening in time")
        .expect("a listening line before the log ended");
        // Keep draining the log so the binary never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let base = format!("http://{addr}");
        sim.handle.set_app_url(url::Url::parse(&base).expect("url"));
        Binary { sim, child, base }
    }

    /// GET `path` as the operator (`OPERATOR_TOKEN`): the JSON body, None
    /// when the request or the body failed.
    pub async fn operator_json(&self, path: &str) -> Option<Value> {
        self.http()
            .get(self.url(path))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// `GET /api/stats` as the operator.
    pub async fn stats(&self) -> Option<Value> {
        self.operator_json("/api/stats").await
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the binary dies")
            .expect("wait");
    }
}
