//! Both teams see what the other knows (issue 16), against the sandbox on both stores: the sales
//! follow-up (attempts, last touch and its kind, the owner's name) written to the HubSpot
//! contact from the touches the SLA reads, once per change.

use chrono::Duration;
use leadsync::diagnostics::SourceText;
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{Stage, Status};
use leadsync::sandbox::{SalesActivity, SalesActivityKind};
use leadsync::sla::SlaFile;
use leadsync::sync::backfill::BackfillOptions;
use leadsync::sync::followup::{ATTEMPTS, LAST_TOUCH_AT, LAST_TOUCH_KIND, OWNER_NAME};

use crate::support::{Backend, TestApp};

/// One team around the clock, one wall-clock policy on every sales-qualified lead: three calls
/// by anyone, a minute apart at least, so two calls leave the timer running.
fn sla() -> SlaFile {
    let text = r#"
[sla]
version = "test"
default_team = "t"

[[teams]]
id = "t"
time_zone = "Europe/Paris"
manager = "80009"
fallback_owner = "00G000000000009AAA"
[teams.hours]
mon = "00:00-24:00"
tue = "00:00-24:00"
wed = "00:00-24:00"
thu = "00:00-24:00"
fri = "00:00-24:00"
sat = "00:00-24:00"
sun = "00:00-24:00"

[[policies]]
id = "sql_calls"
stage = "sql"
path = "any"
clock = "wall"
first_touch = "1h"
attempts = { count = 3, within = "10h", min_interval = "1m" }
touches = { kinds = ["call"], by = "anyone" }
ladder = [{ step = "owner_task", after = "2h" }]
"#;
    SlaFile::from_source(&SourceText::new("sla.toml", text.to_string())).unwrap_or_else(|d| panic!("{d}"))
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
    let askers: Vec<&str> = stored
        .iter()
        .filter(|c| c.state.stage < Some(Stage::Sql) && c.removed.is_none() && c.state.status == Status::Active)
        .filter(|c| {
            ["company", "hubspot_owner_id"]
                .iter()
                .all(|p| c.properties.get(*p).is_some_and(|v| !v.is_empty()))
        })
        .map(|c| c.contact_id.as_str())
        .take(3)
        .collect();
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

on_both_stores!(two_calls_logged_in_salesforce_show_as_two_attempts_in_hubspot,);
