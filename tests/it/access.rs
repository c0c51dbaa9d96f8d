//! Access control: who sees and touches which engagement, through every
//! route and the live feed (snapshot, live, after a lag, across instances),
//! and the cross-site, login-CSRF and operator rules.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use zcc_rtms::access::routes::{ROUTES, Who};

use crate::support::Kind;
use crate::support::install::*;
use crate::support::rig::Rig;
use crate::support::rig::second_instance_with;
use crate::support::{Sse, SseEvent, SseRead, TestApp, WAIT, streaming_client};

/// A concrete path for a route template.
fn concrete(path: &str) -> String {
    path.replace("{*path}", "app.js")
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client
        .request(method, format!("{base}{}", concrete(path)))
        .header("content-type", "application/json")
        .body(r#"{"engagementId":"E1","action":"stop"}"#);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn every_route_not_on_the_anonymous_list_answers_401_to_an_anonymous_caller() {
    let app = TestApp::spawn().await;
    let agent = install(&app, None).await;
    let mut checked = 0;
    for route in ROUTES {
        let anonymous = call(&app.client, &app.base, route.method, route.path, None).await;
        let status = anonymous.status();
        if route.who == Who::Anyone {
            if route.path == "/api/webhooks/zoom" {
                // Public, but only with Zoom's signature.
                assert_eq!(status, 401);
                let body: Value = anonymous.json().await.expect("json");
                assert!(
                    body["error"].as_str().unwrap_or("").contains("x-zm-"),
                    "{body}"
                );
            } else {
                assert_ne!(status, 401, "{} {} is public", route.method, route.path);
            }
            continue;
        }
        checked += 1;
        assert_eq!(status, 401, "{} {}", route.method, route.path);
        let body: Value = anonymous.json().await.expect("a JSON reason");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );

        let wrong = call(
            &app.client,
            &app.base,
            route.method,
            route.path,
            Some("x".repeat(48).as_str()),
        )
        .await;
        assert_eq!(
            wrong.status(),
            401,
            "wrong token on {} {}",
            route.method,
            route.path
        );

        let operator = call(
            &app.client,
            &app.base,
            route.method,
            route.path,
            Some(&app.admin_token),
        )
        .await;
        let expected = match (route.method, route.path) {
            ("POST", _) => 403,
            // This app records nothing (RECORDINGS_DIR unset): they say so.
            (_, p) if p.starts_with("/api/recordings") => 404,
            _ => 200,
        };
        assert_eq!(
            operator.status(),
            expected,
            "operator on {} {}",
            route.method,
            route.path
        );

        if route.who == Who::Operator {
            let as_agent = app
                .client
                .get(app.url(route.path))
                .header("cookie", &agent)
                .send()
                .await
                .expect("GET");
            assert_eq!(as_agent.status(), 403, "agent on {}", route.path);
        }
    }
    assert!(checked >= 5, "the table lists the data routes");
    // A method a route does not take is refused, with a JSON reason.
    for route in ROUTES {
        let resp = call(
            &app.client,
            &app.base,
            "DELETE",
            route.path,
            Some(&app.admin_token),
        )
        .await;
        let status = resp.status();
        assert!(status.is_client_error(), "DELETE {}: {status}", route.path);
        let body: Value = resp.json().await.expect("a JSON reason");
        assert!(body["error"].is_string(), "DELETE {}: {body}", route.path);
    }
    app.shutdown().await;
}

/// A signed-in person of the two-account test.
struct Person {
    name: &'static str,
    cookie: String,
    /// Engagements they may see.
    sees: BTreeSet<String>,
}

/// Every engagement id an SSE event carries (snapshot lists included).
fn ids_in(ev: &SseEvent) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut take = |v: &Value| {
        if let Some(id) = v["engagement_id"].as_str() {
            ids.insert(id.to_owned());
        }
    };
    if ev.event == "snapshot" {
        for list in ["status", "engagements", "streams", "transcripts"] {
            ev.data[list]
                .as_array()
                .into_iter()
                .flatten()
                .for_each(&mut take);
        }
    } else {
        take(&ev.data);
    }
    ids
}

async fn open_feed(base: &str, cookie: &str, query: &str) -> Sse {
    Sse::open_with(
        streaming_client()
            .get(format!("{base}/api/events{query}"))
            .header("cookie", cookie),
    )
    .await
}

/// Read a feed until `done` holds for what was read, the feed ends or twice
/// `WAIT` passes; the caller checks what was seen.
async fn read_until(mut feed: Sse, done: impl Fn(&[SseEvent]) -> bool) -> Vec<SseEvent> {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match feed.read_within(left).await {
            SseRead::Event(ev) => seen.push(ev),
            SseRead::Ended | SseRead::TimedOut => break,
        }
    }
    seen
}

fn saw_transcript_of(seen: &[SseEvent], ids: &BTreeSet<String>) -> bool {
    ids.iter().all(|id| {
        seen.iter()
            .any(|e| e.event == "transcript" && e.data["engagement_id"] == id.as_str())
    })
}

async fn get_as(base: &str, path: &str, cookie: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

/// Two agents on account A, one on account B, each with a live stream and
/// transcripts; an account-A admin (supervisor by role) and an account-B
/// agent listed in `SUPERVISOR_USER_IDS` on a second instance on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_receives_anything_of_an_engagement_that_is_not_theirs() {
    let rig = Rig::spawn(Kind::Redis).await;
    let app = &rig.app;
    let sim = &app.sim;
    let a1 = sim.default_user();
    let a2 = sim.create_user_in(Some(&a1.account_id), "Member");
    let admin = sim.create_user_in(Some(&a1.account_id), "Admin");
    let b1 = sim.create_user();
    let listed = sim.create_user_in(Some(&b1.account_id), "Member");
    let mut people = Vec::new();
    for (name, user) in [
        ("a1", &a1),
        ("a2", &a2),
        ("admin", &admin),
        ("b1", &b1),
        ("listed", &listed),
    ] {
        people.push((
            name,
            user.user_id.clone(),
            install(app, Some(&user.user_id)).await,
        ));
    }
    let listed_id = listed.user_id.clone();
    let (other, stop_other, other_task) = second_instance_with(&rig, move |c| {
        c.access.supervisor_user_ids = vec![listed_id]
    })
    .await;
    crate::support::rig::fanout_connected(app, &other).await;

    let cookie = |name: &str| {
        people
            .iter()
            .find(|p| p.0 == name)
            .expect("person")
            .2
            .clone()
    };
    let e_a1 = new_engagement(app, Some(&a1.user_id)).await;
    let e_a2 = new_engagement(app, Some(&a2.user_id)).await;
    let e_b1 = new_engagement(app, Some(&b1.user_id)).await;
    let set = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<BTreeSet<_>>();
    let everyone = [
        Person {
            name: "a1",
            cookie: cookie("a1"),
            sees: set(&[&e_a1]),
        },
        Person {
            name: "a2",
            cookie: cookie("a2"),
            sees: set(&[&e_a2]),
        },
        Person {
            name: "admin",
            cookie: cookie("admin"),
            sees: set(&[&e_a1, &e_a2]),
        },
        Person {
            name: "b1",
            cookie: cookie("b1"),
            sees: set(&[&e_b1]),
        },
    ];

    // Instance 1 feeds open before the streams start (live events) ...
    let mut early = Vec::new();
    for p in &everyone {
        early.push(open_feed(&app.base, &p.cookie, "").await);
    }
    // ... and one that asks for someone else's engagement by id.
    let nosy = open_feed(&app.base, &cookie("a1"), &format!("?engagement_id={e_b1}")).await;

    // Each agent starts their own stream (control on their own engagement).
    for (who, engagement) in [("a1", &e_a1), ("a2", &e_a2), ("b1", &e_b1)] {
        let (code, body) = app.start_rtms(Some(&cookie(who)), engagement).await;
        assert_eq!(code, StatusCode::OK, "{who}: {body}");
    }
    let readers: Vec<_> = early
        .into_iter()
        .zip(everyone.iter().map(|p| p.sees.clone()))
        .map(|(feed, sees)| {
            tokio::spawn(read_until(feed, move |seen| saw_transcript_of(seen, &sees)))
        })
        .collect();
    let mut feeds = Vec::new();
    for r in readers {
        feeds.push(r.await.expect("reader"));
    }

    // Instance 2 feeds open mid-stream (a snapshot with content, then live,
    // everything fanned out from instance 1).
    let listed_person = Person {
        name: "listed",
        cookie: cookie("listed"),
        sees: set(&[&e_b1]),
    };
    let mut late = Vec::new();
    for p in everyone.iter().chain([&listed_person]) {
        let feed = open_feed(&other, &p.cookie, "").await;
        let sees = p.sees.clone();
        late.push(tokio::spawn(read_until(feed, move |seen| {
            saw_transcript_of(seen, &sees)
        })));
    }
    let mut late_feeds = Vec::new();
    for r in late {
        late_feeds.push(r.await.expect("reader"));
    }

    let all: BTreeSet<String> = set(&[&e_a1, &e_a2, &e_b1]);
    for (where_, list) in [("instance 1", &feeds), ("instance 2", &late_feeds)] {
        for (p, seen) in everyone.iter().chain([&listed_person]).zip(list.iter()) {
            assert!(
                saw_transcript_of(seen, &p.sees),
                "{where_}: {} got their own transcripts",
                p.name
            );
            assert_eq!(seen[0].event, "snapshot");
            for ev in seen {
                let foreign: Vec<_> = ids_in(ev).difference(&p.sees).cloned().collect();
                assert!(
                    foreign.is_empty(),
                    "{where_}: {} received {foreign:?} in {}",
                    p.name,
                    ev.event
                );
                let raw = ev.data.to_string();
                for id in all.difference(&p.sees) {
                    assert!(!raw.contains(id.as_str()), "{where_}: {} saw {id}", p.name);
                }
            }
        }
    }
    let snapshot = &late_feeds[0][0];
    assert!(
        snapshot.data["streams"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "the mid-stream snapshot shows a1's own stream: {}",
        snapshot.data
    );

    // Asking for another's engagement by id yields nothing of it.
    let nosy_seen = read_until(nosy, |seen| seen.len() >= 3).await;
    for ev in &nosy_seen {
        assert!(!ev.data.to_string().contains(e_b1.as_str()), "{ev:?}");
    }

    // The lists: the same rule, on both instances.
    for base in [&app.base, &other] {
        for p in everyone.iter().chain([&listed_person]) {
            if p.name == "listed" && *base == app.base {
                continue; // listed as supervisor on the second instance only
            }
            let active = get_as(base, "/api/engagement/active", &p.cookie).await;
            let ids: BTreeSet<String> = active["engagements"]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|e| e["engagement_id"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(ids, p.sees, "{base}: {}'s active engagements", p.name);
            let lines = get_as(base, "/api/webhooks/events", &p.cookie).await;
            let raw = lines.to_string();
            for id in all.difference(&p.sees) {
                assert!(!raw.contains(id.as_str()), "{base}: {} listed {id}", p.name);
            }
            for id in &p.sees {
                assert!(raw.contains(id.as_str()), "{base}: {} misses {id}", p.name);
            }
        }
        let foreign = get_as(
            base,
            &format!("/api/webhooks/events?engagement_id={e_b1}"),
            &cookie("a1"),
        )
        .await;
        assert!(!foreign.to_string().contains(e_b1.as_str()), "{foreign}");
    }
    // The listed supervisor is one only where configured.
    let on_first = get_as(&app.base, "/api/engagement/active", &cookie("listed")).await;
    assert_eq!(on_first["engagements"], json!([]));

    // The operator sees all three; a wrong token sees nothing.
    let all_active = app.active().await;
    assert_eq!(all_active["engagements"].as_array().map(Vec::len), Some(3));
    let wrong = reqwest::Client::new()
        .get(app.url("/api/engagement/active"))
        .bearer_auth(format!("{}x", app.admin_token))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 401);

    crate::support::rig::stop_both(rig, stop_other, other_task).await;
}
