//! Promotion against a small stateful fake org on wiremock: queries are answered from the
//! records it holds, upserts by external id create or update, and errors can be planted per
//! record. Every test asserts what reached the org and what came back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use leadsync::lifecycle::snapshot::HubSpotId;
use leadsync::salesforce::client::SalesforceClient;
use leadsync::salesforce::mapping::SalesforceMapping;
use leadsync::salesforce::promote::{PromotionInput, PromotionOutcome};
use leadsync::salesforce::routing::{Roster, Strategy};
use leadsync::salesforce::soql::literal;
use serde_json::{Map, Value, json};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::jwt_client;

const TERRITORY_FR: &str = "005000000000001AAA";
const RR_A: &str = "005000000000003AAA";
const RR_B: &str = "005000000000004AAA";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

fn mapping() -> SalesforceMapping {
    SalesforceMapping::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/salesforce.toml")).unwrap()
}

/// What the fake org holds.
#[derive(Default)]
pub(crate) struct OrgState {
    /// Records by object.
    pub records: BTreeMap<String, Vec<Map<String, Value>>>,
    next: u64,
    /// Errors to answer once for a record whose external id (or email) is the key.
    pub fail_once: HashMap<String, Value>,
    /// `Sforce-Limit-Info` sent: the org's usage and allocation.
    pub usage: Option<(u64, u64)>,
    /// Composite lookups see nothing (a lagging read after a crash); GET /query still sees all.
    pub lookups_lag: bool,
    /// Writes to apply, then answer 500 as if the answer were lost on the way back: the next
    /// `PATCH Account`, `PATCH Contact`, `PATCH Opportunity` or `POST OpportunityContactRole`.
    pub lose_answer_once: Option<String>,
}

impl OrgState {
    pub fn insert(&mut self, object: &str, mut fields: Map<String, Value>) -> String {
        self.next += 1;
        let prefix = match object {
            "Account" => "001",
            "Contact" => "003",
            "Opportunity" => "006",
            _ => "00K",
        };
        let id = format!("{prefix}{:015}", self.next);
        fields.insert("Id".into(), json!(id));
        self.records.entry(object.into()).or_default().push(fields);
        id
    }

    pub fn count(&self, object: &str) -> usize {
        self.records.get(object).map_or(0, Vec::len)
    }

    fn query(&self, soql: &str) -> Vec<Value> {
        let object = soql
            .split(" FROM ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or("");
        let clause = soql.split(" WHERE ").nth(1).unwrap_or("").to_lowercase();
        // A record matches when one of its values, as a SOQL literal, is in the WHERE clause
        // (text compared ignoring case, as Salesforce does).
        self.records
            .get(object)
            .into_iter()
            .flatten()
            .filter(|r| {
                r.iter()
                    .filter(|(k, _)| *k != "OwnerId")
                    .filter_map(|(_, v)| v.as_str())
                    .any(|v| clause.contains(&literal(v).to_lowercase()))
            })
            .map(|r| {
                let mut r = r.clone();
                r.insert("attributes".into(), json!({"type": object}));
                Value::Object(r)
            })
            .collect()
    }

    fn save(&mut self, object: &str, ext: Option<&str>, record: &Map<String, Value>) -> Value {
        let mut fields = record.clone();
        fields.remove("attributes");
        let key = ext
            .and_then(|e| fields.get(e))
            .and_then(Value::as_str)
            .map(str::to_string);
        let email = fields.get("Email").and_then(Value::as_str);
        if let Some(error) = [key.as_deref(), email]
            .into_iter()
            .flatten()
            .find_map(|k| self.fail_once.remove(k))
        {
            return json!({"success": false, "errors": [error]});
        }
        if let (Some(ext), Some(key)) = (ext, &key) {
            if let Some(existing) = self
                .records
                .get_mut(object)
                .and_then(|rs| rs.iter_mut().find(|r| r.get(ext).and_then(Value::as_str) == Some(key)))
            {
                existing.extend(fields);
                return json!({"id": existing["Id"], "success": true, "created": false, "errors": []});
            }
        }
        let id = self.insert(object, fields);
        json!({"id": id, "success": true, "created": true, "errors": []})
    }
}

#[derive(Clone)]
pub(crate) struct FakeOrg(pub Arc<Mutex<OrgState>>);

impl Respond for FakeOrg {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut org = self.0.lock().unwrap();
        let (used, max) = org.usage.unwrap_or((5000, 100_000));
        let path = req.url.path().trim_start_matches("/services/data/v62.0/").to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let answer = match (req.method.as_str(), path.as_str()) {
            ("POST", "composite") => {
                let subs: Vec<Value> = body["compositeRequest"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        let url = url::Url::parse(&format!("http://x{}", s["url"].as_str().unwrap())).unwrap();
                        let q = url.query_pairs().find(|(k, _)| k == "q").unwrap().1.to_string();
                        let records = if org.lookups_lag { vec![] } else { org.query(&q) };
                        json!({"body": {"totalSize": records.len(), "done": true, "records": records},
                               "httpHeaders": {}, "httpStatusCode": 200, "referenceId": s["referenceId"]})
                    })
                    .collect();
                json!({ "compositeResponse": subs })
            }
            ("GET", "query") => {
                let q = req.url.query_pairs().find(|(k, _)| k == "q").unwrap().1.to_string();
                let records = org.query(&q);
                json!({"totalSize": records.len(), "done": true, "records": records})
            }
            ("PATCH", p) if p.starts_with("composite/sobjects/") => {
                let mut parts = p.trim_start_matches("composite/sobjects/").split('/');
                let (object, ext) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
                let results: Vec<Value> = body["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| org.save(&object, Some(&ext), r.as_object().unwrap()))
                    .collect();
                json!(results)
            }
            // Updates by id (the context leadsync keeps current), of any types in one call.
            ("PATCH", "composite/sobjects") => {
                let results: Vec<Value> = body["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let object = r["attributes"]["type"].as_str().unwrap_or("");
                        let id = r["Id"].as_str().unwrap_or("");
                        match org
                            .records
                            .get_mut(object)
                            .and_then(|rs| rs.iter_mut().find(|x| x["Id"] == id))
                        {
                            Some(found) => {
                                for (k, v) in r.as_object().unwrap() {
                                    if k != "attributes" {
                                        found.insert(k.clone(), v.clone());
                                    }
                                }
                                json!({"id": id, "success": true, "errors": []})
                            }
                            None => json!({"id": id, "success": false,
                                "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]}),
                        }
                    })
                    .collect();
                json!(results)
            }
            ("POST", "composite/sobjects") => {
                let results: Vec<Value> = body["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let object = r["attributes"]["type"].as_str().unwrap().to_string();
                        org.save(&object, None, r.as_object().unwrap())
                    })
                    .collect();
                json!(results)
            }
            _ => return ResponseTemplate::new(404).set_body_json(json!([{"errorCode": "NOT_FOUND", "message": path}])),
        };
        // Applied above; the answer is lost on the way back.
        let object = match path.as_str() {
            "composite/sobjects" => body["records"][0]["attributes"]["type"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            p => p
                .trim_start_matches("composite/sobjects/")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string(),
        };
        let write = format!("{} {object}", req.method);
        if org.lose_answer_once.as_deref() == Some(write.as_str()) {
            org.lose_answer_once = None;
            return ResponseTemplate::new(500)
                .set_body_json(json!([{"errorCode": "UNKNOWN_EXCEPTION", "message": "connection reset"}]));
        }
        ResponseTemplate::new(200)
            .insert_header("Sforce-Limit-Info", format!("api-usage={used}/{max}").as_str())
            .set_body_json(answer)
    }
}

pub(crate) async fn org(server: &MockServer) -> (SalesforceClient, FakeOrg) {
    let client = jwt_client(server).await;
    let fake = FakeOrg(Arc::new(Mutex::new(OrgState::default())));
    Mock::given(path_regex("^/services/data/v62.0/.*"))
        .respond_with(fake.clone())
        .mount(server)
        .await;
    (client, fake)
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A lead of a US company of 50 people (no territory: round robin).
fn lead(id: u64, email: &str, company: Option<(&str, &str, &str)>) -> PromotionInput {
    PromotionInput {
        contact_id: HubSpotId::try_from(id.to_string()).unwrap(),
        contact: props(&[("email", email), ("firstname", "Ada"), ("lastname", &format!("L{id}"))]),
        company_id: company.map(|(cid, _, _)| cid.to_string()),
        company: company.map_or_else(BTreeMap::new, |(_, name, domain)| {
            props(&[
                ("name", name),
                ("domain", domain),
                ("country", "US"),
                ("numberofemployees", "50"),
            ])
        }),
        cycle: 1,
        owner_email: None,
        owners: Default::default(),
    }
}

/// API calls made (token requests excluded: they do not count against the allocation).
async fn api_calls(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/services/data/"))
        .map(|r| (r.method.to_string(), r.url.path().to_string()))
        .collect()
}

fn promoted(o: &PromotionOutcome) -> (&str, &str, &str, &str, &Strategy) {
    match o {
        PromotionOutcome::Promoted {
            link,
            owner_id,
            strategy,
            ..
        } => (
            link.account_id.as_deref().unwrap(),
            link.contact_id.as_deref().unwrap(),
            link.opportunity_id.as_deref().unwrap(),
            owner_id.as_str(),
            strategy,
        ),
        other => panic!("not promoted: {other:?}"),
    }
}

fn batch_of_200() -> Vec<PromotionInput> {
    (0..200u64)
        .map(|i| {
            let company = format!("{}", 9000 + i / 2); // two leads per company
            let domain = format!("company{}.example", i / 2);
            let email = format!("person{i}@{domain}");
            let mut l = lead(100 + i, &email, Some((&company, "Company", &domain)));
            l.company_id = Some(company);
            l
        })
        .collect()
}

// README: "The outbox worker promotes up to 200 leads per batch"
#[tokio::test]
async fn two_hundred_promotions_cost_five_calls_and_a_repeat_creates_nothing() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let batch = batch_of_200();
    let mut rr = Roster::at(0);
    let first = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let calls = api_calls(&server).await;
    println!(
        "Salesforce calls for 200 promotions: {} {:?}",
        calls.len(),
        client.stats().calls()
    );
    assert!(calls.len() <= 5, "{calls:?}");
    assert_eq!(first.len(), 200);
    {
        let org = fake.0.lock().unwrap();
        assert_eq!(
            (
                org.count("Account"),
                org.count("Contact"),
                org.count("Opportunity"),
                org.count("OpportunityContactRole")
            ),
            (100, 200, 200, 200)
        );
        let opp = &org.records["Opportunity"][0];
        assert_eq!(opp["LeadSync_Key__c"], "hs-100-1");
        assert_eq!(opp["CloseDate"], "2026-12-25", "today + close_in_days (30)");
        assert_eq!(opp["StageName"], "Qualification");
        let role = &org.records["OpportunityContactRole"][0];
        assert_eq!(
            (role["IsPrimary"].clone(), role["Role"].clone()),
            (json!(true), json!("Decision Maker"))
        );
    }
    // Two leads of one new company share its account and its owner; the counter moved once per company.
    let (a0, _, _, o0, s0) = promoted(&first[0]);
    let (a1, _, _, o1, _) = promoted(&first[1]);
    assert_eq!((a0, o0, s0), (a1, o1, &Strategy::RoundRobin));
    assert_eq!(rr.position, 100);

    // A crash before the write-back to HubSpot: the same batch is promoted again by a new process.
    let restarted = jwt_client(&server).await;
    let before = api_calls(&server).await.len();
    let again = restarted.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let repeat_calls: Vec<(String, String)> = api_calls(&server).await.split_off(before);
    println!(
        "Salesforce calls to repeat 200 promotions: {} {repeat_calls:?}",
        repeat_calls.len()
    );
    assert!(repeat_calls.len() <= 5, "{repeat_calls:?}");
    assert!(
        !repeat_calls
            .iter()
            .any(|(m, p)| m == "POST" && p.ends_with("/composite/sobjects")),
        "no create on a repeat: {repeat_calls:?}"
    );
    let org = fake.0.lock().unwrap();
    assert_eq!(
        (
            org.count("Account"),
            org.count("Contact"),
            org.count("Opportunity"),
            org.count("OpportunityContactRole")
        ),
        (100, 200, 200, 200)
    );
    for (a, b) in first.iter().zip(&again) {
        let (pa, pb) = (promoted(a), promoted(b));
        assert_eq!(
            (pa.0, pa.1, pa.2, pa.3),
            (pb.0, pb.1, pb.2, pb.3),
            "same records, same owner"
        );
    }
    assert_eq!(rr.position, 100, "a repeat draws no new owner");
}

#[tokio::test]
async fn a_repeat_whose_lookups_miss_updates_by_external_id_and_creates_no_role_twice() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let batch: Vec<PromotionInput> = batch_of_200().into_iter().take(10).collect();
    let mut rr = Roster::at(0);
    client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    fake.0.lock().unwrap().lookups_lag = true;
    let before = api_calls(&server).await.len();
    // Lookups see nothing, so every upsert is sent and answers created:false; the roles of
    // opportunities that were not created now are queried, and none is created twice.
    let outcomes = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let repeat = api_calls(&server).await.split_off(before);
    assert!(
        !repeat
            .iter()
            .any(|(m, p)| m == "POST" && p.ends_with("/composite/sobjects")),
        "{repeat:?}"
    );
    assert!(
        outcomes.iter().all(|o| matches!(o, PromotionOutcome::Promoted { .. })),
        "{outcomes:?}"
    );
    let org = fake.0.lock().unwrap();
    assert_eq!(
        (org.count("Account"), org.count("Contact"), org.count("Opportunity")),
        (5, 10, 10)
    );
}

fn fields(pairs: Value) -> Map<String, Value> {
    pairs.as_object().unwrap().clone()
}

/// The SOQL of every composite lookup sent so far.
async fn lookup_soql(server: &MockServer) -> Vec<String> {
    let mut out = Vec::new();
    for r in server.received_requests().await.unwrap() {
        if r.method.as_str() != "POST" || !r.url.path().ends_with("/composite") {
            continue;
        }
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        for sub in body["compositeRequest"].as_array().unwrap() {
            let url = url::Url::parse(&format!("http://x{}", sub["url"].as_str().unwrap())).unwrap();
            out.extend(url.query_pairs().filter(|(k, _)| k == "q").map(|(_, v)| v.to_string()));
        }
    }
    out
}

// README: "an existing contact is linked, not duplicated"
#[tokio::test]
async fn an_existing_contact_is_found_by_escaped_email_ignoring_case_and_linked_not_duplicated() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let (account, contact) = {
        let mut org = fake.0.lock().unwrap();
        let account = org.insert(
            "Account",
            fields(json!({"Name": "Acme", "Website": "https://www.acme.example", "OwnerId": "005000000000009AAA"})),
        );
        let contact = org.insert(
            "Contact",
            fields(json!({"Email": "O'Brien@Acme.example", "AccountId": account, "OwnerId": "005000000000009AAA"})),
        );
        (account, contact)
    };
    let mut rr = Roster::at(0);
    let out = client
        .promote(
            &mapping(),
            &[lead(7, "o'brien@acme.example", Some(("77", "Acme", "acme.example")))],
            &mut rr,
            today(),
        )
        .await
        .unwrap();
    let (a, c, _, owner, strategy) = promoted(&out[0]);
    assert_eq!((a, c), (account.as_str(), contact.as_str()));
    assert_eq!((owner, strategy), ("005000000000009AAA", &Strategy::AccountOwner));
    let soql = lookup_soql(&server).await;
    assert!(
        soql.iter().any(|q| q.contains(r"Email IN ('o\'brien@acme.example')")),
        "{soql:?}"
    );
    let counts = {
        let org = fake.0.lock().unwrap();
        (org.count("Account"), org.count("Contact"), org.count("Opportunity"))
    };
    assert_eq!(counts, (1, 1, 1));
    assert!(
        !api_calls(&server)
            .await
            .iter()
            .any(|(m, p)| m == "PATCH" && !p.ends_with("Opportunity/LeadSync_Key__c")),
        "neither the account nor the contact is written"
    );
    assert_eq!(rr.position, 0, "no round-robin draw");
}

// README: "an existing account is reused and its owner gets the lead"
#[tokio::test]
async fn an_existing_account_found_by_domain_is_reused_and_its_owner_gets_the_lead() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let account = fake.0.lock().unwrap().insert(
        "Account",
        fields(json!({"Name": "Globex", "Website": "http://globex.example", "OwnerId": "005000000000008AAA"})),
    );
    let mut rr = Roster::at(3);
    // A French company would go to a territory, but the account owner comes first.
    let mut l = lead(8, "hank@globex.example", Some(("88", "Globex", "www.globex.example")));
    l.company.insert("country".into(), "France".into());
    let out = client.promote(&mapping(), &[l], &mut rr, today()).await.unwrap();
    let (a, _, _, owner, strategy) = promoted(&out[0]);
    assert_eq!(
        (a, owner, strategy),
        (account.as_str(), "005000000000008AAA", &Strategy::AccountOwner)
    );
    let org = fake.0.lock().unwrap();
    assert_eq!(org.count("Account"), 1, "no second account");
    assert_eq!(org.records["Contact"][0]["AccountId"], json!(account));
    assert_eq!(org.records["Opportunity"][0]["OwnerId"], "005000000000008AAA");
    assert_eq!(rr.position, 3);
}

// README: "free-mail domains never match"
#[tokio::test]
async fn free_mail_never_matches_an_account() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    fake.0.lock().unwrap().insert(
        "Account",
        fields(json!({"Name": "Google", "Website": "gmail.com", "OwnerId": "005000000000008AAA"})),
    );
    let mut rr = Roster::at(0);
    let out = client
        .promote(&mapping(), &[lead(9, "someone@gmail.com", None)], &mut rr, today())
        .await
        .unwrap();
    assert!(
        matches!(&out[0], PromotionOutcome::Review { reason, .. } if reason.contains("no HubSpot company")),
        "{out:?}"
    );
    let soql = lookup_soql(&server).await;
    assert!(
        soql.iter().any(|q| q.contains("'someone@gmail.com'")),
        "the person is still looked up: {soql:?}"
    );
    assert!(
        !soql.iter().any(|q| q.contains("'gmail.com'") || q.contains("Website")),
        "{soql:?}"
    );
}

// README: "then a weighted round robin whose position is kept in the store"
#[tokio::test]
async fn territory_then_weighted_round_robin_advancing_the_stored_position() {
    let server = MockServer::start().await;
    let (client, _fake) = org(&server).await;
    let mut fr = lead(10, "a@fr-co.example", Some(("100", "FrCo", "fr-co.example")));
    fr.company.insert("country".into(), "France".into());
    let us: Vec<PromotionInput> = (0..4)
        .map(|i| {
            let d = format!("us{i}.example");
            lead(20 + i, &format!("x@{d}"), Some((&format!("{}", 200 + i), "UsCo", &d)))
        })
        .collect();
    let mut rr = Roster::at(0);
    let batch: Vec<PromotionInput> = std::iter::once(fr).chain(us.clone()).collect();
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let (_, _, _, owner, strategy) = promoted(&out[0]);
    assert_eq!(
        (owner, strategy),
        (TERRITORY_FR, &Strategy::Territory("France and Benelux".into()))
    );
    let owners: Vec<&str> = out[1..].iter().map(|o| promoted(o).3).collect();
    assert_eq!(owners, [RR_A, RR_A, RR_B, RR_A], "weights 3:1, spread");
    assert_eq!(rr.position, 4, "the territory lead did not move the rotation");
    // After a restart, the stored position continues the rotation.
    let more: Vec<PromotionInput> = (0..4)
        .map(|i| {
            let d = format!("later{i}.example");
            lead(40 + i, &format!("y@{d}"), Some((&format!("{}", 400 + i), "Later", &d)))
        })
        .collect();
    let out = jwt_client(&server)
        .await
        .promote(&mapping(), &more, &mut rr, today())
        .await
        .unwrap();
    let owners: Vec<&str> = out.iter().map(|o| promoted(o).3).collect();
    assert_eq!(owners, [RR_A, RR_A, RR_B, RR_A]);
    assert_eq!(rr.position, 8);
}

fn error(code: &str, message: &str) -> Value {
    json!({"statusCode": code, "message": message, "fields": []})
}

fn duplicate(ids: &[&str]) -> Value {
    let records: Vec<Value> = ids.iter().map(|id| json!({"record": {"Id": id}})).collect();
    json!({"statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": [],
           "duplicateResult": {"allowSave": false, "duplicateRule": "Standard_Account_Duplicate_Rule",
                               "matchResults": [{"entityType": "Account", "matchRecords": records}]}})
}

// README: "`DUPLICATES_DETECTED` and multiple matches link to a single match, else go to the review list"
#[tokio::test]
async fn duplicate_rules_link_to_a_single_match_whose_owner_gets_the_lead_and_send_several_to_review() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let matched = {
        let mut org = fake.0.lock().unwrap();
        // Sales keeps "One Inc" under another website: only the duplicate rule knows it.
        let matched = org.insert(
            "Account",
            fields(json!({"Name": "One Inc", "Website": "one-inc.example", "OwnerId": "005000000000007AAA"})),
        );
        org.fail_once.insert("501".into(), duplicate(&[&matched]));
        org.fail_once
            .insert("502".into(), duplicate(&["001000000000000AAA", "001000000000000BBB"]));
        matched
    };
    let batch = [
        lead(51, "a@one.example", Some(("501", "One", "one.example"))),
        lead(52, "b@two.example", Some(("502", "Two", "two.example"))),
    ];
    let mut rr = Roster::at(0);
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let (account, _, _, owner, strategy) = promoted(&out[0]);
    assert_eq!(
        (account, owner, strategy),
        (matched.as_str(), "005000000000007AAA", &Strategy::AccountOwner)
    );
    match &out[1] {
        PromotionOutcome::Review { reason, .. } => {
            assert!(
                reason.contains("DUPLICATES_DETECTED") && reason.contains("001000000000000BBB"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let org = fake.0.lock().unwrap();
    assert_eq!(org.count("Account"), 1, "no account created for either");
    assert_eq!(org.records["Contact"][0]["AccountId"], json!(matched));
    assert_eq!(org.records["Opportunity"][0]["OwnerId"], "005000000000007AAA");
    assert_eq!(
        org.count("Contact"),
        1,
        "the reviewed lead wrote nothing past its account"
    );
}

#[tokio::test]
async fn two_salesforce_contacts_with_the_email_go_to_review() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    {
        let mut org = fake.0.lock().unwrap();
        org.insert("Contact", fields(json!({"Email": "twin@dup.example"})));
        org.insert("Contact", fields(json!({"Email": "TWIN@dup.example"})));
    }
    let mut rr = Roster::at(0);
    let out = client
        .promote(
            &mapping(),
            &[lead(60, "twin@dup.example", Some(("600", "Dup", "dup.example")))],
            &mut rr,
            today(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&out[0], PromotionOutcome::Review { reason, .. } if reason.contains("2 Salesforce contacts")),
        "{out:?}"
    );
    assert_eq!(fake.0.lock().unwrap().count("Opportunity"), 0);
}

// README: "`UNABLE_TO_LOCK_ROW` retries with backoff; validation errors become dead letters"
#[tokio::test]
async fn a_locked_row_retries_the_lead_and_a_validation_rule_dead_letters_it_with_salesforces_message() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    {
        let mut org = fake.0.lock().unwrap();
        org.fail_once.insert(
            "locked@lock.example".into(),
            error("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
        );
        org.fail_once.insert(
            "hs-72-1".into(),
            error(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "Amount is required past Qualification",
            ),
        );
    }
    let batch = [
        lead(71, "locked@lock.example", Some(("701", "Lock", "lock.example"))),
        lead(72, "v@valid.example", Some(("702", "Valid", "valid.example"))),
        lead(73, "fine@ok.example", Some(("703", "Ok", "ok.example"))),
    ];
    let mut rr = Roster::at(0);
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    assert!(
        matches!(&out[0], PromotionOutcome::Retry { reason, .. } if reason.contains("UNABLE_TO_LOCK_ROW")),
        "{out:?}"
    );
    match &out[1] {
        PromotionOutcome::DeadLetter { code, message, .. } => {
            assert_eq!(code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
            assert!(message.contains("Amount is required past Qualification"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    promoted(&out[2]);
    // The retry later completes the locked lead without duplicating its account.
    let out = client.promote(&mapping(), &batch[..1], &mut rr, today()).await.unwrap();
    promoted(&out[0]);
    let org = fake.0.lock().unwrap();
    assert_eq!(
        (org.count("Account"), org.count("Contact"), org.count("Opportunity")),
        (3, 3, 2)
    );
}

// README: "deleted or converted records are retried, not looped on"
#[tokio::test]
async fn a_record_deleted_meanwhile_is_retried_not_looped_on() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    fake.0.lock().unwrap().fail_once.insert(
        "gone@gone.example".into(),
        error("ENTITY_IS_DELETED", "entity is deleted"),
    );
    let batch = [lead(80, "gone@gone.example", Some(("800", "Gone", "gone.example")))];
    let mut rr = Roster::at(0);
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    assert!(
        matches!(&out[0], PromotionOutcome::Retry { reason, .. } if reason.contains("deleted")),
        "{out:?}"
    );
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    promoted(&out[0]);
}

#[tokio::test]
async fn a_duplicated_event_in_one_batch_is_promoted_once() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    let l = lead(90, "dup@event.example", Some(("900", "Event", "event.example")));
    let mut rr = Roster::at(0);
    let out = client
        .promote(&mapping(), &[l.clone(), l], &mut rr, today())
        .await
        .unwrap();
    assert_eq!(out[0], out[1]);
    assert_eq!(fake.0.lock().unwrap().count("Opportunity"), 1);
}

// README: "past `salesforce.daily_share_percent` of the org's allocation … promotions wait in the outbox"
#[tokio::test]
async fn promotions_wait_when_the_share_is_spent() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    // Other integrations used almost all of the org's allocation.
    fake.0.lock().unwrap().usage = Some((99_997, 100_000));
    let _ = client
        .query::<Value>("SELECT Id FROM User WHERE Name = 'x'")
        .await
        .unwrap();
    let mut rr = Roster::at(0);
    let batch = [lead(95, "w@wait.example", Some(("950", "Wait", "wait.example")))];
    let err = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap_err();
    assert!(err.is_pause(), "{err:?}");
    assert!(err.to_string().contains("99997 of its 100000"), "{err}");
    assert_eq!(api_calls(&server).await.len(), 1, "nothing sent once held");
    assert_eq!(fake.0.lock().unwrap().count("Opportunity"), 0);
}

// README: "when its answer is lost the roles are looked up before anything is sent again"
#[tokio::test]
async fn a_write_applied_whose_answer_is_lost_is_repeated_without_a_duplicate_of_any_record() {
    for write in [
        "PATCH Account",
        "PATCH Contact",
        "PATCH Opportunity",
        "POST OpportunityContactRole",
    ] {
        let server = MockServer::start().await;
        let (client, fake) = org(&server).await;
        fake.0.lock().unwrap().lose_answer_once = Some(write.to_string());
        let batch: Vec<PromotionInput> = batch_of_200().into_iter().take(10).collect();
        let mut rr = Roster::at(0);
        let outcomes = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
        assert!(
            outcomes.iter().all(|o| matches!(o, PromotionOutcome::Promoted { .. })),
            "{write}: {outcomes:?}"
        );
        // The whole promotion again (a crash before leadsync recorded it): still nothing twice.
        client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
        let org = fake.0.lock().unwrap();
        assert!(org.lose_answer_once.is_none(), "{write}: the fault was hit");
        assert_eq!(
            (
                org.count("Account"),
                org.count("Contact"),
                org.count("Opportunity"),
                org.count("OpportunityContactRole")
            ),
            (5, 10, 10, 10),
            "{write}"
        );
        let mut pairs: Vec<(String, String)> = org.records["OpportunityContactRole"]
            .iter()
            .map(|r| (r["OpportunityId"].to_string(), r["ContactId"].to_string()))
            .collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), 10, "{write}: one role per opportunity and contact");
    }
}

// README: "the User query rides in the same composite lookup"
#[tokio::test]
async fn the_hubspot_owners_salesforce_user_wins_over_the_territory_found_in_the_same_composite_lookup() {
    let server = MockServer::start().await;
    let (client, fake) = org(&server).await;
    {
        let mut org = fake.0.lock().unwrap();
        for (id, email) in [("005ANA", "ana.ruiz@acme.test"), ("005BO", "o'brien@acme.test")] {
            let mut u = Map::new();
            u.insert("Email".into(), json!(email));
            u.insert("IsActive".into(), json!(true));
            let made = org.insert("User", u);
            // the fake names records itself; keep the user ids readable
            let users = org.records.get_mut("User").unwrap();
            let r = users.iter_mut().find(|r| r["Id"] == made.as_str()).unwrap();
            r.insert("Id".into(), json!(id));
        }
    }
    let french = |id: u64, owner: Option<&str>| {
        let d = format!("fr{id}.example");
        let mut l = lead(id, &format!("p@{d}"), Some((&format!("{}", 100 + id), "FrCo", &d)));
        l.company.insert("country".into(), "France".into());
        l.owner_email = owner.map(str::to_string);
        l
    };
    let batch = vec![
        french(1, Some("Ana.Ruiz@ACME.test")),
        french(2, Some("O'Brien@acme.test")),
        french(3, Some("marketing@acme.test")),
        french(4, None),
    ];
    let mut rr = Roster::at(0);
    let out = client.promote(&mapping(), &batch, &mut rr, today()).await.unwrap();
    let owners: Vec<(&str, &Strategy)> = out
        .iter()
        .map(|o| {
            let p = promoted(o);
            (p.3, p.4)
        })
        .collect();
    let territory = Strategy::Territory("France and Benelux".into());
    assert_eq!(
        owners,
        [
            ("005ANA", &Strategy::HubSpotOwner),
            ("005BO", &Strategy::HubSpotOwner),
            (TERRITORY_FR, &territory),
            (TERRITORY_FR, &territory),
        ]
    );
    let opportunity_owner = fake.0.lock().unwrap().records["Opportunity"]
        .iter()
        .find(|o| o["LeadSync_Key__c"] == "hs-1-1")
        .unwrap()["OwnerId"]
        .clone();
    assert_eq!(opportunity_owner, "005ANA");
    let soql = lookup_soql(&server).await;
    let users: Vec<&String> = soql.iter().filter(|q| q.contains("FROM User")).collect();
    assert_eq!(
        users,
        [
            r"SELECT Id, Email FROM User WHERE IsActive = true AND Email IN ('Ana.Ruiz@ACME.test', 'O\'Brien@acme.test', 'marketing@acme.test')"
        ],
        "one User query, escaped"
    );
    let composites = api_calls(&server)
        .await
        .iter()
        .filter(|(_, p)| p.ends_with("/composite"))
        .count();
    assert_eq!(composites, 1, "the User query rides in the one composite lookup");
}
