//! The application: building and wiring the parts into `AppState`, the
//! listener, serve and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;
use zoom_sim::Simulator;

use crate::config::{Config, Mode};
use crate::demo;
use crate::dispatch::Dispatcher;
use crate::engagements::Engagements;
use crate::inbox::Inbox;
use crate::rtms::RtmsManager;
use crate::rtms::SessionDeps;
use crate::state::AppState;
use crate::status::StatusBus;
use crate::store::{Backend, Store};
use crate::zoom::{ZoomClient, ZoomClientConfig};

pub struct App {
    listener: TcpListener,
    state: AppState,
    addr: SocketAddr,
    sim: Option<Simulator>,
}

impl App {
    /// Bind the listener and assemble everything; nothing runs yet.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        let sim = match config.mode {
            Mode::Demo { .. } => Some(demo::start_simulator(&mut config).await?),
            Mode::Zoom => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;

        let tls = crate::tls::client_config(config.zoom.ca_cert.as_deref())?;
        let http = crate::tls::http_client(&tls)?;
        let backend = match &config.redis_url {
            Some(url) => Backend::Redis {
                url: url.clone(),
                ca_cert: config.redis_ca_cert.clone(),
            },
            None => Backend::Embedded {
                dir: config.data_dir.clone(),
            },
        };
        let store = Store::open(&backend, &config.token_encryption_key, &config.store_prefix)
            .await
            .context("opening the store")?;
        let metrics = crate::metrics::Metrics::new(store.backend_name());
        let store = store.timed(metrics.store_timer());
        let zoom = ZoomClient::new(
            http.clone(),
            ZoomClientConfig {
                host: config.zoom.host.clone(),
                api_url: config.zoom.api_url.clone(),
                client_id: config.zoom.client_id.clone(),
                client_secret: config.zoom.client_secret.clone(),
                redirect_url: redirect_url(&config, addr)?,
            },
            store.clone(),
        );
        let instance = format!("instance-{}", crate::util::random_hex(8));
        let inbox = Inbox::open(&store, &instance, config.inbox.clone())
            .await
            .context("opening the webhook inbox")?;
        let bus = StatusBus::new();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let recorder = match &config.recordings {
            Some(rc) => Some(crate::recording::Recorder::start(
                rc,
                metrics.recording_counters(),
            )?),
            None => None,
        };
        let sink = match &config.sink {
            Some(sink) => crate::sink::start(
                sink,
                config.redis_ca_cert.as_deref(),
                &config.store_prefix,
                &bus,
                metrics.sink_counters(),
                cancel.clone(),
                &tracker,
            )
            .context("starting the downstream feed")?,
            None => None,
        };
        let rtms = RtmsManager::new(
            SessionDeps {
                client_id: config.zoom.client_id.clone(),
                client_secret: config.zoom.client_secret.clone(),
                tls,
                bus: bus.clone(),
                config: config.rtms.clone(),
                counters: Default::default(),
                recorder,
                sink,
            },
            cancel.child_token(),
            tracker.clone(),
            store.is_shared().then(|| crate::rtms::lease::Leases {
                store: store.clone(),
                owner: instance.clone(),
            }),
        );
        let state = AppState {
            metrics,
            cookie_key: crate::http::session::cookie_key(&config.session_secret),
            edge: crate::http::edge::Edge::new(&config.edge),
            engagements: Engagements::new(bus.clone(), store.clone()),
            config: Arc::new(config),
            bus,
            rtms,
            inbox,
            instance: instance.into(),
            store,
            zoom,
            http,
            cancel,
            tracker,
            demo_user: sim.as_ref().map(|_| demo::DemoUser::default()),
        };
        if let Some(sim) = &sim {
            let local = Url::parse(&format!("http://127.0.0.1:{}", addr.port()))?;
            sim.handle().set_app_url(local);
        }
        Ok(Self {
            listener,
            state,
            addr,
            sim,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The in-process simulator of demo mode.
    pub fn simulator(&self) -> Option<&Simulator> {
        self.sim.as_ref()
    }

    /// Serve until `shutdown` resolves, then drain: SSE streams end, RTMS
    /// sockets close, background tasks finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            addr,
            sim,
        } = self;
        let cancel = state.cancel.clone();
        let tracker = state.tracker.clone();

        let dispatcher = Dispatcher {
            bus: state.bus.clone(),
            engagements: state.engagements.clone(),
            rtms: state.rtms.clone(),
            store: state.store.clone(),
            zoom: state.zoom.clone(),
        };
        state
            .inbox
            .spawn_worker(dispatcher, cancel.clone(), &tracker);
        tracker.spawn(sweep_store(state.store.clone(), cancel.clone()));
        if let (Some(recorder), Some(rc)) = (state.rtms.recorder(), &state.config.recordings) {
            let every =
                (rc.retention / 24).clamp(Duration::from_secs(60), Duration::from_secs(3600));
            tracker.spawn(recorder.clone().sweep(rc.retention, every, cancel.clone()));
        }
        tracker.spawn(close_stale_engagements(
            state.bus.clone(),
            state.engagements.clone(),
            state.rtms.clone(),
            state.config.engagement_max_age,
            cancel.clone(),
        ));
        if let Some(url) = &state.config.redis_url {
            crate::fanout::spawn(
                crate::store::redis_client(url.expose(), state.config.redis_ca_cert.as_deref())?,
                format!("{}bus", state.config.store_prefix),
                state.bus.clone(),
                state
                    .metrics
                    .bus_lagged(crate::metrics::BusConsumer::Fanout),
                cancel.clone(),
                &tracker,
            )
            .context("starting the status fan-out")?;
        }

        let sim_base = sim.as_ref().map(|s| s.base_url().to_string());
        if let (Some(sim), Some(user)) = (sim, &state.demo_user) {
            let inputs = demo::Inputs {
                zoom: state.zoom.clone(),
                http: state.http.clone(),
                bus: state.bus.clone(),
                user: user.clone(),
                manual: matches!(state.config.mode, Mode::Demo { manual: true }),
                cancel: cancel.clone(),
            };
            demo::run(sim, inputs, &tracker).await;
        }

        let public = state
            .config
            .public_url
            .clone()
            .map(|u| u.to_string())
            .unwrap_or_else(|| format!("http://localhost:{}", addr.port()));
        tracing::info!(%addr, url = %public, mode = ?state.config.mode, "listening");
        if let Some(sim) = &sim_base {
            tracing::info!(
                "demo: open {public} for the page, or {sim}sim/client?app={} to see it inside a simulated Zoom client",
                url::form_urlencoded::byte_serialize(public.as_bytes()).collect::<String>()
            );
        }

        let inbox = state.inbox.clone();
        let recorder = state.rtms.recorder().cloned();
        let edge = state.config.edge.clone();
        let router = crate::http::router(state);
        crate::http::edge::serve(listener, router, &edge, cancel.clone(), shutdown).await;

        cancel.cancel();
        // Requests still in flight have stored their webhooks; take no more.
        inbox.close();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not finish within 10 s");
        }
        // Sessions have ended: their last frames are queued.
        if let Some(recorder) = recorder {
            recorder.close().await;
        }
        Ok(())
    }
}

/// `ZOOM_REDIRECT_URL`, else `{PUBLIC_URL}/api/auth/callback`, else the
/// local listener.
fn redirect_url(config: &Config, addr: SocketAddr) -> anyhow::Result<Url> {
    if let Some(url) = &config.redirect_url {
        return Ok(url.clone());
    }
    let base = match &config.public_url {
        Some(public) => public.clone(),
        None => Url::parse(&format!("http://localhost:{}/", addr.port()))?,
    };
    Ok(base.join("/api/auth/callback")?)
}

/// Deletes expired store entries now and then (the embedded file only;
/// Redis expires keys by itself).
async fn sweep_store(store: Store, cancel: CancellationToken) {
    if store.is_shared() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                match store.sweep_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "expired store entries removed"),
                    Err(e) => tracing::warn!(error = %e, "sweeping the store"),
                }
            }
        }
    }
}

/// Close engagements never reported ended once they are older than
/// `max_age` (and stop their streams), and forget status history older than
/// an ended engagement is kept; a few times per `max_age`.
async fn close_stale_engagements(
    bus: StatusBus,
    engagements: Engagements,
    rtms: RtmsManager,
    max_age: Duration,
    cancel: CancellationToken,
) {
    let every = (max_age / 4).clamp(Duration::from_millis(250), Duration::from_secs(300));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let now = crate::time::now_ms();
                let keep = i64::try_from(crate::store::ENDED_ENGAGEMENT_TTL.as_millis()).unwrap_or(i64::MAX);
                bus.forget_before(now.saturating_sub(keep));
                match engagements.close_stale(max_age, now).await {
                    Ok(closed) => {
                        for id in closed {
                            rtms.stop_engagement(&id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "closing stale engagements"),
                }
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
