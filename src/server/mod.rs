//! The HTTP side of `leadsync run`: HubSpot's webhook deliveries into the inbox, health,
//! readiness, Prometheus metrics and the status page (`status`).
//!
//! `Application::build` binds (port 0 in tests) and returns; `run_until_stopped` serves until the
//! shutdown future resolves, finishing requests in flight.
//!
//! The listener is open to the internet, so nobody holds it for free: a connection must send its
//! request headers within `ServerLimits::header_read_timeout` (idle keep-alive connections
//! included), a request must be read and answered within `request_timeout` (408), and at most
//! `max_connections` are served at once (the rest wait in the kernel's backlog).

pub mod intake;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tracing::warn;

use crate::store::{InboxWriter, Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The inbox lives here.
    pub store: Store,
    /// HubSpot app client secret: the key of webhook signatures.
    pub client_secret: Option<SecretString>,
    /// The public base URL HubSpot calls, when a proxy sits in front.
    pub public_base_url: Option<String>,
    /// Woken when events arrive, so workers start at once.
    pub wake: Arc<Notify>,
    /// Readiness beyond the store: both CRMs' tokens (set by the daemon).
    pub ready: Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>,
    /// Extra metric lines rendered at each scrape (API call counts by endpoint).
    pub extra_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The status page's access and budgets (default: closed, budgets unknown).
    pub status: status::StatusSources,
}

/// The router's state: the handlers' shared parts and the inbox's group-commit writer.
#[derive(Clone)]
struct ServerState {
    app: AppState,
    inbox: InboxWriter,
}

impl FromRef<ServerState> for AppState {
    fn from_ref(s: &ServerState) -> AppState {
        s.app.clone()
    }
}

impl FromRef<ServerState> for InboxWriter {
    fn from_ref(s: &ServerState) -> InboxWriter {
        s.inbox.clone()
    }
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A connection that has not sent a request's headers within this is closed (slow or idle
    /// clients, keep-alive included). Default 10 s.
    pub header_read_timeout: Duration,
    /// A request must be read and answered within this, else 408 (a body that trickles in).
    /// Default 10 s (HubSpot itself gives up after 5 s).
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted. Default 512.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// The bound server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
}

/// The process-wide Prometheus recorder, installed once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
                .expect("static buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests): then ours only renders its own.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl Application {
    /// Binds `bind` and builds the routes.
    pub async fn build(state: AppState, bind: &str, max_body_bytes: usize) -> std::io::Result<Application> {
        let listener = TcpListener::bind(bind).await?;
        Ok(Self::on(state, listener, max_body_bytes))
    }

    /// The routes on a listener bound beforehand (when its address must be known first: the
    /// sandbox delivers webhooks to it). Starts the inbox writer on the current runtime; it
    /// stops when the server does.
    pub fn on(state: AppState, listener: TcpListener, max_body_bytes: usize) -> Application {
        metrics_handle();
        let state = ServerState {
            inbox: InboxWriter::spawn(state.store.clone()),
            app: state,
        };
        let router = Router::new()
            .route("/webhooks/hubspot", post(intake::webhooks))
            .route("/webhooks/hubspot/workflow", post(intake::workflow))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(render_metrics))
            .route("/", get(status::page_html))
            .route("/status.json", get(status::json))
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(state);
        Application {
            listener,
            router,
            limits: ServerLimits::default(),
        }
    }

    /// Other limits than the defaults.
    pub fn with_limits(mut self, limits: ServerLimits) -> Application {
        self.limits = limits;
        self
    }

    /// The bound address (the port is random when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves; requests in flight finish first.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let limits = self.limits;
        let router = self.router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
                    Ok(response) => response,
                    Err(_) => {
                        metrics::counter!("leadsync_http_request_timeouts_total").increment(1);
                        (StatusCode::REQUEST_TIMEOUT, "request not received in time").into_response()
                    }
                }
            },
        ));
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stopped.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        let _ = stop.send(true);
        // Every connection gives its permit back when it is done.
        let _ = permits.acquire_many(limits.max_connections as u32).await;
        Ok(())
    }
}

/// Ready when the store can write (not only answer a read) and the CRMs' tokens are fine.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if let Err(why) = state.store.can_write().await {
        return (StatusCode::SERVICE_UNAVAILABLE, why);
    }
    match (state.ready)().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn render_metrics(State(state): State<AppState>) -> String {
    if let Ok((depth, oldest)) = state.store.inbox_depth().await {
        metrics::gauge!("leadsync_inbox_depth").set(depth as f64);
        let age = oldest.map_or(0.0, |t| {
            (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("leadsync_inbox_oldest_age_seconds").set(age);
    }
    if let Ok(counts) = state.store.outbox_counts().await {
        for (kind, st, n) in counts {
            metrics::gauge!("leadsync_outbox_items", "kind" => kind, "state" => st).set(n as f64);
        }
    }
    let mut out = metrics_handle().render();
    out.push_str(&(state.extra_metrics)());
    out
}
