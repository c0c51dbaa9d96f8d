//! The Redis backend: shared by every instance behind a load balancer,
//! over TLS with a `rediss://` URL (rustls; an optional trusted root).
//!
//! One `ConnectionManager` (reconnects by itself) with connection and
//! response timeouts, so no store call can hang. Leases are `SET NX PX` with
//! compare-and-set Lua scripts, so only the owner can extend or release one.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::StoreError;

const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

#[derive(Clone)]
pub struct RedisBackend {
    client: Arc<redis::Client>,
    conn: ConnectionManager,
    claim: std::sync::Arc<redis::Script>,
    renew: std::sync::Arc<redis::Script>,
    release: std::sync::Arc<redis::Script>,
}

/// A client for `url`; with `ca_cert` (PEM) a `rediss://` server must be
/// signed by it, otherwise by a root the system trusts.
pub fn client(url: &str, ca_cert: Option<&std::path::Path>) -> Result<redis::Client, StoreError> {
    let url_error = |e: redis::RedisError| StoreError::Backend(format!("REDIS_URL: {e}"));
    match ca_cert {
        None => redis::Client::open(url).map_err(url_error),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Backend(format!("REDIS_CA_CERT {}: {e}", path.display()))
            })?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(url_error)
        }
    }
}

/// A reconnecting connection with bounded connect and response times, so no
/// store call can hang.
async fn manager(client: &redis::Client) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    tokio::time::timeout(
        Duration::from_secs(10),
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| StoreError::Backend("connecting to Redis timed out".into()))?
    .map_err(StoreError::from)
}

pub(crate) fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl RedisBackend {
    pub async fn connect(client: &redis::Client) -> Result<Self, StoreError> {
        let client = client.clone();
        let conn = manager(&client).await?;
        let backend = Self {
            client: Arc::new(client),
            conn,
            claim: std::sync::Arc::new(redis::Script::new(CLAIM)),
            renew: std::sync::Arc::new(redis::Script::new(RENEW)),
            release: std::sync::Arc::new(redis::Script::new(RELEASE)),
        };
        backend.ping().await?;
        Ok(backend)
    }

    /// The shared connection (commands are pipelined on it).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own, for blocking reads that must not hold up
    /// everyone else's commands.
    pub(crate) async fn dedicated(&self) -> Result<ConnectionManager, StoreError> {
        manager(&self.client).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.get(key).await?)
    }

    pub async fn put(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        match ttl {
            Some(ttl) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c)
                    .await?;
            }
            None => {
                let _: () = c.set(key, value).await?;
            }
        }
        Ok(())
    }

    pub async fn insert_if_absent(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let set: Option<String> = cmd.query_async(&mut c).await?;
        Ok(set.is_some())
    }

    pub async fn take(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GETDEL").arg(key).query_async(&mut c).await?)
    }

    pub async fn lease_claim(
        &self,
        key: String,
        owner: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_script(&self.claim, key, owner, ttl).await
    }

    pub async fn lease_renew(
        &self,
        key: String,
        owner: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_script(&self.renew, key, owner, ttl).await
    }

    /// Run a lease script (`KEYS[1]` = key, `ARGV` = owner, ttl in ms);
    /// true when it answered 1.
    async fn lease_script(
        &self,
        script: &redis::Script,
        key: String,
        owner: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = script
            .key(key)
            .arg(owner)
            .arg(millis(ttl))
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    pub async fn lease_release(&self, key: String, owner: String) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .release
            .key(key)
            .arg(owner)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    pub async fn set_add(&self, set: String, member: String) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.sadd(set, member).await?;
        Ok(())
    }

    /// Add to a set that expires `ttl` after its last addition (so every
    /// member added is kept at least that long).
    pub async fn set_add_for(
        &self,
        set: String,
        member: String,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .sadd(&set, member)
            .ignore()
            .pexpire(&set, millis(ttl) as i64)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    pub async fn set_remove(&self, set: String, member: String) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.srem(set, member).await?;
        Ok(())
    }

    pub async fn set_members(&self, set: String) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.smembers(set).await?)
    }
}
