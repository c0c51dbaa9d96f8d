//! Apps under test beyond one `TestApp`: `Rig` (an app and the simulator on
//! either store), a second instance on the same simulator and Redis, and
//! what the multi-instance tests read of them (another instance's status
//! lines, whether fan-out is up, the simulator's counters via `stat`).

#![allow(dead_code)]

use serde_json::Value;
use zcc_rtms::config::{CredentialArgs, ServeArgs};
use zcc_rtms::{App, Config};

use super::redis::RedisServer;
use super::{Kind, Options, TestApp, eventually};

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the Redis URL reaches it this way.
    static REDIS_URL: String;
}

/// A `TestApp` (app in Zoom mode + simulator) on the given store.
pub struct Rig {
    pub app: TestApp,
    pub redis: Option<RedisServer>,
}

impl Rig {
    pub async fn spawn(kind: Kind) -> Rig {
        match kind {
            Kind::Embedded => Rig {
                app: TestApp::spawn().await,
                redis: None,
            },
            Kind::Redis => {
                let redis = RedisServer::start().await;
                let opts = Options {
                    tweak: |args| args.redis_url = Some(REDIS_URL.with(Clone::clone)),
                    ..Options::default()
                };
                let app = REDIS_URL
                    .scope(redis.url(), TestApp::spawn_with(opts))
                    .await;
                assert_eq!(app.state.store.backend_name(), "redis");
                Rig {
                    app,
                    redis: Some(redis),
                }
            }
        }
    }
}

/// A counter from the simulator's stats, by JSON pointer (0 when absent).
pub fn stat(app: &TestApp, pointer: &str) -> u64 {
    app.sim
        .stats()
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A second app instance on the same simulator and Redis as `rig`.
pub(crate) async fn second_instance(
    rig: &Rig,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    second_instance_with(rig, |_| {}).await
}

/// Stop the second instance, then the rig's app.
pub(crate) async fn stop_both(
    rig: Rig,
    stop_other: tokio::sync::oneshot::Sender<()>,
    other_task: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let _ = stop_other.send(());
    other_task
        .await
        .expect("join")
        .expect("second instance ran");
    rig.app.shutdown().await;
}

/// GET `path` of the instance at `base` as the operator (`app`'s token is
/// every instance's): the JSON body.
pub(crate) async fn operator_json_at(app: &TestApp, base: &str, path: &str) -> Value {
    app.operator
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .json()
        .await
        .expect("json")
}

/// The operator's view of `base`'s status lines (newest first).
pub(crate) async fn status_lines(app: &TestApp, base: &str, query: &str) -> Vec<String> {
    let v = operator_json_at(app, base, &format!("/api/webhooks/events{query}")).await;
    v["events"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

/// Wait until the instance at `other` hears `app`'s status bus (its
/// fan-out subscription is up).
pub(crate) async fn fanout_connected(app: &TestApp, other: &str) {
    let mut n = 0;
    eventually("fan-out connected", || {
        n += 1;
        app.state
            .bus
            .status(None, zcc_rtms::status::Level::Info, format!("probe {n}"));
        async move {
            status_lines(app, other, "")
                .await
                .iter()
                .any(|m| m.starts_with("probe"))
                .then_some(())
        }
    })
    .await;
}

/// A second instance like [`second_instance`], its config changed by `tweak`.
pub(crate) async fn second_instance_with(
    rig: &Rig,
    tweak: impl FnOnce(&mut Config),
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let app = &rig.app;
    let cfg = &app.state.config;
    let args = ServeArgs {
        credentials: CredentialArgs {
            client_id: Some(app.sim_cfg.client_id.clone()),
            client_secret: Some(app.sim_cfg.client_secret.expose().to_owned()),
            secret_token: Some(app.sim_cfg.secret_token.expose().to_owned()),
        },
        port: Some("0".into()),
        bind: Some("127.0.0.1".into()),
        zoom_host: Some(app.sim_base.clone()),
        zoom_api_url: Some(format!("{}/v2", app.sim_base)),
        zoom_ca_cert: cfg.zoom.ca_cert.clone(),
        session_secret: Some(cfg.session_secret.expose().to_owned()),
        token_encryption_key: Some("00".repeat(32)),
        redis_url: Some(rig.redis.as_ref().expect("redis").url()),
        ..ServeArgs::default()
    };
    let mut config = Config::from_args(&args).expect("config");
    // Same key and operator token as the first instance (generated for it).
    config.token_encryption_key = cfg.token_encryption_key.clone();
    config.access = cfg.access.clone();
    tweak(&mut config);
    let second = App::build(config).await.expect("second instance");
    let base = format!("http://127.0.0.1:{}", second.local_addr().port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run_until_stopped(async move {
        let _ = rx.await;
    }));
    (base, tx, task)
}
