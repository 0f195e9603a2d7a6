//! `leadsync bench --chaos`: a fault-free reference run and a chaos run of the real daemon
//! (`leadsync setup`, `backfill` and `run` as subprocesses) against two sandboxes with the same
//! seed, then a comparison of what each left in HubSpot, in Salesforce and in the inbox.
//!
//! The chaos run's sandbox answers 5xx, hangs then 504s, applies writes and loses their answer,
//! refuses every call in 429 bursts, expires access tokens every minute, and duplicates and
//! reorders its webhook deliveries; the daemon is `kill -9`'d after a seeded number of sandbox
//! API calls, `kills` times, and restarted. Form submissions (signed deliveries) go on meanwhile,
//! and once, at a seeded moment of them, the store fails for a few seconds (see [`store_fault`]).
//! Progress lines go to stderr as it runs.

mod store_fault;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::sandbox::portal::CONTACT_ID_BASE;
use crate::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use crate::store::Store;
use store_fault::{Proxy, StoreFault, Tmpfs};
pub use store_fault::{StoreFaultReport, StorePlan, plan as store_plan};

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
    /// Of those, the ones in the inbox, processed.
    pub stored_events: usize,
    /// Delivery attempts the daemon answered 503 (the store could not take them).
    pub refused_deliveries: usize,
    /// Each stored contact's ledger, one `kind id at` line per event in time order: not
    /// compared itself (each sandbox dates its events from its own start), but quoted for a
    /// contact whose properties differ, so that a difference says which events it rests on.
    pub ledgers: BTreeMap<String, Vec<String>>,
}

/// The result of a chaos bench.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// Faults the chaos sandbox injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// The kill points drawn from the seed, in order.
    pub kill_points: Vec<KillPoint>,
    /// The span the first half was drawn over: twice the reference's API calls by the end of
    /// its backfill (the same for the same seed).
    pub kill_span: u64,
    /// The kills made, as the sandbox API call count each was made at.
    pub kills: Vec<u64>,
    /// The store's fault in the chaos run.
    pub store_fault: StoreFaultReport,
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
            "  {:<22} {} (at sandbox API calls {:?}; seeded points {} over {} calls), {} daemon starts\n",
            "kill -9",
            self.kills.len(),
            self.kills,
            show(&self.kill_points),
            self.kill_span,
            self.starts
        ));
        let f = &self.store_fault;
        match &f.skipped {
            Some(why) => out.push_str(&format!("  {:<22} skipped: {why}\n", f.kind)),
            None => out.push_str(&format!(
                "  {:<22} after form {} for {:.1} s: {}; /readyz not ready in {} of {} polls; {} delivery attempts answered 503\n",
                f.kind,
                f.after_form,
                f.held.as_secs_f64(),
                if f.kind == "disk full" {
                    format!("tmpfs filled with {} KiB of ballast, then freed", f.ballast_bytes / 1024)
                } else {
                    format!(
                        "{} connections cut, {} refused, then let through",
                        f.connections_cut, f.connections_refused
                    )
                },
                f.readyz_failed,
                f.readyz_polls,
                self.chaos.refused_deliveries
            )),
        }
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
            "  acknowledged webhook events {} / {}, stored {} / {}, lost {} / {}\n",
            self.reference.acknowledged_events,
            self.chaos.acknowledged_events,
            self.reference.stored_events,
            self.chaos.stored_events,
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
    progress("reference", "fault-free run starts");
    let reference = one_run(opts, None).await.context("reference run")?;
    let took_reference = started.elapsed();
    // The kills fall at seeded points inside the work, not in the idle daemon after it: half
    // over twice the API calls the reference needed by the end of its backfill (the same for
    // the same seed; the chaos run needs more, with its faults), half over the first calls of
    // the daemon's run, one a form, among the webhook deliveries and the store's fault.
    let kill_span = 2 * reference.backfill_calls;
    let plan = ChaosPlan {
        kill_points: kill_points(opts.seed, opts.kills, kill_span, u64::from(opts.forms.max(1))),
        store: store_fault::plan(opts.seed, opts.forms.min(opts.contacts)),
    };
    progress(
        "chaos",
        format!(
            "chaos run starts: kill -9 at sandbox API calls {} (drawn over {kill_span}); the store fails after form {} for {:.1} s",
            show(&plan.kill_points),
            plan.store.after_form,
            plan.store.hold.as_secs_f64()
        ),
    );
    let started = Instant::now();
    let chaos = one_run(opts, Some(&plan)).await.context("chaos run")?;
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
        kill_points: plan.kill_points,
        kill_span,
        kills: chaos.kills,
        store_fault: chaos.store_fault,
        starts: chaos.starts,
        reference: reference.outcome,
        chaos: chaos.outcome,
        differences,
        took: (took_reference, took_chaos),
    })
}

/// What the chaos run does to the daemon, all drawn from the seed.
struct ChaosPlan {
    /// When the daemon is killed, in order.
    kill_points: Vec<KillPoint>,
    store: StorePlan,
}

/// A seeded moment to `kill -9` the daemon, as a sandbox API call count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KillPoint {
    /// Counted from the start of the daemon's run (`leadsync run`), not of the chaos run.
    pub in_run: bool,
    /// The call count.
    pub calls: u64,
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.in_run {
            write!(f, "run+{}", self.calls)
        } else {
            write!(f, "{}", self.calls)
        }
    }
}

fn show(points: &[KillPoint]) -> String {
    let shown: Vec<String> = points.iter().map(ToString::to_string).collect();
    format!("[{}]", shown.join(", "))
}

/// `kills` seeded points: the first half (rounded up) in 1..=span from the chaos run's start,
/// the rest in 1..=run_span from the start of the daemon's run.
fn kill_points(seed: u64, kills: u32, span: u64, run_span: u64) -> Vec<KillPoint> {
    let early = kills.div_ceil(2);
    let mut points: Vec<KillPoint> = (0..kills)
        .map(|k| {
            let in_run = k >= early;
            let span = if in_run { run_span } else { span };
            KillPoint {
                in_run,
                calls: 1 + mix(seed, 0xC1A0, u64::from(k)) % span.max(1),
            }
        })
        .collect();
    points.sort_unstable();
    points
}

/// A progress line on stderr, so that a slow run shows where it is.
fn progress(run: &str, what: impl std::fmt::Display) {
    eprintln!("chaos bench [{run}] {what}");
}

struct RunResult {
    outcome: Outcome,
    /// Sandbox API calls the run made by the end of its backfill.
    backfill_calls: u64,
    store_fault: StoreFaultReport,
    faults: BTreeMap<String, u64>,
    kills: Vec<u64>,
    starts: u32,
}

/// A free loopback port (bound, then released for the daemon).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A run's store: its URL, the one its daemon uses (through the fault), its fault, and on
/// PostgreSQL the database the bench created for it.
struct RunStore {
    url: String,
    daemon_url: String,
    fault: std::sync::Arc<StoreFault>,
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

async fn store_url(opts: &ChaosOptions, dir: &std::path::Path, name: &str, chaos: bool) -> anyhow::Result<RunStore> {
    let fault_free = || std::sync::Arc::new(StoreFault::Skipped("fault-free run".into()));
    match &opts.store {
        ChaosStore::Sqlite => {
            let (folder, fault) = if chaos {
                let disk = dir.join("disk");
                match Tmpfs::mount(&disk) {
                    Ok(fs) => (disk, StoreFault::Disk(fs)),
                    Err(why) => {
                        progress(name, format!("disk-full fault skipped: {why}"));
                        (dir.to_path_buf(), StoreFault::Skipped(why))
                    }
                }
            } else {
                (dir.to_path_buf(), StoreFault::Skipped("fault-free run".into()))
            };
            let url = format!("sqlite://{}", folder.join(format!("{name}.db")).display());
            Ok(RunStore {
                daemon_url: url.clone(),
                url,
                fault: std::sync::Arc::new(fault),
                database: None,
            })
        }
        ChaosStore::Postgres(admin) => {
            let pool = admin_pool(admin).await?;
            let db = database_name(opts.seed, name);
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&pool)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {db}")).execute(&pool).await?;
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            let url = format!("{base}/{db}");
            let database = Some((admin.clone(), db));
            if !chaos {
                return Ok(RunStore {
                    daemon_url: url.clone(),
                    url,
                    fault: fault_free(),
                    database,
                });
            }
            let proxy = Proxy::start(store_fault::postgres_addr(&url).await?).await?;
            Ok(RunStore {
                daemon_url: proxy.url(&url)?,
                url,
                fault: std::sync::Arc::new(StoreFault::Outage(proxy)),
                database,
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
    let mut cmd = sandbox_command(&opts.binary, &opts.root, sb, store, port, log, args)?;
    // A restart after `kill -9` on PostgreSQL waits for the dead process's lease to expire.
    cmd.envs(SCHEDULES).env("LEADSYNC__REPLICAS__LEASE_SECONDS", "3");
    Ok(cmd)
}

/// `binary ARGS` (the `leadsync` binary) against the sandbox `sb`, on `store`, listening on
/// `port`, logging JSON to `log`, the rules and mapping of the project at `root`: the daemon
/// the chaos bench and the replica tests run as a process, to `kill -9`.
pub fn sandbox_command(
    binary: &std::path::Path,
    root: &std::path::Path,
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
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .env_remove("RUST_LOG")
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
        .env("LEADSYNC__HUBSPOT__BURST_PER_10S", "1500")
        .env("LEADSYNC__SALESFORCE__LOGIN_URL", sb.salesforce_login_url())
        .env("LEADSYNC__SALESFORCE__CLIENT_ID", &c.salesforce_client_id)
        .env("LEADSYNC__SALESFORCE__CLIENT_SECRET", &c.salesforce_client_secret)
        .env("LEADSYNC__SALESFORCE__REFRESH_TOKEN", &c.salesforce_refresh_token)
        .env("LEADSYNC__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("LEADSYNC__STORE__URL", store)
        .env(crate::logging::FORMAT_ENV, "json")
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

async fn one_run(opts: &ChaosOptions, chaos: Option<&ChaosPlan>) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let name = if chaos.is_some() { "chaos" } else { "reference" };
    let store = store_url(opts, dir.path(), name, chaos.is_some()).await?;
    let result = drive(opts, name, chaos, dir.path(), &store).await;
    // The database goes whether the run succeeded or not; the daemon's log stays when it failed.
    let dropped = drop_store(&store).await;
    drop(store);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let kept = dir.keep();
            return Err(e.context(format!(
                "the daemon's log is kept at {}",
                kept.join("daemon.log").display()
            )));
        }
    };
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
    name: &str,
    chaos: Option<&ChaosPlan>,
    dir: &std::path::Path,
    store: &RunStore,
) -> anyhow::Result<RunResult> {
    let port = free_port()?;
    let mut config = base_config(opts, port);
    if chaos.is_some() {
        config = chaos_faults(config);
    }
    let sb = std::sync::Arc::new(Sandbox::start(config).await?);
    let log = dir.join("daemon.log");
    // Popped from the end: the next kill point last.
    let mut kill_points: Vec<KillPoint> = chaos.map(|c| c.kill_points.clone()).unwrap_or_default();
    kill_points.reverse();
    let planned = kill_points.len();
    let mut kills = Vec::new();
    let mut starts = 0u32;
    let mut phase = Phase::Setup;
    let mut backfill_calls = 0;
    // The API call count when the daemon's run first started.
    let mut run_base: Option<u64> = None;
    let mut forms: Option<tokio::task::JoinHandle<anyhow::Result<StoreFaultReport>>> = None;
    let deadline = Instant::now() + opts.settle_deadline;
    // When the work was last seen settled (the inbox, outbox and deliveries done), if it still is.
    let mut quiet_since: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let args: &[&str] = match phase {
            Phase::Setup => &["setup", "--apply"],
            Phase::Backfill => &["backfill"],
            Phase::Run => &["run", "--init-store"],
        };
        let mut child = command(opts, &sb, &store.daemon_url, port, &log, args)?
            .spawn()
            .with_context(|| format!("starting {}", opts.binary.display()))?;
        starts += 1;
        progress(
            name,
            format!(
                "{} starts (daemon start {starts}, API calls so far {})",
                args[0],
                total_calls(&sb)
            ),
        );
        if phase == Phase::Run && run_base.is_none() {
            run_base = Some(total_calls(&sb));
        }
        if phase == Phase::Run && forms.is_none() {
            let fault = chaos.map(|c| (store.fault.clone(), c.store));
            forms = Some(tokio::spawn(submit_forms(
                sb.clone(),
                opts.contacts,
                opts.forms,
                opts.seed,
                port,
                fault,
            )));
        }
        // A kill point already passed (two close together) still waits for one call of this process.
        // A point of the daemon's run waits for it.
        let kill_at = kill_points.last().and_then(|p| match (p.in_run, run_base) {
            (false, _) => Some(p.calls),
            (true, Some(base)) => Some(base + p.calls),
            (true, None) => None,
        });
        let kill_at = kill_at.map(|n| n.max(total_calls(&sb) + 1));
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
                if settled(&sb, &store.url).await {
                    let since = match quiet_since {
                        Some(t) => t,
                        None => {
                            progress(name, "work settled; waiting for each job to run once more");
                            *quiet_since.insert(chrono::Utc::now())
                        }
                    };
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
                if phase == Phase::Backfill {
                    backfill_calls = total_calls(&sb);
                }
                progress(
                    name,
                    format!("{} done (API calls so far {})", args[0], total_calls(&sb)),
                );
                phase = match phase {
                    Phase::Setup => Phase::Backfill,
                    Phase::Backfill | Phase::Run => Phase::Run,
                };
            }
            // A failed command (a fault it gave up on) is started again, as an operator would.
            Watch::Exited(status) => {
                progress(name, format!("{} exited with {status}; started again", args[0]));
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Watch::KillPoint => {
                let at = total_calls(&sb);
                child.start_kill()?; // SIGKILL
                let _ = child.wait().await;
                kill_points.pop();
                kills.push(at);
                progress(
                    name,
                    format!("kill -9 {}/{planned} during {} at API call {at}", kills.len(), args[0]),
                );
            }
            Watch::Settled => {
                child.start_kill()?;
                let _ = child.wait().await;
                progress(name, format!("settled after {} API calls", total_calls(&sb)));
                break;
            }
            Watch::Deadline => {
                child.start_kill()?;
                let _ = child.wait().await;
                bail!(
                    "did not settle within {:?}: {}",
                    opts.settle_deadline,
                    state_of(&sb, &store.url, &log, kills.len(), kill_points.len(), quiet_since).await
                );
            }
        }
    }
    let store_fault = match forms {
        Some(f) => f.await.context("the form submissions")??,
        None => StoreFaultReport::default(),
    };
    let outcome = collect(&sb, &store.url).await?;
    let faults = sb.faults();
    if let Ok(sb) = std::sync::Arc::try_unwrap(sb) {
        sb.shutdown().await;
    }
    Ok(RunResult {
        outcome,
        backfill_calls,
        store_fault,
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
/// They start once the daemon on `port` answers, so that the deliveries, and the store's fault,
/// meet a running daemon. With a fault (the chaos run), the store fails right after the planned
/// form, while the others go on; the answer is what the fault did, once it is over.
async fn submit_forms(
    sb: std::sync::Arc<SandboxHandle>,
    contacts: u32,
    forms: u32,
    seed: u64,
    port: u16,
    fault: Option<(std::sync::Arc<StoreFault>, StorePlan)>,
) -> anyhow::Result<StoreFaultReport> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let up = Instant::now();
    while http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
        && up.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = u64::from(contacts.max(1));
    let first = mix(seed, 0xF0, 0) % n;
    let mut held = None;
    // 7919 is prime: stepping by it visits every contact once before any twice.
    for f in 0..forms.min(contacts) {
        let i = (first + u64::from(f) * 7919) % n;
        let id = (CONTACT_ID_BASE + i).to_string();
        let form = if f % 3 == 0 { "Request a demo" } else { "Contact us" };
        let _ = sb.submit_form(&id, form);
        if let Some((fault, plan)) = fault.as_ref().filter(|(_, p)| p.after_form == f) {
            progress(
                "chaos",
                format!("{} for {:.1} s, after form {f}", fault.kind(), plan.hold.as_secs_f64()),
            );
            let (fault, plan) = (fault.clone(), *plan);
            held = Some(tokio::spawn(async move { fault.hold(plan, port).await }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = match held {
        Some(h) => h.await??,
        None => StoreFaultReport::default(),
    };
    if fault.is_some() {
        progress("chaos", format!("the store is back: {report:?}"));
    }
    Ok(report)
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
    let store_handle = Store::open_existing(store).await?;
    let ids: Vec<crate::lifecycle::HubSpotId> = out
        .hubspot
        .keys()
        .filter_map(|id| crate::lifecycle::HubSpotId::try_from(id.clone()).ok())
        .collect();
    let ledgers = store_handle.events(&ids).await;
    store_handle.close().await;
    for (id, events) in ledgers? {
        let lines = events
            .iter()
            .map(|e| format!("{:?} {} {}", e.kind, e.id, e.at.to_rfc3339()))
            .collect();
        out.ledgers.insert(id.as_str().to_string(), lines);
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
    out.stored_events = out.acknowledged_events - out.lost_events.len();
    out.refused_deliveries = sb
        .webhook_deliveries()
        .iter()
        .flat_map(|d| d.statuses.iter())
        .filter(|s| **s == Some(503))
        .count();
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
/// at most `ln 2 × gap / 1 day` of itself, plus the 0.01 it is rounded to). `leadsync_reason`
/// quotes scores and dates: its text must be equal but for its numbers, each within that score
/// allowance, and its dates, each within `gap` rounded up to a day (each sandbox dates its
/// portal's history back from its own start, so an event within `gap` of midnight falls on
/// another day in the other run). Every other property, and the presence of each, must be equal.
pub fn agree(property: &str, reference: Option<&str>, chaos: Option<&str>, gap: Duration) -> bool {
    let (Some(a), Some(b)) = (reference, chaos) else {
        return reference == chaos;
    };
    if a == b {
        return true;
    }
    if property == "leadsync_reason" {
        return reasons_agree(a, b, gap);
    }
    if property.ends_with("_due") {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        if let (Some(x), Some(y)) = (t(a), t(b)) {
            return (y - x).abs().to_std().is_ok_and(|d| d <= gap);
        }
    }
    if property.ends_with("_score") {
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            return scores_agree(x, y, gap);
        }
    }
    false
}

fn scores_agree(x: f64, y: f64, gap: Duration) -> bool {
    let allowed = x.abs() * std::f64::consts::LN_2 * gap.as_secs_f64() / 86_400.0 + 0.0100001;
    (x - y).abs() <= allowed
}

/// Two reasons, equal but for their numbers and dates, each within what `gap` moves it.
fn reasons_agree(a: &str, b: &str, gap: Duration) -> bool {
    static TOKEN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?").expect("a valid pattern"));
    let parts = |s: &str| -> (Vec<String>, Vec<String>) {
        let mut text = Vec::new();
        let mut tokens = Vec::new();
        let mut last = 0;
        for m in TOKEN.find_iter(s) {
            text.push(s[last..m.start()].to_string());
            tokens.push(m.as_str().to_string());
            last = m.end();
        }
        text.push(s[last..].to_string());
        (text, tokens)
    };
    let ((text_a, tokens_a), (text_b, tokens_b)) = (parts(a), parts(b));
    if text_a != text_b || tokens_a.len() != tokens_b.len() {
        return false;
    }
    let days = gap.as_secs().div_ceil(86_400).max(1) as i64;
    tokens_a.iter().zip(&tokens_b).all(|(x, y)| {
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        match ((date(x), date(y)), (x.parse::<f64>(), y.parse::<f64>())) {
            ((Some(d), Some(e)), _) => (d - e).num_days().abs() <= days,
            (_, (Ok(p), Ok(q))) => scores_agree(p, q, gap),
            _ => x == y,
        }
    })
}

/// The HubSpot property holding the Salesforce owner a lead was given.
const OWNER: &str = "leadsync_sf_owner_id";

/// Every difference between the reference and the chaos outcome, one line each.
pub fn compare(reference: &Outcome, chaos: &Outcome, gap: Duration) -> Vec<String> {
    let mut out = Vec::new();
    // Which lead gets which rep follows the order promotions happen in (the order deliveries
    // arrive in): the round robin gives the next lead to the next rep, and a company's later
    // contacts follow the rep its first one drew, so even the count per rep depends on that
    // order. Owners are compared as how many leads got one; every other property contact by
    // contact.
    let owned = |o: &Outcome| o.hubspot.values().filter(|p| p.contains_key(OWNER)).count();
    let (want_owned, got_owned) = (owned(reference), owned(chaos));
    if want_owned != got_owned {
        out.push(format!(
            "leads with a Salesforce owner: reference {want_owned}, chaos {got_owned}"
        ));
    }
    for (id, want) in &reference.hubspot {
        let got = chaos.hubspot.get(id).cloned().unwrap_or_default();
        let before = out.len();
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
        if out.len() > before {
            out.push(ledger_difference(id, reference, chaos));
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

/// The events of contact `id` that only one run's ledger holds, matched by kind and id (their
/// times differ by run), with the number both hold: what a differing score or stage rests on.
fn ledger_difference(id: &str, reference: &Outcome, chaos: &Outcome) -> String {
    let ledger = |o: &Outcome| o.ledgers.get(id).cloned().unwrap_or_default();
    let (a, b) = (ledger(reference), ledger(chaos));
    let key = |line: &String| line.rsplit_once(' ').map_or(line.clone(), |(k, _)| k.to_string());
    let keys = |l: &[String]| l.iter().map(key).collect::<std::collections::BTreeSet<_>>();
    let (ka, kb) = (keys(&a), keys(&b));
    let only = |l: &[String], other: &std::collections::BTreeSet<String>| -> Vec<String> {
        l.iter().filter(|line| !other.contains(&key(line))).cloned().collect()
    };
    format!(
        "  ledger of contact {id}: {} events in both; only in reference {:?}; only in chaos {:?}",
        ka.intersection(&kb).count(),
        only(&a, &kb),
        only(&b, &ka)
    )
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

    #[test]
    fn the_kill_points_and_the_store_fault_come_from_the_seed_alone() {
        assert_eq!(kill_points(42, 10, 200, 60), kill_points(42, 10, 200, 60));
        assert_ne!(kill_points(42, 10, 200, 60), kill_points(7, 10, 200, 60));
        let points = kill_points(42, 10, 200, 60);
        assert!(points.windows(2).all(|w| w[0] <= w[1]), "{points:?}");
        let (early, run): (Vec<&KillPoint>, Vec<&KillPoint>) = points.iter().partition(|p| !p.in_run);
        assert_eq!((early.len(), run.len()), (5, 5), "half in the daemon's run");
        assert!(early.iter().all(|p| (1..=200).contains(&p.calls)), "{points:?}");
        assert!(run.iter().all(|p| (1..=60).contains(&p.calls)), "{points:?}");
        assert_eq!(kill_points(42, 3, 200, 60).iter().filter(|p| p.in_run).count(), 1);
        assert_eq!(store_fault::plan(42, 60), store_fault::plan(42, 60));
        let plan = store_fault::plan(42, 60);
        assert!(plan.after_form < 30, "in the first half of the forms: {plan:?}");
        assert!((3_000..6_000).contains(&plan.hold.as_millis()), "{plan:?}");
    }

    #[test]
    fn a_contact_that_differs_is_quoted_with_the_events_only_one_run_holds() {
        let outcome = |score: &str, ledger: &[&str]| {
            let mut o = Outcome::default();
            o.hubspot.insert(
                "1140".into(),
                BTreeMap::from([("leadsync_engagement_score".to_string(), score.to_string())]),
            );
            o.ledgers
                .insert("1140".into(), ledger.iter().map(|l| l.to_string()).collect());
            o
        };
        let reference = outcome(
            "41",
            &[
                "Meeting m-1 2026-11-01T10:00:00+00:00",
                "FormSubmission f-9 2026-11-30T10:00:00+00:00",
            ],
        );
        // The same meeting, dated from the other sandbox's start; the form missing.
        let chaos = outcome("29", &["Meeting m-1 2026-11-01T10:02:00+00:00"]);
        let lines = compare(&reference, &chaos, Duration::from_secs(120));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("HubSpot contact 1140 leadsync_engagement_score"),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "  ledger of contact 1140: 1 events in both; only in reference \
             [\"FormSubmission f-9 2026-11-30T10:00:00+00:00\"]; only in chaos []"
        );
        // Contacts that agree are not quoted, whatever their ledgers' times.
        assert!(
            compare(
                &reference,
                &outcome("41", &["Meeting m-1 2026-11-01T10:02:00+00:00"]),
                Duration::from_secs(120)
            )
            .is_empty()
        );
    }

    #[test]
    fn reasons_agree_but_for_decayed_scores_and_dates_within_the_gap() {
        let gap = Duration::from_secs(120);
        let r = |e: &str, d: &str| {
            format!("MQL because fit 60 ≥ 40 and engagement {e} ≥ 35 and form \"free_trial\" on {d}")
        };
        let a = r("42.86", "2026-11-07");
        assert!(agree("leadsync_reason", Some(&a), Some(&r("42.85", "2026-11-07")), gap));
        assert!(agree("leadsync_reason", Some(&a), Some(&r("42.86", "2026-11-08")), gap));
        assert!(
            !agree("leadsync_reason", Some(&a), Some(&r("40.00", "2026-11-07")), gap),
            "more than decay"
        );
        assert!(
            !agree("leadsync_reason", Some(&a), Some(&r("42.86", "2026-11-09")), gap),
            "two days"
        );
        let other = a.replace("free_trial", "demo");
        assert!(
            !agree("leadsync_reason", Some(&a), Some(&other), gap),
            "the words must be equal"
        );
        assert!(!agree("leadsync_reason", Some(&a), None, gap));
        // Anywhere else a date is text.
        assert!(!agree("leadsync_stage", Some("2026-11-07"), Some("2026-11-08"), gap));
    }
}
