//! Tokens are never dropped: a refresh Zoom answered but the store refused
//! (a real Redis refusing writes to token keys, by ACL) is held in memory,
//! used, and stored as soon as the store takes it.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::Kind;
use crate::support::eventually;
use crate::support::install::*;
use crate::support::redis::RedisServer;
use crate::support::rig::Rig;

/// A connection as an admin user the app's `default` user cannot limit.
async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "test-admin",
                "on",
                ">test-admin-pw",
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .query_async(&mut c)
        .await
        .expect("acl admin");
    let _: () = redis::cmd("AUTH")
        .arg(&["test-admin", "test-admin-pw"][..])
        .query_async(&mut c)
        .await
        .expect("auth admin");
    c
}

/// The app's user may read token keys but not write them; everything else
/// is as before.
async fn refuse_token_writes(c: &mut redis::aio::MultiplexedConnection, refuse: bool) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg(&["SETUSER", "default", "resetkeys"][..]);
    if refuse {
        cmd.arg(&["~zcc-rtms:[^t]*", "%R~zcc-rtms:tokens:*"][..]);
    } else {
        cmd.arg("~*");
    }
    let _: () = cmd.query_async(c).await.expect("acl default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_save_fails_is_held_used_and_stored_later_and_the_user_stays_logged_in() {
    let rig = Rig::spawn(Kind::Redis).await;
    let app = &rig.app;
    let cookie = install(app, None).await;
    let user = app.sim.default_user();
    // Known to the app before the store starts refusing token writes.
    let engagement = new_engagement(app, Some(&user.user_id)).await;
    let before = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("read")
        .expect("installed");

    let mut admin = admin(rig.redis.as_ref().expect("redis")).await;
    refuse_token_writes(&mut admin, true).await;
    fault(app, json!({ "expire_tokens": true })).await;
    let (code, body) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "the refreshed pair is used: {body}");
    assert_eq!(refresh_grants(app), 1);
    assert_eq!(app.state.zoom.unsaved_tokens(), 1, "held in memory");
    let stored = app
        .state
        .store
        .load_tokens(&user.account_id, &user.user_id)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        stored.access_token, before.access_token,
        "the store refused the new pair"
    );
    // Still logged in meanwhile, with no second refresh (the old refresh
    // token is dead at Zoom: using it would log the user out).
    let (code, body) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(refresh_grants(app), 1);

    refuse_token_writes(&mut admin, false).await;
    eventually("the held pair is stored", || async {
        let stored = app
            .state
            .store
            .load_tokens(&user.account_id, &user.user_id)
            .await
            .ok()??;
        (stored.access_token != before.access_token && app.state.zoom.unsaved_tokens() == 0)
            .then_some(())
    })
    .await;
    let st = app.auth_status(Some(&cookie)).await;
    assert_eq!(st["authenticated"], true, "{st}");
    let (code, body) = app.stop_rtms(Some(&cookie), &engagement).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(refresh_grants(app), 1);
    rig.app.shutdown().await;
}
