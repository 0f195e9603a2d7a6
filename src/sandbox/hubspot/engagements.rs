//! Engagements made after the portal was generated: `POST /crm/v3/objects/{calls|emails|
//! meetings|notes|tasks}` (leadsync's tasks for reps) and the activity a test logs as a rep.
//! They are read, batch read, listed, searched and associated like the portal's own.
//!
//! As HubSpot: `hs_timestamp` is required (epoch ms or ISO 8601, read back as ISO 8601);
//! an unknown property, an option a property does not offer, or an owner the portal does not
//! have is refused with 400 naming the property; `associations` must name existing contacts with
//! the engagement-to-contact type (tasks 204, calls 194, emails 198, meetings 200, notes 202),
//! else 400 and nothing is made. A call, email or meeting moves the contact's
//! `notes_last_contacted` (and so its `lastmodifieddate`); a task or a note does not.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::Value;

use super::endpoints::{changes, validation};
use super::{HubSpotState, error};
use crate::sandbox::json;
use crate::sandbox::portal::{CONTACT_ID_BASE, ENGAGEMENT_OBJECTS, iso, parse_ms};
use crate::sandbox::{SalesActivity, SalesActivityKind};

/// First id of a made engagement: far past the generated ones (16 per contact).
pub(super) const MADE_ID_BASE: u64 = 90_000_000_001;

/// An engagement made through the API or the activity hook.
#[derive(Debug, Clone)]
pub(super) struct Made {
    /// Its type: `calls`, `emails`, `meetings`, `notes`, `tasks`.
    pub(super) object: &'static str,
    /// The contacts (indexes) it is associated with.
    pub(super) contacts: Vec<u32>,
    /// Its properties.
    pub(super) properties: BTreeMap<String, String>,
}

/// The properties each type accepts on create (besides `hs_timestamp` and `hubspot_owner_id`),
/// with the options of its enumerations.
fn writable(object: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match object {
        "calls" => &[
            ("hs_call_title", &[]),
            ("hs_call_body", &[]),
            ("hs_call_direction", &["INBOUND", "OUTBOUND"]),
            (
                "hs_call_status",
                &[
                    "BUSY",
                    "CALLING_CRM_USER",
                    "CANCELED",
                    "COMPLETED",
                    "CONNECTING",
                    "FAILED",
                    "IN_PROGRESS",
                    "NO_ANSWER",
                    "QUEUED",
                    "RINGING",
                ],
            ),
            ("hs_call_duration", &[]),
            ("hs_call_disposition", &[]),
        ],
        "emails" => &[
            ("hs_email_direction", &["EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"]),
            ("hs_email_subject", &[]),
            ("hs_email_text", &[]),
            (
                "hs_email_status",
                &["BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"],
            ),
        ],
        "meetings" => &[
            ("hs_meeting_title", &[]),
            ("hs_meeting_body", &[]),
            ("hs_meeting_start_time", &[]),
            ("hs_meeting_end_time", &[]),
            (
                "hs_meeting_outcome",
                &["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"],
            ),
            (
                "hs_meeting_source",
                &["CRM_UI", "MEETINGS_PUBLIC", "MEETINGS_EMBEDDED", "INTEGRATION"],
            ),
        ],
        "notes" => &[("hs_note_body", &[])],
        "tasks" => &[
            ("hs_task_subject", &[]),
            ("hs_task_body", &[]),
            (
                "hs_task_status",
                &["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"],
            ),
            ("hs_task_priority", &["NONE", "LOW", "MEDIUM", "HIGH"]),
            ("hs_task_type", &["CALL", "EMAIL", "TODO", "LINKED_IN"]),
            ("hs_task_reminders", &[]),
        ],
        _ => &[],
    }
}

/// The association type id from an engagement of `object` to a contact.
fn to_contact_type(object: &str) -> Option<u32> {
    ENGAGEMENT_OBJECTS
        .iter()
        .find(|(o, _)| *o == object)
        .map(|(_, from_contact)| from_contact + 1)
}

impl HubSpotState {
    /// Checks the properties of an engagement to make, normalising `hs_timestamp`; refusals
    /// carry HubSpot's code, its message and the property refused.
    fn check_engagement(
        &self,
        object: &str,
        props: &mut BTreeMap<String, String>,
    ) -> Result<(), (String, String, String)> {
        let allowed = writable(object);
        for (name, value) in props.iter() {
            if matches!(name.as_str(), "hs_timestamp" | "hubspot_owner_id") {
                continue;
            }
            let Some((_, options)) = allowed.iter().find(|(p, _)| p == name) else {
                return Err((
                    "PROPERTY_DOESNT_EXIST".into(),
                    format!("Property \"{name}\" does not exist"),
                    name.clone(),
                ));
            };
            if !options.is_empty() && !value.is_empty() && !options.contains(&value.as_str()) {
                return Err((
                    "INVALID_OPTION".into(),
                    format!("{value} was not one of the allowed options: {}", options.join(", ")),
                    name.clone(),
                ));
            }
        }
        if let Some(owner) = props.get("hubspot_owner_id").filter(|o| !o.is_empty()) {
            if !self.portal.owners.iter().any(|(id, ..)| id == owner) {
                return Err((
                    "INVALID_OWNER_ID".into(),
                    format!("{owner} is not a valid owner id"),
                    "hubspot_owner_id".into(),
                ));
            }
        }
        match props.get("hs_timestamp").filter(|t| !t.is_empty()) {
            None => Err((
                "REQUIRED_FIELD".into(),
                "hs_timestamp is required".into(),
                "hs_timestamp".into(),
            )),
            Some(t) => match parse_ms(t) {
                Some(ms) => {
                    props.insert("hs_timestamp".into(), iso(ms));
                    Ok(())
                }
                None => Err((
                    "INVALID_DATE".into(),
                    format!("{t} is not a valid date: use epoch milliseconds or ISO 8601"),
                    "hs_timestamp".into(),
                )),
            },
        }
    }

    /// Stores a checked engagement associated with `contacts`; returns its id.
    fn make_engagement(
        &mut self,
        object: &'static str,
        contacts: Vec<u32>,
        mut props: BTreeMap<String, String>,
        now: i64,
    ) -> u64 {
        let id = MADE_ID_BASE + self.made.len() as u64;
        props.insert("hs_object_id".into(), id.to_string());
        props.insert("hs_createdate".into(), iso(now));
        props.insert("hs_lastmodifieddate".into(), iso(now));
        if object == "tasks" {
            props.entry("hs_task_status".into()).or_insert("NOT_STARTED".into());
        }
        let contacted = matches!(object, "calls" | "emails" | "meetings");
        if contacted {
            let at = props.get("hs_timestamp").cloned().unwrap_or_else(|| iso(now));
            for &c in &contacts {
                self.materialize(c).insert("notes_last_contacted".into(), at.clone());
                self.set_modified(c, now);
            }
        }
        self.made.insert(
            id,
            Made {
                object,
                contacts,
                properties: props,
            },
        );
        id
    }

    /// The engagements made of `object` associated with contact `index`, in id order.
    pub(super) fn made_for_contact(&self, object: &str, index: u32) -> Vec<u64> {
        self.made
            .iter()
            .filter(|(_, m)| m.object == object && m.contacts.contains(&index))
            .map(|(id, _)| *id)
            .collect()
    }

    /// A made engagement of `object`, by id.
    pub(super) fn made(&self, object: &str, id: u64) -> Option<&Made> {
        self.made.get(&id).filter(|m| m.object == object)
    }

    /// Ids of made engagements of `object`, in order.
    pub(super) fn made_ids<'a>(&'a self, object: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.made
            .iter()
            .filter(move |(_, m)| m.object == object)
            .map(|(id, _)| *id)
    }

    /// A rep's call, email or meeting on the contact (id or email), as HubSpot records one
    /// logged in its UI: by `rep` (default the contact's owner), at `at` (default now). Returns
    /// the engagement type and id; or why not: `Err((true, _))` for an unknown contact,
    /// `Err((false, _))` for what the API would refuse (a rep who is not an owner).
    pub(crate) fn log_activity(
        &mut self,
        contact: &str,
        activity: &SalesActivity,
        now: i64,
    ) -> Result<(&'static str, String), (bool, String)> {
        let index = self
            .resolve(contact)
            .ok_or_else(|| (true, format!("no contact {contact}")))?;
        let owner = activity
            .rep
            .clone()
            .or_else(|| self.contact_props(index).get("hubspot_owner_id").cloned())
            .unwrap_or_default();
        let at = activity.at.map_or(now, |t| t.timestamp_millis());
        let mut props = BTreeMap::from([
            ("hs_timestamp".to_string(), iso(at)),
            ("hubspot_owner_id".to_string(), owner),
        ]);
        let mut set = |k: &str, v: &str| props.insert(k.to_string(), v.to_string());
        let object = match activity.kind {
            SalesActivityKind::Call => {
                set("hs_call_title", "Call");
                set(
                    "hs_call_direction",
                    if activity.inbound { "INBOUND" } else { "OUTBOUND" },
                );
                set(
                    "hs_call_status",
                    if activity.connected { "COMPLETED" } else { "NO_ANSWER" },
                );
                "calls"
            }
            SalesActivityKind::Email => {
                set("hs_email_subject", "Following up");
                set(
                    "hs_email_direction",
                    if activity.inbound { "INCOMING_EMAIL" } else { "EMAIL" },
                );
                set("hs_email_status", "SENT");
                "emails"
            }
            SalesActivityKind::Meeting => {
                set("hs_meeting_title", "Meeting");
                set("hs_meeting_start_time", &iso(at));
                set("hs_meeting_end_time", &iso(at + 1_800_000));
                set(
                    "hs_meeting_outcome",
                    if activity.connected { "COMPLETED" } else { "NO_SHOW" },
                );
                // Booked by the contact on a scheduling page, or logged by the rep.
                set(
                    "hs_meeting_source",
                    if activity.inbound { "MEETINGS_PUBLIC" } else { "CRM_UI" },
                );
                "meetings"
            }
        };
        // Refused as the API would refuse it (an unknown rep): nothing is logged.
        self.check_engagement(object, &mut props)
            .map_err(|(code, message, property)| (false, format!("{property}: {code}: {message}")))?;
        let id = self.make_engagement(object, vec![index], props, now);
        Ok((object, id.to_string()))
    }
}

/// `POST /crm/v3/objects/{type}` for an engagement type: 201 with the record made.
pub(super) fn create(s: &mut HubSpotState, object: &'static str, body: &Value, now: i64) -> Response {
    let mut props = changes(&body["properties"]);
    if let Err((code, message, property)) = s.check_engagement(object, &mut props) {
        return validation(&code, &message, Some(&property), now);
    }
    let mut contacts = Vec::new();
    let links = body["associations"].as_array().cloned().unwrap_or_default();
    let expected = to_contact_type(object).unwrap_or(0);
    for (i, a) in links.iter().enumerate() {
        let to = match &a["to"]["id"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let types = a["types"].as_array().cloned().unwrap_or_default();
        let type_ok = !types.is_empty()
            && types
                .iter()
                .all(|t| t["associationTypeId"].as_u64() == Some(u64::from(expected)));
        if !type_ok {
            return error(
                400,
                "VALIDATION_ERROR",
                &format!(
                    "associations[{i}]: the sandbox associates {object} with contacts only, \
                     by associationTypeId {expected} (HUBSPOT_DEFINED)"
                ),
                now,
            );
        }
        match s.contact_index(&to) {
            Some(index) => contacts.push(index),
            None => {
                return error(
                    400,
                    "VALIDATION_ERROR",
                    &format!("One or more associations are invalid: associations[{i}]: no contact has id {to}"),
                    now,
                );
            }
        }
    }
    let id = s.make_engagement(object, contacts, props, now);
    let made = &s.made[&id].properties;
    let names: Vec<String> = made.keys().cloned().collect();
    json(201, &s.object_json(object, id, made, &names))
}

/// The contact ids a made engagement is associated with, with the association type id.
pub(super) fn made_contacts(m: &Made) -> Vec<(u64, u32)> {
    let type_id = to_contact_type(m.object).unwrap_or(0);
    m.contacts
        .iter()
        .map(|c| (u64::from(*c) + CONTACT_ID_BASE, type_id))
        .collect()
}
