//! The Redis inbox: one stream read through one consumer group by every
//! instance, so any instance applies any entry.
//!
//! An append is one script: set the delivery's key if absent, number the
//! entry within its engagement, add it to the stream — all or nothing. A
//! worker reads its own pending entries first (retries, entries taken over),
//! then new ones; it applies an entry only when the engagement's previous
//! entry is applied (the "done" counter), then in one script records the
//! counter, acknowledges and deletes the entry. Entries a consumer has held
//! longer than the claim time without finishing are taken over with
//! `XAUTOCLAIM`: their instance died.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::{AppendError, Appended, BATCH, DEDUP_TTL, InboxConfig, apply, backoff, pause};
use crate::dispatch::Dispatcher;
use crate::store::redis::millis;
use crate::store::{ENDED_ENGAGEMENT_TTL, Store, StoreError};

const GROUP: &str = "workers";
/// How long an entry waits for its engagement's previous one before it is
/// applied anyway (that one is lost, or its claim is slow).
const ORDER_WAIT: Duration = Duration::from_secs(120);
/// Consumers with nothing pending and idle this long are forgotten.
const FORGET_CONSUMER_AFTER: Duration = Duration::from_secs(60 * 60);

/// KEYS: dedup key, stream, engagement counter, engagement done counter.
/// ARGV: dedup TTL ms, sealed entry, counter TTL ms, engagement ('' none).
/// A counter starting again (it expired) clears the done counter with it.
const APPEND: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return false
end
local seq = 0
if ARGV[4] ~= '' then
  seq = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  if seq == 1 then
    redis.call('DEL', KEYS[4])
  end
end
return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2], 'g', ARGV[4], 's', seq)";

/// KEYS: done counter, stream. ARGV: seq (0 none), counter TTL ms, group, id.
const FINISH: &str = r"
local seq = tonumber(ARGV[1])
if seq > 0 then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  if seq > cur then
    redis.call('SET', KEYS[1], seq, 'PX', ARGV[2])
  end
end
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
return 1";

#[derive(Clone)]
pub struct RedisInbox {
    store: Store,
    stream: Arc<str>,
    seal_key: Arc<str>,
    consumer: Arc<str>,
    config: InboxConfig,
    append: Arc<redis::Script>,
    finish: Arc<redis::Script>,
}

/// What became of an entry.
enum Outcome {
    Done,
    /// Its engagement's previous entry is not applied yet.
    Waiting,
}

impl RedisInbox {
    pub async fn open(
        store: Store,
        instance: &str,
        config: InboxConfig,
    ) -> Result<Self, StoreError> {
        let inbox = Self {
            stream: store.key("inbox", "stream").into(),
            seal_key: store.key("inbox", "entry").into(),
            consumer: instance.into(),
            config,
            append: Arc::new(redis::Script::new(APPEND)),
            finish: Arc::new(redis::Script::new(FINISH)),
            store,
        };
        inbox.create_group(&mut inbox.conn()?).await?;
        Ok(inbox)
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.store
            .redis()
            .map(|r| r.conn())
            .ok_or_else(|| StoreError::Backend("not a Redis store".into()))
    }

    async fn create_group(&self, conn: &mut ConnectionManager) -> Result<(), StoreError> {
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&*self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn counter(&self, kind: &str, engagement: &str) -> String {
        self.store.key(kind, engagement)
    }

    pub async fn append(
        &self,
        dedup: &str,
        engagement: Option<&str>,
        plain: &[u8],
    ) -> Result<Appended, AppendError> {
        let engagement = engagement.unwrap_or_default();
        let mut conn = self.conn()?;
        let id: Option<String> = self
            .append
            .key(self.store.key("dedup", dedup))
            .key(&*self.stream)
            .key(self.counter("inbox-seq", engagement))
            .key(self.counter("inbox-done", engagement))
            .arg(millis(DEDUP_TTL))
            .arg(self.store.seal_value(&self.seal_key, plain))
            .arg(millis(ENDED_ENGAGEMENT_TTL))
            .arg(engagement)
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(if id.is_some() {
            Appended::Stored
        } else {
            Appended::Duplicate
        })
    }

    pub async fn backlog(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let n: usize = redis::cmd("XLEN")
            .arg(&*self.stream)
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// Read up to `count` entries: `"0"` = this consumer's pending ones,
    /// `">"` = new ones (waiting up to `block`).
    async fn read(
        &self,
        conn: &mut ConnectionManager,
        from: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamId>, StoreError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&*self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(millis(block));
        }
        cmd.arg("STREAMS").arg(&*self.stream).arg(from);
        let reply: Option<StreamReadReply> = match cmd.query_async(conn).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the group (restarted without persistence).
                self.create_group(conn).await?;
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect())
    }

    /// Take over what other consumers have held too long, and forget
    /// consumers long gone with nothing pending.
    async fn claim(&self, conn: &mut ConnectionManager) -> Result<usize, StoreError> {
        let mut start = "0-0".to_owned();
        let mut claimed = 0;
        for _ in 0..16 {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&*self.stream)
                .arg(GROUP)
                .arg(&*self.consumer)
                .arg(millis(self.config.claim_idle))
                .arg(&start)
                .arg("COUNT")
                .arg(256)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
            claimed += reply.claimed.len();
            if reply.next_stream_id == "0-0" {
                break;
            }
            start = reply.next_stream_id;
        }
        if claimed > 0 {
            tracing::warn!(
                claimed,
                "took over webhooks left pending by another instance"
            );
        }
        let info: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&*self.stream)
            .arg(GROUP)
            .query_async(conn)
            .await?;
        for c in info.consumers {
            if c.name != *self.consumer
                && c.pending == 0
                && c.idle as u128 > FORGET_CONSUMER_AFTER.as_millis()
            {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&*self.stream)
                    .arg(GROUP)
                    .arg(&c.name)
                    .query_async(conn)
                    .await?;
            }
        }
        Ok(claimed)
    }

    /// Apply one entry if its turn has come; acknowledge it once applied.
    async fn handle(
        &self,
        conn: &mut ConnectionManager,
        dispatcher: &Dispatcher,
        entry: &StreamId,
        waiting: &mut HashMap<String, Instant>,
    ) -> Result<Outcome, StoreError> {
        let engagement: String = entry.get("g").unwrap_or_default();
        let seq: u64 = entry.get("s").unwrap_or(0);
        let done_key = self.counter("inbox-done", &engagement);
        let mut apply_it = true;
        if !engagement.is_empty() && seq > 0 {
            let done: Option<u64> = redis::cmd("GET").arg(&done_key).query_async(conn).await?;
            let done = done.unwrap_or(0);
            if done >= seq {
                apply_it = false; // applied before; only the ack was lost
            } else if seq > done + 1 {
                let since = *waiting.entry(entry.id.clone()).or_insert_with(Instant::now);
                if since.elapsed() < ORDER_WAIT {
                    return Ok(Outcome::Waiting);
                }
                tracing::warn!(
                    engagement_id = %engagement,
                    "an earlier webhook of this engagement never came through; applying the next"
                );
            }
        }
        if apply_it {
            match entry.get::<Vec<u8>>("e") {
                Some(sealed) => match self.store.open_value(&self.seal_key, &sealed) {
                    Ok(plain) => apply(dispatcher, &plain).await?,
                    Err(e) => tracing::error!(error = %e, "unreadable inbox entry dropped"),
                },
                None => tracing::error!(id = %entry.id, "inbox entry without a body dropped"),
            }
        }
        let _: i64 = self
            .finish
            .key(&done_key)
            .key(&*self.stream)
            .arg(seq)
            .arg(millis(ENDED_ENGAGEMENT_TTL))
            .arg(GROUP)
            .arg(&entry.id)
            .invoke_async(conn)
            .await?;
        waiting.remove(&entry.id);
        Ok(Outcome::Done)
    }

    /// Apply `entries` in order; how many were finished.
    async fn handle_all(
        &self,
        conn: &mut ConnectionManager,
        dispatcher: &Dispatcher,
        entries: &[StreamId],
        waiting: &mut HashMap<String, Instant>,
        cancel: &CancellationToken,
    ) -> Result<usize, StoreError> {
        let mut finished = 0;
        for entry in entries {
            if cancel.is_cancelled() {
                break;
            }
            if let Outcome::Done = self.handle(conn, dispatcher, entry, waiting).await? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// One round: take over, own pending entries, then new ones.
    async fn round(
        &self,
        conn: &mut ConnectionManager,
        dispatcher: &Dispatcher,
        waiting: &mut HashMap<String, Instant>,
        last_claim: &mut Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        if last_claim.is_none_or(|t| t.elapsed() >= self.config.claim_idle / 2) {
            self.claim(conn).await?;
            *last_claim = Some(Instant::now());
        }
        let mine = self.read(conn, "0", BATCH * 4, None).await?;
        let progressed = self
            .handle_all(conn, dispatcher, &mine, waiting, cancel)
            .await?;
        // Wait for new entries only when nothing else can be done at once.
        let more_of_mine = mine.len() >= BATCH * 4 && progressed > 0;
        let block = (!more_of_mine).then(|| {
            (self.config.claim_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
        });
        if cancel.is_cancelled() {
            return Ok(());
        }
        let new = self.read(conn, ">", BATCH, block).await?;
        self.handle_all(conn, dispatcher, &new, waiting, cancel)
            .await?;
        Ok(())
    }

    /// Apply entries until `cancel`, retrying failures with backoff.
    pub async fn run(self, dispatcher: Dispatcher, cancel: CancellationToken) {
        let mut failures = 0u32;
        let mut conn: Option<ConnectionManager> = None;
        let mut waiting = HashMap::new();
        let mut last_claim = None;
        while !cancel.is_cancelled() {
            let result = match &mut conn {
                Some(c) => {
                    self.round(c, &dispatcher, &mut waiting, &mut last_claim, &cancel)
                        .await
                }
                None => match self.store.redis() {
                    // Blocking reads get a connection of their own.
                    Some(r) => r.dedicated().await.map(|c| conn = Some(c)),
                    None => return,
                },
            };
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "webhook inbox: will retry");
                    if !pause(&cancel, backoff(failures)).await {
                        break;
                    }
                }
            }
        }
    }
}
