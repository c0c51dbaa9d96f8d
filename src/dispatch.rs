//! What the app does with a verified webhook event, in arrival order.
//!
//! The HTTP handler answers Zoom first and queues the event here; one task
//! applies events in order so a `started` is never overtaken by its `stopped`.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engagements::Engagements;
use crate::rtms::{RtmsManager, StreamSpec};
use crate::status::{Level, StatusBus};
use crate::time::now_ms;
use crate::webhook::{Envelope, WebhookEvent};

/// Queue depth before the webhook endpoint answers 503 (Zoom retries).
pub const QUEUE_DEPTH: usize = 10_000;

pub struct Dispatcher {
    pub bus: StatusBus,
    pub engagements: Engagements,
    pub rtms: RtmsManager,
}

impl Dispatcher {
    pub async fn run(self, mut rx: mpsc::Receiver<Envelope>, cancel: CancellationToken) {
        loop {
            let envelope = tokio::select! {
                _ = cancel.cancelled() => break,
                next = rx.recv() => match next {
                    Some(e) => e,
                    None => break,
                },
            };
            self.apply(envelope).await;
        }
    }

    pub async fn apply(&self, envelope: Envelope) {
        let at = if envelope.event_ts > 0 {
            envelope.event_ts
        } else {
            now_ms()
        };
        match envelope.body {
            WebhookEvent::EngagementStarted {
                engagement_id,
                account_id,
                agent_user_id,
            } => {
                if self
                    .engagements
                    .started(
                        &engagement_id,
                        account_id.as_deref(),
                        agent_user_id.as_deref(),
                        at,
                    )
                    .await
                {
                    tracing::info!(%engagement_id, "engagement started");
                    self.bus
                        .status(Some(&engagement_id), Level::Info, "Engagement started");
                }
            }
            WebhookEvent::EngagementEnded { engagement_id, .. } => {
                if self.engagements.ended(&engagement_id, at).await {
                    tracing::info!(%engagement_id, "engagement ended");
                    self.bus
                        .status(Some(&engagement_id), Level::Info, "Engagement ended");
                }
                self.rtms.stop_engagement(&engagement_id);
            }
            WebhookEvent::RtmsStarted {
                engagement_id,
                rtms_stream_id,
                server_urls,
            } => {
                self.rtms.start(StreamSpec {
                    engagement_id,
                    rtms_stream_id,
                    server_urls,
                });
            }
            WebhookEvent::RtmsStopped { rtms_stream_id, .. } => {
                self.rtms.stop_stream(&rtms_stream_id);
            }
            WebhookEvent::RtmsInterrupted {
                engagement_id,
                rtms_stream_id,
            } => {
                tracing::warn!(%engagement_id, %rtms_stream_id, "stream interrupted by Zoom");
                self.rtms.interrupted(&rtms_stream_id);
            }
            WebhookEvent::UrlValidation { .. } => {}
            WebhookEvent::Other { event } => {
                tracing::debug!(%event, "ignored webhook event");
            }
        }
    }
}
