//! README sentences that had no test: each test here backs one, through the product's own
//! surfaces (commands, HTTP, sandbox counters, store rows), on both stores where a store is
//! involved.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::Duration;
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{HubSpotId, Stage, Status};
use leadsync::sandbox::portal::CONTACT_ID_BASE;
use leadsync::store::{OutboxKind, OutboxState, Store};
use leadsync::sync::backfill::BackfillOptions;
use serde_json::json;

use crate::support::{Backend, TestApp};

on_both_stores!(
    a_write_cut_off_while_sending_is_read_back_and_sent_again_only_when_hubspot_lacks_it,
    a_restore_webhook_brings_a_deleted_contact_back,
    a_won_opportunity_reaches_hubspot_and_makes_the_contact_a_customer,
    the_incremental_cycle_reads_five_minutes_before_its_cursor_and_no_further,
    status_lists_dead_letters_and_says_why_promotions_wait,
    two_flushes_at_once_write_each_contact_once,
    status_of_one_contact_shows_its_audit_trail,
    a_failing_inbox_event_holds_back_only_its_contact_and_waits_at_most_ten_minutes,
    two_passes_at_once_on_one_contact_decide_and_save_it_once,
    two_rescores_at_once_over_two_pages_save_each_change_once,
    a_promoted_contact_is_written_to_hubspot_once_with_its_values_and_salesforce_ids,
    a_crash_between_a_promotion_and_its_write_back_still_writes_values_and_ids_once,
);

// Two store handles on one SQLite file are not a supported deployment (a second `run` on it is
// refused; SQLite serves one replica): the claims' concurrency is tested on PostgreSQL.
#[tokio::test]
async fn two_drains_on_two_postgres_store_handles_claim_each_write_once() {
    two_drains_on_two_store_handles_claim_each_write_once(Backend::Postgres).await
}

#[tokio::test]
async fn two_inbox_passes_on_two_postgres_store_handles_claim_each_event_once() {
    two_inbox_passes_on_two_store_handles_claim_each_event_once(Backend::Postgres).await
}

// README (Figures): a claim of HubSpot writes lists the contacts whose promotion is due or
// under way once, from the due promotions alone, instead of a correlated lookup per candidate
// that read every promotion ever queued (a backfill's CPU then grew with the square of its size).
#[tokio::test]
async fn the_claim_of_writes_lists_promoting_contacts_once_not_per_candidate() {
    let (store, _dir) = crate::support::sqlite().await;
    let plan = store.claim_writes_plan().await.unwrap().join("\n");
    assert!(!plan.contains("CORRELATED"), "{plan}");
    assert!(
        plan.contains("SEARCH p USING INDEX outbox_due (kind=? AND state=?)"),
        "{plan}"
    );
    // The claimed contacts' items are found by contact, not by walking every due item again.
    assert!(
        plan.contains("SEARCH outbox USING INDEX outbox_contact (contact_id=? AND kind=? AND state=?)"),
        "{plan}"
    );
}

async fn app_on(backend: Backend, contacts: u32) -> (TestApp, String, Option<tempfile::TempDir>) {
    let (url, dir) = backend.fresh().await;
    (TestApp::start_with(contacts, Some(url.clone())).await, url, dir)
}

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

fn contact(n: u64) -> String {
    (CONTACT_ID_BASE + n).to_string()
}

async fn backfill(app: &TestApp) {
    app.stack
        .syncer
        .backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
}

/// A HubSpot write-back as the outbox holds it: properties only.
fn write_payload(props: &[(&str, &str)]) -> String {
    let properties: BTreeMap<&str, &str> = props.iter().copied().collect();
    json!({ "properties": properties }).to_string()
}

/// Queues a write for `contact` under `key` and returns the item.
async fn queue_write(app: &TestApp, key: &str, contact: &str, props: &[(&str, &str)]) -> leadsync::store::OutboxItem {
    let (store, now) = (&app.stack.syncer.store, app.now());
    store
        .enqueue(OutboxKind::HubSpotWrite, key, contact, &write_payload(props), now)
        .await
        .unwrap();
    store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Pending)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.key == key)
        .expect("queued")
}

// README: "Items are marked `sending` before the call; one cut off by a crash is read back and re-sent only if HubSpot does not hold its values"
async fn a_write_cut_off_while_sending_is_read_back_and_sent_again_only_when_hubspot_lacks_it(on: Backend) {
    let (app, _, _dir) = app_on(on, 60).await;
    backfill(&app).await;
    let sb = &app.stack.sandbox;
    let store = &app.stack.syncer.store;
    let (held, lacking) = (contact(3), contact(4));
    // `held`: the crash came after HubSpot applied the write (it holds the values already).
    let stage = sb.hubspot_contact(&held).unwrap()["leadsync_stage"].clone();
    let a = queue_write(&app, "claims:held", &held, &[("leadsync_stage", &stage)]).await;
    // `lacking`: the crash came before the request left.
    let b = queue_write(
        &app,
        "claims:lacking",
        &lacking,
        &[("leadsync_reason", "after the crash")],
    )
    .await;
    store.sending(&[a.clone(), b.clone()]).await.unwrap();
    let writes = sb.hubspot_writes();

    // The restart: a new process's first flush finds them `sending`.
    let restarted = app.restarted_syncer().await;
    restarted.drain_outbox(Priority::Background, app.now()).await.unwrap();

    let after = sb.hubspot_writes();
    assert_eq!(
        after.get(&held),
        writes.get(&held),
        "{on:?}: HubSpot held it: not written twice"
    );
    assert_eq!(
        after.get(&lacking).copied().unwrap_or(0),
        writes.get(&lacking).copied().unwrap_or(0) + 1,
        "{on:?}: HubSpot lacked it: sent again"
    );
    assert_eq!(
        sb.hubspot_contact(&lacking).unwrap()["leadsync_reason"],
        "after the crash"
    );
    let done = store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Done)
        .await
        .unwrap();
    for item in [&a, &b] {
        assert!(done.iter().any(|d| d.id == item.id), "{on:?}: item {} done", item.key);
    }
    app.stack.shutdown().await.unwrap();
}

fn event(kind: &str, object: &str, occurred_at: i64) -> String {
    serde_json::to_string(&[json!({
        "eventId": 7, "subscriptionId": 3, "portalId": 42, "appId": 7, "occurredAt": occurred_at,
        "subscriptionType": kind, "attemptNumber": 0, "objectId": object.parse::<u64>().unwrap(),
        "changeSource": "CRM_UI",
    })])
    .unwrap()
}

// README: "`contact.restore` brings a deleted contact back"
async fn a_restore_webhook_brings_a_deleted_contact_back(on: Backend) {
    let (app, _, _dir) = app_on(on, 40).await;
    backfill(&app).await;
    let c = contact(5);
    let store = &app.stack.syncer.store;
    let removed = |store: &Store, c: String| {
        let store = store.clone();
        async move { store.contacts(&[id(&c)]).await.unwrap()[&id(&c)].removed.clone() }
    };
    let at = app.now().timestamp_millis();
    assert_eq!(app.post_signed_webhook(&event("contact.deletion", &c, at)).await, 200);
    app.run_inbox_until_idle().await;
    assert_eq!(removed(store, c.clone()).await.as_deref(), Some("deleted"), "{on:?}");

    let reads = app.stack.sandbox.calls().get("hubspot contacts.batch_read").copied();
    assert_eq!(
        app.post_signed_webhook(&event("contact.restore", &c, at + 1)).await,
        200
    );
    app.run_inbox_until_idle().await;
    assert_eq!(removed(store, c.clone()).await, None, "{on:?}: back");
    assert!(
        app.stack.sandbox.calls().get("hubspot contacts.batch_read").copied() > reads,
        "{on:?}: read again from HubSpot and evaluated"
    );
    // Evaluated like any contact again: the next webhook about it is processed.
    let row = &store.contacts(&[id(&c)]).await.unwrap()[&id(&c)];
    assert!(row.state.stage.is_some(), "{on:?}");
    app.stack.shutdown().await.unwrap();
}

// README: "opportunities changed since a `SystemModstamp` watermark reach HubSpot (`leadsync_opportunity_*`) and the engine: won makes a customer, lost sets the lost status"
async fn a_won_opportunity_reaches_hubspot_and_makes_the_contact_a_customer(on: Backend) {
    let (app, _, _dir) = app_on(on, 300).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    assert!(promoted.len() >= 2, "{on:?}: leads were promoted");
    let (won, lost) = (promoted[0].contact_id.clone(), promoted[1].contact_id.clone());
    let rows = s.store.contacts(&[id(&won), id(&lost)]).await.unwrap();
    let opp = |c: &str| rows[&id(c)].state.salesforce.clone().unwrap().opportunity_id.unwrap();
    let promoter = s.promoter.clone().expect("Salesforce configured");
    // Nothing changed in Salesforce since the promotions: nothing to feed back.
    let first = promoter.poll_opportunities(s, app.now()).await.unwrap();

    app.stack.sandbox.advance(Duration::minutes(1));
    assert!(app.stack.sandbox.close_opportunity(&opp(&won), true));
    assert!(app.stack.sandbox.close_opportunity(&opp(&lost), false));
    let now = app.now();
    let changed = promoter.poll_opportunities(s, now).await.unwrap();
    assert_eq!(
        changed, 2,
        "{on:?}: both closed opportunities read (first poll: {first})"
    );
    // The poll commits and rings the outbox worker; carry out what it queued, as the worker does.
    s.drain_outbox(Priority::Background, now).await.unwrap();

    let hs = app.stack.sandbox.hubspot_contact(&won).unwrap();
    assert_eq!(
        hs.get("leadsync_opportunity_status").map(String::as_str),
        Some("won"),
        "{on:?}"
    );
    let hs = app.stack.sandbox.hubspot_contact(&lost).unwrap();
    assert_eq!(
        hs.get("leadsync_opportunity_status").map(String::as_str),
        Some("lost"),
        "{on:?}"
    );
    let rows = s.store.contacts(&[id(&won), id(&lost)]).await.unwrap();
    assert_eq!(rows[&id(&won)].state.stage, Some(Stage::Customer), "{on:?}");
    assert_eq!(rows[&id(&lost)].state.status, Status::Lost, "{on:?}");
    // Read once: the watermark moved past them.
    assert_eq!(promoter.poll_opportunities(s, now).await.unwrap(), 0, "{on:?}");
    app.stack.shutdown().await.unwrap();
}

// README: "contacts modified since the cursor (a 5-minute overlap"
async fn the_incremental_cycle_reads_five_minutes_before_its_cursor_and_no_further(on: Backend) {
    let (app, _, _dir) = app_on(on, 30).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    // Every contact was last modified by the backfill's writes, which a cycle recognises and
    // does not read again; a second on, each one behaves: modified at the sandbox's (frozen) now.
    app.stack.sandbox.advance(Duration::seconds(1));
    for r in s.store.contact_page(None, 100).await.unwrap() {
        assert!(app.stack.sandbox.touch(r.contact_id.as_str(), 1), "{on:?}");
    }
    let modified = app.stack.sandbox.now();
    let now = app.now();
    let cycle_after = |cursor: chrono::DateTime<chrono::Utc>| async move {
        s.store
            .set_cursor("contacts.modified", &cursor.timestamp_millis().to_string())
            .await
            .unwrap();
        s.incremental(now, Duration::days(1)).await.unwrap().pulled
    };
    assert_eq!(
        cycle_after(modified + Duration::minutes(4)).await,
        30,
        "{on:?}: modified 4 minutes before the cursor: read"
    );
    assert_eq!(
        cycle_after(modified + Duration::minutes(5)).await,
        30,
        "{on:?}: exactly 5 minutes before: read"
    );
    // Past the overlap, only contacts with newer activity (engagements) are read.
    let past = cycle_after(modified + Duration::minutes(5) + Duration::milliseconds(1)).await;
    assert!(past < 30, "{on:?}: more than 5 minutes before: not read ({past} read)");
    app.stack.shutdown().await.unwrap();
}

/// `leadsync status` on the store at `url`, its stdout.
fn status_command(url: &str) -> String {
    status_command_with(url, &[])
}

/// `leadsync status` with more arguments, on the store at `url`.
fn status_command_with(url: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .arg("status")
        .args(args)
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .env("LEADSYNC__STORE__URL", url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

// README: "validation errors become dead letters with Salesforce's message (`leadsync status` lists them)"; "promotions wait in the outbox and `status` says why"
async fn status_lists_dead_letters_and_says_why_promotions_wait(on: Backend) {
    let (url, _dir) = on.fresh().await;
    // An org whose allocation leaves leadsync's 20 % share too small for the promotions.
    let sandbox = leadsync::sandbox::SandboxConfig {
        salesforce_daily_allocation: 10,
        ..TestApp::sandbox_config(300)
    };
    let app = TestApp::start_configured(sandbox, Some(url.clone())).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let waiting = s
        .store
        .outbox_in(OutboxKind::Promote, OutboxState::Pending)
        .await
        .unwrap();
    assert!(!waiting.is_empty(), "{on:?}: promotions wait");

    // A write HubSpot refuses (the contact was deleted there) becomes a dead letter.
    let gone = contact(7);
    assert!(app.stack.sandbox.delete_contact(&gone));
    let item = queue_write(&app, "claims:gone", &gone, &[("leadsync_reason", "x")]).await;
    s.drain_outbox(Priority::Background, app.now()).await.unwrap();
    let dead = s
        .store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Dead)
        .await
        .unwrap();
    assert!(dead.iter().any(|d| d.id == item.id), "{on:?}: {dead:?}");

    let at = app.now().timestamp_millis();
    assert_eq!(
        app.post_signed_webhook(&event("contact.creation", &contact(12), at))
            .await,
        200
    );
    app.run_inbox_until_idle().await;

    let text = status_command(&url);
    assert!(text.contains("dead letters: HubSpot writes"), "{on:?}: {text}");
    assert!(
        text.contains(&format!("item {} · contact {gone} · ", item.id)) && text.contains("OBJECT_NOT_FOUND"),
        "{on:?}: {text}"
    );
    let hold = text
        .lines()
        .find(|l| l.starts_with("promotions wait: "))
        .unwrap_or_else(|| panic!("{on:?}: no hold reason: {text}"));
    assert!(hold.contains("20% of the org's 10"), "{on:?}: {hold}");
    // One webhook event, processed: nothing waits, it is kept until pruned.
    assert!(
        text.contains("inbox: 0 event(s) waiting; 1 kept in all (processed ones are pruned after 7 days)"),
        "{on:?}: {text}"
    );
    app.stack.shutdown().await.unwrap();
}

// README: "within a process, one flush of the outbox runs at a time (two would take the same items)"
async fn two_flushes_at_once_write_each_contact_once(on: Backend) {
    let (app, _, _dir) = app_on(on, 120).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let contacts: Vec<String> = (0..100).map(contact).collect();
    for c in &contacts {
        queue_write(
            &app,
            &format!("claims:twice:{c}"),
            c,
            &[("leadsync_reason", "flushed once")],
        )
        .await;
    }
    let writes = app.stack.sandbox.hubspot_writes();
    let (one, two) = (s.clone(), s.clone());
    let now = app.now();
    let (a, b) = tokio::join!(
        one.drain_outbox(Priority::Background, now),
        two.drain_outbox(Priority::Background, now)
    );
    a.unwrap();
    b.unwrap();
    let after = app.stack.sandbox.hubspot_writes();
    let twice: Vec<_> = contacts
        .iter()
        .filter(|c| after.get(*c).copied().unwrap_or(0) != writes.get(*c).copied().unwrap_or(0) + 1)
        .collect();
    let counts: Vec<_> = twice.iter().map(|c| (writes.get(*c), after.get(*c))).collect();
    assert!(
        twice.is_empty(),
        "{on:?}: not written exactly once: {twice:?} {counts:?}"
    );
    app.stack.shutdown().await.unwrap();
}

// README: "the search API's \"secondly\" 429 waits a second"
// Real clock (a paused one jumps to the client's timeouts while wiremock answers on a loaded
// machine): the secondly wait is made short and the ten-second one an hour, so finishing at all
// proves which wait the client chose; no wall-clock margin is asserted.
#[tokio::test]
async fn a_search_secondly_429_waits_a_second_then_retries() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "status": "error", "message": "You have reached your secondly limit.",
            "category": "RATE_LIMITS", "correlationId": "c-3"
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 1, "results": [
            {"id": "1", "properties": {"hs_object_id": "1", "lastmodifieddate": "2026-11-25T11:00:00Z"},
             "createdAt": "2026-11-01T00:00:00Z", "updatedAt": "2026-11-25T11:00:00Z"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let config = leadsync::hubspot::client::HubSpotClientConfig {
        retry: leadsync::hubspot::retry::RetryPolicy {
            secondly_wait: StdDuration::from_millis(50),
            ten_secondly_wait: StdDuration::from_secs(3600),
            ..leadsync::hubspot::retry::RetryPolicy::default()
        },
        ..crate::support::hubspot_config(&server.uri())
    };
    let client = leadsync::hubspot::client::HubSpotClient::new(
        config,
        leadsync::hubspot::auth::HubSpotAuth::static_token(Some(42), secrecy::SecretString::from("pat-test")),
    )
    .unwrap();
    let start = std::time::Instant::now();
    let search = client.search_modified(
        "contacts",
        "lastmodifieddate",
        0,
        2_000_000_000_000,
        &[],
        Priority::Background,
    );
    let found = tokio::time::timeout(StdDuration::from_secs(600), search)
        .await
        .expect("the secondly wait, not the ten-second window's hour")
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        start.elapsed() >= StdDuration::from_millis(50),
        "it waited before the retry"
    );
    assert_eq!(client.stats().rate_limited(), 1);
}

/// The sum of every series of metric `name` in a Prometheus scrape, or None when it is absent.
fn metric(scrape: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn scrape(app: &TestApp) -> String {
    reqwest::get(format!("http://{}/metrics", app.stack.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// README: "`GET /metrics` (Prometheus: API calls by system and endpoint, 429s, limiter waits, inbox depth and age, evaluations, transitions by stage, promotions, dead letters, webhook acknowledgement histogram, outbox items by state)"
#[tokio::test]
async fn every_metric_the_readme_names_is_scraped_and_moves_with_its_work() {
    let app = TestApp::start(300).await;
    let before = scrape(&app).await;
    backfill(&app).await;
    // A HubSpot write refused for good: a dead letter.
    let gone = contact(9);
    assert!(app.stack.sandbox.delete_contact(&gone));
    queue_write(&app, "claims:metrics:gone", &gone, &[("leadsync_reason", "x")]).await;
    app.stack
        .syncer
        .drain_outbox(Priority::Background, app.now())
        .await
        .unwrap();
    // A webhook acknowledged and left in the inbox.
    let at = app.now().timestamp_millis();
    assert_eq!(
        app.post_signed_webhook(&event("contact.creation", &contact(11), at))
            .await,
        200
    );
    let after = scrape(&app).await;

    // Counters and histograms are process-wide (other tests in this binary add to them too):
    // each must be there and have grown by at least what this test's own work adds.
    let at_least = |name: &str, by: f64| {
        let (b, a) = (metric(&before, name).unwrap_or(0.0), metric(&after, name));
        let a = a.unwrap_or_else(|| panic!("{name} missing from /metrics:\n{after}"));
        assert!(a >= b + by, "{name}: {b} before, {a} after, expected at least +{by}");
    };
    at_least("leadsync_evaluations_total", 300.0);
    at_least("leadsync_transitions_total", 1.0);
    at_least("leadsync_promotions_total", 1.0);
    at_least("leadsync_dead_letters_total", 1.0);
    at_least("leadsync_webhook_ack_seconds_count", 1.0);
    assert!(
        after.contains("leadsync_transitions_total{to=\"sql\"}"),
        "transitions by stage: {after}"
    );
    // This app's own clients and store: exact.
    let calls = |system: &str| {
        after
            .lines()
            .filter(|l| l.starts_with(&format!("leadsync_api_calls_total{{system=\"{system}\",")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(calls("hubspot") > 0.0 && calls("salesforce") > 0.0, "{after}");
    assert!(after.contains("endpoint=\""), "calls by endpoint: {after}");
    assert_eq!(
        metric(&after, "leadsync_hubspot_rate_limited_total"),
        Some(0.0),
        "no 429 here"
    );
    for system in ["hubspot", "salesforce"] {
        let line = format!("leadsync_token_requests_total{{system=\"{system}\"}} ");
        let n: f64 = after
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str())?.parse().ok())
            .unwrap_or_else(|| panic!("{line}missing: {after}"));
        assert!(n >= 1.0, "{system}: the backfill got a token: {n}");
    }
    assert!(
        metric(&after, "leadsync_limiter_wait_seconds_total").unwrap() > 0.0,
        "the backfill was paced: {after}"
    );
    // Gauges are set from this app's store at each scrape; another test's scrape may set them
    // meanwhile, so a few scrapes are allowed to see this store's values.
    let mut seen = false;
    for _ in 0..20 {
        let s = scrape(&app).await;
        if metric(&s, "leadsync_inbox_depth") == Some(1.0)
            && metric(&s, "leadsync_inbox_oldest_age_seconds").is_some()
            && s.contains("leadsync_outbox_items{kind=\"hubspot_write\",state=\"dead\"} 1")
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "inbox depth 1, its age and the dead write: {after}");
    app.stack.shutdown().await.unwrap();
}

// README: "`leadsync status --contact ID` shows one contact's audit trail"
async fn status_of_one_contact_shows_its_audit_trail(on: Backend) {
    let (app, url, _dir) = app_on(on, 120).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    let c = promoted[0].contact_id.clone();
    let trail = s.store.audit(&id(&c)).await.unwrap();
    assert!(!trail.is_empty(), "{on:?}");
    let text = status_command_with(&url, &["--contact", &c]);
    let stage = s.store.contacts(&[id(&c)]).await.unwrap()[&id(&c)].state.stage.unwrap();
    assert!(
        text.starts_with(&format!("contact {c}: {}, ", stage.as_str())),
        "{on:?}: {text}"
    );
    assert!(
        text.contains(&format!("{} change(s), oldest first:", trail.len())),
        "{on:?}: {text}"
    );
    // Every change with its reason and the rules that made it, in order.
    let lines: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(lines.len(), trail.len(), "{on:?}: {text}");
    for (line, a) in lines.iter().zip(&trail) {
        assert!(line.contains(&a.change) && line.contains(&a.reason), "{on:?}: {line}");
        assert!(line.contains(&a.rules), "{on:?}: {line}");
    }
    let unknown = status_command_with(&url, &["--contact", "999999999"]);
    assert!(unknown.contains("not in the store"), "{on:?}: {unknown}");
    app.stack.shutdown().await.unwrap();
}

/// Makes a stored contact's state unreadable, as a hand-edited row would.
async fn corrupt_state(url: &str, contact: &str) {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("UPDATE contacts SET state = 'not json' WHERE contact_id = $1")
        .bind(contact)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

// README: "a batch that fails is retried contact by contact, and what still fails waits with a growing delay (capped at 10 minutes)"
async fn a_failing_inbox_event_holds_back_only_its_contact_and_waits_at_most_ten_minutes(on: Backend) {
    let (app, url, _dir) = app_on(on, 40).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let (good, bad) = (contact(3), contact(4));
    corrupt_state(&url, &bad).await;
    let at = app.now().timestamp_millis();
    for c in [&good, &bad] {
        assert_eq!(app.post_signed_webhook(&event("contact.creation", c, at)).await, 200);
    }
    let evaluated_before = s.store.contacts(&[id(&good)]).await.unwrap()[&id(&good)].evaluated_at;
    let mut t = app.now() + Duration::seconds(30);
    let (_, taken) = s.drain_inbox(t).await.unwrap();
    assert_eq!(taken, 2, "{on:?}");
    // The contact whose events can be processed went through; the other waits alone.
    let good_row = &s.store.contacts(&[id(&good)]).await.unwrap()[&id(&good)];
    assert!(good_row.evaluated_at > evaluated_before, "{on:?}: evaluated again");
    assert_eq!(s.store.inbox_depth().await.unwrap().0, 1, "{on:?}");
    let (failing, why) = s.store.inbox_failing().await.unwrap();
    assert_eq!(failing, 1, "{on:?}");
    assert!(
        why.unwrap_or_default().contains(&format!("contacts/{bad}.state")),
        "{on:?}"
    );
    // 5 s after the first failure, doubling, never more than 10 minutes.
    for (attempts, wait_s) in [5, 10, 20, 40, 80, 160, 320, 600, 600].into_iter().enumerate() {
        let wait = Duration::seconds(wait_s);
        let before = s.drain_inbox(t + wait - Duration::milliseconds(1)).await.unwrap().1;
        assert_eq!(before, 0, "{on:?}: retry {} came before {wait_s} s", attempts + 2);
        t += wait;
        assert_eq!(
            s.drain_inbox(t).await.unwrap().1,
            1,
            "{on:?}: retry {} after {wait_s} s",
            attempts + 2
        );
    }
    assert_eq!(s.store.inbox_depth().await.unwrap().0, 1, "{on:?}: kept, never dropped");
    app.stack.shutdown().await.unwrap();
}

// README: "reading a contact's stored state, deciding and saving happen under one lock (so a slow rescore never saves an older state over a webhook's newer one)"
async fn two_passes_at_once_on_one_contact_decide_and_save_it_once(on: Backend) {
    two_rescores_at_once_save_each_change_once(on, 120).await
}

// README: "a page read ahead is used only if no other evaluation held the lock since"
async fn two_rescores_at_once_over_two_pages_save_each_change_once(on: Backend) {
    // Each rescore reads its second page while deciding its first: the second rescore's read
    // of page two comes before the first one saves it, so it must be read again.
    two_rescores_at_once_save_each_change_once(on, 1_100).await
}

async fn two_rescores_at_once_save_each_change_once(on: Backend, contacts: u32) {
    let (app, _, _dir) = app_on(on, contacts).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    // Two months on, two passes over the same contacts at once (the nightly rescore beside a
    // `backfill --rescore`): scores decay and contacts go dormant, decided and saved once.
    let later = app.now() + Duration::days(60);
    let (one, two) = (s.clone(), s.clone());
    let (a, b) = tokio::join!(one.rescore(later, false), two.rescore(later, false));
    let (a, b) = (a.unwrap(), b.unwrap());
    let moves = |r: &leadsync::sync::SyncReport| r.moves.values().sum::<u64>();
    assert!(moves(&a) + moves(&b) > 0, "{on:?}: the rescore changed something");
    assert!(
        moves(&a) == 0 || moves(&b) == 0,
        "{on:?}: the second pass decided from what the first saved: {:?} and {:?}",
        a.moves,
        b.moves
    );
    let mut twice = Vec::new();
    for r in s.store.contact_page(None, 2_000).await.unwrap() {
        let changes: Vec<String> = s
            .store
            .audit(&r.contact_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.at == later)
            .map(|a| a.change)
            .collect();
        let mut once = changes.clone();
        once.sort();
        once.dedup();
        if once.len() != changes.len() {
            twice.push((r.contact_id.as_str().to_string(), changes));
        }
    }
    assert!(twice.is_empty(), "{on:?}: changes saved twice: {twice:?}");
    app.stack.shutdown().await.unwrap();
}

/// The contacts the store links to Salesforce records.
async fn promoted(store: &Store) -> Vec<String> {
    let rows = store.contact_page(None, 100_000).await.unwrap();
    rows.into_iter()
        .filter(|r| r.state.salesforce.as_ref().is_some_and(|l| l.contact_id.is_some()))
        .map(|r| r.contact_id.as_str().to_string())
        .collect()
}

// README: "the drain promotes before it writes: a promoted contact's values and its Salesforce ids go out in one update"
async fn a_promoted_contact_is_written_to_hubspot_once_with_its_values_and_salesforce_ids(on: Backend) {
    let (app, _, _dir) = app_on(on, 400).await;
    backfill(&app).await;
    let sb = &app.stack.sandbox;
    let promoted = promoted(&app.stack.syncer.store).await;
    assert!(
        promoted.len() >= 10,
        "{on:?}: the portal has leads to promote: {}",
        promoted.len()
    );
    let writes = sb.hubspot_writes();
    for c in &promoted {
        assert_eq!(
            writes.get(c).copied(),
            Some(1),
            "{on:?}: contact {c}: its values and Salesforce ids in one update"
        );
        let props = sb.hubspot_contact(c).unwrap();
        assert_eq!(
            props.get("leadsync_stage").map(String::as_str),
            Some("sql"),
            "{on:?}: {c}"
        );
        assert!(
            props.get("leadsync_sf_contact_id").is_some_and(|v| !v.is_empty())
                && props.get("leadsync_sf_opportunity_id").is_some_and(|v| !v.is_empty()),
            "{on:?}: {c}: the Salesforce ids reached HubSpot"
        );
    }
    assert!(sb.hubspot_repeated_writes().is_empty(), "{on:?}: nothing written twice");
    app.stack.shutdown().await.unwrap();
}

// README: "a crash between the promotion and the write-back loses neither (both are outbox items until written)"
async fn a_crash_between_a_promotion_and_its_write_back_still_writes_values_and_ids_once(on: Backend) {
    let (app, _, _dir) = app_on(on, 300).await;
    backfill(&app).await;
    let s = &app.stack.syncer;
    let sb = &app.stack.sandbox;
    let leads = crate::support::demo_ready_leads(&s.store).await;
    let lead = leads.into_iter().next().expect("an active lead");
    let writes = sb.hubspot_writes().get(&lead).copied().unwrap_or(0);
    sb.submit_form(&lead, "Request a demo").expect("submitted");
    for _ in 0..200 {
        if sb.webhook_deliveries().iter().all(|d| d.finished) && s.store.inbox_depth().await.unwrap().0 > 0 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    while s.drain_inbox(app.now()).await.unwrap().1 > 0 {}
    // The promotion alone, then the process dies before any HubSpot write.
    let promoter = s.promoter.as_ref().expect("Salesforce configured");
    let (n, paused) = promoter
        .drain(s, app.now(), leadsync::store::Lapsed::Expired)
        .await
        .unwrap();
    assert_eq!((n, paused), (1, false), "{on:?}: the demo request promoted the lead");
    assert_eq!(
        sb.hubspot_writes().get(&lead).copied().unwrap_or(0),
        writes,
        "{on:?}: nothing written yet"
    );
    let restarted = app.restarted_syncer().await;
    restarted.drain_outbox(Priority::Background, app.now()).await.unwrap();
    assert_eq!(
        sb.hubspot_writes().get(&lead).copied().unwrap_or(0),
        writes + 1,
        "{on:?}: values and ids in one update after the restart"
    );
    let props = sb.hubspot_contact(&lead).unwrap();
    assert_eq!(
        props.get("leadsync_stage").map(String::as_str),
        Some("sql"),
        "{on:?}: the values"
    );
    assert!(
        props.get("leadsync_sf_opportunity_id").is_some_and(|v| !v.is_empty()),
        "{on:?}: the ids"
    );
    app.stack.shutdown().await.unwrap();
}

// README: "inbox and outbox work is claimed (PostgreSQL: `FOR UPDATE SKIP LOCKED`): two drains on one store never take the same item"
async fn two_drains_on_two_store_handles_claim_each_write_once(on: Backend) {
    let (app, _, _dir) = app_on(on, 260).await;
    backfill(&app).await;
    let contacts: Vec<String> = (0..250).map(contact).collect();
    for c in &contacts {
        queue_write(
            &app,
            &format!("claims:replicas:{c}"),
            c,
            &[("leadsync_reason", "claimed once")],
        )
        .await;
    }
    let writes = app.stack.sandbox.hubspot_writes();
    // Two syncers, each with its own store handle (pool) and its own in-process lock: what two
    // replicas are.
    let (one, two) = (app.stack.syncer.clone(), app.restarted_syncer().await);
    let now = app.now();
    let (a, b) = tokio::join!(
        one.drain_outbox(Priority::Background, now),
        two.drain_outbox(Priority::Background, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let after = app.stack.sandbox.hubspot_writes();
    let not_once: Vec<_> = contacts
        .iter()
        .filter(|c| after.get(*c).copied().unwrap_or(0) != writes.get(*c).copied().unwrap_or(0) + 1)
        .collect();
    assert!(not_once.is_empty(), "{on:?}: not written exactly once: {not_once:?}");
    assert_eq!(
        a.written + b.written,
        contacts.len() as u64,
        "{on:?}: together, all of them"
    );
    for c in &contacts {
        assert_eq!(
            app.stack.sandbox.hubspot_contact(c).unwrap()["leadsync_reason"],
            "claimed once"
        );
    }
    assert!(
        app.stack
            .syncer
            .store
            .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Sending)
            .await
            .unwrap()
            .is_empty(),
        "{on:?}: no claim left behind"
    );
    app.stack.shutdown().await.unwrap();
}

// README: "inbox and outbox work is claimed (PostgreSQL: `FOR UPDATE SKIP LOCKED`)"
async fn two_inbox_passes_on_two_store_handles_claim_each_event_once(on: Backend) {
    let (app, url, _dir) = app_on(on, 40).await;
    let now = chrono::Utc::now();
    for n in 0..300u64 {
        let body = event(
            "contact.creation",
            &(CONTACT_ID_BASE + n).to_string(),
            now.timestamp_millis(),
        );
        assert_eq!(app.post_signed_webhook(&body).await, 200);
    }
    let (a, b) = (app.stack.syncer.store.clone(), Store::connect(&url).await.unwrap());
    let take = |store: Store| async move {
        let mut got = Vec::new();
        loop {
            let rows = store.inbox_claim(now, 7).await.unwrap();
            if rows.is_empty() {
                return got;
            }
            got.extend(rows.into_iter().map(|r| r.id));
            tokio::task::yield_now().await;
        }
    };
    let (mine, theirs) = tokio::join!(take(a.clone()), take(b.clone()));
    let mut all: Vec<i64> = mine.iter().chain(&theirs).copied().collect();
    all.sort_unstable();
    let total = all.len();
    all.dedup();
    assert_eq!(all.len(), total, "{on:?}: an event claimed by both passes");
    assert_eq!(
        total,
        300,
        "{on:?}: together, every event ({} and {})",
        mine.len(),
        theirs.len()
    );
    assert!(
        a.inbox_due(now, 10).await.unwrap().is_empty(),
        "{on:?}: claimed events are not due"
    );
    // A worker's start frees what a stopped run had claimed: due again at once.
    assert_eq!(b.inbox_free_claims().await.unwrap(), 300);
    assert_eq!(a.inbox_claim(now, 1_000).await.unwrap().len(), 300, "{on:?}");
    b.close().await;
    app.stack.shutdown().await.unwrap();
}

// README (Figures, backfill): "a drain sends up to three batch updates at once … a call that
// fails leaves only its own contacts due again"
#[tokio::test]
async fn a_drain_sends_three_batch_updates_from_one_claim_and_a_refused_one_leaves_only_its_contacts_due() {
    use std::sync::Arc;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let (store, _dir) = crate::support::sqlite().await;
    let server = MockServer::start().await;
    // The call that carries contact 1150 is refused whole; the others are echoed.
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/update"))
        .and(body_string_contains("\"1150\""))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "category": "VALIDATION_ERROR", "message": "refused for the test"
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    crate::support::mount_batch_update_echo(&server).await;
    let now = crate::common::now();
    for i in 1000..1300 {
        let payload = json!({"properties": {"leadsync_grade": "B2"}}).to_string();
        store
            .enqueue(
                OutboxKind::HubSpotWrite,
                &format!("hs:{i}"),
                &i.to_string(),
                &payload,
                now,
            )
            .await
            .unwrap();
    }
    let rules = leadsync::lifecycle::Rules::from_source(&leadsync::diagnostics::SourceText::new(
        "lifecycle.toml",
        crate::common::default_rules_text(),
    ))
    .unwrap();
    let client = crate::support::hubspot_client(&server.uri());
    let syncer = leadsync::sync::Syncer::new(Arc::new(rules), Arc::new(client), store.clone(), None);
    assert!(
        syncer.drain_outbox(Priority::Background, now).await.is_err(),
        "the refused call is the drain's error"
    );

    let updates = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/crm/v3/objects/contacts/batch/update")
        .count();
    assert_eq!(updates, 3, "one claim of 300 contacts, three calls of 100");
    let due: Vec<String> = store
        .due(OutboxKind::HubSpotWrite, now + Duration::minutes(2), 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.contact_id)
        .collect();
    let refused: Vec<String> = (1100..1200).map(|i| i.to_string()).collect();
    assert_eq!(due, refused, "only the refused call's contacts are due again");
    for (id, written) in [("1000", true), ("1199", false), ("1299", true)] {
        let id = HubSpotId::try_from(id.to_string()).unwrap();
        assert_eq!(store.wrote(&id, "leadsync_grade", "B2").await.unwrap(), written, "{id}");
    }
}
