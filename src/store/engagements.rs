//! Engagements in the store: the sealed record, the indexes of the active
//! ones (all, per agent, per account; ids kept opaque) and each agent's ended
//! ones, kept for [`ENDED_ENGAGEMENT_TTL`].
//!
//! Decides nothing about an engagement's life (that is `crate::engagements`); an
//! unreadable or stale index entry is skipped or dropped, never fatal.

use std::time::Duration;

use super::{Inner, Store, StoreError};
use crate::engagements::Engagement;

/// How long an ended engagement is remembered.
pub const ENDED_ENGAGEMENT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Which active engagements to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveIndex<'a> {
    All,
    /// Assigned to this agent (Zoom user id).
    Agent(&'a str),
    /// In this Zoom account.
    Account(&'a str),
}

impl Store {
    /// Delete an engagement's record and its index entries. Idempotent.
    pub async fn delete_engagement(&self, engagement: &Engagement) -> Result<(), StoreError> {
        let id = &engagement.engagement_id;
        for set in self.indexes_of(engagement) {
            backend!(self.set_remove(set, id.clone()))?;
        }
        if let Some(agent) = &engagement.agent_user_id {
            backend!(self.set_remove(self.ended_set(agent), id.clone()))?;
        }
        backend!(self.take(self.key("engagement", id))).map(drop)
    }

    fn active_set(&self) -> String {
        format!("{}engagements:active", self.prefix)
    }

    /// The set an index lives in: all active engagements, or one agent's,
    /// or one account's (ids kept opaque, like every key).
    fn index_set(&self, index: ActiveIndex<'_>) -> String {
        match index {
            ActiveIndex::All => self.active_set(),
            ActiveIndex::Agent(user) => format!(
                "{}:agent:{}",
                self.active_set(),
                self.sealer.key_id(&[user])
            ),
            ActiveIndex::Account(account) => format!(
                "{}:account:{}",
                self.active_set(),
                self.sealer.key_id(&[account])
            ),
        }
    }

    pub(super) fn ended_set_prefix(&self) -> String {
        format!("{}engagements:ended:agent:", self.prefix)
    }

    /// One agent's ended engagements: kept as long as an ended engagement
    /// is, so removing the app can delete them too.
    fn ended_set(&self, agent: &str) -> String {
        format!(
            "{}{}",
            self.ended_set_prefix(),
            self.sealer.key_id(&[agent])
        )
    }

    /// The indexes an engagement belongs in.
    fn indexes_of(&self, engagement: &Engagement) -> Vec<String> {
        let mut sets = vec![self.index_set(ActiveIndex::All)];
        if let Some(agent) = &engagement.agent_user_id {
            sets.push(self.index_set(ActiveIndex::Agent(agent)));
        }
        if let Some(account) = &engagement.account_id {
            sets.push(self.index_set(ActiveIndex::Account(account)));
        }
        sets
    }

    pub async fn save_engagement(&self, engagement: &Engagement) -> Result<(), StoreError> {
        let key = self.key("engagement", &engagement.engagement_id);
        let id = engagement.engagement_id.clone();
        if engagement.is_active() {
            self.put_sealed(key, engagement, None).await?;
            for set in self.indexes_of(engagement) {
                backend!(self.set_add(set, id.clone()))?;
            }
        } else {
            self.put_sealed(key, engagement, Some(ENDED_ENGAGEMENT_TTL))
                .await?;
            if let Some(agent) = &engagement.agent_user_id {
                let set = self.ended_set(agent);
                let add = async {
                    match &self.inner {
                        // The embedded sweep drops members whose record expired.
                        Inner::Embedded(b) => b.set_add(set, id.clone()).await,
                        Inner::Redis(b) => {
                            b.set_add_for(set, id.clone(), ENDED_ENGAGEMENT_TTL).await
                        }
                    }
                };
                self.time("set_add", add).await?;
            }
            for set in self.indexes_of(engagement) {
                backend!(self.set_remove(set, id.clone()))?;
            }
        }
        Ok(())
    }

    pub async fn load_engagement(
        &self,
        engagement_id: &str,
    ) -> Result<Option<Engagement>, StoreError> {
        self.get_sealed(self.key("engagement", engagement_id)).await
    }

    /// Active engagements (unordered). Unreadable entries are skipped with a
    /// warning rather than hiding all the others.
    pub async fn active_engagements(&self) -> Result<Vec<Engagement>, StoreError> {
        self.active_engagements_in(ActiveIndex::All).await
    }

    /// Active engagements of one index: the cost is the size of that index
    /// (an agent's own, an account's), never a scan of all. Entries that
    /// ended or moved are dropped from the index on the way.
    pub async fn active_engagements_in(
        &self,
        index: ActiveIndex<'_>,
    ) -> Result<Vec<Engagement>, StoreError> {
        let set = self.index_set(index);
        let ids = backend!(self.set_members(set.clone()))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load_engagement(&id).await {
                Ok(Some(e)) if e.is_active() && self.indexes_of(&e).contains(&set) => out.push(e),
                Ok(_) => {
                    backend!(self.set_remove(set.clone(), id))?;
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable engagement"),
            }
        }
        Ok(out)
    }

    /// One agent's ended engagements still kept (unordered). Entries whose
    /// record expired or moved are dropped on the way.
    pub async fn ended_engagements_of(&self, agent: &str) -> Result<Vec<Engagement>, StoreError> {
        let set = self.ended_set(agent);
        let ids = backend!(self.set_members(set.clone()))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load_engagement(&id).await {
                Ok(Some(e)) if !e.is_active() && e.agent_user_id.as_deref() == Some(agent) => {
                    out.push(e)
                }
                Ok(_) => {
                    backend!(self.set_remove(set.clone(), id))?;
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable engagement"),
            }
        }
        Ok(out)
    }
}
