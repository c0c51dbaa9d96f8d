//! Access benchmark: what the access rules cost.
//!
//! * `/api/engagement/active`'s list for an agent, a supervisor and the
//!   operator, with many active engagements in the embedded store: an
//!   agent's list reads the agent's index, not every engagement.
//! * The live-feed filter: how many bus events per second one subscriber's
//!   visibility check passes or drops (decisions are remembered per
//!   engagement).
//!
//!     cargo run --release --example access_bench -- 10000
//!
//! Prints one line per measurement. Nothing is asserted: it is a measurement.

use std::time::Instant;

use zcc_rtms::access::{self, Caller, User, Visibility};
use zcc_rtms::engagements::Engagement;
use zcc_rtms::status::{BusEvent, StatusBus, TranscriptLine};
use zcc_rtms::store::{Store, TokenKey};

const AGENTS_PER_ACCOUNT: usize = 40;
const ENGAGEMENTS_PER_AGENT: usize = 5;

fn agent(i: usize) -> String {
    format!("agent-{i}")
}

fn account(i: usize) -> String {
    format!("account-{}", i / AGENTS_PER_ACCOUNT)
}

fn user(i: usize, supervisor: bool) -> Caller {
    Caller::User(User {
        user_id: agent(i),
        account_id: Some(account(i)),
        supervisor,
    })
}

fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(total))
}

async fn run(total: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_embedded(dir.path(), &TokenKey::generate()).await?;
    let agents = total.div_ceil(ENGAGEMENTS_PER_AGENT);
    let bus = StatusBus::new();
    let started = Instant::now();
    for n in 0..total {
        let a = n % agents;
        let e = Engagement {
            engagement_id: format!("E{n}"),
            account_id: Some(account(a)),
            agent_user_id: Some(agent(a)),
            started_at_ms: n as i64,
            ended_at_ms: None,
        };
        store.save_engagement(&e).await?;
        bus.engagement(e.view());
    }
    println!(
        "stored {total} active engagements for {agents} agents in {} accounts in {:.1} s",
        agents.div_ceil(AGENTS_PER_ACCOUNT),
        started.elapsed().as_secs_f64()
    );

    for (who, caller, rounds) in [
        ("agent", user(7, false), 200),
        ("supervisor", user(7, true), 50),
        ("operator", Caller::Operator, 3),
    ] {
        let t = Instant::now();
        let mut listed = 0;
        for _ in 0..rounds {
            listed = access::active_engagements(&store, &caller).await?.len();
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
        println!("active list, {who:<10}: {listed:>6} engagements in {per:>8.3} ms");
    }

    let events: Vec<BusEvent> = (0..total)
        .map(|n| {
            BusEvent::Transcript(TranscriptLine {
                engagement_id: format!("E{n}"),
                rtms_stream_id: format!("S{n}"),
                channel_id: "1".into(),
                role: "caller".into(),
                text: "hello".into(),
                timestamp: 0,
            })
        })
        .collect();
    for (who, caller) in [("agent", user(7, false)), ("supervisor", user(7, true))] {
        let mut visibility = Visibility::new(caller, bus.clone(), store.clone());
        // First pass decides (bus lookups), later passes hit the memory.
        let t = Instant::now();
        let mut passed = 0usize;
        for ev in &events {
            passed += usize::from(visibility.sees_event(ev).await);
        }
        let first = t.elapsed().as_secs_f64();
        let rounds = 20;
        let t = Instant::now();
        for _ in 0..rounds {
            for ev in &events {
                passed += usize::from(visibility.sees_event(ev).await);
            }
        }
        let rate = (rounds * events.len()) as f64 / t.elapsed().as_secs_f64();
        println!(
            "feed filter, {who:<10}: first pass {:.0} events/s, then {:.1} M events/s ({} passed of {})",
            events.len() as f64 / first,
            rate / 1e6,
            passed / (rounds + 1),
            events.len()
        );
    }
    Ok(())
}
