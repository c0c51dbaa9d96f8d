//! Webhook delivery, as Zoom does it: signed POSTs to
//! `{app_url}/api/webhooks/zoom`, first attempts strictly in order from one
//! queue task (a `voice_rtms_started` never overtakes its `_stopped`),
//! failures (non-2xx, timeout, no connection) retried on
//! `SimConfig::webhook_retry`, then given up. Every part of the simulator
//! queues its webhooks here (`Shared::webhook`) and never sends one itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WebhookDelivery;
use super::sign;
use super::state::{Shared, lock};
use super::stats::inc;
use crate::util::{now_ms, now_secs};

/// How many recent deliveries `GET /sim/webhooks` keeps.
const LOG_LEN: usize = 500;

#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub event: String,
    pub event_ts: i64,
    /// Compact JSON, signed and sent byte for byte.
    pub body: String,
    /// Attempts made so far.
    pub attempt: usize,
}

impl Shared {
    /// Queue a webhook `{event, event_ts, payload}`.
    pub fn webhook(&self, event: &str, payload: serde_json::Value) {
        let event_ts = now_ms();
        let body = serde_json::json!({
            "event": event,
            "event_ts": event_ts,
            "payload": payload,
        })
        .to_string();
        let _ = self.webhook_tx.send(Outgoing {
            event: event.to_owned(),
            event_ts,
            body,
            attempt: 0,
        });
    }
}

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    // Retries waiting for their time, by (due, sequence).
    let mut retries: BTreeMap<(Instant, u64), Outgoing> = BTreeMap::new();
    let mut seq = 0u64;
    loop {
        let next_due = retries.keys().next().map(|(due, _)| *due);
        let item = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)).await },
                if next_due.is_some() => {
                let Some((_, item)) = retries.pop_first() else { continue };
                item
            }
        };
        let duplicate = item.attempt == 0 && lock(&shared.faults).take_duplicate_webhook();
        let ok = deliver(&shared, &item).await;
        if duplicate {
            deliver(&shared, &item).await;
        }
        if !ok {
            let attempt = item.attempt + 1;
            match shared.cfg.webhook_retry.get(item.attempt) {
                Some(delay) => {
                    seq += 1;
                    retries.insert((Instant::now() + *delay, seq), Outgoing { attempt, ..item });
                }
                None => {
                    tracing::warn!(event = %item.event, attempts = attempt, "webhook given up");
                    inc(&shared.stats.webhooks_dropped);
                }
            }
        }
    }
}

/// One signed POST; true on 2xx.
pub(crate) async fn deliver(shared: &Shared, item: &Outgoing) -> bool {
    let app_url = lock(&shared.app_url).clone();
    let status = match app_url {
        None => {
            tracing::warn!(event = %item.event, "no app URL set; webhook not delivered");
            None
        }
        Some(base) => {
            let url = format!("{}/api/webhooks/zoom", base.as_str().trim_end_matches('/'));
            let ts = now_secs();
            let signature =
                sign::webhook_signature(shared.cfg.secret_token.expose(), ts, item.body.as_bytes());
            let sent = shared
                .http
                .post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .header("user-agent", "Zoom Marketplace/1.0a")
                .header("clientid", &shared.cfg.client_id)
                .header("x-zm-request-timestamp", ts.to_string())
                .header("x-zm-signature", signature)
                .header(
                    "x-zm-trackingid",
                    format!("v=2.0.0;clid=sim;rid={}", crate::util::random_hex(8)),
                )
                .body(item.body.clone())
                .timeout(shared.cfg.webhook_timeout)
                .send()
                .await;
            match sent {
                Ok(resp) => Some(resp.status().as_u16()),
                Err(e) => {
                    tracing::debug!(event = %item.event, error = %e, "webhook delivery failed");
                    None
                }
            }
        }
    };
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    if ok {
        inc(&shared.stats.webhooks_sent);
    } else {
        inc(&shared.stats.webhooks_failed);
    }
    let mut log = lock(&shared.webhook_log);
    if log.len() >= LOG_LEN {
        log.pop_front();
    }
    log.push_back(WebhookDelivery {
        event: item.event.clone(),
        event_ts: item.event_ts,
        attempt: item.attempt + 1,
        status,
        ok,
        at_ms: now_ms(),
        body: item.body.clone(),
    });
    ok
}

/// Send `endpoint.url_validation` now and check the answer.
pub(crate) async fn validate_endpoint(shared: &Shared) -> anyhow::Result<super::UrlValidation> {
    let base = lock(&shared.app_url)
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no app URL set"))?;
    let plain = super::state::zoom_id();
    let body = serde_json::json!({
        "event": "endpoint.url_validation",
        "event_ts": now_ms(),
        "payload": {"plainToken": plain},
    })
    .to_string();
    let ts = now_secs();
    let secret = shared.cfg.secret_token.expose();
    let resp = shared
        .http
        .post(format!(
            "{}/api/webhooks/zoom",
            base.as_str().trim_end_matches('/')
        ))
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", "Zoom Marketplace/1.0a")
        .header("clientid", &shared.cfg.client_id)
        .header("x-zm-request-timestamp", ts.to_string())
        .header(
            "x-zm-signature",
            sign::webhook_signature(secret, ts, body.as_bytes()),
        )
        .body(body)
        .timeout(shared.cfg.webhook_timeout)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    let expected = sign::url_validation_token(secret, &plain);
    let ok = status == 200
        && answer["plainToken"] == plain.as_str()
        && answer["encryptedToken"]
            .as_str()
            .is_some_and(|t| sign::same(t, &expected));
    Ok(super::UrlValidation { ok, status, answer })
}
