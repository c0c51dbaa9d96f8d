//! Integration tests: the real app (and the real simulator) on port 0.

mod sim_conformance;
mod sim_fixtures;
mod sim_http;
mod sim_rtms;
mod sim_support;
mod sim_webhooks;
