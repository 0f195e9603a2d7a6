//! What the sales SLA reads and writes, served by the sandbox to leadsync's real clients:
//! Salesforce Tasks and Events (`SalesforceClient::activities`), HubSpot tasks for reps
//! (`HubSpotClient::ensure_task`), and a rep's logged activity in either system.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use leadsync::hubspot::tasks::{HubSpotTask, task_marker};
use leadsync::lifecycle::EventKind;
use leadsync::lifecycle::snapshot::Direction;
use leadsync::salesforce::activities::{ActivityObject, ActivityWatermarks, SalesforceActivityConfig};
use leadsync::salesforce::auth::SalesforceAuth;
use leadsync::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use leadsync::salesforce::limits::SalesforceShare;
use leadsync::salesforce::retry::SalesforceRetryPolicy;
use leadsync::sandbox::{ACTIVITIES_PATH, SalesActivity, SalesActivityKind, SandboxConfig, SandboxHandle};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{BG, client, hs, sandbox, sf, sf_token};

fn frozen() -> SandboxConfig {
    SandboxConfig {
        frozen_clock: true,
        ..SandboxConfig::default()
    }
}

fn sf_client(sb: &SandboxHandle) -> SalesforceClient {
    let cfg = sb.config();
    let auth = SalesforceAuth::refresh_token(
        &sb.salesforce_login_url(),
        &cfg.salesforce_client_id,
        Some(SecretString::from(cfg.salesforce_client_secret.clone())),
        SecretString::from(cfg.salesforce_refresh_token.clone()),
    )
    .unwrap();
    let config = SalesforceClientConfig {
        api_version: "v62.0".into(),
        share: SalesforceShare { percent: 100 },
        timeout: Some(std::time::Duration::from_secs(10)),
        retry: SalesforceRetryPolicy::default(),
    };
    SalesforceClient::new(config, auth).unwrap()
}

/// A seeded Salesforce Contact, with its Account and owner.
fn sf_contact(sb: &SandboxHandle) -> (String, String, String) {
    let c = sb
        .salesforce_records("Contact")
        .into_iter()
        .find(|c| c["AccountId"].is_string())
        .expect("a seeded contact with an account");
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    (s("Id"), s("AccountId"), s("OwnerId"))
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

// README: "Tasks and Events … read by the activities client, every page, from the watermark"
#[tokio::test]
async fn salesforce_tasks_and_events_are_read_by_the_activities_client_every_page_from_the_watermark() {
    let sb = sandbox(frozen()).await;
    let client = sf_client(&sb);
    let config = SalesforceActivityConfig::default();
    let (contact, account, owner) = sf_contact(&sb);
    let opportunity = sb.salesforce_records("Opportunity")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();

    // The org's history, seeded before now: the owner's call on the contact, the meeting on a
    // customer's won opportunity.
    let records = [contact.clone(), opportunity.clone()];
    let (history, marks) = client
        .activities(&records, &ActivityWatermarks::default(), sb.now(), &config)
        .await
        .unwrap();
    let seen: Vec<(ActivityObject, EventKind, bool)> = history
        .iter()
        .map(|a| (a.object, a.touch.kind, a.touch.connected))
        .collect();
    assert_eq!(
        seen,
        [
            (ActivityObject::Task, EventKind::Call, true),
            (ActivityObject::Event, EventKind::Meeting, false)
        ]
    );
    assert_eq!(history[0].touch.by.as_deref(), Some(owner.as_str()));
    assert_eq!(history[0].who_id.as_deref(), Some(contact.as_str()));
    assert_eq!(history[1].what_id.as_deref(), Some(opportunity.as_str()));
    assert!(history.iter().all(|a| a.modstamp < sb.now()));

    // 2,100 calls logged a minute later: more than one 2,000-row batch, every page followed.
    sb.advance(ChronoDuration::minutes(1));
    let rep = "005000000000002AAA".to_string();
    for i in 0..2_100 {
        let call = SalesActivity {
            rep: Some(rep.clone()),
            at: Some(sb.now() - ChronoDuration::seconds(30)),
            connected: i % 2 == 0,
            ..SalesActivity::new(SalesActivityKind::Call)
        };
        sb.log_salesforce_activity(&contact, &call).unwrap();
    }
    let more_before = sb.calls().get("salesforce query.more").copied().unwrap_or(0);
    let (calls, marks) = client
        .activities(&[contact.clone(), account.clone()], &marks, sb.now(), &config)
        .await
        .unwrap();
    assert_eq!(calls.len(), 2_100, "each once, the seeded one not again");
    assert_eq!(
        sb.calls()["salesforce query.more"] - more_before,
        1,
        "the second batch read by nextRecordsUrl"
    );
    assert!(calls.iter().all(|a| a.touch.kind == EventKind::Call
        && a.touch.outbound
        && a.touch.by.as_deref() == Some(rep.as_str())
        && a.touch.at == sb.now() - ChronoDuration::seconds(30)));
    assert_eq!(calls.iter().filter(|a| a.touch.connected).count(), 1_050);
    let mut ids: Vec<&str> = calls.iter().map(|a| a.touch.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_100);

    // Nothing new: nothing read, the watermarks stay.
    let (none, same) = client
        .activities(std::slice::from_ref(&contact), &marks, sb.now(), &config)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(same, marks);

    // A meeting on the Opportunity and an inbound call on the Contact, later: only they come.
    sb.advance(ChronoDuration::minutes(5));
    let start = at("2026-11-26T14:00:00Z");
    let meeting = SalesActivity {
        at: Some(start),
        ..SalesActivity::new(SalesActivityKind::Meeting)
    };
    let (object, meeting_id) = sb.log_salesforce_activity(&opportunity, &meeting).unwrap();
    assert_eq!(object, "Event");
    let inbound = SalesActivity {
        inbound: true,
        ..SalesActivity::new(SalesActivityKind::Call)
    };
    let (_, inbound_id) = sb.log_salesforce_activity(&contact, &inbound).unwrap();
    let (fresh, marks) = client
        .activities(&[contact.clone(), opportunity.clone()], &marks, sb.now(), &config)
        .await
        .unwrap();
    let got: Vec<(&str, EventKind, bool)> = fresh
        .iter()
        .map(|a| (a.touch.id.as_str(), a.touch.kind, a.touch.outbound))
        .collect();
    assert_eq!(
        got,
        [
            (inbound_id.as_str(), EventKind::Call, false),
            (meeting_id.as_str(), EventKind::Meeting, true)
        ]
    );
    assert_eq!(fresh[1].touch.at, start, "a meeting counts at its start");
    assert_eq!(fresh[1].what_id.as_deref(), Some(opportunity.as_str()));
    assert_eq!(marks.event.as_ref().map(|w| w.id.as_str()), Some(meeting_id.as_str()));
}

// README: "POST sobjects/Task and Event … refused as Salesforce refuses"
#[tokio::test]
async fn tasks_and_events_are_created_over_rest_with_salesforces_defaults_and_refusals() {
    let sb = sandbox(frozen()).await;
    let (token, instance) = sf_token(&sb).await;
    let (contact, account, owner) = sf_contact(&sb);
    let post = |object: &'static str, body: Value| {
        let (token, instance) = (token.clone(), instance.clone());
        async move { sf(&token, &instance, "POST", &format!("/sobjects/{object}"), Some(body)).await }
    };

    let (status, _, body) = post(
        "Task",
        json!({"WhoId": contact, "WhatId": account, "OwnerId": owner, "Subject": "Call back",
               "TaskSubtype": "Call", "CallType": "Outbound", "CallDisposition": "Left voicemail",
               "ActivityDate": "2026-11-25", "Description": "asked for pricing"}),
    )
    .await;
    assert_eq!((status, body["success"].as_bool()), (201, Some(true)), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("00T") && id.len() == 18, "{id}");
    let task = sb
        .salesforce_records("Task")
        .into_iter()
        .find(|t| t["Id"] == id.as_str())
        .unwrap();
    assert_eq!(
        (task["Status"].as_str(), task["Priority"].as_str()),
        (Some("Not Started"), Some("Normal"))
    );
    assert!(task["SystemModstamp"].is_string() && task["CreatedDate"].is_string());

    let (status, _, body) = post(
        "Event",
        json!({"WhoId": contact, "Subject": "Demo", "StartDateTime": "2026-11-26T14:00:00.000+0000",
               "EndDateTime": "2026-11-26T14:45:00.000+0000"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let event = sb
        .salesforce_records("Event")
        .into_iter()
        .find(|e| e["Id"] == body["id"])
        .unwrap();
    assert_eq!(event["ActivityDateTime"], "2026-11-26T14:00:00.000+0000");
    assert_eq!(event["DurationInMinutes"], 45);
    assert_eq!(
        event["OwnerId"],
        sb.salesforce_records("User")[0]["Id"],
        "the API user by default"
    );

    let refused = [
        (
            "Task",
            json!({"WhoId": contact, "Status": ""}),
            "REQUIRED_FIELD_MISSING",
            "Status",
        ),
        (
            "Event",
            json!({"WhoId": contact, "StartDateTime": "2026-11-26T14:00:00Z"}),
            "REQUIRED_FIELD_MISSING",
            "DurationInMinutes",
        ),
        (
            "Event",
            json!({"WhoId": contact, "DurationInMinutes": 30}),
            "REQUIRED_FIELD_MISSING",
            "ActivityDateTime",
        ),
        ("Task", json!({"WhoId": account}), "FIELD_INTEGRITY_EXCEPTION", "WhoId"),
        (
            "Task",
            json!({"WhatId": "006000000000000AAA"}),
            "INVALID_CROSS_REFERENCE_KEY",
            "WhatId",
        ),
        (
            "Task",
            json!({"WhoId": contact, "OwnerId": contact}),
            "FIELD_INTEGRITY_EXCEPTION",
            "OwnerId",
        ),
        (
            "Task",
            json!({"WhoId": contact, "IsWon": true}),
            "INVALID_FIELD",
            "IsWon",
        ),
    ];
    let before = (
        sb.salesforce_records("Task").len(),
        sb.salesforce_records("Event").len(),
    );
    for (object, body, code, field) in refused {
        let (status, _, answer) = post(object, body.clone()).await;
        assert_eq!(
            (status, answer[0]["errorCode"].as_str()),
            (400, Some(code)),
            "{object} {body}: {answer}"
        );
        assert!(
            answer[0]["fields"].to_string().contains(field) || answer[0]["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    assert_eq!(
        (
            sb.salesforce_records("Task").len(),
            sb.salesforce_records("Event").len()
        ),
        before,
        "nothing refused was made"
    );
    assert_eq!(sb.calls()["salesforce sobject.create"], 9, "counted like every call");

    // A TaskSubtype is set once.
    let (status, _, body) = sf(
        &token,
        &instance,
        "PATCH",
        &format!("/sobjects/Task/{id}"),
        Some(json!({"TaskSubtype": "Email"})),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("INVALID_FIELD_FOR_INSERT_UPDATE"))
    );
}

fn task(key: &str, contact: &str, owner: &str) -> HubSpotTask {
    HubSpotTask {
        key: key.into(),
        contact_id: contact.into(),
        owner_id: owner.into(),
        subject: "SLA: first touch overdue".into(),
        body: "Demo request waiting since 09:00.".into(),
        due: at("2026-11-25T13:00:00Z"),
    }
}

/// A HubSpot contact with its owner, which has `tasks` of the portal's own already.
fn hs_contact_with_tasks(sb: &SandboxHandle) -> (String, String) {
    let index = (0..sb.portal().contacts)
        .find(|&i| sb.portal().engagement_count(i, 4) > 0 && sb.portal().contact(i).owner.is_some())
        .expect("a contact with tasks and an owner");
    let id = (1001 + u64::from(index)).to_string();
    let owner = sb.hubspot_contact(&id).unwrap()["hubspot_owner_id"].clone();
    (id, owner)
}

// README: "a task made once, found again by its marker"
#[tokio::test]
async fn a_hubspot_task_is_made_once_by_ensure_task_and_found_again_by_its_marker() {
    let sb = sandbox(frozen()).await;
    let hubspot = client(&sb, false);
    let (contact, owner) = hs_contact_with_tasks(&sb);
    let key = "sla:1:mql_follow_up:1795510800000:0";

    let first = hubspot.ensure_task(&task(key, &contact, &owner), BG).await.unwrap();
    assert!(first.created);
    let again = hubspot.ensure_task(&task(key, &contact, &owner), BG).await.unwrap();
    assert_eq!((again.id.as_str(), again.created), (first.id.as_str(), false));
    let other = hubspot
        .ensure_task(&task("sla:1:mql_follow_up:1795510800000:1", &contact, &owner), BG)
        .await
        .unwrap();
    assert!(other.created && other.id != first.id, "another step, another task");
    assert_eq!(sb.calls()["hubspot tasks.create"], 2);

    // As HubSpot shows it: the properties sent, associated with the contact both ways.
    let (status, _, body) = hs(
        &sb,
        "GET",
        &format!("/crm/v3/objects/tasks/{}?properties=hs_task_subject,hs_task_body,hubspot_owner_id,hs_timestamp,hs_task_status,hs_task_priority&associations=contacts", first.id),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let p = &body["properties"];
    assert_eq!(p["hs_task_subject"], "SLA: first touch overdue");
    assert!(p["hs_task_body"].as_str().unwrap().ends_with(&task_marker(key)));
    assert_eq!(
        (
            p["hubspot_owner_id"].as_str(),
            p["hs_task_status"].as_str(),
            p["hs_task_priority"].as_str()
        ),
        (Some(owner.as_str()), Some("NOT_STARTED"), Some("HIGH"))
    );
    assert_eq!(p["hs_timestamp"], "2026-11-25T13:00:00.000Z");
    assert_eq!(body["associations"]["contacts"]["results"][0]["id"], contact.as_str());
    let (_, _, page) = hs(
        &sb,
        "GET",
        &format!("/crm/v4/objects/contacts/{contact}/associations/tasks"),
        None,
    )
    .await;
    let linked: Vec<String> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["toObjectId"].to_string())
        .collect();
    assert!(linked.contains(&first.id) && linked.contains(&other.id), "{page}");
    assert!(linked.len() > 2, "the portal's own tasks are there too: {page}");
}

// README: "refusing what HubSpot refuses" (task creation)
#[tokio::test]
async fn a_task_hubspot_would_refuse_is_refused_with_the_property_named_and_nothing_is_made() {
    let sb = sandbox(frozen()).await;
    let (contact, owner) = hs_contact_with_tasks(&sb);
    let link = |id: &str, type_id: u32| json!([{"to": {"id": id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]);
    let cases = [
        (
            json!({"properties": {"hs_task_subject": "x"}, "associations": link(&contact, 204)}),
            "hs_timestamp",
        ),
        (
            json!({"properties": {"hs_timestamp": "1795525200000", "hubspot_owner_id": "123"}, "associations": link(&contact, 204)}),
            "INVALID_OWNER_ID",
        ),
        (
            json!({"properties": {"hs_timestamp": "1795525200000", "hs_task_status": "DONE"}, "associations": link(&contact, 204)}),
            "hs_task_status",
        ),
        (
            json!({"properties": {"hs_timestamp": "1795525200000", "hs_nope": "1"}, "associations": link(&contact, 204)}),
            "hs_nope",
        ),
        (
            json!({"properties": {"hs_timestamp": "1795525200000", "hubspot_owner_id": owner}, "associations": link("999999999", 204)}),
            "999999999",
        ),
        (
            json!({"properties": {"hs_timestamp": "1795525200000"}, "associations": link(&contact, 203)}),
            "associationTypeId 204",
        ),
    ];
    for (body, named) in cases {
        let (status, _, answer) = hs(&sb, "POST", "/crm/v3/objects/tasks", Some(body.clone())).await;
        assert_eq!(
            (status, answer["category"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{body}: {answer}"
        );
        assert!(answer.to_string().contains(named), "{named} in {answer}");
    }
    let (status, _, made) = hs(&sb, "GET", "/crm/v3/objects/tasks?limit=100&after=90000000000", None).await;
    assert_eq!(status, 200);
    assert_eq!(made["results"], json!([]), "nothing made");
}

// README: "a lost answer settled by the next attempt's look-up"
#[tokio::test]
async fn a_task_create_whose_answer_is_lost_is_applied_once_and_found_by_the_retry() {
    let sb = sandbox(SandboxConfig {
        fault_rate_lost: 1.0,
        ..frozen()
    })
    .await;
    let hubspot = client(&sb, false);
    let (contact, owner) = hs_contact_with_tasks(&sb);
    let key = "sla:7:demo_request:1795510800000:0";
    let err = hubspot.ensure_task(&task(key, &contact, &owner), BG).await.unwrap_err();
    assert!(err.to_string().contains("tasks.create"), "{err}");
    assert_eq!(sb.faults()["applied_answer_lost"], 1);
    let found = hubspot.ensure_task(&task(key, &contact, &owner), BG).await.unwrap();
    assert!(!found.created, "the retry's look-up finds what the lost create made");
    assert_eq!(sb.calls()["hubspot tasks.create"], 1, "sent once");
}

// README: "a rep's call, email or meeting logged in either system"
#[tokio::test]
async fn a_rep_logs_activity_in_hubspot_and_the_pull_reads_it_as_an_engagement() {
    let sb = sandbox(frozen()).await;
    let hubspot = client(&sb, false);
    let (contact, owner) = hs_contact_with_tasks(&sb);
    let before = sb.hubspot_contact(&contact).unwrap()["lastmodifieddate"].clone();
    sb.advance(ChronoDuration::minutes(10));
    let called = sb.now() - ChronoDuration::minutes(2);
    let call = SalesActivity {
        at: Some(called),
        ..SalesActivity::new(SalesActivityKind::Call)
    };
    let (object, id) = sb.log_hubspot_activity(&contact, &call).unwrap();
    assert_eq!(object, "calls");
    let props = sb.hubspot_contact(&contact).unwrap();
    assert_eq!(props["notes_last_contacted"], "2026-11-25T12:08:00.000Z");
    assert_ne!(
        props["lastmodifieddate"], before,
        "the contact moves, so the cycle reads it"
    );

    // Read by the pull's two paths: per contact, and modified since.
    let engagements = hubspot
        .contact_engagements(std::slice::from_ref(&contact), BG)
        .await
        .unwrap();
    let event = engagements[&contact]
        .iter()
        .find(|e| e.id == format!("hs-calls-{id}"))
        .expect("the logged call");
    assert_eq!(
        (event.kind, event.at, event.direction),
        (EventKind::Call, called, Some(Direction::Outbound))
    );
    assert_eq!(event.outcome.as_deref(), Some("connected"));
    let from = (sb.now() - ChronoDuration::minutes(1)).timestamp_millis();
    let modified = hubspot
        .engagements_modified(from, sb.now().timestamp_millis() + 1, BG)
        .await
        .unwrap();
    assert_eq!(modified.len(), 1, "{modified:?}");
    assert_eq!(modified[&contact].len(), 1);
    let (_, _, body) = hs(
        &sb,
        "GET",
        &format!("/crm/v3/objects/calls/{id}?properties=hubspot_owner_id"),
        None,
    )
    .await;
    assert_eq!(
        body["properties"]["hubspot_owner_id"],
        owner.as_str(),
        "the contact's owner by default"
    );

    // An inbound meeting the contact booked, and a rep who is not an owner.
    let booked = SalesActivity {
        inbound: true,
        ..SalesActivity::new(SalesActivityKind::Meeting)
    };
    let (object, _) = sb.log_hubspot_activity(&contact, &booked).unwrap();
    assert_eq!(object, "meetings");
    let stranger = SalesActivity {
        rep: Some("nobody".into()),
        ..SalesActivity::new(SalesActivityKind::Email)
    };
    let refused = sb.log_hubspot_activity(&contact, &stranger).unwrap_err();
    assert!(refused.contains("hubspot_owner_id"), "{refused}");
    let unknown = sb.log_hubspot_activity("999999999", &call).unwrap_err();
    assert!(unknown.contains("999999999"), "{unknown}");
}

// README: "`POST /_sandbox/activities`"
#[tokio::test]
async fn the_activities_control_route_logs_on_either_listener_and_names_a_bad_field() {
    let sb = sandbox(frozen()).await;
    let (contact, _) = hs_contact_with_tasks(&sb);
    let (sf_contact_id, _, _) = sf_contact(&sb);
    let post = |base: String, body: Value| async move {
        let resp = reqwest::Client::new()
            .post(format!("{base}{ACTIVITIES_PATH}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (status, body) = post(
        sb.hubspot_base_url(),
        json!({"on": contact, "kind": "email", "at": "2026-11-25T11:30:00Z"}),
    )
    .await;
    assert_eq!((status, body["object"].as_str()), (201, Some("emails")), "{body}");
    let (status, body) = post(
        sb.salesforce_login_url(),
        json!({"on": sf_contact_id, "kind": "call", "connected": false}),
    )
    .await;
    assert_eq!((status, body["object"].as_str()), (201, Some("Task")), "{body}");
    let task = sb
        .salesforce_records("Task")
        .into_iter()
        .find(|t| t["Id"] == body["id"])
        .unwrap();
    assert_eq!(task["CallDisposition"], "No answer");

    for (body, named) in [
        (json!({"on": contact, "kind": "fax"}), "kind"),
        (json!({"kind": "call"}), "on"),
        (json!({"on": contact, "kind": "call", "at": "yesterday"}), "at"),
        (json!({"on": contact, "kind": "call", "when": "now"}), "when"),
        (json!({"on": contact, "kind": "call", "inbound": "yes"}), "inbound"),
    ] {
        let (status, answer) = post(sb.hubspot_base_url(), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(answer["message"].as_str().unwrap().contains(named), "{named}: {answer}");
    }
    let (status, _) = post(sb.hubspot_base_url(), json!({"on": "999999999", "kind": "call"})).await;
    assert_eq!(status, 404);
    let (status, _) = post(
        sb.salesforce_login_url(),
        json!({"on": "003000000000000AAA", "kind": "call"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, answer) = post(
        sb.salesforce_login_url(),
        json!({"on": sf_contact_id, "kind": "call", "rep": "005nobody"}),
    )
    .await;
    assert_eq!(
        (status, answer[0]["statusCode"].as_str()),
        (400, Some("INVALID_CROSS_REFERENCE_KEY")),
        "{answer}"
    );
}

// README: "Creates are writes for the fault injection" (Salesforce)
#[tokio::test]
async fn a_task_created_over_rest_whose_answer_is_lost_is_stored_all_the_same() {
    let sb = sandbox(SandboxConfig {
        fault_rate_lost: 1.0,
        ..frozen()
    })
    .await;
    let (token, instance) = sf_token(&sb).await;
    let (contact, _, _) = sf_contact(&sb);
    let before = sb.salesforce_records("Task").len();
    let body = json!({"WhoId": contact, "Subject": "Call back", "TaskSubtype": "Call"});
    let (status, _, answer) = sf(&token, &instance, "POST", "/sobjects/Task", Some(body)).await;
    assert_eq!(
        (status, answer[0]["errorCode"].as_str()),
        (503, Some("SERVER_UNAVAILABLE")),
        "{answer}"
    );
    assert_eq!(
        sb.salesforce_records("Task").len(),
        before + 1,
        "applied, its answer lost"
    );
    assert_eq!(sb.faults()["applied_answer_lost"], 1);
}
