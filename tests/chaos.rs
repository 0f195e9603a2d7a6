//! The chaos suite: the sandbox's injected faults one by one, then the short version of
//! `leadsync bench --chaos` (the real daemon under every fault at once and `kill -9`) on SQLite
//! and PostgreSQL.

use std::time::Duration;

use leadsync::chaos::{ChaosOptions, ChaosStore};
use leadsync::sandbox::{Sandbox, SandboxConfig, fault_kind};
use serde_json::{Value, json};

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
    let faults: Value = http
        .get(format!("{}/_sandbox/faults", sb.hubspot_base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults, json!({"applied_answer_lost": 1}));
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
    let c = sb.config();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(sb.hubspot_token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", c.hubspot_client_id.as_str()),
            ("client_secret", c.hubspot_client_secret.as_str()),
            ("refresh_token", c.hubspot_refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    assert!(report.chaos.salesforce["Opportunity"].len() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_under_every_fault_and_three_kill_9s_ends_like_a_fault_free_run_on_sqlite() {
    check(&leadsync::chaos::run(&short(ChaosStore::Sqlite)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_under_every_fault_and_three_kill_9s_ends_like_a_fault_free_run_on_postgres() {
    let admin =
        std::env::var("LEADSYNC_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    check(&leadsync::chaos::run(&short(ChaosStore::Postgres(admin))).await.unwrap());
}
