//! Owners, property definitions, and the contact properties leadsync writes.
//!
//! `leadsync setup` reads every contact property definition in one call, compares it with what
//! leadsync needs (its output properties, and the `leadsync_*` properties the rules read), and
//! creates the missing ones, with their group, in one batch call. Without `--apply` it prints
//! the plan. Running it twice changes nothing the second time.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{Call, HubSpotClient, HubSpotError};
use super::limiter::{Budget, Priority};
use super::types::{LIST_PAGE_LIMIT, Page};
use crate::lifecycle::rules::PropType;
use crate::lifecycle::{Rules, Stage, Status};
use crate::sync::followup;

/// The property group leadsync's properties live in.
pub const GROUP: &str = "leadsync";

/// A HubSpot user who can own records.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// Owner id (what `hubspot_owner_id` holds).
    pub id: String,
    /// Login email: personal data, never logged.
    #[serde(default)]
    pub email: Option<String>,
    /// Given name (personal data, never logged); written to `leadsync_sales_owner_name`.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name (personal data, never logged).
    #[serde(default)]
    pub last_name: Option<String>,
    /// Deactivated owners are archived.
    #[serde(default)]
    pub archived: bool,
}

/// A property definition, as HubSpot's properties API reads and creates it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    /// Internal name.
    pub name: String,
    /// Label shown in HubSpot.
    pub label: String,
    /// `string`, `number`, `date`, `datetime`, `enumeration`, `bool`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `text`, `textarea`, `number`, `date`, `select`, `booleancheckbox`.
    pub field_type: String,
    /// Property group.
    #[serde(default)]
    pub group_name: String,
    /// Allowed values of an enumeration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PropertyOption>,
}

/// One allowed value.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    /// Label shown.
    pub label: String,
    /// Stored value.
    pub value: String,
    /// Position.
    #[serde(default)]
    pub display_order: i32,
    /// Hidden from forms and the UI; required on every option by HubSpot's properties spec, so
    /// `setup` always sends it (false).
    #[serde(default)]
    pub hidden: bool,
}

/// What `setup` would do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetupPlan {
    /// Whether the `leadsync` group must be created.
    pub create_group: bool,
    /// Properties to create.
    pub create: Vec<PropertyDefinition>,
    /// Properties that exist with another type: left alone, reported.
    pub conflicts: Vec<String>,
    /// Properties already in place.
    pub present: usize,
}

impl HubSpotClient {
    /// Every owner, active and archived.
    pub async fn owners(&self, priority: Priority) -> Result<Vec<Owner>, HubSpotError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for archived in ["false", "true"] {
            loop {
                let mut query = vec![
                    ("limit", LIST_PAGE_LIMIT.to_string()),
                    ("archived", archived.to_string()),
                ];
                if let Some(a) = &after {
                    query.push(("after", a.clone()));
                }
                let page: Page<Owner> = self
                    .call(Call::<()> {
                        endpoint: "owners.list",
                        method: Method::GET,
                        path: "/crm/v3/owners",
                        query: &query,
                        body: None,
                        budget: Budget::General,
                        priority,
                    })
                    .await?;
                after = page.next_after().map(str::to_string);
                out.extend(page.results);
                if after.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every property definition of an object type, in one call.
    pub async fn property_definitions(
        &self,
        object: &str,
        priority: Priority,
    ) -> Result<Vec<PropertyDefinition>, HubSpotError> {
        let path = format!("/crm/v3/properties/{object}");
        let page: Page<PropertyDefinition> = self
            .call(Call::<()> {
                endpoint: "properties.list",
                method: Method::GET,
                path: &path,
                query: &[],
                body: None,
                budget: Budget::General,
                priority,
            })
            .await?;
        Ok(page.results)
    }

    /// Names of the property groups of an object type.
    pub async fn property_groups(&self, object: &str, priority: Priority) -> Result<Vec<String>, HubSpotError> {
        #[derive(Deserialize)]
        struct Group {
            name: String,
        }
        let path = format!("/crm/v3/properties/{object}/groups");
        let page: Page<Group> = self
            .call(Call::<()> {
                endpoint: "properties.groups",
                method: Method::GET,
                path: &path,
                query: &[],
                body: None,
                budget: Budget::General,
                priority,
            })
            .await?;
        Ok(page.results.into_iter().map(|g| g.name).collect())
    }

    /// Compares HubSpot's contact properties and groups with what leadsync needs (two calls).
    pub async fn plan_setup(&self, rules: &Rules) -> Result<SetupPlan, HubSpotError> {
        let existing = self.property_definitions("contacts", Priority::RealTime).await?;
        let groups = self.property_groups("contacts", Priority::RealTime).await?;
        Ok(plan(&wanted_properties(rules), &existing, &groups))
    }

    /// Creates what the plan lists: the group, then every property in one batch call.
    pub async fn apply_setup(&self, plan: &SetupPlan) -> Result<(), HubSpotError> {
        if plan.create_group {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Group<'a> {
                name: &'a str,
                label: &'a str,
                display_order: i32,
            }
            let _: serde_json::Value = self
                .call(Call {
                    endpoint: "properties.create_group",
                    method: Method::POST,
                    path: "/crm/v3/properties/contacts/groups",
                    query: &[],
                    body: Some(&Group {
                        name: GROUP,
                        label: "leadsync",
                        display_order: -1,
                    }),
                    budget: Budget::General,
                    priority: Priority::RealTime,
                })
                .await?;
        }
        if !plan.create.is_empty() {
            #[derive(Serialize)]
            struct Batch<'a> {
                inputs: &'a [PropertyDefinition],
            }
            let _: serde_json::Value = self
                .call(Call {
                    endpoint: "properties.batch_create",
                    method: Method::POST,
                    path: "/crm/v3/properties/contacts/batch/create",
                    query: &[],
                    body: Some(&Batch { inputs: &plan.create }),
                    budget: Budget::General,
                    priority: Priority::RealTime,
                })
                .await?;
        }
        Ok(())
    }
}

/// The contact properties leadsync needs: its outputs, the `leadsync_*` properties its rules
/// read (human decisions, opportunity feedback), and the Salesforce ids it records.
pub fn wanted_properties(rules: &Rules) -> Vec<PropertyDefinition> {
    let out = rules.output();
    let options = |values: &[&str]| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| PropertyOption {
                label: v.replace('_', " "),
                value: v.to_string(),
                display_order: i as i32,
                hidden: false,
            })
            .collect::<Vec<_>>()
    };
    let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let mut wanted = vec![
        definition(&out.stage, "leadsync stage", "enumeration", "select", options(&stages)),
        definition(
            &out.status,
            "leadsync status",
            "enumeration",
            "select",
            options(&statuses),
        ),
        definition(&out.fit_score, "leadsync fit score", "number", "number", vec![]),
        definition(
            &out.engagement_score,
            "leadsync engagement score",
            "number",
            "number",
            vec![],
        ),
        definition(&out.grade, "leadsync grade", "string", "text", vec![]),
        definition(&out.reason, "leadsync reason", "string", "textarea", vec![]),
        definition(&out.rules_version, "leadsync rules version", "string", "text", vec![]),
        definition(
            "leadsync_sf_account_id",
            "Salesforce account id",
            "string",
            "text",
            vec![],
        ),
        definition(
            "leadsync_sf_contact_id",
            "Salesforce contact id",
            "string",
            "text",
            vec![],
        ),
        definition(
            "leadsync_sf_opportunity_id",
            "Salesforce opportunity id",
            "string",
            "text",
            vec![],
        ),
        definition("leadsync_sf_owner_id", "Salesforce owner id", "string", "text", vec![]),
        // Sales follow-up, from the touches the SLA reads (`sync::followup`).
        definition(
            followup::ATTEMPTS,
            "leadsync sales attempts",
            "number",
            "number",
            vec![],
        ),
        definition(
            followup::LAST_TOUCH_AT,
            "leadsync last sales touch",
            "datetime",
            "date",
            vec![],
        ),
        definition(
            followup::LAST_TOUCH_KIND,
            "leadsync last sales touch kind",
            "string",
            "text",
            vec![],
        ),
        definition(followup::OWNER_NAME, "leadsync sales owner", "string", "text", vec![]),
    ];
    let mut read: Vec<(&String, &PropType)> = rules
        .properties
        .iter()
        .filter(|(n, _)| n.starts_with("leadsync_"))
        .collect();
    read.sort_by(|a, b| a.0.cmp(b.0));
    for (name, ty) in read {
        if wanted.iter().any(|w| &w.name == name) {
            continue;
        }
        let label = name.trim_start_matches("leadsync_").replace('_', " ");
        let (kind, field) = match ty {
            PropType::Number => ("number", "number"),
            PropType::Bool => ("bool", "booleancheckbox"),
            PropType::Date => ("date", "date"),
            PropType::String | PropType::Email => ("string", "text"),
        };
        let mut d = definition(name, &format!("leadsync {label}"), kind, field, vec![]);
        if kind == "bool" {
            d.options = vec![
                PropertyOption {
                    label: "Yes".into(),
                    value: "true".into(),
                    display_order: 0,
                    hidden: false,
                },
                PropertyOption {
                    label: "No".into(),
                    value: "false".into(),
                    display_order: 1,
                    hidden: false,
                },
            ];
        }
        wanted.push(d);
    }
    wanted
}

fn definition(name: &str, label: &str, kind: &str, field: &str, options: Vec<PropertyOption>) -> PropertyDefinition {
    PropertyDefinition {
        name: name.to_string(),
        label: label.to_string(),
        kind: kind.to_string(),
        field_type: field.to_string(),
        group_name: GROUP.to_string(),
        options,
    }
}

/// What to create, given the properties and groups that exist.
pub fn plan(wanted: &[PropertyDefinition], existing: &[PropertyDefinition], groups: &[String]) -> SetupPlan {
    let mut p = SetupPlan::default();
    for w in wanted {
        match existing.iter().find(|e| e.name == w.name) {
            None => p.create.push(w.clone()),
            Some(e) if e.kind != w.kind => p.conflicts.push(format!(
                "{} exists as {} (leadsync writes {}); left alone",
                w.name, e.kind, w.kind
            )),
            Some(_) => p.present += 1,
        }
    }
    p.create_group = !p.create.is_empty() && !groups.iter().any(|g| g == GROUP);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/mappings/lifecycle.toml"
        )))
        .unwrap()
    }

    #[test]
    fn every_option_setup_sends_carries_hidden_false() {
        let wanted = wanted_properties(&rules());
        let options: Vec<serde_json::Value> = wanted
            .iter()
            .flat_map(|p| p.options.iter())
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        assert!(!options.is_empty());
        assert!(options.iter().all(|o| o["hidden"] == false), "{options:?}");
    }

    #[test]
    fn a_fresh_portal_gets_the_group_and_every_property_then_nothing_more() {
        let wanted = wanted_properties(&rules());
        let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        for n in [
            "leadsync_stage",
            "leadsync_fit_score",
            "leadsync_sal_decision",
            "leadsync_sql_qualified",
            "leadsync_sf_contact_id",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(
            !names.contains(&"lifecyclestage") && !names.contains(&"jobtitle"),
            "HubSpot's own are not ours"
        );
        let first = plan(&wanted, &[], &[]);
        assert!(first.create_group);
        assert_eq!(first.create.len(), wanted.len());
        let second = plan(&wanted, &wanted, &[GROUP.to_string()]);
        assert_eq!(
            second,
            SetupPlan {
                present: wanted.len(),
                ..SetupPlan::default()
            }
        );
    }

    #[test]
    fn a_property_of_another_type_is_reported_not_touched() {
        let wanted = wanted_properties(&rules());
        let mut existing = wanted.clone();
        existing[2].kind = "string".into();
        let p = plan(&wanted, &existing, &[GROUP.to_string()]);
        assert!(p.create.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        assert!(
            p.conflicts[0].starts_with("leadsync_fit_score exists as string"),
            "{:?}",
            p.conflicts
        );
    }
}
