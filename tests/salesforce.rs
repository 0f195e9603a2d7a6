use std::sync::{Arc, Mutex};

use leadsync::salesforce::auth::SalesforceAuth;
use leadsync::salesforce::client::{SalesforceClient, SalesforceClientConfig, SalesforceError};
use leadsync::salesforce::limits::SalesforceShare;
use leadsync::salesforce::retry::SalesforceRetryPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod activities;
mod feedback;
mod mapping;
pub(crate) mod promote;

const TOKEN_PATH: &str = "/services/oauth2/token";
const KEY: &[u8] = include_bytes!("fixtures/salesforce_test_key.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/salesforce_test_key.pub.pem");

fn contract(p: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/contracts/salesforce")
        .join(p);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A token answer pointing API calls back at the mock server.
pub(crate) fn token_answer(server: &MockServer, access: &str, refresh: Option<&str>) -> ResponseTemplate {
    let mut body: Value = serde_json::from_str(&contract("restforce/auth_success_response.json")).unwrap();
    body["instance_url"] = json!(server.uri());
    body["access_token"] = json!(access);
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

fn config(percent: u8) -> SalesforceClientConfig {
    SalesforceClientConfig {
        api_version: "v62.0".into(),
        share: SalesforceShare { percent },
        timeout: None,
        retry: SalesforceRetryPolicy::default(),
    }
}

pub(crate) fn ok_json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("Sforce-Limit-Info", "api-usage=100/100000")
        .set_body_json(body)
}

pub(crate) async fn jwt_client(server: &MockServer) -> SalesforceClient {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer(server, "access-jwt", None))
        .mount(server)
        .await;
    let auth = SalesforceAuth::jwt(&server.uri(), "consumer-key", "integration@acme.test", KEY).unwrap();
    SalesforceClient::new(config(100), auth).unwrap()
}

fn empty_query() -> Value {
    json!({"totalSize": 0, "done": true, "records": []})
}

#[derive(serde::Deserialize, Debug)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
}

/// Salesforce's query endpoint on `server` answering `times` queries made with the access
/// token `bearer` with `answer`.
async fn query_answers(server: &MockServer, bearer: &str, answer: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .and(header("authorization", format!("Bearer {bearer}")))
        .respond_with(answer)
        .expect(times)
        .mount(server)
        .await;
}

/// The 401 Salesforce answers an expired session with (the shared restforce body).
fn expired_session() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_string(contract("restforce/expired_session_response.json"))
}

#[tokio::test]
async fn jwt_bearer_assertion_is_rs256_signed_with_the_apps_key_and_calls_go_to_the_instance() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    query_answers(&server, "access-jwt", ok_json(empty_query()), 1).await;
    let rows: Vec<Value> = client.query("SELECT Id FROM Account WHERE Name = 'x'").await.unwrap();
    assert!(rows.is_empty());

    let requests = server.received_requests().await.unwrap();
    let token_req = requests.iter().find(|r| r.url.path() == TOKEN_PATH).unwrap();
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&token_req.body).into_owned().collect();
    assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[server.uri()]);
    let claims = jsonwebtoken::decode::<Claims>(&form["assertion"], &key, &validation)
        .expect("assertion verifies with the public key")
        .claims;
    assert_eq!(
        (claims.iss.as_str(), claims.sub.as_str(), claims.aud.as_str()),
        ("consumer-key", "integration@acme.test", server.uri().as_str())
    );
    let ttl = claims.exp - chrono::Utc::now().timestamp();
    assert!((0..=180).contains(&ttl), "exp is at most 3 minutes ahead: {ttl}");
    assert!(!form.contains_key("client_secret"), "JWT bearer sends no secret");
}

/// Answers a refresh with a new access and refresh token each time, remembering what it got.
struct Rotating {
    uri: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Respond for Rotating {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&request.body).into_owned().collect();
        let mut seen = self.seen.lock().unwrap();
        seen.push(form.get("refresh_token").cloned().unwrap_or_default());
        let n = seen.len();
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("access-{n}"), "instance_url": self.uri,
            "refresh_token": format!("refresh-{}", n + 1), "id": "x", "issued_at": "1", "signature": "s"
        }))
    }
}

// README: "a rotated refresh token is kept in the store"
#[tokio::test]
async fn refresh_token_rotation_keeps_the_new_refresh_token_and_an_expired_session_mints_once() {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(Rotating {
            uri: server.uri(),
            seen: seen.clone(),
        })
        .mount(&server)
        .await;
    // The first access token is refused as expired (the shared restforce body), the second works.
    query_answers(&server, "access-1", expired_session(), 1).await;
    query_answers(&server, "access-2", ok_json(empty_query()), 2).await;
    let auth = SalesforceAuth::refresh_token(
        &server.uri(),
        "consumer-key",
        Some(SecretString::from("secret")),
        SecretString::from("refresh-1"),
    )
    .unwrap();
    let client = SalesforceClient::new(config(100), auth).unwrap();
    let _: Vec<Value> = client.query("SELECT Id FROM Contact").await.unwrap();
    let _: Vec<Value> = client.query("SELECT Id FROM Contact").await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["refresh-1", "refresh-2"],
        "the rotated token is used next"
    );
    assert_eq!(
        client.auth().mint_count(),
        2,
        "one mint after INVALID_SESSION_ID, then reuse"
    );
    assert_eq!(
        client.auth().current_refresh_token().await.unwrap().expose_secret(),
        "refresh-3"
    );
}

/// Answers each JWT grant with a new access token.
struct Minting(String, Arc<Mutex<u32>>);

impl Respond for Minting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut n = self.1.lock().unwrap();
        *n += 1;
        ResponseTemplate::new(200).set_body_json(json!({"access_token": format!("jwt-{n}"), "instance_url": self.0}))
    }
}

#[tokio::test]
async fn jwt_invalid_session_mints_a_new_assertion_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("jwt-bearer"))
        .respond_with(Minting(server.uri(), Arc::new(Mutex::new(0))))
        .expect(2)
        .mount(&server)
        .await;
    query_answers(&server, "jwt-1", expired_session(), 1).await;
    query_answers(&server, "jwt-2", ok_json(empty_query()), 1).await;
    let auth = SalesforceAuth::jwt(&server.uri(), "k", "u", KEY).unwrap();
    let client = SalesforceClient::new(config(100), auth).unwrap();
    client.query::<Value>("SELECT Id FROM User").await.unwrap();
    assert_eq!(client.auth().mint_count(), 2);
    assert_eq!(client.stats().calls()["query"], 2);
}

#[tokio::test]
async fn client_credentials_flow_sends_the_app_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=consumer-key"))
        .respond_with(token_answer(&server, "access-cc", None))
        .expect(1)
        .mount(&server)
        .await;
    query_answers(&server, "access-cc", ok_json(empty_query()), 1).await;
    let auth = SalesforceAuth::client_credentials(&server.uri(), "consumer-key", SecretString::from("s")).unwrap();
    let client = SalesforceClient::new(config(100), auth).unwrap();
    let _: Vec<Value> = client.query("SELECT Id FROM User").await.unwrap();
}

#[tokio::test]
async fn a_refused_grant_says_what_to_fix() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_string(contract("restforce/refresh_error_response.json")))
        .mount(&server)
        .await;
    let auth = SalesforceAuth::refresh_token(&server.uri(), "k", None, SecretString::from("old")).unwrap();
    let client = SalesforceClient::new(config(100), auth).unwrap();
    let err = client.query::<Value>("SELECT Id FROM User").await.unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(client.stats().total(), 0, "no API call without a token");
}

#[tokio::test]
async fn concurrent_callers_share_one_mint() {
    let server = MockServer::start().await;
    let client = Arc::new(jwt_client(&server).await);
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(empty_query()))
        .mount(&server)
        .await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.query::<Value>("SELECT Id FROM User").await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(client.auth().mint_count(), 1);
}

// README: "on `REQUEST_LIMIT_EXCEEDED`, promotions wait"
#[tokio::test]
async fn request_limit_exceeded_pauses_without_retrying() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let err = client.query::<Value>("SELECT Id FROM User").await.unwrap_err();
    assert!(matches!(err, SalesforceError::RequestLimit { .. }), "{err:?}");
    assert!(err.is_pause());
}

#[tokio::test]
async fn past_the_configured_share_calls_are_held_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token_answer(&server, "t", None))
        .mount(&server)
        .await;
    // 1% of 300 = 3 calls for leadsync.
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Sforce-Limit-Info", "api-usage=120/300")
                .set_body_json(empty_query()),
        )
        .expect(3)
        .mount(&server)
        .await;
    let auth = SalesforceAuth::jwt(&server.uri(), "k", "u", KEY).unwrap();
    let client = SalesforceClient::new(config(1), auth).unwrap();
    for _ in 0..3 {
        client.query::<Value>("SELECT Id FROM User").await.unwrap();
    }
    let err = client.query::<Value>("SELECT Id FROM User").await.unwrap_err();
    assert!(err.is_pause(), "{err:?}");
    assert!(err.to_string().contains("used 3 of its 3"), "{err}");
    assert_eq!(client.usage().map(|u| (u.used, u.max)), Some((120, 300)));
}

#[tokio::test(start_paused = true)]
async fn a_locked_row_and_a_503_are_retried_with_backoff_then_succeed() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!([{"message": "unable to obtain exclusive access to this record", "errorCode": "UNABLE_TO_LOCK_ROW"}]),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(
            json!({"totalSize": 1, "done": true, "records": [{"Id": "001A"}]}),
        ))
        .with_priority(3)
        .mount(&server)
        .await;
    let rows: Vec<Value> = client.query("SELECT Id FROM Account").await.unwrap();
    assert_eq!(rows[0]["Id"], "001A");
    assert_eq!((client.stats().retries(), client.stats().calls()["query"]), (2, 3));
}

#[tokio::test]
async fn other_errors_fail_at_once_with_salesforces_words() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path_regex("/services/data/v62.0/.*"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(contract("restforce/sobject/query_error_response.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client.query::<Value>("SELECT Nope FROM Account").await.unwrap_err();
    match err {
        SalesforceError::Api { errors, .. } => assert!(!errors[0].code.is_empty()),
        other => panic!("{other:?}"),
    }
}

/// A query answer split in two pages: the first not `done`, pointing at the second.
fn two_pages(first: &[&str], rest: &[&str], locator: &str) -> (Value, Value) {
    let rows = |ids: &[&str]| -> Vec<Value> {
        ids.iter()
            .map(|id| json!({"attributes": {"type": "Contact"}, "Id": id, "Email": format!("{id}@acme.test")}))
            .collect()
    };
    let total = first.len() + rest.len();
    (
        json!({"totalSize": total, "done": false, "records": rows(first),
            "nextRecordsUrl": format!("/services/data/v62.0/query/{locator}-{}", first.len())}),
        json!({"totalSize": total, "done": true, "records": rows(rest)}),
    )
}

// README: "Every Salesforce query … is read to its end by following `nextRecordsUrl`"
#[tokio::test]
async fn a_query_over_two_pages_follows_next_records_url_and_returns_every_record() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    let (first, second) = two_pages(&["003A", "003B"], &["003C"], "01gPAGE");
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(first))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query/01gPAGE-2"))
        .and(header("authorization", "Bearer access-jwt"))
        .respond_with(ok_json(second))
        .expect(1)
        .mount(&server)
        .await;
    let rows: Vec<Value> = client.query("SELECT Id, Email FROM Contact").await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["003A", "003B", "003C"]);
    assert_eq!(client.stats().calls().get("query more"), Some(&1));
}

// README: "direct or inside a composite lookup"
#[tokio::test]
async fn a_lookup_whose_composite_answer_is_not_done_reads_the_rest_of_its_pages() {
    use leadsync::salesforce::lookup::SalesforceLookupRequest;
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    let (first, second) = two_pages(&["003A"], &["003B"], "01gLOOK");
    Mock::given(method("POST"))
        .and(path("/services/data/v62.0/composite"))
        .respond_with(ok_json(json!({"compositeResponse": [
            {"body": first, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": "q0"}]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query/01gLOOK-1"))
        .respond_with(ok_json(second))
        .expect(1)
        .mount(&server)
        .await;
    let req = SalesforceLookupRequest {
        contact_external_id: ("HubSpot_Contact_Id__c".into(), vec![]),
        contact_emails: ("Email".into(), vec!["003a@acme.test".into(), "003b@acme.test".into()]),
        account_external_id: ("HubSpot_Company_Id__c".into(), vec![]),
        account_domains: ("Website".into(), vec![]),
        opportunity_keys: ("LeadSync_Key__c".into(), vec![]),
        freemail: Default::default(),
        user_emails: vec![],
    };
    let found = client.lookup(&req).await.unwrap();
    let mut emails: Vec<&String> = found.contacts_by_email.keys().collect();
    emails.sort();
    assert_eq!(
        emails,
        ["003a@acme.test", "003b@acme.test"],
        "the second page's contact is found too"
    );
}

#[tokio::test]
async fn an_answer_not_done_without_a_next_url_is_an_error_naming_it() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ok_json(json!({"totalSize": 5, "done": false, "records": []})))
        .mount(&server)
        .await;
    let err = client.query::<Value>("SELECT Id FROM Contact").await.unwrap_err();
    assert!(err.to_string().contains("nextRecordsUrl"), "{err}");
}
