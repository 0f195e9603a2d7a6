//! The daemon against wiremock CRMs: a signed webhook through the real server on a random port
//! ends with the contact at SQL in HubSpot and its records in Salesforce; a rotated Salesforce
//! refresh token survives a restart.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use leadsync::config::{Loaded, Settings};
use leadsync::lifecycle::{HubSpotId, Stage};
use leadsync::server::Application;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Notify;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::salesforce::promote::{FakeOrg, OrgState};
use crate::salesforce::token_answer;
use crate::support::{mount_batch_update_echo, post_signed, repo_root};

const SECRET: &str = "wiremock-app-secret";

/// A HubSpot portal of one contact (901, at Globex, who just requested a demo) in wiremock.
async fn hubspot() -> MockServer {
    let server = MockServer::start().await;
    let now = Utc::now().timestamp_millis();
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/read"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": [{
            "id": "901", "archived": false, "properties": {
                "email": "j.martin@globex.example", "firstname": "Jordan", "lastname": "Martin",
                "company": "Globex", "jobtitle": "Chief Revenue Officer", "numemployees": "1200",
                "country": "FR", "industry": "Computer Software",
                "recent_conversion_event_name": "Pricing: Request a demo",
                "recent_conversion_date": (now - 60_000).to_string(), "num_conversion_events": "1",
                "lastmodifieddate": now.to_string(), "hs_object_id": "901"}}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v4/associations/contacts/companies/batch/read"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "COMPLETE", "results": [{"from": {"id": "901"}, "to": [{"toObjectId": 77}]}]}),
        ))
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
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": [{
            "id": "77", "properties": {"name": "Globex", "domain": "globex.example", "country": "FR",
            "numberofemployees": "1200", "industry": "COMPUTER_SOFTWARE"}}]})),
        )
        .mount(&server)
        .await;
    mount_batch_update_echo(&server).await;
    server
}

/// A Salesforce org in wiremock whose refresh answers rotate the refresh token.
async fn salesforce(rotated_to: &str) -> (MockServer, FakeOrg) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(token_answer(&server, "access-1", Some(rotated_to)))
        .mount(&server)
        .await;
    let org = FakeOrg(Arc::new(Mutex::new(OrgState::default())));
    Mock::given(path_regex("^/services/data/v62.0/.*"))
        .respond_with(org.clone())
        .mount(&server)
        .await;
    (server, org)
}

fn settings(hs: &MockServer, sf: &MockServer, store_url: &str) -> Loaded {
    let mut s = Settings::default();
    s.rules.path = repo_root().join("mappings/lifecycle.toml");
    s.hubspot.api_base_url = hs.uri();
    s.hubspot.private_app_token = Some(SecretString::from("pat-wiremock"));
    s.hubspot.client_secret = Some(SecretString::from(SECRET));
    s.hubspot.burst_per_10s = 1_000;
    s.salesforce.login_url = sf.uri();
    s.salesforce.client_id = Some("consumer-key".into());
    s.salesforce.client_secret = Some(SecretString::from("consumer-secret"));
    s.salesforce.refresh_token = Some(SecretString::from("rt-1"));
    s.salesforce.mapping_path = repo_root().join("mappings/salesforce.toml");
    s.store.url = store_url.to_string();
    Loaded {
        settings: s,
        file: None,
    }
}

#[tokio::test]
async fn a_signed_demo_request_through_the_server_reaches_sql_in_hubspot_and_salesforce_records() {
    let hs = hubspot().await;
    let (sf, org) = salesforce("rt-2").await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    let loaded = settings(&hs, &sf, &store_url);
    let syncer = leadsync::daemon::syncer(&loaded).await.unwrap();
    let state = leadsync::daemon::app_state(&loaded, &syncer, Arc::new(Notify::new()));
    let app = Application::build(state, "127.0.0.1:0", 1024 * 1024).await.unwrap();
    let url = format!("http://{}/webhooks/hubspot", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let body = json!([{"eventId": 1, "subscriptionId": 2, "portalId": 3, "appId": 4,
        "occurredAt": Utc::now().timestamp_millis(), "subscriptionType": "contact.creation",
        "attemptNumber": 0, "objectId": 901, "changeSource": "FORM"}])
    .to_string();
    let status = post_signed(&reqwest::Client::new(), &url, SECRET, &body).await.status();
    assert_eq!(status, 200);
    while syncer.drain_inbox(Utc::now()).await.unwrap().1 > 0 {}
    // What the inbox pass committed, carried out as the daemon's outbox worker would.
    syncer
        .drain_outbox(leadsync::hubspot::limiter::Priority::RealTime, Utc::now())
        .await
        .unwrap();

    // HubSpot got the stage, the lifecycle stage and, after the promotion, the Salesforce ids.
    let updates: Vec<Value> = hs
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/crm/v3/objects/contacts/batch/update")
        .map(|r| r.body_json().unwrap())
        .collect();
    let written: Vec<&Value> = updates.iter().flat_map(|u| u["inputs"].as_array().unwrap()).collect();
    assert!(
        written.iter().any(|i| i["properties"]["leadsync_stage"] == "sql"),
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .any(|i| i["properties"]["lifecyclestage"] == "salesqualifiedlead")
    );
    let sf_ids = written
        .iter()
        .find(|i| i["properties"]["leadsync_sf_opportunity_id"].is_string())
        .expect("the Salesforce ids were written back");

    // Salesforce holds one Account, Contact, Opportunity and contact role.
    {
        let o = org.0.lock().unwrap();
        for object in ["Account", "Contact", "Opportunity", "OpportunityContactRole"] {
            assert_eq!(o.count(object), 1, "{object}");
        }
        let opp = &o.records["Opportunity"][0];
        assert_eq!(opp["LeadSync_Key__c"], "hs-901-0");
        assert_eq!(sf_ids["properties"]["leadsync_sf_opportunity_id"], opp["Id"]);
    }
    let row = &syncer
        .store
        .contacts(&[HubSpotId::try_from("901".to_string()).unwrap()])
        .await
        .unwrap()[&HubSpotId::try_from("901".to_string()).unwrap()];
    assert_eq!(row.state.stage, Some(Stage::Sql));

    // The refresh answered a new refresh token: it is kept (in its own table, not among the
    // cursors), and a restart logs in with it.
    let kept = syncer.store.refresh_token("salesforce").await.unwrap().unwrap();
    assert_eq!(kept.token.as_deref(), Some("rt-2"));
    assert_eq!(syncer.store.cursor("salesforce.refresh_token").await.unwrap(), None);
    let restarted = leadsync::daemon::syncer(&loaded).await.unwrap();
    restarted.promoter.as_ref().unwrap().ready().await.unwrap();
    let token_calls: Vec<String> = sf
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/services/oauth2/token")
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    assert_eq!(token_calls.len(), 2);
    assert!(token_calls[0].contains("refresh_token=rt-1"), "{token_calls:?}");
    assert!(token_calls[1].contains("refresh_token=rt-2"), "{token_calls:?}");
}
