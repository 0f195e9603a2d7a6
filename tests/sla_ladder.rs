//! The SLA ladder under `leadsync run`'s own schedule, against the sandbox, on both stores, on
//! the real clock: the daemon is handed its own short wall-clock policy (`rules.sla_path`), its
//! sweep runs every second, and two owned contacts ask for a demo through the webhook. Nobody
//! touches the first: the daemon climbs its ladder step by step (a HubSpot task for the owner, a
//! task for the manager, a reassignment to an available rep, sales-rejected `no_follow_up`),
//! once each, across a restart after the second step. The second's rep logs a call in
//! Salesforce before its due time: its timer is met and no step runs.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration as StdDuration, Instant};

use chrono::Utc;
use leadsync::config::ScheduleSettings;
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{HubSpotId, Stage, Status};
use leadsync::sandbox::{SalesActivity, SalesActivityKind, SandboxConfig};
use leadsync::store::{OutboxKind, OutboxState, SlaTimer, Store};
use leadsync::sync::Syncer;
use leadsync::sync::backfill::BackfillOptions;

use crate::common::SlaText;
use crate::support::{Backend, NEVER, TestApp, stored_contact};

/// The sandbox's owners 70001..70005 are the team (their Salesforce users 005…001AAA..005AAA);
/// 70004 and 70005 are away today; 70006 manages. The first touch is due 10 s after a demo
/// request; the ladder steps 0 s, 3 s, 9 s and 12 s after that.
fn sla_text() -> String {
    let today = Utc::now().date_naive();
    let (from, to) = (today - chrono::Days::new(1), today + chrono::Days::new(1));
    let mut sla = SlaText::round_the_clock("ladder-e2e", "t", "Europe/Paris")
        .manager("70006")
        .fallback("00G000000000009AAA");
    for n in 1..=5 {
        let mut lines = format!("hubspot_owner = \"7000{n}\"\nsalesforce_user = \"005{n:012}AAA\"\n");
        if n >= 4 {
            lines.push_str(&format!("absences = [{{ from = \"{from}\", to = \"{to}\" }}]\n"));
        }
        sla = sla.member(&format!("rep{n}@leadsync-test.com"), &lines);
    }
    sla.wall_policy(
        "demo_e2e",
        "sql",
        r#"
path = "shortcut"
first_touch = "10s"
touches = { kinds = ["call", "meeting"], by = "owner_or_team" }
ladder = [
  { step = "owner_task", after = "0s" },
  { step = "manager_task", after = "3s" },
  { step = "reassign", after = "9s" },
  { step = "sales_rejected", after = "12s", reason = "no_follow_up" },
]
"#,
    )
    .text()
}

/// Waits until `check` gives something (60 s at most, on the real clock).
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < StdDuration::from_secs(60), "waited 60 s for {what}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

async fn demo_timer(store: &Store, contact: &str) -> Option<SlaTimer> {
    store
        .sla_timers(contact)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.record.policy == "demo_e2e")
}

/// The ladder steps the outbox carried out for `contact`, by key.
async fn steps_done(store: &Store, contact: &str) -> Vec<String> {
    store
        .outbox_in(OutboxKind::SlaStep, OutboxState::Done)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.contact_id == contact)
        .map(|i| i.key)
        .collect()
}

/// The tasks leadsync made on the contact in the sandbox's HubSpot: (owner, body).
async fn leadsync_tasks(s: &Syncer, contact: &str) -> Vec<(String, String)> {
    let linked = s
        .hubspot
        .associations("contacts", "tasks", &[contact.to_string()], Priority::Background)
        .await
        .unwrap();
    let ids: Vec<String> = linked.into_values().flatten().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let props = ["hs_task_body".to_string(), "hubspot_owner_id".to_string()];
    s.hubspot
        .batch_read("tasks", &ids, &props, None, Priority::Background)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|t| {
            let body = t.prop("hs_task_body")?.to_string();
            body.contains("[leadsync:sla:")
                .then(|| (t.prop("hubspot_owner_id").unwrap_or_default().to_string(), body))
        })
        .collect()
}

// README (The sales SLA): under `leadsync run`'s own schedule, a demo request nobody follows up
// climbs the ladder step by step, once each, across a restart; a call logged in Salesforce
// before the due time meets the timer and no step runs.
async fn the_running_daemon_climbs_the_ladder_once_per_step_across_a_restart(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let sla_dir = tempfile::tempdir().unwrap();
    let sla_path = sla_dir.path().join("sla.toml");
    std::fs::write(&sla_path, sla_text()).unwrap();
    let sandbox = SandboxConfig {
        contacts: 80,
        companies: 12,
        now: Utc::now(),
        hubspot_burst_per_10s: 2_000,
        ..SandboxConfig::default()
    };
    let schedule = ScheduleSettings {
        sync: NEVER.into(),
        rescore: NEVER.into(),
        sla: "* * * * * *".into(),
        opportunities: NEVER.into(),
    };
    let mut app = TestApp::running_with(sandbox, Some(url), schedule, Some(sla_path)).await;
    assert_eq!(
        app.stack.syncer.sla.version, "ladder-e2e",
        "the daemon's SLA is the test's file"
    );
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), Utc::now(), |_, _| {})
        .await
        .unwrap();
    app.settle().await;

    // Two owned leads of the team's available reps, below SQL, with a company.
    let stored = s.store.contact_page(None, 1_000).await.unwrap();
    let available = ["70001", "70002", "70003"];
    let askers: Vec<String> = stored
        .iter()
        .filter(|c| c.state.stage < Some(Stage::Sql) && c.removed.is_none() && c.state.status == Status::Active)
        .filter(|c| c.properties.get("company").is_some_and(|v| !v.is_empty()))
        .filter(|c| {
            c.properties
                .get("hubspot_owner_id")
                .is_some_and(|o| available.contains(&o.as_str()))
        })
        .map(|c| c.contact_id.as_str().to_string())
        .take(2)
        .collect();
    assert_eq!(askers.len(), 2, "two owned leads to ask for a demo");
    let (lead, touched) = (askers[0].as_str(), askers[1].as_str());
    let owner_of =
        |id: &str| stored.iter().find(|c| c.contact_id.as_str() == id).unwrap().properties["hubspot_owner_id"].clone();
    let owner = owner_of(lead);
    for a in &askers {
        app.stack.sandbox.submit_form(a, "Request a demo").unwrap();
    }

    // The webhook brings both in; their timers start; the touched one is promoted and its rep
    // calls before the due time.
    let t2 = until("the second lead's timer", || demo_timer(&s.store, touched)).await;
    let sf_contact = until("the second lead's promotion", || async {
        let promoted = s.store.sla_promoted().await.unwrap();
        let p = promoted.into_iter().find(|p| p.contact_id == touched)?;
        p.records.iter().find(|r| r.starts_with("003")).cloned()
    })
    .await;
    // The rep who owns the lead in HubSpot (7000n), as the Salesforce user 005…nAAA.
    let rep = owner_of(touched);
    let mut call = SalesActivity::new(SalesActivityKind::Call);
    call.rep = Some(format!("005{:012}AAA", &rep[4..].parse::<u32>().unwrap()));
    app.stack.sandbox.log_salesforce_activity(&sf_contact, &call).unwrap();
    assert!(Utc::now() < t2.record.due_at, "the call is logged before the due time");
    let met = until("the second lead's timer met", || async {
        demo_timer(&s.store, touched)
            .await
            .filter(|t| t.record.met_at.is_some())
    })
    .await;
    assert!(
        met.record.first_touch_at.is_some_and(|at| at <= met.record.due_at),
        "{met:?}"
    );

    // Steps 1 and 2 on the first daemon: the owner's task, then the manager's.
    until("the owner's task", || async {
        (!steps_done(&s.store, lead).await.is_empty()).then_some(())
    })
    .await;
    let tasks = leadsync_tasks(&s, lead).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].0, owner, "the task is the owner's");
    until("the manager's task", || async {
        (steps_done(&s.store, lead).await.len() >= 2).then_some(())
    })
    .await;
    let before = demo_timer(&s.store, lead).await.unwrap();
    assert_eq!(before.record.steps_done.iter().copied().collect::<Vec<_>>(), [0, 1]);

    // Restart: the daemon stops, a new one starts on the same store and sandbox.
    let s = app.restart_daemon().await;
    let id = HubSpotId::try_from(lead.to_string()).unwrap();
    let t = until("the reassignment on the new daemon", || async {
        let moved = s.store.assignments(&id).await.unwrap().len() >= 2;
        let t = demo_timer(&s.store, lead).await?;
        (moved && t.owner.as_deref() != Some(owner.as_str())).then_some(t)
    })
    .await;
    assert!(
        t.record.breached_at.is_some() && t.record.first_touch_at.is_none(),
        "{t:?}"
    );
    // Step 4, sales-rejected, is refused, visibly: the shipped rules take a rejection at MQL and
    // SAL only, and a demo request is an SQL (recorded and kept, never reported done).
    let refused = until("the rejection refused", || async {
        let dead = s.store.outbox_in(OutboxKind::SlaStep, OutboxState::Dead).await.unwrap();
        dead.into_iter().find(|i| i.contact_id == lead)
    })
    .await;
    let why = refused.last_error.clone().unwrap_or_default();
    assert!(why.contains("does not apply at stage sql"), "{why}");
    let row = stored_contact(&s.store, &id).await;
    assert_eq!((row.state.stage, row.state.status), (Some(Stage::Sql), Status::Active));
    assert!(
        !row.properties.contains_key("leadsync_rejection_reason"),
        "nothing folded"
    );

    // The reassignment went to another available rep: never the one leaving, never one away.
    let new_owner = t.owner.clone().unwrap();
    let assigned = s.store.assignments(&id).await.unwrap();
    assert!(
        available.contains(&new_owner.as_str()) && new_owner != owner,
        "{new_owner} (was {owner}): {assigned:?}"
    );
    assert_eq!(
        app.stack.sandbox.hubspot_contact(lead).unwrap()["hubspot_owner_id"],
        new_owner,
        "the new owner is in HubSpot"
    );
    let reassigned: Vec<_> = assigned
        .iter()
        .filter(|a| a.trace.to_string().contains("chosen"))
        .collect();
    assert!(!reassigned.is_empty(), "{assigned:?}");
    let why = assigned.last().unwrap().trace.to_string();
    assert!(why.contains(": dropped, absent until"), "a rep away is skipped\n{why}");
    for away in ["005000000000004AAA: chosen", "005000000000005AAA: chosen"] {
        assert!(!why.contains(away), "{away}\n{why}");
    }

    // Once each: three steps done (three distinct keys), two tasks in HubSpot, and the four
    // steps in the audit log.
    let first_done = steps_done(&s.store, lead).await;
    let keys: BTreeSet<&String> = first_done.iter().collect();
    assert_eq!((first_done.len(), keys.len()), (3, 3), "{first_done:?}");
    let tasks = leadsync_tasks(&s, lead).await;
    assert_eq!(tasks.len(), 2, "the owner's and the manager's: {tasks:?}");
    assert!(tasks.iter().any(|(o, _)| o == "70006"), "the manager's task: {tasks:?}");
    let audit = s.store.audit(&id).await.unwrap();
    let steps: Vec<&str> = audit
        .iter()
        .filter(|a| a.change.contains("SlaStep"))
        .map(|a| a.change.as_str())
        .collect();
    assert_eq!(steps.len(), 4, "every step, the refused one included: {steps:?}");

    // The touched lead: met, no step at all.
    assert!(steps_done(&s.store, touched).await.is_empty());
    for state in [OutboxState::Pending, OutboxState::Sending, OutboxState::Review] {
        let items = s.store.outbox_in(OutboxKind::SlaStep, state).await.unwrap();
        assert!(items.is_empty(), "{state:?}: {items:?}");
    }
    assert!(leadsync_tasks(&s, touched).await.is_empty());
    let t2 = demo_timer(&s.store, touched).await.unwrap();
    assert!(t2.record.steps_done.is_empty() && t2.next_check_at.is_none(), "{t2:?}");
    app.shutdown().await;
}

on_both_stores!(the_running_daemon_climbs_the_ladder_once_per_step_across_a_restart);
