//! Marketing context kept current in Salesforce (issue 16), through the running daemon against
//! the sandbox on both stores: a promoted contact's download reaches its Salesforce Contact and
//! Opportunity within one cycle, and nothing else changes; a field sales typed is never
//! overwritten; idle cycles write nothing; leadsync's own write does not come back through the
//! opportunity feedback.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{EventKind, HubSpotId, Stage, Status};
use leadsync::store::{OutboxKind, OutboxState};
use leadsync::sync::backfill::BackfillOptions;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, stored_contact};

on_both_stores!(a_promoted_contact_s_download_reaches_salesforce_in_one_cycle_and_nothing_sales_typed_is_overwritten,);

/// The context fields of the shipped mapping, on the Contact.
const CONTACT_CONTEXT: [&str; 7] = [
    "LeadSync_Fit_Score__c",
    "LeadSync_Engagement_Score__c",
    "LeadSync_Grade__c",
    "LeadSync_Stage__c",
    "LeadSync_Status__c",
    "LeadSync_Last_Activity__c",
    "LeadSync_Recent_Activity__c",
];
/// What Salesforce itself stamps on every update.
const STAMPS: [&str; 3] = ["LastModifiedDate", "SystemModstamp", "LastModifiedById"];

fn record(app: &TestApp, object: &str, id: &str) -> serde_json::Map<String, Value> {
    app.stack
        .sandbox
        .salesforce_records(object)
        .into_iter()
        .find(|r| r["Id"] == id)
        .and_then(|r| r.as_object().cloned())
        .unwrap_or_else(|| panic!("no {object} {id}"))
}

/// Salesforce write calls counted by the sandbox (reads aside).
fn salesforce_writes(app: &TestApp) -> u64 {
    app.stack
        .sandbox
        .calls()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("salesforce ") && (k.contains("upsert") || k.contains("create") || k.contains("update"))
        })
        .map(|(_, n)| n)
        .sum()
}

// README (What each team sees of the other): a promoted contact downloads a white paper; within
// one cycle its Salesforce Contact shows the new engagement score and summary, its Opportunity
// the score, and nothing else changes; the Title a rep typed stays; ten idle cycles (with the
// opportunity poll and the nightly rescore, the score decaying meanwhile) write nothing to
// Salesforce; leadsync's own write to the Opportunity does not come back through the feedback
// read, while a rep's change after it does.
async fn a_promoted_contact_s_download_reaches_salesforce_in_one_cycle_and_nothing_sales_typed_is_overwritten(
    backend: Backend,
) {
    let (url, _dir) = backend.fresh().await;
    let app = TestApp::running(120, Some(url)).await;
    let s = app.stack.syncer.clone();
    let sb = &app.stack.sandbox;
    let promoter = s.promoter.clone().expect("Salesforce configured");
    // The running daemon decides webhooks at the wall clock (`Utc::now`), so the test's own
    // cycles do too: the two paths see the same scores.
    let now = Utc::now;
    s.backfill(&BackfillOptions::default(), now(), |_, _| {}).await.unwrap();
    app.settle().await;

    // Leads below SQL with a company ask for a demo and are promoted by the daemon.
    let ebook = sb.portal().forms[2].clone();
    assert!(ebook.name.starts_with("Ebook"), "{ebook:?}");
    let stored = s.store.contact_page(None, 1_000).await.unwrap();
    let ids: Vec<HubSpotId> = stored.iter().map(|c| c.contact_id.clone()).collect();
    let ledger = s.store.events(&ids).await.unwrap();
    let askers: Vec<String> = stored
        .iter()
        .filter(|c| c.state.stage < Some(Stage::Sql) && c.removed.is_none() && c.state.status == Status::Active)
        .filter(|c| c.properties.get("company").is_some_and(|v| !v.is_empty()))
        // Never downloaded the ebook: its download scores (once per form).
        .filter(|c| {
            !ledger.get(&c.contact_id).into_iter().flatten().any(|e| {
                e.kind == EventKind::FormSubmission
                    && e.form
                        .as_deref()
                        .is_some_and(|f| f == ebook.guid || f.contains(ebook.name))
            })
        })
        .map(|c| c.contact_id.as_str().to_string())
        .take(3)
        .collect();
    assert!(!askers.is_empty(), "leads below SQL");
    sb.advance(Duration::minutes(1));
    for a in &askers {
        sb.submit_form(a, "Request a demo").unwrap();
    }
    s.incremental(now(), Duration::days(1)).await.unwrap();
    app.settle().await;
    let rows = s.store.contact_page(None, 1_000).await.unwrap();
    let promoted = rows
        .iter()
        .find(|r| askers.contains(&r.contact_id.as_str().to_string()) && r.state.salesforce.is_some())
        .expect("a promoted asker")
        .clone();
    let link = promoted.state.salesforce.clone().unwrap();
    let (sf_contact, sf_opp) = (link.contact_id.unwrap(), link.opportunity_id.unwrap());
    let hs_id = promoted.contact_id.as_str().to_string();

    // Promoted with its context: the stage it reached, its scores.
    let c = record(&app, "Contact", &sf_contact);
    assert_eq!(c["LeadSync_Stage__c"], json!("sql"), "{c:?}");
    assert_eq!(c["LeadSync_Engagement_Score__c"], json!(promoted.engagement.round()));
    assert_eq!(
        record(&app, "Opportunity", &sf_opp)["LeadSync_Engagement_Score__c"],
        json!(promoted.engagement.round())
    );
    // The feedback brings the open opportunity back once.
    assert!(promoter.poll_opportunities(&s, now()).await.unwrap() >= 1);
    app.settle().await;

    // A rep types a Title in Salesforce.
    let typed = "Head of Revenue (typed by sales)";
    let mut edit = serde_json::Map::new();
    edit.insert("Title".into(), json!(typed));
    assert!(sb.edit_salesforce_record("Contact", &sf_contact, &edit));
    let before = record(&app, "Contact", &sf_contact);
    let opp_before = record(&app, "Opportunity", &sf_opp);

    // The contact downloads the white paper; one cycle.
    sb.advance(Duration::minutes(1));
    sb.submit_form(&hs_id, ebook.name).unwrap();
    sb.reset_calls();
    s.incremental(now(), Duration::days(1)).await.unwrap();
    app.settle().await;
    let row = stored_contact(&s.store, &promoted.contact_id).await;
    let after = record(&app, "Contact", &sf_contact);
    assert_eq!(after["LeadSync_Engagement_Score__c"], json!(row.engagement.round()));
    assert_ne!(
        after["LeadSync_Engagement_Score__c"], before["LeadSync_Engagement_Score__c"],
        "the download moved the score"
    );
    let today = sb.now().format("%Y-%m-%d").to_string();
    let summary = after["LeadSync_Recent_Activity__c"].as_str().unwrap_or("");
    assert!(summary.starts_with(&format!("{today} content_download")), "{summary}");
    assert_eq!(after["Title"], json!(typed), "a field sales typed is never overwritten");
    let changed: Vec<&String> = after.keys().filter(|k| after.get(*k) != before.get(*k)).collect();
    for k in &changed {
        assert!(
            CONTACT_CONTEXT.contains(&k.as_str()) || STAMPS.contains(&k.as_str()),
            "{k} changed: {:?} → {:?}",
            before.get(*k),
            after.get(*k)
        );
    }
    let opp_after = record(&app, "Opportunity", &sf_opp);
    assert_eq!(opp_after["LeadSync_Engagement_Score__c"], json!(row.engagement.round()));
    for (k, v) in &opp_after {
        if k != "LeadSync_Engagement_Score__c" && !STAMPS.contains(&k.as_str()) {
            assert_eq!(opp_before.get(k), Some(v), "Opportunity.{k} changed");
        }
    }
    // Contact and Opportunity in one sObject Collections update, nothing else written.
    let calls = sb.calls();
    assert_eq!(calls.get("salesforce sobjects.update"), Some(&1), "{calls:?}");
    assert_eq!(salesforce_writes(&app), 1, "{calls:?}");

    // leadsync's own write bumped the Opportunity; the feedback read does not take it back in.
    let hubspot_writes = sb.hubspot_writes();
    assert_eq!(promoter.poll_opportunities(&s, now()).await.unwrap(), 0);
    app.settle().await;
    assert_eq!(
        sb.hubspot_writes(),
        hubspot_writes,
        "an echo of leadsync's write costs no HubSpot write"
    );

    // Ten idle cycles, hours apart (the score decays), with the opportunity poll and the
    // rescore: nothing is written to Salesforce, nothing waits in the outbox.
    sb.reset_calls();
    for hour in 1..=10 {
        sb.advance(Duration::hours(1));
        let at = now() + Duration::hours(hour);
        s.incremental(at, Duration::days(1)).await.unwrap();
        promoter.poll_opportunities(&s, at).await.unwrap();
        s.rescore(at, false).await.unwrap();
        // What a decision at `at` queued is due at `at`: carried out here, not left waiting.
        s.drain_outbox(Priority::Background, at).await.unwrap();
        app.settle().await;
    }
    assert_eq!(salesforce_writes(&app), 0, "{:?}", sb.calls());
    assert_eq!(
        record(&app, "Contact", &sf_contact),
        after,
        "idle cycles changed nothing"
    );
    let pending: BTreeMap<_, _> = s
        .store
        .outbox_counts()
        .await
        .unwrap()
        .into_iter()
        .filter(|(kind, state, _)| kind == OutboxKind::SalesforceContext.as_str() && state != "done")
        .map(|(k, st, n)| ((k, st), n))
        .collect();
    assert!(pending.is_empty(), "{pending:?}");
    assert!(
        s.store
            .outbox_in(OutboxKind::SalesforceContext, OutboxState::Dead)
            .await
            .unwrap()
            .is_empty()
    );

    // A rep's change after leadsync's write is brought back.
    assert!(sb.close_opportunity(&sf_opp, true));
    assert_eq!(promoter.poll_opportunities(&s, now()).await.unwrap(), 1);
    app.shutdown().await;
}
