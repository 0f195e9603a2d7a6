use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadsync::hubspot::auth::HubSpotAuth;
use leadsync::hubspot::client::{HubSpotClient, HubSpotClientConfig, HubSpotError};
use leadsync::hubspot::limiter::Priority;
use leadsync::hubspot::retry::RetryPolicy;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod tasks;

const BG: Priority = Priority::Background;

fn config(server: &MockServer) -> HubSpotClientConfig {
    crate::support::hubspot_config(&server.uri())
}

fn static_client(server: &MockServer) -> HubSpotClient {
    crate::support::hubspot_client(&server.uri())
}

fn oauth_client(server: &MockServer) -> HubSpotClient {
    let auth = HubSpotAuth::oauth(
        Some(42),
        &format!("{}/oauth/v1/token", server.uri()),
        "client-id",
        SecretString::from("client-secret"),
        SecretString::from("refresh-1"),
    )
    .unwrap();
    HubSpotClient::new(config(server), auth).unwrap()
}

fn token(access: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access, "refresh_token": "refresh-1", "expires_in": expires_in, "token_type": "bearer"
    }))
}

fn contacts_page(ids: &[&str], after: Option<&str>) -> Value {
    let results: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "properties": {"email": null}}))
        .collect();
    match after {
        Some(a) => json!({"results": results, "paging": {"next": {"after": a}}}),
        None => json!({"results": results}),
    }
}

fn ten_secondly() -> ResponseTemplate {
    ResponseTemplate::new(429).set_body_json(json!({
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT", "correlationId": "c-1", "policyName": "TEN_SECONDLY_ROLLING"
    }))
}

/// The contacts list answers `first` `times` times (each expected), then a page of one contact.
async fn first_then_a_page(server: &MockServer, first: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .expect(times)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&["1"], None)))
        .expect(1)
        .mount(server)
        .await;
}

// README: "429 `TEN_SECONDLY_ROLLING` waits the window"
#[tokio::test(start_paused = true)]
async fn rate_limited_twice_then_ok_waits_the_window_each_time() {
    let server = MockServer::start().await;
    first_then_a_page(&server, ten_secondly(), 2).await;
    let client = static_client(&server);
    let start = tokio::time::Instant::now();
    let page = client.list_contacts(None, &["email".into()], BG).await.unwrap();
    assert_eq!(page.results.len(), 1);
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!((client.stats().rate_limited(), client.stats().retries()), (2, 2));
}

// README: "a 503 with `Retry-After` waits the seconds it names" (the header reaches
// `retry::decide` through the shared call loop)
#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_waits_the_seconds_it_names_then_succeeds() {
    let server = MockServer::start().await;
    first_then_a_page(&server, ResponseTemplate::new(503).insert_header("retry-after", "7"), 1).await;
    let client = static_client(&server);
    let start = tokio::time::Instant::now();
    client.list_contacts(None, &["email".into()], BG).await.unwrap();
    // Equal-jitter backoff from 500 ms would wait at most 500 ms: 7 s is the header's. (No upper
    // bound: on tokio's paused clock, time jumps to the client's idle-connection timers while the
    // server's answer is in flight.)
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(7), "waited {waited:?}");
    assert_eq!(
        (
            client.stats().total(),
            client.stats().retries(),
            client.stats().rate_limited()
        ),
        (2, 1, 0)
    );
}

// README: "429 `DAILY` stops the job"
#[tokio::test]
async fn the_daily_limit_stops_the_job_without_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
            "correlationId": "c-2", "policyName": "DAILY"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = static_client(&server).list_contacts(None, &[], BG).await.unwrap_err();
    assert!(err.is_pause(), "{err}");
    assert!(matches!(err, HubSpotError::DailyLimit { .. }));
    assert!(err.to_string().contains("checkpoint kept"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_server_error_then_success() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&["1", "2"], None)))
        .mount(&server)
        .await;
    let client = static_client(&server);
    assert_eq!(client.list_contacts(None, &[], BG).await.unwrap().results.len(), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

// README: "5xx, 423, 477 and timeouts back off exponentially"
#[tokio::test]
async fn a_timeout_is_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.timeout = Some(Duration::from_millis(150));
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let client = HubSpotClient::new(cfg, HubSpotAuth::static_token(None, SecretString::from("t"))).unwrap();
    let err = client.list_contacts(None, &[], BG).await.unwrap_err();
    assert!(err.to_string().contains("no answer after 2 attempts"), "{err}");
    assert_eq!(client.stats().total(), 2);
}

// README: "After a 401 the token is dropped by generation and the request is retried once"
#[tokio::test]
async fn a_401_refreshes_the_token_once_and_succeeds() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/v1/token"))
        .and(wiremock::matchers::body_string_contains("grant_type=refresh_token"))
        .respond_with(token("tok-1", 1800))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/oauth/v1/token"))
        .respond_with(token("tok-2", 1800))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"status": "error", "category": "EXPIRED_AUTHENTICATION"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&["1"], None)))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server);
    client.list_contacts(None, &[], BG).await.unwrap();
    assert_eq!(client.auth().refresh_count(), 2);
}

// README: "fifty callers make one token call"
#[tokio::test]
async fn fifty_concurrent_requests_with_an_expired_token_make_one_token_call() {
    let server = MockServer::start().await;
    // 301 s: inside the 5-minute refresh margin one second later, so "expired" for the client.
    Mock::given(path("/oauth/v1/token"))
        .respond_with(token("tok", 301))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&[], None)))
        .mount(&server)
        .await;
    let client = oauth_client(&server);
    let run = || futures::future::join_all((0..50).map(|_| client.list_contacts(None, &[], BG)));
    assert!(run().await.iter().all(Result::is_ok));
    assert_eq!(
        client.auth().refresh_count(),
        1,
        "one refresh for fifty callers without a token"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(run().await.iter().all(Result::is_ok));
    assert_eq!(
        client.auth().refresh_count(),
        2,
        "one refresh for fifty callers with an expiring token"
    );
    let token_calls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/oauth/v1/token")
        .count();
    assert_eq!(token_calls, 2);
}

// README: "A revoked refresh token (`BAD_REFRESH_TOKEN`) stops with a message"
#[tokio::test]
async fn a_revoked_refresh_token_is_a_clear_fatal_error() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/v1/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
            "error": "invalid_grant", "error_description": "missing or unknown refresh token"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = oauth_client(&server).list_contacts(None, &[], BG).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("portal 42") && text.contains("BAD_REFRESH_TOKEN") && text.contains("Reinstall"),
        "{text}"
    );
    assert!(!text.contains("refresh-1"), "no secret in the message");
}

// README: "other 4xx fail at once with HubSpot's category, message and correlation id"
#[tokio::test]
async fn a_400_is_sent_exactly_once_and_keeps_hubspots_words() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "message": "Property \"leadsync_grade\" does not exist",
            "correlationId": "c-400", "category": "VALIDATION_ERROR"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let updates = vec![(
        "1".to_string(),
        BTreeMap::from([("leadsync_grade".to_string(), "A1".to_string())]),
    )];
    let err = static_client(&server)
        .batch_update_contacts(&updates, BG)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "contacts.batch_update: HubSpot 400 VALIDATION_ERROR: Property \"leadsync_grade\" does not exist (correlationId c-400)"
    );
}

// README: "each record's failure reported on its own"
#[tokio::test]
async fn a_batch_update_reports_each_refused_record_and_keeps_the_others() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .and(body_partial_json(
            json!({"inputs": [{"id": "1", "objectWriteTraceId": "1"}]}),
        ))
        .respond_with(ResponseTemplate::new(207).set_body_json(json!({
            "status": "COMPLETE",
            "results": [{"id": "1", "properties": {}}, {"id": "3", "properties": {}}],
            "numErrors": 1,
            "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "grade is not valid",
                        "context": {"objectWriteTraceId": ["2"]}}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let updates: Vec<_> = ["1", "2", "3"]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                BTreeMap::from([("leadsync_grade".to_string(), "A1".to_string())]),
            )
        })
        .collect();
    let outcome = static_client(&server)
        .batch_update_contacts(&updates, BG)
        .await
        .unwrap();
    assert_eq!(outcome.updated, vec!["1", "3"]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].0, "2");
    assert_eq!(outcome.failed[0].1.message, "grade is not valid");
}

// README: "batch updates 100 a call"
#[tokio::test]
async fn batch_updates_go_100_records_a_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": []})))
        .expect(3)
        .mount(&server)
        .await;
    let updates: Vec<_> = (1..=250).map(|i| (i.to_string(), BTreeMap::new())).collect();
    let outcome = static_client(&server)
        .batch_update_contacts(&updates, BG)
        .await
        .unwrap();
    assert_eq!(outcome.updated.len(), 250);
    let sizes: Vec<usize> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json::<Value>().unwrap()["inputs"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
}

#[tokio::test]
async fn paging_goes_to_the_end() {
    let server = MockServer::start().await;
    for (after, ids, next) in [
        (None, ["1", "2"], Some("a2")),
        (Some("a2"), ["3", "4"], Some("a4")),
        (Some("a4"), ["5", "6"], None),
    ] {
        let mut m = Mock::given(method("GET"))
            .and(path("/crm/v3/objects/contacts"))
            .and(query_param("limit", "100"));
        if let Some(a) = after {
            m = m.and(query_param("after", a));
        } else {
            m = m.and(wiremock::matchers::query_param_is_missing("after"));
        }
        m.respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&ids, next)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = static_client(&server);
    let mut after: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let page = client
            .list_contacts(after.as_deref(), &["email".into()], BG)
            .await
            .unwrap();
        all.extend(page.results.iter().map(|o| o.id.clone()));
        match page.next_after() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    assert_eq!(all, ["1", "2", "3", "4", "5", "6"]);
}

// README: "a long property list goes through the POST batch read, never a long URL"
#[tokio::test]
async fn a_wide_property_list_never_goes_in_the_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("limit", "100"))
        .and(wiremock::matchers::query_param_is_missing("properties"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&["1", "2"], None)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/read"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"id": "1"}, {"id": "2"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let props: Vec<String> = (0..300).map(|i| format!("custom_property_number_{i}")).collect();
    let page = static_client(&server).list_contacts(None, &props, BG).await.unwrap();
    assert_eq!(page.results.len(), 2);
    let longest = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.as_str().len())
        .max()
        .unwrap();
    assert!(longest < 2_500, "URL of {longest} bytes");
}

/// A search index answering like HubSpot: filters, sort by id, 200 a page, 400 past 10,000.
struct FakeSearch {
    records: Vec<(u64, i64)>,
}

impl Respond for FakeSearch {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap();
        let filters = body["filterGroups"][0]["filters"].as_array().unwrap();
        let find = |op: &str, prop: &str| {
            filters
                .iter()
                .find(|f| f["operator"] == op && f["propertyName"] == prop)
                .map(|f| f["value"].as_str().unwrap().parse::<i64>().unwrap())
        };
        let (gte, lt, above) = (
            find("GTE", "lastmodifieddate").unwrap(),
            find("LT", "lastmodifieddate").unwrap(),
            find("GT", "hs_object_id"),
        );
        assert_eq!(body["sorts"][0]["propertyName"], "hs_object_id");
        let limit = body["limit"].as_u64().unwrap() as usize;
        let offset = body["after"].as_str().map_or(0, |a| a.parse::<usize>().unwrap());
        if limit > 200 || offset + limit > 10_000 {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"status": "error", "message": "paging past 10,000"}));
        }
        let mut hits: Vec<u64> = self
            .records
            .iter()
            .filter(|(id, t)| *t >= gte && *t < lt && above.is_none_or(|a| *id as i64 > a))
            .map(|(id, _)| *id)
            .collect();
        hits.sort();
        let page: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(limit)
            .map(|id| json!({"id": id.to_string()}))
            .collect();
        let mut out = json!({"total": hits.len(), "results": page});
        if offset + limit < hits.len() {
            out["paging"] = json!({"next": {"after": (offset + limit).to_string()}});
        }
        ResponseTemplate::new(200).set_body_json(out)
    }
}

#[tokio::test]
async fn search_past_ten_thousand_with_many_on_one_timestamp_returns_each_record_once() {
    let server = MockServer::start().await;
    // 12,000 contacts: 10,500 modified in the same millisecond.
    let records: Vec<(u64, i64)> = (0..12_000u64)
        .map(|i| {
            (
                (i * 7_919) % 12_000 + 1,
                if i < 10_500 {
                    1_700_000_000_000
                } else {
                    1_700_000_000_000 + i as i64
                },
            )
        })
        .collect();
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(FakeSearch { records })
        .mount(&server)
        .await;
    let client = static_client(&server);
    let found = client
        .search_modified("contacts", "lastmodifieddate", 0, 1_800_000_000_000, &[], BG)
        .await
        .unwrap();
    let mut ids: Vec<u64> = found.iter().map(|o| o.id.parse().unwrap()).collect();
    assert_eq!(ids.len(), 12_000);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12_000, "each record once");
    assert_eq!(
        client.stats().total(),
        60,
        "12,000 / 200: no call wasted on re-windowing"
    );
}

// README: "a backward lifecycle move clears, then sets, in two requests, and reads the value back"
#[tokio::test]
async fn a_backward_lifecycle_move_clears_then_sets_then_reads_back() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/contacts/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "7"})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "7", "properties": {"lifecyclestage": "lead"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    static_client(&server)
        .set_lifecycle_stage("7", "lifecyclestage", "lead", true, BG)
        .await
        .unwrap();
    let sent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, String::from_utf8_lossy(&r.body)))
        .collect();
    assert_eq!(
        sent,
        [
            r#"PATCH {"properties":{"lifecyclestage":""}}"#,
            r#"PATCH {"properties":{"lifecyclestage":"lead"}}"#,
            "GET "
        ]
    );
}

// README: "no rolling 10-second window ever holds more than `hubspot.burst_per_10s`"
#[tokio::test(start_paused = true)]
async fn under_load_no_window_ever_holds_more_than_the_budget() {
    // 45 callers at once on the paused clock: the slots the limiter hands out are observed
    // exactly, so a loaded machine cannot move them (arrival times at a server could).
    let limits = Arc::new(leadsync::hubspot::limiter::HubSpotLimits::new(
        20,
        Duration::from_secs(1),
        4,
        0,
    ));
    let callers = (0..45).map(|_| {
        let limits = limits.clone();
        tokio::spawn(async move {
            limits.acquire(leadsync::hubspot::limiter::Budget::General).await;
            tokio::time::Instant::now()
        })
    });
    let times: Vec<tokio::time::Instant> = futures::future::join_all(callers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 20, "{busiest} slots in one rolling second");
    assert!(busiest >= 18, "and the budget is nearly used: {busiest}");
}

#[tokio::test]
async fn every_client_call_waits_for_its_slot() {
    // Through the client: 45 calls at once on a budget of 20 a second cannot all be sent in
    // the first second. Only a lower bound on the time taken, which load cannot break.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contacts_page(&[], None)))
        .expect(45)
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.burst = 20;
    cfg.interval = Duration::from_secs(1);
    let client = HubSpotClient::new(cfg, HubSpotAuth::static_token(None, SecretString::from("t"))).unwrap();
    let start = Instant::now();
    let results = futures::future::join_all((0..45).map(|_| client.list_contacts(None, &[], BG))).await;
    assert!(results.iter().all(Result::is_ok));
    // A burst of 2, then one slot every 1/19 s: the 45th is 43/19 s after the first.
    assert!(start.elapsed() >= Duration::from_millis(2_200), "{:?}", start.elapsed());
    assert!(client.limits().waited() >= Duration::from_secs(2));
}

async fn setup_run(server: &MockServer, apply: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let rules = crate::common::repo().join("mappings/lifecycle.toml");
    std::fs::write(
        dir.path().join("leadsync.toml"),
        format!(
            "[rules]\npath = {:?}\n[hubspot]\napi_base_url = {:?}\nprivate_app_token = \"pat-test\"\n",
            rules.to_str().unwrap(),
            server.uri()
        ),
    )
    .unwrap();
    let args: &[&str] = if apply { &["setup", "--apply"] } else { &["setup"] };
    let (args, cwd) = (args.to_vec(), dir.path().to_path_buf());
    tokio::task::spawn_blocking(move || crate::common::run_bin(&args, &cwd))
        .await
        .unwrap()
}

// README: "without `--apply` it prints the plan"
#[tokio::test]
async fn setup_prints_its_plan_and_creates_only_with_apply() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"name": "leadsync_stage", "label": "x", "type": "enumeration", "fieldType": "select", "groupName": "leadsync"}
        ]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts/groups"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"name": "contactinformation"}]})))
        .mount(&server)
        .await;
    let creates = Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_body_json(json!({})));
    let guard = creates.expect(0).mount_as_scoped(&server).await;
    let out = setup_run(&server, false).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("create property group `leadsync`"), "{stdout}");
    assert!(
        stdout.contains("create contact property leadsync_fit_score (number / number)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 already in place") && stdout.contains("dry run"),
        "{stdout}"
    );
    drop(guard);

    Mock::given(method("POST"))
        .and(path("/crm/v3/properties/contacts/groups"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"name": "leadsync"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/properties/contacts/batch/create"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"results": []})))
        .expect(1)
        .mount(&server)
        .await;
    let out = setup_run(&server, true).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let batch = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/crm/v3/properties/contacts/batch/create")
        .unwrap();
    let inputs: Value = batch.body_json().unwrap();
    let names: Vec<&str> = inputs["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"leadsync_stage"), "present ones are not created again");
    assert!(names.contains(&"leadsync_grade"));
}

#[tokio::test]
async fn setup_without_credentials_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let rules = crate::common::repo().join("mappings/lifecycle.toml");
    std::fs::write(
        dir.path().join("leadsync.toml"),
        format!("[rules]\npath = {:?}\n", rules.to_str().unwrap()),
    )
    .unwrap();
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || crate::common::run_bin(&["setup"], &cwd))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private_app_token"));
}

#[tokio::test]
async fn form_submissions_page_back_to_the_since_time_and_carry_the_email() {
    use leadsync::hubspot::behaviour::Form;
    let server = MockServer::start().await;
    let sub = |ms: i64, email: &str| json!({"submittedAt": ms, "pageUrl": "https://example.com/demo", "values": [{"name": "email", "value": email}]});
    Mock::given(path("/form-integrations/v1/submissions/forms/guid-1"))
        .and(wiremock::matchers::query_param_is_missing("after"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [sub(1_764_000_300_000, "A@Example.com"), sub(1_764_000_200_000, "b@example.com")],
            "paging": {"next": {"after": "p2"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/form-integrations/v1/submissions/forms/guid-1"))
        .and(query_param("after", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [sub(1_764_000_100_000, "c@example.com"), sub(1_763_000_000_000, "old@example.com")],
            "paging": {"next": {"after": "p3"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let form = Form {
        id: "guid-1".into(),
        name: "Request a demo".into(),
    };
    let since = chrono::DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
    let subs = static_client(&server).form_submissions(&form, since, BG).await.unwrap();
    let emails: Vec<&str> = subs.iter().map(|s| s.email.as_str()).collect();
    assert_eq!(
        emails,
        ["a@example.com", "b@example.com", "c@example.com"],
        "stops at `since`, never asks for p3"
    );
    assert_eq!(subs[0].event.form.as_deref(), Some("Request a demo"));
    assert_eq!(subs[0].event.id, "hs-form-guid-1-1764000300000");
}

#[tokio::test]
async fn enterprise_sources_give_page_views_and_email_events_one_by_one() {
    let server = MockServer::start().await;
    Mock::given(path("/events/v3/events"))
        .and(query_param("objectId", "9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"id": "ev-1", "eventType": "e_visited_page", "occurredAt": "2026-11-20T10:00:00Z", "properties": {"hs_url": "https://example.com/pricing"}}
        ]})))
        .mount(&server)
        .await;
    Mock::given(path("/email/public/v1/events"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"hasMore": false, "events": [
                {"id": "e1", "type": "OPEN", "created": 1_764_000_000_000_i64, "emailCampaignId": 77},
                {"id": "e2", "type": "DELIVERED", "created": 1_764_000_000_000_i64},
                {"id": "e3", "type": "CLICK", "created": 1_764_000_100_000_i64, "url": "https://example.com/x"}
            ]})),
        )
        .mount(&server)
        .await;
    let client = static_client(&server);
    let since = chrono::DateTime::from_timestamp_millis(0).unwrap();
    let views = client.page_views("9", since, BG).await.unwrap();
    assert_eq!(views[0].url.as_deref(), Some("https://example.com/pricing"));
    let mail = client.email_events("a@example.com", since, BG).await.unwrap();
    let kinds: Vec<_> = mail.iter().map(|e| (e.kind, e.campaign.clone())).collect();
    assert_eq!(
        kinds,
        [
            (leadsync::lifecycle::EventKind::EmailOpen, Some("77".to_string())),
            (leadsync::lifecycle::EventKind::EmailClick, None)
        ]
    );
}

#[tokio::test]
async fn engagements_modified_since_a_time_reach_their_contacts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/calls/search"))
        .and(body_partial_json(json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "1000"}]}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 1, "results": [
            {"id": "71", "properties": {"hs_timestamp": "2026-11-23T09:00:00Z", "hs_call_direction": "INBOUND"}}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v4/associations/calls/contacts/batch/read"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"from": {"id": "71"}, "to": [{"toObjectId": 5}, {"toObjectId": 6}]}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    // the other four types changed nothing: one empty search each, no association read
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .expect(4)
        .mount(&server)
        .await;
    let by_contact = static_client(&server)
        .engagements_modified(1_000, 2_000, BG)
        .await
        .unwrap();
    assert_eq!(by_contact.keys().collect::<Vec<_>>(), ["5", "6"]);
    assert_eq!(by_contact["5"][0].id, "hs-calls-71");
}

#[tokio::test]
async fn blocks_that_share_a_company_read_it_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v4/associations/contacts/companies/batch/read"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": [
                {"from": {"id": "1"}, "to": [{"toObjectId": 77}]}, {"from": {"id": "2"}, "to": [{"toObjectId": 77}]}
            ]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/crm/v4/associations/contacts/[a-z]+/batch/read$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/companies/batch/read"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": [
                {"id": "77", "properties": {"name": "Globex"}}
            ]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = static_client(&server);
    let cache = leadsync::hubspot::pull::CompanyCache::default();
    let contact = |id: &str| serde_json::from_value(json!({"id": id, "properties": {}})).unwrap();
    for id in ["1", "2"] {
        let pulled = client
            .pull_block_cached(vec![contact(id)], &["name".to_string()], BG, &cache)
            .await
            .unwrap();
        assert_eq!(
            pulled.companies[id].prop("name"),
            Some("Globex"),
            "block of contact {id}"
        );
    }
}
