//! Integration tests: the real app (and the real simulator) on port 0.
//! Harnesses live in `support`; every other module holds tests only and
//! imports from `support`, never from another test module.

mod support;

mod access;
mod access_edge;
mod auth;
mod auth_crash;
mod backlog;
mod browser;
mod cli;
mod context;
mod control;
mod deauth;
mod deploy;
mod edge_limits;
mod fixtures;
mod flow;
mod fuzz;
mod http;
mod inbox;
mod lifecycle;
mod metrics;
mod ownership;
mod recording;
mod redis_tls;
mod resilience;
mod sim_buffer;
mod sim_conformance;
mod sim_fixtures;
mod sim_http;
mod sim_oauth;
mod sim_rtms;
mod sim_webhooks;
mod sink;
mod store;
mod store_faults;
mod token_faults;
mod webhooks;
