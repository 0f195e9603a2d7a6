//! Carries out the marketing context writes to Salesforce (`sync::context` decides them): for
//! each pending contact, the mapping's context fields of its Contact and of its current
//! Opportunity whose value differs from what leadsync last wrote (`salesforce_ledger`), sent as
//! sObject Collections updates by id, 200 records a call, inside leadsync's share of the org's
//! daily allocation. Sales' fields are never in them: the mapping refuses a context field that
//! is also written at creation.
//!
//! One pending item per contact (a newer decision replaces its values). What landed is recorded
//! in the ledger in the transaction that marks the item done; a crash in between sends the same
//! values again, an update to what the record already holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::{info, warn};

use crate::lifecycle::HubSpotId;
use crate::salesforce::errors::{Disposition, classify};
use crate::salesforce::mapping::SalesforceContextField;
use crate::salesforce::rest::COLLECTION_MAX;
use crate::store::{OutboxItem, OutboxKind, OutboxState};
use crate::sync::context::ContextValues;
use crate::sync::{SyncError, Syncer};

use super::promotion::HOLD;

/// One record to update: its item's index, sObject, id and the fields that changed.
struct Change {
    item: usize,
    sobject: &'static str,
    id: String,
    fields: BTreeMap<String, Value>,
}

/// Salesforce calls that writing the context of `contacts` contacts costs at most (their first
/// write, every value new): one update per 200 records, a record per object the mapping keeps
/// context on. The dry run's estimate.
pub fn calls(mapping: &crate::salesforce::mapping::SalesforceMapping, contacts: u64) -> u64 {
    let objects = [&mapping.contact_context, &mapping.opportunity_context]
        .iter()
        .filter(|f| !f.is_empty())
        .count() as u64;
    (contacts * objects).div_ceil(COLLECTION_MAX as u64)
}

/// Writes every due context item; returns how many Salesforce records were updated.
pub async fn drain(s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
    let Some(p) = &s.promoter else {
        return Ok(0);
    };
    let objects: [(&'static str, &[SalesforceContextField]); 2] = [
        ("Contact", &p.mapping.contact_context),
        ("Opportunity", &p.mapping.opportunity_context),
    ];
    let per_contact = objects.iter().filter(|(_, f)| !f.is_empty()).count().max(1);
    let mut updated = 0;
    loop {
        let due = s
            .store
            .due(OutboxKind::SalesforceContext, now, COLLECTION_MAX / per_contact)
            .await?;
        if due.is_empty() {
            return Ok(updated);
        }
        let ids: Vec<HubSpotId> = due
            .iter()
            .filter_map(|i| HubSpotId::try_from(i.contact_id.clone()).ok())
            .collect();
        let rows = s.store.contacts(&ids).await?;
        let mut changes: Vec<Change> = Vec::new();
        let mut values: Vec<Option<ContextValues>> = Vec::with_capacity(due.len());
        let mut done: Vec<OutboxItem> = Vec::new();
        let mut active = vec![false; due.len()];
        for (n, item) in due.iter().enumerate() {
            let parsed = serde_json::from_str::<ContextValues>(&item.payload).ok();
            let row = HubSpotId::try_from(item.contact_id.clone())
                .ok()
                .and_then(|id| rows.get(&id));
            match (&parsed, row) {
                (None, _) => {
                    warn!(
                        item = item.id,
                        "a Salesforce context payload that does not parse kept as a dead letter"
                    );
                    s.store
                        .failed(item, "payload does not parse", OutboxState::Dead, now)
                        .await?;
                }
                (Some(_), Some(r)) if r.removed.is_none() && r.state.salesforce.is_some() => {
                    let link = r.state.salesforce.as_ref().expect("checked");
                    active[n] = true;
                    for (sobject, fields) in objects {
                        let id = match sobject {
                            "Contact" => &link.contact_id,
                            _ => &link.opportunity_id,
                        };
                        if let (Some(id), false) = (id, fields.is_empty()) {
                            changes.push(Change {
                                item: n,
                                sobject,
                                id: id.clone(),
                                fields: BTreeMap::new(),
                            });
                        }
                    }
                }
                // Not (or no longer) in Salesforce: nothing to keep current. A promotion that
                // waits (a retry, the review list) gets its context from the next decision that
                // queues it after it lands.
                _ => done.push(item.clone()),
            }
            values.push(parsed);
        }
        let records: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
        let written = s.store.salesforce_written(&records).await?;
        for c in changes.iter_mut() {
            let fields = objects
                .iter()
                .find(|(o, _)| *o == c.sobject)
                .map(|(_, f)| *f)
                .unwrap_or_default();
            if let Some(v) = &values[c.item] {
                c.fields = v.changed(fields, written.get(&c.id));
            }
        }
        changes.retain(|c| !c.fields.is_empty());
        // Items none of whose records changed are done without a call.
        for (n, item) in due.iter().enumerate() {
            if active[n] && !changes.iter().any(|c| c.item == n) {
                done.push(item.clone());
            }
        }
        if changes.is_empty() {
            s.store.save_salesforce_writes(&[], &done, now).await?;
            continue;
        }
        let calls = changes.len().div_ceil(COLLECTION_MAX) as u64;
        if let Err(hold) = p.client.check_budget(calls) {
            warn!(error = %hold, "Salesforce context writes wait: leadsync's share of the allocation");
            s.store.set_cursor(HOLD, &hold.to_string()).await?;
            s.store.save_salesforce_writes(&[], &done, now).await?;
            return Ok(updated);
        }
        let body: Vec<(&str, Value)> = changes
            .iter()
            .map(|c| {
                let mut r = serde_json::Map::new();
                r.insert("Id".into(), Value::String(c.id.clone()));
                r.extend(c.fields.clone());
                (c.sobject, Value::Object(r))
            })
            .collect();
        let results = match p.client.update(&body).await {
            Ok(r) => r,
            Err(e) => {
                // A failed call, a Salesforce limit answer included (a concurrency limit passes
                // in seconds), backs off as a refused record does: 30 s, doubling per attempt.
                // leadsync's own share of the allocation is checked before the call (above).
                for c in &changes {
                    let wait = super::retry_wait(due[c.item].attempts);
                    s.store
                        .failed(&due[c.item], &e.to_string(), OutboxState::Pending, now + wait)
                        .await?;
                }
                s.store.save_salesforce_writes(&[], &done, now).await?;
                if e.is_pause() {
                    return Ok(updated);
                }
                return Err(SyncError::Salesforce(e.to_string()));
            }
        };
        let mut ledger = Vec::new();
        let mut refused: BTreeMap<usize, (String, OutboxState)> = BTreeMap::new();
        for (c, r) in changes.iter().zip(&results) {
            if r.success {
                let fields = c.fields.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                ledger.push((c.id.clone(), due[c.item].contact_id.clone(), fields));
                continue;
            }
            let (code, message) = r
                .errors
                .first()
                .map(|e| (e.error.code.clone(), e.error.message.clone()))
                .unwrap_or_else(|| ("UNKNOWN".into(), "refused without an error".into()));
            let next = match classify(&code) {
                Disposition::Retry | Disposition::Reauthenticate | Disposition::StopForToday => OutboxState::Pending,
                _ => OutboxState::Dead,
            };
            warn!(contact = %due[c.item].contact_id, sobject = c.sobject, code = %code, "Salesforce refused a context write");
            refused.insert(c.item, (format!("{} {}: {code}: {message}", c.sobject, c.id), next));
        }
        for (n, item) in due.iter().enumerate() {
            if changes.iter().any(|c| c.item == n) && !refused.contains_key(&n) {
                done.push(item.clone());
            }
        }
        updated += ledger.len() as u64;
        s.store.save_salesforce_writes(&ledger, &done, now).await?;
        for (n, (why, next)) in refused {
            s.store
                .failed(&due[n], &why, next, now + super::retry_wait(due[n].attempts))
                .await?;
        }
        info!(records = ledger.len(), "Salesforce context kept current");
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    #[test]
    fn a_failed_outbox_item_is_retried_in_seconds_then_less_and_less_often() {
        let waits: Vec<Duration> = (0..8).map(crate::sync::outbox::retry_wait).collect();
        assert_eq!(waits[0], Duration::seconds(30), "the first retry within a minute");
        assert_eq!(waits[1], Duration::seconds(60));
        assert_eq!(waits[6], Duration::minutes(32));
        assert_eq!(waits[7], Duration::minutes(32), "capped");
    }
}
