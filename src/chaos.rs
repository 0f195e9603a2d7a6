//! `leadsync bench --chaos`: a fault-free reference run and a chaos run of the real daemon
//! (`leadsync setup`, `backfill` and `run` as subprocesses) against two sandboxes with the same
//! seed, then a comparison of what each left in HubSpot, in Salesforce and in the inbox.
//!
//! The chaos run's sandbox answers 5xx, hangs then 504s, applies writes and loses their answer,
//! refuses every call in 429 bursts, expires access tokens every minute, and duplicates and
//! reorders its webhook deliveries; the daemon is `kill -9`'d after a seeded number of sandbox
//! API calls, `kills` times, and restarted. Form submissions (signed deliveries) go on meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::sandbox::portal::CONTACT_ID_BASE;
use crate::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use crate::store::Store;

/// Which store both runs use.
#[derive(Debug, Clone)]
pub enum ChaosStore {
    /// A fresh SQLite file per run, in a temporary folder.
    Sqlite,
    /// A fresh database per run on the PostgreSQL server of this admin URL.
    Postgres(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The `leadsync` binary the daemon runs as.
    pub binary: PathBuf,
    /// Folder holding `mappings/`.
    pub root: PathBuf,
    /// Contacts in the portal.
    pub contacts: u32,
    /// `kill -9`s of the chaos run's daemon.
    pub kills: u32,
    /// Seed of the portal, of the faults and of the kill moments.
    pub seed: u64,
    /// Form submissions (webhook traffic) during the daemon phase.
    pub forms: u32,
    /// The store of both runs.
    pub store: ChaosStore,
    /// How long each run may take to settle before it counts as a failure.
    pub settle_deadline: Duration,
}

/// What one run left behind, keyed so that two runs compare (Salesforce ids differ by run).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Leadsync-written HubSpot properties per contact id, Salesforce ids replaced by keys.
    pub hubspot: BTreeMap<String, BTreeMap<String, String>>,
    /// Salesforce records by object and key: how many records carry that key.
    pub salesforce: BTreeMap<String, BTreeMap<String, u32>>,
    /// Events of acknowledged deliveries that are not in the inbox, processed.
    pub lost_events: Vec<String>,
    /// Events acknowledged (distinct dedupe keys).
    pub acknowledged_events: usize,
}

/// The result of a chaos bench.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// Faults the chaos sandbox injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// The kills made, as the sandbox API call count each was made at.
    pub kills: Vec<u64>,
    /// Daemon starts in the chaos run (backfill and run processes).
    pub starts: u32,
    /// The reference run's outcome.
    pub reference: Outcome,
    /// The chaos run's outcome.
    pub chaos: Outcome,
    /// Every difference, one line each; empty when the runs agree.
    pub differences: Vec<String>,
    /// Wall time of each run.
    pub took: (Duration, Duration),
}

impl ChaosReport {
    /// Salesforce records the chaos run holds more of than the reference (the seeded portal
    /// has a few records that share a name in both).
    pub fn duplicates(&self) -> Vec<String> {
        duplicates(&self.reference, &self.chaos)
    }

    /// The printed report.
    pub fn render(&self) -> String {
        let mut out = String::from("faults injected (chaos run):\n");
        for (k, n) in &self.faults {
            out.push_str(&format!("  {k:<22} {n}\n"));
        }
        out.push_str(&format!(
            "  {:<22} {} (at sandbox API calls {:?}), {} daemon starts\n",
            "kill -9",
            self.kills.len(),
            self.kills,
            self.starts
        ));
        out.push_str("comparison (reference / chaos):\n");
        out.push_str(&format!(
            "  HubSpot contacts compared   {} / {}\n",
            self.reference.hubspot.len(),
            self.chaos.hubspot.len()
        ));
        for object in ["Account", "Contact", "Opportunity", "OpportunityContactRole"] {
            let n = |o: &Outcome| o.salesforce.get(object).map(|m| m.values().sum::<u32>()).unwrap_or(0);
            out.push_str(&format!(
                "  Salesforce {object:<24} {} / {}\n",
                n(&self.reference),
                n(&self.chaos)
            ));
        }
        out.push_str(&format!(
            "  acknowledged webhook events {} / {}, lost {} / {}\n",
            self.reference.acknowledged_events,
            self.chaos.acknowledged_events,
            self.reference.lost_events.len(),
            self.chaos.lost_events.len()
        ));
        out.push_str(&format!("  duplicates in Salesforce    {}\n", self.duplicates().len()));
        out.push_str(&format!(
            "  wall time                   {:.1} s / {:.1} s\n",
            self.took.0.as_secs_f64(),
            self.took.1.as_secs_f64()
        ));
        if self.differences.is_empty() {
            out.push_str("result: the chaos run equals the fault-free run\n");
        } else {
            out.push_str(&format!("result: {} difference(s)\n", self.differences.len()));
            for d in self.differences.iter().take(50) {
                out.push_str(&format!("  {d}\n"));
            }
        }
        out
    }
}

/// The chaos sandbox's faults, at the rates of issue 13.
pub fn chaos_faults(config: SandboxConfig) -> SandboxConfig {
    SandboxConfig {
        fault_rate_5xx: 0.20,
        fault_rate_timeout: 0.05,
        // A gateway's timeout: the call hangs, then 504 (shorter than the client's own 30 s,
        // so the suite runs in minutes).
        timeout_hang: Duration::from_secs(2),
        fault_rate_lost: 0.02,
        rate_limit_burst_every: Duration::from_secs(20),
        rate_limit_burst_length: Duration::from_secs(2),
        hubspot_token_lifetime: Duration::from_secs(60),
        salesforce_session_lifetime: Duration::from_secs(60),
        webhook_duplicate_rate: 0.3,
        webhook_reorder_rate: 0.3,
        ..config
    }
}

fn base_config(opts: &ChaosOptions, webhook_port: u16) -> SandboxConfig {
    SandboxConfig {
        seed: opts.seed,
        contacts: opts.contacts,
        companies: (opts.contacts / 8).max(10),
        now: chrono::Utc::now(),
        hubspot_burst_per_10s: 2_000,
        webhook_url: Some(format!("http://127.0.0.1:{webhook_port}/webhooks/hubspot")),
        webhook_backoff: Duration::from_millis(500),
        ..SandboxConfig::default()
    }
}

/// Runs the reference and the chaos run and compares them.
pub async fn run(opts: &ChaosOptions) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let reference = one_run(opts, false, 0).await.context("reference run")?;
    let took_reference = started.elapsed();
    let started = Instant::now();
    // The kills fall at random points of the work the reference needed (its API calls), so
    // they land inside the work, not in the idle daemon after it.
    let chaos = one_run(opts, true, reference.calls).await.context("chaos run")?;
    let took_chaos = started.elapsed();
    // Every evaluation of both runs happened between the reference's start and now.
    let gap = took_reference + took_chaos;
    let mut differences = compare(&reference.outcome, &chaos.outcome, gap);
    if chaos.kills.len() < opts.kills as usize {
        differences.push(format!(
            "only {} of {} kills made before the chaos run settled",
            chaos.kills.len(),
            opts.kills
        ));
    }
    for d in duplicates(&reference.outcome, &chaos.outcome) {
        differences.push(format!("duplicate in the chaos run: {d}"));
    }
    for e in &chaos.outcome.lost_events {
        differences.push(format!("acknowledged and lost (chaos): {e}"));
    }
    for e in &reference.outcome.lost_events {
        differences.push(format!("acknowledged and lost (reference): {e}"));
    }
    Ok(ChaosReport {
        faults: chaos.faults,
        kills: chaos.kills,
        starts: chaos.starts,
        reference: reference.outcome,
        chaos: chaos.outcome,
        differences,
        took: (took_reference, took_chaos),
    })
}

struct RunResult {
    outcome: Outcome,
    /// Sandbox API calls the run made in all.
    calls: u64,
    faults: BTreeMap<String, u64>,
    kills: Vec<u64>,
    starts: u32,
}

/// A free loopback port (bound, then released for the daemon).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A run's store: its URL, and on PostgreSQL the database the bench created for it.
struct RunStore {
    url: String,
    database: Option<(String, String)>,
}

async fn admin_pool(admin: &str) -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .context("PostgreSQL admin URL")
}

/// The name of the database a run gets on PostgreSQL.
pub fn database_name(seed: u64, run: &str) -> String {
    format!("leadsync_chaos_{}_{run}_{seed}", std::process::id())
}

async fn store_url(opts: &ChaosOptions, dir: &std::path::Path, name: &str) -> anyhow::Result<RunStore> {
    match &opts.store {
        ChaosStore::Sqlite => Ok(RunStore {
            url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            database: None,
        }),
        ChaosStore::Postgres(admin) => {
            let pool = admin_pool(admin).await?;
            let db = database_name(opts.seed, name);
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&pool)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {db}")).execute(&pool).await?;
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            Ok(RunStore {
                url: format!("{base}/{db}"),
                database: Some((admin.clone(), db)),
            })
        }
    }
}

/// Drops the run's PostgreSQL database (its daemon's connections cut first).
async fn drop_store(store: &RunStore) -> anyhow::Result<()> {
    if let Some((admin, db)) = &store.database {
        let pool = admin_pool(admin).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&pool)
            .await
            .with_context(|| format!("dropping {db}"))?;
        pool.close().await;
    }
    Ok(())
}

/// The schedules of both runs' daemons: the same jobs, often, so that both runs end after the
/// same set of jobs has run on the settled work (see [`JOBS`]); the nightly rescore never, so
/// a run that crosses 02:30 UTC does not rescore where the other does not.
const SCHEDULES: [(&str, &str); 4] = [
    ("LEADSYNC__SCHEDULE__SYNC", "*/15 * * * * *"),
    ("LEADSYNC__SCHEDULE__SLA", "*/15 * * * * *"),
    ("LEADSYNC__SCHEDULE__OPPORTUNITIES", "*/15 * * * * *"),
    ("LEADSYNC__SCHEDULE__RESCORE", "0 0 0 1 1 * 2099"),
];

/// The jobs each run must have done, started after its work settled, before it is compared.
const JOBS: [&str; 3] = ["sync", "sla", "opportunities"];

fn command(
    opts: &ChaosOptions,
    sb: &SandboxHandle,
    store: &str,
    port: u16,
    log: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<tokio::process::Command> {
    let c = sb.config();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("daemon log {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(&opts.binary);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("LEADSYNC__RULES__PATH", opts.root.join("mappings/lifecycle.toml"))
        .env(
            "LEADSYNC__SALESFORCE__MAPPING_PATH",
            opts.root.join("mappings/salesforce.toml"),
        )
        .env("LEADSYNC__HUBSPOT__API_BASE_URL", sb.hubspot_base_url())
        .env("LEADSYNC__HUBSPOT__TOKEN_URL", sb.hubspot_token_url())
        .env("LEADSYNC__HUBSPOT__CLIENT_ID", &c.hubspot_client_id)
        .env("LEADSYNC__HUBSPOT__CLIENT_SECRET", &c.hubspot_client_secret)
        .env("LEADSYNC__HUBSPOT__REFRESH_TOKEN", &c.hubspot_refresh_token)
        .env("LEADSYNC__HUBSPOT__BURST_PER_10S", "1500")
        .env("LEADSYNC__SALESFORCE__LOGIN_URL", sb.salesforce_login_url())
        .env("LEADSYNC__SALESFORCE__CLIENT_ID", &c.salesforce_client_id)
        .env("LEADSYNC__SALESFORCE__CLIENT_SECRET", &c.salesforce_client_secret)
        .env("LEADSYNC__SALESFORCE__REFRESH_TOKEN", &c.salesforce_refresh_token)
        .env("LEADSYNC__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("LEADSYNC__STORE__URL", store)
        .env(crate::logging::FORMAT_ENV, "json")
        .envs(SCHEDULES)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    Ok(cmd)
}

fn total_calls(sb: &SandboxHandle) -> u64 {
    sb.calls().values().sum()
}

/// The phases of the daemon's life, in order.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Setup,
    Backfill,
    Run,
}

async fn one_run(opts: &ChaosOptions, chaos: bool, kill_span: u64) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let name = if chaos { "chaos" } else { "reference" };
    let store = store_url(opts, dir.path(), name).await?;
    let result = drive(opts, chaos, kill_span, dir.path(), &store.url).await;
    // The database goes whether the run succeeded or not.
    let dropped = drop_store(&store).await;
    let result = result?;
    dropped?;
    Ok(result)
}

/// Why the watch of one process ended.
enum Watch {
    Exited(std::process::ExitStatus),
    KillPoint,
    Settled,
    Deadline,
}

async fn drive(
    opts: &ChaosOptions,
    chaos: bool,
    kill_span: u64,
    dir: &std::path::Path,
    store: &str,
) -> anyhow::Result<RunResult> {
    let port = free_port()?;
    let mut config = base_config(opts, port);
    if chaos {
        config = chaos_faults(config);
    }
    let sb = std::sync::Arc::new(Sandbox::start(config).await?);
    let log = dir.join("daemon.log");
    // Kill points: seeded API call counts, at random over the reference run's calls.
    let mut kill_points: Vec<u64> = (0..if chaos { opts.kills } else { 0 })
        .map(|k| 1 + mix(opts.seed, 0xC1A0, u64::from(k)) % kill_span.max(1))
        .collect();
    kill_points.sort_unstable_by(|a, b| b.cmp(a));
    let mut kills = Vec::new();
    let mut starts = 0u32;
    let mut phase = Phase::Setup;
    let mut forms: Option<tokio::task::JoinHandle<()>> = None;
    let deadline = Instant::now() + opts.settle_deadline;
    // When the work was last seen settled (the inbox, outbox and deliveries done), if it still is.
    let mut quiet_since: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let args: &[&str] = match phase {
            Phase::Setup => &["setup", "--apply"],
            Phase::Backfill => &["backfill"],
            Phase::Run => &["run", "--init-store"],
        };
        let mut child = command(opts, &sb, store, port, &log, args)?
            .spawn()
            .with_context(|| format!("starting {}", opts.binary.display()))?;
        starts += 1;
        if phase == Phase::Run && forms.is_none() {
            forms = Some(tokio::spawn(submit_forms(
                sb.clone(),
                opts.contacts,
                opts.forms,
                opts.seed,
            )));
        }
        // A kill point already passed (two close together) still waits for one call of this process.
        let kill_at = kill_points.last().map(|p| (*p).max(total_calls(&sb) + 1));
        // Runs until it exits, its kill point comes, or (the daemon) everything has settled and
        // every job has run once on the settled work.
        let mut checked = Instant::now();
        let watch = loop {
            if let Some(status) = child.try_wait()? {
                break Watch::Exited(status);
            }
            if kill_at.is_some_and(|n| total_calls(&sb) >= n) {
                break Watch::KillPoint;
            }
            if phase == Phase::Run
                && kill_points.is_empty()
                && checked.elapsed() > Duration::from_secs(1)
                && forms.as_ref().is_some_and(|f| f.is_finished())
            {
                checked = Instant::now();
                if settled(&sb, store).await {
                    let since = *quiet_since.get_or_insert_with(chrono::Utc::now);
                    if jobs_done_since(&log, since) {
                        break Watch::Settled;
                    }
                } else {
                    quiet_since = None;
                }
            }
            if Instant::now() > deadline {
                break Watch::Deadline;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match watch {
            Watch::Exited(status) if status.success() => {
                phase = match phase {
                    Phase::Setup => Phase::Backfill,
                    Phase::Backfill | Phase::Run => Phase::Run,
                };
            }
            // A failed command (a fault it gave up on) is started again, as an operator would.
            Watch::Exited(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Watch::KillPoint => {
                let at = total_calls(&sb);
                child.start_kill()?; // SIGKILL
                let _ = child.wait().await;
                kill_points.pop();
                kills.push(at);
            }
            Watch::Settled => {
                child.start_kill()?;
                let _ = child.wait().await;
                break;
            }
            Watch::Deadline => {
                child.start_kill()?;
                let _ = child.wait().await;
                bail!(
                    "did not settle within {:?}: {}",
                    opts.settle_deadline,
                    state_of(&sb, store, &log, kills.len(), kill_points.len(), quiet_since).await
                );
            }
        }
    }
    let outcome = collect(&sb, store).await?;
    let faults = sb.faults();
    let calls = total_calls(&sb);
    if let Ok(sb) = std::sync::Arc::try_unwrap(sb) {
        sb.shutdown().await;
    }
    Ok(RunResult {
        outcome,
        calls,
        faults,
        kills,
        starts,
    })
}

/// Whether the daemon's log shows each of [`JOBS`] done in a run that started at or after `since`.
fn jobs_done_since(log: &std::path::Path, since: chrono::DateTime<chrono::Utc>) -> bool {
    let Ok(text) = std::fs::read_to_string(log) else {
        return false;
    };
    let done = jobs_done(&text, since);
    JOBS.iter().all(|j| done.contains(*j))
}

/// The jobs the JSON log lines in `text` show done in a run started at or after `since`.
pub fn jobs_done(text: &str, since: chrono::DateTime<chrono::Utc>) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "job done")
        .filter_map(|v| {
            let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
            let ms = v["fields"]["ms"].as_i64()?;
            let started = at.with_timezone(&chrono::Utc) - chrono::Duration::milliseconds(ms);
            (started >= since).then(|| v["fields"]["job"].as_str().map(str::to_string))?
        })
        .collect()
}

/// What a run that did not settle was doing: kills, queues, deliveries, the daemon's last warnings.
async fn state_of(
    sb: &SandboxHandle,
    store: &str,
    log: &std::path::Path,
    kills: usize,
    kills_left: usize,
    quiet_since: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let unfinished = sb.webhook_deliveries().iter().filter(|d| !d.finished).count();
    let (inbox, outbox) = match Store::open_existing(store).await {
        Ok(s) => {
            let i = s.inbox_depth().await.map(|(n, _)| n);
            let o = s.outbox_counts().await;
            s.close().await;
            (format!("{i:?}"), format!("{o:?}"))
        }
        Err(e) => (format!("store: {e}"), String::new()),
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let warnings: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        .map(|v| format!("{} {} {}", v["level"], v["fields"]["message"], v["fields"]["error"]))
        .collect();
    let last: Vec<&String> = warnings.iter().rev().take(10).collect();
    format!(
        "{kills} kills made, {kills_left} to come; {unfinished} webhook deliveries unfinished; inbox pending {inbox}; \
         outbox {outbox}; settled since {quiet_since:?}, jobs done since then {:?}; API calls {}; \
         the daemon's last warnings (newest first): {last:?}",
        quiet_since.map(|t| jobs_done(&text, t)),
        total_calls(sb),
    )
}

/// The form submissions of both runs: the same contacts in the same order, 100 ms apart, each
/// contact once (a contact submitting the same form twice is an open finding: see the README).
async fn submit_forms(sb: std::sync::Arc<SandboxHandle>, contacts: u32, forms: u32, seed: u64) {
    let n = u64::from(contacts.max(1));
    let first = mix(seed, 0xF0, 0) % n;
    // 7919 is prime: stepping by it visits every contact once before any twice.
    for f in 0..forms.min(contacts) {
        let i = (first + u64::from(f) * 7919) % n;
        let id = (CONTACT_ID_BASE + i).to_string();
        let form = if f % 3 == 0 { "Request a demo" } else { "Contact us" };
        let _ = sb.submit_form(&id, form);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every delivery finished, the inbox processed and the outbox empty of work.
async fn settled(sb: &SandboxHandle, store: &str) -> bool {
    if !sb.webhook_deliveries().iter().all(|d| d.finished) {
        return false;
    }
    let Ok(s) = Store::open_existing(store).await else {
        return false;
    };
    let depth = s.inbox_depth().await.map(|(n, _)| n);
    let counts = s.outbox_counts().await;
    s.close().await;
    let busy = match counts {
        Ok(c) => c
            .iter()
            .any(|(_, state, n)| *n > 0 && (state == "pending" || state == "sending")),
        Err(_) => true,
    };
    matches!(depth, Ok(0)) && !busy
}

/// The properties leadsync writes, as the comparison reads them.
fn written(name: &str) -> bool {
    name.starts_with("leadsync_") || name == "lifecyclestage" || name == "hs_lead_status"
}

fn key_of(object: &str, r: &Value, contacts: &BTreeMap<String, String>, opps: &BTreeMap<String, String>) -> String {
    let s = |f: &str| r[f].as_str().unwrap_or("").to_string();
    match object {
        "Account" => s("Name"),
        "Contact" => s("Email").to_lowercase(),
        "Opportunity" => format!("{}|{}", s("LeadSync_Key__c"), s("Name")),
        "OpportunityContactRole" => format!(
            "{}|{}|{}",
            contacts.get(&s("ContactId")).cloned().unwrap_or_default(),
            opps.get(&s("OpportunityId")).cloned().unwrap_or_default(),
            s("Role")
        ),
        _ => s("Id"),
    }
}

async fn collect(sb: &SandboxHandle, store: &str) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let contacts: BTreeMap<String, String> = sb
        .salesforce_records("Contact")
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap_or("").to_string(),
                key_of("Contact", r, &ids, &ids),
            )
        })
        .collect();
    let opps: BTreeMap<String, String> = sb
        .salesforce_records("Opportunity")
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap_or("").to_string(),
                key_of("Opportunity", r, &ids, &ids),
            )
        })
        .collect();
    for object in ["Account", "Contact", "Opportunity", "OpportunityContactRole"] {
        let by_key = out.salesforce.entry(object.into()).or_default();
        for r in sb.salesforce_records(object) {
            let key = key_of(object, &r, &contacts, &opps);
            ids.insert(r["Id"].as_str().unwrap_or("").to_string(), format!("{object}:{key}"));
            *by_key.entry(key).or_default() += 1;
        }
    }
    for i in 0..sb.portal().contacts {
        let id = (CONTACT_ID_BASE + u64::from(i)).to_string();
        let Some(props) = sb.hubspot_contact(&id) else { continue };
        let kept: BTreeMap<String, String> = props
            .into_iter()
            .filter(|(k, _)| written(k))
            .map(|(k, v)| {
                let v = if k.starts_with("leadsync_sf_") {
                    ids.get(&v).cloned().unwrap_or(v)
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        out.hubspot.insert(id, kept);
    }
    // No acknowledged event lost: each event of each delivery answered 2xx is in the inbox,
    // processed.
    let pool = {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(store)
            .await?
    };
    let rows = sqlx::query("SELECT dedupe_key, processed_at FROM inbox")
        .fetch_all(&pool)
        .await?;
    pool.close().await;
    let inbox: BTreeMap<String, bool> = rows
        .iter()
        .map(|r| {
            let key: String = sqlx::Row::get(r, 0);
            let done: Option<i64> = sqlx::Row::get(r, 1);
            (key, done.is_some())
        })
        .collect();
    let mut acknowledged = std::collections::BTreeSet::new();
    for d in sb.webhook_deliveries().iter().filter(|d| d.delivered) {
        for e in &d.events {
            let parsed: crate::server::intake::HubSpotEvent = serde_json::from_value(serde_json::to_value(e)?)?;
            acknowledged.insert(crate::server::intake::dedupe_key(&parsed));
        }
    }
    out.acknowledged_events = acknowledged.len();
    out.lost_events = acknowledged
        .into_iter()
        .filter(|k| inbox.get(k) != Some(&true))
        .collect();
    Ok(out)
}

fn duplicates(reference: &Outcome, chaos: &Outcome) -> Vec<String> {
    chaos
        .salesforce
        .iter()
        .flat_map(|(object, keys)| {
            keys.iter()
                .filter(move |(k, n)| {
                    let want = reference
                        .salesforce
                        .get(object)
                        .and_then(|m| m.get(*k))
                        .copied()
                        .unwrap_or(0);
                    **n > want.max(1)
                })
                .map(move |(k, n)| format!("{object} {k:?} ×{n}"))
        })
        .collect()
}

/// Whether two values of a property agree, allowing for what the moment of evaluation moves:
/// a due time set from `now` (within `gap`, the span in which both runs evaluated), and a decayed
/// score (the shipped rules' shortest half-life is 7 days; one day is assumed, so a score moves
/// at most `ln 2 × gap / 1 day` of itself, plus the 0.01 it is rounded to). Every other property,
/// and the presence of each, must be equal.
pub fn agree(property: &str, reference: Option<&str>, chaos: Option<&str>, gap: Duration) -> bool {
    let (Some(a), Some(b)) = (reference, chaos) else {
        return reference == chaos;
    };
    if a == b {
        return true;
    }
    if property.ends_with("_due") {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        if let (Some(x), Some(y)) = (t(a), t(b)) {
            return (y - x).abs().to_std().is_ok_and(|d| d <= gap);
        }
    }
    if property.ends_with("_score") {
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            let allowed = x.abs() * std::f64::consts::LN_2 * gap.as_secs_f64() / 86_400.0 + 0.0100001;
            return (x - y).abs() <= allowed;
        }
    }
    false
}

/// The HubSpot property holding the Salesforce owner a lead was given.
const OWNER: &str = "leadsync_sf_owner_id";

/// Every difference between the reference and the chaos outcome, one line each.
pub fn compare(reference: &Outcome, chaos: &Outcome, gap: Duration) -> Vec<String> {
    let mut out = Vec::new();
    // Round robin gives the next lead to the next rep: which lead gets which rep follows the
    // order promotions happen in (the order deliveries arrive in), so owners are compared as
    // how many leads each rep got; every other property contact by contact.
    let owners = |o: &Outcome| {
        let mut n: BTreeMap<String, u32> = BTreeMap::new();
        for props in o.hubspot.values() {
            if let Some(owner) = props.get(OWNER) {
                *n.entry(owner.clone()).or_default() += 1;
            }
        }
        n
    };
    let (want_owners, got_owners) = (owners(reference), owners(chaos));
    if want_owners != got_owners {
        out.push(format!(
            "leads per Salesforce owner: reference {want_owners:?}, chaos {got_owners:?}"
        ));
    }
    for (id, want) in &reference.hubspot {
        let got = chaos.hubspot.get(id).cloned().unwrap_or_default();
        for k in want.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
            if k.as_str() == OWNER && want.contains_key(OWNER) == got.contains_key(OWNER) {
                continue;
            }
            if !agree(k, want.get(k).map(String::as_str), got.get(k).map(String::as_str), gap) {
                out.push(format!(
                    "HubSpot contact {id} {k}: reference {:?}, chaos {:?}",
                    want.get(k),
                    got.get(k)
                ));
            }
        }
    }
    for (object, want) in &reference.salesforce {
        let got = chaos.salesforce.get(object).cloned().unwrap_or_default();
        for k in want.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
            if want.get(k) != got.get(k) {
                out.push(format!(
                    "Salesforce {object} {k:?}: reference {}, chaos {}",
                    want.get(k).copied().unwrap_or(0),
                    got.get(k).copied().unwrap_or(0)
                ));
            }
        }
    }
    if reference.acknowledged_events != chaos.acknowledged_events {
        out.push(format!(
            "acknowledged webhook events: reference {}, chaos {}",
            reference.acknowledged_events, chaos.acknowledged_events
        ));
    }
    out
}

/// A seeded 64-bit draw (splitmix64 of the three inputs).
fn mix(seed: u64, stream: u64, n: u64) -> u64 {
    let mut z = seed ^ stream.rotate_left(32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn only_jobs_started_after_the_work_settled_count_as_done_on_it() {
        let log = [
            // Started 11:59:58, before the work settled at 12:00:00: it may have missed some.
            r#"{"timestamp":"2026-12-01T12:00:01.000000Z","level":"INFO","fields":{"message":"job done","job":"sync","ms":3000}}"#,
            r#"{"timestamp":"2026-12-01T12:00:16.000000Z","level":"INFO","fields":{"message":"job done","job":"sla","ms":500}}"#,
            r#"{"timestamp":"2026-12-01T12:00:16.000000Z","level":"WARN","fields":{"message":"job paused","job":"opportunities"}}"#,
            "not json",
        ]
        .join("\n");
        let done = jobs_done(&log, at("2026-12-01T12:00:00Z"));
        assert_eq!(done.into_iter().collect::<Vec<_>>(), vec!["sla".to_string()]);
        assert_eq!(jobs_done(&log, at("2026-12-01T11:59:00Z")).len(), 2);
    }
}
