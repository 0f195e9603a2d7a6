//! A HubSpot task for a rep, associated with a contact: the SLA ladder's first step ("call this
//! lead now"), made once however often it is attempted.
//!
//! HubSpot's object create has no idempotency key (`objectWriteTraceId` in batch creates only
//! labels errors), so each task carries leadsync's marker, `[leadsync:KEY]`, in its body, and
//! [`HubSpotClient::ensure_task`] looks for a task with that marker among the contact's tasks
//! before creating one. The look-up goes through associations v4 and a batch read, which see a
//! task as soon as it is made (CRM search indexes it seconds later, too late for a retry that
//! follows a lost answer). The create itself is sent once, never retried by the client: when
//! its answer is lost (a timeout, a 5xx), the task may exist, and only the next attempt's
//! look-up can tell; the outbox retries the step, and that attempt finds it or makes it.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::json;

use super::client::{Call, HubSpotClient, HubSpotError};
use super::limiter::{Budget, Priority};
use super::retry::RetryPolicy;
use super::types::HubSpotObject;

/// HubSpot's association type of a task to a contact (the reverse, contact to task, is 203).
pub const TASK_TO_CONTACT: u32 = 204;

/// A task to make for a rep on a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpotTask {
    /// leadsync's key for it (an SLA step's outbox key): the same key is the same task.
    pub key: String,
    /// The HubSpot contact it is on.
    pub contact_id: String,
    /// The HubSpot owner it is for.
    pub owner_id: String,
    /// Its title (`hs_task_subject`).
    pub subject: String,
    /// Its notes (`hs_task_body`); the marker is appended.
    pub body: String,
    /// When it is due (`hs_timestamp`).
    pub due: DateTime<Utc>,
}

/// What [`HubSpotClient::ensure_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTask {
    /// The task's HubSpot id.
    pub id: String,
    /// True when this call made it, false when it was found (an earlier attempt made it).
    pub created: bool,
}

/// The marker a task made for `key` carries in its body.
pub fn task_marker(key: &str) -> String {
    format!("[leadsync:{key}]")
}

impl HubSpotClient {
    /// The task for `task.key` on the contact: found if an earlier attempt made it, created
    /// (associated with the contact, for the owner, not started, high priority) if not. Costs
    /// one association read, one batch read when the contact has tasks, and one create.
    pub async fn ensure_task(&self, task: &HubSpotTask, priority: Priority) -> Result<EnsuredTask, HubSpotError> {
        let marker = task_marker(&task.key);
        if let Some(found) = self.find_task(&task.contact_id, &marker, priority).await? {
            return Ok(EnsuredTask {
                id: found.id,
                created: false,
            });
        }
        let body = json!({
            "properties": {
                "hs_timestamp": task.due.timestamp_millis().to_string(),
                "hs_task_subject": task.subject,
                "hs_task_body": format!("{}\n\n{marker}", task.body),
                "hubspot_owner_id": task.owner_id,
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_task_type": "CALL",
            },
            "associations": [{
                "to": {"id": task.contact_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}],
            }],
        });
        // Sent once: a repeat after a lost answer could make a second task.
        let once = RetryPolicy {
            max_attempts: 1,
            ..self.retry_policy().clone()
        };
        let made: HubSpotObject = self
            .call_with(
                Call {
                    endpoint: "tasks.create",
                    method: Method::POST,
                    path: "/crm/v3/objects/tasks",
                    query: &[],
                    body: Some(&body),
                    budget: Budget::General,
                    priority,
                },
                &once,
            )
            .await?;
        tracing::info!(contact = %task.contact_id, task = %made.id, "HubSpot task created");
        Ok(EnsuredTask {
            id: made.id,
            created: true,
        })
    }

    /// The contact's task whose body carries `marker`, if any.
    async fn find_task(
        &self,
        contact_id: &str,
        marker: &str,
        priority: Priority,
    ) -> Result<Option<HubSpotObject>, HubSpotError> {
        let linked = self
            .associations("contacts", "tasks", &[contact_id.to_string()], priority)
            .await?;
        let ids: Vec<String> = linked.into_values().flatten().collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let tasks = self
            .batch_read("tasks", &ids, &["hs_task_body".to_string()], None, priority)
            .await?;
        Ok(tasks
            .into_iter()
            .find(|t| t.prop("hs_task_body").is_some_and(|b| b.contains(marker))))
    }
}
