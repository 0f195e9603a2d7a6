//! Both teams see what the other knows (issue 16), against the sandbox on both stores: the sales
//! follow-up (attempts, last touch and its kind, the owner's name) written to the HubSpot
//! contact from the touches the SLA reads, once per change; buying-signal alerts to the owner
//! (a Salesforce Task on the Contact, once per contact, signal and day, across a restart of the
//! running daemon), and a lost contact that comes back, recycled as the rules say.

use chrono::Duration;
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{Stage, Status};
use leadsync::sandbox::{SalesActivity, SalesActivityKind};
use leadsync::sla::SlaFile;
use leadsync::sync::backfill::BackfillOptions;
use leadsync::sync::followup::{ATTEMPTS, LAST_TOUCH_AT, LAST_TOUCH_KIND, OWNER_NAME};

use leadsync::lifecycle::HubSpotId;
use leadsync::store::{ContactRow, OutboxKind, OutboxState};
use leadsync::sync::Syncer;
use serde_json::Value;

use crate::common::SlaText;
use crate::support::{Backend, TestApp, owned_leads_below_sql, stored_contact};

/// One team around the clock, one wall-clock policy on every sales-qualified lead: three calls
/// by anyone, a minute apart at least, so two calls leave the timer running.
fn sla() -> SlaFile {
    SlaText::round_the_clock("test", "t", "Europe/Paris")
        .manager("80009")
        .fallback("00G000000000009AAA")
        .wall_policy(
            "sql_calls",
            "sql",
            r#"
path = "any"
first_touch = "1h"
attempts = { count = 3, within = "10h", min_interval = "1m" }
touches = { kinds = ["call"], by = "anyone" }
ladder = [{ step = "owner_task", after = "2h" }]
"#,
        )
        .compiled("sla.toml")
}

// README (What each team sees of the other): two calls logged in Salesforce on a promoted
// contact show in HubSpot as 2 sales attempts, the last call's time and kind, and the owner's
// name; a sweep with nothing new writes nothing.
async fn two_calls_logged_in_salesforce_show_as_two_attempts_in_hubspot(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let app = TestApp::start_with(120, Some(url)).await;
    let start = app.now();
    let s = app.stack.syncer.clone().with_sla(sla());
    s.backfill(&BackfillOptions::default(), start, |_, _| {}).await.unwrap();
    s.drain_outbox(Priority::Background, start).await.unwrap();
    // A backfill starts no timer (leads waiting before leadsync ran): owned leads below SQL
    // with a company ask for a demo, and the cycle sees them enter SQL now.
    let stored = s.store.contact_page(None, 1_000).await.unwrap();
    let askers = owned_leads_below_sql(&stored, 3);
    assert!(!askers.is_empty(), "owned leads below SQL");
    app.stack.sandbox.advance(Duration::minutes(1));
    for a in &askers {
        app.stack.sandbox.submit_form(a, "Request a demo").unwrap();
    }
    let now = app.now();
    s.incremental(now, Duration::days(1)).await.unwrap();
    s.drain_outbox(Priority::Background, now).await.unwrap();
    let promoted = s.store.sla_promoted().await.unwrap();
    let sb = &app.stack.sandbox;
    // A promoted contact with a HubSpot owner, whose name the follow-up carries.
    let (touched, owner) = promoted
        .iter()
        .find_map(|p| {
            let owner = sb.hubspot_contact(&p.contact_id)?.get("hubspot_owner_id")?.clone();
            (!owner.is_empty()).then(|| (p.clone(), owner))
        })
        .expect("a promoted contact with an owner");
    let sf_contact = touched.records.iter().find(|r| r.starts_with("003")).unwrap();
    let before = sb.hubspot_contact(&touched.contact_id).unwrap();
    assert!(
        !before.contains_key(ATTEMPTS),
        "no follow-up before any touch: {before:?}"
    );

    let last = now + Duration::minutes(3);
    for at in [now + Duration::minutes(1), last] {
        let mut call = SalesActivity::new(SalesActivityKind::Call);
        call.at = Some(at);
        sb.log_salesforce_activity(sf_contact, &call).unwrap();
    }
    let later = app.now() + Duration::minutes(5);
    let r = s.sla_sweep(later).await.unwrap();
    assert_eq!(r.salesforce_touches, 2, "{r:?}");
    s.drain_outbox(Priority::Background, later).await.unwrap();

    let shown = sb.hubspot_contact(&touched.contact_id).unwrap();
    assert_eq!(shown.get(ATTEMPTS).map(String::as_str), Some("2"), "{shown:?}");
    assert_eq!(shown.get(LAST_TOUCH_KIND).map(String::as_str), Some("call"));
    let at = chrono::DateTime::parse_from_rfc3339(&shown[LAST_TOUCH_AT]).unwrap();
    assert_eq!(at, last);
    let (_, first, family, _) = sb.portal().owners.iter().find(|o| o.0 == owner).unwrap();
    assert_eq!(shown.get(OWNER_NAME), Some(&format!("{first} {family}")));

    // Nothing new: the sweeps after, one of them re-assessing the timer at its window's end,
    // queue no follow-up write and HubSpot gets none.
    let writes = sb.hubspot_writes();
    for m in [6, 11 * 60, 12 * 60] {
        let t = app.now() + Duration::minutes(m);
        s.sla_sweep(t).await.unwrap();
        s.drain_outbox(Priority::Background, t).await.unwrap();
    }
    assert_eq!(
        sb.hubspot_writes(),
        writes,
        "an unchanged follow-up is not written again"
    );
    let timers = s.store.sla_timers(&touched.contact_id).await.unwrap();
    assert!(
        timers.iter().all(|t| t.next_check_at.is_none()),
        "re-assessed: {timers:?}"
    );
}

/// The Tasks leadsync made in the sandbox's Salesforce for `contact`'s alerts, oldest first.
fn alert_tasks(app: &TestApp, contact: &str) -> Vec<Value> {
    let prefix = format!("signal:{contact}:");
    app.stack
        .sandbox
        .salesforce_records("Task")
        .into_iter()
        .filter(|t| t["LeadSync_Key__c"].as_str().is_some_and(|k| k.starts_with(&prefix)))
        .collect()
}

/// The running daemon (page views with their URLs) over a backfilled portal of 120, on a
/// fresh store of `backend`; a contact it promoted and its owner ([`promoted_contact`]).
async fn backfilled(backend: Backend) -> (TestApp, Option<tempfile::TempDir>, ContactRow, String) {
    let (url, dir) = backend.fresh().await;
    let app = TestApp::running_with_page_views(120, Some(url)).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    app.settle().await;
    let (contact, owner) = promoted_contact(&s).await;
    (app, dir, contact, owner)
}

/// A contact the backfill promoted, still open (SQL or opportunity, active), with its
/// Salesforce Contact and a Salesforce user as owner: (row, owner).
async fn promoted_contact(s: &Syncer) -> (ContactRow, String) {
    let stored = s.store.contact_page(None, 1_000).await.unwrap();
    let open: Vec<&ContactRow> = stored
        .iter()
        .filter(|c| c.removed.is_none() && c.state.status == Status::Active)
        .filter(|c| matches!(c.state.stage, Some(Stage::Sql | Stage::Opportunity)))
        .filter(|c| {
            c.state
                .salesforce
                .as_ref()
                .is_some_and(|l| l.contact_id.is_some() && l.opportunity_id.is_some())
        })
        .collect();
    let ids: Vec<HubSpotId> = open.iter().map(|c| c.contact_id.clone()).collect();
    let owners = s.store.owners(&ids).await.unwrap();
    open.into_iter()
        .find_map(|c| {
            let o = owners.get(c.contact_id.as_str()).filter(|o| o.starts_with("005"))?;
            Some((c.clone(), o.clone()))
        })
        .expect("a promoted contact owned by a Salesforce user")
}

// README (What each team sees of the other): a promoted contact visits pricing twice in a day
// under the running daemon: one Salesforce Task for its owner on its Contact, due that day,
// saying what happened and when; not a second after the daemon restarts; the next day's visit
// gives a new one. The alert moves nothing in the lifecycle.
async fn a_promoted_contact_visiting_pricing_twice_in_a_day_gives_its_owner_one_task_across_a_restart(
    backend: Backend,
) {
    let (app, _dir, contact, owner) = backfilled(backend).await;
    let mut app = app;
    let s = app.stack.syncer.clone();
    let id = contact.contact_id.clone();
    let c = id.as_str().to_string();
    let sf_contact = contact.state.salesforce.clone().unwrap().contact_id.unwrap();
    assert!(alert_tasks(&app, &c).is_empty(), "no alert from a backfill");

    // First visit: a cycle reads it, the outbox worker makes the Task.
    app.stack.sandbox.advance(Duration::minutes(1));
    assert!(app.stack.sandbox.visit(&c, "/pricing"));
    let first_at = app.stack.sandbox.now();
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    let settled = app.settle().await;
    assert_eq!(settled.dead, 0, "{settled:?}");
    let tasks = alert_tasks(&app, &c);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let t = &tasks[0];
    assert_eq!(t["OwnerId"].as_str(), Some(owner.as_str()), "the owner's: {t}");
    assert_eq!(t["WhoId"].as_str(), Some(sf_contact.as_str()), "on the Contact: {t}");
    let day = first_at.format("%Y-%m-%d").to_string();
    assert_eq!(t["ActivityDate"].as_str(), Some(day.as_str()), "due that day: {t}");
    assert_eq!(
        t["LeadSync_Key__c"].as_str(),
        Some(format!("signal:{c}:pricing_visit:{day}").as_str())
    );
    assert!(
        t["Subject"].as_str().unwrap().contains("pricing page visit"),
        "what happened: {t}"
    );
    let when = first_at.format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(t["Description"].as_str().unwrap().contains(&when), "when: {t}");
    // A crash after Salesforce made the Task and before the item was marked done: the item is
    // carried out again, finds the Task by its key, and makes no second one.
    let again = s
        .store
        .requeue(OutboxKind::OwnerAlert, OutboxState::Done, None, app.now())
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    s.outbox.wake(Priority::Background);
    app.settle().await;
    assert_eq!(alert_tasks(&app, &c).len(), 1, "found again, not made twice");
    let after_alert = stored_contact(&s.store, &id).await;
    assert_eq!(
        (after_alert.state.stage, after_alert.state.status),
        (contact.state.stage, contact.state.status),
        "an alert moves nothing"
    );

    // Second visit the same day, read by a restarted daemon: the same key, no second Task.
    let s = app.restart_daemon().await;
    app.stack.sandbox.advance(Duration::minutes(30));
    assert!(app.stack.sandbox.visit(&c, "/pricing"));
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    app.settle().await;
    let pricing_views = s.store.events(std::slice::from_ref(&id)).await.unwrap()[&id]
        .iter()
        .filter(|e| e.url.as_deref().is_some_and(|u| u.ends_with("/pricing")) && e.at >= first_at)
        .count();
    assert_eq!(pricing_views, 2, "both visits read");
    assert_eq!(
        alert_tasks(&app, &c).len(),
        1,
        "not twice in a day, nor after a restart"
    );
    let alerts: Vec<_> = s
        .store
        .outbox_in(OutboxKind::OwnerAlert, OutboxState::Done)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.contact_id == c)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");

    // The next day's visit: a new Task.
    app.stack.sandbox.advance(Duration::days(1));
    assert!(app.stack.sandbox.visit(&c, "/pricing"));
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    app.settle().await;
    let tasks = alert_tasks(&app, &c);
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let next_day = app.stack.sandbox.now().format("%Y-%m-%d").to_string();
    assert_eq!(tasks[1]["ActivityDate"].as_str(), Some(next_day.as_str()));
    assert_ne!(next_day, day);
    app.shutdown().await;
}

// README (What each team sees of the other): a contact whose opportunity was lost comes back to
// the pricing page: a Task for its owner, and the contact recycled now as `[lost] recycle_on`
// says (back to the rules' `recycle.to`, in its cooldown, the opportunity's values cleared in
// HubSpot), not after `recycle_after`.
async fn a_lost_contact_coming_back_tells_its_owner_and_is_recycled(backend: Backend) {
    let (app, _dir, contact, owner) = backfilled(backend).await;
    let app = app;
    let s = app.stack.syncer.clone();
    let id = contact.contact_id.clone();
    let c = id.as_str().to_string();
    let opp = contact.state.salesforce.clone().unwrap().opportunity_id.unwrap();

    app.stack.sandbox.advance(Duration::minutes(1));
    assert!(app.stack.sandbox.close_opportunity(&opp, false));
    let promoter = s.promoter.clone().unwrap();
    assert!(promoter.poll_opportunities(&s, app.now()).await.unwrap() >= 1);
    app.settle().await;
    let lost = stored_contact(&s.store, &id).await;
    assert_eq!(lost.state.status, Status::Lost, "{:?}", lost.state);
    let cycles = lost.state.recycle_count;

    app.stack.sandbox.advance(Duration::minutes(1));
    assert!(app.stack.sandbox.visit(&c, "/pricing"));
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    app.settle().await;
    let tasks = alert_tasks(&app, &c);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["OwnerId"].as_str(), Some(owner.as_str()));

    let back = stored_contact(&s.store, &id).await;
    assert_eq!(
        (back.state.stage, back.state.status, back.state.recycle_count),
        (Some(Stage::Lead), Status::Recycle, cycles + 1),
        "{:?}",
        back.state
    );
    let audit = s.store.audit(&id).await.unwrap();
    assert!(
        audit.iter().any(|a| a.reason.contains("came back: pricing_visit")),
        "{audit:?}"
    );
    let hs = app.stack.sandbox.hubspot_contact(&c).unwrap();
    assert_eq!(hs.get("leadsync_stage").map(String::as_str), Some("lead"), "{hs:?}");
    assert!(
        hs.get("leadsync_opportunity_status").is_none_or(|v| v.is_empty()),
        "the lost status consumed: {hs:?}"
    );
    app.shutdown().await;
}

on_both_stores!(
    two_calls_logged_in_salesforce_show_as_two_attempts_in_hubspot,
    a_promoted_contact_visiting_pricing_twice_in_a_day_gives_its_owner_one_task_across_a_restart,
    a_lost_contact_coming_back_tells_its_owner_and_is_recycled,
);
