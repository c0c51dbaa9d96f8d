//! Demo mode's driver: keeps a realistic engagement going on the in-process
//! simulator so a newcomer sees the whole flow with no set-up.
//!
//! An engagement starts, RTMS auto-starts shortly after (as a queue with
//! auto-start would), audio flows for a while, the engagement ends, a pause,
//! and the next one comes. Start/Stop on the page work at any time in
//! between. Stops on the app's shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::status::Level;
use zoom_sim::SimHandle;

/// Pace of the demo.
#[derive(Debug, Clone)]
pub struct Pace {
    pub auto_start_after: Duration,
    pub engagement_length: Duration,
    pub pause_between: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            auto_start_after: Duration::from_secs(2),
            engagement_length: Duration::from_secs(120),
            pause_between: Duration::from_secs(6),
        }
    }
}

pub async fn drive(sim: SimHandle, state: AppState) {
    let cancel = state.cancel.clone();
    state.bus.status(
        None,
        Level::Info,
        "Demo mode: a built-in Zoom simulator is playing a contact-center call",
    );
    let pace = Pace::default();
    while !cancel.is_cancelled() {
        if let Err(e) = one_engagement(&sim, &pace, &cancel).await {
            tracing::warn!(error = %e, "demo engagement failed");
            if !wait(&cancel, Duration::from_secs(5)).await {
                break;
            }
        }
    }
}

async fn one_engagement(
    sim: &SimHandle,
    pace: &Pace,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let id = sim.create_engagement().await?;
    tracing::info!(engagement_id = %id, "demo engagement started");
    if !wait(cancel, pace.auto_start_after).await {
        return Ok(());
    }
    let running = sim
        .engagements()
        .iter()
        .any(|e| e.engagement_id == id && e.rtms_stream_id.is_some());
    if !running {
        sim.start_rtms(&id).await?;
    }
    if !wait(cancel, pace.engagement_length).await {
        return Ok(());
    }
    sim.end_engagement(&id).await?;
    wait(cancel, pace.pause_between).await;
    Ok(())
}

/// Sleep unless cancelled; false when cancelled.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
