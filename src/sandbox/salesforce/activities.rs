//! Tasks and Events: Salesforce's defaults and reference checks on create, the history seeded
//! on the org's contacts, and the sales activity a test logs as a rep would.
//!
//! As in Salesforce: a Task gets `Status` "Not Started" and `Priority` "Normal" when the create
//! leaves them out (sent empty, they are missing); an Event's `StartDateTime` and
//! `ActivityDateTime` are one value, and its `DurationInMinutes` comes from `EndDateTime` (or the
//! end from the duration); `WhoId` must be a Contact, `WhatId` an Account or Opportunity and
//! `OwnerId` a User of the org, else `INVALID_CROSS_REFERENCE_KEY` or, for a record of another
//! type, `FIELD_INTEGRITY_EXCEPTION`, naming the field. An owner left out is the API user (the
//! org's first user here).

use serde_json::{Map, Value, json};

use super::schema::prefix;
use super::{SalesforceState, err, sf_time};
use crate::sandbox::{SalesActivity, SalesActivityKind};

/// The objects each reference field of a Task or Event may point at.
const REFERENCES: [(&str, &[&str]); 3] = [
    ("WhoId", &["Contact"]),
    ("WhatId", &["Account", "Opportunity"]),
    ("OwnerId", &["User"]),
];

/// The object an id names, by its key prefix, when the org holds a record with that id.
fn object_of<'a>(s: &SalesforceState, id: &str, candidates: &[&'a str]) -> Result<&'a str, Option<String>> {
    let known = [
        "Account",
        "Contact",
        "Opportunity",
        "OpportunityContactRole",
        "Task",
        "Event",
        "User",
    ];
    let Some(object) = known.into_iter().find(|o| id.starts_with(prefix(o))) else {
        return Err(None);
    };
    let exists = s
        .records
        .get(object)
        .is_some_and(|rs| rs.iter().any(|r| r["Id"].as_str() == Some(id)));
    if !exists {
        return Err(None);
    }
    candidates
        .iter()
        .copied()
        .find(|c| *c == object)
        .ok_or_else(|| Some(object.to_string()))
}

/// Defaults, derived fields and reference checks of a Task or Event being written (`creating`
/// false for an update); other objects pass untouched.
pub(super) fn prepare(
    s: &SalesforceState,
    object: &str,
    clean: &mut Map<String, Value>,
    creating: bool,
) -> Result<(), Value> {
    if object != "Task" && object != "Event" {
        return Ok(());
    }
    if creating {
        if object == "Task" {
            clean.entry("Status").or_insert(json!("Not Started"));
            clean.entry("Priority").or_insert(json!("Normal"));
        }
        if !clean.contains_key("OwnerId") {
            if let Some(api_user) = s.records.get("User").and_then(|u| u.first()) {
                clean.insert("OwnerId".into(), api_user["Id"].clone());
            }
        }
    }
    for (field, targets) in REFERENCES {
        let Some(id) = clean.get(field).and_then(Value::as_str).filter(|v| !v.is_empty()) else {
            continue;
        };
        match object_of(s, id, targets) {
            Ok(_) => {}
            Err(None) => {
                return Err(err(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[field],
                ));
            }
            Err(Some(other)) => {
                return Err(err(
                    "FIELD_INTEGRITY_EXCEPTION",
                    &format!("{field}: id value of incorrect type: {id} is a {other}"),
                    &[field],
                ));
            }
        }
    }
    if object == "Event" {
        // One instant under two names; the start a create gives is both.
        let start = clean
            .get("StartDateTime")
            .or(clean.get("ActivityDateTime"))
            .filter(|v| !v.is_null())
            .cloned();
        if let Some(start) = start {
            clean.insert("StartDateTime".into(), start.clone());
            clean.insert("ActivityDateTime".into(), start.clone());
            let start_ms = start.as_str().and_then(super::soql::instant);
            let end_ms = clean
                .get("EndDateTime")
                .and_then(Value::as_str)
                .and_then(super::soql::instant);
            let minutes = clean.get("DurationInMinutes").and_then(Value::as_i64);
            match (start_ms, end_ms, minutes) {
                (Some(a), Some(b), _) if b < a => {
                    return Err(err(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "End Date Time: End time can't be before start time",
                        &["EndDateTime"],
                    ));
                }
                (Some(a), Some(b), _) => {
                    clean.insert("DurationInMinutes".into(), json!((b - a) / 60_000));
                }
                (Some(a), None, Some(m)) => {
                    clean.insert("EndDateTime".into(), json!(sf_time(a + m * 60_000)));
                }
                _ => {}
            }
            if let Some(a) = start_ms {
                clean
                    .entry("ActivityDate")
                    .or_insert(json!(sf_time(a)[..10].to_string()));
            }
        }
    }
    Ok(())
}

impl SalesforceState {
    /// Logs `activity` on `on` (a Contact, Account or Opportunity id), as a rep would: a call or
    /// an email is a Task (`TaskSubtype` `Call` or `Email`), a meeting an Event of 30 minutes.
    /// Made at `now` (its `SystemModstamp`); `activity.at` (default `now`) is its `CreatedDate`
    /// and, for a meeting, its start. The rep defaults to the record's owner. Returns the
    /// object (`Task`, `Event`) and the id, or Salesforce's refusal (`NOT_FOUND` for `on`).
    pub(crate) fn log_activity(
        &mut self,
        on: &str,
        activity: &SalesActivity,
        now: i64,
    ) -> Result<(&'static str, String), Value> {
        let on_object = object_of(self, on, &["Contact", "Account", "Opportunity"]).map_err(|_| {
            err(
                "NOT_FOUND",
                &format!("no Contact, Account or Opportunity has id {on}"),
                &[],
            )
        })?;
        let record_owner = self.records[on_object]
            .iter()
            .find(|r| r["Id"].as_str() == Some(on))
            .and_then(|r| r.get("OwnerId").cloned());
        let mut r = Map::new();
        let link = if on_object == "Contact" { "WhoId" } else { "WhatId" };
        r.insert(link.into(), json!(on));
        match activity.rep.as_deref() {
            Some(rep) => r.insert("OwnerId".into(), json!(rep)),
            None => r.insert("OwnerId".into(), record_owner.unwrap_or(Value::Null)),
        };
        let at = activity.at.map_or(now, |t| t.timestamp_millis());
        let direction = if activity.inbound { "Inbound" } else { "Outbound" };
        let object = match activity.kind {
            SalesActivityKind::Call => {
                r.insert("Subject".into(), json!(format!("Call ({})", direction.to_lowercase())));
                r.insert("TaskSubtype".into(), json!("Call"));
                r.insert("Type".into(), json!("Call"));
                r.insert("CallType".into(), json!(direction));
                let disposition = if activity.connected { "Connected" } else { "No answer" };
                r.insert("CallDisposition".into(), json!(disposition));
                r.insert("Status".into(), json!("Completed"));
                "Task"
            }
            SalesActivityKind::Email => {
                r.insert("Subject".into(), json!("Email: following up"));
                r.insert("TaskSubtype".into(), json!("Email"));
                r.insert("Type".into(), json!("Email"));
                r.insert("Status".into(), json!("Completed"));
                "Task"
            }
            SalesActivityKind::Meeting => {
                r.insert("Subject".into(), json!("Meeting"));
                r.insert("Type".into(), json!("Meeting"));
                r.insert("EventSubtype".into(), json!("Event"));
                r.insert("StartDateTime".into(), json!(sf_time(at)));
                r.insert("DurationInMinutes".into(), json!(30));
                "Event"
            }
        };
        r.insert("ActivityDate".into(), json!(sf_time(at)[..10].to_string()));
        let id = self.save(object, &r, None, now)?;
        if let Some(made) = self
            .records
            .get_mut(object)
            .and_then(|rs| rs.iter_mut().find(|r| r["Id"].as_str() == Some(id.as_str())))
        {
            made.insert("CreatedDate".into(), json!(sf_time(at)));
        }
        Ok((object, id))
    }

    /// The org's history: a connected call the owner logged on a seeded Contact at `at`, and,
    /// for a customer, a meeting on its won Opportunity three days later (logged at `at`).
    pub(super) fn seed_activities(&mut self, contact: &str, opportunity: Option<&str>, owner: &Value, at: i64) {
        let mut call = Map::new();
        call.insert("WhoId".into(), json!(contact));
        call.insert("OwnerId".into(), owner.clone());
        call.insert("Subject".into(), json!("Call (outbound)"));
        call.insert("TaskSubtype".into(), json!("Call"));
        call.insert("Type".into(), json!("Call"));
        call.insert("CallType".into(), json!("Outbound"));
        call.insert("CallDisposition".into(), json!("Connected"));
        call.insert("Status".into(), json!("Completed"));
        call.insert("Priority".into(), json!("Normal"));
        call.insert("ActivityDate".into(), json!(sf_time(at)[..10].to_string()));
        self.insert("Task", call, at);
        if let Some(opp) = opportunity {
            let start = at + 3 * 86_400_000;
            let mut meeting = Map::new();
            meeting.insert("WhatId".into(), json!(opp));
            meeting.insert("OwnerId".into(), owner.clone());
            meeting.insert("Subject".into(), json!("Demo"));
            meeting.insert("Type".into(), json!("Meeting"));
            meeting.insert("EventSubtype".into(), json!("Event"));
            for f in ["StartDateTime", "ActivityDateTime"] {
                meeting.insert(f.into(), json!(sf_time(start)));
            }
            meeting.insert("EndDateTime".into(), json!(sf_time(start + 1_800_000)));
            meeting.insert("DurationInMinutes".into(), json!(30));
            meeting.insert("ActivityDate".into(), json!(sf_time(start)[..10].to_string()));
            self.insert("Event", meeting, at);
        }
    }
}
