//! The edge: what keeps one client (or a crowd) from holding the server.
//!
//! * The serve loop: hyper's HTTP/1 connection with a header-read timeout
//!   (which is also the idle limit of a kept-alive connection), a cap on
//!   open connections (over it, a new connection is closed at once), the
//!   client's address on every request, and a graceful drain.
//! * A per-client rate limit (`governor`, GCRA) for the anonymous routes that
//!   write, answering 429 with `Retry-After`.
//! * Caps on live-feed subscribers, overall (503) and per session (429).
//!
//! The request-body timeout is a tower-http layer on the router. Decides
//! nothing about who may see what; that is `access`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::access::Caller;
use crate::config::EdgeConfig;
use crate::error::AppError;

/// How long a drained server waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Rate limiter and subscriber caps, shared by every handler.
#[derive(Clone)]
pub struct Edge {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    /// Rate-limited requests seen, to tidy the limiter now and then.
    checks: Arc<AtomicU64>,
    sse_total: Arc<Semaphore>,
    sse_max: usize,
    sse_per_session: Arc<Mutex<HashMap<String, usize>>>,
    sse_max_per_session: usize,
}

/// A refusal (429 or 503) answered with a `Retry-After` header.
#[derive(Debug)]
pub struct Refused {
    error: AppError,
    after: Duration,
}

fn retry_after(error: AppError, after: Duration) -> Refused {
    Refused { error, after }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let secs = self.after.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = self.error.into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The client's address (the connection's peer).
pub fn client_ip(info: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    info.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Self {
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            )),
            clock: DefaultClock::default(),
            checks: Arc::default(),
            sse_total: Arc::new(Semaphore::new(config.sse_max_subscribers)),
            sse_max: config.sse_max_subscribers,
            sse_per_session: Arc::default(),
            sse_max_per_session: config.sse_max_per_session,
        }
    }

    /// One request from `client` on a rate-limited route: Ok, or a 429.
    pub fn check_rate(&self, client: IpAddr) -> Result<(), Refused> {
        let outcome = self.limiter.check_key(&client);
        // Keep the per-client state bounded: now and then, forget clients
        // that are back to a full allowance.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        outcome.map_err(|not_until| {
            retry_after(
                AppError::TooManyRequests(
                    "too many requests from this address; try again later".into(),
                ),
                not_until.wait_time_from(self.clock.now()),
            )
        })
    }

    /// Live feeds open now.
    pub fn sse_subscribers(&self) -> usize {
        self.sse_max
            .saturating_sub(self.sse_total.available_permits())
    }

    /// A live-feed slot for `caller` (held for as long as the feed is open),
    /// or 503 when the server is full, 429 when this session has too many.
    pub fn sse_permit(&self, caller: &Caller, client: IpAddr) -> Result<SsePermit, Refused> {
        let key = match caller {
            Caller::User(u) => Some(format!("user:{}", u.user_id)),
            Caller::Demo | Caller::Anonymous => Some(format!("addr:{client}")),
            // Dashboards and load tests: the overall cap only.
            Caller::Operator => None,
        };
        let total = self.sse_total.clone().try_acquire_owned().map_err(|_| {
            retry_after(
                AppError::Unavailable("too many live feeds are open on this server".into()),
                Duration::from_secs(5),
            )
        })?;
        if let Some(key) = &key {
            let mut counts = self
                .sse_per_session
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(key.clone()).or_default();
            if *n >= self.sse_max_per_session {
                return Err(retry_after(
                    AppError::TooManyRequests(format!(
                        "this session already has {n} live feeds open; close one first"
                    )),
                    Duration::from_secs(5),
                ));
            }
            *n += 1;
        }
        Ok(SsePermit {
            _total: total,
            key,
            counts: self.sse_per_session.clone(),
        })
    }
}

/// An open live feed's slot; dropping it frees the slot.
pub struct SsePermit {
    _total: OwnedSemaphorePermit,
    key: Option<String>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for SsePermit {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(key);
            }
        }
    }
}

/// Serve `router` on `listener` until `shutdown`, then cancel `cancel` (SSE
/// streams end with it) and drain open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &EdgeConfig,
    cancel: CancellationToken,
    shutdown: impl Future<Output = ()> + Send,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(refused, "connection cap reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { tower::Service::call(&mut router, req).await }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down");
    cancel.cancel();
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}
