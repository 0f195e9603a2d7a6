//! Buying-signal alerts to the owner (outbox kind `owner_alert`): when a promoted contact, or
//! one whose opportunity was lost, shows a signal the rules name (`[[signals]]`), a Salesforce
//! Task for the contact's current owner on its Contact, saying what happened and when, due the
//! day of the decision.
//!
//! [`alert_items`] is the pure half, called by `decide` with the signals the evaluation's new
//! events fired: one item per contact, signal and UTC day ([`crate::lifecycle::Signal::key`]),
//! inserted once (the outbox key is unique; a second decision the same day adds nothing, even
//! after the first is done). [`drain`] carries them out: the owner as the store has it now
//! (`Store::owners`, set by the promotion and by an SLA reassignment), the Tasks made once by
//! `SalesforceClient::ensure_tasks` (looked up by key before they are created, so a retry after
//! a lost answer or a crash finds the Task instead of making a second). An alert changes no
//! contact state and writes nothing to HubSpot: it never promotes anyone, and nothing it
//! writes is read back as a change or a sales touch.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::lifecycle::{ContactState, HubSpotId, Signal, Stage, Status};
use crate::salesforce::tasks::{EnsuredTask, SalesforceTask};
use crate::store::{OutboxItem, OutboxKind, OutboxState};
use crate::sync::{SyncError, Syncer};

/// Attempts before a failing alert becomes a dead letter.
const MAX_ATTEMPTS: u32 = 8;

/// Alerts carried out per look-up and create (one query, one collection call).
const BATCH: usize = 100;

/// What an alert needs, frozen when the decision was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    /// The Salesforce Contact the Task goes on.
    pub sf_contact: String,
    /// The signal's id.
    pub signal: String,
    /// The event that fired it.
    pub event_id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The Task's subject and description, as the rules' templates rendered them.
    pub subject: String,
    /// See `subject`.
    pub description: String,
    /// The day the Task is due: the decision's.
    pub due: NaiveDate,
}

/// The alerts a decision asks for (pure): the signals `fired` by its new events, for a contact
/// that was in sales' hands before it (promoted: SQL or further, with a Salesforce Contact) or
/// whose opportunity was lost, keyed once per contact, signal and day.
pub fn alert_items(
    contact: &HubSpotId,
    before: &ContactState,
    after: &ContactState,
    fired: &[Signal],
    at: DateTime<Utc>,
) -> Vec<(OutboxKind, String, String)> {
    let promoted = before.stage >= Some(Stage::Sql) && before.salesforce.is_some();
    let lost = before.status == Status::Lost;
    let sf_contact = after.salesforce.as_ref().and_then(|l| l.contact_id.clone());
    let Some(sf_contact) = sf_contact.filter(|_| promoted || lost) else {
        return Vec::new();
    };
    fired
        .iter()
        .map(|s| {
            let payload = AlertPayload {
                sf_contact: sf_contact.clone(),
                signal: s.signal.clone(),
                event_id: s.event_id.clone(),
                at: s.at,
                subject: s.subject.clone(),
                description: s.description.clone(),
                due: at.date_naive(),
            };
            (
                OutboxKind::OwnerAlert,
                s.key(contact),
                serde_json::to_string(&payload).expect("serialisable"),
            )
        })
        .collect()
}

/// Carries out every due alert; returns how many Tasks were made or found. Without Salesforce
/// configured, alerts wait in the outbox.
pub async fn drain(s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
    let Some(promoter) = s.promoter.as_ref() else {
        return Ok(0);
    };
    let mut done = 0;
    loop {
        let due = s.store.due(OutboxKind::OwnerAlert, now, BATCH).await?;
        if due.is_empty() {
            return Ok(done);
        }
        let ids: Vec<HubSpotId> = due
            .iter()
            .filter_map(|i| HubSpotId::try_from(i.contact_id.clone()).ok())
            .collect();
        let owners = s.store.owners(&ids).await?;
        let mut tasks: Vec<(&OutboxItem, SalesforceTask)> = Vec::new();
        for item in &due {
            let payload = match serde_json::from_str::<AlertPayload>(&item.payload) {
                Ok(p) => p,
                Err(e) => {
                    dead(s, item, &format!("payload does not parse: {e}"), now).await?;
                    continue;
                }
            };
            // A Task is a User's: a queue (00G…) or no owner cannot take one.
            let Some(owner) = owners.get(&item.contact_id).filter(|o| o.starts_with("005")) else {
                let why = match owners.get(&item.contact_id) {
                    Some(o) => format!("the contact's owner {o} is not a Salesforce user"),
                    None => "the contact has no Salesforce owner".to_string(),
                };
                dead(s, item, &why, now).await?;
                continue;
            };
            tasks.push((
                item,
                SalesforceTask {
                    key: item.key.clone(),
                    who_id: payload.sf_contact,
                    owner_id: owner.clone(),
                    subject: payload.subject,
                    description: payload.description,
                    due: payload.due,
                },
            ));
        }
        if tasks.is_empty() {
            continue;
        }
        let batch: Vec<SalesforceTask> = tasks.iter().map(|(_, t)| t.clone()).collect();
        let outcomes = match promoter.client.ensure_tasks(&batch).await {
            Ok(o) => o,
            // The org's allocation or leadsync's share is spent: stop, nothing counted.
            Err(e) if e.is_pause() => return Err(SyncError::Salesforce(e.to_string())),
            Err(e) => {
                let why = e.to_string();
                for (item, _) in &tasks {
                    retry(s, item, &why, now).await?;
                }
                return Ok(done);
            }
        };
        for ((item, task), outcome) in tasks.iter().zip(outcomes) {
            match outcome {
                EnsuredTask::Done { id, created } => {
                    info!(contact = %item.contact_id, task = %id, created, key = %task.key, "owner alert");
                    s.store.done(std::slice::from_ref(*item), now).await?;
                    done += 1;
                }
                EnsuredTask::Retry(why) => retry(s, item, &why, now).await?,
                EnsuredTask::Refused(why) => dead(s, item, &why, now).await?,
            }
        }
    }
}

async fn dead(s: &Syncer, item: &OutboxItem, why: &str, now: DateTime<Utc>) -> Result<(), SyncError> {
    warn!(item = item.id, reason = %why, "an owner alert kept as a dead letter");
    s.store.failed(item, why, OutboxState::Dead, now).await?;
    Ok(())
}

async fn retry(s: &Syncer, item: &OutboxItem, why: &str, now: DateTime<Utc>) -> Result<(), SyncError> {
    let (state, at) = if item.attempts + 1 >= MAX_ATTEMPTS {
        (OutboxState::Dead, now)
    } else {
        (OutboxState::Pending, now + super::retry_wait(item.attempts))
    };
    warn!(item = item.id, reason = %why, "an owner alert failed; it waits for a retry");
    s.store.failed(item, why, state, at).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::EventKind;
    use crate::lifecycle::snapshot::SalesforceLink;

    fn signal(name: &str, at: &str) -> Signal {
        Signal {
            signal: name.into(),
            event_id: "e1".into(),
            kind: EventKind::PageView,
            at: at.parse().unwrap(),
            detail: Some("/pricing".into()),
            away_days: None,
            subject: "s".into(),
            description: "d".into(),
        }
    }

    fn state(stage: Stage, status: Status, sf: Option<&str>) -> ContactState {
        ContactState {
            stage: Some(stage),
            status,
            salesforce: sf.map(|c| SalesforceLink {
                contact_id: Some(c.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_alert_is_for_a_promoted_or_lost_contact_with_a_salesforce_contact_once_a_day() {
        let id = HubSpotId::try_from("9".to_string()).unwrap();
        let at: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        let fired = [signal("pricing_visit", "2026-11-25T10:00:00Z")];
        let promoted = state(Stage::Sql, Status::Active, Some("003A"));
        let lost = state(Stage::Opportunity, Status::Lost, Some("003A"));
        let recycled = state(Stage::Lead, Status::Recycle, Some("003A"));
        #[rustfmt::skip]
        let table = [
            ("promoted", &promoted, &promoted, 1),
            ("lost, recycled by this decision: still its owner's", &lost, &recycled, 1),
            ("recycled before: back with marketing", &recycled, &recycled, 0),
            ("an MQL", &state(Stage::Mql, Status::Active, None), &state(Stage::Mql, Status::Active, None), 0),
            ("reaching SQL now (its promotion is pending)", &state(Stage::Mql, Status::Active, None),
             &state(Stage::Sql, Status::Active, None), 0),
        ];
        for (why, before, after, n) in table {
            let items = alert_items(&id, before, after, &fired, at);
            assert_eq!(items.len(), n, "{why}");
            for (kind, key, payload) in items {
                assert_eq!(kind, OutboxKind::OwnerAlert);
                assert_eq!(key, "signal:9:pricing_visit:2026-11-25", "{why}");
                let p: AlertPayload = serde_json::from_str(&payload).unwrap();
                assert_eq!((p.sf_contact.as_str(), p.due), ("003A", at.date_naive()));
            }
        }
        assert!(
            alert_items(&id, &promoted, &promoted, &[], at).is_empty(),
            "no signal, no alert"
        );
    }
}
