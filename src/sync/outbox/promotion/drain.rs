//! The outbox of promotions: due items to Salesforce, 200 a batch, each outcome saved in one
//! transaction.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::routing::{known_owners, roster};
use super::{HOLD, PROMOTION_BATCH, Promoter, ROUND_ROBIN};
use crate::lifecycle::HubSpotId;
use crate::salesforce::mapping::SalesforceSource;
use crate::salesforce::promote::{PromotionInput, PromotionOutcome};
use crate::salesforce::routing::Hours;
use crate::store::{Lapsed, OutboxItem, OutboxKind, OutboxState, Promoted};
use crate::sync::decide::{PromotePayload, WritePayload};
use crate::sync::{SyncError, Syncer};

impl Promoter {
    /// Promotes what is due, 200 a batch; returns how many contacts were promoted. A pause
    /// (the org's allocation or leadsync's share spent) leaves the rest in the outbox and says
    /// why in `leadsync status`. Promotions whose claim `lapsed` (cut off by a crash) are queued
    /// again first: promoting twice updates the same records by their external ids. Returns
    /// how many were promoted, and whether the rest wait for Salesforce (a pause).
    pub async fn drain(&self, s: &Syncer, now: DateTime<Utc>, lapsed: Lapsed) -> Result<(u64, bool), SyncError> {
        let cut_off = s.store.reclaim(OutboxKind::Promote, lapsed, now).await?;
        s.store.release(&cut_off, now).await?;
        let mut promoted = 0;
        loop {
            // Claimed: another drain on the store (another replica's) skips them.
            let due = s.store.claim(OutboxKind::Promote, now, PROMOTION_BATCH).await?;
            if due.is_empty() {
                s.store.clear_cursor(HOLD).await?;
                return Ok((promoted, false));
            }
            let mut inputs = Vec::with_capacity(due.len());
            let mut items: Vec<&OutboxItem> = Vec::with_capacity(due.len());
            for item in &due {
                let parsed = serde_json::from_str::<PromotePayload>(&item.payload)
                    .ok()
                    .zip(HubSpotId::try_from(item.contact_id.clone()).ok());
                let Some((p, id)) = parsed else {
                    s.store
                        .failed(item, "payload does not parse", OutboxState::Dead, now)
                        .await?;
                    continue;
                };
                inputs.push(PromotionInput {
                    contact_id: id,
                    contact: p.contact,
                    company_id: p.company_id,
                    company: p.company,
                    cycle: p.cycle,
                    owner_email: None,
                    owners: Default::default(),
                });
                items.push(item);
            }
            let prepared = async {
                self.owner_emails(s, &mut inputs, now).await?;
                known_owners(&s.store, &s.sla, &mut inputs).await?;
                Ok::<_, SyncError>(roster(&s.store, &s.sla, now, Hours::Ignored).await?)
            };
            let mut roster = match prepared.await {
                Ok(r) => r,
                Err(e) => {
                    // Nothing was sent: the claims go back as they were.
                    let claimed: Vec<OutboxItem> = items.iter().map(|i| (*i).clone()).collect();
                    s.store.release(&claimed, now).await?;
                    return Err(e);
                }
            };
            let outcomes = match self
                .client
                .promote(&self.mapping, &inputs, &mut roster, now.date_naive())
                .await
            {
                Ok(o) => o,
                Err(e) if e.is_pause() => {
                    warn!(error = %e, "promotions wait: Salesforce allocation");
                    s.store.set_cursor(HOLD, &e.to_string()).await?;
                    let claimed: Vec<OutboxItem> = items.iter().map(|i| (*i).clone()).collect();
                    s.store.release(&claimed, now).await?;
                    return Ok((promoted, true));
                }
                Err(e) => {
                    for item in &items {
                        s.store
                            .failed(
                                item,
                                &e.to_string(),
                                OutboxState::Pending,
                                now + crate::sync::outbox::retry_wait(item.attempts),
                            )
                            .await?;
                    }
                    return Err(SyncError::Salesforce(e.to_string()));
                }
            };
            // A store failure while saving outcomes gives the claims not yet settled back
            // (those settled are no longer `sending`, and a release leaves them as they are).
            let saved = async {
                s.store.set_counter(ROUND_ROBIN, roster.position).await?;
                for (item, outcome) in items.iter().zip(outcomes) {
                    match outcome {
                        PromotionOutcome::Promoted {
                            contact_id,
                            link,
                            owner_id,
                            strategy,
                            trace,
                        } => {
                            let mut props = BTreeMap::new();
                            for (k, v) in [
                                ("leadsync_sf_account_id", &link.account_id),
                                ("leadsync_sf_contact_id", &link.contact_id),
                                ("leadsync_sf_opportunity_id", &link.opportunity_id),
                            ] {
                                if let Some(v) = v {
                                    props.insert(k.to_string(), v.clone());
                                }
                            }
                            props.insert("leadsync_sf_owner_id".into(), owner_id.clone());
                            let payload = WritePayload {
                                properties: props,
                                lifecycle: None,
                            };
                            // Link, write-back and done in one transaction, under the evaluation
                            // lock (an evaluation saving meanwhile would drop the link).
                            let held = s.evaluating().await;
                            s.store
                                .save_promotion(
                                    item,
                                    &Promoted {
                                        contact_id: &contact_id,
                                        link: &link,
                                        owner: &owner_id,
                                        trace: &trace,
                                        write: (
                                            format!("hubspot-sf:{contact_id}"),
                                            serde_json::to_string(&payload).expect("serialisable"),
                                        ),
                                    },
                                    now,
                                )
                                .await?;
                            drop(held);
                            info!(contact = %contact_id, owner = %owner_id, strategy = %strategy, "promoted to Salesforce");
                            metrics::counter!("leadsync_promotions_total", crate::sync::portal::metric_labels())
                                .increment(1);
                            promoted += 1;
                        }
                        PromotionOutcome::Review { reason, .. } => {
                            s.store.failed(item, &reason, OutboxState::Review, now).await?;
                        }
                        PromotionOutcome::DeadLetter { code, message, .. } => {
                            s.store
                                .failed(item, &format!("{code}: {message}"), OutboxState::Dead, now)
                                .await?;
                        }
                        PromotionOutcome::Retry { reason, .. } => {
                            let wait = crate::sync::outbox::retry_wait(item.attempts);
                            s.store.failed(item, &reason, OutboxState::Pending, now + wait).await?;
                        }
                    }
                }
                Ok::<_, SyncError>(())
            };
            if let Err(e) = saved.await {
                let claimed: Vec<OutboxItem> = items.iter().map(|i| (*i).clone()).collect();
                s.store.release(&claimed, now).await?;
                return Err(e);
            }
        }
    }

    /// Fills each input's HubSpot owner's email from the owners cache (read at most hourly),
    /// when the mapping routes by HubSpot owner and the contact has one.
    async fn owner_emails(
        &self,
        s: &Syncer,
        inputs: &mut [PromotionInput],
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        let Some(SalesforceSource::Contact(property)) = &self.mapping.routing.hubspot_owner else {
            return Ok(());
        };
        let owner_of = |i: &PromotionInput| {
            i.contact
                .get(property)
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
        };
        let ids: BTreeSet<String> = inputs.iter().filter_map(owner_of).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let emails = self.owners.emails(&s.hubspot, &ids, now).await?;
        for input in inputs.iter_mut() {
            input.owner_email = owner_of(input).and_then(|o| emails.get(&o).cloned());
        }
        Ok(())
    }
}
