//! `leadsync check --online`: the mapping file against the org's describe results. Each mapped
//! field must exist, be writable, fit the type and the picklist values; external-id fields must
//! be External IDs. The comparison is pure ([`compare`]); [`SalesforceMapping::check_online`]
//! only fetches the four describes (four API calls).

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::client::SalesforceClient;
use super::mapping::{SalesforceFieldMap, SalesforceFieldType, SalesforceMapping, SalesforceValue};

/// One mismatch between the mapping file and the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceMappingProblem {
    /// `Account`, `Contact`, `Opportunity`, `OpportunityContactRole`.
    pub object: String,
    /// Field API name, empty for the object itself.
    pub field: String,
    /// Line of the mapping entry, 0 when it has none (external ids, built-in fields).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SalesforceMappingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}.{}: {}", self.object, self.field, self.message)
        }
    }
}

/// The parts of a field's describe leadsync checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesforceDescribeField {
    /// API name.
    pub name: String,
    /// `string`, `picklist`, `double`, `date`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Settable on create.
    #[serde(default)]
    pub createable: bool,
    /// Settable on update.
    #[serde(default)]
    pub updateable: bool,
    /// Longest text.
    #[serde(default)]
    pub length: usize,
    /// Marked External ID.
    #[serde(default)]
    pub external_id: bool,
    /// Picklist values.
    #[serde(default)]
    pub picklist_values: Vec<SalesforcePicklistValue>,
}

/// One picklist value.
#[derive(Debug, Clone, Deserialize)]
pub struct SalesforcePicklistValue {
    /// API value.
    pub value: String,
    /// Offered.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Compares one object's mapping with its describe `fields`; `external_id` is the field leadsync
/// upserts by (if any), `required` the built-in fields leadsync writes with their fixed values.
pub fn compare(
    object: &str,
    fields: &[SalesforceDescribeField],
    mapped: &[SalesforceFieldMap],
    external_id: Option<&str>,
    required: &[(&str, Option<&str>)],
) -> Vec<SalesforceMappingProblem> {
    let mut out = Vec::new();
    let problem = |field: &str, line: usize, message: String| SalesforceMappingProblem {
        object: object.to_string(),
        field: field.to_string(),
        line,
        message,
    };
    let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    if let Some(ext) = external_id {
        match find(ext) {
            None => out.push(problem(ext, 0, "the external-id field does not exist".into())),
            Some(f) if !f.external_id => out.push(problem(
                ext,
                0,
                "is not marked External ID: upserts by it are refused".into(),
            )),
            Some(_) => {}
        }
    }
    for (name, value) in required {
        match find(name) {
            None => out.push(problem(name, 0, "does not exist".into())),
            Some(f) => {
                if let Some(v) = value {
                    out.extend(picklist_miss(f, v).map(|m| problem(name, 0, m)));
                }
            }
        }
    }
    for m in mapped {
        let Some(f) = find(&m.field) else {
            out.push(problem(
                &m.field,
                m.line,
                "does not exist (or the integration user cannot see it)".into(),
            ));
            continue;
        };
        if !f.createable || !f.updateable {
            out.push(problem(
                &m.field,
                m.line,
                format!(
                    "is not writable by the integration user (createable {}, updateable {})",
                    f.createable, f.updateable
                ),
            ));
        }
        let fits = match m.kind {
            SalesforceFieldType::Text => matches!(
                f.kind.as_str(),
                "string"
                    | "textarea"
                    | "picklist"
                    | "multipicklist"
                    | "combobox"
                    | "email"
                    | "phone"
                    | "url"
                    | "reference"
            ),
            SalesforceFieldType::Number => {
                matches!(f.kind.as_str(), "double" | "currency" | "percent" | "int" | "long")
            }
            SalesforceFieldType::Boolean => f.kind == "boolean",
            SalesforceFieldType::Date => matches!(f.kind.as_str(), "date" | "datetime"),
        };
        if !fits {
            out.push(problem(
                &m.field,
                m.line,
                format!("is a {} field; the mapping sends {:?}", f.kind, m.kind),
            ));
        }
        if m.kind == SalesforceFieldType::Text && f.length > 0 && f.kind != "picklist" {
            match m.truncate {
                Some(n) if n > f.length => out.push(problem(
                    &m.field,
                    m.line,
                    format!("truncate = {n} is longer than the field ({})", f.length),
                )),
                None => out.push(problem(
                    &m.field,
                    m.line,
                    format!("add truncate = {}: longer values would be refused", f.length),
                )),
                _ => {}
            }
        }
        if f.kind == "picklist" {
            let mut fixed: Vec<&str> = m.map.values().map(String::as_str).collect();
            fixed.extend(m.map_other.as_deref());
            fixed.extend(m.default.as_deref());
            if let SalesforceValue::Constant(c) = &m.value {
                fixed.push(c);
            }
            for v in fixed {
                out.extend(picklist_miss(f, v).map(|msg| problem(&m.field, m.line, msg)));
            }
        }
    }
    out
}

fn picklist_miss(f: &SalesforceDescribeField, value: &str) -> Option<String> {
    if f.picklist_values.is_empty() {
        return None;
    }
    let known = f.picklist_values.iter().any(|p| p.active && p.value == value);
    (!known).then(|| {
        let values: Vec<&str> = f
            .picklist_values
            .iter()
            .filter(|p| p.active)
            .map(|p| p.value.as_str())
            .collect();
        format!("`{value}` is not an active picklist value ({})", values.join(", "))
    })
}

/// Who a mapped field belongs to after promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceFieldOwner {
    /// leadsync's: kept current (`[[contact.context]]`, `[[opportunity.context]]`).
    Leadsync,
    /// Sales': written once at creation, never after.
    Sales,
}

impl SalesforceMapping {
    /// Every field the mapping writes, by object, with whose it is after promotion and its line
    /// (what `check --online` prints).
    pub fn ownership(&self) -> Vec<(&'static str, &str, SalesforceFieldOwner, usize)> {
        let mut out = Vec::new();
        for (object, fields) in [
            ("Account", &self.account),
            ("Contact", &self.contact),
            ("Opportunity", &self.opportunity),
        ] {
            out.extend(
                fields
                    .iter()
                    .map(|f| (object, f.field.as_str(), SalesforceFieldOwner::Sales, f.line)),
            );
        }
        for (object, fields) in [
            ("Contact", &self.contact_context),
            ("Opportunity", &self.opportunity_context),
        ] {
            out.extend(
                fields
                    .iter()
                    .map(|f| (object, f.field.as_str(), SalesforceFieldOwner::Leadsync, f.line)),
            );
        }
        out
    }
}

/// Object, mapped fields, external-id field, built-in fields with their fixed values.
type ObjectCheck<'a> = (
    &'a str,
    &'a [SalesforceFieldMap],
    Option<&'a str>,
    &'a [(&'a str, Option<&'a str>)],
);

impl SalesforceMapping {
    /// Compares the mapping with the org's describe results (five API calls); an unreachable
    /// describe is reported as a problem of its object.
    pub async fn check_online(&self, client: &SalesforceClient) -> Vec<SalesforceMappingProblem> {
        let domain = SalesforceFieldMap {
            field: self.account_domain_field.clone(),
            value: SalesforceValue::Constant(String::new()),
            transforms: vec![],
            map: Default::default(),
            map_other: None,
            default: None,
            truncate: Some(255),
            kind: SalesforceFieldType::Text,
            line: 0,
        };
        let account_required = [("Name", None)];
        let opportunity_required = [
            ("Name", None),
            ("StageName", Some(self.stage.as_str())),
            ("CloseDate", None),
            ("AccountId", None),
            ("OwnerId", None),
        ];
        let ocr_required = [
            ("OpportunityId", None),
            ("ContactId", None),
            ("IsPrimary", None),
            ("Role", Some(self.contact_role.as_str())),
        ];
        let with_context = |fields: &[SalesforceFieldMap], context: &[super::mapping::SalesforceContextField]| {
            let mut all = fields.to_vec();
            all.extend(context.iter().map(|c| c.as_field_map()));
            all
        };
        let contact_fields = with_context(&self.contact, &self.contact_context);
        let opportunity_fields = with_context(&self.opportunity, &self.opportunity_context);
        let mut account_fields = self.account.clone();
        if !account_fields
            .iter()
            .any(|f| f.field.eq_ignore_ascii_case(&domain.field))
        {
            account_fields.push(domain);
        }
        let task_required = [
            (super::tasks::TASK_KEY_FIELD, None),
            ("WhoId", None),
            ("OwnerId", None),
            ("ActivityDate", None),
        ];
        let checks: [ObjectCheck<'_>; 5] = [
            (
                "Account",
                &account_fields,
                Some(&self.account_external_id),
                &account_required,
            ),
            (
                "Contact",
                &contact_fields,
                Some(&self.contact_external_id),
                &[("LastName", None), ("AccountId", None)],
            ),
            (
                "Opportunity",
                &opportunity_fields,
                Some(&self.opportunity_external_id),
                &opportunity_required,
            ),
            ("OpportunityContactRole", &[], None, &ocr_required),
            // The owner's alerts (`salesforce::tasks`): found again by leadsync's key, a text
            // field the admin adds on Activity; without it every alert would end a dead letter.
            ("Task", &[], None, &task_required),
        ];
        let mut out = Vec::new();
        for (object, mapped, ext, required) in checks {
            match client.describe(object).await {
                Ok(d) => {
                    let fields: Vec<SalesforceDescribeField> =
                        serde_json::from_value(d.get("fields").cloned().unwrap_or(Value::Null)).unwrap_or_default();
                    out.extend(compare(object, &fields, mapped, ext, required));
                }
                Err(e) => out.push(SalesforceMappingProblem {
                    object: object.to_string(),
                    field: String::new(),
                    line: 0,
                    message: format!("describe failed: {e}"),
                }),
            }
        }
        out
    }
}
