//! What coordinates work across requests and instances: one-time PKCE
//! verifiers (taken at most once), webhook de-duplication keys, named locks
//! (the token refresh) and stream leases (who consumes a stream), all with
//! an expiry.
//!
//! Decides nothing: when to lock, claim or renew is the caller's.

use std::time::Duration;

use super::{Store, StoreError};

impl Store {
    // ---- one-time OAuth values (PKCE verifiers) ----

    pub async fn put_verifier(
        &self,
        nonce: &str,
        verifier: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_sealed(self.key("pkce", nonce), &verifier, Some(ttl))
            .await
    }

    /// The verifier for `nonce`, at most once.
    pub async fn take_verifier(&self, nonce: &str) -> Result<Option<String>, StoreError> {
        let key = self.key("pkce", nonce);
        match backend!(self.take(key.clone()))? {
            None => Ok(None),
            Some(raw) => self.open_sealed(&key, &raw).map(Some),
        }
    }

    // ---- webhook de-duplication ----

    /// True the first time `key` is seen within `ttl`.
    pub async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        backend!(self.insert_if_absent(self.key("dedup", key), b"1".to_vec(), Some(ttl)))
    }

    // ---- leases: refresh locks and stream ownership ----

    /// Take the named lock for `ttl` (free, expired or already ours).
    pub async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_claim(self.key("lock", name), owner.to_owned(), ttl))
    }

    pub async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        backend!(self.lease_release(self.key("lock", name), owner.to_owned()))
    }

    /// Claim a stream for `owner` (an instance id) for `ttl`. False when
    /// another owner holds a live lease.
    pub async fn claim_stream(
        &self,
        stream_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_claim(self.key("stream", stream_id), owner.to_owned(), ttl))
    }

    /// Extend `owner`'s lease. False when the lease is lost (expired and
    /// possibly taken by another instance): stop consuming.
    pub async fn renew_stream(
        &self,
        stream_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        backend!(self.lease_renew(self.key("stream", stream_id), owner.to_owned(), ttl))
    }

    /// Who holds a stream's lease now (the owner string), if anyone.
    pub async fn stream_lease(&self, stream_id: &str) -> Result<Option<String>, StoreError> {
        let raw = backend!(self.get(self.key("stream", stream_id)))?;
        Ok(raw.and_then(|v| String::from_utf8(v).ok()))
    }

    /// Give up `owner`'s lease (compare-and-delete: never someone else's).
    pub async fn release_stream(&self, stream_id: &str, owner: &str) -> Result<bool, StoreError> {
        backend!(self.lease_release(self.key("stream", stream_id), owner.to_owned()))
    }
}
