//! `app_deauthorized`: a user removes the app. The webhook is verified like
//! any other; that user's tokens, sessions and engagements are deleted (on
//! either store; ended engagements too), other users are untouched, and a replay changes nothing.

use serde_json::{Value, json};

use crate::support::Kind;
use crate::support::install::*;
use crate::support::rig::Rig;
use crate::support::{TestApp, eventually, now_secs};

async fn deauthorize(app: &TestApp, account_id: &str, user_id: &str, ts_ms: i64) -> u16 {
    app.post_webhook(&json!({
        "event": "app_deauthorized",
        "event_ts": ts_ms,
        "payload": {
            "account_id": account_id,
            "user_id": user_id,
            "client_id": app.sim_cfg.client_id,
            "deauthorization_time": "2026-11-29T12:00:00.000Z",
            "signature": "unused",
        }
    }))
    .await
    .status()
    .as_u16()
}

async fn engagement_known(app: &TestApp, id: &str) -> bool {
    app.state
        .store
        .load_engagement(id)
        .await
        .expect("read")
        .is_some()
}

async fn removing_the_app_deletes_that_users_data_only(kind: Kind) {
    let rig = Rig::spawn(kind).await;
    let app = &rig.app;
    let leaver = app.sim.default_user();
    let stayer = app.sim.create_user();
    let leaver_cookie = install(app, None).await;
    let stayer_cookie = install(app, Some(&stayer.user_id)).await;
    let leaver_call = app
        .sim
        .create_engagement_for(&leaver.user_id)
        .await
        .expect("engagement");
    let stayer_call = app
        .sim
        .create_engagement_for(&stayer.user_id)
        .await
        .expect("engagement");
    eventually("both engagements are known", || async {
        (engagement_known(app, &leaver_call).await && engagement_known(app, &stayer_call).await)
            .then_some(())
    })
    .await;
    // An ended engagement each: kept for a day, but the leaver's must go too.
    let mut ended = Vec::new();
    for user in [&leaver.user_id, &stayer.user_id] {
        let call = app
            .sim
            .create_engagement_for(user)
            .await
            .expect("engagement");
        eventually("the engagement is known", || async {
            engagement_known(app, &call).await.then_some(())
        })
        .await;
        app.sim.end_engagement(&call).await.expect("end");
        eventually("the engagement has ended", || async {
            let e = app.state.store.load_engagement(&call).await.ok()??;
            (!e.is_active()).then_some(())
        })
        .await;
        ended.push(call);
    }
    let (leaver_ended, stayer_ended) = (ended[0].clone(), ended[1].clone());
    assert_eq!(
        app.auth_status(Some(&leaver_cookie)).await["authenticated"],
        true
    );

    // A forged one changes nothing.
    let body = serde_json::to_vec(&json!({
        "event": "app_deauthorized", "event_ts": now_secs() * 1000,
        "payload": {"account_id": leaver.account_id, "user_id": leaver.user_id}
    }))
    .expect("json");
    let ts = now_secs().to_string();
    let forged = app
        .post_webhook_raw(&body, &ts, &crate::support::sign("guess", &ts, &body))
        .await;
    assert_eq!(forged.status(), 401);

    assert_eq!(
        deauthorize(app, &leaver.account_id, &leaver.user_id, now_secs() * 1000).await,
        200
    );
    let store = &app.state.store;
    eventually("the leaver's data is gone", || async {
        let tokens = store
            .load_tokens(&leaver.account_id, &leaver.user_id)
            .await
            .ok()?;
        (tokens.is_none()
            && !engagement_known(app, &leaver_call).await
            && !engagement_known(app, &leaver_ended).await)
            .then_some(())
    })
    .await;
    assert!(
        store
            .ended_engagements_of(&leaver.user_id)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        store.account_of_user(&leaver.user_id).await.expect("read"),
        None
    );
    let indexed = store
        .active_engagements_in(zcc_rtms::store::ActiveIndex::Agent(&leaver.user_id))
        .await
        .expect("read");
    assert!(indexed.is_empty(), "{indexed:?}");
    let st = app.auth_status(Some(&leaver_cookie)).await;
    assert_eq!(
        st["authenticated"], false,
        "the old session no longer resolves: {st}"
    );
    let signed_in_only = |cookie: String| async move {
        app.get_as("/api/engagement/active", Some(&cookie))
            .await
            .status()
            .as_u16()
    };
    assert_eq!(
        signed_in_only(leaver_cookie.clone()).await,
        401,
        "the caller is nobody now"
    );
    assert_eq!(signed_in_only(stayer_cookie.clone()).await, 200);
    for call in [&leaver_call, &leaver_ended] {
        let lines = app.status_events(Some(call)).await;
        let about_it = lines["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["engagement_id"] == call.as_str())
            .count();
        assert_eq!(about_it, 0, "nothing kept about it: {lines}");
    }

    // Others untouched.
    assert!(
        store
            .load_tokens(&stayer.account_id, &stayer.user_id)
            .await
            .expect("read")
            .is_some()
    );
    assert!(engagement_known(app, &stayer_call).await);
    assert!(engagement_known(app, &stayer_ended).await);
    let stayer_history = app.status_events(Some(&stayer_ended)).await;
    assert!(
        stayer_history["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["engagement_id"] == stayer_ended.as_str()),
        "the other user's ended engagement keeps its history: {stayer_history}"
    );
    assert_eq!(
        app.auth_status(Some(&stayer_cookie)).await["authenticated"],
        true
    );

    // A second delivery (a replay with another timestamp) is harmless.
    assert_eq!(
        deauthorize(
            app,
            &leaver.account_id,
            &leaver.user_id,
            now_secs() * 1000 + 1
        )
        .await,
        200
    );
    let line = eventually("operators see it", || async {
        let v: Value = app.status_events(None).await;
        let lines: Vec<String> = v["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .filter(|m| m.starts_with("App removed by a user"))
            .collect();
        (lines.len() == 2).then_some(lines)
    })
    .await;
    assert!(!line[0].contains(&leaver.user_id), "names no one: {line:?}");
    assert!(engagement_known(app, &stayer_call).await);
    assert!(engagement_known(app, &stayer_ended).await);
    // Installing again works, with a fresh session.
    let again = install(app, None).await;
    assert_eq!(app.auth_status(Some(&again)).await["authenticated"], true);
    rig.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_app_deletes_that_users_data_only_embedded() {
    removing_the_app_deletes_that_users_data_only(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_app_deletes_that_users_data_only_redis() {
    removing_the_app_deletes_that_users_data_only(Kind::Redis).await;
}
