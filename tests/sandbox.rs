use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leadsync::hubspot::auth::HubSpotAuth;
use leadsync::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use leadsync::hubspot::limiter::Priority;
use leadsync::hubspot::signature::verify_v3;
use leadsync::sandbox::portal::{ContactKind, Portal};
use leadsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{hubspot_token, refresh_grant};

/// Forms, page views and email events: paging, limits, per-tier availability.
mod behaviour;
/// What the sales SLA reads and writes: Salesforce Tasks and Events, HubSpot tasks, logged activity.
mod sla;
/// Standard single-record and list endpoints other clients use, and the settings path.
mod standard;

const BG: Priority = Priority::Background;

async fn sandbox(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(config).await.expect("the sandbox starts on loopback")
}

fn client(sb: &SandboxHandle, oauth: bool) -> HubSpotClient {
    let cfg = sb.config();
    let auth = if oauth {
        HubSpotAuth::oauth(
            Some(cfg.hubspot_portal_id),
            &sb.hubspot_token_url(),
            &cfg.hubspot_client_id,
            SecretString::from(cfg.hubspot_client_secret.clone()),
            SecretString::from(cfg.hubspot_refresh_token.clone()),
        )
        .unwrap()
    } else {
        HubSpotAuth::static_token(
            Some(cfg.hubspot_portal_id),
            SecretString::from(cfg.hubspot_private_app_token.clone()),
        )
    };
    let config = HubSpotClientConfig {
        burst: cfg.hubspot_burst_per_10s,
        search_per_second: cfg.hubspot_search_per_second,
        timeout: Some(Duration::from_secs(10)),
        ..crate::support::hubspot_config(&sb.hubspot_base_url())
    };
    HubSpotClient::new(config, auth).unwrap()
}

/// A raw HubSpot request with the private-app token.
async fn hs(sb: &SandboxHandle, verb: &str, p: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{p}", sb.hubspot_base_url());
    let mut req = reqwest::Client::new()
        .request(verb.parse().unwrap(), url)
        .bearer_auth(&sb.config().hubspot_private_app_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn inputs(n: usize) -> Value {
    let ids: Vec<Value> = (0..n).map(|i| json!({"id": (1001 + i).to_string()})).collect();
    json!({"properties": ["email"], "inputs": ids})
}

// README: "same seed, same portal"
#[tokio::test]
async fn the_same_seed_gives_the_same_portal_and_another_seed_another() {
    let now = "2026-11-25T12:00:00Z".parse().unwrap();
    let a = Portal::new(9, 2_000, 100, 6, now);
    let b = Portal::new(9, 2_000, 100, 6, now);
    let c = Portal::new(10, 2_000, 100, 6, now);
    for i in [0, 1, 13, 500, 1_999] {
        assert_eq!(a.contact(i), b.contact(i));
        assert_eq!(a.engagements(i, 1), b.engagements(i, 1));
    }
    assert!((0..50).any(|i| a.contact(i) != c.contact(i)));
    for kind in ContactKind::ALL {
        assert!((0..200).any(|i| a.kind(i) == kind), "{kind:?} is in the portal");
    }
    // Served the same through the API.
    let config = SandboxConfig {
        seed: 9,
        contacts: 300,
        ..SandboxConfig::default()
    };
    let (s1, s2) = (sandbox(config.clone()).await, sandbox(config).await);
    for id in ["1001", "1150", "1300"] {
        assert_eq!(s1.hubspot_contact(id), s2.hubspot_contact(id));
    }
    assert_eq!(s1.salesforce_records("Contact"), s2.salesforce_records("Contact"));
}

// README: "to a million contacts, generated on demand"
#[tokio::test]
async fn a_million_contacts_are_generated_lazily() {
    let now = "2026-11-25T12:00:00Z".parse().unwrap();
    let p = Portal::new(1, 1_000_000, 50_000, 12, now);
    let c = p.contact(999_999);
    assert_eq!(c.properties["hs_object_id"], "1001000");
    assert_eq!(p.index_of_email(&c.properties["email"]), Some(999_999));
}

#[tokio::test]
async fn the_hubspot_client_lists_reads_searches_and_updates_against_the_sandbox() {
    let sb = sandbox(SandboxConfig {
        contacts: 450,
        ..SandboxConfig::default()
    })
    .await;
    let client = client(&sb, true);
    let props = vec![
        "email".to_string(),
        "lifecyclestage".to_string(),
        "jobtitle".to_string(),
    ];

    let page = client.list_contacts(None, &props, BG).await.unwrap();
    assert_eq!(page.results.len(), 100);
    assert_eq!(page.results[0].id, "1001");
    let next = client.list_contacts(page.next_after(), &props, BG).await.unwrap();
    assert_eq!(next.results[0].id, "1101");

    let ids: Vec<String> = (1001..1251).map(|i| i.to_string()).collect();
    let read = client.batch_read_contacts(&ids, &props, None, BG).await.unwrap();
    assert_eq!(read.len(), 250, "three batch calls of at most 100");
    let email = read[7].prop("email").unwrap().to_string();
    let by_email = client
        .batch_read_contacts(std::slice::from_ref(&email), &props, Some("email"), BG)
        .await
        .unwrap();
    assert_eq!(by_email[0].id, read[7].id);

    let now = sb.now().timestamp_millis();
    let all = client
        .search_modified("contacts", "lastmodifieddate", 0, now + 1, &props, BG)
        .await
        .unwrap();
    assert_eq!(all.len(), 450, "every contact once");

    let updates = vec![
        (
            "1001".to_string(),
            BTreeMap::from([("jobtitle".to_string(), "Head of RevOps".to_string())]),
        ),
        (
            "1002".to_string(),
            BTreeMap::from([("no_such_property".to_string(), "x".to_string())]),
        ),
    ];
    let outcome = client.batch_update_contacts(&updates, BG).await.unwrap();
    assert_eq!(outcome.updated, vec!["1001".to_string()]);
    assert_eq!(outcome.failed[0].0, "1002");
    let after = sb.hubspot_contact("1001").unwrap();
    assert_eq!(after["jobtitle"], "Head of RevOps");

    // The write moved lastmodifieddate: a search from before it finds the contact.
    let changed = client
        .search_modified("contacts", "lastmodifieddate", now - 1, now + 60_000, &props, BG)
        .await
        .unwrap();
    assert_eq!(changed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["1001"]);

    // Engagements through associations v4 and batch reads.
    let contacts: Vec<String> = (1001..1101).map(|i| i.to_string()).collect();
    let events = client.contact_engagements(&contacts, BG).await.unwrap();
    assert!(!events.is_empty());

    let calls = sb.calls();
    assert_eq!(calls["hubspot contacts.batch_read"], 4);
    assert_eq!(calls["hubspot contacts.list"], 2);
    assert_eq!(calls["hubspot oauth.token"], 1);
    assert!(calls["hubspot contacts.search"] >= 3);
    sb.reset_calls();
    assert!(sb.calls().is_empty());
}

// README: "refuses what HubSpot refuses (batch over 100"
#[tokio::test]
async fn batches_over_100_are_refused() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/batch/read", Some(inputs(101))).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, _, _) = hs(&sb, "POST", "/crm/v3/objects/contacts/batch/update", Some(inputs(101))).await;
    assert_eq!(status, 400);
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/batch/read", Some(inputs(100))).await;
    assert_eq!((status, body["results"].as_array().unwrap().len()), (200, 100));
}

// README: "search page over 200, paging past 10,000"
#[tokio::test]
async fn search_pages_over_200_and_paging_past_10000_are_refused() {
    let sb = sandbox(SandboxConfig {
        contacts: 300,
        hubspot_search_per_second: 100,
        ..SandboxConfig::default()
    })
    .await;
    let search = |limit: u64, after: &str| json!({"filterGroups": [], "sorts": [], "properties": [], "limit": limit, "after": after});
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search(201, "0"))).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, _, _) = hs(
        &sb,
        "POST",
        "/crm/v3/objects/contacts/search",
        Some(search(200, "9900")),
    )
    .await;
    assert_eq!(status, 400, "past the 10,000th result");
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search(200, "0"))).await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(300)));
    assert_eq!(body["paging"]["next"]["after"], "200");
}

// README: "a backward lifecycle stage without clearing"
#[tokio::test]
async fn a_backward_lifecycle_stage_is_refused_unless_cleared_first() {
    let sb = sandbox(SandboxConfig::default()).await;
    let id = (1001..1501)
        .map(|i| i.to_string())
        .find(|id| sb.hubspot_contact(id).unwrap()["lifecyclestage"] == "lead")
        .unwrap();
    let p = format!("/crm/v3/objects/contacts/{id}");
    let set = |v: &str| Some(json!({"properties": {"lifecyclestage": v}}));
    let before = sb.hubspot_contact(&id).unwrap()["lastmodifieddate"].clone();
    let (status, _, _) = hs(&sb, "PATCH", &p, set("marketingqualifiedlead")).await;
    assert_eq!(status, 200, "forward is fine");
    assert_ne!(
        sb.hubspot_contact(&id).unwrap()["lastmodifieddate"],
        before,
        "a write bumps it"
    );
    let (status, _, body) = hs(&sb, "PATCH", &p, set("lead")).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert!(body["message"].as_str().unwrap().contains("forward"));
    assert_eq!(
        sb.hubspot_contact(&id).unwrap()["lifecyclestage"],
        "marketingqualifiedlead"
    );
    // In a batch, the refusal is per record (207).
    let batch =
        json!({"inputs": [{"id": id, "objectWriteTraceId": id, "properties": {"lifecyclestage": "subscriber"}}]});
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/batch/update", Some(batch)).await;
    assert_eq!(status, 207);
    assert_eq!(body["errors"][0]["context"]["objectWriteTraceId"][0], id.as_str());
    // Cleared first, it can go back.
    assert_eq!(hs(&sb, "PATCH", &p, set("")).await.0, 200);
    assert_eq!(hs(&sb, "PATCH", &p, set("lead")).await.0, 200);
    assert_eq!(sb.hubspot_contact(&id).unwrap()["lifecyclestage"], "lead");
    // The client's own backward path (clear, set, read back) works too.
    let client = client(&sb, false);
    client
        .set_lifecycle_stage(&id, "lifecyclestage", "subscriber", true, BG)
        .await
        .unwrap();
    assert_eq!(sb.hubspot_contact(&id).unwrap()["lifecyclestage"], "subscriber");
}

// README: "answers 429s with HubSpot's bodies and headers"
#[tokio::test]
async fn the_burst_search_and_daily_budgets_answer_429_with_policy_and_headers() {
    let sb = sandbox(SandboxConfig {
        hubspot_burst_per_10s: 3,
        hubspot_search_per_second: 2,
        hubspot_daily_limit: 6,
        ..SandboxConfig::default()
    })
    .await;
    for left in [2, 1, 0] {
        let (status, headers, _) = hs(&sb, "GET", "/crm/v3/owners", None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-hubspot-ratelimit-max"], "3");
        assert_eq!(headers["x-hubspot-ratelimit-remaining"], left.to_string().as_str());
        assert_eq!(headers["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    }
    let (status, headers, body) = hs(&sb, "GET", "/crm/v3/owners", None).await;
    assert_eq!(status, 429);
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert!(body["correlationId"].is_string());
    assert_eq!(headers["x-hubspot-ratelimit-remaining"], "0");

    let search = json!({"filterGroups": [], "limit": 1});
    for _ in 0..2 {
        assert_eq!(
            hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search.clone()))
                .await
                .0,
            200
        );
    }
    let (status, _, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search.clone())).await;
    assert_eq!(status, 429);
    assert!(body["message"].as_str().unwrap().contains("secondly limit"));

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search.clone()))
            .await
            .0,
        200
    );
    let (status, headers, body) = hs(&sb, "POST", "/crm/v3/objects/contacts/search", Some(search)).await;
    assert_eq!(
        (status, body["policyName"].as_str()),
        (429, Some("DAILY")),
        "6 spent today"
    );
    assert_eq!(headers["x-hubspot-ratelimit-daily-remaining"], "0");
    assert_eq!(sb.calls()["hubspot owners.list"], 4, "refused calls are counted too");
}

// README: "expires tokens"
#[tokio::test]
async fn an_expired_oauth_token_is_answered_401_and_a_bad_refresh_token_400() {
    let sb = sandbox(SandboxConfig {
        hubspot_token_lifetime: Duration::ZERO,
        ..SandboxConfig::default()
    })
    .await;
    let cfg = sb.config();
    let http = reqwest::Client::new();
    let token = hubspot_token(&sb.hubspot_token_url(), cfg).await;
    assert_eq!(token["expires_in"], 0);
    let resp = http
        .get(format!("{}/crm/v3/owners", sb.hubspot_base_url()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    assert!(body["message"].as_str().unwrap().contains("expired"));

    let resp = refresh_grant(
        &sb.hubspot_token_url(),
        &cfg.hubspot_client_id,
        &cfg.hubspot_client_secret,
        "revoked",
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["error"].as_str()),
        (Some("BAD_REFRESH_TOKEN"), Some("invalid_grant"))
    );
}

// README: "delivers signed v3 webhooks with retries"
#[tokio::test]
async fn a_form_submission_moves_the_contact_and_sends_a_signed_webhook_retried_on_failure() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/webhooks"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/webhooks"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let url = format!("{}/webhooks", receiver.uri());
    let sb = sandbox(SandboxConfig {
        webhook_url: Some(url.clone()),
        webhook_backoff: Duration::from_millis(20),
        ..SandboxConfig::default()
    })
    .await;
    let before = sb.hubspot_contact("1003").unwrap();
    let id = sb.submit_form("1003", "Request a demo").unwrap();
    assert_eq!(id, "1003");
    let after = sb.hubspot_contact("1003").unwrap();
    assert_eq!(after["recent_conversion_event_name"], "Pricing: Request a demo");
    assert_ne!(after["lastmodifieddate"], before["lastmodifieddate"]);
    let n = |p: &BTreeMap<String, String>| p["num_conversion_events"].parse::<u32>().unwrap();
    assert_eq!(n(&after), n(&before) + 1);

    let mut waited = 0;
    while !sb.webhook_deliveries().first().is_some_and(|d| d.delivered) {
        assert!(waited < 100, "delivered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    let d = &sb.webhook_deliveries()[0];
    assert_eq!((d.attempts, d.statuses.clone()), (2, vec![Some(503), Some(204)]));
    let requests = receiver.received_requests().await.unwrap();
    let last = requests.last().unwrap();
    let header = |k: &str| last.headers.get(k).and_then(|v| v.to_str().ok());
    let secret = SecretString::from(sb.config().hubspot_client_secret.clone());
    verify_v3(
        &secret,
        "POST",
        &url,
        &last.body,
        header("x-hubspot-request-timestamp"),
        header("x-hubspot-signature-v3"),
        chrono::Utc::now().timestamp_millis(),
    )
    .expect("signed v3 with the app secret");
    let events: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(events[0]["subscriptionType"], "contact.propertyChange");
    assert_eq!(events[0]["objectId"], 1003);
    assert_eq!(events[0]["attemptNumber"], 1);
    assert_eq!(events[0]["propertyName"], "recent_conversion_event_name");

    // The submission is listed for its form, newest first.
    let forms = client(&sb, false).forms(BG).await.unwrap();
    let demo = forms.iter().find(|f| f.name == "Request a demo").unwrap();
    let subs = client(&sb, false)
        .form_submissions(demo, sb.now() - chrono::Duration::minutes(5), BG)
        .await
        .unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].email, after["email"]);

    // A new email creates the contact.
    let new = sb.submit_form("new.person@example.org", "Request a demo").unwrap();
    assert_eq!(sb.hubspot_contact(&new).unwrap()["email"], "new.person@example.org");
    assert!(sb.touch(&new, 4));
    assert_eq!(sb.hubspot_contact(&new).unwrap()["hs_analytics_num_page_views"], "4");
}

async fn sf_token(sb: &SandboxHandle) -> (String, String) {
    let cfg = sb.config();
    let v: Value = refresh_grant(
        &format!("{}/services/oauth2/token", sb.salesforce_login_url()),
        &cfg.salesforce_client_id,
        &cfg.salesforce_client_secret,
        &cfg.salesforce_refresh_token,
    )
    .await
    .json()
    .await
    .unwrap();
    (
        v["access_token"].as_str().unwrap().into(),
        v["instance_url"].as_str().unwrap().into(),
    )
}

/// An sObject Collections upsert of Contacts by their HubSpot id.
async fn upsert_contacts(token: &str, instance: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    sf(
        token,
        instance,
        "PATCH",
        "/composite/sobjects/Contact/HubSpot_Contact_Id__c",
        Some(body),
    )
    .await
}

async fn sf(
    token: &str,
    instance: &str,
    verb: &str,
    p: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .request(verb.parse().unwrap(), format!("{instance}/services/data/v62.0{p}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn salesforce_upserts_by_external_id_create_then_update_and_report_usage() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    assert_eq!(instance, sb.salesforce_login_url());
    let before = sb.salesforce_records("Contact").len();
    let upsert = |last: &str| {
        json!({"allOrNone": false, "records": [{"attributes": {"type": "Contact"},
            "HubSpot_Contact_Id__c": "999001", "LastName": last, "Email": "fresh.lead@newco.example"}]})
    };
    let p = "/composite/sobjects/Contact/HubSpot_Contact_Id__c";
    let (status, headers, body) = sf(&token, &instance, "PATCH", p, Some(upsert("First"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body[0]["success"].as_bool(), body[0]["created"].as_bool()),
        (Some(true), Some(true))
    );
    let id = body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 18);
    assert_eq!(headers["sforce-limit-info"], "api-usage=1/100000");
    let (_, headers, body) = sf(&token, &instance, "PATCH", p, Some(upsert("Second"))).await;
    assert_eq!(
        (body[0]["id"].as_str(), body[0]["created"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    assert_eq!(headers["sforce-limit-info"], "api-usage=2/100000");
    let contacts = sb.salesforce_records("Contact");
    assert_eq!(contacts.len(), before + 1, "updated, not duplicated");
    let c = contacts.iter().find(|c| c["Id"] == id.as_str()).unwrap();
    assert_eq!(c["LastName"], "Second");
    assert!(c["SystemModstamp"].is_string() && c["LastModifiedDate"].is_string());

    // SOQL reads it back, ignoring case.
    let q = "SELECT Id, Email FROM Contact WHERE Email IN ('FRESH.LEAD@NEWCO.EXAMPLE') AND LastModifiedDate > 2020-01-01T00:00:00Z LIMIT 5";
    let (status, _, body) = sf(&token, &instance, "GET", &format!("/query?q={}", urlencode(q)), None).await;
    assert_eq!((status, body["totalSize"].as_u64()), (200, Some(1)));
    assert_eq!(body["records"][0]["Id"], id.as_str());
    let (status, _, body) = sf(&token, &instance, "GET", "/query?q=SELECT+Nope+FROM+Contact", None).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));

    // Over 200 records is refused.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"HubSpot_Contact_Id__c": i.to_string(), "LastName": "x"}))
        .collect();
    let (status, _, body) = sf(&token, &instance, "PATCH", p, Some(json!({"records": many}))).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("EXCEEDED_ID_LIMIT"))
    );

    // Describe shows the external ids.
    let (_, _, body) = sf(&token, &instance, "GET", "/sobjects/Opportunity/describe", None).await;
    let key = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "LeadSync_Key__c")
        .unwrap();
    assert_eq!(key["externalId"], true);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// README: "a duplicate rule"
#[tokio::test]
async fn creating_a_contact_whose_email_exists_is_refused_as_duplicates_detected() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    let existing = sb
        .salesforce_records("Contact")
        .into_iter()
        .find(|c| c["HubSpot_Contact_Id__c"].is_null())
        .expect("people sales entered by hand are in Salesforce");
    let email = existing["Email"].as_str().unwrap().to_uppercase();
    let create = json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "Again", "Email": email}]});
    let (status, _, body) = sf(&token, &instance, "POST", "/composite/sobjects", Some(create)).await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["success"], false);
    assert_eq!(body[0]["errors"][0]["statusCode"], "DUPLICATES_DETECTED");
    // Upserting onto a new external id with that email creates, so it is refused too.
    let upsert = json!({"records": [{"HubSpot_Contact_Id__c": "777", "LastName": "Again", "Email": email}]});
    let (_, _, body) = upsert_contacts(&token, &instance, upsert).await;
    assert_eq!(body[0]["errors"][0]["statusCode"], "DUPLICATES_DETECTED");
}

// README: "a duplicate rule" (one call saving many Contacts: the emails it saved count)
#[tokio::test]
async fn one_upsert_call_refuses_an_email_an_earlier_record_of_the_call_took_and_frees_one_it_moved() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    let contact = |key: &str, email: &str| json!({"HubSpot_Contact_Id__c": key, "LastName": "Call", "Email": email});
    let upsert = json!({"records": [
        contact("901", "first@call.example"),
        contact("902", "FIRST@call.example"),  // taken by 901 a record earlier
        contact("901", "moved@call.example"),  // 901 moves: its old email is free again
        contact("903", "first@call.example"),
        contact("904", "Moved@Call.example"),  // taken by 901's move
    ]});
    let (status, _, body) = upsert_contacts(&token, &instance, upsert).await;
    assert_eq!(status, 200);
    let outcome: Vec<(bool, Value)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["success"] == true, r["errors"][0]["statusCode"].clone()))
        .collect();
    let dup = json!("DUPLICATES_DETECTED");
    assert_eq!(
        outcome,
        vec![
            (true, Value::Null),
            (false, dup.clone()),
            (true, Value::Null),
            (true, Value::Null),
            (false, dup)
        ]
    );
    let emails: Vec<Value> = sb
        .salesforce_records("Contact")
        .into_iter()
        .filter(|c| ["901", "902", "903", "904"].contains(&c["HubSpot_Contact_Id__c"].as_str().unwrap_or("")))
        .map(|c| json!([c["HubSpot_Contact_Id__c"], c["Email"]]))
        .collect();
    assert_eq!(
        emails,
        vec![
            json!(["901", "moved@call.example"]),
            json!(["903", "first@call.example"])
        ]
    );
}

// README: "composite … a daily allocation"
#[tokio::test]
async fn composite_is_one_call_with_references_and_the_daily_allocation_is_enforced() {
    let sb = sandbox(SandboxConfig {
        salesforce_daily_allocation: 3,
        ..SandboxConfig::default()
    })
    .await;
    let (token, instance) = sf_token(&sb).await;
    let graph = json!({"allOrNone": true, "compositeRequest": [
        {"method": "PATCH", "url": "/services/data/v62.0/composite/sobjects/Account/HubSpot_Company_Id__c", "referenceId": "acc",
         "body": {"allOrNone": false, "records": [{"attributes": {"type": "Account"}, "HubSpot_Company_Id__c": "42", "Name": "NewCo"}]}},
        {"method": "POST", "url": "/services/data/v62.0/composite/sobjects", "referenceId": "con",
         "body": {"records": [{"attributes": {"type": "Contact"}, "LastName": "Doe", "AccountId": "@{acc[0].id}"}]}},
        {"method": "GET", "url": "/services/data/v62.0/query?q=SELECT+Id,AccountId+FROM+Contact+WHERE+Id+=+'@{con[0].id}'", "referenceId": "q"}
    ]});
    let (status, headers, body) = sf(&token, &instance, "POST", "/composite", Some(graph)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["sforce-limit-info"], "api-usage=1/3");
    let subs = body["compositeResponse"].as_array().unwrap();
    let account = subs[0]["body"][0]["id"].as_str().unwrap();
    assert_eq!(subs[2]["body"]["records"][0]["AccountId"], account);
    sf(&token, &instance, "GET", "/sobjects/Account/describe", None).await;
    sf(&token, &instance, "GET", "/sobjects/Contact/describe", None).await;
    let (status, headers, body) = sf(&token, &instance, "GET", "/sobjects/Contact/describe", None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (403, Some("REQUEST_LIMIT_EXCEEDED"))
    );
    assert_eq!(headers["sforce-limit-info"], "api-usage=3/3");
    assert_eq!(sb.calls()["salesforce composite"], 1);
}

#[tokio::test]
async fn salesforce_accepts_a_well_formed_jwt_bearer_and_opportunities_can_be_closed() {
    let sb = sandbox(SandboxConfig::default()).await;
    let cfg = sb.config();
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = chrono::Utc::now().timestamp() + 180;
    let claims = |iss: &str| {
        format!(
            "{}.{}.c2ln",
            enc(json!({"alg": "RS256"})),
            enc(
                json!({"iss": iss, "sub": "integration@leadsync.example", "aud": "https://login.salesforce.com", "exp": exp})
            )
        )
    };
    let token_url = format!("{}/services/oauth2/token", sb.salesforce_login_url());
    let http = reqwest::Client::new();
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let ok = http
        .post(&token_url)
        .form(&[("grant_type", grant), ("assertion", &claims(&cfg.salesforce_client_id))])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = http
        .post(&token_url)
        .form(&[("grant_type", grant), ("assertion", &claims("someone-else"))])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let garbage = http
        .post(&token_url)
        .form(&[("grant_type", grant), ("assertion", "not-a-jwt")])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    let opp = sb.salesforce_records("Opportunity")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sb.close_opportunity(&opp, false));
    let o = sb
        .salesforce_records("Opportunity")
        .into_iter()
        .find(|o| o["Id"] == opp.as_str())
        .unwrap();
    assert_eq!(
        (o["StageName"].as_str(), o["IsWon"].as_bool()),
        (Some("Closed Lost"), Some(false))
    );
    assert!(!sb.salesforce_records("User").is_empty(), "owners have user ids");
    sb.shutdown().await;
}

// README: "injects latency and faults"
#[tokio::test]
async fn injected_faults_answer_5xx_or_hang_then_504_and_latency_delays_every_answer() {
    let sb = sandbox(SandboxConfig {
        fault_rate_5xx: 1.0,
        ..SandboxConfig::default()
    })
    .await;
    let (status, _, body) = hs(&sb, "GET", "/crm/v3/owners", None).await;
    assert_eq!((status, body["status"].as_str()), (502, Some("error")));
    let sb = sandbox(SandboxConfig {
        fault_rate_timeout: 1.0,
        timeout_hang: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(hs(&sb, "GET", "/crm/v3/owners", None).await.0, 504);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let sb = sandbox(SandboxConfig {
        latency: Duration::from_millis(100),
        ..SandboxConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (status, headers, _) = hs(&sb, "GET", "/crm/v3/owners", None).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        headers.contains_key("x-hubspot-ratelimit-daily"),
        "private-app answers carry the daily headers"
    );
}

#[tokio::test]
async fn oauth_answers_leave_out_the_daily_headers_and_setup_creates_properties_once() {
    let sb = sandbox(SandboxConfig::default()).await;
    let rules = leadsync::lifecycle::Rules::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/lifecycle.toml"),
    )
    .unwrap();
    let client = client(&sb, true);
    let plan = client.plan_setup(&rules).await.unwrap();
    assert!(plan.create_group && !plan.create.is_empty());
    client.apply_setup(&plan).await.unwrap();
    let again = client.plan_setup(&rules).await.unwrap();
    assert!(!again.create_group && again.create.is_empty(), "{again:?}");
    // The new properties can be written now.
    let name = plan.create[0].name.clone();
    let kind = plan.create[0].kind.clone();
    let value = if kind == "number" { "12" } else { "x" };
    let updates = vec![("1001".to_string(), BTreeMap::from([(name.clone(), value.to_string())]))];
    let outcome = client.batch_update_contacts(&updates, BG).await.unwrap();
    assert_eq!(outcome.updated.len(), 1, "{outcome:?}");
    let owners = client.owners(BG).await.unwrap();
    assert_eq!(owners.len(), 8);

    let token = client.auth().token().await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/crm/v3/owners", sb.hubspot_base_url()))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-hubspot-ratelimit-max"));
    assert!(
        !resp.headers().contains_key("x-hubspot-ratelimit-daily"),
        "absent on OAuth answers"
    );
}

#[tokio::test]
async fn subscribed_property_changes_by_the_api_are_delivered_as_webhooks() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let sb = sandbox(SandboxConfig {
        webhook_url: Some(receiver.uri()),
        webhook_properties: vec!["lifecyclestage".into()],
        ..SandboxConfig::default()
    })
    .await;
    let set = |v: &str| Some(json!({"properties": {"lifecyclestage": v, "jobtitle": "CMO"}}));
    assert_eq!(
        hs(&sb, "PATCH", "/crm/v3/objects/contacts/1003", set("customer"))
            .await
            .0,
        200
    );
    assert_eq!(
        hs(&sb, "PATCH", "/crm/v3/objects/contacts/1003", set("customer"))
            .await
            .0,
        200
    );
    // A marker change after them: the sandbox starts its deliveries in the order of the
    // changes (this test's runtime runs spawned tasks first in, first out), so once the
    // marker's delivery is finished, any delivery of the unchanged value would be logged.
    assert_eq!(
        hs(&sb, "PATCH", "/crm/v3/objects/contacts/1003", set("evangelist"))
            .await
            .0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let marked = |r: &wiremock::Request| String::from_utf8_lossy(&r.body).contains("evangelist");
    while !receiver.received_requests().await.unwrap().iter().any(marked)
        || !sb.webhook_deliveries().iter().all(|d| d.finished)
    {
        assert!(tokio::time::Instant::now() < deadline, "the marker was delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = sb.webhook_deliveries();
    assert_eq!(
        deliveries.len(),
        2,
        "an unchanged value and unsubscribed properties send nothing: {deliveries:?}"
    );
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let first = requests
        .iter()
        .find(|r| !marked(r))
        .expect("the first change's delivery");
    let events: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["propertyName"], "lifecyclestage");
    assert_eq!(events[0]["propertyValue"], "customer");
    assert_eq!(events[0]["changeSource"], "INTEGRATION");
    assert_eq!(events[0]["portalId"], 42);
}

#[tokio::test]
async fn an_expired_salesforce_session_is_answered_401_invalid_session_id() {
    let sb = sandbox(SandboxConfig {
        salesforce_session_lifetime: Duration::ZERO,
        ..SandboxConfig::default()
    })
    .await;
    let (token, instance) = sf_token(&sb).await;
    let (status, headers, body) = sf(&token, &instance, "GET", "/sobjects/Contact/describe", None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (401, Some("INVALID_SESSION_ID"))
    );
    assert_eq!(headers["sforce-limit-info"], "api-usage=0/100000", "not counted");
}
