//! The embedded backend: one redb file in `DATA_DIR`, crash-safe (every
//! commit is durable when it returns). redb is blocking, so every operation
//! runs on the blocking pool.
//!
//! Values carry their expiry (Unix ms, 0 = never) in front; an expired value
//! reads as absent and [`Embedded::sweep_expired`] deletes them for good.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::StoreError;
use crate::time::now_ms;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Set membership: key `{set}\0{member}`.
const SETS: TableDefinition<&str, ()> = TableDefinition::new("sets");

pub const FILE_NAME: &str = "zcc-rtms.redb";

#[derive(Clone)]
pub struct Embedded {
    db: Arc<Database>,
}

fn expiry(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as i64).max(1))
}

fn encode(expires_at_ms: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The live payload of a raw row, `None` when expired or malformed.
fn decode(raw: &[u8], now: i64) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let exp = i64::from_le_bytes(head.try_into().ok()?);
    (exp == 0 || exp > now).then_some(value)
}

impl Embedded {
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir = dir.to_owned();
        run(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                StoreError::Backend(format!("creating data dir {}: {e}", dir.display()))
            })?;
            let path = dir.join(FILE_NAME);
            let db = Database::create(&path).map_err(|e| {
                StoreError::Backend(format!("opening store file {}: {e}", path.display()))
            })?;
            let tx = db.begin_write().map_err(redb::Error::from)?;
            tx.open_table(KV).map_err(redb::Error::from)?;
            tx.open_table(SETS).map_err(redb::Error::from)?;
            tx.commit().map_err(redb::Error::from)?;
            Ok(Self { db: Arc::new(db) })
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        run(move || {
            let tx = db.begin_read().map_err(redb::Error::from)?;
            Ok(f(&tx)?)
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        run(move || {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(redb::Error::from)?;
            Ok(out)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| {
            tx.open_table(KV)?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |tx| {
            let table = tx.open_table(KV)?;
            let row = table.get(key.as_str())?;
            Ok(row.and_then(|r| decode(r.value(), now_ms()).map(<[u8]>::to_vec)))
        })
        .await
    }

    pub async fn put(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            table.insert(key.as_str(), encode(expiry(ttl), &value).as_slice())?;
            Ok(())
        })
        .await
    }

    pub async fn insert_if_absent(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            let live = table
                .get(key.as_str())?
                .is_some_and(|r| decode(r.value(), now_ms()).is_some());
            if live {
                return Ok(false);
            }
            table.insert(key.as_str(), encode(expiry(ttl), &value).as_slice())?;
            Ok(true)
        })
        .await
    }

    pub async fn take(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            let removed = table.remove(key.as_str())?;
            Ok(removed.and_then(|r| decode(r.value(), now_ms()).map(<[u8]>::to_vec)))
        })
        .await
    }

    /// Take or extend a lease: succeeds when the key is free, expired or
    /// already held by `owner`.
    pub async fn lease_claim(
        &self,
        key: String,
        owner: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            let held_by_other = table.get(key.as_str())?.is_some_and(|r| {
                decode(r.value(), now_ms()).is_some_and(|v| v != owner.as_bytes())
            });
            if held_by_other {
                return Ok(false);
            }
            table.insert(
                key.as_str(),
                encode(expiry(Some(ttl)), owner.as_bytes()).as_slice(),
            )?;
            Ok(true)
        })
        .await
    }

    pub async fn lease_renew(
        &self,
        key: String,
        owner: String,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            let mine = table
                .get(key.as_str())?
                .is_some_and(|r| decode(r.value(), now_ms()) == Some(owner.as_bytes()));
            if mine {
                table.insert(
                    key.as_str(),
                    encode(expiry(Some(ttl)), owner.as_bytes()).as_slice(),
                )?;
            }
            Ok(mine)
        })
        .await
    }

    pub async fn lease_release(&self, key: String, owner: String) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(KV)?;
            let mine = table
                .get(key.as_str())?
                .is_some_and(|r| decode(r.value(), now_ms()) == Some(owner.as_bytes()));
            if mine {
                table.remove(key.as_str())?;
            }
            Ok(mine)
        })
        .await
    }

    pub async fn set_add(&self, set: String, member: String) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(SETS)?;
            table.insert(format!("{set}\0{member}").as_str(), ())?;
            Ok(())
        })
        .await
    }

    pub async fn set_remove(&self, set: String, member: String) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(SETS)?;
            table.remove(format!("{set}\0{member}").as_str())?;
            Ok(())
        })
        .await
    }

    pub async fn set_members(&self, set: String) -> Result<Vec<String>, StoreError> {
        self.read(move |tx| {
            let table = tx.open_table(SETS)?;
            let start = format!("{set}\0");
            let end = format!("{set}\u{1}");
            let mut out = Vec::new();
            for row in table.range(start.as_str()..end.as_str())? {
                let (k, _) = row?;
                if let Some(member) = k.value().strip_prefix(start.as_str()) {
                    out.push(member.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    /// Delete every expired value; returns how many went.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(KV)?;
            let now = now_ms();
            let mut gone = 0usize;
            table.retain(|_, v| {
                let keep = decode(v, now).is_some();
                if !keep {
                    gone += 1;
                }
                keep
            })?;
            Ok(gone)
        })
        .await
    }
}

async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}
