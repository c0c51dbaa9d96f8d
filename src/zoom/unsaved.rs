//! Rotated tokens that Zoom issued and the store has not taken yet.
//!
//! Zoom's refresh rotates the refresh token: once it answered, the old pair
//! is dead. When storing the new pair fails, it is held here (and used, so
//! the user stays logged in) while a task keeps storing it until the store
//! takes it. Owns the held pairs and the client's side of them (the newest
//! pair for a user, the task that keeps storing one, forgetting a user's);
//! nothing else. Never logs token values.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ZoomClient;
use crate::store::TokenRecord;

#[derive(Default)]
pub struct Unsaved {
    by_id: Mutex<HashMap<String, TokenRecord>>,
}

impl Unsaved {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenRecord>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The held pair of an account user (by opaque token id).
    pub fn get(&self, id: &str) -> Option<TokenRecord> {
        self.map().get(id).cloned()
    }

    pub fn hold(&self, id: &str, record: TokenRecord) {
        self.map().insert(id.to_owned(), record);
    }

    /// Stop holding `id`'s pair once stored — unless a newer pair replaced
    /// it meanwhile. True when `record` is still the one to store.
    pub fn stored(&self, id: &str, record: &TokenRecord) -> bool {
        let mut map = self.map();
        match map.get(id) {
            Some(held) if held.access_token == record.access_token => {
                map.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Whether `record` is still the pair held for `id`.
    pub fn is_current(&self, id: &str, record: &TokenRecord) -> bool {
        self.map()
            .get(id)
            .is_some_and(|held| held.access_token == record.access_token)
    }

    /// Forget a user's pair (the app was deauthorized).
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }

    pub fn count(&self) -> usize {
        self.map().len()
    }
}

impl ZoomClient {
    /// `stored`, or the newer pair held in memory for the same user.
    pub(super) fn newest(&self, stored: TokenRecord) -> TokenRecord {
        let id = self
            .inner
            .store
            .token_id(&stored.account_id, &stored.user_id);
        self.inner.unsaved.get(&id).unwrap_or(stored)
    }

    /// Store a held pair in the background until the store takes it (or a
    /// newer pair, or a deauthorization, replaces it).
    pub(super) fn keep_saving(&self, id: String, record: TokenRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while this.inner.unsaved.is_current(&id, &record) {
                match this.inner.store.update_tokens(&record).await {
                    Ok(()) => {
                        if this.inner.unsaved.stored(&id, &record) {
                            tracing::info!("held Zoom tokens are stored now");
                        }
                        return;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, failures, "storing held Zoom tokens failed; will retry");
                        tokio::time::sleep(crate::inbox::backoff(failures)).await;
                    }
                }
            }
        });
    }

    /// Rotated pairs held in memory because the store refused them.
    pub fn unsaved_tokens(&self) -> usize {
        self.inner.unsaved.count()
    }

    /// Forget a user's held pair (the app was deauthorized).
    pub fn forget_user(&self, account_id: &str, user_id: &str) {
        let id = self.inner.store.token_id(account_id, user_id);
        self.inner.unsaved.forget(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(access: &str) -> TokenRecord {
        TokenRecord {
            account_id: "a".into(),
            user_id: "u".into(),
            access_token: access.into(),
            refresh_token: "r".into(),
            expires_at_ms: 0,
            scope: String::new(),
            api_url: None,
            needs_auth: false,
            needs_auth_reason: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_held_pair_is_released_only_by_storing_that_pair() {
        let u = Unsaved::default();
        u.hold("id", record("one"));
        u.hold("id", record("two"));
        assert!(!u.stored("id", &record("one")), "superseded");
        assert!(!u.is_current("id", &record("one")));
        assert_eq!(u.get("id").expect("held").access_token, "two");
        assert!(u.stored("id", &record("two")));
        assert_eq!(u.count(), 0);
        u.hold("id", record("three"));
        u.forget("id");
        assert!(u.get("id").is_none());
    }
}
