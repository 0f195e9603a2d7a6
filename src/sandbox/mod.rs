//! The sandbox: a stateful fake HubSpot and Salesforce on loopback, serving a seeded synthetic
//! portal, so tests, benchmarks and `leadsync demo` run the whole product with no account and no
//! network. It refuses what the vendors refuse (batches over 100, search pages over 200, paging
//! past 10,000, a backward lifecycle stage, spent budgets, expired tokens), with their bodies and
//! headers, so a leadsync bug cannot hide behind a lenient fake. Every call is counted by
//! endpoint, so tests and benchmarks can assert what leadsync spends. It serves the standard
//! calls other clients make too (HubSpot's official SDK, simple-salesforce: `tests/sdk/`), and
//! `/_sandbox/settings` tightens its budgets or changes the portal's tier while it runs.
//!
//! - `portal`: the seeded synthetic portal (contacts of every kind, companies, engagements, page
//!   views and email events).
//! - `hubspot`: the HubSpot API, stateful, with its budgets, tokens and refusals.
//! - `salesforce`: the Salesforce REST surface of `docs/architecture.md`.
//! - `webhooks`: signed v3 deliveries with HubSpot's bounded retries.
//! - `activity`: a rep's call, email or meeting logged in either system (tests, the demo).
//! - `desk`: the sales side over sandbox time: reps who touch, accept, reject and qualify MQLs
//!   and close opportunities, seeded (`leadsync demo`'s month).

pub mod activity;
pub mod desk;
pub mod hubspot;
pub mod portal;
pub mod salesforce;
pub mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::watch;

pub use self::activity::{ACTIVITIES_PATH, SalesActivity, SalesActivityKind};
use self::portal::Portal;
pub use self::webhooks::WebhookDelivery;

/// What the sandbox simulates, and how harshly.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Seed of the synthetic portal: the same seed gives the same data. Default 42.
    pub seed: u64,
    /// Contacts in the portal, from a few hundred to a million. Default 500.
    pub contacts: u32,
    /// Companies in the portal. Default 60.
    pub companies: u32,
    /// Months of dated history before `now`. Default 6.
    pub months: u32,
    /// The sandbox's clock at start; it then advances with real time. Default 2026-11-25T12:00Z.
    pub now: DateTime<Utc>,
    /// Added to every API answer (both systems). Default none.
    pub latency: Duration,
    /// Share of API requests answered 5xx (0.0–1.0). Default 0.
    pub fault_rate_5xx: f64,
    /// Share of API requests that hang for `timeout_hang` and then answer 504. Default 0.
    pub fault_rate_timeout: f64,
    /// How long a simulated timeout hangs. Default 35 s (past the client's 30 s).
    pub timeout_hang: Duration,
    /// Share of writes (HubSpot contact updates, Salesforce composite and sObject writes) that
    /// are applied and then answered 5xx, as when the answer is lost on its way back. Default 0.
    pub fault_rate_lost: f64,
    /// 429 bursts: every this long, a window of `rate_limit_burst_length` in which every API call
    /// is refused (HubSpot's ten-secondly 429, Salesforce's `REQUEST_LIMIT_EXCEEDED`). Default
    /// zero: none.
    pub rate_limit_burst_every: Duration,
    /// Length of each 429 burst. Default 2 s.
    pub rate_limit_burst_length: Duration,
    /// Share of webhook deliveries sent twice. Default 0.
    pub webhook_duplicate_rate: f64,
    /// Share of webhook deliveries whose events are reversed and whose sending is held back up to
    /// a second, so later deliveries overtake them. Default 0.
    pub webhook_reorder_rate: f64,
    /// HubSpot OAuth access-token lifetime. Default 30 minutes, as HubSpot.
    pub hubspot_token_lifetime: Duration,
    /// HubSpot requests per rolling 10 s (search excluded). Default 100 (Free/Starter private app).
    pub hubspot_burst_per_10s: u32,
    /// The rolling window of that burst limit. Default 10 s, as HubSpot; shorter only so tests
    /// that wait for a window to pass (an SDK's retries) run quickly.
    pub hubspot_burst_window: Duration,
    /// The portal's tier: the event analytics and email events APIs exist only on Enterprise.
    /// Default Enterprise (every API served).
    pub hubspot_tier: HubSpotTier,
    /// HubSpot requests per day. Default 250,000.
    pub hubspot_daily_limit: u64,
    /// HubSpot search requests per second. Default 5.
    pub hubspot_search_per_second: u32,
    /// HubSpot portal id. Default 42.
    pub hubspot_portal_id: u64,
    /// The private-app token HubSpot accepts. Default `pat-sandbox`.
    pub hubspot_private_app_token: String,
    /// OAuth client id. Default `sandbox-client-id`.
    pub hubspot_client_id: String,
    /// OAuth client secret; also the webhook v3 signing secret. Default `sandbox-client-secret`.
    pub hubspot_client_secret: String,
    /// OAuth refresh token HubSpot accepts. Default `sandbox-refresh-token`.
    pub hubspot_refresh_token: String,
    /// Where webhook deliveries go; none when unset.
    pub webhook_url: Option<String>,
    /// Contact properties whose changes (API writes, simulated behaviour) are delivered as
    /// `contact.propertyChange`, as an app's subscriptions would; form submissions and created
    /// contacts always are. Default none (so leadsync's own write-backs do not echo back).
    pub webhook_properties: Vec<String>,
    /// Webhook delivery attempts in all (HubSpot: 10). Default 10.
    pub webhook_max_attempts: u32,
    /// First wait between webhook attempts, doubled each time (HubSpot spreads 10 over 24 h;
    /// the sandbox compresses that). Default 1 s.
    pub webhook_backoff: Duration,
    /// Salesforce API requests per rolling 24 hours of the sandbox clock. Default 100,000.
    pub salesforce_daily_allocation: u64,
    /// Salesforce session lifetime. Default 2 h.
    pub salesforce_session_lifetime: Duration,
    /// Salesforce connected-app consumer key. Default `sandbox-sf-client-id`.
    pub salesforce_client_id: String,
    /// Salesforce consumer secret. Default `sandbox-sf-client-secret`.
    pub salesforce_client_secret: String,
    /// Salesforce refresh token. Default `sandbox-sf-refresh-token`.
    pub salesforce_refresh_token: String,
    /// The clock stands still at `now` and moves only by [`SandboxHandle::advance`]. Default false.
    pub frozen_clock: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            contacts: 500,
            companies: 60,
            months: 6,
            now: DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            latency: Duration::ZERO,
            fault_rate_5xx: 0.0,
            fault_rate_timeout: 0.0,
            timeout_hang: Duration::from_secs(35),
            fault_rate_lost: 0.0,
            rate_limit_burst_every: Duration::ZERO,
            rate_limit_burst_length: Duration::from_secs(2),
            webhook_duplicate_rate: 0.0,
            webhook_reorder_rate: 0.0,
            hubspot_token_lifetime: Duration::from_secs(30 * 60),
            hubspot_burst_per_10s: 100,
            hubspot_burst_window: Duration::from_secs(10),
            hubspot_tier: HubSpotTier::Enterprise,
            hubspot_daily_limit: 250_000,
            hubspot_search_per_second: 5,
            hubspot_portal_id: 42,
            hubspot_private_app_token: "pat-sandbox".into(),
            hubspot_client_id: "sandbox-client-id".into(),
            hubspot_client_secret: "sandbox-client-secret".into(),
            hubspot_refresh_token: "sandbox-refresh-token".into(),
            webhook_url: None,
            webhook_properties: Vec::new(),
            webhook_max_attempts: 10,
            webhook_backoff: Duration::from_secs(1),
            salesforce_daily_allocation: 100_000,
            salesforce_session_lifetime: Duration::from_secs(2 * 3600),
            salesforce_client_id: "sandbox-sf-client-id".into(),
            salesforce_client_secret: "sandbox-sf-client-secret".into(),
            salesforce_refresh_token: "sandbox-sf-refresh-token".into(),
            frozen_clock: false,
        }
    }
}

/// A HubSpot subscription tier, as far as the APIs it serves differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubSpotTier {
    /// Free or Starter: CRM, forms, owners; no event-level behaviour APIs.
    Starter,
    /// Professional: the same APIs as Starter here.
    Professional,
    /// Enterprise: also the event analytics (page views) and email events APIs.
    Enterprise,
}

impl HubSpotTier {
    /// Whether the portal serves the event analytics and email events APIs.
    pub fn has_event_apis(self) -> bool {
        self == Self::Enterprise
    }

    /// `starter`, `professional`, `enterprise`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starter => "starter",
            Self::Professional => "professional",
            Self::Enterprise => "enterprise",
        }
    }
}

impl std::str::FromStr for HubSpotTier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_lowercase().as_str() {
            "starter" | "free" => Ok(Self::Starter),
            "professional" => Ok(Self::Professional),
            "enterprise" => Ok(Self::Enterprise),
            other => Err(format!(
                "unknown HubSpot tier {other:?}: expected starter, professional or enterprise"
            )),
        }
    }
}

/// The sandbox's clock: `config.now` at start, advancing with real time.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    at_start_ms: i64,
    /// Stands still (tests that need the same `now` twice); moved only by `advance`.
    frozen: bool,
    /// Moved by hand.
    offset_ms: std::sync::atomic::AtomicI64,
}

impl Clock {
    pub(crate) fn now_ms(&self) -> i64 {
        let moved = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        if self.frozen {
            self.at_start_ms + moved
        } else {
            self.at_start_ms + moved + self.start.elapsed().as_millis() as i64
        }
    }
}

/// What one request is answered with when a fault is injected.
enum Fault {
    Server,
    Timeout,
}

/// The kinds of injected faults, as counted by [`SandboxHandle::faults`] and `GET /_sandbox/faults`.
pub mod fault_kind {
    /// A request answered 5xx without being served.
    pub const SERVER: &str = "5xx";
    /// A request that hung for `timeout_hang`, then got 504.
    pub const TIMEOUT: &str = "timeout";
    /// A write applied, then answered 5xx (its answer lost).
    pub const LOST: &str = "applied_answer_lost";
    /// A call refused inside a 429 burst.
    pub const BURST: &str = "rate_limit_burst";
    /// A call refused because its access token had expired.
    pub const EXPIRED: &str = "token_expired";
    /// A webhook delivery sent twice.
    pub const DUPLICATED: &str = "webhook_duplicated";
    /// A webhook delivery reversed and held back.
    pub const REORDERED: &str = "webhook_reordered";
}

/// Arrivals kept between two resets of the counts: a long-running sandbox's log stays bounded.
const MAX_ARRIVALS: usize = 100_000;

/// State shared by both fakes and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) clock: Clock,
    pub(crate) portal: Arc<Portal>,
    pub(crate) hubspot: Mutex<hubspot::HubSpotState>,
    pub(crate) salesforce: Mutex<salesforce::SalesforceState>,
    pub(crate) deliveries: Arc<Mutex<Vec<WebhookDelivery>>>,
    pub(crate) salesforce_url: String,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Every call's arrival, in order: milliseconds since the sandbox started, and its name (the
    /// first [`MAX_ARRIVALS`] since the last reset).
    arrivals: Mutex<Vec<(u64, String)>>,
    requests: AtomicU64,
    /// Draws of the lost-answer and webhook faults (a stream apart from `requests`).
    draws: AtomicU64,
    /// Calls answered 429, by system (budget refusals and injected bursts alike).
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    started: Instant,
    http: reqwest::Client,
}

impl Shared {
    /// Counts one call of `system` to `endpoint`.
    pub(crate) fn count(&self, system: &str, endpoint: &str) {
        let name = format!("{system} {endpoint}");
        let mut arrivals = lock(&self.arrivals);
        if arrivals.len() < MAX_ARRIVALS {
            arrivals.push((self.started.elapsed().as_millis() as u64, name.clone()));
        }
        drop(arrivals);
        *lock(&self.calls).entry(name).or_default() += 1;
    }

    fn count_429(&self, system: &'static str, r: &Response) {
        if r.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
            *lock(&self.rate_limited).entry(system).or_default() += 1;
        }
    }

    /// Counts one injected fault of `kind` (see [`fault_kind`]).
    pub(crate) fn count_fault(&self, kind: &'static str) {
        *lock(&self.faults).entry(kind).or_default() += 1;
    }

    fn fault(&self) -> Option<Fault> {
        let (a, b) = (self.config.fault_rate_5xx, self.config.fault_rate_timeout);
        if a <= 0.0 && b <= 0.0 {
            return None;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let r = unit(portal::mix(self.config.seed, 0xFA17, n));
        if r < a {
            self.count_fault(fault_kind::SERVER);
            Some(Fault::Server)
        } else if r < a + b {
            self.count_fault(fault_kind::TIMEOUT);
            Some(Fault::Timeout)
        } else {
            None
        }
    }

    /// A seeded draw in [0, 1) from the second stream: true with probability `rate`.
    fn draw(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        unit(portal::mix(self.config.seed, 0x1057, n)) < rate
    }

    /// Whether this applied write loses its answer (counted when it does).
    pub(crate) fn lose_answer(&self) -> bool {
        let lost = self.draw(self.config.fault_rate_lost);
        if lost {
            self.count_fault(fault_kind::LOST);
        }
        lost
    }

    /// Whether now is inside a 429 burst (counted when it is).
    pub(crate) fn in_rate_limit_burst(&self) -> bool {
        let every = self.config.rate_limit_burst_every;
        if every.is_zero() {
            return false;
        }
        let into = self.started.elapsed().as_millis() % every.as_millis().max(1);
        let inside = into < self.config.rate_limit_burst_length.as_millis();
        if inside {
            self.count_fault(fault_kind::BURST);
        }
        inside
    }

    /// Latency and injected faults, before an API request is served.
    async fn delay_or_fault(&self, system: &str) -> Option<Response> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        match self.fault()? {
            Fault::Server => Some(if system == "hubspot" {
                json(
                    502,
                    &serde_json::json!({"status": "error", "message": "Bad Gateway (sandbox fault)",
                        "correlationId": correlation_id(self.clock.now_ms()), "category": "BAD_GATEWAY"}),
                )
            } else {
                json(
                    503,
                    &serde_json::json!([{"message": "Service unavailable (sandbox fault)", "errorCode": "SERVER_UNAVAILABLE"}]),
                )
            }),
            Fault::Timeout => {
                tokio::time::sleep(self.config.timeout_hang).await;
                Some(json(
                    504,
                    &serde_json::json!({"status": "error", "message": "Gateway timeout"}),
                ))
            }
        }
    }

    /// Hands webhook events to a delivery task (100 events a request at most, as HubSpot).
    pub(crate) fn deliver(&self, events: Vec<webhooks::Event>) {
        let Some(url) = self.config.webhook_url.clone() else {
            return;
        };
        if events.is_empty() {
            return;
        }
        for chunk in events.chunks(100) {
            let mut chunk = chunk.to_vec();
            let mut hold = Duration::ZERO;
            if self.draw(self.config.webhook_reorder_rate) {
                self.count_fault(fault_kind::REORDERED);
                chunk.reverse();
                let n = self.draws.fetch_add(1, Ordering::Relaxed);
                hold = Duration::from_millis(100 + portal::mix(self.config.seed, 0x4E0, n) % 900);
            }
            let copies = if self.draw(self.config.webhook_duplicate_rate) {
                self.count_fault(fault_kind::DUPLICATED);
                2
            } else {
                1
            };
            for _ in 0..copies {
                let job = webhooks::Job {
                    http: self.http.clone(),
                    url: url.clone(),
                    secret: SecretString::from(self.config.hubspot_client_secret.clone()),
                    max_attempts: self.config.webhook_max_attempts.max(1),
                    backoff: self.config.webhook_backoff,
                    log: self.deliveries.clone(),
                };
                let chunk = chunk.clone();
                tokio::spawn(async move {
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                    job.run(chunk).await
                });
            }
        }
    }
}

/// Starts sandboxes.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Generates the portal, binds a loopback listener for HubSpot and one for Salesforce (port
    /// 0), and serves both until [`SandboxHandle::shutdown`].
    pub async fn start(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
        let hs_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sf_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hs_addr = hs_listener.local_addr()?;
        let sf_addr = sf_listener.local_addr()?;
        let portal = Arc::new(Portal::new(
            config.seed,
            config.contacts,
            config.companies,
            config.months,
            config.now,
        ));
        let salesforce_url = format!("http://{sf_addr}");
        let hubspot = hubspot::HubSpotState::new(portal.clone(), &config);
        let salesforce = salesforce::SalesforceState::new(&portal, &config);
        let shared = Arc::new(Shared {
            clock: Clock {
                start: Instant::now(),
                at_start_ms: config.now.timestamp_millis(),
                frozen: config.frozen_clock,
                offset_ms: std::sync::atomic::AtomicI64::new(0),
            },
            portal,
            hubspot: Mutex::new(hubspot),
            salesforce: Mutex::new(salesforce),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            salesforce_url,
            calls: Mutex::new(BTreeMap::new()),
            arrivals: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            draws: AtomicU64::new(0),
            rate_limited: Mutex::default(),
            faults: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(std::io::Error::other)?,
            config,
        });
        let (stop, stopped) = watch::channel(false);
        let hs_app = Router::new().fallback(serve_hubspot).with_state(shared.clone());
        let sf_app = Router::new().fallback(serve_salesforce).with_state(shared.clone());
        let mut tasks = Vec::new();
        for (listener, app) in [(hs_listener, hs_app), (sf_listener, sf_app)] {
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        Ok(SandboxHandle {
            shared,
            hubspot_addr: hs_addr,
            salesforce_addr: sf_addr,
            stop,
            tasks,
        })
    }
}

/// The sandbox's own control path, on both listeners (no vendor API lives under it).
pub const SETTINGS_PATH: &str = "/_sandbox/settings";

/// `GET` it for the faults injected so far, by kind (see [`fault_kind`]).
pub const FAULTS_PATH: &str = "/_sandbox/faults";

async fn serve_hubspot(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == SETTINGS_PATH {
        return settings(&shared, &method, &body);
    }
    if uri.path() == FAULTS_PATH {
        return json(200, &serde_json::json!(*lock(&shared.faults)));
    }
    if uri.path() == ACTIVITIES_PATH {
        return activity::serve(&shared, false, &method, &body);
    }
    let r = hubspot::serve(&shared, &method, &uri, &headers, &body).await;
    shared.count_429("hubspot", &r);
    r
}

async fn serve_salesforce(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == SETTINGS_PATH {
        return settings(&shared, &method, &body);
    }
    if uri.path() == FAULTS_PATH {
        return json(200, &serde_json::json!(*lock(&shared.faults)));
    }
    if uri.path() == ACTIVITIES_PATH {
        return activity::serve(&shared, true, &method, &body);
    }
    let r = salesforce::serve(&shared, &method, &uri, &headers, &body).await;
    shared.count_429("salesforce", &r);
    r
}

/// `GET|POST /_sandbox/settings`: reads, or changes while running, the budgets and the tier a
/// test needs tight (a client outside this crate, such as an SDK test, cannot build a
/// [`SandboxConfig`]): `hubspot_burst_per_10s`, `hubspot_burst_window_ms`, `hubspot_tier`,
/// `salesforce_daily_allocation`. An unknown key or a bad value is refused with 400, naming it.
fn settings(shared: &Shared, method: &Method, body: &Bytes) -> Response {
    let refuse = |message: String| json(400, &serde_json::json!({"status": "error", "message": message}));
    if method == Method::POST {
        let changes: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return refuse(format!("{SETTINGS_PATH}: the body must be a JSON object: {e}")),
        };
        let mut hubspot = lock(&shared.hubspot);
        let mut salesforce = lock(&shared.salesforce);
        // Checked in full before anything changes, so a refused call changes nothing.
        let mut tier = hubspot.tier;
        let mut burst = hubspot.burst_max;
        let mut window = hubspot.burst_window;
        let mut allocation = salesforce.allocation;
        for (key, value) in &changes {
            let number = || value.as_u64().filter(|n| *n > 0);
            let bad = || format!("{SETTINGS_PATH}: {key} must be a positive integer, not {value}");
            match key.as_str() {
                "hubspot_tier" => match value.as_str().map(str::parse::<HubSpotTier>) {
                    Some(Ok(t)) => tier = t,
                    Some(Err(e)) => return refuse(format!("{SETTINGS_PATH}: hubspot_tier: {e}")),
                    None => return refuse(format!("{SETTINGS_PATH}: hubspot_tier must be a string")),
                },
                "hubspot_burst_per_10s" => match number().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => burst = n,
                    None => return refuse(bad()),
                },
                "hubspot_burst_window_ms" => match number() {
                    Some(n) => window = Duration::from_millis(n),
                    None => return refuse(bad()),
                },
                "salesforce_daily_allocation" => match number() {
                    Some(n) => allocation = n,
                    None => return refuse(bad()),
                },
                other => {
                    return refuse(format!(
                        "{SETTINGS_PATH}: unknown setting {other:?}; known: hubspot_tier, \
                         hubspot_burst_per_10s, hubspot_burst_window_ms, salesforce_daily_allocation"
                    ));
                }
            }
        }
        hubspot.tier = tier;
        hubspot.burst_max = burst;
        hubspot.burst_window = window;
        salesforce.allocation = allocation;
    } else if method != Method::GET {
        return json(405, &serde_json::json!({"status": "error", "message": "GET or POST"}));
    }
    let hubspot = lock(&shared.hubspot);
    let salesforce = lock(&shared.salesforce);
    json(
        200,
        &serde_json::json!({
            "hubspot_tier": hubspot.tier.as_str(),
            "hubspot_burst_per_10s": hubspot.burst_max,
            "hubspot_burst_window_ms": hubspot.burst_window.as_millis() as u64,
            "salesforce_daily_allocation": salesforce.allocation,
        }),
    )
}

/// A running sandbox.
#[derive(Debug)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    hubspot_addr: SocketAddr,
    salesforce_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SandboxHandle {
    /// HubSpot's API base URL (`http://127.0.0.1:port`).
    pub fn hubspot_base_url(&self) -> String {
        format!("http://{}", self.hubspot_addr)
    }

    /// HubSpot's OAuth token endpoint.
    pub fn hubspot_token_url(&self) -> String {
        format!("http://{}/oauth/v1/token", self.hubspot_addr)
    }

    /// Salesforce's login URL (the token endpoint is `{login}/services/oauth2/token`); the token
    /// answer's `instance_url` is the same address.
    pub fn salesforce_login_url(&self) -> String {
        format!("http://{}", self.salesforce_addr)
    }

    /// The configuration it runs with (credentials included).
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// The synthetic portal it serves.
    pub fn portal(&self) -> &Portal {
        &self.shared.portal
    }

    /// The sandbox's current time.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.shared.clock.now_ms()).unwrap_or_default()
    }

    /// Calls received, by `"<system> <endpoint>"` (`"hubspot contacts.batch_read"`,
    /// `"salesforce composite"`), refused ones included.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.calls).clone()
    }

    /// Calls received by one system (`"hubspot"`, `"salesforce"`), token requests excluded.
    pub fn api_calls(&self, system: &str) -> u64 {
        lock(&self.shared.calls)
            .iter()
            .filter(|(k, _)| k.starts_with(system) && !k.ends_with("oauth.token"))
            .map(|(_, v)| v)
            .sum()
    }

    /// Faults injected so far, by kind (see [`fault_kind`]); kinds never injected are absent.
    pub fn faults(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.faults)
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Calls of one system (`"hubspot"`, `"salesforce"`) answered 429: over its budget, or in
    /// an injected burst. Several replicas keeping one portal's budget leave it at 0.
    pub fn rate_limited(&self, system: &str) -> u64 {
        lock(&self.shared.rate_limited).get(system).copied().unwrap_or(0)
    }

    /// Forgets the call counts and their arrivals (budgets are not reset).
    pub fn reset_calls(&self) {
        lock(&self.shared.calls).clear();
        lock(&self.shared.arrivals).clear();
    }

    /// The calls received since the last [`reset_calls`](Self::reset_calls), in arrival order:
    /// milliseconds since the sandbox started and `"<system> <endpoint>"` (token requests
    /// included), so that a bench can tell calls made one after another from calls overlapped.
    pub fn arrivals(&self) -> Vec<(u64, String)> {
        lock(&self.shared.arrivals).clone()
    }

    /// A HubSpot contact's current properties, by id.
    pub fn hubspot_contact(&self, id: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.shared.hubspot).contact_properties(id)
    }

    /// Moves the sandbox's clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.shared
            .clock
            .offset_ms
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Writes HubSpot accepted, per contact id (one per contact per update call).
    pub fn hubspot_writes(&self) -> BTreeMap<String, u32> {
        lock(&self.shared.hubspot).writes()
    }

    /// Writes HubSpot accepted that changed no value, per contact id (a write sent twice).
    pub fn hubspot_repeated_writes(&self) -> BTreeMap<String, u32> {
        lock(&self.shared.hubspot).repeated_writes()
    }

    /// Every Salesforce record of `object` (`Account`, `Contact`, …), as the API shows them.
    pub fn salesforce_records(&self, object: &str) -> Vec<Value> {
        lock(&self.shared.salesforce).records(object)
    }

    /// A rep edits a Salesforce record (`fields` as JSON values), as in Salesforce's UI: the
    /// record is then last modified by its owner. False when no such record exists.
    pub fn edit_salesforce_record(&self, object: &str, id: &str, fields: &serde_json::Map<String, Value>) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.salesforce).edit(object, id, fields, now)
    }

    /// Marks an opportunity won or lost, as a salesperson would.
    pub fn close_opportunity(&self, id: &str, won: bool) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.salesforce).close_opportunity(id, won, None, now)
    }

    /// Marks an opportunity won or lost at its final `amount`, as a salesperson would.
    pub fn close_opportunity_at(&self, id: &str, won: bool, amount: f64) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.salesforce).close_opportunity(id, won, Some(amount), now)
    }

    /// A person edits a HubSpot contact (email or id): the values are set and
    /// `lastmodifieddate` moves, as in HubSpot's UI; no webhook. False when it is unknown.
    pub fn set_contact_properties(&self, contact: &str, values: &[(&str, String)]) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.hubspot).set_by_person(contact, values, now)
    }

    /// The HubSpot contacts a client has written `property` on, with its value, in id order.
    pub fn contacts_written(&self, property: &str) -> Vec<(String, String)> {
        lock(&self.shared.hubspot).written(property)
    }

    /// A person submits `form` (its name or GUID) as the contact with this email or id: the
    /// submission is recorded, the conversion properties and `lastmodifieddate` move, and a signed
    /// webhook delivery is sent. An unknown email creates the contact (`contact.creation`).
    /// Returns the contact id.
    pub fn submit_form(&self, contact: &str, form: &str) -> Option<String> {
        let now = self.shared.clock.now_ms();
        let (id, events) = {
            let mut hubspot = lock(&self.shared.hubspot);
            let id = hubspot.submit_form(contact, form, now);
            (id, hubspot.take_events())
        };
        self.shared.deliver(events);
        id
    }

    /// The contact (email or id) behaves `n` times: page views, visits, email opens and clicks
    /// move, with `lastmodifieddate`.
    pub fn touch(&self, contact: &str, n: u32) -> bool {
        let now = self.shared.clock.now_ms();
        let (moved, events) = {
            let mut hubspot = lock(&self.shared.hubspot);
            (hubspot.touch(contact, n, now), hubspot.take_events())
        };
        self.shared.deliver(events);
        moved
    }

    /// The contact (email or id) views one page of the portal's site (`/pricing`, a path of
    /// [`portal::PAGES`](crate::sandbox::portal::PAGES)): one page view and one visit on its counters, listed with its URL by
    /// the event analytics API (Enterprise). False for an unknown contact or page.
    pub fn visit(&self, contact: &str, page: &str) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.hubspot).visit(contact, page, now)
    }

    /// Deletes (archives) a HubSpot contact (email or id), as a person would; no webhook is
    /// sent (a portal without the deletion subscription). False when it is unknown.
    pub fn delete_contact(&self, contact: &str) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.hubspot).archive(contact, now)
    }

    /// Merges HubSpot contact `merged` into `primary` (emails or ids), as a person would: the
    /// merged one is archived, the primary lists it in `hs_merged_object_ids`; no webhook is sent.
    pub fn merge_contacts(&self, primary: &str, merged: &str) -> bool {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.hubspot).merge(primary, merged, now)
    }

    /// A rep logs a call, email or meeting on a HubSpot contact (id or email), as in HubSpot's
    /// UI: an engagement associated with the contact, whose `notes_last_contacted` and
    /// `lastmodifieddate` move. Returns the engagement type (`calls`, `emails`, `meetings`) and
    /// id, or why not (an unknown contact, a rep who is not an owner of the portal).
    pub fn log_hubspot_activity(&self, contact: &str, activity: &SalesActivity) -> Result<(String, String), String> {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.hubspot)
            .log_activity(contact, activity, now)
            .map(|(object, id)| (object.to_string(), id))
            .map_err(|(_, why)| why)
    }

    /// A rep logs a call, email or meeting in Salesforce on a Contact, Account or Opportunity
    /// (by id): a Task (call, email) or an Event (meeting), made now, dated `activity.at`.
    /// Returns the object (`Task`, `Event`) and id, or Salesforce's refusal (an unknown record
    /// is `NOT_FOUND`; an owner who is not a User, `INVALID_CROSS_REFERENCE_KEY`).
    pub fn log_salesforce_activity(&self, on: &str, activity: &SalesActivity) -> Result<(String, String), Value> {
        let now = self.shared.clock.now_ms();
        lock(&self.shared.salesforce)
            .log_activity(on, activity, now)
            .map(|(object, id)| (object.to_string(), id))
    }

    /// Webhook deliveries so far, with their attempts.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.shared.deliveries).clone()
    }

    /// Stops both listeners and waits for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A 64-bit draw as a number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Locks, recovering from a poisoned lock (a panicking handler must not stop the sandbox).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A JSON answer.
pub(crate) fn json(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A HubSpot-like correlation id, unique per call.
pub(crate) fn correlation_id(now_ms: i64) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = portal::mix(now_ms as u64, n, 0xC0);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h as u32,
        (h >> 32) as u16,
        (h >> 48) & 0xfff,
        n & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// Decodes a form-encoded body or query string.
pub(crate) fn form_pairs(s: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}
