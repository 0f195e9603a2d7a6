//! Stores for tests: a fresh SQLite file and a fresh PostgreSQL database each time.

/// A test runs on both stores: `on_both_stores!(name, …)` makes, for every
/// `async fn name(backend: Backend)`, the tests `name::sqlite` and `name::postgres`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::support::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(crate::support::Backend::Postgres).await
            }
        }
    )*};
}

use std::sync::atomic::{AtomicU32, Ordering};

use leadsync::store::Store;

/// Where the tests find PostgreSQL (`LEADSYNC_TEST_POSTGRES`, default the local `test` database).
pub fn postgres_admin_url() -> String {
    std::env::var("LEADSYNC_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new SQLite store in a temporary folder (kept alive by the returned guard).
pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

/// A new, empty PostgreSQL database, and its URL.
pub async fn postgres_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = postgres_admin_url();
    let name = format!("leadsync_t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let admin_store = sql_pool(&admin).await;
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        drop_dead_runs_databases(&admin_store).await;
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin_store)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin_store)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    format!("{base}/{name}")
}

/// The databases of test runs that have ended: each run names its databases after its process id
/// and leaves them behind (a test's store outlives its assertions, for the failure's post-mortem),
/// so the first test of the next run drops those whose process is gone.
async fn drop_dead_runs_databases(admin: &sqlx::AnyPool) {
    use sqlx::Row;
    // Housekeeping: a failure here is printed, never a test's failure.
    let names: Vec<String> = match sqlx::query("SELECT datname::text FROM pg_database WHERE datname LIKE 'leadsync_t%'")
        .fetch_all(admin)
        .await
    {
        Ok(rows) => rows.iter().map(|row| row.get::<String, _>(0)).collect(),
        Err(e) => {
            eprintln!("could not list earlier test runs' databases: {e}");
            return;
        }
    };
    for name in names {
        let pid = name
            .strip_prefix("leadsync_t")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Another run may sweep the same database at the same time: its error is not ours.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(admin)
                .await;
        }
    }
}

/// One connection to the database at `url`, beside the store, for SQL a test runs itself.
pub async fn sql_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!("the database at {url} is needed by the store tests (PostgreSQL: set LEADSYNC_TEST_POSTGRES): {e}")
        })
}

/// Which store an end-to-end test runs on (`e2e::on_both_stores!` runs each test on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A fresh, empty store of this kind: its URL, and the folder a SQLite file lives in.
    pub async fn fresh(self) -> (String, Option<tempfile::TempDir>) {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
                (url, Some(dir))
            }
            Backend::Postgres => (postgres_url().await, None),
        }
    }
}

/// The same empty state on both backends, named for assertion messages.
pub async fn stores() -> Vec<(&'static str, Store)> {
    let (sqlite, dir) = sqlite().await;
    // The folder must outlive the test; leak it (one small file per test).
    std::mem::forget(dir);
    let pg = Store::connect(&postgres_url().await).await.unwrap();
    vec![("sqlite", sqlite), ("postgres", pg)]
}

use std::sync::Arc;

use leadsync::sandbox::webhooks::signed_post;
use leadsync::server::{AppState, Application, ServerLimits};
use secrecy::SecretString;
use tokio::sync::Notify;

/// The HubSpot app's client secret the test deliveries are signed with.
pub const SECRET: &str = "test-client-secret";

/// The webhook server on a random port with its own store.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub store: Store,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts the server; `public_base_url` as when a proxy sits in front.
    pub async fn start(public_base_url: Option<&str>, max_body: usize) -> TestServer {
        let (store, dir) = sqlite().await;
        Self::start_with(store, dir, public_base_url, max_body).await
    }

    pub async fn start_with(
        store: Store,
        dir: tempfile::TempDir,
        public_base_url: Option<&str>,
        max_body: usize,
    ) -> TestServer {
        Self::start_limited(store, dir, public_base_url, max_body, ServerLimits::default()).await
    }

    /// The same, with other connection limits than the defaults.
    pub async fn start_limited(
        store: Store,
        dir: tempfile::TempDir,
        public_base_url: Option<&str>,
        max_body: usize,
        limits: ServerLimits,
    ) -> TestServer {
        Self::start_full(store, dir, public_base_url, max_body, limits, Default::default()).await
    }

    /// The same, with the status page's access and budgets.
    pub async fn start_status(
        store: Store,
        dir: tempfile::TempDir,
        status: leadsync::server::status::StatusSources,
    ) -> TestServer {
        Self::start_full(store, dir, None, 1 << 20, ServerLimits::default(), status).await
    }

    async fn start_full(
        store: Store,
        dir: tempfile::TempDir,
        public_base_url: Option<&str>,
        max_body: usize,
        limits: ServerLimits,
        status: leadsync::server::status::StatusSources,
    ) -> TestServer {
        let wake = Arc::new(Notify::new());
        let state = AppState {
            store: store.clone(),
            client_secret: Some(SecretString::from(SECRET)),
            public_base_url: public_base_url.map(str::to_string),
            wake,
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            extra_metrics: Arc::new(String::new),
            status,
        };
        let app = Application::build(state, "127.0.0.1:0", max_body)
            .await
            .unwrap()
            .with_limits(limits);
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            store,
            http: reqwest::Client::new(),
            _dir: dir,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts a Webhooks API delivery signed v3 for `signed_uri` at `timestamp_ms`.
    pub async fn post_signed_at(&self, body: &str, signed_uri: &str, timestamp_ms: i64) -> reqwest::StatusCode {
        let secret = SecretString::from(SECRET);
        let url = self.url("/webhooks/hubspot");
        signed_post(&self.http, &url, signed_uri, &secret, timestamp_ms, body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Posts a delivery signed v3 now, for the URL it is actually sent to.
    pub async fn post_signed_webhook(&self, body: &str) -> reqwest::StatusCode {
        let uri = self.url("/webhooks/hubspot");
        self.post_signed_at(body, &uri, chrono::Utc::now().timestamp_millis())
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Posts `body` to `url` as HubSpot delivers a webhook: signed v3 with the app's `secret` for
/// `url`, now (`sandbox::webhooks::signed_post`, the sandbox's own deliveries).
pub async fn post_signed(http: &reqwest::Client, url: &str, secret: &str, body: &str) -> reqwest::Response {
    let secret = SecretString::from(secret.to_string());
    let now = chrono::Utc::now().timestamp_millis();
    signed_post(http, url, url, &secret, now, body.to_string())
        .send()
        .await
        .unwrap()
}

/// A Webhooks API event as HubSpot sends it.
pub fn hubspot_event(kind: &str, object: u64, property: Option<(&str, &str)>, occurred_at: i64) -> serde_json::Value {
    let mut e = serde_json::json!({
        "eventId": 100 + object,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 1160452,
        "occurredAt": occurred_at,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object,
        "changeSource": "FORM",
    });
    if let Some((name, value)) = property {
        e["propertyName"] = name.into();
        e["propertyValue"] = value.into();
    }
    e
}

use chrono::{DateTime, Utc};
use leadsync::demo::{Stack, StackOptions};
use leadsync::sandbox::SandboxConfig;

/// The daemon against the sandbox, in one process: the sandbox's fake HubSpot and Salesforce,
/// leadsync's store, webhook server (random port) and syncer. Logs only with `TEST_LOG`.
pub struct TestApp {
    pub stack: Stack,
    /// The daemon runs whole ([`TestApp::running`]): its workers take the inbox and the outbox.
    running: bool,
    /// Daemons started again over the same sandbox and store ([`TestApp::restart_daemon`]).
    restarted: Vec<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

/// A cron expression that never fires during a test (midnight on January 1st).
pub const NEVER: &str = "0 0 0 1 1 *";

impl TestApp {
    /// A portal of `contacts` on a frozen sandbox clock, a fresh SQLite store.
    pub async fn start(contacts: u32) -> TestApp {
        Self::start_with(contacts, None).await
    }

    /// The same, on the store at `store_url` (PostgreSQL, or a file that outlives the app).
    pub async fn start_with(contacts: u32, store_url: Option<String>) -> TestApp {
        let app = Self::start_unset(contacts, store_url).await;
        leadsync::daemon::ensure_setup(&app.stack.syncer, true).await.unwrap();
        app
    }

    /// The same, without creating the HubSpot properties leadsync writes (`setup --apply`).
    pub async fn start_unset(contacts: u32, store_url: Option<String>) -> TestApp {
        Self::start_on(Self::sandbox_config(contacts), store_url).await
    }

    /// The sandbox configuration `start` uses for a portal of `contacts`, for tests that change
    /// one of its settings and pass it to [`TestApp::start_configured`].
    pub fn sandbox_config(contacts: u32) -> SandboxConfig {
        SandboxConfig {
            contacts,
            companies: (contacts / 8).max(10),
            frozen_clock: true,
            hubspot_burst_per_10s: 2_000,
            ..SandboxConfig::default()
        }
    }

    /// A TestApp over a sandbox configured by the test, with leadsync's properties created.
    pub async fn start_configured(sandbox: SandboxConfig, store_url: Option<String>) -> TestApp {
        let app = Self::start_on(sandbox, store_url).await;
        leadsync::daemon::ensure_setup(&app.stack.syncer, true).await.unwrap();
        app
    }

    async fn start_on(sandbox: SandboxConfig, store_url: Option<String>) -> TestApp {
        init_logs();
        let stack = Stack::start(Self::options(sandbox, store_url)).await.unwrap();
        TestApp {
            stack,
            running: false,
            restarted: Vec::new(),
        }
    }

    fn options(sandbox: SandboxConfig, store_url: Option<String>) -> StackOptions {
        StackOptions {
            sandbox,
            store_url,
            burst_per_10s: 1_500,
            search_per_second: 4,
            root: repo_root(),
            schedule: None,
            sla: None,
            event_analytics: false,
        }
    }

    /// The daemon running whole, as `leadsync run` runs it (`Daemon::run`: the properties
    /// check, the webhook server, the schedules, the inbox and outbox workers), over a portal
    /// of `contacts` on the store at `store_url`. Its schedules never fire during a test, so
    /// that a test runs a cycle itself when it wants one (the same function the schedule calls).
    pub async fn running(contacts: u32, store_url: Option<String>) -> TestApp {
        Self::running_configured(Self::sandbox_config(contacts), store_url).await
    }

    /// The same over a sandbox configured by the test.
    pub async fn running_configured(sandbox: SandboxConfig, store_url: Option<String>) -> TestApp {
        Self::running_with(sandbox, store_url, Self::never(), None).await
    }

    /// The same with leadsync's HubSpot budget at `burst_per_10s` calls per 10 s (the tests'
    /// default, 1,500, paces calls too finely to see; production's default is 80).
    pub async fn running_at_budget(sandbox: SandboxConfig, store_url: Option<String>, burst_per_10s: u32) -> TestApp {
        let mut options = Self::options(sandbox, store_url);
        options.schedule = Some(Self::never());
        options.burst_per_10s = burst_per_10s;
        Self::running_on(options).await
    }

    /// Schedules that never fire during a test.
    fn never() -> leadsync::config::ScheduleSettings {
        leadsync::config::ScheduleSettings {
            sync: NEVER.into(),
            rescore: NEVER.into(),
            sla: NEVER.into(),
            opportunities: NEVER.into(),
        }
    }

    /// The same with the test's schedules and, when given, its own sales SLA file: the daemon
    /// loads it as `leadsync run` loads the configured one (`rules.sla_path`).
    pub async fn running_with(
        sandbox: SandboxConfig,
        store_url: Option<String>,
        schedule: leadsync::config::ScheduleSettings,
        sla: Option<std::path::PathBuf>,
    ) -> TestApp {
        let mut options = Self::options(sandbox, store_url);
        options.schedule = Some(schedule);
        options.sla = sla;
        Self::running_on(options).await
    }

    /// The daemon running whole over a portal of `contacts` on the store at `store_url`, its
    /// schedules never firing, reading page views event by event with their URLs
    /// (`hubspot.event_analytics`, served by the sandbox's Enterprise portal).
    pub async fn running_with_page_views(contacts: u32, store_url: Option<String>) -> TestApp {
        let mut options = Self::options(Self::sandbox_config(contacts), store_url);
        options.schedule = Some(Self::never());
        options.event_analytics = true;
        Self::running_on(options).await
    }

    async fn running_on(options: StackOptions) -> TestApp {
        init_logs();
        let mut stack = Stack::build(options).await.unwrap();
        leadsync::daemon::ensure_setup(&stack.syncer, true).await.unwrap();
        stack.run_daemon();
        TestApp {
            stack,
            running: true,
            restarted: Vec::new(),
        }
    }

    /// Stops the running daemon as SIGTERM stops `leadsync run`, then starts a new one over
    /// the same configuration, sandbox and store, on the same address (what a restart does):
    /// fresh clients, a fresh syncer, the schedules and workers from the start. Returns the
    /// new daemon's syncer.
    pub async fn restart_daemon(&mut self) -> leadsync::sync::Syncer {
        self.stack.stop_daemon().await.unwrap();
        for (stop, running) in self.restarted.drain(..) {
            let _ = stop.send(true);
            running.await.unwrap().unwrap();
        }
        let syncer = self.restarted_syncer().await;
        let listener = tokio::net::TcpListener::bind(self.stack.addr).await.unwrap();
        let daemon = leadsync::daemon::Daemon::on(&self.stack.loaded, syncer.clone(), listener);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        self.restarted.push((stop, tokio::spawn(daemon.run(stopped))));
        syncer
    }

    /// Stops the daemons (work in flight finishes), then the sandbox.
    pub async fn shutdown(self) {
        for (stop, running) in self.restarted {
            let _ = stop.send(true);
            running.await.unwrap().unwrap();
        }
        self.stack.shutdown().await.unwrap();
    }

    /// The moment every evaluation of a test is made at: just after the sandbox's frozen clock,
    /// so windows ending at `now` include what the sandbox stamped.
    pub fn now(&self) -> DateTime<Utc> {
        self.stack.sandbox.now() + chrono::Duration::seconds(1)
    }

    /// A syncer with fresh clients over the same store (what a restart builds).
    pub async fn restarted_syncer(&self) -> leadsync::sync::Syncer {
        leadsync::daemon::syncer(&self.stack.loaded).await.unwrap()
    }

    /// Posts a delivery to the server signed v3 with the sandbox's client secret.
    pub async fn post_signed_webhook(&self, body: &str) -> reqwest::StatusCode {
        let url = format!("http://{}/webhooks/hubspot", self.stack.addr);
        let secret = &self.stack.sandbox.config().hubspot_client_secret;
        post_signed(&reqwest::Client::new(), &url, secret, body).await.status()
    }

    /// Runs the inbox until it is empty, then the outbox: with the daemon running, waits until
    /// its workers have done both (`Stack::settle`); else drains them here.
    pub async fn run_inbox_until_idle(&self) {
        if self.running {
            self.settle().await;
            return;
        }
        // The webhook server alone: the inbox pass and the outbox drain the workers would run.
        let s = &self.stack.syncer;
        while s.drain_inbox(self.now()).await.unwrap().1 > 0 {}
        s.drain_outbox(leadsync::hubspot::limiter::Priority::Background, self.now())
            .await
            .unwrap();
    }

    /// Waits until the running daemon's workers have carried out everything (60 s at most).
    pub async fn settle(&self) -> leadsync::demo::Settled {
        self.stack.settle(std::time::Duration::from_secs(60)).await.unwrap()
    }
}

impl TestApp {
    /// `leadsync run --init-store` as a process, pointed at this app's sandbox (both CRMs), with
    /// the shipped rules and mapping, a fresh SQLite store in `dir`, listening on `port`.
    pub fn run_command(&self, dir: &std::path::Path, port: u16) -> tokio::process::Command {
        let store = format!("sqlite://{}", dir.join("run.db").display());
        self.run_command_on(dir, port, &store)
    }

    /// The same on the store at `store_url`.
    pub fn run_command_on(&self, dir: &std::path::Path, port: u16, store_url: &str) -> tokio::process::Command {
        let sb = &self.stack.sandbox;
        let c = sb.config();
        let root = repo_root();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadsync"));
        cmd.args(["run", "--init-store"])
            .current_dir(dir)
            .env("LEADSYNC__RULES__PATH", root.join("mappings/lifecycle.toml"))
            .env(
                "LEADSYNC__SALESFORCE__MAPPING_PATH",
                root.join("mappings/salesforce.toml"),
            )
            .env("LEADSYNC__HUBSPOT__API_BASE_URL", sb.hubspot_base_url())
            .env("LEADSYNC__HUBSPOT__TOKEN_URL", sb.hubspot_token_url())
            .env("LEADSYNC__HUBSPOT__CLIENT_ID", &c.hubspot_client_id)
            .env("LEADSYNC__HUBSPOT__CLIENT_SECRET", &c.hubspot_client_secret)
            .env("LEADSYNC__HUBSPOT__REFRESH_TOKEN", &c.hubspot_refresh_token)
            .env("LEADSYNC__SALESFORCE__LOGIN_URL", sb.salesforce_login_url())
            .env("LEADSYNC__SALESFORCE__CLIENT_ID", &c.salesforce_client_id)
            .env("LEADSYNC__SALESFORCE__CLIENT_SECRET", &c.salesforce_client_secret)
            .env("LEADSYNC__SALESFORCE__REFRESH_TOKEN", &c.salesforce_refresh_token)
            .env("LEADSYNC__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("LEADSYNC__STORE__URL", store_url)
            .kill_on_drop(true);
        cmd
    }
}

pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A TCP proxy in front of PostgreSQL, so a test can make the database go away: `cut` closes
/// every connection and refuses new ones.
pub struct TcpProxy {
    pub port: u16,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Forwards a random local port to `target` (`host:port`).
    pub async fn start(target: String) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let inner = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                inner.lock().unwrap().push(pipe);
            }
        });
        tasks.lock().unwrap().push(accept);
        TcpProxy { port, tasks }
    }

    /// The database goes away: open connections drop, new ones are refused.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// A fresh PostgreSQL database reached through a proxy the test can cut: (store URL, proxy).
pub async fn postgres_behind_proxy() -> (String, TcpProxy) {
    let url = postgres_url().await;
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
    let proxy = TcpProxy::start(target).await;
    let mut through = parsed.clone();
    through.set_host(Some("127.0.0.1")).unwrap();
    through.set_port(Some(proxy.port)).unwrap();
    (through.to_string(), proxy)
}

/// Every row of every table of the store at `url` whose text (any column, read as text)
/// contains `needle`, ignoring case: `table.column: value` lines, for assertion messages. With
/// `contact`, rows of tables that have a `contact_id` are searched only when they are that
/// contact's (a name other contacts share); tables without one are searched whole.
pub async fn grep_store(url: &str, needle: &str, contact: Option<&str>) -> Vec<String> {
    let pool = sql_pool(url).await;
    let postgres = url.starts_with("postgres");
    let tables: Vec<String> = if postgres {
        sqlx::query("SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public'")
    } else {
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| sqlx::Row::get::<String, _>(r, 0))
    .collect();
    let mut hits = Vec::new();
    for table in tables {
        let columns: Vec<String> = if postgres {
            sqlx::query(
                "SELECT column_name::TEXT FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
            )
            .bind(&table)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, 0))
            .collect()
        } else {
            sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, 0))
                .collect()
        };
        let only = contact.filter(|_| columns.iter().any(|c| c == "contact_id"));
        for column in &columns {
            let mut sql = format!(
                "SELECT CAST(\"{column}\" AS TEXT) FROM {table} WHERE LOWER(CAST(\"{column}\" AS TEXT)) LIKE $1"
            );
            if only.is_some() {
                sql.push_str(" AND contact_id = $2");
            }
            let mut q = sqlx::query(&sql).bind(format!("%{}%", needle.to_lowercase()));
            if let Some(c) = only {
                q = q.bind(c.to_string());
            }
            let rows = q.fetch_all(&pool).await.unwrap();
            for r in rows {
                hits.push(format!("{table}.{column}: {}", sqlx::Row::get::<String, _>(&r, 0)));
            }
        }
    }
    pool.close().await;
    hits
}

/// The simulated month the month and browser tests run: 200 contacts from Monday 2026-10-05
/// 08:00 UTC, budgets the month's steps never wait on, on the store at `store_url`.
pub fn month_stack_options(store_url: Option<String>) -> leadsync::demo::StackOptions {
    leadsync::demo::StackOptions {
        sandbox: leadsync::sandbox::SandboxConfig {
            contacts: 200,
            companies: 30,
            now: month_start(),
            frozen_clock: true,
            hubspot_burst_per_10s: 5_000,
            hubspot_search_per_second: 1_000,
            ..leadsync::sandbox::SandboxConfig::default()
        },
        store_url,
        burst_per_10s: 4_000,
        search_per_second: 1_000,
        root: repo_root(),
        ..leadsync::demo::StackOptions::default()
    }
}

/// The month starts on a Monday at 08:00 UTC.
pub fn month_start() -> chrono::DateTime<chrono::Utc> {
    "2026-10-05T08:00:00Z".parse().unwrap()
}

/// Thirty days in 12-hour steps, the desk's seed 7.
pub fn month_options() -> leadsync::demo::month::MonthOptions {
    leadsync::demo::month::MonthOptions {
        days: 30,
        step: chrono::Duration::hours(12),
        seed: 7,
    }
}

use leadsync::hubspot::client::{HubSpotClient, HubSpotClientConfig};

/// The HubSpot client's configuration for a fake HubSpot at `base_url` (wiremock): budgets no
/// test reaches, UTC, no timeout, the default retries.
pub fn hubspot_config(base_url: &str) -> HubSpotClientConfig {
    HubSpotClientConfig {
        base_url: base_url.parse().unwrap(),
        burst: 10_000,
        interval: std::time::Duration::from_secs(10),
        search_per_second: 1_000,
        daily_reserve: 0,
        daily_allocation: None,
        time_zone: chrono_tz::Tz::UTC,
        timeout: None,
        retry: leadsync::hubspot::retry::RetryPolicy::default(),
    }
}

/// A HubSpot client of portal 42 with a private-app token, on [`hubspot_config`].
pub fn hubspot_client(base_url: &str) -> HubSpotClient {
    let auth = leadsync::hubspot::auth::HubSpotAuth::static_token(Some(42), SecretString::from("pat-test"));
    HubSpotClient::new(hubspot_config(base_url), auth).unwrap()
}

/// Answers HubSpot's contact batch update (`POST /crm/v3/objects/contacts/batch/update`) on
/// `server` with each input's id and properties, as HubSpot echoes them.
pub async fn mount_batch_update_echo(server: &wiremock::MockServer) {
    use wiremock::matchers::{method, path};
    wiremock::Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .respond_with(|req: &wiremock::Request| {
            let body: serde_json::Value = req.body_json().unwrap();
            let results: Vec<serde_json::Value> = body["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| serde_json::json!({"id": i["id"], "properties": i["properties"]}))
                .collect();
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"status": "COMPLETE", "results": results}))
        })
        .mount(server)
        .await;
}

/// The stored row of contact `id` (which the test knows is stored).
pub async fn stored_contact(store: &Store, id: &leadsync::lifecycle::HubSpotId) -> leadsync::store::ContactRow {
    store
        .contacts(std::slice::from_ref(id))
        .await
        .unwrap()
        .remove(id)
        .unwrap_or_else(|| panic!("contact {id} is not stored"))
}

/// Posts an OAuth refresh-token grant to `token_url` (the sandbox's HubSpot or Salesforce
/// token endpoint) for the app `client_id` / `client_secret`.
pub async fn refresh_grant(
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    refresh_token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

/// The token HubSpot's endpoint at `token_url` answers the sandbox configuration `c`'s app and
/// refresh token with (its JSON).
pub async fn hubspot_token(token_url: &str, c: &SandboxConfig) -> serde_json::Value {
    refresh_grant(
        token_url,
        &c.hubspot_client_id,
        &c.hubspot_client_secret,
        &c.hubspot_refresh_token,
    )
    .await
    .json()
    .await
    .unwrap()
}

/// Whether `leadsync run` listening on `port` answers `GET /readyz` 200 within 10 s.
pub async fn ready_on(port: u16) -> bool {
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    for _ in 0..200 {
        if http.get(&ready).send().await.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Sends SIGTERM to `child` (`kill -TERM`, as a service manager stops `leadsync run`).
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success(), "kill -TERM {pid}");
}

/// Up to `n` of the stored `rows` that a demo request moves to SQL now: active leads below SQL
/// with a company and a HubSpot owner.
pub fn owned_leads_below_sql(rows: &[leadsync::store::ContactRow], n: usize) -> Vec<&str> {
    use leadsync::lifecycle::{Stage, Status};
    rows.iter()
        .filter(|c| c.state.stage < Some(Stage::Sql) && c.removed.is_none() && c.state.status == Status::Active)
        .filter(|c| {
            ["company", "hubspot_owner_id"]
                .iter()
                .all(|p| c.properties.get(*p).is_some_and(|v| !v.is_empty()))
        })
        .map(|c| c.contact_id.as_str())
        .take(n)
        .collect()
}

/// The store's active leads fit for a demo request to make SQL and promote (a company and a
/// job title), in the store's id order.
pub async fn demo_ready_leads(store: &Store) -> Vec<String> {
    use leadsync::lifecycle::{Stage, Status};
    let rows = store.contact_page(None, 100_000).await.unwrap();
    rows.iter()
        .filter(|r| {
            r.state.stage == Some(Stage::Lead)
                && r.state.status == Status::Active
                && r.properties.contains_key("company")
                && r.properties.contains_key("jobtitle")
        })
        .map(|r| r.contact_id.as_str().to_string())
        .collect()
}

/// The contact and company properties of lead `contact` (Ada L`contact`, `lead-…@domain`) at
/// the company `name` of `domain`, in the US with 50 people (no territory), as a promotion
/// carries them.
pub fn lead_at_company(contact: &str, domain: &str, name: &str) -> (Properties, Properties) {
    let props = [
        ("email", format!("lead-{contact}@{domain}")),
        ("firstname", "Ada".to_string()),
        ("lastname", format!("L{contact}")),
    ];
    let company = [
        ("name", name.to_string()),
        ("domain", domain.to_string()),
        ("country", "US".into()),
        ("numberofemployees", "50".into()),
    ];
    let owned = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    (owned(&props), owned(&company))
}

/// A HubSpot object's properties, by name.
pub type Properties = std::collections::BTreeMap<String, String>;

/// `leadsync run` processes on one store (`replicas::processes`, `portals::`): ports, a load
/// balancer in front, the lease's holder, and what "the work is done, once" means.
pub mod replicas {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use leadsync::sandbox::SandboxHandle;
    use leadsync::server::intake::{HubSpotEvent, dedupe_key};
    use leadsync::store::Store;

    /// A port free on loopback now, for a child process to bind.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A load balancer on loopback: each connection goes to the next replica that accepts it.
    pub async fn balancer(ports: Vec<u16>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (ports, next) = (ports.clone(), next.clone());
                tokio::spawn(async move {
                    for _ in 0..ports.len() {
                        let p = ports[next.fetch_add(1, Ordering::SeqCst) % ports.len()];
                        if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", p)).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// The pid in a replica id (`host-pid-random`).
    pub fn pid_of(holder: &str) -> Option<u32> {
        holder.rsplit('-').nth(1)?.parse().ok()
    }

    /// The process holding `portal`'s lease in `store` and the lease's generation.
    pub async fn holder(store: &Store, portal: &str) -> Option<(u32, i64)> {
        let row = store.lease(portal).await.ok()??;
        Some((pid_of(&row.holder)?, row.generation))
    }

    /// Every delivery finished, the inbox processed and the outbox empty of work.
    pub async fn settled(sb: &SandboxHandle, store: &Store) -> bool {
        if !sb.webhook_deliveries().iter().all(|d| d.finished) {
            return false;
        }
        let depth = store.inbox_depth().await.map(|(n, _)| n).unwrap_or(1);
        let busy = store.outbox_counts().await.map_or(true, |c| {
            c.iter()
                .any(|(_, state, n)| *n > 0 && (state == "pending" || state == "sending"))
        });
        depth == 0 && !busy
    }

    /// The events of `sb`'s deliveries answered 2xx (by dedupe key), and those of them the
    /// store at `url` has not processed.
    pub async fn acknowledged_and_lost(sb: &SandboxHandle, url: &str) -> (usize, Vec<String>) {
        let mut acknowledged = BTreeSet::new();
        for d in sb.webhook_deliveries().iter().filter(|d| d.delivered) {
            for e in &d.events {
                let parsed: HubSpotEvent = serde_json::from_value(serde_json::to_value(e).unwrap()).unwrap();
                acknowledged.insert(dedupe_key(&parsed));
            }
        }
        let pool = super::sql_pool(url).await;
        let rows = sqlx::query("SELECT dedupe_key FROM inbox WHERE processed_at IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        let processed: BTreeSet<String> = rows.iter().map(|r| sqlx::Row::get(r, 0)).collect();
        let lost = acknowledged
            .iter()
            .filter(|k| !processed.contains(*k))
            .cloned()
            .collect();
        (acknowledged.len(), lost)
    }

    /// `sb`'s Salesforce contacts, and those created twice (by email) with the accounts created
    /// twice (by name).
    pub fn created_twice(sb: &SandboxHandle) -> (usize, Vec<String>) {
        let contacts = sb.salesforce_records("Contact");
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for c in &contacts {
            *seen
                .entry(format!("Contact {}", c["Email"].as_str().unwrap_or("").to_lowercase()))
                .or_default() += 1;
        }
        for a in sb.salesforce_records("Account") {
            *seen
                .entry(format!("Account {}", a["Name"].as_str().unwrap_or("")))
                .or_default() += 1;
        }
        let twice = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        (contacts.len(), twice)
    }
}
