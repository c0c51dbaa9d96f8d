//! Remembers webhook deliveries for a while so exact retries are dropped.
//!
//! Zoom retries after 5, 20 and 60 minutes, so keys live for 90 minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEDUP_TTL: Duration = Duration::from_secs(90 * 60);
const MAX_KEYS: usize = 200_000;

#[derive(Clone)]
pub struct Dedup {
    ttl: Duration,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new(DEDUP_TTL)
    }
}

impl Dedup {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Arc::default(),
        }
    }

    /// True the first time a key is seen within the TTL.
    pub fn first_seen(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, at| now.duration_since(*at) < self.ttl);
        }
        match seen.get(key) {
            Some(at) if now.duration_since(*at) < self.ttl => false,
            _ => {
                seen.insert(key.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_within_ttl_is_a_duplicate() {
        let d = Dedup::default();
        assert!(d.first_seen("k"));
        assert!(!d.first_seen("k"));
        assert!(d.first_seen("other"));
        let short = Dedup::new(Duration::ZERO);
        assert!(short.first_seen("k"));
        assert!(short.first_seen("k"), "expired keys count as new");
    }
}
