//! The sales SLA wired into the pipeline, on both stores, HubSpot and the notification webhook
//! in wiremock: a decision starts the timers and the commit saves them with the contact; the
//! sweep assesses them with the ledger's and Salesforce's touches and queues the ladder's steps
//! once; the outbox worker carries each out once (a task for the owner, a webhook for the
//! manager, a reassignment that skips reps at capacity or away, sales-rejected recycling the
//! lead), across a restart. Time is passed in (a wall-clock test policy, in minutes).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use leadsync::diagnostics::SourceText;
use leadsync::hubspot::limiter::Priority;
use leadsync::hubspot::types::HubSpotObject;
use leadsync::lifecycle::snapshot::Direction;
use leadsync::lifecycle::{Event, EventKind, HubSpotId, Rules, Stage, Status};
use leadsync::sla::SlaFile;
use leadsync::sla::timer::{System, Touch};
use leadsync::store::{OutboxKind, OutboxState, SlaTimer, Store};
use leadsync::sync::Syncer;
use leadsync::sync::decide::{PulledContact, Seen, decide_pulled, sla_starts};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{SlaText, default_rules_text, icp, leadsync_in, now, said};
use crate::support::{
    Backend, TestApp, hubspot_client, mount_batch_update_echo, owned_leads_below_sql, stored_contact,
};
use leadsync::sandbox::{SalesActivity, SalesActivityKind};
use leadsync::sync::backfill::BackfillOptions;

/// A team working around the clock (so availability is only absences and caps), a wall-clock
/// policy in minutes with the four kinds of ladder step, and a demo request's policy whose
/// `path` and touches `by` the test says.
fn sla(webhook: &str, demo_path: &str, demo_by: &str) -> SlaText {
    SlaText::round_the_clock("test", "t", "Europe/Paris")
        .manager("80009")
        .fallback("00G000000000009AAA")
        .member(
            "a@leadsync-test.com",
            "hubspot_owner = \"80001\"\nsalesforce_user = \"005000000000081AAA\"",
        )
        .member(
            "b@leadsync-test.com",
            "hubspot_owner = \"80002\"\nsalesforce_user = \"005000000000082AAA\"\nabsences = [{ from = \"2026-11-01\", to = \"2026-12-31\" }]",
        )
        .member(
            "c@leadsync-test.com",
            "hubspot_owner = \"80003\"\nsalesforce_user = \"005000000000083AAA\"\ncapacity = 1",
        )
        .member(
            "d@leadsync-test.com",
            "hubspot_owner = \"80004\"\nsalesforce_user = \"005000000000084AAA\"",
        )
        .wall_policy(
            "mql_fast",
            "mql",
            &format!(
                r#"
first_touch = "10m"
touches = {{ kinds = ["call", "sales_email", "meeting"], by = "owner_or_team" }}
ladder = [
  {{ step = "owner_task", after = "0m" }},
  {{ step = "manager_webhook", after = "5m", webhook = "{webhook}" }},
  {{ step = "reassign", after = "10m" }},
  {{ step = "sales_rejected", after = "20m", reason = "no_follow_up" }},
]
"#
            ),
        )
        .wall_policy(
            "demo_fast",
            "sql",
            &format!(
                r#"
path = "{demo_path}"
first_touch = "5m"
touches = {{ kinds = ["call"], by = "{demo_by}" }}
ladder = [{{ step = "owner_task", after = "0m" }}]
"#
            ),
        )
}

/// The test's SLA file: the demo request's policy on the shortcut only, the owner's touch.
fn sla_text(webhook: &str) -> String {
    sla(webhook, "shortcut", "owner").text()
}

fn sla_file(webhook: &str) -> SlaFile {
    sla(webhook, "shortcut", "owner").compiled("sla.toml")
}

/// `leadsync explain --contact` on this store, with this SLA file beside the configuration.
fn explain_contact(url: &str, sla: &str, contact: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/sla.toml"), sla).unwrap();
    std::fs::write(dir.path().join("leadsync.toml"), format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let args = ["explain", "--contact", contact, "--config", "leadsync.toml"];
    let (code, out, err) = said(&mut leadsync_in(dir.path(), &args));
    assert_eq!(code, Some(0), "{err}");
    out
}

/// HubSpot in wiremock: the contact has no tasks yet, a task create answers its id, a batch
/// update echoes; and the manager's notification webhook.
async fn hubspot() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v4/associations/contacts/tasks/batch/read"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "7001", "properties": {}})))
        .mount(&server)
        .await;
    mount_batch_update_echo(&server).await;
    Mock::given(method("POST"))
        .and(path("/hooks/sla"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

fn syncer(server: &MockServer, store: Store) -> Syncer {
    let client = hubspot_client(&server.uri());
    let rules = Rules::from_source(&SourceText::new("lifecycle.toml", default_rules_text())).unwrap();
    Syncer::new(Arc::new(rules), Arc::new(client), store, None)
        .with_sla(sla_file(&format!("{}/hooks/sla", server.uri())))
}

/// Contact 501 as HubSpot returns it, owned by `owner`, with this pull's events.
fn pulled(owner: &str, events: Vec<Event>) -> PulledContact {
    let mut properties: HashMap<String, Option<String>> = icp()
        .engaged_35()
        .snap
        .properties
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    properties.insert("hubspot_owner_id".into(), Some(owner.into()));
    PulledContact {
        contact: HubSpotObject {
            id: "501".into(),
            properties,
            archived: false,
        },
        company: None,
        events,
        counters: Vec::new(),
    }
}

/// The events that make 501 an MQL (webinar and a meeting nobody logged as theirs).
fn mql_events() -> Vec<Event> {
    icp().engaged_35().snap.events
}

fn call(id: &str, by: &str, at: DateTime<Utc>) -> Event {
    Event {
        id: id.into(),
        kind: EventKind::Call,
        at,
        url: None,
        form: None,
        campaign: None,
        direction: Some(Direction::Outbound),
        outcome: Some("connected".into()),
        owner: Some(by.into()),
    }
}

/// Saves 501's first decision (it becomes an MQL at `now()`, owned by 80001).
/// Contact 501 pulled from HubSpot owned by `owner` with `events`, decided at `at` against its
/// stored row and ledger (as the cycle decides a pull), and committed.
async fn pull_and_commit(s: &Syncer, owner: &str, events: Vec<Event>, at: DateTime<Utc>) {
    let id = HubSpotId::try_from("501".to_string()).unwrap();
    let row = s.store.contacts(std::slice::from_ref(&id)).await.unwrap().remove(&id);
    let ledger = s
        .store
        .events(std::slice::from_ref(&id))
        .await
        .unwrap()
        .remove(&id)
        .unwrap();
    let e = decide_pulled(&s.rules, &s.sla, pulled(owner, events), row.as_ref(), &ledger, at).unwrap();
    s.store.commit(&[e], None).await.unwrap();
}

async fn new_mql(s: &Syncer) {
    let e = decide_pulled(&s.rules, &s.sla, pulled("80001", mql_events()), None, &[], now()).unwrap();
    assert_eq!(e.state.stage, Some(Stage::Mql));
    s.store.commit(&[e], None).await.unwrap();
}

/// Saves contact `id` as a sales-qualified lead promoted to Salesforce user `owner`: an open
/// lead of that rep, as `Store::open_leads` counts them for the caps.
async fn hold_open_lead(s: &Syncer, id: &str, owner: &str) {
    let demo: Vec<Event> = icp().form("Request a demo", 0.0).snap.events;
    let mut e = decide_pulled(&s.rules, &s.sla, pulled("80003", demo), None, &[], now()).unwrap();
    assert_eq!(e.state.stage, Some(Stage::Sql));
    let hid = HubSpotId::try_from(id.to_string()).unwrap();
    e.contact_id = hid.clone();
    e.sla_timers.clear();
    e.outbox.clear();
    s.store.commit(&[e], None).await.unwrap();
    let link = leadsync::lifecycle::snapshot::SalesforceLink {
        contact_id: Some(format!("003{id}")),
        ..Default::default()
    };
    s.store.set_promoted(&hid, &link, owner).await.unwrap();
    assert_eq!(s.store.open_leads().await.unwrap().get(owner), Some(&1));
}

async fn timer(store: &Store) -> SlaTimer {
    let mut all = store.sla_timers("501").await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

async fn sweep_and_drain(s: &Syncer, at: DateTime<Utc>) -> u64 {
    let r = s.sla_sweep(at).await.unwrap();
    s.drain_outbox(Priority::Background, at).await.unwrap();
    r.steps_queued
}

fn minutes(m: i64) -> DateTime<Utc> {
    now() + Duration::minutes(m)
}

// README (The sales SLA): a decision that moves a contact into a policy's stage starts its
// timer, by the path it took; the engine's decision says whether a shortcut took it there.
#[test]
fn a_decision_starts_the_timers_of_the_stage_and_path_it_entered() {
    let sla = sla_file("http://127.0.0.1:9/hooks/sla");
    let mql = icp().engaged_35().eval();
    let started = sla_starts(&sla, &mql, Seen::Before, Some("80001"));
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].record.policy, "mql_fast");
    assert_eq!(started[0].record.due_at, now() + Duration::minutes(10));
    assert_eq!(
        (started[0].owner.as_deref(), started[0].team.as_deref()),
        (Some("80001"), Some("t"))
    );
    assert_eq!(started[0].next_check_at, Some(now() + Duration::minutes(10)));
    // a demo request jumps to SQL by a shortcut: the shortcut's clock, not the MQL one
    let demo = icp().form("Request a demo", 0.0).eval();
    let started: Vec<String> = sla_starts(&sla, &demo, Seen::Before, None)
        .into_iter()
        .map(|t| t.record.policy)
        .collect();
    assert_eq!(started, ["demo_fast"]);
    // the same decision again moves nothing: nothing starts
    let again = icp().engaged_35();
    let first = again.eval();
    assert!(sla_starts(&sla, &again.after(&first).eval(), Seen::Before, Some("80001")).is_empty());
}

// README (The sales SLA): a contact seen for the first time (a backfill, the first cycle after
// install) starts a timer only when it entered the stage now: its clock starts at its latest
// activity, and only if that activity's first touch is not due yet. An MQL or a demo request
// older than the policy's first touch starts nothing; a demo request that just arrived from a
// new contact starts the shortcut's clock at the request.
#[test]
fn a_contact_first_seen_starts_a_timer_only_when_its_entry_is_fresh() {
    let sla = sla_file("http://127.0.0.1:9/hooks/sla");
    let rules = Rules::from_source(&SourceText::new("lifecycle.toml", default_rules_text())).unwrap();
    let demo: Vec<Event> = icp().form("Request a demo", 0.0).snap.events;
    let first_seen =
        |events: Vec<Event>, at| decide_pulled(&rules, &sla, pulled("80001", events), None, &[], at).unwrap();
    // Waiting since before leadsync saw them: at their stage, no timer.
    let old_mql = first_seen(icp().engaged_35().webinar("w2", 0.0).snap.events, minutes(30));
    assert_eq!(old_mql.state.stage, Some(Stage::Mql));
    assert!(old_mql.sla_timers.is_empty(), "{:?}", old_mql.sla_timers);
    let old_demo = first_seen(demo.clone(), minutes(60));
    assert_eq!(old_demo.state.stage, Some(Stage::Sql));
    assert!(old_demo.sla_timers.is_empty(), "{:?}", old_demo.sla_timers);
    // A fresh demo request from a new contact: the shortcut's clock, from the request.
    let fresh = first_seen(demo, minutes(2));
    let started: Vec<(&str, DateTime<Utc>, DateTime<Utc>)> = fresh
        .sla_timers
        .iter()
        .map(|t| (t.record.policy.as_str(), t.record.started_at, t.record.due_at))
        .collect();
    assert_eq!(started, [("demo_fast", now(), minutes(5))]);
}

// README (The sales SLA): the commit saves the timers with the contact, in one transaction.
async fn the_commit_saves_the_timer_a_decision_started(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let server = hubspot().await;
    let s = syncer(&server, Store::connect(&url).await.unwrap());
    new_mql(&s).await;
    let t = timer(&s.store).await;
    assert_eq!(t.record.policy, "mql_fast");
    assert_eq!((t.record.started_at, t.record.due_at), (now(), minutes(10)));
    assert_eq!(t.owner.as_deref(), Some("80001"));
    // the same pull again (a replayed webhook) starts nothing new
    let id = HubSpotId::try_from("501".to_string()).unwrap();
    let row = s.store.contacts(std::slice::from_ref(&id)).await.unwrap().remove(&id);
    let e = decide_pulled(
        &s.rules,
        &s.sla,
        pulled("80001", vec![]),
        row.as_ref(),
        &mql_events(),
        minutes(1),
    )
    .unwrap();
    assert!(e.sla_timers.is_empty());
    s.store.commit(&[e], None).await.unwrap();
    assert_eq!(s.store.sla_timers("501").await.unwrap().len(), 1);
}

// README (The sales SLA): with no touch the ladder climbs one step at a time, each once and in
// the audit log, across a restart: the owner's task, the manager's webhook (ids only), a
// reassignment that skips the absent rep and the one at capacity (the timer follows the new
// owner), and sales-rejected `no_follow_up`, which recycles the lead.
async fn an_untouched_mql_climbs_the_ladder_once_per_step_across_a_restart(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let server = hubspot().await;
    let s = syncer(&server, Store::connect(&url).await.unwrap());
    new_mql(&s).await;
    // Rep c (80003, cap 1) already holds an open lead: a promoted SQL it owns in Salesforce.
    hold_open_lead(&s, "999", "005000000000083AAA").await;

    assert_eq!(sweep_and_drain(&s, minutes(5)).await, 0, "not due yet");
    assert_eq!(sweep_and_drain(&s, minutes(10)).await, 1, "the owner's task");
    assert_eq!(sweep_and_drain(&s, minutes(11)).await, 0, "once");
    let creates = |reqs: &[Request]| reqs.iter().filter(|r| r.url.path() == "/crm/v3/objects/tasks").count();
    let sent = server.received_requests().await.unwrap();
    assert_eq!(creates(&sent), 1);
    let task: Value = sent
        .iter()
        .find(|r| r.url.path() == "/crm/v3/objects/tasks")
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(task["properties"]["hubspot_owner_id"], "80001");
    assert_eq!(task["associations"][0]["to"]["id"], "501");

    // Restart: the store closed and opened again, a new syncer.
    s.store.close().await;
    drop(s);
    let s = syncer(&server, Store::connect(&url).await.unwrap());
    assert_eq!(
        sweep_and_drain(&s, minutes(10)).await,
        0,
        "the first step is not done again"
    );
    assert_eq!(sweep_and_drain(&s, minutes(15)).await, 1, "the manager's webhook");
    let sent = server.received_requests().await.unwrap();
    let hooks: Vec<&Request> = sent.iter().filter(|r| r.url.path() == "/hooks/sla").collect();
    assert_eq!(hooks.len(), 1);
    let hook = String::from_utf8(hooks[0].body.clone()).unwrap();
    assert!(
        hook.contains("\"contact\":\"501\"") && hook.contains("mql_fast"),
        "{hook}"
    );
    assert!(!hook.contains('@') && !hook.contains("Sam"), "ids only: {hook}");

    assert_eq!(sweep_and_drain(&s, minutes(20)).await, 1, "the reassignment");
    let id = HubSpotId::try_from("501".to_string()).unwrap();
    let owner =
        |rows: HashMap<HubSpotId, leadsync::store::ContactRow>| rows[&id].properties["hubspot_owner_id"].clone();
    // a is leaving, b is absent, c is at capacity: d.
    assert_eq!(
        owner(s.store.contacts(std::slice::from_ref(&id)).await.unwrap()),
        "80004"
    );
    let sent = server.received_requests().await.unwrap();
    let wrote_owner = sent
        .iter()
        .filter(|r| r.url.path() == "/crm/v3/objects/contacts/batch/update")
        .any(|r| String::from_utf8_lossy(&r.body).contains("\"hubspot_owner_id\":\"80004\""));
    assert!(wrote_owner, "the new owner is written to HubSpot");
    assert_eq!(sweep_and_drain(&s, minutes(21)).await, 0, "reassigned once only");
    // One routing: the choice is stored with its trace, the caps read from the open leads.
    let assigned = s.store.assignments(&id).await.unwrap();
    assert_eq!(assigned.len(), 1, "{assigned:?}");
    assert_eq!(assigned[0].owner, "005000000000084AAA");
    let why = assigned[0].trace.to_string();
    for part in [
        "005000000000081AAA: dropped, excluded from this reassignment",
        "005000000000082AAA: dropped, absent until",
        "005000000000083AAA: dropped, at capacity (1 of 1 open leads)",
        "005000000000084AAA: chosen",
    ] {
        assert!(why.contains(part), "{part}\n{why}");
    }
    assert_eq!(
        timer(&s.store).await.owner.as_deref(),
        Some("80004"),
        "the timer follows the new owner"
    );

    assert_eq!(sweep_and_drain(&s, minutes(30)).await, 1, "sales-rejected");
    let row = stored_contact(&s.store, &id).await;
    assert_eq!(row.state.status, Status::Recycle, "{:?}", row.state);
    assert_eq!(row.state.recycle_count, 1);

    assert_eq!(sweep_and_drain(&s, minutes(60)).await, 0, "nothing left to climb");
    let t = timer(&s.store).await;
    assert_eq!(t.record.steps_done.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(t.record.breached_at.is_some() && t.record.first_touch_at.is_none());
    let audit = s.store.audit(&id).await.unwrap();
    let steps: Vec<&str> = audit
        .iter()
        .filter(|a| a.change.contains("SlaStep"))
        .map(|a| a.change.as_str())
        .collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert_eq!(
        creates(&server.received_requests().await.unwrap()),
        1,
        "one task in all"
    );

    // README (The sales SLA): `leadsync explain --contact` shows the timer from the store.
    let shown = explain_contact(&url, &sla_text(&format!("{}/hooks/sla", server.uri())), "501");
    for part in [
        "mql_fast (team t, owner 80004): started 2026-11-24 09:00 UTC, first touch due 2026-11-24 09:10 UTC, breached 2026-11-24 09:10 UTC",
        "first touch: none yet; attempts: 0",
        "ladder steps done: 1 (owner task), 2 (manager webhook), 3 (reassignment), 4 (sales-rejected (no_follow_up)); next check: none",
    ] {
        assert!(shown.contains(part), "{part}\n{shown}");
    }
}

// README (The sales SLA): the notification webhook is at least once, with a key: every send of
// a step carries the step's key in `Idempotency-Key`, the same on a retry, so the receiver can
// drop a repeat (here the first send fails and the retry repeats the key).
async fn the_notification_webhook_sends_the_same_key_on_a_retry(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let server = hubspot().await;
    Mock::given(method("POST"))
        .and(path("/hooks/sla"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let s = syncer(&server, Store::connect(&url).await.unwrap());
    new_mql(&s).await;
    sweep_and_drain(&s, minutes(10)).await;
    sweep_and_drain(&s, minutes(15)).await;
    s.drain_outbox(Priority::Background, minutes(16)).await.unwrap();
    let sent = server.received_requests().await.unwrap();
    let keys: Vec<String> = sent
        .iter()
        .filter(|r| r.url.path() == "/hooks/sla")
        .map(|r| {
            r.headers
                .get(leadsync::sync::outbox::sla_step::IDEMPOTENCY_KEY)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    let done = s.store.outbox_in(OutboxKind::SlaStep, OutboxState::Done).await.unwrap();
    let step = done
        .iter()
        .find(|i| i.payload.contains("manager_webhook"))
        .expect("the webhook step is done");
    assert_eq!(keys, [step.key.clone(), step.key.clone()], "sent twice, one key");
}

// README (The sales SLA): a touch stops the timer: the owner's call from the engagement
// ledger, or a Task logged in Salesforce (kept as a touch by the sweep's read); the same
// call logged in both counts once.
async fn a_touch_from_either_crm_stops_the_timer_before_its_ladder(backend: Backend) {
    for system in [System::HubSpot, System::Salesforce] {
        let (url, _dir) = backend.fresh().await;
        let server = hubspot().await;
        let s = syncer(&server, Store::connect(&url).await.unwrap());
        new_mql(&s).await;
        let at = minutes(3);
        match system {
            System::HubSpot => {
                // The pull brings the owner's call; the commit puts it in the ledger.
                pull_and_commit(&s, "80001", vec![call("hs-calls-1", "80001", at)], minutes(4)).await;
            }
            System::Salesforce => {
                let touch = |id: &str| Touch {
                    system: System::Salesforce,
                    id: id.into(),
                    kind: EventKind::Call,
                    at,
                    outbound: true,
                    connected: true,
                    by: Some("005000000000081AAA".into()),
                };
                s.store
                    .add_sla_touches(&[("501".into(), touch("00T1")), ("501".into(), touch("00T1"))])
                    .await
                    .unwrap();
            }
        }
        assert_eq!(sweep_and_drain(&s, minutes(30)).await, 0, "{system:?}: no step");
        let t = timer(&s.store).await;
        assert_eq!(t.record.first_touch_at, Some(at), "{system:?}");
        assert_eq!(t.record.attempts, 1, "{system:?}");
        assert!(
            t.record.met_at.is_some() && t.record.steps_done.is_empty(),
            "{system:?}"
        );
        assert_eq!(t.next_check_at, None, "{system:?}: nothing left to time");
        let sent = server.received_requests().await.unwrap();
        assert!(
            sent.iter().all(|r| r.url.path() != "/crm/v3/objects/tasks"),
            "{system:?}"
        );
    }
}

/// The shipped rules with one wall-clock policy on every sales-qualified lead, anyone's touch.
fn sql_any_sla() -> SlaFile {
    sla("http://127.0.0.1:9/hooks/sla", "any", "anyone").compiled("sla.toml")
}

// README (The sales SLA): against the sandbox, the daemon's parts end to end: a backfill of leads
// long at MQL and SQL starts no timer and no ladder step; then leads ask for a demo, the cycle
// starts their timers and the outbox promotes them, a rep logs a call in Salesforce on one of
// them, and the next sweep reads it (by watermark) and stops that contact's timer while the
// others keep running; a second sweep reads nothing again.
async fn a_call_logged_in_salesforce_stops_the_timer_of_its_contact_only(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let app = TestApp::start_with(120, Some(url)).await;
    let s = app.stack.syncer.clone().with_sla(sql_any_sla());
    let start = app.now();
    s.backfill(&BackfillOptions::default(), start, |_, _| {}).await.unwrap();
    s.drain_outbox(Priority::Background, start).await.unwrap();
    let stored = s.store.contact_page(None, 1_000).await.unwrap();
    let qualified = stored.iter().filter(|c| c.state.stage >= Some(Stage::Sql)).count();
    assert!(qualified >= 2, "the backfill found sales-qualified leads");
    for c in &stored {
        let timers = s.store.sla_timers(c.contact_id.as_str()).await.unwrap();
        assert!(timers.is_empty(), "backfilled {:?}: {timers:?}", c.state.stage);
    }
    assert_eq!(
        sweep_and_drain(&s, start + Duration::days(1)).await,
        0,
        "no ladder step"
    );
    for state in [OutboxState::Pending, OutboxState::Done, OutboxState::Dead] {
        assert!(s.store.outbox_in(OutboxKind::SlaStep, state).await.unwrap().is_empty());
    }

    // Owned leads below SQL with a company ask for a demo: the cycle sees them enter SQL now.
    let askers = owned_leads_below_sql(&stored, 3);
    assert!(askers.len() >= 2, "{askers:?}");
    app.stack.sandbox.advance(Duration::minutes(1));
    for a in &askers {
        app.stack.sandbox.submit_form(a, "Request a demo").unwrap();
    }
    let now = app.now();
    s.incremental(now, Duration::days(1)).await.unwrap();
    s.drain_outbox(Priority::Background, now).await.unwrap();
    let promoted = s.store.sla_promoted().await.unwrap();
    assert!(promoted.len() >= 2, "{promoted:?}");
    assert!(
        promoted.iter().all(|p| askers.contains(&p.contact_id.as_str())),
        "{promoted:?}"
    );
    let touched = &promoted[0];
    let sf_contact = touched
        .records
        .iter()
        .find(|r| r.starts_with("003"))
        .unwrap_or(&touched.records[0]);
    let mut call = SalesActivity::new(SalesActivityKind::Call);
    call.at = Some(now + Duration::minutes(1));
    app.stack.sandbox.log_salesforce_activity(sf_contact, &call).unwrap();

    let later = app.now() + Duration::minutes(2);
    let r = s.sla_sweep(later).await.unwrap();
    assert_eq!(r.salesforce_touches, 1, "{r:?}");
    let t = s.store.sla_timers(&touched.contact_id).await.unwrap();
    let demo = t.iter().find(|t| t.record.policy == "demo_fast").unwrap();
    assert_eq!(demo.record.first_touch_at, Some(now + Duration::minutes(1)));
    assert!(demo.record.met_at.is_some() && demo.next_check_at.is_none(), "{demo:?}");
    let other = s.store.sla_timers(&promoted[1].contact_id).await.unwrap();
    assert!(
        other
            .iter()
            .any(|t| t.record.policy == "demo_fast" && t.next_check_at.is_some() && t.record.first_touch_at.is_none())
    );
    // Nothing new in Salesforce: the watermarks keep it from being read twice.
    assert_eq!(s.sla_sweep(later).await.unwrap().salesforce_touches, 0);

    // Past the due time, the untouched ones get their owner's task in the sandbox's HubSpot,
    // once each, whatever the sweeps and drains after; the touched one gets none.
    let past = app.now() + Duration::minutes(6);
    for _ in 0..2 {
        s.sla_sweep(past).await.unwrap();
        s.drain_outbox(Priority::Background, past).await.unwrap();
    }
    let done = s.store.outbox_in(OutboxKind::SlaStep, OutboxState::Done).await.unwrap();
    let running = promoted.len() - 1;
    assert!(!done.is_empty(), "some untouched lead got its task");
    let mut keys: Vec<&str> = done.iter().map(|i| i.key.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), done.len(), "each step once");
    assert!(done.iter().all(|i| i.contact_id != touched.contact_id));
    let dead = s.store.outbox_in(OutboxKind::SlaStep, OutboxState::Dead).await.unwrap();
    for d in &dead {
        // only a contact without a HubSpot owner has nobody to give the task to
        let c = app.stack.sandbox.hubspot_contact(&d.contact_id).unwrap();
        assert!(c.get("hubspot_owner_id").is_none_or(|o| o.is_empty()), "{d:?}");
    }
    // every untouched promoted lead's first step, once (leads not promoted have timers too)
    let stepped: std::collections::BTreeSet<&str> = done.iter().chain(&dead).map(|i| i.contact_id.as_str()).collect();
    assert_eq!(stepped.len(), done.len() + dead.len(), "one step per lead");
    assert!(promoted[1..].iter().all(|p| stepped.contains(p.contact_id.as_str())));
    assert!(stepped.len() >= running);
}

// README (The sales SLA): the owner changes in HubSpot mid-timer (the pull brings it): the
// timer follows the new owner, whose task it is when the first touch is missed, and the old
// owner's call no longer counts.
async fn an_owner_changed_in_hubspot_mid_timer_takes_the_timer_along(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let server = hubspot().await;
    let s = syncer(&server, Store::connect(&url).await.unwrap());
    // demo_fast counts only the owner's calls.
    let demo: Vec<Event> = icp().form("Request a demo", 0.0).snap.events;
    let e = decide_pulled(&s.rules, &s.sla, pulled("80001", demo.clone()), None, &[], now()).unwrap();
    assert_eq!(e.state.stage, Some(Stage::Sql));
    s.store.commit(&[e], None).await.unwrap();
    // The owner becomes 80004 in HubSpot; 80001 (no longer the owner) calls at minute 2.
    pull_and_commit(&s, "80004", vec![call("hs-calls-9", "80001", minutes(2))], minutes(3)).await;
    assert_eq!(sweep_and_drain(&s, minutes(6)).await, 1, "the owner's task");
    let t = timer(&s.store).await;
    assert_eq!(t.record.policy, "demo_fast");
    assert_eq!(t.owner.as_deref(), Some("80004"));
    assert_eq!(t.record.first_touch_at, None, "the former owner's call does not count");
    let sent = server.received_requests().await.unwrap();
    let task: Value = sent
        .iter()
        .find(|r| r.url.path() == "/crm/v3/objects/tasks")
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(task["properties"]["hubspot_owner_id"], "80004");
}

on_both_stores!(
    an_owner_changed_in_hubspot_mid_timer_takes_the_timer_along,
    a_call_logged_in_salesforce_stops_the_timer_of_its_contact_only,
    the_commit_saves_the_timer_a_decision_started,
    an_untouched_mql_climbs_the_ladder_once_per_step_across_a_restart,
    a_touch_from_either_crm_stops_the_timer_before_its_ladder,
    the_notification_webhook_sends_the_same_key_on_a_retry,
);
