//! Integration tests: the real app (and the real simulator) on port 0.

mod helpers;
mod redis_server;

mod flow;
mod http;
mod store;
mod webhooks;
