//! The embedded backend: one redb file in `DATA_DIR`, crash-safe (every
//! commit is durable when it returns). redb is blocking, so every operation
//! runs on the blocking pool.
//!
//! Values carry their expiry (Unix ms, 0 = never) in front; an expired value
//! reads as absent and [`Embedded::sweep_expired`] deletes them for good.
//!
//! A failed write (disk full, I/O error) leaves redb refusing every later
//! one; the file is then closed and opened again by the next operation, so
//! the store recovers by itself once the cause is gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
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
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// A write failed: open the file again before the next operation.
    broken: AtomicBool,
}

pub(crate) fn expiry(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as i64).max(1))
}

pub(crate) fn encode(expires_at_ms: i64, value: &[u8]) -> Vec<u8> {
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

/// Inside a write transaction: store `value` under `key` unless a live value
/// is there. True when stored.
pub(crate) fn insert_if_absent_in(
    tx: &redb::WriteTransaction,
    key: &str,
    value: &[u8],
    ttl: Option<Duration>,
) -> Result<bool, redb::Error> {
    let mut table = tx.open_table(KV)?;
    let live = table
        .get(key)?
        .is_some_and(|r| decode(r.value(), now_ms()).is_some());
    if live {
        return Ok(false);
    }
    table.insert(key, encode(expiry(ttl), value).as_slice())?;
    Ok(true)
}

fn open_file(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path)
        .map_err(|e| StoreError::Backend(format!("opening store file {}: {e}", path.display())))?;
    let tx = db.begin_write().map_err(redb::Error::from)?;
    tx.open_table(KV).map_err(redb::Error::from)?;
    tx.open_table(SETS).map_err(redb::Error::from)?;
    tx.commit().map_err(redb::Error::from)?;
    Ok(db)
}

impl Shared {
    /// The open database, opening it again after a failed write.
    fn handle(&self) -> Result<Arc<Database>, StoreError> {
        if !self.broken.load(Ordering::Acquire)
            && let Some(db) = self.db.read().map_err(poisoned)?.as_ref()
        {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().map_err(poisoned)?;
        if self.broken.load(Ordering::Acquire) || slot.is_none() {
            // Drop our handle first: the file can be open only once. An
            // operation still holding the old one makes this attempt fail;
            // the next operation tries again.
            *slot = None;
            let db = open_file(&self.path).map_err(|e| {
                StoreError::Backend(format!("recovering after a failed write: {e}"))
            })?;
            *slot = Some(Arc::new(db));
            self.broken.store(false, Ordering::Release);
            tracing::info!("embedded store reopened after a failed write");
        }
        slot.clone()
            .ok_or_else(|| StoreError::Backend("store file is not open".into()))
    }

    /// Remember an I/O failure so the next operation reopens the file.
    fn failed<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Embedded(
            redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::TransactionPoisoned
            | redb::Error::DatabaseClosed
            | redb::Error::Corrupted(_),
        )) = &result
        {
            self.broken.store(true, Ordering::Release);
        }
        result
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Backend("store handle lock poisoned".into())
}

impl Embedded {
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir = dir.to_owned();
        run(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                StoreError::Backend(format!("creating data dir {}: {e}", dir.display()))
            })?;
            let path = dir.join(FILE_NAME);
            let db = open_file(&path)?;
            Ok(Self {
                shared: Arc::new(Shared {
                    path,
                    db: RwLock::new(Some(Arc::new(db))),
                    broken: AtomicBool::new(false),
                }),
            })
        })
        .await
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        run(move || {
            let db = shared.handle()?;
            let result = db
                .begin_read()
                .map_err(redb::Error::from)
                .and_then(|tx| f(&tx))
                .map_err(StoreError::from);
            shared.failed(result)
        })
        .await
    }

    /// One write transaction, durable when this returns. On failure nothing
    /// of it is kept.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        run(move || {
            let db = shared.handle()?;
            let result = (|| {
                let tx = db.begin_write()?;
                let out = f(&tx)?;
                tx.commit()?;
                Ok::<_, redb::Error>(out)
            })()
            .map_err(StoreError::from);
            shared.failed(result)
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
        self.write(move |tx| insert_if_absent_in(tx, &key, &value, ttl))
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

    /// Drop the members of the sets named `{set_prefix}…` whose value under
    /// `{key_prefix}{member}` is gone or expired (sets kept as an index of
    /// expiring values). Returns how many went.
    pub async fn prune_sets(
        &self,
        set_prefix: String,
        key_prefix: String,
    ) -> Result<usize, StoreError> {
        self.write(move |tx| {
            let kv = tx.open_table(KV)?;
            let mut sets = tx.open_table(SETS)?;
            let now = now_ms();
            let mut dead = Vec::new();
            for row in sets.range(set_prefix.as_str()..)? {
                let (k, _) = row?;
                let k = k.value();
                if !k.starts_with(set_prefix.as_str()) {
                    break;
                }
                let Some((_, member)) = k.split_once('\0') else {
                    continue;
                };
                let live = kv
                    .get(format!("{key_prefix}{member}").as_str())?
                    .is_some_and(|v| decode(v.value(), now).is_some());
                if !live {
                    dead.push(k.to_owned());
                }
            }
            for k in &dead {
                sets.remove(k.as_str())?;
            }
            Ok(dead.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pruning_drops_set_members_whose_value_is_gone_or_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Embedded::open(dir.path()).await.expect("open");
        let put = |k: &str, ttl| db.put(format!("v:{k}"), b"x".to_vec(), ttl);
        put("live", None).await.expect("put");
        put("later", Some(Duration::from_secs(3600)))
            .await
            .expect("put");
        put("expired", Some(Duration::ZERO)).await.expect("put");
        for member in ["live", "later", "expired", "missing"] {
            db.set_add("idx:a".into(), member.into())
                .await
                .expect("add");
        }
        db.set_add("other".into(), "missing".into())
            .await
            .expect("add");
        let gone = db
            .prune_sets("idx:".into(), "v:".into())
            .await
            .expect("prune");
        assert_eq!(gone, 2);
        let mut left = db.set_members("idx:a".into()).await.expect("members");
        left.sort();
        assert_eq!(left, ["later", "live"]);
        assert_eq!(
            db.set_members("other".into()).await.expect("members"),
            ["missing"],
            "sets outside the prefix are untouched"
        );
    }
}
