//! HubSpot owners on the promotion path, against the sandbox: a lead whose HubSpot owner is a
//! Salesforce user (same email, any case) goes to that user; one whose owner has no Salesforce
//! user falls through to the round robin; the owners list is read once for many promotions.

use chrono::{DateTime, Duration, Utc};
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::Stage;
use leadsync::store::OutboxKind;
use leadsync::sync::backfill::BackfillOptions;
use leadsync::sync::decide::PromotePayload;

use crate::support::{TestApp, lead_at_company};

/// Queues a promotion of stored contact `contact` as a lead of a company new to Salesforce
/// (US, 50 people: no territory), owned in HubSpot by `owner`.
async fn queue(app: &TestApp, contact: &str, owner: Option<&str>, now: DateTime<Utc>) {
    let (mut props, company) =
        lead_at_company(contact, &format!("owners-{contact}.test"), &format!("Owners {contact}"));
    if let Some(o) = owner {
        props.insert("hubspot_owner_id".into(), o.into());
    }
    let payload = PromotePayload {
        cycle: 0,
        contact: props,
        company_id: Some(format!("owners-co-{contact}")),
        company,
    };
    let store = &app.stack.syncer.store;
    store
        .enqueue(
            OutboxKind::Promote,
            &format!("promote:{contact}:0"),
            contact,
            &serde_json::to_string(&payload).unwrap(),
            now,
        )
        .await
        .unwrap();
}

/// The Salesforce owner of the opportunity leadsync made for `contact`.
fn opportunity_owner(app: &TestApp, contact: &str) -> String {
    let key = format!("hs-{contact}-0");
    let opps = app.stack.sandbox.salesforce_records("Opportunity");
    let opp = opps
        .iter()
        .find(|o| o["LeadSync_Key__c"].as_str() == Some(key.as_str()))
        .unwrap_or_else(|| panic!("no opportunity {key}"));
    opp["OwnerId"].as_str().unwrap().to_string()
}

fn owner_reads(app: &TestApp) -> u64 {
    app.stack
        .sandbox
        .calls()
        .get("hubspot owners.list")
        .copied()
        .unwrap_or(0)
}

// README: "HubSpot owners are read at most once an hour"
#[tokio::test]
async fn a_lead_goes_to_its_hubspot_owners_salesforce_user_and_owners_are_read_once_an_hour() {
    let app = TestApp::start(80).await;
    let s = &app.stack.syncer;
    assert!(
        s.properties.iter().any(|p| p == "hubspot_owner_id"),
        "every contact read asks for its HubSpot owner, so promotions carry it"
    );
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let rows = s.store.contact_page(None, 100_000).await.unwrap();
    let leads: Vec<String> = rows
        .iter()
        .filter(|r| r.state.stage == Some(Stage::Lead) && r.state.salesforce.is_none())
        .map(|r| r.contact_id.as_str().to_string())
        .take(6)
        .collect();
    assert_eq!(leads.len(), 6, "the portal has leads");
    // Sandbox owners 70001…70008 are Salesforce users 005…001AAA…008AAA; the first's Salesforce
    // email is in capitals, the last two have another email in Salesforce.
    let portal = app.stack.sandbox.portal();
    assert_eq!(portal.owners[5].0, "70006");
    let users = app.stack.sandbox.salesforce_records("User");
    let user_email = |id: &str| {
        users.iter().find(|u| u["Id"] == id).unwrap()["Email"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(user_email("005000000000006AAA"), portal.owners[5].3);
    assert_ne!(user_email("005000000000008AAA"), portal.owners[7].3);
    assert_ne!(user_email("005000000000001AAA"), portal.owners[0].3);

    // Two hours on, the cached list (if the backfill read one) is stale: one read for the batch.
    let t = app.now() + Duration::hours(2);
    app.stack.sandbox.reset_calls();
    queue(&app, &leads[0], Some("70006"), t).await;
    queue(&app, &leads[1], Some("70001"), t).await;
    queue(&app, &leads[2], Some("70008"), t).await;
    queue(&app, &leads[3], None, t).await;
    let report = s.drain_outbox(Priority::Background, t).await.unwrap();
    assert_eq!(report.promoted, 4);
    // archived=false and archived=true: one read of the list is two pages
    assert_eq!(owner_reads(&app), 2, "one read of the owners list for the batch");
    assert_eq!(
        opportunity_owner(&app, &leads[0]),
        "005000000000006AAA",
        "its HubSpot owner"
    );
    assert_eq!(
        opportunity_owner(&app, &leads[1]),
        "005000000000001AAA",
        "emails compared ignoring case"
    );
    let round_robin = ["005000000000003AAA", "005000000000004AAA"];
    assert!(
        round_robin.contains(&opportunity_owner(&app, &leads[2]).as_str()),
        "a HubSpot owner with no Salesforce user: round robin"
    );
    assert!(round_robin.contains(&opportunity_owner(&app, &leads[3]).as_str()));
    let accounts = app.stack.sandbox.salesforce_records("Account");
    let account = accounts
        .iter()
        .find(|a| a["HubSpot_Company_Id__c"].as_str() == Some(format!("owners-co-{}", leads[0]).as_str()))
        .unwrap();
    assert_eq!(account["OwnerId"], "005000000000006AAA", "the new account too");

    // Ten minutes later, another promotion with a known owner: the cached list, no read.
    let t2 = t + Duration::minutes(10);
    queue(&app, &leads[4], Some("70002"), t2).await;
    assert_eq!(s.drain_outbox(Priority::Background, t2).await.unwrap().promoted, 1);
    assert_eq!(owner_reads(&app), 2, "no second read within the hour");
    assert_eq!(opportunity_owner(&app, &leads[4]), "005000000000002AAA");

    // An owner id the list does not hold makes one more read, then routing falls through.
    let t3 = t2 + Duration::minutes(10);
    queue(&app, &leads[5], Some("79999"), t3).await;
    assert_eq!(s.drain_outbox(Priority::Background, t3).await.unwrap().promoted, 1);
    assert_eq!(owner_reads(&app), 4, "an unknown owner id reads the list again");
    assert!(round_robin.contains(&opportunity_owner(&app, &leads[5]).as_str()));
}
