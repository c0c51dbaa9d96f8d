//! The store's integration suite, run against both backends: the embedded
//! redb file and a real `redis-server` (spawned per test).

use std::time::Duration;

use proptest::prelude::*;
use zcc_rtms::engagements::Engagement;
use zcc_rtms::store::{Store, StoreError, TokenKey};

use crate::support::Kind;
use crate::support::store::{Fixture, tokens};
use crate::support::{eventually, on_both_stores};

on_both_stores!(
    setup = Fixture::new;
    tokens_are_kept_per_account_and_user,
    a_tampered_or_foreign_token_value_is_refused,
    webhook_keys_are_seen_once_until_they_expire,
    oauth_verifiers_are_taken_at_most_once,
    stream_leases_belong_to_one_owner_until_released_or_expired,
    engagements_are_listed_while_active,
    the_agent_and_account_indexes_hold_only_their_own_active_engagements,
    an_agents_ended_engagements_are_indexed_until_deleted,
    refresh_locks_exclude_other_owners,
);

async fn tokens_are_kept_per_account_and_user(f: Fixture) {
    let s = &f.store;
    assert!(s.load_tokens("A", "u1").await.expect("load").is_none());
    s.save_tokens(&tokens("A", "u1", 1)).await.expect("save");
    s.save_tokens(&tokens("B", "u9", 1)).await.expect("save");
    s.save_tokens(&tokens("A", "u2", 1)).await.expect("save");
    assert_eq!(
        s.load_tokens("A", "u1").await.expect("load"),
        Some(tokens("A", "u1", 1))
    );
    assert_eq!(
        s.load_tokens("B", "u9").await.expect("load"),
        Some(tokens("B", "u9", 1))
    );
    assert!(s.load_tokens("B", "u1").await.expect("load").is_none());
    // A caller without their own install uses the account's latest installer.
    assert_eq!(
        s.account_installer("A").await.expect("load"),
        Some("u2".into())
    );
    let fallback = s.load_account_tokens("A", Some("u3")).await.expect("load");
    assert_eq!(fallback, Some(tokens("A", "u2", 1)));
    let own = s.load_account_tokens("A", Some("u1")).await.expect("load");
    assert_eq!(own, Some(tokens("A", "u1", 1)));
    // A refresh replaces the pair but not the account's installer.
    s.update_tokens(&tokens("A", "u1", 2))
        .await
        .expect("update");
    assert_eq!(
        s.load_tokens("A", "u1").await.expect("load"),
        Some(tokens("A", "u1", 2))
    );
    assert_eq!(
        s.account_installer("A").await.expect("load"),
        Some("u2".into())
    );
}

async fn a_tampered_or_foreign_token_value_is_refused(f: Fixture) {
    let s = &f.store;
    s.save_tokens(&tokens("A", "u1", 1)).await.expect("save");
    let raw = s
        .get_raw_tokens("A", "u1")
        .await
        .expect("raw")
        .expect("present");
    assert!(
        !String::from_utf8_lossy(&raw).contains("access-A"),
        "tokens are encrypted at rest"
    );
    // Flip one byte anywhere: refused.
    for i in [0, 1, 13, raw.len() / 2, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 0x40;
        s.put_raw_tokens("A", "u1", bad).await.expect("put");
        let err = s.load_tokens("A", "u1").await.expect_err("tampered");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
    // Account A's sealed value copied under account B's key: refused.
    s.put_raw_tokens("B", "u1", raw.clone()).await.expect("put");
    assert!(matches!(
        s.load_tokens("B", "u1").await,
        Err(StoreError::Corrupt { .. })
    ));
    // Truncated and empty values: refused, no panic.
    s.put_raw_tokens("A", "u1", raw[..10].to_vec())
        .await
        .expect("put");
    assert!(s.load_tokens("A", "u1").await.is_err());
    s.put_raw_tokens("A", "u1", Vec::new()).await.expect("put");
    assert!(s.load_tokens("A", "u1").await.is_err());
    // A fresh save repairs it.
    s.save_tokens(&tokens("A", "u1", 3)).await.expect("save");
    assert_eq!(
        s.load_tokens("A", "u1").await.expect("load"),
        Some(tokens("A", "u1", 3))
    );
}

async fn webhook_keys_are_seen_once_until_they_expire(f: Fixture) {
    let s = &f.store;
    let long = Duration::from_secs(60);
    assert!(s.first_seen("evt|E1|1", long).await.expect("dedup"));
    assert!(!s.first_seen("evt|E1|1", long).await.expect("dedup"));
    assert!(s.first_seen("evt|E1|2", long).await.expect("dedup"));
    // Long enough that the next call (a disk commit on a loaded box) comes
    // before it expires; the wait below is on the expiry itself.
    let short = Duration::from_secs(2);
    assert!(s.first_seen("short", short).await.expect("dedup"));
    assert!(
        !s.first_seen("short", Duration::from_secs(60))
            .await
            .expect("dedup")
    );
    eventually("the short key to expire", || async {
        s.first_seen("short", short)
            .await
            .expect("dedup")
            .then_some(())
    })
    .await;
}

async fn oauth_verifiers_are_taken_at_most_once(f: Fixture) {
    let s = &f.store;
    s.put_verifier("n1", "verifier-1", Duration::from_secs(60))
        .await
        .expect("put");
    assert_eq!(
        s.take_verifier("n1").await.expect("take"),
        Some("verifier-1".into())
    );
    assert_eq!(s.take_verifier("n1").await.expect("take"), None);
    assert_eq!(s.take_verifier("never").await.expect("take"), None);
    s.put_verifier("n2", "v2", Duration::from_millis(20))
        .await
        .expect("put");
    eventually("the verifier to expire", || async {
        let gone = s.take_verifier("n2").await.expect("take").is_none();
        if !gone {
            s.put_verifier("n2", "v2", Duration::from_millis(20))
                .await
                .expect("put again");
        }
        gone.then_some(())
    })
    .await;
}

async fn stream_leases_belong_to_one_owner_until_released_or_expired(f: Fixture) {
    let s = &f.store;
    let ttl = Duration::from_secs(30);
    assert!(s.claim_stream("st1", "i1", ttl).await.expect("claim"));
    assert!(!s.claim_stream("st1", "i2", ttl).await.expect("claim"));
    assert!(
        s.claim_stream("st1", "i1", ttl)
            .await
            .expect("re-claim by owner")
    );
    assert!(s.renew_stream("st1", "i1", ttl).await.expect("renew"));
    assert!(!s.renew_stream("st1", "i2", ttl).await.expect("renew"));
    assert!(!s.release_stream("st1", "i2").await.expect("release"));
    assert!(!s.claim_stream("st1", "i2", ttl).await.expect("still held"));
    assert!(s.release_stream("st1", "i1").await.expect("release"));
    assert!(
        !s.release_stream("st1", "i1")
            .await
            .expect("already released")
    );
    assert!(!s.renew_stream("st1", "i1", ttl).await.expect("lost"));
    assert!(s.claim_stream("st1", "i2", ttl).await.expect("claim"));
    // An owner that stops renewing loses the stream to another instance.
    assert!(
        s.claim_stream("st2", "dead", Duration::from_millis(30))
            .await
            .expect("claim")
    );
    eventually("the dead owner's lease to expire", || async {
        s.claim_stream("st2", "alive", ttl)
            .await
            .expect("claim")
            .then_some(())
    })
    .await;
    assert!(!s.renew_stream("st2", "dead", ttl).await.expect("renew"));
}

async fn engagements_are_listed_while_active(f: Fixture) {
    let s = &f.store;
    let e = |id: &str, ended: Option<i64>| Engagement {
        engagement_id: id.into(),
        agent_user_id: None,
        account_id: Some("A".into()),
        started_at_ms: 10,
        ended_at_ms: ended,
    };
    s.save_engagement(&e("E1", None)).await.expect("save");
    s.save_engagement(&e("E2", None)).await.expect("save");
    let mut ids: Vec<String> = s
        .active_engagements()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.engagement_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["E1", "E2"]);
    s.save_engagement(&e("E1", Some(20))).await.expect("save");
    let active = s.active_engagements().await.expect("list");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].engagement_id, "E2");
    assert_eq!(
        s.load_engagement("E1").await.expect("load"),
        Some(e("E1", Some(20)))
    );
}

fn sorted_ids(list: Vec<Engagement>) -> Vec<String> {
    let mut ids: Vec<String> = list.into_iter().map(|e| e.engagement_id).collect();
    ids.sort();
    ids
}

async fn the_agent_and_account_indexes_hold_only_their_own_active_engagements(f: Fixture) {
    use zcc_rtms::store::ActiveIndex;
    let s = &f.store;
    let e = |id: &str, account: &str, agent: Option<&str>, ended: Option<i64>| Engagement {
        engagement_id: id.into(),
        agent_user_id: agent.map(Into::into),
        account_id: Some(account.into()),
        started_at_ms: 10,
        ended_at_ms: ended,
    };
    for (id, account, agent) in [
        ("E1", "A", Some("ann")),
        ("E2", "A", Some("bob")),
        ("E3", "A", None),
        ("E4", "B", Some("cat")),
        ("E5", "A", Some("ann")),
    ] {
        s.save_engagement(&e(id, account, agent, None))
            .await
            .expect("save");
    }
    let ids = |index: ActiveIndex<'static>| async move {
        sorted_ids(s.active_engagements_in(index).await.expect("list"))
    };
    assert_eq!(ids(ActiveIndex::Agent("ann")).await, ["E1", "E5"]);
    assert_eq!(ids(ActiveIndex::Agent("cat")).await, ["E4"]);
    assert!(ids(ActiveIndex::Agent("nobody")).await.is_empty());
    assert_eq!(
        ids(ActiveIndex::Account("A")).await,
        ["E1", "E2", "E3", "E5"]
    );
    assert_eq!(ids(ActiveIndex::Account("B")).await, ["E4"]);
    assert_eq!(ids(ActiveIndex::All).await.len(), 5);
    // An ended engagement leaves every index it was in.
    s.save_engagement(&e("E1", "A", Some("ann"), Some(20)))
        .await
        .expect("save");
    assert_eq!(ids(ActiveIndex::Agent("ann")).await, ["E5"]);
    assert_eq!(ids(ActiveIndex::Account("A")).await, ["E2", "E3", "E5"]);
    assert_eq!(ids(ActiveIndex::All).await.len(), 4);
}

async fn an_agents_ended_engagements_are_indexed_until_deleted(f: Fixture) {
    let s = &f.store;
    let e = |id: &str, agent: Option<&str>, ended: Option<i64>| Engagement {
        engagement_id: id.into(),
        agent_user_id: agent.map(Into::into),
        account_id: Some("A".into()),
        started_at_ms: 10,
        ended_at_ms: ended,
    };
    for (id, agent, ended) in [
        ("E1", Some("ann"), None),
        ("E2", Some("ann"), None),
        ("E3", Some("bob"), None),
        ("E4", None, None),
        ("E1", Some("ann"), Some(20)),
        ("E3", Some("bob"), Some(20)),
        ("E4", None, Some(20)),
    ] {
        s.save_engagement(&e(id, agent, ended)).await.expect("save");
    }
    let ended = |agent: &'static str| async move {
        sorted_ids(s.ended_engagements_of(agent).await.expect("list"))
    };
    assert_eq!(ended("ann").await, ["E1"], "only ended ones, only hers");
    assert_eq!(ended("bob").await, ["E3"]);
    assert!(ended("nobody").await.is_empty());
    // Saving an ended one again (a replay) does not duplicate it.
    s.save_engagement(&e("E1", Some("ann"), Some(20)))
        .await
        .expect("save");
    assert_eq!(ended("ann").await, ["E1"]);
    s.delete_engagement(&e("E1", Some("ann"), Some(20)))
        .await
        .expect("delete");
    assert!(ended("ann").await.is_empty());
    assert!(s.load_engagement("E1").await.expect("read").is_none());
    assert_eq!(ended("bob").await, ["E3"], "others keep theirs");
}

async fn refresh_locks_exclude_other_owners(f: Fixture) {
    let s = &f.store;
    let ttl = Duration::from_secs(30);
    assert!(s.try_lock("refresh:x", "a", ttl).await.expect("lock"));
    assert!(!s.try_lock("refresh:x", "b", ttl).await.expect("lock"));
    assert!(!s.unlock("refresh:x", "b").await.expect("unlock"));
    assert!(s.unlock("refresh:x", "a").await.expect("unlock"));
    assert!(s.try_lock("refresh:x", "b", ttl).await.expect("lock"));
}

#[tokio::test]
async fn embedded_store_keeps_everything_across_a_reopen() {
    let f = Fixture::new(Kind::Embedded).await;
    f.store
        .save_tokens(&tokens("A", "u1", 1))
        .await
        .expect("save");
    assert!(
        f.store
            .first_seen("k", Duration::from_secs(60))
            .await
            .expect("dedup")
    );
    let mut f = f.reopened().await;
    assert_eq!(
        f.store.load_tokens("A", "u1").await.expect("load"),
        Some(tokens("A", "u1", 1))
    );
    assert!(
        !f.store
            .first_seen("k", Duration::from_secs(60))
            .await
            .expect("dedup")
    );
    // Under another key the same file yields nothing: key names derive
    // from the key too, so not even the presence of an account shows.
    let dir = f.dir.take().expect("dir");
    drop(f.store);
    let other = Store::open_embedded(dir.path(), &TokenKey::generate())
        .await
        .expect("open");
    assert_eq!(other.load_tokens("A", "u1").await.expect("load"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_with_sigkill_and_restarted_with_aof_keeps_the_tokens() {
    let mut f = Fixture::with(Kind::Redis, true).await;
    f.store
        .save_tokens(&tokens("A", "u1", 1))
        .await
        .expect("save");
    f.store
        .update_tokens(&tokens("A", "u1", 2))
        .await
        .expect("refresh");
    let redis = f.redis.as_mut().expect("redis");
    redis.kill9().await;
    redis.restart().await;
    // The connection manager reconnects by itself.
    let loaded = eventually("the store to answer after the restart", || async {
        f.store.load_tokens("A", "u1").await.ok()
    })
    .await;
    assert_eq!(loaded, Some(tokens("A", "u1", 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_do_not_see_each_other() {
    let f = Fixture::new(Kind::Redis).await;
    let other = Store::open(&f.backend, &f.key, "other-app:")
        .await
        .expect("open");
    f.store
        .save_tokens(&tokens("A", "u1", 1))
        .await
        .expect("save");
    assert!(other.load_tokens("A", "u1").await.expect("load").is_none());
    assert!(
        f.store
            .first_seen("k", Duration::from_secs(60))
            .await
            .expect("dedup")
    );
    assert!(
        other
            .first_seen("k", Duration::from_secs(60))
            .await
            .expect("dedup")
    );
}

fn arbitrary_values_never_panic_the_loader(kind: Kind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(Fixture::new(kind));
    let sealed = rt.block_on(async {
        f.store
            .save_tokens(&tokens("A", "u1", 1))
            .await
            .expect("save");
        f.store
            .get_raw_tokens("A", "u1")
            .await
            .expect("raw")
            .expect("present")
    });
    let config = ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    )| {
        rt.block_on(async {
            // Arbitrary bytes: refused, never a panic, never a record.
            f.store.put_raw_tokens("A", "u1", bytes).await.expect("put");
            let loaded = f.store.load_tokens("A", "u1").await;
            let refused = matches!(loaded, Err(StoreError::Corrupt { .. }));
            prop_assert!(refused, "arbitrary bytes were not refused");
            // A real sealed value with one byte changed: refused.
            let mut tampered = sealed.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= mask;
            f.store.put_raw_tokens("A", "u1", tampered).await.expect("put");
            let loaded = f.store.load_tokens("A", "u1").await;
            let refused = matches!(loaded, Err(StoreError::Corrupt { .. }));
            prop_assert!(refused, "a tampered value was not refused");
            Ok(())
        })?;
    });
}

#[test]
fn arbitrary_bytes_in_a_stored_token_never_panic_the_embedded_loader() {
    arbitrary_values_never_panic_the_loader(Kind::Embedded);
}

#[test]
fn arbitrary_bytes_in_a_stored_token_never_panic_the_redis_loader() {
    arbitrary_values_never_panic_the_loader(Kind::Redis);
}
