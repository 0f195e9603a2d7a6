//! Sales touches logged in Salesforce: the Tasks and Events on given Contacts, Accounts and
//! Opportunities changed since a `SystemModstamp` watermark, read to the end of every answer
//! (`nextRecordsUrl` followed by [`SalesforceClient::query`]), as [`Touch`]es for the SLA.
//!
//! As in `feedback`, order is `SystemModstamp` then `Id`; each query starts one second before
//! the watermark (SOQL datetimes have second precision) and what is at or before `(stamp, id)` is
//! dropped here. Each query also stops at `until`, so a record changed while the batches are
//! read is left for the next poll instead of being skipped by a watermark moved past it.
//! Tasks and Events keep a watermark each.
//!
//! Mapping: a Task's kind comes from `TaskSubtype` (`Call`, `Email`), else its `Type` picklist
//! (`Call`, `Email`, `Meeting`); an Event is a meeting unless its `Type` says call or email;
//! anything else is [`EventKind::Task`], which no SLA counts (a list email, a to-do). A call
//! is outbound unless `CallType` is `Inbound`; it connected when the configured field says so, or
//! else when its `CallDisposition` is one of the configured dispositions. The rep is `OwnerId`.
//! The time is an Event's `ActivityDateTime`, and a Task's `CreatedDate`, when it was logged: a
//! Task's `ActivityDate` is a due date with no time of day, so it would put a call logged at
//! 15:00 at midnight, before the clock it should stop had started.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{SalesforceClient, SalesforceError};
use super::feedback::{SalesforceWatermark, parse_stamp};
use super::soql::literal;
use crate::lifecycle::EventKind;
use crate::sla::timer::{System, Touch};

/// Record ids per query: the ids go in two `IN` lists of the query string, which travels in
/// the URL of a GET; 100 keeps it near 5,000 characters.
pub const ACTIVITY_IDS_PER_QUERY: usize = 100;

/// How calls logged in Salesforce say they connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceActivityConfig {
    /// A Task field (a checkbox or text, `Connected__c`) that says the call connected; when it
    /// is set and present it decides. Default: none.
    pub connected_field: Option<String>,
    /// `CallDisposition` values (compared without case) of a connected call. Default: `connected`.
    pub connected_dispositions: Vec<String>,
}

impl Default for SalesforceActivityConfig {
    fn default() -> Self {
        Self {
            connected_field: None,
            connected_dispositions: vec!["connected".into()],
        }
    }
}

/// Task or Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityObject {
    /// A logged call, email or to-do.
    Task,
    /// A meeting on the calendar.
    Event,
}

impl ActivityObject {
    fn name(self) -> &'static str {
        match self {
            ActivityObject::Task => "Task",
            ActivityObject::Event => "Event",
        }
    }
}

/// One Task or Event, as a touch, with the records it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceActivity {
    /// Task or Event.
    pub object: ActivityObject,
    /// `WhoId`: the Contact (or Lead) it is on.
    pub who_id: Option<String>,
    /// `WhatId`: the Account or Opportunity it is on.
    pub what_id: Option<String>,
    /// The touch the SLA reads.
    pub touch: Touch,
    /// `SystemModstamp`.
    pub modstamp: DateTime<Utc>,
}

/// Where the last read of each object stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityWatermarks {
    /// Tasks.
    pub task: Option<SalesforceWatermark>,
    /// Events.
    pub event: Option<SalesforceWatermark>,
}

/// The SOQL for one batch of record ids.
pub fn activities_query(
    object: ActivityObject,
    ids: &[String],
    since: Option<&SalesforceWatermark>,
    until: DateTime<Utc>,
    config: &SalesforceActivityConfig,
) -> String {
    let fields = match object {
        ActivityObject::Task => {
            let mut f = "Id, WhoId, WhatId, OwnerId, TaskSubtype, Type, CallType, CallDisposition, CreatedDate, \
                         SystemModstamp"
                .to_string();
            if let Some(field) = &config.connected_field {
                f.push_str(", ");
                f.push_str(field);
            }
            f
        }
        ActivityObject::Event => {
            "Id, WhoId, WhatId, OwnerId, EventSubtype, Type, ActivityDateTime, CreatedDate, SystemModstamp".to_string()
        }
    };
    let list = ids.iter().map(|i| literal(i)).collect::<Vec<_>>().join(", ");
    let mut soql = format!(
        "SELECT {fields} FROM {} WHERE (WhoId IN ({list}) OR WhatId IN ({list}))",
        object.name()
    );
    if let Some(w) = since {
        let from = w.modstamp - chrono::Duration::seconds(1);
        soql.push_str(&format!(" AND SystemModstamp > {}", from.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    soql.push_str(&format!(
        " AND SystemModstamp <= {} ORDER BY SystemModstamp ASC, Id ASC",
        until.format("%Y-%m-%dT%H:%M:%SZ")
    ));
    soql
}

fn text<'a>(row: &'a Value, field: &str) -> Option<&'a str> {
    row.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn kind_of(word: Option<&str>) -> Option<EventKind> {
    match word?.to_ascii_lowercase().as_str() {
        "call" => Some(EventKind::Call),
        "email" => Some(EventKind::SalesEmail),
        "meeting" => Some(EventKind::Meeting),
        _ => None,
    }
}

/// One row of a Task or Event answer as an activity; `None` without an id or a readable stamp.
pub fn read_activity(
    object: ActivityObject,
    row: &Value,
    config: &SalesforceActivityConfig,
) -> Option<SalesforceActivity> {
    let id = text(row, "Id")?.to_string();
    let modstamp = parse_stamp(text(row, "SystemModstamp")?)?;
    let created = text(row, "CreatedDate").and_then(parse_stamp);
    let (kind, at) = match object {
        ActivityObject::Task => {
            let kind = match text(row, "TaskSubtype") {
                Some("Call") => EventKind::Call,
                Some("Email") => EventKind::SalesEmail,
                Some("Task") | None => kind_of(text(row, "Type")).unwrap_or(EventKind::Task),
                Some(_) => EventKind::Task,
            };
            (kind, created)
        }
        ActivityObject::Event => {
            let kind = match kind_of(text(row, "Type")) {
                Some(k @ (EventKind::Call | EventKind::SalesEmail)) => k,
                _ => EventKind::Meeting,
            };
            (kind, text(row, "ActivityDateTime").and_then(parse_stamp).or(created))
        }
    };
    let outbound = !text(row, "CallType").is_some_and(|t| t.eq_ignore_ascii_case("inbound"));
    let by_field = config
        .connected_field
        .as_deref()
        .and_then(|f| row.get(f))
        .and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if !s.is_empty() => Some(!matches!(s.to_ascii_lowercase().as_str(), "false" | "no" | "0")),
            _ => None,
        });
    let by_disposition = text(row, "CallDisposition").is_some_and(|d| {
        config
            .connected_dispositions
            .iter()
            .any(|c| c.eq_ignore_ascii_case(d.trim()))
    });
    Some(SalesforceActivity {
        object,
        who_id: text(row, "WhoId").map(str::to_string),
        what_id: text(row, "WhatId").map(str::to_string),
        touch: Touch {
            system: System::Salesforce,
            id,
            kind,
            at: at.unwrap_or(modstamp),
            outbound,
            connected: kind == EventKind::Call && by_field.unwrap_or(by_disposition),
            by: text(row, "OwnerId").map(str::to_string),
        },
        modstamp,
    })
}

impl SalesforceClient {
    /// Tasks and Events on `records` (Contact, Account or Opportunity ids) changed after the
    /// watermarks and at or before `until`, oldest first per object, each once; with the
    /// watermarks to pass next time (unchanged for an object with nothing new). One query per
    /// object and [`ACTIVITY_IDS_PER_QUERY`] records, every page read.
    pub async fn activities(
        &self,
        records: &[String],
        since: &ActivityWatermarks,
        until: DateTime<Utc>,
        config: &SalesforceActivityConfig,
    ) -> Result<(Vec<SalesforceActivity>, ActivityWatermarks), SalesforceError> {
        let mut out = Vec::new();
        let mut marks = since.clone();
        for object in [ActivityObject::Task, ActivityObject::Event] {
            let from = match object {
                ActivityObject::Task => since.task.as_ref(),
                ActivityObject::Event => since.event.as_ref(),
            };
            let mut found: Vec<SalesforceActivity> = Vec::new();
            for chunk in records.chunks(ACTIVITY_IDS_PER_QUERY) {
                let rows: Vec<Value> = self
                    .query(&activities_query(object, chunk, from, until, config))
                    .await?;
                found.extend(rows.iter().filter_map(|r| read_activity(object, r, config)));
            }
            found.sort_by(|a, b| (a.modstamp, &a.touch.id).cmp(&(b.modstamp, &b.touch.id)));
            // An activity on a Contact and its Opportunity answers in both lists: once.
            found.dedup_by(|a, b| a.touch.id == b.touch.id);
            found.retain(|a| {
                let here = SalesforceWatermark {
                    modstamp: a.modstamp,
                    id: a.touch.id.clone(),
                };
                a.modstamp <= until && from.is_none_or(|s| here > *s)
            });
            if let Some(last) = found.last() {
                let mark = Some(SalesforceWatermark {
                    modstamp: last.modstamp,
                    id: last.touch.id.clone(),
                });
                match object {
                    ActivityObject::Task => marks.task = mark,
                    ActivityObject::Event => marks.event = mark,
                }
            }
            out.extend(found);
        }
        Ok((out, marks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(fields: Value) -> Option<SalesforceActivity> {
        let mut row = json!({"Id": "00T1", "SystemModstamp": "2026-11-25T10:00:00.000+0000",
                             "CreatedDate": "2026-11-25T09:59:00.000+0000", "OwnerId": "005A"});
        row.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        read_activity(ActivityObject::Task, &row, &SalesforceActivityConfig::default())
    }

    #[test]
    fn task_kinds_directions_and_connections() {
        let cases: [(Value, EventKind, bool, bool); 9] = [
            (
                json!({"TaskSubtype": "Call", "CallType": "Outbound", "CallDisposition": "Connected"}),
                EventKind::Call,
                true,
                true,
            ),
            (
                json!({"TaskSubtype": "Call", "CallType": "Outbound", "CallDisposition": "Left voicemail"}),
                EventKind::Call,
                true,
                false,
            ),
            (
                json!({"TaskSubtype": "Call", "CallType": "Inbound", "CallDisposition": "connected"}),
                EventKind::Call,
                false,
                true,
            ),
            (json!({"TaskSubtype": "Email"}), EventKind::SalesEmail, true, false),
            (json!({"TaskSubtype": "ListEmail"}), EventKind::Task, true, false),
            (
                json!({"TaskSubtype": "Task", "Type": "Call"}),
                EventKind::Call,
                true,
                false,
            ),
            (
                json!({"TaskSubtype": "Task", "Type": "Meeting"}),
                EventKind::Meeting,
                true,
                false,
            ),
            (json!({"Type": "Other"}), EventKind::Task, true, false),
            (
                json!({"TaskSubtype": "Email", "CallDisposition": "Connected"}),
                EventKind::SalesEmail,
                true,
                false,
            ),
        ];
        for (fields, kind, outbound, connected) in cases {
            let a = task(fields.clone()).unwrap();
            assert_eq!(
                (a.touch.kind, a.touch.outbound, a.touch.connected),
                (kind, outbound, connected),
                "{fields}"
            );
            assert_eq!(a.touch.by.as_deref(), Some("005A"));
            assert_eq!(
                a.touch.at,
                "2026-11-25T09:59:00Z".parse::<DateTime<Utc>>().unwrap(),
                "CreatedDate"
            );
        }
    }

    #[test]
    fn a_configured_field_decides_whether_a_call_connected() {
        let config = SalesforceActivityConfig {
            connected_field: Some("Connected__c".into()),
            ..Default::default()
        };
        let row = |v: Value| {
            json!({"Id": "00T1", "SystemModstamp": "2026-11-25T10:00:00Z", "TaskSubtype": "Call",
                   "CallDisposition": "Connected", "Connected__c": v})
        };
        let connected = |v| {
            read_activity(ActivityObject::Task, &row(v), &config)
                .unwrap()
                .touch
                .connected
        };
        assert!(!connected(json!(false)), "the field wins over the disposition");
        assert!(connected(json!(true)));
        assert!(connected(Value::Null), "no value: the disposition decides");
        let q = activities_query(ActivityObject::Task, &["003A".into()], None, Utc::now(), &config);
        assert!(
            q.contains("CallDisposition, CreatedDate, SystemModstamp, Connected__c FROM Task"),
            "{q}"
        );
    }

    #[test]
    fn events_are_meetings_at_their_start_and_bad_rows_are_skipped() {
        let config = SalesforceActivityConfig::default();
        let e = read_activity(
            ActivityObject::Event,
            &json!({"Id": "00U1", "SystemModstamp": "2026-11-25T10:00:00Z", "ActivityDateTime": "2026-11-26T14:00:00.000+0000",
                    "CreatedDate": "2026-11-25T09:00:00Z", "WhatId": "006X"}),
            &config,
        )
        .unwrap();
        assert_eq!(e.touch.kind, EventKind::Meeting);
        assert_eq!(e.touch.at, "2026-11-26T14:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(e.what_id.as_deref(), Some("006X"));
        let call = read_activity(
            ActivityObject::Event,
            &json!({"Id": "00U2", "SystemModstamp": "2026-11-25T10:00:00Z", "Type": "Call"}),
            &config,
        )
        .unwrap();
        assert_eq!(
            (call.touch.kind, call.touch.at),
            (EventKind::Call, call.modstamp),
            "no time: the stamp"
        );
        assert!(read_activity(ActivityObject::Event, &json!({"Id": "00U3"}), &config).is_none());
        assert!(
            read_activity(
                ActivityObject::Event,
                &json!({"SystemModstamp": "2026-11-25T10:00:00Z"}),
                &config
            )
            .is_none()
        );
    }

    #[test]
    fn the_query_escapes_ids_and_bounds_both_ends() {
        let since = SalesforceWatermark {
            modstamp: "2026-11-25T10:00:00Z".parse().unwrap(),
            id: "00T1".into(),
        };
        let until: DateTime<Utc> = "2026-11-25T11:00:00Z".parse().unwrap();
        let q = activities_query(
            ActivityObject::Event,
            &["003A".into(), "x' OR Id != '".into()],
            Some(&since),
            until,
            &SalesforceActivityConfig::default(),
        );
        assert_eq!(
            q,
            "SELECT Id, WhoId, WhatId, OwnerId, EventSubtype, Type, ActivityDateTime, CreatedDate, SystemModstamp FROM Event \
             WHERE (WhoId IN ('003A', 'x\\' OR Id != \\'') OR WhatId IN ('003A', 'x\\' OR Id != \\'')) \
             AND SystemModstamp > 2026-11-25T09:59:59Z AND SystemModstamp <= 2026-11-25T11:00:00Z \
             ORDER BY SystemModstamp ASC, Id ASC"
        );
    }
}
