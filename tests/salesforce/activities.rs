//! Tasks and Events on promoted records since a watermark: every page, each once, as touches.

use leadsync::lifecycle::EventKind;
use leadsync::salesforce::activities::{ActivityWatermarks, SalesforceActivityConfig};
use leadsync::salesforce::feedback::SalesforceWatermark;
use leadsync::sla::timer::System;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param_contains};
use wiremock::{Mock, MockServer};

use super::{jwt_client, ok_json};

fn call(id: &str, who: &str, stamp: &str, disposition: &str) -> Value {
    json!({"attributes": {"type": "Task"}, "Id": id, "WhoId": who, "WhatId": null, "OwnerId": "005REP",
           "TaskSubtype": "Call", "Type": "Call", "CallType": "Outbound", "CallDisposition": disposition,
           "CreatedDate": stamp, "SystemModstamp": stamp})
}

fn meeting(id: &str, what: &str, stamp: &str, start: &str) -> Value {
    json!({"attributes": {"type": "Event"}, "Id": id, "WhoId": null, "WhatId": what, "OwnerId": "005REP",
           "EventSubtype": "Event", "Type": "Meeting", "ActivityDateTime": start,
           "CreatedDate": stamp, "SystemModstamp": stamp})
}

#[tokio::test]
async fn tasks_and_events_since_the_watermarks_follow_every_page_and_become_touches_once() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    // Tasks in two pages: the task at the watermark itself (seen last time) comes back with the
    // second before it and is dropped; a task with the same stamp and a larger Id is new.
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .and(query_param_contains("q", "FROM Task"))
        .respond_with(ok_json(json!({"totalSize": 3, "done": false,
            "records": [call("00TA", "003C", "2026-11-25T10:00:00.000+0000", "Connected"),
                        call("00TB", "003C", "2026-11-25T10:00:00.000+0000", "No answer")],
            "nextRecordsUrl": "/services/data/v62.0/query/01gTASKS-2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query/01gTASKS-2"))
        .respond_with(ok_json(json!({"totalSize": 3, "done": true,
            "records": [call("00TC", "003C", "2026-11-25T10:30:00.000+0000", "connected")]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .and(query_param_contains("q", "FROM Event"))
        .respond_with(ok_json(json!({"totalSize": 1, "done": true,
            "records": [meeting("00UA", "006OPP", "2026-11-25T10:10:00.000+0000", "2026-11-26T14:00:00.000+0000")]})))
        .expect(1)
        .mount(&server)
        .await;

    let since = ActivityWatermarks {
        task: Some(SalesforceWatermark {
            modstamp: "2026-11-25T10:00:00Z".parse().unwrap(),
            id: "00TA".into(),
        }),
        event: None,
    };
    let until = "2026-11-25T11:00:00Z".parse().unwrap();
    let records = vec!["003C".to_string(), "001ACC".to_string(), "006OPP".to_string()];
    let (found, marks) = client
        .activities(&records, &since, until, &SalesforceActivityConfig::default())
        .await
        .unwrap();

    let got: Vec<(&str, EventKind, bool)> = found
        .iter()
        .map(|a| (a.touch.id.as_str(), a.touch.kind, a.touch.connected))
        .collect();
    assert_eq!(
        got,
        [
            ("00TB", EventKind::Call, false),
            ("00TC", EventKind::Call, true),
            ("00UA", EventKind::Meeting, false)
        ]
    );
    assert!(
        found
            .iter()
            .all(|a| a.touch.system == System::Salesforce && a.touch.outbound)
    );
    assert!(found.iter().all(|a| a.touch.by.as_deref() == Some("005REP")));
    assert_eq!(found[2].what_id.as_deref(), Some("006OPP"));
    assert_eq!(
        found[2].touch.at,
        "2026-11-26T14:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    );
    assert_eq!(marks.task.as_ref().map(|w| w.id.as_str()), Some("00TC"));
    assert_eq!(marks.event.as_ref().map(|w| w.id.as_str()), Some("00UA"));

    // The queries named the records and both ends of the window.
    let requests = server.received_requests().await.unwrap();
    let task_query = requests
        .iter()
        .filter_map(|r| r.url.query_pairs().find(|(k, _)| k == "q").map(|(_, v)| v.into_owned()))
        .find(|q| q.contains("FROM Task"))
        .unwrap();
    assert!(
        task_query.contains("WhoId IN ('003C', '001ACC', '006OPP')"),
        "{task_query}"
    );
    assert!(
        task_query.contains("SystemModstamp > 2026-11-25T09:59:59Z"),
        "{task_query}"
    );
    assert!(
        task_query.contains("SystemModstamp <= 2026-11-25T11:00:00Z"),
        "{task_query}"
    );
}

#[tokio::test]
async fn many_records_are_read_a_hundred_per_query_and_nothing_new_keeps_the_watermarks() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(json!({"totalSize": 0, "done": true, "records": []})))
        .expect(6)
        .mount(&server)
        .await;
    let records: Vec<String> = (0..250).map(|i| format!("003{i:015}")).collect();
    let since = ActivityWatermarks {
        task: Some(SalesforceWatermark {
            modstamp: "2026-11-25T10:00:00Z".parse().unwrap(),
            id: "00TA".into(),
        }),
        event: None,
    };
    let (found, marks) = client
        .activities(
            &records,
            &since,
            chrono::Utc::now(),
            &SalesforceActivityConfig::default(),
        )
        .await
        .unwrap();
    assert!(found.is_empty());
    assert_eq!(marks, since);
    // Three queries per object (100 + 100 + 50 ids), every id in exactly one of each object's.
    let queries: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.url.query_pairs().find(|(k, _)| k == "q").map(|(_, v)| v.into_owned()))
        .collect();
    for object in ["FROM Task", "FROM Event"] {
        let of: Vec<&String> = queries.iter().filter(|q| q.contains(object)).collect();
        assert_eq!(of.len(), 3, "{object}");
        for id in &records {
            let needle = format!("WhoId IN ('{id}'");
            let inside = format!(", '{id}'");
            let n = of
                .iter()
                .filter(|q| {
                    q.split(" OR WhatId")
                        .next()
                        .is_some_and(|who| who.contains(&needle) || who.contains(&inside))
                })
                .count();
            assert_eq!(n, 1, "{object} {id}");
        }
    }
}
