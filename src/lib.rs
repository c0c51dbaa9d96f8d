//! zcc-rtms: a Zoom App for the Zoom Contact Center that consumes an
//! engagement's real-time media stream (RTMS) and shows it live.
//!
//! The binary is thin; everything lives here so tests, the simulator and demo
//! mode run the same code. The Zoom simulator is a crate of its own
//! (`zoom_sim`, in `sim/`) that this one depends on. See `docs/architecture.md` for the flows and
//! who owns what.

pub mod access;
pub mod app;
pub mod config;
pub mod context;
pub mod demo;
pub mod dispatch;
pub mod doctor;
pub mod engagements;
pub mod error;
pub mod fanout;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod recording;
pub mod rtms;
pub mod secret;
pub mod sink;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod util;
pub mod webhook;
pub mod zoom;

pub use app::{App, shutdown_signal};
pub use config::Config;
pub use state::AppState;
