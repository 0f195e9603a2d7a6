//! The objects and fields leadsync uses, as describe shows them, and 18-character ids.

use serde_json::{Value, json};

use super::api_error;

/// (name, type, length, createable, updateable, externalId, picklist values).
pub(super) type Field = (
    &'static str,
    &'static str,
    u32,
    bool,
    bool,
    bool,
    &'static [&'static str],
);

pub(super) const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
/// The org's LeadSource values: Salesforce's standard ones plus two this org added.
pub(super) const LEAD_SOURCES: &[&str] = &[
    "Advertisement",
    "Email",
    "Employee Referral",
    "External Referral",
    "Partner",
    "Partner Referral",
    "Phone Inquiry",
    "Public Relations",
    "Purchased List",
    "Seminar - Internal",
    "Seminar - Partner",
    "Social",
    "Trade Show",
    "Web",
    "Word of mouth",
    "Other",
];
/// Salesforce's standard Industry values.
pub(super) const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];
/// Task `Status` values (Salesforce's defaults).
pub(super) const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];
/// `TaskSubtype`: how a Task was logged.
pub(super) const TASK_SUBTYPES: &[&str] = &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"];
/// The `Type` picklist of Tasks and Events.
pub(super) const ACTIVITY_TYPES: &[&str] = &["Call", "Email", "Meeting", "Other"];
pub(super) const COMMON: [Field; 6] = [
    ("Id", "id", 18, false, false, false, &[]),
    ("OwnerId", "reference", 18, true, true, false, &[]),
    ("CreatedDate", "datetime", 0, false, false, false, &[]),
    ("LastModifiedDate", "datetime", 0, false, false, false, &[]),
    ("LastModifiedById", "reference", 18, false, false, false, &[]),
    ("SystemModstamp", "datetime", 0, false, false, false, &[]),
];

pub(super) fn fields(object: &str) -> Option<Vec<Field>> {
    let own: Vec<Field> = match object {
        "Account" => vec![
            ("Name", "string", 255, true, true, false, &[]),
            ("Website", "url", 255, true, true, false, &[]),
            ("Industry", "picklist", 255, true, true, false, INDUSTRIES),
            ("NumberOfEmployees", "int", 0, true, true, false, &[]),
            ("BillingCountry", "string", 80, true, true, false, &[]),
            ("HubSpot_Company_Id__c", "string", 40, true, true, true, &[]),
        ],
        "Contact" => vec![
            ("FirstName", "string", 40, true, true, false, &[]),
            ("LastName", "string", 80, true, true, false, &[]),
            ("Email", "email", 80, true, true, false, &[]),
            ("Title", "string", 128, true, true, false, &[]),
            ("Phone", "phone", 40, true, true, false, &[]),
            ("AccountId", "reference", 18, true, true, false, &[]),
            ("LeadSource", "picklist", 255, true, true, false, LEAD_SOURCES),
            ("MailingCountry", "string", 80, true, true, false, &[]),
            ("HubSpot_Contact_Id__c", "string", 40, true, true, true, &[]),
            // The context leadsync keeps current (`[[contact.context]]` of the shipped mapping).
            ("LeadSync_Fit_Score__c", "double", 0, true, true, false, &[]),
            ("LeadSync_Engagement_Score__c", "double", 0, true, true, false, &[]),
            ("LeadSync_Grade__c", "string", 10, true, true, false, &[]),
            ("LeadSync_Stage__c", "string", 40, true, true, false, &[]),
            ("LeadSync_Status__c", "string", 40, true, true, false, &[]),
            ("LeadSync_Last_Activity__c", "datetime", 0, true, true, false, &[]),
            ("LeadSync_Recent_Activity__c", "string", 255, true, true, false, &[]),
        ],
        "Opportunity" => vec![
            ("Name", "string", 120, true, true, false, &[]),
            ("AccountId", "reference", 18, true, true, false, &[]),
            ("StageName", "picklist", 255, true, true, false, STAGES),
            ("CloseDate", "date", 0, true, true, false, &[]),
            ("Amount", "currency", 0, true, true, false, &[]),
            ("IsClosed", "boolean", 0, false, false, false, &[]),
            ("IsWon", "boolean", 0, false, false, false, &[]),
            ("Description", "textarea", 32000, true, true, false, &[]),
            ("LeadSource", "picklist", 255, true, true, false, LEAD_SOURCES),
            ("LeadSync_Key__c", "string", 80, true, true, true, &[]),
            ("LeadSync_Engagement_Score__c", "double", 0, true, true, false, &[]),
        ],
        "OpportunityContactRole" => vec![
            ("OpportunityId", "reference", 18, true, false, false, &[]),
            ("ContactId", "reference", 18, true, true, false, &[]),
            (
                "Role",
                "picklist",
                255,
                true,
                true,
                false,
                &["Decision Maker", "Economic Buyer", "Evaluator", "Influencer", "Other"],
            ),
            ("IsPrimary", "boolean", 0, true, true, false, &[]),
            ("LeadSync_Key__c", "string", 80, true, true, true, &[]),
        ],
        // Activities: what a rep logs (calls, emails, to-dos as Tasks; meetings as Events).
        "Task" => vec![
            ("WhoId", "reference", 18, true, true, false, &[]),
            ("WhatId", "reference", 18, true, true, false, &[]),
            ("Subject", "combobox", 255, true, true, false, &[]),
            ("Status", "picklist", 40, true, true, false, TASK_STATUSES),
            (
                "Priority",
                "picklist",
                40,
                true,
                true,
                false,
                &["High", "Normal", "Low"],
            ),
            ("ActivityDate", "date", 0, true, true, false, &[]),
            ("Description", "textarea", 32000, true, true, false, &[]),
            ("Type", "picklist", 40, true, true, false, ACTIVITY_TYPES),
            // Set when the task is logged, never changed after.
            ("TaskSubtype", "picklist", 40, true, false, false, TASK_SUBTYPES),
            (
                "CallType",
                "picklist",
                40,
                true,
                true,
                false,
                &["Internal", "Inbound", "Outbound"],
            ),
            ("CallDisposition", "string", 255, true, true, false, &[]),
            ("CallDurationInSeconds", "int", 0, true, true, false, &[]),
            // leadsync's key on the Tasks it makes (an alert for the owner): a text field
            // on Activity, filterable, not an external id.
            ("LeadSync_Key__c", "string", 80, true, true, false, &[]),
        ],
        "Event" => vec![
            ("WhoId", "reference", 18, true, true, false, &[]),
            ("WhatId", "reference", 18, true, true, false, &[]),
            ("Subject", "combobox", 255, true, true, false, &[]),
            ("Type", "picklist", 40, true, true, false, ACTIVITY_TYPES),
            ("EventSubtype", "picklist", 40, true, false, false, &["Event"]),
            ("ActivityDateTime", "datetime", 0, true, true, false, &[]),
            ("StartDateTime", "datetime", 0, true, true, false, &[]),
            ("EndDateTime", "datetime", 0, true, true, false, &[]),
            ("DurationInMinutes", "int", 0, true, true, false, &[]),
            ("ActivityDate", "date", 0, true, true, false, &[]),
            ("IsAllDayEvent", "boolean", 0, true, true, false, &[]),
            ("Location", "string", 255, true, true, false, &[]),
            ("Description", "textarea", 32000, true, true, false, &[]),
        ],
        "User" => vec![
            ("Name", "string", 121, false, false, false, &[]),
            ("Email", "email", 128, false, false, false, &[]),
            ("Username", "string", 80, false, false, false, &[]),
            ("IsActive", "boolean", 0, false, false, false, &[]),
        ],
        _ => return None,
    };
    Some(
        COMMON
            .iter()
            .copied()
            .filter(|f| object != "User" || f.0 != "OwnerId")
            .chain(own)
            .collect(),
    )
}

pub(super) fn required(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &["Name"],
        "Contact" => &["LastName"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        "OpportunityContactRole" => &["OpportunityId", "ContactId"],
        // Both have defaults on create (see `activities::prepare`); sent empty, they are missing.
        "Task" => &["Status", "Priority"],
        // The start, and the length (given, or from `EndDateTime`).
        "Event" => &["ActivityDateTime", "DurationInMinutes"],
        _ => &[],
    }
}

pub(super) fn prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "OpportunityContactRole" => "00K",
        "Task" => "00T",
        "Event" => "00U",
        _ => "005",
    }
}

/// A 15-character id made 18 with Salesforce's case-safe suffix.
pub fn salesforce_id(object: &str, n: u64) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut tail = [b'0'; 9];
    let mut v = n;
    for c in tail.iter_mut().rev() {
        *c = B62[(v % 62) as usize];
        v /= 62;
    }
    let id15 = format!("{}5g0{}", prefix(object), String::from_utf8_lossy(&tail));
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id15.clone();
    for chunk in id15.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0usize, |acc, (i, c)| acc | (usize::from(c.is_ascii_uppercase()) << i));
        out.push(alphabet[bits] as char);
    }
    out
}

pub(super) fn describe(object: &str) -> (u16, Value) {
    let Some(fs) = fields(object) else {
        return api_error(
            404,
            "NOT_FOUND",
            &format!("The requested resource does not exist: {object}"),
        );
    };
    let fields: Vec<Value> = fs
        .iter()
        .map(|(name, kind, length, createable, updateable, external, picklist)| {
            let values: Vec<Value> = picklist
                .iter()
                .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": false}))
                .collect();
            json!({"name": name, "label": name, "type": kind, "length": length, "createable": createable,
                "updateable": updateable, "externalId": external, "idLookup": *external || *name == "Id",
                "custom": name.ends_with("__c"), "nillable": !required(object).contains(name) && *name != "Id",
                "unique": external, "picklistValues": values})
        })
        .collect();
    (
        200,
        json!({"name": object, "label": object, "custom": false, "createable": object != "User",
        "updateable": object != "User", "queryable": true, "keyPrefix": prefix(object), "fields": fields}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_18_characters_with_the_case_safe_suffix() {
        let id = salesforce_id("Contact", 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert_ne!(salesforce_id("Contact", 2), id);
    }
}
