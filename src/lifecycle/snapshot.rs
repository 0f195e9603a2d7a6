//! What the engine is given: a contact's properties, its dated events, and leadsync's last state.
//!
//! The JSON form of these types is the snapshot format `leadsync explain` reads
//! (documented in `docs/snapshots.md`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{EventKind, Stage, Status};

/// A HubSpot object id: decimal digits, never empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "IdRepr", into = "String")]
pub struct HubSpotId(String);

#[derive(Deserialize)]
#[serde(untagged)]
enum IdRepr {
    Text(String),
    Number(u64),
}

impl TryFrom<IdRepr> for HubSpotId {
    type Error = String;
    fn try_from(v: IdRepr) -> Result<Self, String> {
        match v {
            IdRepr::Number(n) => Ok(HubSpotId(n.to_string())),
            IdRepr::Text(s) => HubSpotId::try_from(s),
        }
    }
}

impl TryFrom<String> for HubSpotId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(HubSpotId(s))
        } else {
            Err(format!("`{s}` is not a HubSpot id (decimal digits expected)"))
        }
    }
}

impl From<HubSpotId> for String {
    fn from(id: HubSpotId) -> String {
        id.0
    }
}

impl HubSpotId {
    /// The id as HubSpot writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by id are looked up with a `&str` (what a store row holds); the derived `Hash`,
/// `Eq` and `Ord` are the inner text's, as `Borrow` requires.
impl std::borrow::Borrow<str> for HubSpotId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HubSpotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything the engine needs to decide for one contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// HubSpot contact id.
    pub contact_id: HubSpotId,
    /// Current HubSpot property values (HubSpot sends every value as a string; nulls are dropped).
    #[serde(default, deserialize_with = "non_null_properties")]
    pub properties: HashMap<String, String>,
    /// Dated behaviour and sales activity, in any order, possibly repeated.
    #[serde(default)]
    pub events: Vec<Event>,
    /// What leadsync stored after its last decision; absent for a contact never seen.
    #[serde(default)]
    pub state: ContactState,
}

fn non_null_properties<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Number(serde_json::Number),
        Bool(bool),
        Null,
    }
    let raw: HashMap<String, Value> = HashMap::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Text(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            Value::Null => None,
        })
        .collect())
}

/// One dated thing a contact did or that was done with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Stable id (HubSpot engagement id, or a derived key); a repeated id counts once.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened (UTC): RFC 3339, or a bare date `YYYY-MM-DD` (midnight UTC), as `--at`.
    #[serde(deserialize_with = "event_time")]
    pub at: DateTime<Utc>,
    /// Page or link URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Form name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// Campaign, email or webinar identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Outcome of a call or meeting (`connected`, `no_answer`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// HubSpot owner id of the rep who logged it (a sales touch's author, for the SLA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// An event's `at`: an RFC 3339 time, or a date alone (midnight UTC); anything else is an error
/// that names the field and both formats.
fn event_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Time;
    impl serde::de::Visitor<'_> for Time {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event time: 2026-11-24T09:00:00Z, or a date such as 2026-11-24 (midnight UTC)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_time_or_date(v).ok_or_else(|| {
                E::custom(format!(
                    "event `at`: `{v}` is not a time (write 2026-11-24T09:00:00Z, or a date such as 2026-11-24 for midnight UTC)"
                ))
            })
        }
    }
    d.deserialize_str(Time)
}

/// An ISO 8601 / RFC 3339 time (read as leniently as before: chrono's own parser), or
/// `YYYY-MM-DD` read as midnight UTC (what `--at` accepts).
pub fn parse_time_or_date(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = v.parse::<DateTime<Utc>>() {
        return Some(t);
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Who started an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The contact reached out (a reply, an inbound call).
    Inbound,
    /// Sales reached out.
    Outbound,
}

impl Direction {
    /// The identifier used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// When a stage was entered, and whether it was skipped by a shortcut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageEntry {
    /// When the contact entered (or jumped past) the stage.
    pub at: DateTime<Utc>,
    /// True when a shortcut jumped over this stage.
    #[serde(default)]
    pub skipped: bool,
}

/// A retired field's value: accepted in any shape, never kept, never written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retired;

impl PartialEq for Retired {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<'de> Deserialize<'de> for Retired {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Retired)
    }
}

/// Salesforce records a promotion created or linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SalesforceLink {
    /// Account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Contact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// Opportunity id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity_id: Option<String>,
}

/// What leadsync remembers about a contact between two decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ContactState {
    /// Current stage; `None` before the contact meets any stage's criteria.
    pub stage: Option<Stage>,
    /// Entry time of every stage reached in the current cycle (skipped ones flagged).
    pub stages: BTreeMap<Stage, StageEntry>,
    /// Current side status.
    pub status: Status,
    /// Since when the status holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_since: Option<DateTime<Utc>>,
    /// Why the status holds (gate id, rejection reason, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// How many times the contact was recycled.
    pub recycle_count: u32,
    /// No automatic MQL before this time (set by a recycle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Events at or before this time no longer count (set by a recycle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_reset_at: Option<DateTime<Utc>>,
    /// HubSpot's `lifecyclestage` as last seen, to tell a person's change from a pending write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hubspot_stage_seen: Option<String>,
    /// Property values consumed by a recycle: ignored while HubSpot still shows them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consumed: BTreeMap<String, String>,
    /// The first-touch timers an earlier version kept here (`sla`), read and dropped: the
    /// sales SLA's timers live in the store's `sla_timers` now, so a stored state from before
    /// still loads.
    #[serde(rename = "sla", default, skip_serializing)]
    pub retired_sla: Retired,
    /// The contact reached SQL while leadsync watched and its Salesforce records are not made yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub promotion_pending: bool,
    /// Salesforce records, once promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salesforce: Option<SalesforceLink>,
    /// Version of the rules that made the last decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    /// The reason of the last stage or status change, as written to HubSpot: kept so that a
    /// later decision without a change still wants it there (a write replaced before it was
    /// sent, or cut off by a crash, is made good by the next decision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When a decision last wrote the engagement score: a decayed score alone is written once a
    /// UTC day at most (see `engine::engagement_write_due`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engagement_written_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_digits() {
        assert!(HubSpotId::try_from("123".to_string()).is_ok());
        assert!(HubSpotId::try_from("".to_string()).is_err());
        assert!(HubSpotId::try_from("12a".to_string()).is_err());
    }

    #[test]
    fn snapshot_parses_with_numeric_id_and_null_properties() {
        let s: Snapshot = serde_json::from_str(
            r#"{"contact_id": 42, "properties": {"email": "a@b.co", "phone": null, "n": 3},
                "events": [{"id": "e1", "kind": "page_view", "at": "2026-01-01T00:00:00Z", "url": "/x"}]}"#,
        )
        .unwrap();
        assert_eq!(s.contact_id.as_str(), "42");
        assert_eq!(s.properties.get("n").map(String::as_str), Some("3"));
        assert!(!s.properties.contains_key("phone"));
        assert_eq!(s.state, ContactState::default());
    }

    #[test]
    fn an_event_time_may_be_a_date_and_a_bad_one_names_the_field() {
        let s: Snapshot = serde_json::from_str(
            r#"{"contact_id": "1", "events": [{"id": "e", "kind": "page_view", "at": "2026-11-01"}]}"#,
        )
        .unwrap();
        assert_eq!(s.events[0].at, "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // what was accepted before still is (a one-digit hour, as in examples/snapshots/fan.json)
        let s: Snapshot = serde_json::from_str(
            r#"{"contact_id": "1", "events": [{"id": "e", "kind": "page_view", "at": "2026-11-01T8:00:00Z"}]}"#,
        )
        .unwrap();
        assert_eq!(s.events[0].at, "2026-11-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let err = serde_json::from_str::<Snapshot>(
            r#"{"contact_id": "1", "events": [{"id": "e", "kind": "page_view", "at": "01/11/2026"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("event `at`") && err.contains("2026-11-24T09:00:00Z"),
            "{err}"
        );
    }

    #[test]
    fn a_state_stored_with_the_retired_sla_timers_still_loads_and_drops_them() {
        let st: ContactState = serde_json::from_str(
            r#"{"stage": "mql", "sla": {"first_touch": {"started_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-02T00:00:00Z"}}}"#,
        )
        .unwrap();
        assert_eq!(st.stage, Some(Stage::Mql));
        assert!(!serde_json::to_string(&st).unwrap().contains("sla"));
    }

    #[test]
    fn unknown_event_kind_is_an_error_with_position() {
        let err = serde_json::from_str::<Snapshot>(
            r#"{"contact_id": "1", "events": [{"id": "e", "kind": "tweet", "at": "2026-01-01T00:00:00Z"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("tweet"), "{err}");
        assert_eq!(err.line(), 1);
    }
}
