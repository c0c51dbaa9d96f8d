//! The RTMS engine: consumes Zoom's real-time media streams.
//!
//! Three layers: [`protocol`] (message types, encode/decode, no IO),
//! [`session`] (one stream's sockets and loop), [`manager`] (start/stop by
//! id, reconnection, caps). Never serves HTTP.

pub mod manager;
pub mod protocol;
pub mod session;

pub use manager::{RtmsManager, StreamSpec};
