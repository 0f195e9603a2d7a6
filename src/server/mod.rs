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
use secrecy::{ExposeSecret, SecretString};
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

/// One portal the server takes deliveries for: its handlers' parts and its inbox's
/// group-commit writer.
pub struct Route {
    /// The HubSpot portal id events are routed by (`None`: the only portal, which takes every
    /// delivery, as a single-portal file always has).
    pub id: Option<u64>,
    /// The portal's store, secret, readiness, metrics and status sources.
    pub app: AppState,
    inbox: InboxWriter,
}

/// Every portal of the deployment behind the one listener, and the distinct webhook secrets
/// with the portals each one signs for (one app installed in many portals has one secret).
pub struct Portals {
    /// In configuration order; the first is the status page's default.
    pub routes: Vec<Route>,
    secrets: Vec<(SecretString, Vec<usize>)>,
}

impl Portals {
    fn new(states: Vec<(Option<u64>, AppState)>) -> Portals {
        let mut secrets: Vec<(SecretString, Vec<usize>)> = Vec::new();
        let routes: Vec<Route> = states
            .into_iter()
            .map(|(id, app)| Route {
                id,
                inbox: InboxWriter::spawn(app.store.clone()),
                app,
            })
            .collect();
        for (i, r) in routes.iter().enumerate() {
            let Some(secret) = &r.app.client_secret else { continue };
            match secrets
                .iter_mut()
                .find(|(s, _)| s.expose_secret() == secret.expose_secret())
            {
                Some((_, portals)) => portals.push(i),
                None => secrets.push((secret.clone(), vec![i])),
            }
        }
        Portals { routes, secrets }
    }

    /// More than one portal: events are routed by their `portalId`, metrics labelled `portal`.
    pub fn several(&self) -> bool {
        self.routes.len() > 1
    }

    /// The first portal: the deployment-wide settings (public URL) are the same on every one.
    pub fn first(&self) -> &Route {
        &self.routes[0]
    }

    /// The portal's label in metrics and logs: its id, or `default`.
    pub fn label(&self, i: usize) -> String {
        self.routes[i]
            .id
            .map_or_else(|| "default".to_string(), |id| id.to_string())
    }

    /// The secret a delivery is signed with (`check` says whether one verifies it) and the
    /// portals it signs for; the first secret's refusal when none does.
    pub fn verify<E>(
        &self,
        check: impl Fn(&SecretString) -> Result<(), E>,
    ) -> Result<Option<(&SecretString, &[usize])>, E> {
        let mut first = None;
        for (secret, portals) in &self.secrets {
            match check(secret) {
                Ok(()) => return Ok(Some((secret, portals))),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The portal `id` names (`None`: the first), for the status page.
    pub fn find(&self, id: Option<u64>) -> Option<&Route> {
        match id {
            None => self.routes.first(),
            Some(id) => self.routes.iter().find(|r| r.id == Some(id)),
        }
    }

    /// The portal ids, for the status page's links and its refusals (empty for one portal).
    pub fn ids(&self) -> Vec<u64> {
        if !self.several() {
            return Vec::new();
        }
        self.routes.iter().filter_map(|r| r.id).collect()
    }
}

/// The router's state: every portal's parts.
#[derive(Clone)]
struct ServerState {
    portals: Arc<Portals>,
}

impl FromRef<ServerState> for Arc<Portals> {
    fn from_ref(s: &ServerState) -> Arc<Portals> {
        s.portals.clone()
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
        Self::on_portals(vec![(None, state)], listener, max_body_bytes)
    }

    /// One server for several portals (`[[portals]]`), each with its HubSpot portal id: a
    /// delivery's events go to the inbox of the portal their `portalId` names, and `/metrics`
    /// and the status page (`?portal=ID`) show each portal. One entry is a single portal,
    /// which takes every delivery whatever its id. Starts each portal's inbox writer.
    pub fn on_portals(
        portals: Vec<(Option<u64>, AppState)>,
        listener: TcpListener,
        max_body_bytes: usize,
    ) -> Application {
        assert!(!portals.is_empty(), "a server serves one portal at least");
        metrics_handle();
        let state = ServerState {
            portals: Arc::new(Portals::new(portals)),
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

/// Ready when the store can write (not only answer a read) and the CRMs' tokens are fine. With
/// several portals, ready while one portal at least is, every portal that is not named: one
/// portal's outage must not take the listener, and the others' webhooks, out of service.
async fn readyz(State(portals): State<Arc<Portals>>) -> (StatusCode, String) {
    let mut ready = 0;
    let mut why = Vec::new();
    for (i, route) in portals.routes.iter().enumerate() {
        let state = &route.app;
        let answer = match state.store.can_write().await {
            Err(e) => Err(e),
            Ok(()) => (state.ready)().await,
        };
        match answer {
            Ok(()) => ready += 1,
            Err(e) if portals.several() => why.push(format!("portal {}: {e}", portals.label(i))),
            Err(e) => why.push(e),
        }
    }
    match (ready, portals.several()) {
        (0, _) => (StatusCode::SERVICE_UNAVAILABLE, why.join("\n")),
        (_, true) if !why.is_empty() => (StatusCode::OK, format!("ready; not ready: {}", why.join("; "))),
        _ => (StatusCode::OK, "ready".into()),
    }
}

async fn render_metrics(State(portals): State<Arc<Portals>>) -> String {
    let several = portals.several();
    let mut extra = Vec::new();
    for (i, route) in portals.routes.iter().enumerate() {
        let state = &route.app;
        let label = portals.label(i);
        if let Ok((depth, oldest)) = state.store.inbox_depth().await {
            let age = oldest.map_or(0.0, |t| {
                (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
            });
            if several {
                metrics::gauge!("leadsync_inbox_depth", "portal" => label.clone()).set(depth as f64);
                metrics::gauge!("leadsync_inbox_oldest_age_seconds", "portal" => label.clone()).set(age);
            } else {
                metrics::gauge!("leadsync_inbox_depth").set(depth as f64);
                metrics::gauge!("leadsync_inbox_oldest_age_seconds").set(age);
            }
        }
        if let Ok(counts) = state.store.outbox_counts().await {
            for (kind, st, n) in counts {
                if several {
                    metrics::gauge!("leadsync_outbox_items", "kind" => kind, "state" => st, "portal" => label.clone())
                        .set(n as f64);
                } else {
                    metrics::gauge!("leadsync_outbox_items", "kind" => kind, "state" => st).set(n as f64);
                }
            }
        }
        extra.push((label, (state.extra_metrics)()));
    }
    let mut out = metrics_handle().render();
    if several {
        out.push_str(&labelled_by_portal(&extra));
    } else if let Some((_, text)) = extra.pop() {
        out.push_str(&text);
    }
    out
}

/// Several portals' metric texts as one: each sample labelled `portal="…"`, each family's
/// samples together under its one `# TYPE` line, as the exposition format wants.
fn labelled_by_portal(parts: &[(String, String)]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (Option<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for (portal, text) in parts {
        for line in text.lines() {
            let (name, entry) = if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().unwrap_or_default().to_string();
                (name, None)
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                match series.split_once('{') {
                    Some((name, labels)) => (
                        name.to_string(),
                        Some(format!("{name}{{portal=\"{portal}\",{labels} {value}")),
                    ),
                    None => (
                        series.to_string(),
                        Some(format!("{series}{{portal=\"{portal}\"}} {value}")),
                    ),
                }
            };
            let family = families.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                (None, Vec::new())
            });
            match entry {
                None => {
                    family.0.get_or_insert_with(|| line.to_string());
                }
                Some(sample) => family.1.push(sample),
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (kind, samples) = &families[&name];
        if let Some(kind) = kind {
            out.push_str(kind);
            out.push('\n');
        }
        for s in samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::labelled_by_portal;

    #[test]
    fn several_portals_metrics_are_labelled_and_each_family_is_typed_once() {
        let a = "# TYPE calls counter\ncalls{system=\"hubspot\"} 3\n# TYPE waited counter\nwaited 0.5\n";
        let b = "# TYPE calls counter\ncalls{system=\"hubspot\"} 7\n# TYPE waited counter\nwaited 0\n";
        let out = labelled_by_portal(&[("42".into(), a.into()), ("43".into(), b.into())]);
        assert_eq!(
            out,
            "# TYPE calls counter\ncalls{portal=\"42\",system=\"hubspot\"} 3\ncalls{portal=\"43\",system=\"hubspot\"} 7\n\
             # TYPE waited counter\nwaited{portal=\"42\"} 0.5\nwaited{portal=\"43\"} 0\n"
        );
    }
}
