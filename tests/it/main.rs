//! Integration tests: the real app (and the real simulator) on port 0.

mod helpers;
mod redis_server;

mod access;
mod access_edge;
mod appssdk;
mod auth;
mod auth_crash;
mod auth_harness;
mod backlog;
mod browser;
mod browser_driver;
mod cli;
mod context;
mod control;
mod deploy;
mod fixtures;
mod flow;
mod http;
mod inbox;
mod lifecycle;
mod metrics;
mod ownership;
mod resilience;
mod sim_buffer;
mod sim_conformance;
mod sim_fixtures;
mod sim_http;
mod sim_rtms;
mod sim_support;
mod sim_webhooks;
mod store;
mod webhooks;
