//! `leadsync demo` and `leadsync sandbox`: the whole product against the built-in sandbox, on
//! the embedded store, with no account and no network.
//!
//! [`Stack`] is the sandbox and the daemon (`daemon::Daemon`: the store, the webhook server, the
//! syncer and its workers) in one process; the demo, the end-to-end tests and the benchmarks
//! all use it. The demo, the end-to-end tests and the benchmarks run the daemon whole
//! ([`Stack::run_daemon`]), as `leadsync run` does; tests that drive the inbox themselves start
//! its webhook server alone ([`Stack::start`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use tokio::sync::watch;

use crate::config::{Loaded, ScheduleSettings, Settings};
use crate::daemon::Daemon;
use crate::lifecycle::{HubSpotId, Snapshot, evaluate, explain};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use crate::store::{OutboxKind, OutboxState};
use crate::sync::Syncer;

pub mod month;

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The sandbox's portal and behaviour.
    pub sandbox: SandboxConfig,
    /// Store URL; default a fresh SQLite file in a temporary folder.
    pub store_url: Option<String>,
    /// HubSpot general calls per 10 s leadsync allows itself.
    pub burst_per_10s: u32,
    /// HubSpot search requests per second leadsync allows itself (the configuration refuses
    /// more than HubSpot's 5; a stack over a sandbox told to allow more may go faster).
    pub search_per_second: u32,
    /// Folder holding `mappings/` (the repository, or the installed files).
    pub root: PathBuf,
    /// The daemon's schedules; default the configuration's defaults.
    pub schedule: Option<ScheduleSettings>,
    /// The sales SLA file (`rules.sla_path`); default `mappings/sla.toml` under `root`.
    pub sla: Option<PathBuf>,
    /// Read page views event by event, with their URLs (`hubspot.event_analytics`; the
    /// sandbox's Enterprise portal serves the API). Default false: the page-view counter.
    pub event_analytics: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            sandbox: SandboxConfig::default(),
            store_url: None,
            burst_per_10s: 80,
            search_per_second: 4,
            root: PathBuf::from("."),
            schedule: None,
            sla: None,
            event_analytics: false,
        }
    }
}

/// The sandbox, the store, the webhook server and the syncer, running in this process.
pub struct Stack {
    /// The fake HubSpot and Salesforce.
    pub sandbox: SandboxHandle,
    /// The settings pointing at them.
    pub loaded: Loaded,
    /// Store, rules and clients.
    pub syncer: Syncer,
    /// Where the webhook server listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// The daemon, built and not yet running.
    daemon: Option<Daemon>,
    running: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Stack {
    /// Starts the sandbox and builds the daemon over it without running it: the demo runs it
    /// whole with [`Stack::run_daemon`], as `leadsync run` does.
    pub async fn build(opts: StackOptions) -> anyhow::Result<Stack> {
        let (store_url, dir) = match opts.store_url {
            Some(u) => (u, None),
            None => {
                let dir = tempfile::tempdir().context("temporary folder for the store")?;
                (
                    format!("sqlite://{}", dir.path().join("leadsync.db").display()),
                    Some(dir),
                )
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut sandbox_config = opts.sandbox;
        sandbox_config.webhook_url = Some(format!("http://{addr}/webhooks/hubspot"));
        let sandbox = Sandbox::start(sandbox_config).await.context("sandbox")?;
        let c = sandbox.config();

        let mut settings = Settings::default();
        settings.rules.path = opts.root.join("mappings/lifecycle.toml");
        settings.hubspot.api_base_url = sandbox.hubspot_base_url();
        settings.hubspot.token_url = sandbox.hubspot_token_url();
        settings.hubspot.portal_id = Some(c.hubspot_portal_id);
        settings.hubspot.client_id = Some(c.hubspot_client_id.clone());
        settings.hubspot.client_secret = Some(SecretString::from(c.hubspot_client_secret.clone()));
        settings.hubspot.refresh_token = Some(SecretString::from(c.hubspot_refresh_token.clone()));
        settings.hubspot.burst_per_10s = opts.burst_per_10s;
        settings.hubspot.search_per_second = opts.search_per_second;
        settings.hubspot.event_analytics = opts.event_analytics;
        settings.salesforce.login_url = sandbox.salesforce_login_url();
        settings.salesforce.client_id = Some(c.salesforce_client_id.clone());
        settings.salesforce.client_secret = Some(SecretString::from(c.salesforce_client_secret.clone()));
        settings.salesforce.refresh_token = Some(SecretString::from(c.salesforce_refresh_token.clone()));
        settings.salesforce.mapping_path = opts.root.join("mappings/salesforce.toml");
        settings.rules.sla_path = opts.sla.unwrap_or_else(|| opts.root.join("mappings/sla.toml"));
        settings.store.url = store_url;
        settings.server.bind = addr.to_string();
        if let Some(schedule) = opts.schedule {
            settings.schedule = schedule;
        }
        let loaded = Loaded { settings, file: None };

        let syncer = crate::daemon::syncer_opening(&loaded, crate::daemon::StoreOpening::CreateIfMissing).await?;
        let daemon = Daemon::on(&loaded, syncer.clone(), listener);
        let (stop, _) = watch::channel(false);
        Ok(Stack {
            sandbox,
            loaded,
            syncer,
            addr,
            stop,
            daemon: Some(daemon),
            running: Vec::new(),
            _dir: dir,
        })
    }

    /// Starts the sandbox and the daemon's webhook server alone (into the inbox, no worker
    /// taking it), so that a test can drain the inbox itself.
    pub async fn start(opts: StackOptions) -> anyhow::Result<Stack> {
        let mut stack = Stack::build(opts).await?;
        if let Some(daemon) = stack.daemon.take() {
            let serving = daemon.serve(stack.stop.subscribe());
            stack.running.push(tokio::spawn(async move { Ok(serving.await??) }));
        }
        Ok(stack)
    }

    /// Runs the daemon as `leadsync run` does ([`Daemon::run`]): the check of the HubSpot
    /// properties, the webhook server and every worker, until [`Stack::shutdown`].
    pub fn run_daemon(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            self.running.push(tokio::spawn(daemon.run(self.stop.subscribe())));
        }
    }

    /// Waits until the sandbox has delivered every webhook it started, the inbox is empty and
    /// no promotion, HubSpot write or owner alert is pending or sending (a retry delayed into the future
    /// still counts as work), or `timeout`. What was set aside rather than done (the review
    /// list, dead letters) is returned, not taken for done.
    pub async fn settle(&self, timeout: StdDuration) -> anyhow::Result<Settled> {
        let started = Instant::now();
        let store = &self.syncer.store;
        loop {
            let deliveries_done = self.sandbox.webhook_deliveries().iter().all(|d| d.finished);
            let (depth, _) = store.inbox_depth().await?;
            let mut open = 0;
            for kind in [OutboxKind::HubSpotWrite, OutboxKind::Promote, OutboxKind::OwnerAlert] {
                for state in [OutboxState::Pending, OutboxState::Sending] {
                    open += store.outbox_in(kind, state).await?.len();
                }
            }
            if deliveries_done && depth == 0 && open == 0 {
                let mut settled = Settled::default();
                for kind in [OutboxKind::HubSpotWrite, OutboxKind::Promote] {
                    settled.review += store.outbox_in(kind, OutboxState::Review).await?.len();
                    settled.dead += store.outbox_in(kind, OutboxState::Dead).await?.len();
                }
                return Ok(settled);
            }
            if started.elapsed() > timeout {
                anyhow::bail!("not settled after {timeout:?}: inbox {depth}, outbox items pending or sending {open}");
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }

    /// Stops the daemon as SIGTERM stops `leadsync run`, and waits until it has: the work in
    /// flight finishes and the outbox is drained once more. The sandbox keeps running.
    pub async fn stop_daemon(&mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for running in self.running.drain(..) {
            running.await??;
        }
        Ok(())
    }

    /// Stops the daemon (work in flight finishes), then the sandbox.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_daemon().await?;
        self.sandbox.shutdown().await;
        Ok(())
    }
}

/// How a settled stack left its outbox: the items set aside instead of carried out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Promotions and writes waiting on the review list for a person.
    pub review: usize,
    /// Promotions and writes that failed for good.
    pub dead: usize,
}

/// The contacts among `leads` the store has no Salesforce link for, each with what became of
/// its promotion (`review: …`, `dead: …`, or `no promotion`), for the demo's failure message.
pub async fn not_in_salesforce(
    store: &crate::store::Store,
    leads: &[HubSpotId],
) -> anyhow::Result<Vec<(HubSpotId, String)>> {
    let rows = store.contacts(leads).await?;
    let mut set_aside = BTreeMap::new();
    for state in [
        OutboxState::Review,
        OutboxState::Dead,
        OutboxState::Pending,
        OutboxState::Sending,
    ] {
        for item in store.outbox_in(OutboxKind::Promote, state).await? {
            let why = format!(
                "{}: {}",
                format!("{state:?}").to_lowercase(),
                item.last_error.as_deref().unwrap_or("no error recorded")
            );
            set_aside.insert(item.contact_id, why);
        }
    }
    Ok(leads
        .iter()
        .filter(|id| rows.get(*id).is_none_or(|r| r.state.salesforce.is_none()))
        .map(|id| {
            let why = set_aside
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| "no promotion".to_string());
            (id.clone(), why)
        })
        .collect())
}

/// What `leadsync demo` was asked.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Contacts in the synthetic portal.
    pub contacts: u32,
    /// Seed of the synthetic portal.
    pub seed: u64,
    /// Exit after the report instead of serving until Ctrl-C.
    pub once: bool,
    /// Store URL; default a fresh SQLite file in a temporary folder.
    pub store_url: Option<String>,
}

/// Where the demo's rules and mapping come from: `./mappings/` when both files are there (a
/// rules author trying an edit), else the copies compiled into the binary, written to a
/// temporary folder the stack reads them from.
fn mappings_root() -> anyhow::Result<(PathBuf, crate::defaults::Origin, Option<tempfile::TempDir>)> {
    let here = Path::new(".");
    if here.join("mappings/lifecycle.toml").exists() && here.join("mappings/salesforce.toml").exists() {
        return Ok((
            here.to_path_buf(),
            crate::defaults::Origin::File(PathBuf::from("./mappings")),
            None,
        ));
    }
    let dir = tempfile::tempdir().context("temporary folder for the embedded mappings")?;
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(&mappings).with_context(|| format!("{}", mappings.display()))?;
    for (name, text) in [
        ("lifecycle.toml", crate::defaults::LIFECYCLE),
        ("salesforce.toml", crate::defaults::SALESFORCE),
    ] {
        let path = mappings.join(name);
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok((dir.path().to_path_buf(), crate::defaults::Origin::Embedded, Some(dir)))
}

/// `leadsync demo`: the sandbox, a backfill, live form submissions through signed webhooks,
/// and a report, told on stdout as it happens; then the daemon serves until `stop` (unless
/// `once`). Logs go to stderr; stdout is the story alone.
pub async fn run(opts: DemoOptions, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let say = |text: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    let started = Instant::now();
    let (root, origin, _mappings_dir) = mappings_root()?;
    // The sandbox's clock stands still a month ago and moves in steps while the sales desk
    // works and the daemon's jobs read it back (`month`); then it stays at the month's end.
    let month = month::MonthOptions {
        seed: opts.seed,
        ..month::MonthOptions::default()
    };
    let sandbox = SandboxConfig {
        seed: opts.seed,
        contacts: opts.contacts,
        companies: (opts.contacts / 8).max(10),
        now: Utc::now() - chrono::Duration::days(i64::from(month.days)),
        frozen_clock: true,
        // The month's steps come faster than any person's clicks: HubSpot's ten-secondly and
        // search limits are not what the demo shows (each step's sync makes its cursor
        // searches; paced at 4 a second, they made the month take minutes).
        hubspot_burst_per_10s: 10_000,
        hubspot_search_per_second: 1_000,
        ..SandboxConfig::default()
    };
    say(&format!(
        "leadsync demo: a fake HubSpot portal of {} synthetic contacts (seed {}) and a fake Salesforce org, on this machine; no account, no network",
        opts.contacts, opts.seed
    ));
    let mut stack = Stack::build(StackOptions {
        sandbox,
        store_url: opts.store_url.clone(),
        root,
        burst_per_10s: 5_000,
        search_per_second: 1_000,
        ..StackOptions::default()
    })
    .await?;
    say(&format!(
        "rules: {origin} · version {} · Salesforce mapping: {origin}",
        stack.syncer.rules.stamp()
    ));
    say(&format!(
        "HubSpot {} · Salesforce {} · leadsync listens for webhooks on http://{}",
        stack.sandbox.hubspot_base_url(),
        stack.sandbox.salesforce_login_url(),
        stack.addr
    ));

    // 1. Setup and a backfill a month ago, then the month: the sales desk works the MQLs
    // leadsync hands over, and the daemon's jobs read it back at each step.
    say("\n1. setup: creating the HubSpot properties leadsync writes (leadsync setup --apply)");
    say(&format!(
        "2. a month of sales on the sandbox's clock, from {}: backfill, then every {} h the reps work (calls, emails, meetings; accept, reject, qualify; opportunities won and lost) and the daemon's jobs read HubSpot and Salesforce back",
        stack.sandbox.now().format("%Y-%m-%d %H:%M UTC"),
        month.step.num_hours()
    ));
    let t = Instant::now();
    let ran = stack.simulate_month(month).await?;
    let d = ran.desk;
    say(&format!(
        "   {} steps in {:.1} s: {} touches in HubSpot, {} in Salesforce; {} MQLs accepted, {} rejected, {} never touched; {} qualified; {} won, {} lost",
        ran.steps,
        t.elapsed().as_secs_f64(),
        d.hubspot_touches,
        d.salesforce_touches,
        d.accepted,
        d.rejected,
        d.ignored,
        d.qualified,
        d.won,
        d.lost
    ));
    let month_report = crate::report::report(
        &stack.syncer.store,
        ran.from,
        ran.to,
        None,
        &stack.syncer.sla.marketing,
        crate::report::format::ReportFormat::Table,
    )
    .await?;
    say(&format!(
        "\nthe month's report (leadsync report --from {} --to {}):\n{month_report}",
        ran.from.to_rfc3339(),
        ran.to.to_rfc3339()
    ));

    // 2. Live form submissions: demo requests from leads, through signed webhooks, to the
    // daemon running as `leadsync run` runs it.
    stack.run_daemon();
    let rows = stack.syncer.store.contact_page(None, 100_000).await?;
    let leads: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.state.stage == Some(crate::lifecycle::Stage::Lead)
                && r.state.status == crate::lifecycle::Status::Active
                && r.properties.contains_key("email")
        })
        .take(3)
        .collect();
    say(&format!(
        "3. live: {} lead(s) fill in \"Request a demo\" in HubSpot; HubSpot sends signed webhooks; leadsync re-decides and promotes",
        leads.len()
    ));
    let t = Instant::now();
    let deliveries_before = stack.sandbox.webhook_deliveries().len();
    let opportunities_before = ours(&stack).len();
    let mut submitted = Vec::new();
    for lead in &leads {
        if stack
            .sandbox
            .submit_form(lead.contact_id.as_str(), "Request a demo")
            .is_some()
        {
            submitted.push(lead.contact_id.clone());
        }
    }
    // The sandbox sends its webhooks from spawned tasks: wait for them to start, else the
    // stack looks settled before the first delivery exists.
    while !submitted.is_empty()
        && stack.sandbox.webhook_deliveries().len() == deliveries_before
        && t.elapsed() < StdDuration::from_secs(10)
    {
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let settled = stack.settle(StdDuration::from_secs(30)).await?;
    say(&format!(
        "   {} demo request(s): HubSpot → webhook → SQL → Salesforce in {:.2} s; {} new opportunit(ies) in Salesforce",
        submitted.len(),
        t.elapsed().as_secs_f64(),
        ours(&stack).len().saturating_sub(opportunities_before)
    ));

    // 3. The report.
    say(&report_text(&stack, &submitted).await?);
    // The story is only true when every demo request reached Salesforce: say which did not.
    let missing = not_in_salesforce(&stack.syncer.store, &submitted).await?;
    if submitted.is_empty() {
        stack.shutdown().await?;
        anyhow::bail!("demo: no active lead with an email to submit a demo request for");
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(id, why)| format!("contact {id} ({why})"))
            .collect();
        stack.shutdown().await?;
        anyhow::bail!(
            "demo: {} of {} demo request(s) did not reach Salesforce: {} (outbox: {} on the review list, {} dead)",
            missing.len(),
            submitted.len(),
            list.join(", "),
            settled.review,
            settled.dead
        );
    }
    let (breaches, _) = stack.syncer.store.open_breaches(0).await?;
    say(&format!(
        "status page: http://{}/ ({breaches} open SLA breaches) · http://{}/status.json",
        stack.addr, stack.addr
    ));
    say(&format!("demo ran in {:.1} s", started.elapsed().as_secs_f64()));
    if !opts.once {
        say(&format!(
            "\nserving webhooks on http://{} until Ctrl-C (leadsync status works against the store)",
            stack.addr
        ));
        let _ = stop.wait_for(|s| *s).await;
    }
    stack.shutdown().await?;
    Ok(())
}

/// The opportunities leadsync created in the sandbox's Salesforce.
fn ours(stack: &Stack) -> Vec<serde_json::Value> {
    let mut opps = stack.sandbox.salesforce_records("Opportunity");
    opps.retain(|o| o["LeadSync_Key__c"].is_string());
    opps
}

async fn report_text(stack: &Stack, live: &[HubSpotId]) -> anyhow::Result<String> {
    let mut out = String::new();
    let store = &stack.syncer.store;
    let _ = writeln!(
        out,
        "\nfunnel: contacts per stage, by status\n{}",
        crate::report::funnel(store).await?
    );

    // A few decisions, explained.
    let rows = store.contact_page(None, 100_000).await?;
    let mut picked = Vec::new();
    if let Some(first) = live.first() {
        picked.push(first.clone());
    }
    for want in ["mql", "disqualified"] {
        if let Some(r) = rows
            .iter()
            .find(|r| r.state.stage.map(|s| s.as_str()) == Some(want) || r.state.status.as_str() == want)
        {
            picked.push(r.contact_id.clone());
        }
    }
    let ledger = store.events(&picked).await?;
    let now = Utc::now();
    for id in &picked {
        let Some(row) = rows.iter().find(|r| &r.contact_id == id) else {
            continue;
        };
        let snapshot = Snapshot {
            contact_id: id.clone(),
            properties: row.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            events: ledger.get(id).cloned().unwrap_or_default(),
            state: row.state.clone(),
        };
        let d = evaluate(&stack.syncer.rules, &snapshot, now);
        let text = explain::render_text(&d);
        let _ = writeln!(out, "── contact {id}");
        for line in text.lines().take(14) {
            let _ = writeln!(out, "  {line}");
        }
    }

    // Salesforce records, with their owners.
    let users: BTreeMap<String, String> = stack
        .sandbox
        .salesforce_records("User")
        .iter()
        .filter_map(|u| Some((u["Id"].as_str()?.to_string(), u["Name"].as_str()?.to_string())))
        .collect();
    let ours = ours(stack);
    let _ = writeln!(
        out,
        "\nSalesforce: {} opportunities created by leadsync ({} accounts, {} contacts in the org)",
        ours.len(),
        stack.sandbox.salesforce_records("Account").len(),
        stack.sandbox.salesforce_records("Contact").len()
    );
    for o in ours.iter().rev().take(8) {
        let owner = o["OwnerId"].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "  {:<50} {:<14} owner {}",
            o["Name"].as_str().unwrap_or(""),
            o["StageName"].as_str().unwrap_or(""),
            users.get(owner).map_or(owner, String::as_str)
        );
    }
    let review = store.outbox_in(OutboxKind::Promote, OutboxState::Review).await?.len();
    let dead = store.outbox_in(OutboxKind::Promote, OutboxState::Dead).await?.len();
    let _ = writeln!(out, "  review list: {review} · dead letters: {dead}");

    // Calls against budgets.
    let c = stack.sandbox.config();
    let hs = stack.sandbox.api_calls("hubspot");
    let sf = stack.sandbox.api_calls("salesforce");
    let _ = writeln!(
        out,
        "\nAPI calls: HubSpot {hs} of {} a day ({:.3} %), at most {} per 10 s allowed to leadsync; Salesforce {sf} of {} a day ({:.3} %, leadsync's share {} %)",
        c.hubspot_daily_limit,
        hs as f64 * 100.0 / c.hubspot_daily_limit as f64,
        stack.loaded.settings.hubspot.burst_per_10s,
        c.salesforce_daily_allocation,
        sf as f64 * 100.0 / c.salesforce_daily_allocation as f64,
        stack.loaded.settings.salesforce.daily_share_percent
    );
    let mut by_endpoint: Vec<_> = stack.sandbox.calls().into_iter().collect();
    by_endpoint.sort_by_key(|e| std::cmp::Reverse(e.1));
    let top: Vec<String> = by_endpoint.iter().take(8).map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "  busiest: {}", top.join(", "));
    Ok(out)
}
