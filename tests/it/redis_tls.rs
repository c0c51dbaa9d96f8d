//! `rediss://`: the app talks to a real `redis-server` listening with TLS
//! only (`--port 0 --tls-port N`), whose certificate is signed by a CA the
//! harness makes; `REDIS_CA_CERT` names that CA. Without it (system roots) the
//! server is refused; plain `redis://` to the TLS port does not work. The
//! downstream feed (`SINK_REDIS_URL`) connects the same way.

use std::path::PathBuf;

use zcc_rtms::secret::Secret;
use zcc_rtms::store::{Backend, DEFAULT_PREFIX, Store, TokenKey};

use crate::support::redis::RedisServer;
use crate::support::{Options, TestApp, WAIT, engagement_started, eventually, init};

async fn open(url: String, ca_cert: Option<PathBuf>) -> Result<Store, String> {
    let backend = Backend::Redis {
        url: Secret::new(url),
        ca_cert,
    };
    tokio::time::timeout(
        WAIT,
        Store::open(&backend, &TokenKey::generate(), DEFAULT_PREFIX),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_test_ca_works_and_is_refused_without_it() {
    init();
    let redis = RedisServer::start_tls().await;
    let store = open(redis.url(), Some(redis.ca()))
        .await
        .expect("TLS with the CA");
    store
        .check_write()
        .await
        .expect("a write round-trip over TLS");

    let err = open(redis.url(), None)
        .await
        .expect_err("the system roots do not know the test CA");
    assert!(!err.is_empty());
    let plain = open(
        format!("redis://127.0.0.1:{}/", redis.tls_port().expect("TLS")),
        None,
    )
    .await;
    assert!(plain.is_err(), "the server speaks TLS only");
}

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the URL and CA reach it this way.
    static TLS_REDIS: (String, PathBuf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_stores_webhooks_and_fans_out_through_rediss() {
    let redis = RedisServer::start_tls().await;
    let opts = Options {
        tweak: |args| {
            let (url, ca) = TLS_REDIS.with(Clone::clone);
            args.redis_url = Some(url);
            args.redis_ca_cert = Some(ca);
        },
        ..Options::default()
    };
    let app = TLS_REDIS
        .scope((redis.url(), redis.ca()), TestApp::spawn_with(opts))
        .await;
    assert_eq!(app.state.store.backend_name(), "redis");
    let resp = app
        .post_webhook(&engagement_started("acct1", "E-tls"))
        .await;
    assert_eq!(resp.status(), 200);
    eventually("the webhook took effect over TLS", || async {
        app.active_ids()
            .await
            .iter()
            .any(|e| e == "E-tls")
            .then_some(())
    })
    .await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downstream_feed_publishes_through_rediss_trusting_redis_ca_cert() {
    let redis = RedisServer::start_tls().await;
    let opts = Options {
        tweak: |args| {
            let (url, ca) = TLS_REDIS.with(Clone::clone);
            // The store stays embedded: the CA is the feed's.
            args.sink_redis_url = Some(url);
            args.redis_ca_cert = Some(ca);
        },
        ..Options::default()
    };
    let app = TLS_REDIS
        .scope((redis.url(), redis.ca()), TestApp::spawn_with(opts))
        .await;
    assert_eq!(app.state.store.backend_name(), "embedded");
    let resp = app
        .post_webhook(&engagement_started("acct1", "E-feed-tls"))
        .await;
    assert_eq!(resp.status(), 200);
    let client =
        zcc_rtms::store::redis_client(&redis.url(), Some(&redis.ca())).expect("TLS client");
    let key = zcc_rtms::sink::events_key(DEFAULT_PREFIX);
    eventually("the engagement on the feed, over TLS", || async {
        let read = async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async::<redis::streams::StreamRangeReply>(&mut conn)
                .await
                .ok()
        };
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .ok()??;
        reply
            .ids
            .iter()
            .any(|e| e.get::<String>("engagement").as_deref() == Some("E-feed-tls"))
            .then_some(())
    })
    .await;
    app.shutdown().await;
}
