//! A task for the owner on the contact (the SLA ladder's first step): made once per key, found
//! again on a retry, the create never repeated by the client.

use leadsync::hubspot::tasks::{EnsuredTask, HubSpotTask, TASK_TO_CONTACT, task_marker};
use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{BG, static_client};

fn task(key: &str) -> HubSpotTask {
    HubSpotTask {
        key: key.into(),
        contact_id: "101".into(),
        owner_id: "9001".into(),
        subject: "SLA: first touch overdue".into(),
        body: "Demo request waiting since 09:00.".into(),
        due: "2026-11-24T13:00:00Z".parse().unwrap(),
    }
}

/// The contact's tasks as associations v4 answers them: `ids` after the first `first_empty` reads.
async fn contact_tasks(server: &MockServer, first_empty: u64, ids: &[&str]) {
    let linked: Vec<_> = ids
        .iter()
        .map(|id| json!({"toObjectId": id.parse::<u64>().unwrap()}))
        .collect();
    if first_empty > 0 {
        Mock::given(method("POST"))
            .and(path("/crm/v4/associations/contacts/tasks/batch/read"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": []})))
            .up_to_n_times(first_empty)
            .with_priority(1)
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/crm/v4/associations/contacts/tasks/batch/read"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": [
            {"from": {"id": "101"}, "to": linked}]})),
        )
        .with_priority(2)
        .mount(server)
        .await;
}

fn task_bodies(tasks: &[(&str, &str)]) -> ResponseTemplate {
    let results: Vec<_> = tasks
        .iter()
        .map(|(id, body)| json!({"id": id, "properties": {"hs_task_body": body}}))
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": results}))
}

#[tokio::test]
async fn a_task_is_made_once_for_the_owner_on_the_contact_and_found_again_on_the_next_attempt() {
    let server = MockServer::start().await;
    let client = static_client(&server);
    let key = "sla:101:demo:1795510800000:0";
    contact_tasks(&server, 1, &["555"]).await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .and(body_partial_json(json!({
            "properties": {"hubspot_owner_id": "9001", "hs_task_subject": "SLA: first touch overdue",
                           "hs_timestamp": "1795525200000", "hs_task_status": "NOT_STARTED"},
            "associations": [{"to": {"id": "101"},
                              "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}]}]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "555", "properties": {}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/batch/read"))
        .respond_with(task_bodies(&[(
            "555",
            &format!("Demo request waiting since 09:00.\n\n{}", task_marker(key)),
        )]))
        .expect(1)
        .mount(&server)
        .await;

    let first = client.ensure_task(&task(key), BG).await.unwrap();
    assert_eq!(
        first,
        EnsuredTask {
            id: "555".into(),
            created: true
        }
    );
    let again = client.ensure_task(&task(key), BG).await.unwrap();
    assert_eq!(
        again,
        EnsuredTask {
            id: "555".into(),
            created: false
        }
    );

    let sent = server.received_requests().await.unwrap();
    let create = sent.iter().find(|r| r.url.path() == "/crm/v3/objects/tasks").unwrap();
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert!(
        body["properties"]["hs_task_body"]
            .as_str()
            .unwrap()
            .ends_with(&task_marker(key)),
        "{body}"
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_sent_once_and_the_retry_finds_what_it_made() {
    let server = MockServer::start().await;
    let client = static_client(&server);
    let key = "sla:101:demo:1795510800000:0";
    // The create lands but its answer is a 503: the client does not send it again.
    contact_tasks(&server, 1, &["777"]).await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/batch/read"))
        .respond_with(task_bodies(&[("777", &format!("notes\n\n{}", task_marker(key)))]))
        .mount(&server)
        .await;
    let err = client.ensure_task(&task(key), BG).await.unwrap_err();
    assert!(err.to_string().contains("tasks.create"), "{err}");
    // The outbox's next attempt: the look-up finds the task, nothing is created.
    let found = client.ensure_task(&task(key), BG).await.unwrap();
    assert_eq!(
        found,
        EnsuredTask {
            id: "777".into(),
            created: false
        }
    );
}

#[tokio::test]
async fn the_contacts_other_tasks_are_not_mistaken_for_this_one() {
    let server = MockServer::start().await;
    let client = static_client(&server);
    contact_tasks(&server, 0, &["1", "2"]).await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/batch/read"))
        .respond_with(task_bodies(&[
            ("1", "Call back Tuesday"),
            ("2", &format!("x\n\n{}", task_marker("sla:101:demo:1795510800000:1"))),
        ]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "3"})))
        .expect(1)
        .mount(&server)
        .await;
    // Step 0's key is not step 1's (nor a prefix of it: the marker is bracketed).
    let made = client
        .ensure_task(&task("sla:101:demo:1795510800000:0"), BG)
        .await
        .unwrap();
    assert_eq!(
        made,
        EnsuredTask {
            id: "3".into(),
            created: true
        }
    );
}
