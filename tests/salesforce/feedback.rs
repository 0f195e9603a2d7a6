//! Opportunity changes since a watermark: ordered, tie-broken by Id, typed.

use leadsync::salesforce::feedback::{OpportunityResult, SalesforceWatermark};
use leadsync::salesforce::mapping::SalesforceMapping;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use super::{jwt_client, ok_json};

fn mapping() -> SalesforceMapping {
    SalesforceMapping::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/salesforce.toml")).unwrap()
}

fn opp(id: &str, key: &str, stamp: &str, stage: &str, won: bool, closed: bool) -> serde_json::Value {
    json!({"attributes": {"type": "Opportunity"}, "Id": id, "LeadSync_Key__c": key, "StageName": stage,
           "IsWon": won, "IsClosed": closed, "Amount": 12000.0, "CloseDate": "2026-12-20",
           "SystemModstamp": stamp})
}

// README: "opportunities changed since a `SystemModstamp` watermark"
#[tokio::test]
async fn changes_since_the_watermark_are_typed_ordered_and_never_repeated() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    // The org answers the second before the watermark too: the record at the watermark itself
    // (already seen) and one with the same stamp but a larger Id (not seen yet).
    let records = vec![
        opp(
            "006A",
            "hs-11-1",
            "2026-11-25T10:00:00.000+0000",
            "Qualification",
            false,
            false,
        ),
        opp(
            "006B",
            "hs-12-1",
            "2026-11-25T10:00:00.000+0000",
            "Closed Won",
            true,
            true,
        ),
        opp(
            "006C",
            "not-ours",
            "2026-11-25T10:00:05.000+0000",
            "Prospecting",
            false,
            false,
        ),
        opp(
            "006D",
            "hs-13-2",
            "2026-11-25T10:00:09.000+0000",
            "Closed Lost",
            false,
            true,
        ),
    ];
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(json!({"totalSize": 4, "done": true, "records": records})))
        .expect(1)
        .mount(&server)
        .await;
    let since = SalesforceWatermark {
        modstamp: "2026-11-25T10:00:00Z".parse().unwrap(),
        id: "006A".into(),
    };
    let (changes, mark) = client.opportunity_changes(&mapping(), Some(&since), 500).await.unwrap();
    let got: Vec<(&str, &str, OpportunityResult)> = changes
        .iter()
        .map(|c| (c.hubspot_contact_id.as_str(), c.opportunity_id.as_str(), c.result()))
        .collect();
    assert_eq!(
        got,
        [
            ("12", "006B", OpportunityResult::Won),
            ("13", "006D", OpportunityResult::Lost)
        ]
    );
    assert_eq!(
        (
            changes[1].cycle,
            changes[1].amount,
            changes[1].close_date.map(|d| d.to_string())
        ),
        (2, Some(12000.0), Some("2026-12-20".to_string()))
    );
    let mark = mark.unwrap();
    assert_eq!(
        (mark.id.as_str(), mark.modstamp.to_rfc3339()),
        ("006D", "2026-11-25T10:00:09+00:00".to_string())
    );

    let sent = &server.received_requests().await.unwrap();
    let query = sent.iter().find(|r| r.url.path().ends_with("/query")).unwrap();
    let soql = query.url.query_pairs().find(|(k, _)| k == "q").unwrap().1.to_string();
    assert!(soql.contains("LeadSync_Key__c != null"), "{soql}");
    assert!(soql.contains("SystemModstamp > 2026-11-25T09:59:59Z"), "{soql}");
    assert!(
        soql.ends_with("ORDER BY SystemModstamp ASC, Id ASC LIMIT 500"),
        "{soql}"
    );
}

#[tokio::test]
async fn nothing_changed_keeps_the_watermark() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(json!({"totalSize": 0, "done": true, "records": []})))
        .mount(&server)
        .await;
    let (changes, mark) = client.opportunity_changes(&mapping(), None, 100).await.unwrap();
    assert!(changes.is_empty() && mark.is_none());
}
