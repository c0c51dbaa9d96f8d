//! The embedded inbox: a redb table in the store's file, keyed by a sequence
//! number. Appends wait in a queue and are written by one task, many per
//! commit (group commit), each with its de-duplication key in the same
//! transaction: a key exists only for a stored entry. One worker applies
//! entries in sequence order and removes them once applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{ReadableTable as _, ReadableTableMetadata as _, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{AppendError, Appended, BATCH, DEDUP_TTL, apply, backoff, pause};
use crate::dispatch::Dispatcher;
use crate::store::embedded::insert_if_absent_in;
use crate::store::{Store, StoreError};

const INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox");
/// Most appends written by one commit.
const GROUP: usize = 512;
/// Appends waiting for their commit before callers wait for room.
const QUEUE: usize = 4_096;

struct Pending {
    dedup: String,
    sealed: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

#[derive(Clone)]
pub struct EmbeddedInbox {
    store: Store,
    seal_key: Arc<str>,
    queue: Arc<Mutex<Option<mpsc::Sender<Pending>>>>,
    wake: Arc<Notify>,
}

impl EmbeddedInbox {
    pub async fn open(store: Store) -> Result<Self, StoreError> {
        let db = store
            .embedded()
            .ok_or_else(|| StoreError::Backend("not an embedded store".into()))?;
        db.write(|tx| {
            tx.open_table(INBOX)?;
            Ok(())
        })
        .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let inbox = Self {
            seal_key: store.key("inbox", "entry").into(),
            store,
            queue: Arc::new(Mutex::new(Some(tx))),
            wake: Arc::new(Notify::new()),
        };
        // Holds no sender itself: ends once the queue is closed or every
        // handle is dropped, after writing what was queued.
        tokio::spawn(commit_loop(inbox.store.clone(), inbox.wake.clone(), rx));
        Ok(inbox)
    }

    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
    }

    pub async fn append(&self, dedup: String, plain: Vec<u8>) -> Result<Appended, AppendError> {
        let sender = self
            .queue
            .lock()
            .ok()
            .and_then(|q| q.clone())
            .ok_or(AppendError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            dedup: self.store.key("dedup", &dedup),
            sealed: self.store.seal_value(&self.seal_key, &plain),
            reply,
        };
        sender
            .send(pending)
            .await
            .map_err(|_| AppendError::Closed)?;
        drop(sender);
        Ok(answer.await.map_err(|_| AppendError::Closed)??)
    }

    pub async fn backlog(&self) -> Result<usize, StoreError> {
        let db = self.db()?;
        db.read(|tx| Ok(tx.open_table(INBOX)?.len()? as usize))
            .await
    }

    fn db(&self) -> Result<&crate::store::embedded::Embedded, StoreError> {
        self.store
            .embedded()
            .ok_or_else(|| StoreError::Backend("not an embedded store".into()))
    }

    async fn next_batch(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.db()?
            .read(|tx| {
                let table = tx.open_table(INBOX)?;
                let mut out = Vec::new();
                for row in table.iter()?.take(BATCH) {
                    let (k, v) = row?;
                    out.push((k.value(), v.value().to_vec()));
                }
                Ok(out)
            })
            .await
    }

    async fn remove(&self, done: Vec<u64>) -> Result<(), StoreError> {
        self.db()?
            .write(move |tx| {
                let mut table = tx.open_table(INBOX)?;
                for seq in done {
                    table.remove(seq)?;
                }
                Ok(())
            })
            .await
    }

    /// Apply entries in order until `cancel`; an entry is removed only after
    /// its effect is stored, and a failure is retried (with backoff) before
    /// anything behind it.
    pub async fn run(self, dispatcher: Dispatcher, cancel: CancellationToken) {
        let mut failures = 0u32;
        while !cancel.is_cancelled() {
            let batch = match self.next_batch().await {
                Ok(b) => b,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "reading the webhook inbox");
                    if !pause(&cancel, backoff(failures)).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.wake.notified() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
                continue;
            }
            let mut done = Vec::with_capacity(batch.len());
            let mut failed = false;
            for (seq, sealed) in batch {
                if cancel.is_cancelled() {
                    break;
                }
                let plain = match self.store.open_value(&self.seal_key, &sealed) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable inbox entry dropped");
                        done.push(seq);
                        continue;
                    }
                };
                match apply(&dispatcher, &plain).await {
                    Ok(()) => done.push(seq),
                    Err(e) => {
                        tracing::warn!(error = %e, "applying a webhook failed; will retry");
                        failed = true;
                        break;
                    }
                }
            }
            if !done.is_empty()
                && let Err(e) = self.remove(done).await
            {
                tracing::warn!(error = %e, "removing applied webhooks failed; will retry");
                failed = true;
            }
            if failed {
                failures += 1;
                if !pause(&cancel, backoff(failures)).await {
                    break;
                }
            } else {
                failures = 0;
            }
        }
    }
}

/// Write queued appends, as many per commit as are waiting.
async fn commit_loop(store: Store, wake: Arc<Notify>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (rows, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.dedup, p.sealed), p.reply))
            .unzip();
        let Some(db) = store.embedded() else { return };
        let result = db.write(move |tx| write_group(tx, rows)).await;
        match result {
            Ok(outcomes) => {
                if outcomes.contains(&Appended::Stored) {
                    wake.notify_one();
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, n = replies.len(), "storing webhooks failed");
                let reason = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(reason.clone())));
                }
            }
        }
    }
}

/// One commit: each row's key is checked and set, and the entry stored,
/// unless the key is live (a retry of a stored delivery).
fn write_group(
    tx: &redb::WriteTransaction,
    rows: Vec<(String, Vec<u8>)>,
) -> Result<Vec<Appended>, redb::Error> {
    let mut table = tx.open_table(INBOX)?;
    let mut next = table
        .last()?
        .map_or(1, |(k, _)| k.value().saturating_add(1));
    let mut out = Vec::with_capacity(rows.len());
    for (dedup, sealed) in rows {
        if insert_if_absent_in(tx, &dedup, b"1", Some(DEDUP_TTL))? {
            table.insert(next, sealed.as_slice())?;
            next = next.saturating_add(1);
            out.push(Appended::Stored);
        } else {
            out.push(Appended::Duplicate);
        }
    }
    Ok(out)
}
