//! Which engagements are active, as told by webhooks, kept in the store so
//! every instance (and a restarted one) agrees.
//!
//! Keyed by engagement id, never one global "latest engagement": an agent
//! may juggle several, and several agents share one instance. Every change is
//! published on the status bus. Owns no business rules beyond start/end.
//! Writes report a store failure to the caller (the webhook inbox retries);
//! reads fail with it too, so a route never shows an empty list that looks
//! true while the store is down.

use serde::{Deserialize, Serialize};

use crate::status::{EngagementView, Level, StatusBus};
use crate::store::{Store, StoreError};
use crate::time::rfc3339_ms;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub engagement_id: String,
    pub account_id: Option<String>,
    /// The agent the engagement is assigned to, when Zoom says.
    #[serde(default)]
    pub agent_user_id: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

impl Engagement {
    pub fn is_active(&self) -> bool {
        self.ended_at_ms.is_none()
    }

    pub fn view(&self) -> EngagementView {
        EngagementView {
            engagement_id: self.engagement_id.clone(),
            state: if self.is_active() { "active" } else { "ended" }.into(),
            started_at: rfc3339_ms(self.started_at_ms),
            ended_at: self.ended_at_ms.map(rfc3339_ms),
            account_id: self.account_id.clone(),
            agent_user_id: self.agent_user_id.clone(),
        }
    }
}

/// Whether an active engagement has outlived `max_age` at `now_ms`.
pub fn is_stale(e: &Engagement, max_age: std::time::Duration, now_ms: i64) -> bool {
    let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    e.is_active() && now_ms.saturating_sub(e.started_at_ms) > age
}

/// How long one instance's claim to close a stale engagement holds.
const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone)]
pub struct Engagements {
    bus: StatusBus,
    store: Store,
}

impl Engagements {
    pub fn new(bus: StatusBus, store: Store) -> Self {
        Self { bus, store }
    }

    /// Record a started engagement. Returns false when it was already known
    /// (active, or ended at or after `at_ms`: a replayed webhook).
    pub async fn started(
        &self,
        engagement_id: &str,
        account_id: Option<&str>,
        agent_user_id: Option<&str>,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        match self.store.load_engagement(engagement_id).await {
            Ok(Some(e)) if e.is_active() || e.ended_at_ms.is_some_and(|end| end >= at_ms) => {
                // A replay: the record and its index are two writes, so
                // write both again in case the first time stopped between.
                self.store.save_engagement(&e).await?;
                return Ok(false);
            }
            Ok(_) => {}
            Err(StoreError::Corrupt { .. }) => {
                tracing::warn!(%engagement_id, "unreadable engagement; recording it anew");
            }
            Err(e) => return Err(e),
        }
        let engagement = Engagement {
            engagement_id: engagement_id.to_owned(),
            account_id: account_id.map(str::to_owned),
            agent_user_id: agent_user_id.map(str::to_owned),
            started_at_ms: at_ms,
            ended_at_ms: None,
        };
        self.store.save_engagement(&engagement).await?;
        self.bus.engagement(engagement.view());
        Ok(true)
    }

    /// Record an ended engagement. Returns false when it was not active.
    pub async fn ended(&self, engagement_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let unknown = || Engagement {
            engagement_id: engagement_id.to_owned(),
            account_id: None,
            agent_user_id: None,
            started_at_ms: at_ms,
            ended_at_ms: None,
        };
        let mut engagement = match self.store.load_engagement(engagement_id).await {
            Ok(Some(e)) if !e.is_active() => {
                self.store.save_engagement(&e).await?; // as for a replayed start
                return Ok(false);
            }
            Ok(Some(e)) => e,
            Ok(None) => unknown(),
            Err(StoreError::Corrupt { .. }) => {
                tracing::warn!(%engagement_id, "unreadable engagement; recording its end anyway");
                unknown()
            }
            Err(e) => return Err(e),
        };
        engagement.ended_at_ms = Some(at_ms);
        self.store.save_engagement(&engagement).await?;
        self.bus.engagement(engagement.view());
        Ok(true)
    }

    /// Close the active engagements started more than `max_age` before
    /// `now_ms` (their `engagement_ended` never came), each with a status
    /// line. Every instance runs this check on a shared store: each close is
    /// claimed in the store first, so one instance closes it, once (a claim
    /// left by an instance that died lapses and another closes it).
    /// Returns the ids this call closed.
    pub async fn close_stale(
        &self,
        max_age: std::time::Duration,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut closed = Vec::new();
        for e in self.store.active_engagements().await? {
            if is_stale(&e, max_age, now_ms)
                && self
                    .store
                    .first_seen(&format!("stale-close:{}", e.engagement_id), STALE_CLAIM)
                    .await?
                && self.ended(&e.engagement_id, now_ms).await?
            {
                tracing::warn!(engagement_id = %e.engagement_id, "engagement closed: no end reported");
                self.bus.status(
                    Some(&e.engagement_id),
                    Level::Warning,
                    format!(
                        "Engagement closed: no end reported within {} s",
                        max_age.as_secs()
                    ),
                );
                closed.push(e.engagement_id);
            }
        }
        Ok(closed)
    }

    pub async fn get(&self, engagement_id: &str) -> Result<Option<Engagement>, StoreError> {
        self.store.load_engagement(engagement_id).await
    }

    /// Active engagements, most recently started first.
    pub async fn active(&self) -> Result<Vec<Engagement>, StoreError> {
        let mut list = self.store.active_engagements().await?;
        list.sort_by_key(|e| std::cmp::Reverse(e.started_at_ms));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_engagements_past_their_age_are_stale() {
        let h = std::time::Duration::from_secs(3600);
        let e = |started_at_ms, ended_at_ms| Engagement {
            engagement_id: "e".into(),
            account_id: None,
            agent_user_id: None,
            started_at_ms,
            ended_at_ms,
        };
        assert!(!is_stale(&e(0, None), h, 3_600_000));
        assert!(is_stale(&e(0, None), h, 3_600_001));
        assert!(!is_stale(&e(0, Some(1)), h, 9_999_999_999));
        assert!(is_stale(&e(i64::MIN, None), h, i64::MAX));
        assert!(!is_stale(&e(i64::MAX, None), h, i64::MIN));
        assert!(!is_stale(&e(0, None), std::time::Duration::MAX, i64::MAX));
    }

    #[tokio::test]
    async fn start_end_and_repeat_are_tracked_per_engagement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_embedded(dir.path(), &crate::store::TokenKey::generate())
            .await
            .expect("store");
        let e = Engagements::new(StatusBus::new(), store);
        let ok = |r: Result<bool, StoreError>| r.expect("store");
        assert!(ok(e.started("a", None, None, 1).await));
        assert!(
            !ok(e.started("a", None, None, 2).await),
            "repeat is not new"
        );
        assert!(ok(e.started("b", Some("acct"), Some("agent"), 3).await));
        let active = e.active().await.expect("list");
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].engagement_id, "b");
        assert!(ok(e.ended("a", 4).await));
        assert!(!ok(e.ended("a", 5).await));
        assert!(
            !ok(e.started("a", None, None, 1).await),
            "a replayed start does not reopen an ended engagement"
        );
        assert_eq!(e.active().await.expect("list").len(), 1);
        assert!(!e.get("a").await.expect("read").expect("known").is_active());
        let b = e.get("b").await.expect("read").expect("known");
        assert_eq!(
            b.agent_user_id.as_deref(),
            Some("agent"),
            "the assigned agent is kept"
        );
        assert_eq!(b.account_id.as_deref(), Some("acct"));
    }
}
