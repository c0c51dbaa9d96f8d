//! Crash safety of the tokens: the real binary (`zcc-rtms`) is killed with
//! SIGKILL right after a refresh and started again; Redis is killed and
//! restarted from its append-only file. The rotated tokens must be there —
//! the old refresh token is dead at Zoom, so losing them would log the user
//! out.

use reqwest::StatusCode;
use serde_json::{Value, json};
use zcc_rtms::secret::Secret;
use zcc_rtms::store::{Backend, DEFAULT_PREFIX, Store, TokenKey};

use crate::support::binary::{Binary, Secrets, Sim, StoreAt};
use crate::support::eventually;
use crate::support::install::*;
use crate::support::redis::RedisServer;

/// Install, expire the access token, make a call that forces a refresh and
/// return the session cookie and engagement.
async fn install_and_refresh(bin: &Binary<'_>) -> (String, String) {
    let cookie = install(bin, None).await;
    let engagement = new_engagement(bin, None).await;
    fault(bin, json!({ "expire_tokens": true })).await;
    let (code, body) = bin.stop_rtms(Some(&cookie), &engagement).await;
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
    let st = bin.auth_status(Some(cookie)).await;
    assert_eq!(st["authenticated"], true, "{st}");
    let (code, body) = bin.stop_rtms(Some(cookie), engagement).await;
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
    let (code, _) = bin.stop_rtms(Some(&cookie), &engagement).await;
    assert!(code.is_server_error(), "{code}");
    redis.restart().await;
    eventually("the app to reach Redis again", || async {
        let (code, _) = bin.stop_rtms(Some(&cookie), &engagement).await;
        (code == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(refresh_grants(&bin), 1);
    println!(
        "[redis+AOF] kill -9 of app and redis after refresh: rotated tokens present, refresh grants = 1"
    );
    bin.kill9().await;
}

async fn streams_active(bin: &Binary<'_>) -> u64 {
    bin.stats().await.expect("stats")["streams_active"]
        .as_u64()
        .expect("count")
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
        (frames(survivor.stats().await?) >= 100).then_some(())
    })
    .await;
}
