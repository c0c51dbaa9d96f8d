//! Status bus fan-out across instances, through Redis pub/sub.
//!
//! Every event that originates on this instance is published on one channel;
//! events published by other instances are applied to the local bus (and
//! never published again). So a page connected to any instance sees every
//! stream, whichever instance consumes it. Runs only with `REDIS_URL`.
//! While it runs, every stream view is published (a page elsewhere may
//! watch it). Decides nothing; a Redis outage only pauses the fan-out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::status::{BusEvent, StatusBus, Watch};

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: BusEvent,
}

/// Start publishing and subscribing; both tasks end with `cancel`.
pub fn spawn(
    client: redis::Client,
    channel: String,
    bus: StatusBus,
    lagged: prometheus_client::metrics::counter::Counter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let origin = crate::util::random_hex(8);
    // Pages on other instances may follow any engagement: every view is
    // published while the fan-out runs.
    let watch = bus.watch(None);
    tracker.spawn(publish(
        watch,
        client.clone(),
        channel.clone(),
        origin.clone(),
        bus.subscribe_local(),
        lagged,
        cancel.clone(),
    ));
    tracker.spawn(subscribe(client, channel, origin, bus, cancel));
    Ok(())
}

async fn publish(
    _watch: Watch,
    client: redis::Client,
    channel: String,
    origin: String,
    mut rx: tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    lagged: prometheus_client::metrics::counter::Counter,
    cancel: CancellationToken,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = loop {
        let connecting = ConnectionManager::new_with_config(client.clone(), config.clone());
        tokio::select! {
            _ = cancel.cancelled() => return,
            c = tokio::time::timeout(Duration::from_secs(10), connecting) => match c {
                Ok(Ok(c)) => break c,
                Ok(Err(e)) => tracing::warn!(error = %e, "status fan-out: connecting to Redis"),
                Err(_) => tracing::warn!("status fan-out: connecting to Redis timed out"),
            },
        }
        if !pause(&cancel).await {
            return;
        }
    };
    let mut failures: u64 = 0;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            next = rx.recv() => match next {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "status fan-out fell behind");
                    lagged.inc_by(n);
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        let envelope = Envelope {
            origin: origin.clone(),
            event: (*event).clone(),
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            continue;
        };
        if let Err(e) = conn.publish::<_, _, ()>(&channel, payload).await {
            failures += 1;
            // One line per burst of failures, not one per event.
            if failures.is_power_of_two() {
                tracing::warn!(error = %e, failures, "status fan-out: publishing to Redis");
            }
        }
    }
}

async fn subscribe(
    client: redis::Client,
    channel: String,
    origin: String,
    bus: StatusBus,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let pubsub = tokio::select! {
            _ = cancel.cancelled() => return,
            p = tokio::time::timeout(Duration::from_secs(10), client.get_async_pubsub()) => p,
        };
        let mut pubsub = match pubsub {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "status fan-out: subscribing to Redis");
                if !pause(&cancel).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!("status fan-out: subscribing to Redis timed out");
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(error = %e, "status fan-out: SUBSCRIBE");
            if !pause(&cancel).await {
                return;
            }
            continue;
        }
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = messages.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!("status fan-out: Redis subscription ended; resubscribing");
                break;
            };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(env) if env.origin != origin => bus.apply_remote(env.event),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "status fan-out: ignored message"),
            }
        }
        drop(messages);
        if !pause(&cancel).await {
            return;
        }
    }
}

/// A second's pause before retrying; false when cancelled.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}
