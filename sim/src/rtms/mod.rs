//! The RTMS server (`docs/rtms-protocol.md`): the signaling and media
//! WebSocket endpoints and everything behind them, in three parts:
//!
//! * `conn`: the sockets, one connection handler for both endpoints;
//! * `lifecycle`: a stream's start, admission, pause, interruption and
//!   reconnect windows, stop; `events`: ZCC voice events;
//! * `driver`: one audio driver per stream, live and buffered audio
//!   (`buffer_data`) and transcripts.
//!
//! Every socket is one task owning its WebSocket; the rest of the simulator
//! talks to it through a bounded queue of messages and a watch for its end,
//! so nothing awaits while holding a stream's lock. Shares no code with the
//! app's RTMS client.

mod conn;
mod driver;
mod events;
mod lifecycle;

use axum::Router;
use axum::routing::get;

use crate::SimHandle;
use conn::Endpoint;

/// Messages queued per socket before frames are dropped (about 2.5 s of audio).
const OUT_QUEUE: usize = 256;

pub(crate) const SIGNALING_PATH: &str = "/rtms/signaling";
pub(crate) const MEDIA_PATH: &str = "/rtms/media";

/// The caller's name on frames and events.
const CALLER_NAME: &str = "Casey Caller";
/// `user_id`s on multi-stream frames (meeting-style integers).
const CHANNEL_USER_IDS: [i64; 2] = [16_778_241, 16_778_242];

pub(crate) fn router() -> Router<SimHandle> {
    Router::new()
        .route(
            SIGNALING_PATH,
            get(|s, ci, ws| conn::upgrade(s, ci, ws, Endpoint::Signaling)),
        )
        .route(
            MEDIA_PATH,
            get(|s, ci, ws| conn::upgrade(s, ci, ws, Endpoint::Media)),
        )
}
