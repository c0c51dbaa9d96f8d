//! Remembers webhook deliveries for a while so exact retries are dropped,
//! across instances and restarts: the keys live in the store with an expiry.
//!
//! Zoom retries after 5, 20 and 60 minutes, so keys live for 90 minutes.
//! When the store fails the delivery counts as new: handling an event twice
//! is better than dropping it.

use std::time::Duration;

use crate::store::Store;

pub const DEDUP_TTL: Duration = Duration::from_secs(90 * 60);

#[derive(Clone)]
pub struct Dedup {
    ttl: Duration,
    store: Store,
}

impl Dedup {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { ttl, store }
    }

    /// True the first time a key is seen within the TTL.
    pub async fn first_seen(&self, key: &str) -> bool {
        self.store
            .first_seen(key, self.ttl)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "webhook de-duplication unavailable; accepting");
                true
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_sighting_within_ttl_is_a_duplicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_embedded(dir.path(), &crate::store::TokenKey::generate())
            .await
            .expect("store");
        let d = Dedup::new(store.clone(), DEDUP_TTL);
        assert!(d.first_seen("k").await);
        assert!(!d.first_seen("k").await);
        assert!(d.first_seen("other").await);
        let short = Dedup::new(store, Duration::ZERO);
        assert!(short.first_seen("s").await);
        assert!(short.first_seen("s").await, "expired keys count as new");
    }
}
