//! The chaos suite: the sandbox's injected faults one by one, then the short version of
//! `leadsync bench --chaos` (the real daemon under every fault at once and `kill -9`) on SQLite
//! and PostgreSQL.

use std::time::Duration;

use leadsync::chaos::{ChaosOptions, ChaosStore};
use leadsync::sandbox::{Sandbox, SandboxConfig, fault_kind};
use serde_json::{Value, json};

use crate::support::hubspot_token;

fn quiet(config: SandboxConfig) -> SandboxConfig {
    SandboxConfig {
        contacts: 50,
        companies: 10,
        frozen_clock: true,
        ..config
    }
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_applied_and_answered_502_and_counted() {
    let sb = Sandbox::start(quiet(SandboxConfig {
        fault_rate_lost: 1.0,
        ..SandboxConfig::default()
    }))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/update",
            sb.hubspot_base_url()
        ))
        .bearer_auth(&sb.config().hubspot_private_app_token)
        .json(&json!({"inputs": [{"id": "1001", "properties": {"jobtitle": "Chaos engineer"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        sb.hubspot_contact("1001").unwrap().get("jobtitle").map(String::as_str),
        Some("Chaos engineer"),
        "the write was applied though its answer was lost"
    );
    // A read is never a lost write.
    let read = http
        .get(format!("{}/crm/v3/objects/contacts/1001", sb.hubspot_base_url()))
        .bearer_auth(&sb.config().hubspot_private_app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(sb.faults().get(fault_kind::LOST), Some(&1));
    assert_eq!(
        faults_served(&sb.hubspot_base_url()).await,
        json!({"applied_answer_lost": 1})
    );
}

#[tokio::test]
async fn inside_a_429_burst_hubspot_answers_its_ten_secondly_429_and_salesforce_request_limit_exceeded() {
    let sb = Sandbox::start(quiet(SandboxConfig {
        rate_limit_burst_every: Duration::from_secs(3600),
        rate_limit_burst_length: Duration::from_secs(3600),
        ..SandboxConfig::default()
    }))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/crm/v3/objects/contacts/1001", sb.hubspot_base_url()))
        .bearer_auth(&sb.config().hubspot_private_app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-hubspot-ratelimit-remaining"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    let r = http
        .get(format!(
            "{}/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
            sb.salesforce_login_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(sb.faults().get(fault_kind::BURST), Some(&2));
}

#[tokio::test]
async fn an_access_token_past_its_minute_gets_401_expired_and_is_counted() {
    let sb = Sandbox::start(quiet(SandboxConfig {
        hubspot_token_lifetime: Duration::from_secs(60),
        ..SandboxConfig::default()
    }))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let token = hubspot_token(&sb.hubspot_token_url(), sb.config()).await;
    assert_eq!(token["expires_in"], 60);
    let access = token["access_token"].as_str().unwrap().to_string();
    let read = || {
        http.get(format!("{}/crm/v3/objects/contacts/1001", sb.hubspot_base_url()))
            .bearer_auth(&access)
            .send()
    };
    assert_eq!(read().await.unwrap().status(), 200);
    sb.advance(chrono::Duration::seconds(61));
    let r = read().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(sb.faults().get(fault_kind::EXPIRED), Some(&1));
}

#[tokio::test]
async fn webhook_deliveries_are_duplicated_and_reordered_at_their_rates() {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let start = |dup: f64, reorder: f64| {
        Sandbox::start(quiet(SandboxConfig {
            webhook_url: Some(format!("{}/webhooks/hubspot", receiver.uri())),
            webhook_duplicate_rate: dup,
            webhook_reorder_rate: reorder,
            ..SandboxConfig::default()
        }))
    };
    let plain = start(0.0, 0.0).await.unwrap();
    plain.submit_form("1001", "Request a demo").unwrap();
    let chaotic = start(1.0, 1.0).await.unwrap();
    chaotic.submit_form("1001", "Request a demo").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.received_requests().await.unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "three deliveries arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let one = plain.webhook_deliveries();
    let two = chaotic.webhook_deliveries();
    assert_eq!(one.len(), 1);
    assert_eq!(two.len(), 2, "the delivery is sent twice");
    let kinds = |d: &leadsync::sandbox::WebhookDelivery| {
        d.events
            .iter()
            .map(|e| (e.subscription_type.clone(), e.property_name.clone()))
            .collect::<Vec<_>>()
    };
    let mut reversed = kinds(&one[0]);
    assert!(reversed.len() > 1, "a form submission carries several events");
    reversed.reverse();
    assert_eq!(kinds(&two[0]), reversed, "its events come in reverse order");
    assert_eq!(kinds(&two[1]), reversed);
    assert_eq!(chaotic.faults().get(fault_kind::DUPLICATED), Some(&1));
    assert_eq!(chaotic.faults().get(fault_kind::REORDERED), Some(&1));
    assert!(plain.faults().is_empty());
}

/// `leadsync sandbox`'s flags, parsed as the binary parses them.
#[derive(clap::Parser)]
struct SandboxFlags {
    #[command(flatten)]
    faults: leadsync::cli::SandboxFaultFlags,
}

fn sandbox_flags(args: &[&str]) -> Result<SandboxConfig, String> {
    use clap::Parser;
    let flags = SandboxFlags::try_parse_from(std::iter::once("sandbox").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    flags.faults.apply(SandboxConfig::default())
}

#[test]
fn every_fault_flag_of_the_sandbox_command_sets_its_config_field() {
    let c = sandbox_flags(&[
        "--fault-5xx",
        "0.2",
        "--fault-timeout",
        "0.05",
        "--timeout-hang",
        "3",
        "--fault-lost",
        "0.02",
        "--burst-every",
        "20",
        "--burst-length",
        "4",
        "--token-ttl",
        "60",
        "--webhook-duplicate",
        "0.3",
        "--webhook-reorder",
        "0.4",
    ])
    .unwrap();
    assert_eq!(c.fault_rate_5xx, 0.2);
    assert_eq!(c.fault_rate_timeout, 0.05);
    assert_eq!(c.timeout_hang, Duration::from_secs(3));
    assert_eq!(c.fault_rate_lost, 0.02);
    assert_eq!(c.rate_limit_burst_every, Duration::from_secs(20));
    assert_eq!(c.rate_limit_burst_length, Duration::from_secs(4));
    assert_eq!(c.hubspot_token_lifetime, Duration::from_secs(60));
    assert_eq!(c.salesforce_session_lifetime, Duration::from_secs(60));
    assert_eq!(c.webhook_duplicate_rate, 0.3);
    assert_eq!(c.webhook_reorder_rate, 0.4);
    // No flag: no fault, the vendors' token lifetimes.
    let d = sandbox_flags(&[]).unwrap();
    let default = SandboxConfig::default();
    assert_eq!(d.fault_rate_5xx, 0.0);
    assert_eq!(d.fault_rate_timeout, 0.0);
    assert_eq!(d.fault_rate_lost, 0.0);
    assert_eq!(d.rate_limit_burst_every, Duration::ZERO);
    assert_eq!(d.webhook_duplicate_rate, 0.0);
    assert_eq!(d.webhook_reorder_rate, 0.0);
    assert_eq!(d.timeout_hang, default.timeout_hang);
    assert_eq!(d.hubspot_token_lifetime, default.hubspot_token_lifetime);
    assert_eq!(d.salesforce_session_lifetime, default.salesforce_session_lifetime);
}

#[test]
fn a_fault_share_outside_0_to_1_is_refused_naming_the_flag() {
    let e = sandbox_flags(&["--fault-lost", "1.5"]).unwrap_err();
    assert!(e.contains("--fault-lost") && e.contains("between 0 and 1"), "{e}");
    let e = sandbox_flags(&["--webhook-reorder=-0.1"]).unwrap_err();
    assert!(e.contains("--webhook-reorder"), "{e}");
    let e = sandbox_flags(&["--fault-5xx", "0.8", "--fault-timeout", "0.5"]).unwrap_err();
    assert!(
        e.contains("--fault-5xx 0.8") && e.contains("--fault-timeout 0.5"),
        "{e}"
    );
}

/// Starts `leadsync sandbox ARGS` and returns it with the HubSpot base and token URLs it prints.
async fn sandbox_command(args: &[&str]) -> (tokio::process::Child, String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .arg("sandbox")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the sandbox prints its URLs")
        .unwrap()
        .unwrap();
    // "HubSpot     http://127.0.0.1:P (token http://127.0.0.1:P/oauth/v1/token)"
    let mut words = first.split_whitespace();
    assert_eq!(words.next(), Some("HubSpot"), "{first}");
    let base = words.next().unwrap().to_string();
    let token = words.nth(1).unwrap().trim_end_matches(')').to_string();
    (child, base, token)
}

/// The faults the sandbox whose HubSpot is at `base` has served, by kind (`GET /_sandbox/faults`).
async fn faults_served(base: &str) -> Value {
    let answer = reqwest::get(format!("{base}/_sandbox/faults")).await.unwrap();
    answer.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_command_serves_the_faults_its_flags_ask_for() {
    let http = reqwest::Client::new();
    let (mut child, base, _) = sandbox_command(&["--contacts", "20", "--seed", "9", "--fault-5xx", "1"]).await;
    let r = http
        .get(format!("{base}/crm/v3/objects/contacts/1001"))
        .bearer_auth("pat-sandbox")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    assert_eq!(faults_served(&base).await, json!({"5xx": 1}));
    child.start_kill().unwrap();
    let _ = child.wait().await;

    let (mut child, _, token_url) = sandbox_command(&["--contacts", "20", "--token-ttl", "60"]).await;
    let token = hubspot_token(&token_url, &SandboxConfig::default()).await;
    assert_eq!(token["expires_in"], 60);
    child.start_kill().unwrap();
    let _ = child.wait().await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["sandbox", "--fault-5xx", "0.8", "--fault-timeout", "0.5"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fault-5xx 0.8 and --fault-timeout 0.5"), "{stderr}");
}

fn short(store: ChaosStore) -> ChaosOptions {
    ChaosOptions {
        binary: env!("CARGO_BIN_EXE_leadsync").into(),
        root: env!("CARGO_MANIFEST_DIR").into(),
        contacts: 200,
        kills: 3,
        seed: 42,
        forms: 60,
        store,
        settle_deadline: Duration::from_secs(240),
    }
}

fn check(report: &leadsync::chaos::ChaosReport) {
    eprintln!("{}", report.render());
    assert!(report.differences.is_empty(), "{}", report.render());
    assert_eq!(report.kills.len(), 3, "every kill landed before the daemon settled");
    for kind in [fault_kind::SERVER, fault_kind::TIMEOUT, fault_kind::BURST] {
        assert!(report.faults.get(kind).is_some_and(|n| *n > 0), "{kind} injected");
    }
    assert!(
        report.chaos.acknowledged_events > 0,
        "webhook traffic reached the daemon"
    );
    assert_eq!(
        report.chaos.stored_events, report.chaos.acknowledged_events,
        "every acknowledged event is stored"
    );
    assert!(report.chaos.salesforce["Opportunity"].len() > 1);
}

/// The store's fault was injected, at the seeded moment, and the daemon felt it: `/readyz`
/// failed or deliveries were refused 503 while it lasted.
fn check_store_fault(report: &leadsync::chaos::ChaosReport, kind: &str) {
    let f = &report.store_fault;
    assert_eq!(f.kind, kind);
    assert_eq!(f.skipped, None, "{}", report.render());
    let plan = leadsync::chaos::store_plan(42, 60);
    assert_eq!((f.after_form, f.held), (plan.after_form, plan.hold));
    assert!(
        f.readyz_failed > 0 || report.chaos.refused_deliveries > 0,
        "the daemon felt the fault: {}",
        report.render()
    );
}

/// Needs `mount -t tmpfs` (root): where it cannot mount, the bench skips the disk fault and says
/// why, and this test checks that it said so, and that the rest held, and says in its output
/// that the disk fault was not tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_under_every_fault_three_kill_9s_and_a_full_disk_where_a_tmpfs_mounts_ends_like_a_fault_free_run_on_sqlite()
 {
    let report = leadsync::chaos::run(&short(ChaosStore::Sqlite)).await.unwrap();
    check(&report);
    match &report.store_fault.skipped {
        Some(why) => {
            assert!(why.contains("mount"), "{why}");
            assert!(report.render().contains(&format!("skipped: {why}")));
            eprintln!("THE DISK-FULL FAULT WAS NOT TESTED HERE: {why}");
        }
        None => {
            // A full disk refuses only the writes that need new pages: when the WAL already had
            // room, the daemon may not feel it in these seconds (it did in all but one or two of nine runs
            // watched here). The outcome above held either way; that a full disk gets 503 and a
            // failing `/readyz`, and recovers, is proven deterministically by
            // `server::a_full_disk_gets_503_and_a_failing_readyz_and_once_space_is_back_intake_recovers_and_every_200_survives_a_restart`.
            let f = &report.store_fault;
            if f.readyz_failed == 0 && report.chaos.refused_deliveries == 0 {
                assert_eq!(f.kind, "disk full");
                let plan = leadsync::chaos::store_plan(42, 60);
                assert_eq!((f.after_form, f.held), (plan.after_form, plan.hold));
                eprintln!(
                    "THE FULL DISK REFUSED NO WRITE IN THIS RUN: injected, not felt\n{}",
                    report.render()
                );
            } else {
                check_store_fault(&report, "disk full");
            }
        }
    }
}

/// Whether the PostgreSQL server holds a database of this name.
async fn database_exists(admin: &str, name: &str) -> bool {
    let pool = crate::support::sql_pool(admin).await;
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM pg_database WHERE datname = '{name}'"))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_under_every_fault_three_kill_9s_and_a_store_outage_ends_like_a_fault_free_run_on_postgres() {
    let admin = crate::support::postgres_admin_url();
    let opts = short(ChaosStore::Postgres(admin.clone()));
    let report = leadsync::chaos::run(&opts).await.unwrap();
    check(&report);
    check_store_fault(&report, "store outage");
    assert!(
        report.store_fault.connections_cut > 0,
        "the daemon's open connections were cut"
    );
    for run in ["reference", "chaos"] {
        let db = leadsync::chaos::database_name(opts.seed, run);
        assert!(!database_exists(&admin, &db).await, "{db} is dropped after the bench");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bench_on_postgres_drops_the_database_it_created() {
    let admin = crate::support::postgres_admin_url();
    let opts = ChaosOptions {
        // The daemon cannot start: the reference run fails after its database was created.
        binary: "/nonexistent/leadsync".into(),
        seed: 4242,
        ..short(ChaosStore::Postgres(admin.clone()))
    };
    let e = leadsync::chaos::run(&opts).await.unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/leadsync"), "{e:#}");
    let db = leadsync::chaos::database_name(opts.seed, "reference");
    assert!(!database_exists(&admin, &db).await, "{db} is dropped after the failure");
}
