//! Salesforce Tasks leadsync makes for a rep (a buying-signal alert for the Contact's owner),
//! each made once however often it is attempted.
//!
//! A Task cannot carry an external id to upsert by (activity custom fields are not indexed as
//! external ids), so each one carries leadsync's key in a text field, `LeadSync_Key__c`, and
//! [`SalesforceClient::ensure_tasks`] looks the keys up (one query for up to 100 keys) before
//! creating the missing ones (one collection call for up to 200). The create is sent once,
//! never retried by the client: when its answer is lost (a timeout, a 5xx) the Task may exist,
//! and only the next attempt's look-up can tell; the outbox retries the alert, and that attempt
//! finds it or makes it (the same pattern as HubSpot's `ensure_task`).
//!
//! The Task is a to-do (`TaskSubtype` `Task`, `Type` `Other`): never read back as a sales touch
//! by the SLA (`activities`: only calls, emails, meetings and chats count).

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::client::{SalesforceClient, SalesforceError};
use super::errors::{Disposition, classify};
use super::retry::SalesforceRetryPolicy;
use super::soql::literal;

/// The Task field holding leadsync's key (a text field of 80 characters on Activity).
pub const TASK_KEY_FIELD: &str = "LeadSync_Key__c";

/// Keys per look-up query (the list travels in the URL of a GET).
pub const TASK_KEYS_PER_QUERY: usize = 100;

/// A Task to make for a rep on a Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesforceTask {
    /// leadsync's key for it (an alert's outbox key): the same key is the same Task.
    pub key: String,
    /// The Contact it is on (`WhoId`).
    pub who_id: String,
    /// The User it is for (`OwnerId`).
    pub owner_id: String,
    /// `Subject`.
    pub subject: String,
    /// `Description`.
    pub description: String,
    /// `ActivityDate`: the day it is due.
    pub due: NaiveDate,
}

/// What became of one Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnsuredTask {
    /// Made by this call, or found (an earlier attempt made it): its id, and whether it was made now.
    Done {
        /// The Task's id.
        id: String,
        /// True when this call made it.
        created: bool,
    },
    /// Refused; retrying may help (a row lock).
    Retry(String),
    /// Refused for good (a bad owner, a Contact gone): Salesforce's words.
    Refused(String),
}

impl SalesforceTask {
    fn record(&self) -> Value {
        json!({
            "WhoId": self.who_id,
            "OwnerId": self.owner_id,
            "Subject": self.subject,
            "Description": self.description,
            "ActivityDate": self.due.format("%Y-%m-%d").to_string(),
            "Status": "Not Started",
            "Priority": "High",
            "TaskSubtype": "Task",
            "Type": "Other",
            TASK_KEY_FIELD: self.key,
        })
    }
}

/// The look-up of the Tasks already made for these keys.
pub fn tasks_query(keys: &[&str]) -> String {
    let list = keys.iter().map(|k| literal(k)).collect::<Vec<_>>().join(", ");
    format!("SELECT Id, {TASK_KEY_FIELD} FROM Task WHERE {TASK_KEY_FIELD} IN ({list})")
}

impl SalesforceClient {
    /// Each Task of `tasks`, found if an earlier attempt made it, else created; one outcome per
    /// Task, in order. Costs one query per 100 keys and one create per 200 missing Tasks.
    pub async fn ensure_tasks(&self, tasks: &[SalesforceTask]) -> Result<Vec<EnsuredTask>, SalesforceError> {
        let mut out: Vec<Option<EnsuredTask>> = vec![None; tasks.len()];
        for (chunk_at, chunk) in tasks.chunks(TASK_KEYS_PER_QUERY).enumerate() {
            let keys: Vec<&str> = chunk.iter().map(|t| t.key.as_str()).collect();
            let found: Vec<Value> = self.query(&tasks_query(&keys)).await?;
            for (i, t) in chunk.iter().enumerate() {
                let hit = found
                    .iter()
                    .find(|r| r[TASK_KEY_FIELD].as_str() == Some(t.key.as_str()))
                    .and_then(|r| r["Id"].as_str());
                if let Some(id) = hit {
                    out[chunk_at * TASK_KEYS_PER_QUERY + i] = Some(EnsuredTask::Done {
                        id: id.to_string(),
                        created: false,
                    });
                }
            }
        }
        let missing: Vec<usize> = (0..tasks.len()).filter(|i| out[*i].is_none()).collect();
        if !missing.is_empty() {
            let records: Vec<Value> = missing.iter().map(|i| tasks[*i].record()).collect();
            // Sent once: a repeat after a lost answer could make a second Task.
            let once = SalesforceRetryPolicy {
                max_attempts: 1,
                ..self.retry_policy().clone()
            };
            let results = self.create_once("Task", &records, &once).await?;
            for (i, r) in missing.iter().zip(results) {
                out[*i] = Some(match (r.success, r.id) {
                    (true, Some(id)) => EnsuredTask::Done { id, created: true },
                    _ => {
                        let words = r
                            .errors
                            .iter()
                            .map(|e| format!("{}: {}", e.error.code, e.error.message))
                            .collect::<Vec<_>>()
                            .join("; ");
                        let retry = r
                            .errors
                            .iter()
                            .any(|e| matches!(classify(&e.error.code), Disposition::Retry));
                        if retry {
                            EnsuredTask::Retry(words)
                        } else {
                            EnsuredTask::Refused(words)
                        }
                    }
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| EnsuredTask::Retry("no answer for this Task".into())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_up_escapes_keys_and_the_task_is_a_to_do_carrying_its_key() {
        assert_eq!(
            tasks_query(&["signal:1:pricing_visit:2026-11-25", "x' OR Id != '"]),
            "SELECT Id, LeadSync_Key__c FROM Task WHERE LeadSync_Key__c IN \
             ('signal:1:pricing_visit:2026-11-25', 'x\\' OR Id != \\'')"
        );
        let t = SalesforceTask {
            key: "k".into(),
            who_id: "003A".into(),
            owner_id: "005A".into(),
            subject: "s".into(),
            description: "d".into(),
            due: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        };
        let r = t.record();
        assert_eq!(r[TASK_KEY_FIELD], "k");
        assert_eq!(r["ActivityDate"], "2026-11-25");
        assert_eq!(
            (&r["Status"], &r["Priority"], &r["WhoId"], &r["OwnerId"]),
            (&json!("Not Started"), &json!("High"), &json!("003A"), &json!("005A"))
        );
        // Read back by the SLA, it is no touch.
        let row = json!({"Id": "00T1", "SystemModstamp": "2026-11-25T10:00:00Z", "TaskSubtype": r["TaskSubtype"], "Type": r["Type"]});
        let a = super::super::activities::read_activity(
            super::super::activities::ActivityObject::Task,
            &row,
            &Default::default(),
        )
        .unwrap();
        assert!(
            !crate::sla::policy::TOUCH_KINDS.contains(&a.touch.kind),
            "{:?}",
            a.touch.kind
        );
    }
}
