//! Opportunity feedback: won, lost, amounts and close dates from Salesforce to HubSpot (through
//! the outbox) and to the engine (from the store, right away).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Promoter, WATERMARK};
use crate::hubspot::limiter::Priority;
use crate::lifecycle::HubSpotId;
use crate::salesforce::feedback::{OpportunityResult, SalesforceWatermark};
use crate::store::OutboxKind;
use crate::sync::decide::{WritePayload, decide_stored};
use crate::sync::{SyncError, Syncer};

impl Promoter {
    /// Opportunities of promoted leads changed in Salesforce since the watermark: won makes the
    /// contact a customer, lost sets the lost status; amount and close date reach HubSpot.
    /// Returns how many contacts changed.
    pub async fn poll_opportunities(&self, s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let polled = self.poll(s, now).await;
        // A refresh during the poll may have rotated the token, whatever the poll's outcome.
        self.keep_rotated_token(s).await?;
        let changed = polled?;
        if changed > 0 {
            s.outbox.wake(Priority::Background);
        }
        Ok(changed)
    }

    async fn poll(&self, s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let since = s.store.cursor(WATERMARK).await?.and_then(|w| {
            let (ms, id) = w.split_once('|')?;
            Some(SalesforceWatermark {
                modstamp: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
                id: id.to_string(),
            })
        });
        let (changes, next) = self
            .client
            .opportunity_changes(&self.mapping, since.as_ref(), 2_000)
            .await
            .map_err(|e| SyncError::Salesforce(e.to_string()))?;
        if changes.is_empty() {
            return Ok(0);
        }
        let ours = self.client.auth().token().await.ok().and_then(|t| t.user_id);
        let mut writes: Vec<(HubSpotId, BTreeMap<String, String>)> = Vec::new();
        let mut echoes = 0;
        for c in &changes {
            let mut props = BTreeMap::new();
            let status = match c.result() {
                OpportunityResult::Won => "won",
                OpportunityResult::Lost => "lost",
                OpportunityResult::Open => "open",
            };
            props.insert("leadsync_opportunity_status".to_string(), status.to_string());
            if let Some(a) = c.amount {
                props.insert("leadsync_opportunity_amount".into(), format!("{a}"));
            }
            if let Some(d) = c.close_date {
                props.insert("leadsync_opportunity_close_date".into(), d.to_string());
            }
            // leadsync's own context write bumped the record: none of the values read here
            // moved since leadsync brought them back, so it is not a change (and a closed
            // opportunity's close day is not moved to today).
            if own_echo(c, ours.as_deref(), &props, s).await? {
                echoes += 1;
                continue;
            }
            if c.is_closed {
                props.insert(
                    "leadsync_opportunity_closed_at".into(),
                    c.modstamp.date_naive().to_string(),
                );
            }
            writes.push((c.hubspot_contact_id.clone(), props));
        }
        let watermark = next.map(|w| format!("{}|{}", w.modstamp.timestamp_millis(), w.id));
        if writes.is_empty() {
            if let Some(w) = &watermark {
                s.store.set_cursor(WATERMARK, w).await?;
            }
            return Ok(0);
        }
        if echoes > 0 {
            tracing::debug!(
                echoes,
                "opportunities last changed by leadsync's own context write skipped"
            );
        }
        // HubSpot learns it through the outbox; the engine right away, from the store.
        for (id, props) in &writes {
            let payload = WritePayload {
                properties: props.clone(),
                lifecycle: None,
            };
            s.store
                .enqueue(
                    OutboxKind::HubSpotWrite,
                    &format!("hubspot-opp:{id}"),
                    id.as_str(),
                    &serde_json::to_string(&payload).expect("serialisable"),
                    now,
                )
                .await?;
        }
        let held = s.evaluating().await;
        s.store.fold_properties(&writes).await?;
        let ids: Vec<HubSpotId> = writes.iter().map(|(id, _)| id.clone()).collect();
        let rows = s.store.contacts(&ids).await?;
        let ledger = s.store.events(&ids).await?;
        let empty = Vec::new();
        let batch: Vec<_> = rows
            .values()
            .filter(|r| r.removed.is_none())
            .map(|r| decide_stored(&s.rules, &s.sla, r, ledger.get(&r.contact_id).unwrap_or(&empty), now))
            .collect();
        s.store
            .commit(&batch, watermark.as_deref().map(|w| (WATERMARK, w)))
            .await?;
        drop(held);
        Ok(writes.len() as u64)
    }
}

/// True when `c` was last modified by leadsync's integration user (`ours`) and every value the
/// feedback brings back (`props`) is what leadsync already wrote to HubSpot: the record moved
/// only by the context fields leadsync wrote. A rep's change in between shows as a value that
/// differs, and is brought back.
async fn own_echo(
    c: &crate::salesforce::feedback::OpportunityChange,
    ours: Option<&str>,
    props: &BTreeMap<String, String>,
    s: &Syncer,
) -> Result<bool, SyncError> {
    if ours.is_none() || c.last_modified_by.as_deref() != ours {
        return Ok(false);
    }
    for (k, v) in props {
        if !s.store.wrote(&c.hubspot_contact_id, k, v).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
