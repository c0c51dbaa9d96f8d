//! The store failing under a running app: webhooks are answered 5xx (never
//! a 200 that would be lost), `/ready` and data routes say so, and once the
//! cause is gone Zoom's retries are processed — without a restart.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::Kind;
use crate::support::disk::Tmpfs;
use crate::support::rig::Rig;
use crate::support::{Options, TestApp, eventually, now_secs, sign};

/// A signed started webhook for `id`, padded with `pad` bytes (Zoom's
/// bodies are small; large ones fill a disk faster).
fn started(id: &str, pad: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "contact_center.engagement_started",
        "event_ts": now_secs() * 1000,
        "payload": {"account_id": "acct1", "object": {"engagement_id": id}, "pad": "x".repeat(pad)}
    }))
    .expect("json")
}

async fn post(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let ts = now_secs().to_string();
    let resp = app
        .post_webhook_raw(
            body,
            &ts,
            &sign(app.sim_cfg.secret_token.expose(), &ts, body),
        )
        .await;
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// GET as the operator (who sees everything).
async fn status_of(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.operator.get(app.url(path)).send().await.expect("GET");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn is_active(app: &TestApp, id: &str) -> bool {
    let (code, v) = status_of(app, "/api/engagement/active").await;
    code == 200
        && v["engagements"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["engagement_id"] == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_webhooks_are_5xx_and_ready_says_so_then_retries_are_processed() {
    let mut rig = Rig::spawn(Kind::Redis).await;
    let app = &rig.app;
    let before = started("E-before", 0);
    assert_eq!(post(app, &before).await.0, 200);
    eventually("the first webhook took effect", || async {
        is_active(app, "E-before").await.then_some(())
    })
    .await;
    assert_eq!(status_of(app, "/ready").await.0, 200);

    rig.redis.as_mut().expect("redis").kill9().await;
    let app = &rig.app;
    let during = started("E-during", 0);
    let (code, body) = post(app, &during).await;
    assert!((500..600).contains(&code), "{code} {body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Zoom will retry")),
        "{body}"
    );
    let (code, body) = status_of(app, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("redis")),
        "{body}"
    );
    let (code, body) = status_of(app, "/api/engagement/active").await;
    assert_eq!(code, 503, "never an empty answer that looks true: {body}");
    assert!(body["reason"].is_string(), "{body}");

    rig.redis.as_mut().expect("redis").restart().await;
    let app = &rig.app;
    // Zoom's retry of the refused delivery: the same body is stored now.
    let status = eventually("the retry is stored", || async {
        let (code, body) = post(app, &during).await;
        (code == 200).then_some(body)
    })
    .await;
    assert_eq!(
        status["status"], "accepted",
        "no key was left by the refusal"
    );
    eventually("the retried webhook took effect", || async {
        is_active(app, "E-during").await.then_some(())
    })
    .await;
    assert_eq!(status_of(app, "/ready").await.0, 200);
    rig.app.shutdown().await;
}

tokio::task_local! {
    /// `Options::tweak` is a plain `fn`: the data dir reaches it this way.
    static TMPFS_DIR: PathBuf;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_5xx_and_the_store_recovers_without_a_restart_once_space_is_freed() {
    let fs = Tmpfs::mount(8);
    let data = fs.path().join("data");
    let opts = Options {
        tweak: |args| args.data_dir = Some(TMPFS_DIR.with(Clone::clone)),
        ..Options::default()
    };
    let app = TMPFS_DIR.scope(data, TestApp::spawn_with(opts)).await;
    assert_eq!(post(&app, &started("E-room", 0)).await.0, 200);
    assert_eq!(status_of(&app, "/ready").await.0, 200);

    let filler = fs.fill();
    // Webhooks until one cannot be stored (bounded).
    let mut refused = None;
    for i in 0..400 {
        let body = started(&format!("E-full-{i}"), 48 * 1024);
        let (code, reply) = post(&app, &body).await;
        match code {
            200 => continue,
            500..=599 => {
                assert!(reply["reason"].is_string(), "{reply}");
                refused = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {reply}"),
        }
    }
    let refused = refused.expect("a webhook is refused once the disk is full");

    std::fs::remove_file(&filler).expect("free the space");
    let reply = eventually("the refused webhook, retried, is stored", || async {
        let (code, reply) = post(&app, &refused).await;
        (code == 200).then_some(reply)
    })
    .await;
    assert_eq!(
        reply["status"], "accepted",
        "no key was left by the refusal"
    );
    eventually("ready again, same process", || async {
        (status_of(&app, "/ready").await.0 == 200).then_some(())
    })
    .await;
    let id: Value = serde_json::from_slice(&refused).expect("json");
    let id = id["payload"]["object"]["engagement_id"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually("the retried webhook took effect", || async {
        is_active(&app, &id).await.then_some(())
    })
    .await;
    app.shutdown().await;
    drop(fs);
}
