//! Crash safety of the tokens: the real binary (`zcc-rtms`) is killed with
//! SIGKILL right after a refresh and started again; Redis is killed and
//! restarted from its append-only file. The rotated tokens must be there —
//! the old refresh token is dead at Zoom, so losing them would log the user
//! out.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use zcc_rtms::secret::Secret;
use zcc_rtms::store::{Backend, DEFAULT_PREFIX, Store, TokenKey};
use zoom_sim::{SimConfig, SimHandle, Simulator};

use crate::auth_harness::*;
use crate::helpers::{WAIT, eventually, init};
use crate::redis_server::RedisServer;

/// A simulator running in this process.
pub(crate) struct Sim {
    pub(crate) handle: SimHandle,
    pub(crate) base: String,
    pub(crate) cfg: SimConfig,
    ca_cert: Option<std::path::PathBuf>,
    pub(crate) http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Sim {
    pub(crate) async fn start() -> Sim {
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
pub(crate) enum StoreAt<'a> {
    Dir(&'a std::path::Path),
    Redis(&'a RedisServer),
}

/// The real binary, serving on a free port, killed by PID when dropped.
pub(crate) struct Binary<'a> {
    sim: &'a Sim,
    pub(crate) child: Child,
    pub(crate) base: String,
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
        let Ok(resp) = self
            .http()
            .get(self.url("/api/engagement/active"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
        else {
            return false;
        };
        resp.json::<Value>().await.is_ok_and(|v| {
            v["engagements"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|e| e["engagement_id"].as_str() == Some(engagement_id))
            })
        })
    }
}

pub(crate) struct Secrets {
    pub(crate) key: [u8; 32],
    session: String,
}

impl Secrets {
    pub(crate) fn new() -> Self {
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
    pub(crate) async fn spawn(
        sim: &'a Sim,
        at: &StoreAt<'_>,
        secrets: &Secrets,
        cwd: &std::path::Path,
    ) -> Binary<'a> {
        Self::spawn_env(sim, at, secrets, cwd, &[]).await
    }

    pub(crate) async fn spawn_env(
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

    /// SIGKILL: no shutdown, no flush, nothing.
    pub(crate) async fn kill9(mut self) {
        self.child.start_kill().expect("kill");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the binary dies")
            .expect("wait");
    }
}

/// Install, expire the access token, make a call that forces a refresh and
/// return the session cookie and engagement.
async fn install_and_refresh(bin: &Binary<'_>) -> (String, String) {
    let cookie = install(bin, None).await;
    let engagement = new_engagement(bin, None).await;
    fault(bin, json!({ "expire_tokens": true })).await;
    let (code, body) = control(bin, Some(&cookie), &engagement, "stop").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(refresh_grants(bin), 1, "one refresh happened");
    (cookie, engagement)
}

/// The stored tokens are the rotated ones: their access token works at Zoom
/// (every token issued before the refresh was expired by the fault).
async fn assert_rotated_tokens_stored(sim: &Sim, store: &Store) {
    let user = sim.handle.default_user();
    let record = store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("readable")
        .expect("tokens present");
    assert!(!record.needs_auth);
    let me = sim
        .http
        .get(format!("{}/v2/users/me", sim.base))
        .bearer_auth(&record.access_token)
        .send()
        .await
        .expect("users/me");
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "stored access token is the new one"
    );
}

/// After the restart the same session works without another refresh and
/// without needing re-authorization.
async fn assert_still_authorized(bin: &Binary<'_>, cookie: &str, engagement: &str) {
    let st = status(bin, Some(cookie)).await;
    assert_eq!(st["authenticated"], true, "{st}");
    let (code, body) = control(bin, Some(cookie), engagement, "stop").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(refresh_grants(bin), 1, "no second refresh was needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refreshed_just_before_a_kill_9_survive_on_the_embedded_store() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let secrets = Secrets::new();
    let at = StoreAt::Dir(&data);

    let bin = Binary::spawn(&sim, &at, &secrets, dir.path()).await;
    let (cookie, engagement) = install_and_refresh(&bin).await;
    bin.kill9().await;

    let store = Store::open_embedded(&data, &TokenKey::new(secrets.key))
        .await
        .expect("the file opens after a kill -9");
    assert_rotated_tokens_stored(&sim, &store).await;
    drop(store);

    let bin = Binary::spawn(&sim, &at, &secrets, dir.path()).await;
    assert_still_authorized(&bin, &cookie, &engagement).await;
    println!(
        "[embedded] kill -9 after refresh: rotated tokens present after restart, refresh grants = 1"
    );
    bin.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refreshed_just_before_a_kill_9_survive_on_redis_even_when_redis_is_killed_too() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = RedisServer::start_with_aof().await;
    let secrets = Secrets::new();

    let bin = Binary::spawn(&sim, &StoreAt::Redis(&redis), &secrets, dir.path()).await;
    let (cookie, engagement) = install_and_refresh(&bin).await;
    bin.kill9().await;
    redis.kill9().await;
    redis.restart().await;

    let backend = Backend::Redis {
        url: Secret::new(redis.url()),
        ca_cert: None,
    };
    let store = Store::open(&backend, &TokenKey::new(secrets.key), DEFAULT_PREFIX)
        .await
        .expect("redis is back");
    assert_rotated_tokens_stored(&sim, &store).await;

    let bin = Binary::spawn(&sim, &StoreAt::Redis(&redis), &secrets, dir.path()).await;
    assert_still_authorized(&bin, &cookie, &engagement).await;

    // Redis dies under a running app: calls fail clearly, then recover.
    redis.kill9().await;
    let (code, _) = control(&bin, Some(&cookie), &engagement, "stop").await;
    assert!(code.is_server_error(), "{code}");
    redis.restart().await;
    eventually("the app to reach Redis again", || async {
        let (code, _) = control(&bin, Some(&cookie), &engagement, "stop").await;
        (code == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(refresh_grants(&bin), 1);
    println!(
        "[redis+AOF] kill -9 of app and redis after refresh: rotated tokens present, refresh grants = 1"
    );
    bin.kill9().await;
}

/// The binaries' `ADMIN_TOKEN` (for `/api/stats`).
pub(crate) const OPERATOR_TOKEN: &str = "operator-token-for-the-crash-tests-0123456789";

async fn streams_active(app: &impl Ends) -> u64 {
    let v: Value = app
        .http()
        .get(app.url("/api/stats"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    v["streams_active"].as_u64().expect("count")
}

/// Several instances on one Redis; the one consuming a stream dies (SIGKILL,
/// no lease release). Zoom reports the stream interrupted to the survivor,
/// which waits for the dead owner's lease to lapse and takes the stream over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_owner_is_killed_is_taken_over_by_another_instance() {
    let sim = Sim::start().await;
    let redis = RedisServer::start().await;
    let secrets = Secrets::new();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let short_lease = [("RTMS_LEASE_TTL_MS", "1500")];
    let at = StoreAt::Redis(&redis);
    let a = Binary::spawn_env(&sim, &at, &secrets, dir_a.path(), &short_lease).await;
    let b = Binary::spawn_env(&sim, &at, &secrets, dir_b.path(), &short_lease).await;

    let id = sim.handle.create_engagement().await.expect("engagement");
    sim.handle.start_rtms(&id).await.expect("start");
    let stat = |p: &str| {
        sim.handle
            .stats()
            .pointer(p)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    // The instances share one webhook inbox, so either may apply the start:
    // the one that consumes the stream is the owner.
    let a_owns = eventually("one instance streams", || async {
        let (on_a, on_b) = (streams_active(&a).await, streams_active(&b).await);
        (on_a + on_b == 1 && stat("/signaling/open") == 1 && stat("/frames_sent") > 100)
            .then_some(on_a == 1)
    })
    .await;
    let (owner, survivor) = if a_owns { (a, b) } else { (b, a) };
    assert_eq!(streams_active(&owner).await, 1);
    assert_eq!(streams_active(&survivor).await, 0);

    // The load balancer now sends Zoom's webhooks to the survivor.
    sim.handle
        .set_app_url(url::Url::parse(survivor.base()).expect("url"));
    owner.kill9().await;
    eventually("the survivor took the stream over", || async {
        (streams_active(&survivor).await == 1
            && stat("/signaling/open") == 1
            && stat("/signaling/total") >= 2)
            .then_some(())
    })
    .await;
    let frames = |v: Value| v["frames"].as_u64().unwrap_or(0);
    eventually("frames reach the survivor", || async {
        let v: Value = survivor
            .http()
            .get(survivor.url("/api/stats"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (frames(v) >= 100).then_some(())
    })
    .await;
}
