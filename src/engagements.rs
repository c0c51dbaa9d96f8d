//! Which engagements are active, as told by webhooks (and, later, the store).
//!
//! Keyed by engagement id, never one global "latest engagement": an agent
//! may juggle several, and several agents share one instance. Every change is
//! published on the status bus. Owns no business rules beyond start/end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::status::{EngagementView, StatusBus};
use crate::time::rfc3339_ms;

#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    pub engagement_id: String,
    pub account_id: Option<String>,
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
        }
    }
}

/// How many ended engagements are remembered.
const KEEP_ENDED: usize = 500;

#[derive(Clone)]
pub struct Engagements {
    bus: StatusBus,
    map: Arc<Mutex<HashMap<String, Engagement>>>,
}

impl Engagements {
    pub fn new(bus: StatusBus) -> Self {
        Self {
            bus,
            map: Arc::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Engagement>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a started engagement. Returns false when it was already known
    /// as active (a repeated webhook).
    pub fn started(&self, engagement_id: &str, account_id: Option<&str>, at_ms: i64) -> bool {
        let engagement = Engagement {
            engagement_id: engagement_id.to_owned(),
            account_id: account_id.map(str::to_owned),
            started_at_ms: at_ms,
            ended_at_ms: None,
        };
        {
            let mut map = self.map();
            if map.get(engagement_id).is_some_and(Engagement::is_active) {
                return false;
            }
            map.insert(engagement_id.to_owned(), engagement.clone());
            Self::prune(&mut map);
        }
        self.bus.engagement(engagement.view());
        true
    }

    /// Record an ended engagement. Returns false when it was not active.
    pub fn ended(&self, engagement_id: &str, at_ms: i64) -> bool {
        let view = {
            let mut map = self.map();
            let entry = map
                .entry(engagement_id.to_owned())
                .or_insert_with(|| Engagement {
                    engagement_id: engagement_id.to_owned(),
                    account_id: None,
                    started_at_ms: at_ms,
                    ended_at_ms: None,
                });
            if !entry.is_active() {
                return false;
            }
            entry.ended_at_ms = Some(at_ms);
            entry.view()
        };
        self.bus.engagement(view);
        true
    }

    pub fn get(&self, engagement_id: &str) -> Option<Engagement> {
        self.map().get(engagement_id).cloned()
    }

    /// Active engagements, most recently started first.
    pub fn active(&self) -> Vec<Engagement> {
        let mut list: Vec<Engagement> = self
            .map()
            .values()
            .filter(|e| e.is_active())
            .cloned()
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.started_at_ms));
        list
    }

    fn prune(map: &mut HashMap<String, Engagement>) {
        let ended = map.values().filter(|e| !e.is_active()).count();
        if ended <= KEEP_ENDED {
            return;
        }
        let mut by_age: Vec<(i64, String)> = map
            .values()
            .filter_map(|e| e.ended_at_ms.map(|t| (t, e.engagement_id.clone())))
            .collect();
        by_age.sort();
        for (_, id) in by_age.into_iter().take(ended - KEEP_ENDED) {
            map.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_end_and_repeat_are_tracked_per_engagement() {
        let e = Engagements::new(StatusBus::new());
        assert!(e.started("a", None, 1));
        assert!(!e.started("a", None, 2), "repeat is not new");
        assert!(e.started("b", Some("acct"), 3));
        assert_eq!(e.active().len(), 2);
        assert_eq!(e.active()[0].engagement_id, "b");
        assert!(e.ended("a", 4));
        assert!(!e.ended("a", 5));
        assert_eq!(e.active().len(), 1);
        assert!(!e.get("a").expect("known").is_active());
    }
}
