//! Test support: every harness the integration tests use, and nothing that
//! is itself a test. Test modules import from here and never from each other.
//!
//! - `app`: `TestApp`, the app and the simulator in this process, one method
//!   per route;
//! - `sse`: the live feed's reader;
//! - `rig`: an app on either store, a second instance on the same Redis;
//! - `ends`: an app (in-process or the binary) as a browser calls it, one
//!   method per route;
//! - `install`: the browser's side of the OAuth install, done by hand;
//! - `binary`: the real `zcc-rtms` binary and a simulator beside it;
//! - `store`: a bare store on either backend;
//! - `redis`: a real `redis-server`, on a unix socket or TLS-only;
//! - `sim`: the simulator alone, a webhook receiver, a raw RTMS client;
//! - `zoom_http`: the simulator's OAuth and REST side, called as the app would;
//! - `browser`: headless Chromium through chromedriver;
//! - `page`: the app's page in that browser, in and outside the Zoom client;
//! - `sdks`: Zoom's Apps SDK (npm) and RTMS SDK (PyPI), installed on first use;
//! - `metrics`: the operator's `/metrics` scrape, parsed;
//! - `disk`: a small tmpfs to fill (a full disk);
//! - `fixtures`: the golden RTMS messages under `tests/fixtures/rtms/`.
//!
//! Here: the bounded wait (`eventually`), webhook signing and a started
//! webhook's body, the clock, and `on_both_stores!`.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

pub mod app;
pub mod binary;
pub mod browser;
pub mod disk;
pub mod ends;
pub mod fixtures;
pub mod install;
pub mod metrics;
pub mod page;
pub mod redis;
pub mod rig;
pub mod sdks;
pub mod sim;
pub mod sse;
pub mod store;
pub mod zoom_http;

pub use app::{Options, TestApp};
pub use sse::{Sse, SseEvent, SseRead, streaming_client};

/// Upper bound of one wait on the app (a request, a feed read, a condition).
pub const WAIT: Duration = Duration::from_secs(15);

/// The two store backends.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Embedded,
    Redis,
}

pub fn init() {
    zcc_rtms::tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// `x-zm-signature` for `body` sent at `ts` (any text: tests sign bad
/// timestamps too), made as Zoom makes it — by the simulator's signer, which
/// is written apart from the app's verifier (`zoom_sim::sign`).
pub fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    zoom_sim::sign::webhook_signature_at(secret, ts, body)
}

/// `contact_center.engagement_started` for engagement `id` of `account`, as
/// Zoom sends it (timestamp now).
pub fn engagement_started(account: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "event": "contact_center.engagement_started",
        "event_ts": now_secs() * 1000,
        "payload": {"account_id": account, "object": {"engagement_id": id}}
    })
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Poll `check` every 20 ms until it returns Some, within `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, WAIT, check).await
}

/// Poll `check` every 20 ms until it returns Some, within `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One test per store backend: for each `name`, `name::embedded` and
/// `name::redis`, each calling `name(setup(Kind::…).await)` on a
/// multi-threaded runtime. `setup` defaults to `Rig::spawn` (the app and
/// the simulator on that store) and `workers` to 2:
///
/// `on_both_stores!(a, b)`, `on_both_stores!(workers = 4; a)`,
/// `on_both_stores!(setup = Fixture::new; a)` (paths as seen from the
/// calling module).
macro_rules! on_both_stores {
    (setup = $setup:path, workers = $workers:tt; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn embedded() {
                super::$name($setup($crate::support::Kind::Embedded).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn redis() {
                super::$name($setup($crate::support::Kind::Redis).await).await;
            }
        }
    )*};
    (setup = $setup:path; $($name:ident),* $(,)?) => {
        $crate::support::on_both_stores!(setup = $setup, workers = 2; $($name),*);
    };
    (workers = $workers:tt; $($name:ident),* $(,)?) => {
        $crate::support::on_both_stores!(
            setup = $crate::support::rig::Rig::spawn, workers = $workers; $($name),*
        );
    };
    ($($name:ident),* $(,)?) => {
        $crate::support::on_both_stores!(workers = 2; $($name),*);
    };
}
pub(crate) use on_both_stores;
