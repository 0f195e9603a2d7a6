//! `check --online`: the shipped mapping against describe answers with planted mismatches.

use leadsync::salesforce::mapping::SalesforceMapping;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use super::{jwt_client, ok_json};

fn shipped() -> SalesforceMapping {
    SalesforceMapping::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/salesforce.toml")).unwrap()
}

/// (name, type, length, picklist values); all writable, none External ID unless named so.
fn describe(fields: &[(&str, &str, usize, &[&str])], external: &[&str]) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .map(|(name, kind, length, values)| {
            json!({
                "name": name, "type": kind, "length": length, "createable": true, "updateable": true,
                "externalId": external.contains(name),
                "picklistValues": values.iter().map(|v| json!({"value": v, "active": true})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "fields": fields })
}

const SOURCES: &[&str] = &[
    "Web",
    "Advertisement",
    "Email",
    "Social",
    "Partner Referral",
    "Trade Show",
    "Other",
];

#[tokio::test]
async fn check_online_names_each_mismatch_and_nothing_else() {
    let server = MockServer::start().await;
    let client = jwt_client(&server).await;
    let industries: &[&str] = &[
        "Technology",
        "Finance",
        "Banking",
        "Healthcare",
        "Retail",
        "Education",
        "Communications",
    ];
    let account = describe(
        &[
            ("Name", "string", 255, &[]),
            ("Website", "url", 255, &[]),
            ("Industry", "picklist", 255, industries), // no "Other": map_other is refused
            ("NumberOfEmployees", "int", 0, &[]),
            ("BillingCountry", "string", 80, &[]),
            ("HubSpot_Company_Id__c", "string", 40, &[]), // not External ID
        ],
        &[],
    );
    let contact = describe(
        &[
            ("FirstName", "string", 40, &[]),
            ("LastName", "string", 80, &[]),
            ("Email", "email", 80, &[]),
            ("Title", "string", 128, &[]),
            ("Phone", "phone", 40, &[]),
            ("LeadSource", "picklist", 255, SOURCES),
            ("AccountId", "reference", 18, &[]),
            ("HubSpot_Contact_Id__c", "string", 40, &[]),
            // The context leadsync keeps current; the engagement score made a text field.
            ("LeadSync_Fit_Score__c", "double", 0, &[]),
            ("LeadSync_Engagement_Score__c", "string", 10, &[]),
            ("LeadSync_Grade__c", "string", 10, &[]),
            ("LeadSync_Stage__c", "string", 40, &[]),
            ("LeadSync_Status__c", "string", 40, &[]),
            ("LeadSync_Last_Activity__c", "datetime", 0, &[]),
            ("LeadSync_Recent_Activity__c", "string", 255, &[]),
        ],
        &["HubSpot_Contact_Id__c"],
    );
    let opportunity = describe(
        &[
            ("Name", "string", 120, &[]),
            ("StageName", "picklist", 255, &["Prospecting", "Qualification"]),
            ("CloseDate", "date", 0, &[]),
            ("AccountId", "reference", 18, &[]),
            ("OwnerId", "reference", 18, &[]),
            ("LeadSource", "picklist", 255, SOURCES),
            // Shorter than the file's `truncate = 32000`: longer values would be refused.
            ("Description", "textarea", 255, &[]),
            ("LeadSync_Key__c", "string", 80, &[]),
            ("LeadSync_Engagement_Score__c", "double", 0, &[]),
            // Amount missing
        ],
        &["LeadSync_Key__c"],
    );
    let ocr = describe(
        &[
            ("OpportunityId", "reference", 18, &[]),
            ("ContactId", "reference", 18, &[]),
            ("IsPrimary", "boolean", 0, &[]),
            ("Role", "picklist", 255, &["Decision Maker", "Influencer"]),
        ],
        &[],
    );
    // Activity without leadsync's key field: the owner's alerts could never be found again.
    let task = describe(
        &[
            ("WhoId", "reference", 18, &[]),
            ("OwnerId", "reference", 18, &[]),
            ("ActivityDate", "date", 0, &[]),
            ("Subject", "combobox", 255, &[]),
        ],
        &[],
    );
    for (object, body) in [
        ("Account", account),
        ("Contact", contact),
        ("Opportunity", opportunity),
        ("OpportunityContactRole", ocr),
        ("Task", task),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/services/data/v62.0/sobjects/{object}/describe")))
            .respond_with(ok_json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    let problems = shipped().check_online(&client).await;
    let mut found: Vec<(String, String)> = problems.iter().map(|p| (p.object.clone(), p.field.clone())).collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("Account".to_string(), "HubSpot_Company_Id__c".to_string()),
            ("Account".into(), "Industry".into()),
            ("Contact".into(), "LeadSync_Engagement_Score__c".into()),
            ("Opportunity".into(), "Amount".into()),
            ("Opportunity".into(), "Description".into()),
            ("Task".into(), "LeadSync_Key__c".into()),
        ],
        "{problems:#?}"
    );
    // A context field is checked like any other, at its own line.
    let score = problems
        .iter()
        .find(|p| p.object == "Contact" && p.field == "LeadSync_Engagement_Score__c")
        .unwrap();
    assert!(score.message.contains("is a string field") && score.line > 0, "{score}");
    let industry = problems.iter().find(|p| p.field == "Industry").unwrap();
    assert!(industry.message.contains("`Other`") && industry.line > 0, "{industry}");
}
