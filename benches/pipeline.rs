//! `cargo bench --bench pipeline`: the sync pipeline against the sandbox, side by side in one
//! run, printed as ratios to what the batch sizes and the rate budget allow.
//!
//! The sandbox runs in a child process (this same binary, `LEADSYNC_BENCH_ROLE=sandbox`), and
//! each measured leadsync runs in a child of its own (`LEADSYNC_BENCH_ROLE=leadsync`), so that
//! `getrusage` of that process is leadsync's side alone: its peak resident memory and CPU time,
//! without the sandbox's portal or the other rows' runs. The parent computes the minimum calls
//! from the sandbox's seeded portal (the same generator) and prints the table.
//!
//! Environment: `LEADSYNC_BENCH_CONTACTS` (default 100,000: calls, CPU, memory, incremental,
//! promotion), `LEADSYNC_BENCH_SMALL` (default 20,000: memory at a second size),
//! `LEADSYNC_BENCH_WALL_CONTACTS` (default 10,000: the wall-time row, at 50 ms latency),
//! `LEADSYNC_BENCH_LATENCY_MS` (default 50), `LEADSYNC_BENCH_BURST` (leadsync's HubSpot calls
//! per 10 s, default 2,000; the sandbox allows 10 % more so that no 429 is ever sent).
//! `LEADSYNC_BENCH_ONLY=wall` runs the wall-time row alone (with its calls against their
//! minimum); `LEADSYNC_BENCH_ONLY=context` the context row alone; `LEADSYNC_BENCH_ONLY=idle`
//! ten idle cycles after a backfill of `LEADSYNC_BENCH_IDLE_CONTACTS` (default 10,000), what
//! each reads and writes (the child's `LEADSYNC_BENCH_IDLE=1`).
//! The big run also times `backfill --rescore` a day after its backfill (the child's
//! `LEADSYNC_BENCH_RESCORE=1`; with `LEADSYNC_BENCH_ROLE=leadsync LEADSYNC_BENCH_N=…` a child
//! alone backfills, rescores and prints its JSON line).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leadsync::config::{Loaded, Settings};
use leadsync::sandbox::portal::{CONTACT_ID_BASE, ContactKind, Portal};
use leadsync::sandbox::{Sandbox, SandboxConfig};
use leadsync::store::OutboxKind;
use leadsync::sync::Syncer;
use leadsync::sync::backfill::BackfillOptions;
use leadsync::sync::cycle::CURSOR;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Engagement object types, in the sandbox's order.
const TYPES: usize = 5;
/// Contacts per associations read (and per backfill block).
const BLOCK: u32 = 1_000;
/// HubSpot's batch read and update size, and the list page size.
const BATCH: u64 = 100;
/// Search page size.
const SEARCH_PAGE: u64 = 200;
/// Share of the contacts the incremental row changes.
const CHANGED_PER_MILLE: u32 = 10;
/// SQLs the promotion row makes.
const SQLS: usize = 1_000;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sandbox_config(contacts: u32, latency_ms: u64, burst: u32) -> SandboxConfig {
    SandboxConfig {
        contacts,
        companies: (contacts / 8).max(10),
        latency: Duration::from_millis(latency_ms),
        frozen_clock: true,
        hubspot_burst_per_10s: burst + burst / 10,
        hubspot_daily_limit: 10_000_000,
        salesforce_daily_allocation: 10_000_000,
        ..SandboxConfig::default()
    }
}

fn main() {
    match std::env::var("LEADSYNC_BENCH_ROLE").as_deref() {
        Ok("sandbox") => sandbox_child(),
        Ok("leadsync") => leadsync_child(),
        _ => parent(),
    }
}

// ── the sandbox child ────────────────────────────────────────────────────────────────────────

/// Serves the sandbox and answers one line of JSON per command read on stdin: `calls`, `reset`,
/// `advance <seconds>`, `touch <every> <n>` (every `every`-th contact behaves `n` times),
/// `submit <id>…` (a demo request per id); it exits when stdin closes.
fn sandbox_child() {
    let n = env_u32("LEADSYNC_BENCH_N", 1_000);
    let latency = u64::from(env_u32("LEADSYNC_BENCH_LATENCY_MS", 0));
    let burst = env_u32("LEADSYNC_BENCH_BURST", 2_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let handle = rt
        .block_on(Sandbox::start(sandbox_config(n, latency, burst)))
        .expect("sandbox");
    let c = handle.config();
    let hello = json!({
        "hubspot": handle.hubspot_base_url(), "token": handle.hubspot_token_url(),
        "salesforce": handle.salesforce_login_url(), "now_ms": handle.now().timestamp_millis(),
        "hs_client": c.hubspot_client_id, "hs_secret": c.hubspot_client_secret,
        "hs_refresh": c.hubspot_refresh_token, "sf_client": c.salesforce_client_id,
        "sf_secret": c.salesforce_client_secret, "sf_refresh": c.salesforce_refresh_token,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{hello}").expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["calls"] => {
                let writes = handle.hubspot_writes();
                json!({
                    "calls": handle.calls(),
                    "written_contacts": writes.len(),
                    "written_records": writes.values().map(|v| u64::from(*v)).sum::<u64>(),
                })
            }
            ["reset"] => {
                handle.reset_calls();
                json!({})
            }
            ["advance", s] => {
                handle.advance(chrono::Duration::seconds(s.parse().expect("seconds")));
                json!({"now_ms": handle.now().timestamp_millis()})
            }
            ["touch", every, times] => {
                let (every, times): (u32, u32) = (every.parse().expect("every"), times.parse().expect("n"));
                let touched = (0..n)
                    .step_by(every as usize)
                    .filter(|i| handle.touch(&(u64::from(*i) + CONTACT_ID_BASE).to_string(), times))
                    .count();
                json!({"touched": touched, "now_ms": handle.now().timestamp_millis()})
            }
            ["touchids", times, ids @ ..] => {
                let times: u32 = times.parse().expect("n");
                json!({"touched": ids.iter().filter(|id| handle.touch(id, times)).count()})
            }
            ["download", ids @ ..] => {
                let submitted = ids
                    .iter()
                    .filter(|id| handle.submit_form(id, "Ebook: The RevOps playbook").is_some())
                    .count();
                json!({"submitted": submitted})
            }
            ["submit", ids @ ..] => {
                let submitted = ids
                    .iter()
                    .filter(|id| handle.submit_form(id, "Request a demo").is_some())
                    .count();
                json!({"submitted": submitted})
            }
            other => json!({"error": format!("unknown command {other:?}")}),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
    rt.block_on(handle.shutdown());
}

/// The sandbox child, seen from leadsync's process.
struct SandboxProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    hello: Value,
}

impl SandboxProcess {
    fn start(contacts: u32, latency_ms: u32, burst: u32) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env("LEADSYNC_BENCH_ROLE", "sandbox")
            .env("LEADSYNC_BENCH_N", contacts.to_string())
            .env("LEADSYNC_BENCH_LATENCY_MS", latency_ms.to_string())
            .env("LEADSYNC_BENCH_BURST", burst.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sandbox child");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("sandbox hello");
        let hello = serde_json::from_str(&line).expect("sandbox hello is JSON");
        SandboxProcess {
            child,
            stdin,
            stdout,
            hello,
        }
    }

    fn ask(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("to sandbox");
        self.stdin.flush().expect("to sandbox");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("from sandbox");
        serde_json::from_str(&line).expect("sandbox answers JSON")
    }

    fn s(&self, key: &str) -> String {
        self.hello[key].as_str().unwrap_or_default().to_string()
    }

    /// API calls of `system` since the last reset, token requests excluded, and by endpoint.
    fn calls(&mut self, system: &str) -> (u64, BTreeMap<String, u64>, Value) {
        let v = self.ask("calls");
        let by: BTreeMap<String, u64> = v["calls"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with(system) && !k.ends_with("oauth.token"))
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        (by.values().sum(), by, v)
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        // Closing stdin ends the child.
        let _ = writeln!(self.stdin);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ── the leadsync child ───────────────────────────────────────────────────────────────────────

/// Peak resident memory (bytes) and CPU seconds (user + system) of this process so far.
fn rusage() -> (u64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (u.ru_maxrss as u64 * 1024, secs(u.ru_utime) + secs(u.ru_stime))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Leadsync's syncer pointed at the sandbox child, as `Stack::start` points it in one process.
async fn syncer(sb: &SandboxProcess, burst: u32, dir: &tempfile::TempDir) -> Syncer {
    let root = repo_root();
    let mut settings = Settings::default();
    settings.rules.path = root.join("mappings/lifecycle.toml");
    settings.hubspot.api_base_url = sb.s("hubspot");
    settings.hubspot.token_url = sb.s("token");
    settings.hubspot.portal_id = Some(42);
    settings.hubspot.client_id = Some(sb.s("hs_client"));
    settings.hubspot.client_secret = Some(SecretString::from(sb.s("hs_secret")));
    settings.hubspot.refresh_token = Some(SecretString::from(sb.s("hs_refresh")));
    settings.hubspot.burst_per_10s = burst;
    settings.salesforce.login_url = sb.s("salesforce");
    settings.salesforce.client_id = Some(sb.s("sf_client"));
    settings.salesforce.client_secret = Some(SecretString::from(sb.s("sf_secret")));
    settings.salesforce.refresh_token = Some(SecretString::from(sb.s("sf_refresh")));
    settings.salesforce.mapping_path = root.join("mappings/salesforce.toml");
    settings.store.url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    let loaded = Loaded { settings, file: None };
    let syncer = leadsync::daemon::syncer(&loaded).await.expect("syncer");
    leadsync::daemon::ensure_setup(&syncer, true).await.expect("setup");
    syncer
}

/// One measured leadsync: a backfill of `LEADSYNC_BENCH_N` contacts, then (with
/// `LEADSYNC_BENCH_MORE=1`) the incremental and promotion rows; prints one JSON line.
fn leadsync_child() {
    // As `main` does: the figures are the binary's.
    leadsync::memory::tune();
    if std::env::var_os("RUST_LOG").is_some() {
        // What leadsync logs (the rescore's phases among it), on stderr, when asked.
        leadsync::logging::init(leadsync::logging::Level::Warn, 0, leadsync::logging::LogFormat::Text);
    }
    let n = env_u32("LEADSYNC_BENCH_N", 1_000);
    let latency = env_u32("LEADSYNC_BENCH_LATENCY_MS", 0);
    let burst = env_u32("LEADSYNC_BENCH_BURST", 2_000);
    let more = env_u32("LEADSYNC_BENCH_MORE", 0) == 1;
    let mut sb = SandboxProcess::start(n, latency, burst);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary folder");
    let syncer = rt.block_on(syncer(&sb, burst, &dir));
    let sandbox_now = DateTime::<Utc>::from_timestamp_millis(sb.hello["now_ms"].as_i64().unwrap_or(0)).unwrap();
    let mut now = sandbox_now + chrono::Duration::seconds(1);
    let mut out = json!({"contacts": n, "latency_ms": latency, "burst_per_10s": burst});

    // 1. Full backfill.
    sb.ask("reset");
    let (rss0, cpu0) = rusage();
    let started = Instant::now();
    let (report, _) = rt
        .block_on(syncer.backfill(&BackfillOptions::default(), now, |_, _| {}))
        .expect("backfill");
    let wall = started.elapsed().as_secs_f64();
    let (rss1, cpu1) = rusage();
    let (hs, hs_by, raw) = sb.calls("hubspot");
    let (sf, _, _) = sb.calls("salesforce");
    out["backfill"] = json!({
        "wall_s": wall, "cpu_s": cpu1 - cpu0, "peak_rss": rss1, "rss_before": rss0,
        "hubspot_calls": hs, "hubspot_by_endpoint": hs_by, "salesforce_calls": sf,
        "pulled": report.pulled, "written": report.written, "promoted": report.promoted,
        "written_contacts": raw["written_contacts"], "written_records": raw["written_records"],
        "rate_limited": syncer.hubspot.stats().rate_limited(),
        "retries": syncer.hubspot.stats().retries(),
    });

    if more {
        // 2. An incremental cycle after 1 % of the contacts behaved. The previous cycle is taken
        // to have ended an hour after the backfill (its own write-backs are then out of the
        // window); the sandbox clock is frozen, so every write of the backfill has one stamp.
        let advanced = sb.ask("advance 3600");
        let last_cycle = advanced["now_ms"].as_i64().unwrap_or(0);
        rt.block_on(syncer.store.set_cursor(CURSOR, &last_cycle.to_string()))
            .expect("cursor");
        let advanced = sb.ask("advance 3600");
        let touched = sb.ask(&format!("touch {} 3", 1_000 / CHANGED_PER_MILLE));
        now = DateTime::<Utc>::from_timestamp_millis(advanced["now_ms"].as_i64().unwrap_or(0)).unwrap()
            + chrono::Duration::seconds(1);
        sb.ask("reset");
        let r = rt
            .block_on(syncer.incremental(now, chrono::Duration::hours(1)))
            .expect("incremental");
        let (hs, hs_by, _) = sb.calls("hubspot");
        out["incremental"] = json!({
            "touched": touched["touched"], "pulled": r.pulled, "evaluated": r.evaluated,
            "written": r.written, "hubspot_calls": hs, "hubspot_by_endpoint": hs_by,
        });

        // 3. Promotion: 1,000 leads request a demo; one incremental cycle makes them SQLs and
        // promotes them.
        // ICP leads: a demo request makes each of them an SQL.
        let c = sandbox_config(n, 0, 1);
        let portal = Portal::new(c.seed, c.contacts, c.companies, c.months, c.now);
        let rows = rt
            .block_on(syncer.store.contact_page(None, n as usize))
            .expect("contacts");
        let leads: Vec<String> = rows
            .iter()
            .filter(|r| {
                r.state.stage == Some(leadsync::lifecycle::Stage::Lead)
                    && r.state.status == leadsync::lifecycle::Status::Active
                    && r.properties.contains_key("email")
                    && r.state.salesforce.is_none()
                    && r.contact_id.as_str().parse::<u64>().is_ok_and(|id| {
                        matches!(
                            portal.kind((id - CONTACT_ID_BASE) as u32),
                            ContactKind::IcpRevops
                                | ContactKind::IcpMarketing
                                | ContactKind::IcpSales
                                | ContactKind::IcpIt
                        )
                    })
            })
            .map(|r| r.contact_id.as_str().to_string())
            .take(SQLS)
            .collect();
        drop(rows);
        let advanced = sb.ask("advance 3600");
        now = DateTime::<Utc>::from_timestamp_millis(advanced["now_ms"].as_i64().unwrap_or(0)).unwrap()
            + chrono::Duration::seconds(1);
        let mut submitted = 0;
        for chunk in leads.chunks(100) {
            submitted += sb.ask(&format!("submit {}", chunk.join(" ")))["submitted"]
                .as_u64()
                .unwrap_or(0);
        }
        let done_before = rt
            .block_on(
                syncer
                    .store
                    .outbox_in(OutboxKind::Promote, leadsync::store::OutboxState::Done),
            )
            .expect("outbox")
            .len();
        sb.ask("reset");
        let r = rt
            .block_on(syncer.incremental(now, chrono::Duration::hours(1)))
            .expect("incremental");
        let (sf, sf_by, _) = sb.calls("salesforce");
        let promoted_sqls = r.moves.get("sql").copied().unwrap_or(0);
        let done_after = rt
            .block_on(
                syncer
                    .store
                    .outbox_in(OutboxKind::Promote, leadsync::store::OutboxState::Done),
            )
            .expect("outbox")
            .len();
        out["promotion"] = json!({
            "submitted": submitted, "sql_moves": promoted_sqls, "promoted": r.promoted,
            "outbox_done": done_after - done_before,
            "salesforce_calls": sf, "salesforce_by_endpoint": sf_by,
        });

        // 4. A day of ordinary activity for every promoted lead (the backfill's and the row
        // above's): each hour a twenty-fourth of
        // them behave three times (page views, visits, email opens and clicks) and one in ten of
        // those downloads the ebook; each hour an incremental cycle and the opportunity poll
        // (what the schedules run), the nightly rescore once. Every Salesforce call counted.
        let rows = rt
            .block_on(syncer.store.contact_page(None, n as usize))
            .expect("contacts");
        let promoted: Vec<String> = rows
            .iter()
            .filter(|r| r.state.salesforce.is_some() && r.removed.is_none())
            .map(|r| r.contact_id.as_str().to_string())
            .collect();
        drop(rows);
        let p = syncer.promoter.clone().expect("Salesforce configured");
        rt.block_on(p.poll_opportunities(&syncer, now)).expect("poll");
        rt.block_on(syncer.drain_outbox(leadsync::hubspot::limiter::Priority::Background, now))
            .expect("drain");
        sb.ask("reset");
        let (mut touched, mut downloads) = (0, 0);
        for hour in 0..24 {
            let advanced = sb.ask("advance 3600");
            now = DateTime::<Utc>::from_timestamp_millis(advanced["now_ms"].as_i64().unwrap_or(0)).unwrap()
                + chrono::Duration::seconds(1);
            let slice: Vec<&str> = promoted.iter().skip(hour).step_by(24).map(String::as_str).collect();
            if !slice.is_empty() {
                touched += sb.ask(&format!("touchids 3 {}", slice.join(" ")))["touched"]
                    .as_u64()
                    .unwrap_or(0);
                let some: Vec<&str> = slice.iter().step_by(10).copied().collect();
                downloads += sb.ask(&format!("download {}", some.join(" ")))["submitted"]
                    .as_u64()
                    .unwrap_or(0);
            }
            rt.block_on(syncer.incremental(now, chrono::Duration::hours(1)))
                .expect("incremental");
            rt.block_on(p.poll_opportunities(&syncer, now)).expect("poll");
            // What the daemon's outbox worker does after each commit.
            rt.block_on(syncer.drain_outbox(leadsync::hubspot::limiter::Priority::Background, now))
                .expect("drain");
        }
        rt.block_on(syncer.rescore(now, false)).expect("rescore");
        rt.block_on(syncer.drain_outbox(leadsync::hubspot::limiter::Priority::Background, now))
            .expect("drain");
        let (sf, sf_by, _) = sb.calls("salesforce");
        out["context_day"] = json!({
            "promoted": promoted.len(), "touched": touched, "downloads": downloads,
            "salesforce_calls": sf, "salesforce_by_endpoint": sf_by,
        });
    }
    if env_u32("LEADSYNC_BENCH_IDLE", 0) == 1 {
        // 6. At rest: ten incremental cycles five sandbox-minutes apart (the default interval)
        // after the backfill, nothing changed outside, each followed by an outbox drain (what
        // the sync job runs). The first cycle's window covers the backfill's own writes.
        let mut cycles = Vec::new();
        // The sandbox's count of records written is since its start: each cycle's is the rise.
        let mut records_before = raw["written_records"].as_u64().unwrap_or(0);
        for _ in 0..10 {
            let advanced = sb.ask("advance 300");
            now = DateTime::<Utc>::from_timestamp_millis(advanced["now_ms"].as_i64().unwrap_or(0)).unwrap()
                + chrono::Duration::seconds(1);
            sb.ask("reset");
            let r = rt
                .block_on(syncer.incremental(now, chrono::Duration::days(1)))
                .expect("incremental");
            rt.block_on(syncer.drain_outbox(leadsync::hubspot::limiter::Priority::Background, now))
                .expect("drain");
            let (hs, hs_by, raw) = sb.calls("hubspot");
            let (sf, _, _) = sb.calls("salesforce");
            let at = |e: &str| hs_by.get(&format!("hubspot {e}")).copied().unwrap_or(0);
            let records = raw["written_records"].as_u64().unwrap_or(0);
            let written_records = records - records_before;
            records_before = records;
            cycles.push(json!({
                "pulled": r.pulled, "hubspot_calls": hs, "searches": hs_by.iter()
                    .filter(|(k, _)| k.ends_with(".search")).map(|(_, n)| n).sum::<u64>(),
                "batch_reads": at("contacts.batch_read"), "batch_updates": at("contacts.batch_update"),
                "written_records": written_records, "salesforce_calls": sf,
                "hubspot_by_endpoint": hs_by,
            }));
        }
        out["idle"] = json!(cycles);
    }
    if env_u32("LEADSYNC_BENCH_RESCORE", 0) == 1 {
        // 5. `backfill --rescore` the next day: every stored contact re-evaluated from the store,
        // the outbox worker beside it writing back what changed, as the command runs them.
        now += chrono::Duration::days(1);
        let stored = rt
            .block_on(syncer.store.funnel())
            .expect("funnel")
            .iter()
            .map(|r| r.count)
            .sum::<u64>();
        sb.ask("reset");
        let (_, cpu0) = rusage();
        let started = Instant::now();
        let (r, carried_out) = rt
            .block_on(syncer.with_outbox_worker(now, syncer.rescore(now, false)))
            .expect("rescore");
        let wall = started.elapsed().as_secs_f64();
        let (_, cpu1) = rusage();
        let (hs, _, _) = sb.calls("hubspot");
        out["rescore"] = json!({
            "stored": stored, "evaluated": r.evaluated, "written": carried_out.written,
            "wall_s": wall, "cpu_s": cpu1 - cpu0, "hubspot_calls": hs,
        });
    }
    println!("{out}");
}

// ── the parent: minimums, naive row, table ───────────────────────────────────────────────────

/// What the portal holds, block by block as leadsync lists it (contact id order).
struct PortalCounts {
    contacts: u64,
    engagements: [u64; TYPES],
    companies: u64,
    /// Companies counted once per block they appear in (what any block-wise pull must read).
    companies_by_block: u64,
    /// Contacts with a company.
    with_company: u64,
}

fn portal_counts(n: u32) -> PortalCounts {
    let c = sandbox_config(n, 0, 1);
    let portal = Portal::new(c.seed, c.contacts, c.companies, c.months, c.now);
    let mut engagements = [0u64; TYPES];
    let mut all = std::collections::BTreeSet::new();
    let mut companies_by_block = 0;
    let mut with_company = 0;
    for start in (0..n).step_by(BLOCK as usize) {
        let mut block = std::collections::BTreeSet::new();
        for i in start..(start + BLOCK).min(n) {
            for (t, e) in engagements.iter_mut().enumerate() {
                *e += portal.engagement_count(i, t);
            }
            if let Some(co) = portal.contact_company(i) {
                with_company += 1;
                block.insert(co);
                all.insert(co);
            }
        }
        companies_by_block += block.len() as u64;
    }
    PortalCounts {
        contacts: u64::from(n),
        engagements,
        companies: all.len() as u64,
        companies_by_block,
        with_company,
    }
}

impl PortalCounts {
    /// The fewest HubSpot reads a full pull can make with HubSpot's batch sizes.
    fn minimum_reads(&self) -> u64 {
        let blocks = self.contacts.div_ceil(u64::from(BLOCK));
        self.contacts.div_ceil(BATCH)
            + blocks * (TYPES as u64 + 1)
            + self.engagements.iter().map(|e| e.div_ceil(BATCH)).sum::<u64>()
            + self.companies.div_ceil(BATCH)
    }

    /// A script on the vendors' SDKs: the same list pages, then one request per contact for its
    /// engagements, one for its company, and one update per contact written.
    fn naive_calls(&self, written: u64) -> u64 {
        self.contacts.div_ceil(BATCH) + self.contacts + self.with_company + written
    }
}

fn run_child(n: u32, latency_ms: u32, burst: u32, more: bool) -> Value {
    run_child_with(n, latency_ms, burst, more, false)
}

fn run_child_with(n: u32, latency_ms: u32, burst: u32, more: bool, rescore: bool) -> Value {
    run_child_env(
        n,
        latency_ms,
        burst,
        more,
        &[("LEADSYNC_BENCH_RESCORE", if rescore { "1" } else { "0" })],
    )
}

fn run_child_env(n: u32, latency_ms: u32, burst: u32, more: bool, env: &[(&str, &str)]) -> Value {
    eprintln!("· leadsync backfill of {n} contacts, sandbox latency {latency_ms} ms, {burst} calls per 10 s …");
    let t = Instant::now();
    let output = Command::new(std::env::current_exe().expect("exe"))
        .env("LEADSYNC_BENCH_ROLE", "leadsync")
        .env("LEADSYNC_BENCH_N", n.to_string())
        .env("LEADSYNC_BENCH_LATENCY_MS", latency_ms.to_string())
        .env("LEADSYNC_BENCH_BURST", burst.to_string())
        .env("LEADSYNC_BENCH_MORE", if more { "1" } else { "0" })
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .expect("leadsync child");
    assert!(output.status.success(), "leadsync child failed: {:?}", output.status);
    let line = String::from_utf8_lossy(&output.stdout);
    let v: Value = serde_json::from_str(line.lines().last().unwrap_or("{}")).expect("child JSON");
    eprintln!("  done in {:.1} s: {}", t.elapsed().as_secs_f64(), v["backfill"]);
    v
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn main_table(rows: &[[String; 5]]) {
    println!("| row | measured | target | ratio | how |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
    }
}

/// Salesforce calls per 1,000 promoted contacts in a day of ordinary activity.
fn context_row(v: &Value) -> [String; 5] {
    let d = &v["context_day"];
    let promoted = d["promoted"].as_u64().unwrap_or(0).max(1);
    let sf = d["salesforce_calls"].as_u64().unwrap_or(0);
    let updates = d["salesforce_by_endpoint"]["salesforce sobjects.update"]
        .as_u64()
        .unwrap_or(0);
    [
        format!("a day of ordinary activity of {promoted} promoted contacts"),
        format!(
            "{:.1} Salesforce calls per 1,000 promoted ({sf}: {updates} context updates)",
            sf as f64 * 1_000.0 / promoted as f64
        ),
        "—".into(),
        "—".into(),
        format!(
            "{} behaved, {} downloads, 24 hourly cycles and opportunity polls, one rescore; {} contacts in the portal",
            d["touched"], d["downloads"], v["contacts"]
        ),
    ]
}

/// The backfill's HubSpot calls against the fewest the batch sizes allow for its portal.
fn calls_row(v: &Value, n: u32) -> [String; 5] {
    let b = &v["backfill"];
    let hs = b["hubspot_calls"].as_u64().unwrap_or(0);
    let written_contacts = b["written_contacts"].as_u64().unwrap_or(0);
    let reads: u64 = b["hubspot_by_endpoint"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("batch_update") && !k.contains("update"))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let min_reads = portal_counts(n).minimum_reads();
    let min_writes = written_contacts.div_ceil(BATCH);
    let minimum = min_reads + min_writes;
    let per_k = |calls: u64| calls as f64 * 1_000.0 / f64::from(n);
    [
        format!("full backfill, HubSpot calls ({n} contacts)"),
        format!("{hs} ({:.1} per 1,000)", per_k(hs)),
        format!(
            "minimum {minimum} ({:.1} per 1,000): reads {min_reads} + writes {min_writes}",
            per_k(minimum)
        ),
        format!("{:.3}×", hs as f64 / minimum as f64),
        format!(
            "reads {reads} vs {min_reads}; {} contacts written in {} updates",
            written_contacts,
            hs - reads
        ),
    ]
}

/// The backfill's wall time against its rate floor: the calls it made (and the fewest it could
/// make) at the configured budget.
fn wall_row(v: &Value, n: u32, latency: u32, burst: u32) -> [String; 5] {
    let rate = f64::from(burst) / 10.0;
    let t = &v["backfill"];
    let min = portal_counts(n).minimum_reads() + t["written_contacts"].as_u64().unwrap_or(0).div_ceil(BATCH);
    let calls = t["hubspot_calls"].as_u64().unwrap_or(0);
    let floor_s = calls as f64 / rate;
    let min_floor_s = min as f64 / rate;
    let wall = f(&t["wall_s"]);
    [
        format!("full backfill, wall time ({n} contacts, latency {latency} ms, {burst} per 10 s)"),
        format!("{wall:.1} s"),
        format!("{floor_s:.1} s = {calls} calls ÷ {rate:.0}/s ({min_floor_s:.1} s at the minimum {min})"),
        format!("{:.2}×", wall / floor_s),
        format!(
            "{:.2}× the floor of the minimum calls; 429 answers: {}",
            wall / min_floor_s,
            t["rate_limited"]
        ),
    ]
}

fn parent() {
    let n = env_u32("LEADSYNC_BENCH_CONTACTS", 100_000);
    let small = env_u32("LEADSYNC_BENCH_SMALL", 20_000);
    let wall_n = env_u32("LEADSYNC_BENCH_WALL_CONTACTS", 10_000);
    let latency = env_u32("LEADSYNC_BENCH_LATENCY_MS", 50);
    let burst = env_u32("LEADSYNC_BENCH_BURST", 2_000);
    let rate = f64::from(burst) / 10.0;

    if std::env::var("LEADSYNC_BENCH_ONLY").as_deref() == Ok("context") {
        // The context row alone, over a smaller portal (`LEADSYNC_BENCH_CONTACTS`).
        let v = run_child(n, 0, burst, true);
        main_table(&[context_row(&v)]);
        println!(
            "\ncontext day endpoints: {}",
            v["context_day"]["salesforce_by_endpoint"]
        );
        return;
    }
    if std::env::var("LEADSYNC_BENCH_ONLY").as_deref() == Ok("idle") {
        // At rest after a backfill of `LEADSYNC_BENCH_IDLE_CONTACTS` (default 10,000): what
        // each of ten idle cycles reads and writes. The aim is nothing but the search pages.
        let idle_n = env_u32("LEADSYNC_BENCH_IDLE_CONTACTS", 10_000);
        let v = run_child_env(idle_n, 0, burst, false, &[("LEADSYNC_BENCH_IDLE", "1")]);
        let cycles = v["idle"].as_array().cloned().unwrap_or_default();
        let col = |k: &str| {
            cycles
                .iter()
                .map(|c| c[k].as_u64().unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sum = |k: &str| cycles.iter().map(|c| c[k].as_u64().unwrap_or(0)).sum::<u64>();
        let busy = sum("pulled") + sum("batch_reads") + sum("batch_updates") + sum("salesforce_calls");
        main_table(&[[
            format!(
                "ten idle cycles 5 min apart after a backfill of {idle_n} contacts: contacts pulled; batch reads; HubSpot writes (batch updates, records); Salesforce calls; HubSpot calls (search pages) per cycle"
            ),
            format!(
                "pulled {}; batch reads {}; writes {} ({} records); Salesforce {}; HubSpot calls {} (searches {})",
                col("pulled"),
                col("batch_reads"),
                col("batch_updates"),
                col("written_records"),
                col("salesforce_calls"),
                col("hubspot_calls"),
                col("searches")
            ),
            "0 pulled, read, written".into(),
            if busy == 0 {
                "met".into()
            } else {
                format!("{busy} reads/writes")
            },
            "`LEADSYNC_BENCH_ONLY=idle cargo bench --bench pipeline`".into(),
        ]]);
        for (i, c) in cycles.iter().enumerate() {
            println!("cycle {}: {}", i + 1, c["hubspot_by_endpoint"]);
        }
        return;
    }
    if std::env::var("LEADSYNC_BENCH_ONLY").as_deref() == Ok("wall") {
        // The wall-time row alone (`LEADSYNC_BENCH_WALL_CONTACTS` at `LEADSYNC_BENCH_LATENCY_MS`
        // and `LEADSYNC_BENCH_BURST`), with that backfill's calls against their minimum.
        let timed = run_child(wall_n, latency, burst, false);
        main_table(&[calls_row(&timed, wall_n), wall_row(&timed, wall_n, latency, burst)]);
        println!(
            "\nbackfill endpoints: {}\n429 answers: {}, retries: {}",
            timed["backfill"]["hubspot_by_endpoint"], timed["backfill"]["rate_limited"], timed["backfill"]["retries"]
        );
        return;
    }
    let big = run_child_with(n, 0, burst, true, true);
    let little = run_child(small, 0, burst, false);
    let timed = run_child(wall_n, latency, burst, false);
    // leadsync's default budget (80 per 10 s), where the budget rather than latency should bind.
    let default_burst = leadsync::config::Settings::default().hubspot.burst_per_10s;
    let timed_default = run_child(wall_n, latency, default_burst, false);

    let counts = portal_counts(n);
    let b = &big["backfill"];
    let hs = b["hubspot_calls"].as_u64().unwrap_or(0);
    let written_contacts = b["written_contacts"].as_u64().unwrap_or(0);
    let per_k = |calls: u64, contacts: u64| calls as f64 * 1_000.0 / contacts as f64;

    let td = &timed_default["backfill"];
    let default_rate = f64::from(default_burst) / 10.0;
    let td_calls = td["hubspot_calls"].as_u64().unwrap_or(0);
    let td_floor_s = td_calls as f64 / default_rate;
    let td_wall = f(&td["wall_s"]);

    let mb = |v: &Value| f(v) / 1_048_576.0;
    let l = &little["backfill"];
    let cpu_per_k = f(&b["cpu_s"]) * 1_000.0 / n as f64;
    let cpu_per_k_small = f(&l["cpu_s"]) * 1_000.0 / small as f64;

    let rs = &big["rescore"];
    let inc = &big["incremental"];
    let inc_calls = inc["hubspot_calls"].as_u64().unwrap_or(0);
    let inc_pulled = inc["pulled"].as_u64().unwrap_or(0);
    let inc_min =
        inc_pulled.div_ceil(SEARCH_PAGE).max(1) + TYPES as u64 + inc["written"].as_u64().unwrap_or(0).div_ceil(BATCH);

    let pro = &big["promotion"];
    let sf = pro["salesforce_calls"].as_u64().unwrap_or(0);
    let promoted = pro["promoted"].as_u64().unwrap_or(0).max(1);
    let per_200 = sf as f64 * 200.0 / promoted as f64;

    let naive = counts.naive_calls(written_contacts);
    let naive_floor = naive as f64 / rate;
    let naive_latency = naive as f64 * f64::from(latency) / 1_000.0;

    println!(
        "\nleadsync pipeline bench · portal of {n} contacts ({} engagements: {:?} calls/emails/meetings/notes/tasks; {} companies) · HubSpot budget {burst} per 10 s = {rate:.0}/s",
        counts.engagements.iter().sum::<u64>(),
        counts.engagements,
        counts.companies
    );
    let rows = vec![
        calls_row(&big, n),
        wall_row(&timed, wall_n, latency, burst),
        [
            format!("full backfill, wall time ({wall_n} contacts, latency {latency} ms, default budget)"),
            format!("{td_wall:.1} s"),
            format!("{td_floor_s:.1} s = {td_calls} calls ÷ {default_rate:.0}/s"),
            format!("{:.2}×", td_wall / td_floor_s),
            format!(
                "leadsync's default `burst_per_10s` = {default_burst}; 429 answers: {}",
                td["rate_limited"]
            ),
        ],
        [
            format!("full backfill, leadsync peak memory ({n} contacts)"),
            format!("{:.1} MB ({:.1} MB at {small})", mb(&b["peak_rss"]), mb(&l["peak_rss"])),
            "< 150 MB, flat".into(),
            format!(
                "{:.2}× target; {:.2}× from {small} to {n}",
                mb(&b["peak_rss"]) / 150.0,
                f(&b["peak_rss"]) / f(&l["peak_rss"])
            ),
            format!(
                "getrusage ru_maxrss of leadsync's process; sandbox in a child; {:.1} MB before the backfill",
                mb(&b["rss_before"])
            ),
        ],
        [
            "full backfill, CPU per 1,000 contacts".into(),
            format!("{cpu_per_k:.3} s ({cpu_per_k_small:.3} s at {small})"),
            "—".into(),
            "—".into(),
            format!(
                "getrusage user+system of leadsync's process: {:.1} s for {n}",
                f(&b["cpu_s"])
            ),
        ],
        [
            format!("`backfill --rescore` of the stored contacts ({n} in the portal), a day later"),
            format!("{:.1} s wall, {:.1} s CPU", f(&rs["wall_s"]), f(&rs["cpu_s"])),
            "< 10 s".into(),
            format!("{:.2}× target", f(&rs["wall_s"]) / 10.0),
            format!(
                "{} stored, {} evaluated, {} written back in {} HubSpot calls (outbox worker beside it, as the command runs it)",
                rs["stored"], rs["evaluated"], rs["written"], rs["hubspot_calls"]
            ),
        ],
        [
            format!("incremental cycle, {} % changed", CHANGED_PER_MILLE / 10),
            format!(
                "{inc_calls} calls ({:.2} per 1,000 contacts)",
                per_k(inc_calls, u64::from(n))
            ),
            format!("minimum {inc_min} ({:.2} per 1,000)", per_k(inc_min, u64::from(n))),
            format!("{:.3}×", inc_calls as f64 / inc_min as f64),
            format!(
                "{} touched, {} pulled, {} written; search pages of 200 + one search per engagement type + updates of 100",
                inc["touched"], inc_pulled, inc["written"]
            ),
        ],
        [
            format!("promotion of {SQLS} SQLs"),
            format!("{per_200:.2} Salesforce calls per 200 ({sf} for {promoted})"),
            "≤ 5 per 200".into(),
            format!("{:.2}×", per_200 / 5.0),
            format!(
                "{} demo requests → {} SQL moves → one incremental cycle",
                pro["submitted"], pro["sql_moves"]
            ),
        ],
        [
            format!("naive backfill ({n} contacts), computed"),
            format!("{naive} calls ({:.0} per 1,000)", per_k(naive, u64::from(n))),
            format!("leadsync {hs}"),
            format!("{:.1}× leadsync", naive as f64 / hs as f64),
            format!(
                "wall ≥ {:.0} s at {rate:.0}/s, ≥ {:.0} s one by one at {latency} ms",
                naive_floor, naive_latency
            ),
        ],
    ];
    main_table(&rows);
    main_table(&[context_row(&big)]);
    println!("\nbackfill endpoints: {}", b["hubspot_by_endpoint"]);
    println!("incremental endpoints: {}", inc["hubspot_by_endpoint"]);
    println!("promotion endpoints: {}", pro["salesforce_by_endpoint"]);
    println!(
        "companies read block by block: {} (vs {} distinct); 429 answers: {}, retries: {}",
        counts.companies_by_block, counts.companies, b["rate_limited"], b["retries"]
    );
}
