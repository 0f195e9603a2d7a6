//! The daemon at rest (issue 18): with no outside change, a cycle reads nothing but its cursor
//! queries and writes nothing; leadsync's own writes are not read back as changes; a decayed
//! score alone is not written again within the day.

use chrono::Duration;
use leadsync::store::{OutboxKind, OutboxState};
use leadsync::sync::backfill::BackfillOptions;

use crate::support::{Backend, TestApp};

on_both_stores!(ten_idle_cycles_after_a_backfill_read_and_write_nothing);

// README (write-back): "a contact whose only change is leadsync's own write is not read again"
// and "a decayed engagement score alone is written at most once a day"
async fn ten_idle_cycles_after_a_backfill_read_and_write_nothing(on: Backend) {
    let backend = format!("{on:?}");
    let (url, _dir) = on.fresh().await;
    let app = TestApp::start_with(300, Some(url)).await;
    let s = &app.stack.syncer;
    let sandbox = &app.stack.sandbox;
    let start = app.now();
    s.backfill(&BackfillOptions::default(), start, |_, _| {}).await.unwrap();
    let calls = sandbox.calls();
    assert!(
        calls.get("hubspot contacts.batch_update").is_some_and(|n| *n > 0),
        "{backend}: the backfill wrote its decisions: {calls:?}"
    );
    let pending = |kind| async move { s.store.outbox_in(kind, OutboxState::Pending).await.unwrap().len() };
    assert_eq!(
        pending(OutboxKind::HubSpotWrite).await,
        0,
        "{backend}: every write carried out"
    );
    let writes_after_backfill = sandbox.hubspot_writes();

    // Ten cycles, five minutes apart (the default interval): each one's overlap window covers
    // the backfill's writes at first, then nothing changed at all.
    for cycle in 1..=10 {
        sandbox.advance(Duration::minutes(5));
        sandbox.reset_calls();
        let report = s.incremental(app.now(), Duration::days(1)).await.unwrap();
        let calls = sandbox.calls();
        assert_eq!(report.pulled, 0, "{backend}: cycle {cycle} re-read contacts: {calls:?}");
        assert_eq!(
            calls.get("hubspot contacts.batch_read"),
            None,
            "{backend}: cycle {cycle}"
        );
        assert_eq!(
            calls.get("hubspot contacts.batch_update"),
            None,
            "{backend}: cycle {cycle}"
        );
        assert_eq!(
            sandbox.api_calls("salesforce"),
            0,
            "{backend}: cycle {cycle}: {calls:?}"
        );
        assert_eq!(
            pending(OutboxKind::HubSpotWrite).await,
            0,
            "{backend}: cycle {cycle} queued a write"
        );
        assert_eq!(
            pending(OutboxKind::Promote).await,
            0,
            "{backend}: cycle {cycle} queued a promotion"
        );
    }
    assert_eq!(
        sandbox.hubspot_writes(),
        writes_after_backfill,
        "{backend}: no HubSpot write"
    );

    // The rescore fifty minutes on, the same UTC day: scores decayed a little, written nowhere.
    let later = app.now();
    assert_eq!(later.date_naive(), start.date_naive(), "the test needs one UTC day");
    sandbox.reset_calls();
    s.rescore(later, false).await.unwrap();
    // Only a score that crosses a threshold the shipped rules name (35 for MQL and grade 2, 60
    // for grade 1) as a person reads it is written; two-decimal decay would touch most contacts.
    let queued = s
        .store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Pending)
        .await
        .unwrap();
    assert!(
        queued.len() <= 3,
        "{backend}: decay alone queued {} writes",
        queued.len()
    );
    for item in &queued {
        let payload: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
        let props = payload["properties"].as_object().unwrap();
        let ours: f64 = props["leadsync_engagement_score"].as_str().unwrap().parse().unwrap();
        assert_eq!(props.len(), 1, "{backend}: {}", item.payload);
        let hs = sandbox.hubspot_contact(&item.contact_id).unwrap();
        let theirs: f64 = hs["leadsync_engagement_score"].parse().unwrap();
        assert!(
            [35.0, 60.0].iter().any(|t| (theirs >= *t) != (ours >= *t)),
            "{backend}: {theirs} to {ours} crosses no threshold"
        );
    }

    // Someone else changes a contact leadsync wrote: its later `lastmodifieddate` is read.
    let some = s.store.contact_page(None, 1).await.unwrap()[0]
        .contact_id
        .as_str()
        .to_string();
    sandbox.advance(Duration::minutes(5));
    assert!(sandbox.touch(&some, 3), "{backend}");
    let report = s.incremental(app.now(), Duration::days(1)).await.unwrap();
    assert_eq!(
        report.pulled, 1,
        "{backend}: the contact changed by someone else is read"
    );
}
