//! Which instance consumes a stream, when several share one store (Redis).
//!
//! A stream's lease holds a typed [`LeaseRecord`]: its owner and what another
//! instance needs to take the stream over. The holder keeps it alive while
//! it consumes the stream. The rules favour the call: while the store cannot
//! be reached the holder keeps consuming (nobody can claim the stream
//! meanwhile) and claims the lease again as soon as the store answers, even
//! if it lapsed in between; it gives the stream up only when the store shows
//! another owner holding the lease. The decisions are pure functions
//! ([`decide`]); [`Leases::keep`] carries them out. Never opens a socket.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::StreamSpec;
use crate::status::{Level, StatusBus};
use crate::store::{Store, StoreError};

/// How often a holder retries while the store cannot be reached (at most).
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);

/// What a stream lease holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The id of the instance that consumes the stream.
    pub owner: String,
    pub engagement_id: String,
    pub server_urls: String,
}

impl LeaseRecord {
    pub fn new(owner: &str, spec: &StreamSpec) -> Self {
        Self {
            owner: owner.to_owned(),
            engagement_id: spec.engagement_id.clone(),
            server_urls: spec.server_urls.clone(),
        }
    }

    /// The value stored; the store compares it byte for byte on renewal
    /// and release, so one record always encodes the same way.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("strings only"))
    }

    /// `None` for a value this version cannot read.
    pub fn decode(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
}

/// What one try to claim (or keep) a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The lease is ours (taken, extended or taken again).
    Held,
    /// Another owner holds it.
    HeldElsewhere,
    /// The store did not answer.
    Unreachable,
}

impl From<&Result<bool, StoreError>> for Claimed {
    fn from(r: &Result<bool, StoreError>) -> Self {
        match r {
            Ok(true) => Claimed::Held,
            Ok(false) => Claimed::HeldElsewhere,
            Err(_) => Claimed::Unreachable,
        }
    }
}

/// What a holder does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep consuming; try again after this long.
    Keep(Duration),
    /// Another instance demonstrably holds the stream: stop consuming.
    Yield,
}

/// The holder's rule: keep the stream unless the store shows another owner.
/// A lease is refreshed three times per lifetime, and the store is asked
/// again within a second while it cannot be reached (so the lease is taken
/// back before another instance could want it).
pub fn decide(found: Claimed, ttl: Duration) -> Next {
    match found {
        Claimed::Held => Next::Keep(ttl / 3),
        Claimed::HeldElsewhere => Next::Yield,
        Claimed::Unreachable => Next::Keep((ttl / 3).min(UNREACHABLE_RETRY)),
    }
}

/// Stream ownership across instances.
#[derive(Clone)]
pub struct Leases {
    pub store: Store,
    /// This instance's id.
    pub owner: String,
}

/// A lease this instance holds (or holds to: the store may be away).
pub struct Held {
    store: Store,
    stream_id: String,
    value: String,
    keeper: CancellationToken,
}

impl Held {
    /// Stop keeping the lease and give it up (compare-and-delete: never
    /// someone else's).
    pub async fn release(self) {
        self.keeper.cancel();
        if let Err(e) = self
            .store
            .release_stream(&self.stream_id, &self.value)
            .await
        {
            tracing::warn!(error = %e, "releasing the stream lease");
        }
    }
}

impl Leases {
    /// Claim a stream for this instance. `None` when another instance holds
    /// it; otherwise the lease is kept (see [`decide`]) until released, and
    /// `session` is cancelled if another owner shows up. Without the store
    /// the stream is consumed anyway (availability first) and claimed once
    /// the store answers.
    pub async fn claim(
        &self,
        spec: &StreamSpec,
        ttl: Duration,
        session: &CancellationToken,
        bus: &StatusBus,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Option<Held> {
        let value = LeaseRecord::new(&self.owner, spec).encode();
        let id = spec.rtms_stream_id.clone();
        let first = self.store.claim_stream(&id, &value, ttl).await;
        let found = Claimed::from(&first);
        match (&first, decide(found, ttl)) {
            (_, Next::Yield) => {
                tracing::info!("stream is consumed by another instance");
                bus.status(
                    Some(&spec.engagement_id),
                    Level::Info,
                    "RTMS stream is consumed by another instance",
                );
                return None;
            }
            (Err(e), _) => {
                tracing::warn!(error = %e, "cannot lease the stream; consuming it anyway");
            }
            _ => {}
        }
        let keeper = session.child_token();
        tracker.spawn(keep(
            self.store.clone(),
            id.clone(),
            value.clone(),
            ttl,
            found,
            keeper.clone(),
            session.clone(),
            (bus.clone(), spec.engagement_id.clone()),
        ));
        Some(Held {
            store: self.store.clone(),
            stream_id: id,
            value,
            keeper,
        })
    }

    /// Who holds a stream now, if anyone (`Err` when the store is away).
    pub async fn holder(&self, stream_id: &str) -> Result<Option<LeaseRecord>, StoreError> {
        Ok(self
            .store
            .stream_lease(stream_id)
            .await?
            .as_deref()
            .and_then(LeaseRecord::decode))
    }
}

/// Keep a lease until `stop`; cancel `session` when another owner holds it.
#[allow(clippy::too_many_arguments)]
async fn keep(
    store: Store,
    id: String,
    value: String,
    ttl: Duration,
    mut last: Claimed,
    stop: CancellationToken,
    session: CancellationToken,
    (bus, engagement_id): (StatusBus, String),
) {
    let mut next = decide(last, ttl);
    while let Next::Keep(after) = next {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(after) => {}
        }
        // Claiming extends our own lease and takes back one that lapsed
        // while the store was away; only another owner's lease refuses.
        let result = store.claim_stream(&id, &value, ttl).await;
        let found = Claimed::from(&result);
        match (last, found, &result) {
            (Claimed::Unreachable, Claimed::Held, _) => {
                tracing::info!(rtms_stream_id = %id, "store back: stream lease held again");
            }
            (Claimed::Held, Claimed::Unreachable, Err(e)) => {
                tracing::warn!(rtms_stream_id = %id, error = %e, "cannot renew the stream lease; consuming on");
            }
            _ => {}
        }
        last = found;
        next = decide(found, ttl);
    }
    tracing::warn!(rtms_stream_id = %id, "stream lease held by another instance; stopping");
    bus.status(
        Some(&engagement_id),
        Level::Warning,
        "RTMS stream taken over by another instance",
    );
    session.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn a_holder_renews_three_times_per_lifetime() {
        assert_eq!(
            decide(Claimed::Held, TTL),
            Next::Keep(Duration::from_secs(10))
        );
    }

    #[test]
    fn an_unreachable_store_never_stops_the_stream_and_is_retried_soon() {
        assert_eq!(
            decide(Claimed::Unreachable, TTL),
            Next::Keep(UNREACHABLE_RETRY)
        );
        // A short lease is retried at its own pace.
        assert_eq!(
            decide(Claimed::Unreachable, Duration::from_millis(600)),
            Next::Keep(Duration::from_millis(200))
        );
    }

    #[test]
    fn only_another_owner_makes_the_holder_yield() {
        assert_eq!(decide(Claimed::HeldElsewhere, TTL), Next::Yield);
    }

    #[test]
    fn a_record_round_trips_and_encodes_the_same_every_time() {
        let spec = StreamSpec {
            engagement_id: "E\"1".into(),
            rtms_stream_id: "S".into(),
            server_urls: "wss://z/sig".into(),
        };
        let r = LeaseRecord::new("instance-a", &spec);
        assert_eq!(r.encode(), LeaseRecord::new("instance-a", &spec).encode());
        assert_eq!(LeaseRecord::decode(&r.encode()), Some(r));
        assert_eq!(LeaseRecord::decode("instance-a"), None);
    }
}
