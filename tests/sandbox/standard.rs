//! The standard endpoints a real integration uses, beyond what leadsync calls: HubSpot's
//! single-object reads and writes, lists and the per-object associations page; Salesforce's
//! single-record calls, upsert by external id and `query` paged by `nextRecordsUrl`. And the
//! sandbox's own settings path, which tightens budgets while it runs.

use std::time::Duration;

use leadsync::sandbox::SandboxConfig;
use leadsync::sandbox::portal::COMPANY_ID_BASE;
use serde_json::{Value, json};

use super::{hs, sandbox, sf, sf_token, urlencode};

#[tokio::test]
async fn single_reads_of_each_object_type_carry_the_asked_properties_and_associations() {
    let sb = sandbox(SandboxConfig::default()).await;
    let index = (0..sb.portal().contacts)
        .find(|&i| sb.portal().contact_company(i).is_some() && sb.portal().engagement_count(i, 0) > 0)
        .unwrap();
    let id = 1001 + u64::from(index);
    let company = u64::from(sb.portal().contact_company(index).unwrap()) + COMPANY_ID_BASE;
    // Repeated parameters, as the SDKs send them.
    let p = format!(
        "/crm/v3/objects/contacts/{id}?properties=lifecyclestage&properties=hs_analytics_num_page_views&associations=companies&associations=calls"
    );
    let (status, _, body) = hs(&sb, "GET", &p, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.to_string().as_str());
    assert!(body["properties"]["lifecyclestage"].is_string());
    assert!(body["properties"]["hs_analytics_num_page_views"].is_string());
    assert!(
        body["properties"]["email"].is_string(),
        "the default properties come too"
    );
    assert_eq!(
        body["associations"]["companies"]["results"][0],
        json!({"id": company.to_string(), "type": "contact_to_company"})
    );
    assert!(!body["associations"]["calls"]["results"].as_array().unwrap().is_empty());
    let (status, _, body) = hs(
        &sb,
        "GET",
        &format!("/crm/v3/objects/companies/{company}?properties=name"),
        None,
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (200, Some(company.to_string().as_str())));
    assert!(body["properties"]["name"].is_string());
    let email = urlencode(sb.hubspot_contact(&id.to_string()).unwrap()["email"].as_str());
    let (status, _, body) = hs(
        &sb,
        "GET",
        &format!("/crm/v3/objects/contacts/{email}?idProperty=email"),
        None,
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (200, Some(id.to_string().as_str())));

    let (status, _, body) = hs(&sb, "GET", "/crm/v3/objects/contacts/99999999", None).await;
    assert_eq!((status, body["category"].as_str()), (404, Some("OBJECT_NOT_FOUND")));
    assert_eq!(body["status"], "error");
    assert!(body["correlationId"].is_string() && body["message"].as_str().unwrap().contains("99999999"));
    assert_eq!(sb.calls()["hubspot contacts.read"], 3);
    assert_eq!(sb.calls()["hubspot companies.read"], 1);
}

#[tokio::test]
async fn a_single_contact_patch_refuses_what_a_batch_update_refuses_naming_the_property() {
    let sb = sandbox(SandboxConfig::default()).await;
    let p = "/crm/v3/objects/contacts/1001";
    let body = |k: &str, v: &str| Some(json!({"properties": {k: v}}));
    let (status, _, b) = hs(&sb, "PATCH", p, body("lifecyclestage", "opportunity")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["properties"]["lifecyclestage"], "opportunity");
    let (status, _, b) = hs(&sb, "PATCH", p, body("lifecyclestage", "lead")).await;
    assert_eq!((status, b["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert_eq!(b["errors"][0]["code"], "INVALID_LIFECYCLE_STAGE");
    let (status, _, b) = hs(
        &sb,
        "PATCH",
        p,
        Some(json!({"properties": {"city": "Lyon", "no_such_thing": "x"}})),
    )
    .await;
    assert_eq!(
        (status, b["errors"][0]["code"].as_str()),
        (400, Some("PROPERTY_DOESNT_EXIST"))
    );
    assert_eq!(
        b["errors"][0]["context"]["propertyName"][0], "no_such_thing",
        "names the refused one"
    );
    assert_eq!(
        sb.hubspot_contact("1001").unwrap().get("city").map(String::as_str),
        sb.portal().contact(0).properties.get("city").map(String::as_str),
        "nothing written"
    );
    let (status, _, _) = hs(&sb, "PATCH", "/crm/v3/objects/contacts/99999999", body("city", "x")).await;
    assert_eq!(status, 404);
    assert_eq!(sb.calls()["hubspot contacts.update"], 4);
}

#[tokio::test]
async fn lists_page_every_record_once_by_the_after_cursor_for_contacts_companies_and_calls() {
    let sb = sandbox(SandboxConfig {
        contacts: 230,
        companies: 25,
        ..SandboxConfig::default()
    })
    .await;
    for (ty, expected) in [
        ("contacts", 230usize),
        ("companies", 25),
        (
            "calls",
            (0..230).map(|i| sb.portal().engagement_count(i, 0) as usize).sum(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = match &after {
                Some(a) => format!("/crm/v3/objects/{ty}?limit=100&after={a}"),
                None => format!("/crm/v3/objects/{ty}?limit=100"),
            };
            let (status, _, body) = hs(&sb, "GET", &p, None).await;
            assert_eq!(status, 200, "{p}: {body}");
            seen.extend(
                body["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_string()),
            );
            after = body["paging"]["next"]["after"].as_str().map(str::to_string);
            if after.is_none() {
                break;
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            (seen.len(), unique.len()),
            (expected, expected),
            "{ty}: every record once"
        );
    }
    let (status, _, _) = hs(&sb, "GET", "/crm/v3/objects/contacts?limit=101", None).await;
    assert_eq!(status, 400);
    assert_eq!(hs(&sb, "GET", "/crm/v3/objects/contacts?after=abc", None).await.0, 400);
}

#[tokio::test]
async fn the_associations_v4_page_of_one_record_pages_by_after() {
    let sb = sandbox(SandboxConfig::default()).await;
    let portal = sb.portal();
    let (company, members) = (0..portal.companies)
        .map(|c| {
            (
                c,
                (0..portal.contacts)
                    .filter(|&i| portal.contact_company(i) == Some(c))
                    .count(),
            )
        })
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert!(members >= 3);
    let id = u64::from(company) + COMPANY_ID_BASE;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut p = format!("/crm/v4/objects/companies/{id}/associations/contacts?limit=2");
        if let Some(a) = &after {
            p.push_str(&format!("&after={a}"));
        }
        let (status, _, body) = hs(&sb, "GET", &p, None).await;
        assert_eq!(status, 200, "{body}");
        for r in body["results"].as_array().unwrap() {
            assert_eq!(r["associationTypes"][0]["typeId"], 280);
            seen.push(r["toObjectId"].as_u64().unwrap());
        }
        after = body["paging"]["next"]["after"].as_str().map(str::to_string);
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), members);
    assert_eq!(
        sb.calls()["hubspot associations.companies.contacts.page"],
        members.div_ceil(2) as u64
    );
    let (status, _, body) = hs(
        &sb,
        "GET",
        "/crm/v4/objects/contacts/99999999/associations/companies",
        None,
    )
    .await;
    assert_eq!((status, body["category"].as_str()), (404, Some("OBJECT_NOT_FOUND")));
}

#[tokio::test]
async fn a_property_option_without_hidden_is_refused_naming_the_field() {
    let sb = sandbox(SandboxConfig::default()).await;
    let property = |option: Value| {
        json!({"inputs": [{"name": "leadsync_demo", "label": "demo", "type": "enumeration", "fieldType": "select",
            "groupName": "contactinformation", "options": [option]}]})
    };
    let p = "/crm/v3/properties/contacts/batch/create";
    let (status, _, body) = hs(
        &sb,
        "POST",
        p,
        Some(property(json!({"label": "A", "value": "a", "displayOrder": 0}))),
    )
    .await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert_eq!(
        body["errors"][0]["context"]["fieldName"][0],
        "inputs[0].options[0].hidden"
    );
    let (status, _, _) = hs(
        &sb,
        "POST",
        p,
        Some(property(
            json!({"label": "A", "value": "a", "displayOrder": 0, "hidden": false}),
        )),
    )
    .await;
    assert_eq!(status, 201, "accepted with hidden");
}

#[tokio::test]
async fn the_settings_path_tightens_the_burst_and_the_allocation_while_running() {
    let sb = sandbox(SandboxConfig::default()).await;
    let settings = format!("{}/_sandbox/settings", sb.hubspot_base_url());
    let http = reqwest::Client::new();
    let set = |body: Value| http.post(&settings).json(&body).send();
    let r = set(json!({"hubspot_burst_per_10s": 2, "hubspot_burst_window_ms": 400}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        assert_eq!(hs(&sb, "GET", "/crm/v3/owners", None).await.0, 200);
    }
    let (status, headers, body) = hs(&sb, "GET", "/crm/v3/owners", None).await;
    assert_eq!(
        (status, body["policyName"].as_str()),
        (429, Some("TEN_SECONDLY_ROLLING"))
    );
    assert_eq!(headers["x-hubspot-ratelimit-max"], "2");
    assert_eq!(headers["x-hubspot-ratelimit-interval-milliseconds"], "400");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(hs(&sb, "GET", "/crm/v3/owners", None).await.0, 200, "the window passed");

    let r = set(json!({"hubspot_tier": "starter"})).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["hubspot_tier"], "starter");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        hs(&sb, "GET", "/events/v3/events?objectType=contact&objectId=1001", None)
            .await
            .0,
        403
    );

    let r = set(json!({"hubspot_burst_per_10s": 0})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("hubspot_burst_per_10s"));
    let r = set(json!({"daily": 3})).await.unwrap();
    assert_eq!(r.status(), 400);
    let message = r.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("unknown setting \"daily\""), "{message}");

    // The same path on the Salesforce listener; the allocation then runs out.
    let r = http
        .post(format!("{}/_sandbox/settings", sb.salesforce_login_url()))
        .json(&json!({"salesforce_daily_allocation": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (token, instance) = sf_token(&sb).await;
    assert_eq!(
        sf(&token, &instance, "GET", "/sobjects/Account/describe", None).await.0,
        200
    );
    let (status, _, body) = sf(&token, &instance, "GET", "/sobjects/Account/describe", None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (403, Some("REQUEST_LIMIT_EXCEEDED"))
    );
}

#[tokio::test]
async fn salesforce_upsert_by_external_id_creates_once_updates_after_and_several_matches_answer_300() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    let before = sb.salesforce_records("Account").len();
    let p = "/sobjects/Account/HubSpot_Company_Id__c/hs-777";
    let (status, _, body) = sf(&token, &instance, "PATCH", p, Some(json!({"Name": "Newco"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["success"].as_bool(), body["created"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(body["errors"], json!([]));
    let id = body["id"].as_str().unwrap().to_string();
    let (status, _, body) = sf(&token, &instance, "PATCH", p, Some(json!({"Name": "Newco SAS"}))).await;
    assert_eq!(
        (status, body["created"].as_bool(), body["id"].as_str()),
        (200, Some(false), Some(id.as_str()))
    );
    assert_eq!(
        sb.salesforce_records("Account").len(),
        before + 1,
        "one record, not two"
    );
    let (status, _, body) = sf(&token, &instance, "GET", p, None).await;
    assert_eq!(
        (status, body["Name"].as_str(), body["HubSpot_Company_Id__c"].as_str()),
        (200, Some("Newco SAS"), Some("hs-777"))
    );
    assert_eq!(body["attributes"]["type"], "Account");

    // updateOnly never creates; a field that is not an external id is refused.
    let (status, _, body) = sf(
        &token,
        &instance,
        "PATCH",
        "/sobjects/Account/HubSpot_Company_Id__c/hs-778?updateOnly=true",
        Some(json!({"Name": "x"})),
    )
    .await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _, body) = sf(
        &token,
        &instance,
        "PATCH",
        "/sobjects/Account/Name/Newco",
        Some(json!({"Name": "x"})),
    )
    .await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
    assert_eq!(sb.salesforce_records("Account").len(), before + 1);

    // Two records holding the value: 300 with both URLs, nothing changed.
    let (status, _, _) = sf(
        &token,
        &instance,
        "POST",
        "/sobjects/Account",
        Some(json!({"Name": "Twin", "HubSpot_Company_Id__c": "hs-777"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, body) = sf(&token, &instance, "PATCH", p, Some(json!({"Name": "Which?"}))).await;
    assert_eq!(status, 300);
    let urls = body.as_array().unwrap();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| {
        u.as_str()
            .unwrap()
            .starts_with("/services/data/v62.0/sobjects/Account/001")
    }));
    assert!(sb.salesforce_records("Account").iter().all(|a| a["Name"] != "Which?"));
    assert_eq!(sb.calls()["salesforce sobject.upsert"], 5);
}

#[tokio::test]
async fn salesforce_single_records_are_read_updated_and_deleted_and_query_all_still_sees_them() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    let (status, _, body) = sf(
        &token,
        &instance,
        "POST",
        "/sobjects/Contact",
        Some(json!({"LastName": "Doe", "Email": "jo.doe@newco.example"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let r = format!("/sobjects/Contact/{id}");
    let (status, _, body) = sf(&token, &instance, "PATCH", &r, Some(json!({"Title": "CTO"}))).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _, body) = sf(&token, &instance, "GET", &r, None).await;
    assert_eq!(
        (status, body["Title"].as_str(), body["Id"].as_str()),
        (200, Some("CTO"), Some(id.as_str()))
    );
    let (status, _, body) = sf(&token, &instance, "PATCH", &r, Some(json!({"NoSuchField__c": 1}))).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
    assert_eq!(sf(&token, &instance, "DELETE", &r, None).await.0, 204);
    let (status, _, body) = sf(&token, &instance, "GET", &r, None).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));
    let q = urlencode(&format!("SELECT Id FROM Contact WHERE Id = '{id}'"));
    let (_, _, body) = sf(&token, &instance, "GET", &format!("/query?q={q}"), None).await;
    assert_eq!(body["totalSize"], 0);
    let (_, _, body) = sf(&token, &instance, "GET", &format!("/queryAll?q={q}"), None).await;
    assert_eq!(body["totalSize"], 1, "queryAll sees the deleted record");
    let (status, _, body) = sf(&token, &instance, "GET", "/query?q=SELEKT+Id", None).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("MALFORMED_QUERY")));
}

#[tokio::test]
async fn a_query_answers_in_batches_linked_by_next_records_url_with_the_batch_size_asked() {
    let sb = sandbox(SandboxConfig::default()).await;
    let (token, instance) = sf_token(&sb).await;
    for chunk in 0..3 {
        let records: Vec<Value> = (0..150)
            .map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("p{chunk}-{i}"), "Title": "Bulk"}))
            .collect();
        let (status, _, body) = sf(
            &token,
            &instance,
            "POST",
            "/composite/sobjects",
            Some(json!({"records": records})),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.as_array().unwrap().iter().all(|r| r["success"] == true), "{body}");
    }
    let q = urlencode("SELECT Id, LastName FROM Contact WHERE Title = 'Bulk'");
    let http = reqwest::Client::new();
    let get = |url: String, batch: Option<&str>| {
        let mut req = http.get(url).bearer_auth(&token);
        if let Some(b) = batch {
            req = req.header("Sforce-Query-Options", b);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut page = get(
        format!("{instance}/services/data/v59.0/query?q={q}"),
        Some("batchSize=200"),
    )
    .await;
    assert_eq!(
        (page["totalSize"].as_u64(), page["done"].as_bool()),
        (Some(450), Some(false))
    );
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        ids.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Id"].as_str().unwrap().to_string()),
        );
        if page["done"] == true {
            assert!(page["nextRecordsUrl"].is_null());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap().to_string();
        assert!(next.starts_with("/services/data/v59.0/query/01g"), "{next}");
        page = get(format!("{instance}{next}"), None).await;
    }
    assert_eq!(pages, 3);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 450, "every record once");
    // Below 200 is read as 200; no header is 2,000 (one page here).
    let small = get(
        format!("{instance}/services/data/v62.0/query?q={q}"),
        Some("batchSize=10"),
    )
    .await;
    assert_eq!(small["records"].as_array().unwrap().len(), 200);
    let all = get(format!("{instance}/services/data/v62.0/query?q={q}"), None).await;
    assert_eq!(
        (all["records"].as_array().unwrap().len(), all["done"].as_bool()),
        (450, Some(true))
    );
    let (status, _, body) = sf(&token, &instance, "GET", "/query/01gNOPE-200", None).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("INVALID_QUERY_LOCATOR"))
    );
    assert_eq!(sb.calls()["salesforce query.more"], 3);
}
