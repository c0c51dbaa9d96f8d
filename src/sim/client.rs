//! The Zoom client side for the page (host page, Apps SDK stand-in and its
//! feeds). Placeholder until the page engineer's version lands.

use axum::Router;

use super::SimHandle;

pub fn router() -> Router<SimHandle> {
    Router::new()
}
