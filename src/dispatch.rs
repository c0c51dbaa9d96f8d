//! What the app does with a verified webhook event: the effect of one inbox
//! entry.
//!
//! The webhook inbox calls [`Dispatcher::apply`] in order per engagement and
//! removes the entry only once it returned `Ok`; an `Err` (the store is
//! down) leaves the entry to be applied again. Every effect is idempotent,
//! so an entry applied twice (a crash between effect and removal) changes
//! nothing the second time.

use crate::engagements::Engagements;
use crate::rtms::{RtmsManager, StreamSpec};
use crate::status::{Level, StatusBus};
use crate::store::{ActiveIndex, Store, StoreError};
use crate::time::now_ms;
use crate::webhook::{Envelope, WebhookEvent};
use crate::zoom::ZoomClient;

#[derive(Clone)]
pub struct Dispatcher {
    pub bus: StatusBus,
    pub engagements: Engagements,
    pub rtms: RtmsManager,
    pub store: Store,
    pub zoom: ZoomClient,
}

impl Dispatcher {
    pub async fn apply(&self, envelope: Envelope) -> Result<(), StoreError> {
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
                    .await?
                {
                    tracing::info!(%engagement_id, "engagement started");
                    self.bus
                        .status(Some(&engagement_id), Level::Info, "Engagement started");
                }
            }
            WebhookEvent::EngagementEnded { engagement_id, .. } => {
                if self.engagements.ended(&engagement_id, at).await? {
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
                // Who the recordings belong to, so removing the app deletes
                // them even after the engagement is forgotten (never holds
                // up the stream: a store error only skips the note).
                if let Some(recorder) = self.rtms.recorder()
                    && let Ok(Some(e)) = self.store.load_engagement(&engagement_id).await
                    && let Some(agent) = e.agent_user_id
                {
                    recorder.note_agent(&engagement_id, &agent).await;
                }
                self.rtms.start(StreamSpec {
                    engagement_id,
                    rtms_stream_id,
                    server_urls,
                });
            }
            WebhookEvent::RtmsStopped {
                engagement_id,
                rtms_stream_id,
                stop_reason,
            } => {
                // Revoked: the recordings go first (the writer drops what the
                // stream still sends), so none outlives the stream.
                if stop_reason == Some(crate::rtms::protocol::stop_reason::STREAM_REVOKED)
                    && let Some(recorder) = self.rtms.recorder()
                {
                    recorder
                        .delete(&engagement_id, crate::recording::Deletion::Revoked)
                        .await;
                }
                self.rtms.stop_stream(&rtms_stream_id);
            }
            WebhookEvent::RtmsInterrupted {
                engagement_id,
                rtms_stream_id,
            } => {
                tracing::warn!(%engagement_id, %rtms_stream_id, "stream interrupted by Zoom");
                self.rtms.interrupted(&rtms_stream_id);
            }
            WebhookEvent::AppDeauthorized {
                account_id,
                user_id,
            } => self.deauthorized(&account_id, &user_id).await?,
            WebhookEvent::UrlValidation { .. } => {}
            WebhookEvent::Other { event } => {
                tracing::debug!(%event, "ignored webhook event");
            }
        }
        Ok(())
    }

    /// A user removed the app: delete their tokens (stored and held), stop
    /// their browser sessions, and delete their engagements (active and
    /// ended) with everything kept in memory about them and their
    /// recordings on this instance. Idempotent; one status line for operators
    /// (naming no one).
    async fn deauthorized(&self, account_id: &str, user_id: &str) -> Result<(), StoreError> {
        self.zoom.forget_user(account_id, user_id);
        self.store
            .forget_user(account_id, user_id, now_ms())
            .await?;
        let mut gone = 0usize;
        let mut theirs = self
            .store
            .active_engagements_in(ActiveIndex::Agent(user_id))
            .await?;
        theirs.extend(self.store.ended_engagements_of(user_id).await?);
        for e in theirs {
            self.rtms.stop_engagement(&e.engagement_id);
            if let Some(recorder) = self.rtms.recorder() {
                recorder
                    .delete(&e.engagement_id, crate::recording::Deletion::Deauthorized)
                    .await;
            }
            self.bus.forget_engagement(&e.engagement_id);
            self.store.delete_engagement(&e).await?;
            gone += 1;
        }
        if let Some(recorder) = self.rtms.recorder() {
            recorder.delete_agent(user_id).await;
        }
        tracing::warn!(
            engagements = gone,
            "app deauthorized by a user: their data was deleted"
        );
        self.bus.status(
            None,
            Level::Warning,
            format!(
                "App removed by a user: their tokens, sessions and {gone} engagement(s) were deleted"
            ),
        );
        Ok(())
    }
}
