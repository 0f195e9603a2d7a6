//! Promotion of sales-qualified leads to Salesforce from the outbox, and the way back:
//! opportunities won or lost in Salesforce reach HubSpot and the engine.
//!
//! A promotion is keyed by contact and SQL cycle in the outbox, and written in Salesforce by
//! upserts on external ids: a crash anywhere between the Salesforce call and the HubSpot
//! write-back makes the next attempt update the same records, never create them again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::evaluate::{PromotePayload, WritePayload, evaluate_stored};
use super::owners::OwnersCache;
use super::{SyncError, Syncer};
use crate::config::Loaded;
use crate::hubspot::limiter::Priority;
use crate::lifecycle::HubSpotId;
use crate::salesforce::auth::SalesforceAuth;
use crate::salesforce::client::{SalesforceClient, SalesforceClientConfig};
use crate::salesforce::feedback::{OpportunityResult, SalesforceWatermark};
use crate::salesforce::mapping::{SalesforceMapping, SalesforceSource};
use crate::salesforce::promote::{PromotionInput, PromotionOutcome, fresh_batch_calls};
use crate::store::{OutboxItem, OutboxKind, OutboxState, Promoted};

/// Promotions per Salesforce batch (sObject Collections' limit).
pub const PROMOTION_BATCH: usize = 200;

/// What promoting `n` fresh leads costs, planned the way [`Promoter::drain`] runs it: batches
/// of [`PROMOTION_BATCH`], each costing what the Salesforce client's own budget check counts
/// ([`fresh_batch_calls`]), then one HubSpot write of the Salesforce ids per promoted contact,
/// 100 contacts a call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromotionCost {
    /// Salesforce calls.
    pub salesforce_calls: u64,
    /// HubSpot batch-update calls writing the Salesforce ids back.
    pub hubspot_write_calls: u64,
}

impl PromotionCost {
    /// The cost of promoting `n` leads new to Salesforce.
    pub fn of(n: u64) -> PromotionCost {
        let batch = PROMOTION_BATCH as u64;
        let full = n / batch;
        let rest = (n % batch) as usize;
        PromotionCost {
            salesforce_calls: full * fresh_batch_calls(PROMOTION_BATCH) + fresh_batch_calls(rest),
            hubspot_write_calls: n.div_ceil(crate::hubspot::types::BATCH_LIMIT as u64),
        }
    }

    /// Adds this cost to a dry run's.
    pub fn add_to(self, costs: &mut super::backfill::Costs) {
        costs.salesforce_calls += self.salesforce_calls;
        costs.hubspot_writes += self.hubspot_write_calls;
    }
}

/// Store counter holding the round-robin position.
const ROUND_ROBIN: &str = "salesforce.round_robin";
/// Store cursor holding the opportunity feedback watermark (`modstamp ms|id`).
const WATERMARK: &str = "salesforce.opportunities";
/// Store cursor saying why promotions wait, when they do.
pub const HOLD: &str = "salesforce.hold";
/// Store cursor holding the latest Salesforce refresh token: with rotation, each refresh
/// returns a new one and invalidates the old, so the configured one is only good once.
pub const REFRESH_TOKEN: &str = "salesforce.refresh_token";
/// Store cursor holding a hash of the configured refresh token the kept one descends from.
const REFRESH_TOKEN_FROM: &str = "salesforce.refresh_token.configured";

/// Salesforce, its mapping, and what leadsync reads for it.
pub struct Promoter {
    /// The client.
    pub client: Arc<SalesforceClient>,
    /// The compiled mapping file.
    pub mapping: SalesforceMapping,
    /// HubSpot owners and their emails, for routing to a contact's HubSpot owner.
    pub owners: OwnersCache,
}

impl std::fmt::Debug for Promoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter").finish_non_exhaustive()
    }
}

fn sources(mapping: &SalesforceMapping) -> Vec<SalesforceSource> {
    let mut all: Vec<SalesforceSource> = mapping
        .account
        .iter()
        .chain(&mapping.contact)
        .chain(&mapping.opportunity)
        .flat_map(|f| f.sources())
        .collect();
    all.extend(mapping.opportunity_name.sources());
    all.extend(
        [
            &mapping.contact_email,
            &mapping.company_domain,
            &mapping.routing.country,
            &mapping.routing.employees,
            &mapping.routing.industry,
        ]
        .into_iter()
        .cloned(),
    );
    all.extend(mapping.routing.hubspot_owner.clone());
    all
}

impl Promoter {
    /// From the `[salesforce]` settings; `None` when no credentials are configured. A refresh
    /// token rotated by an earlier run (kept in the store) wins over the configured one.
    pub async fn from_settings(loaded: &Loaded, store: &crate::store::Store) -> anyhow::Result<Option<Promoter>> {
        let s = &loaded.settings.salesforce;
        if s.client_id.is_none() {
            return Ok(None);
        }
        // The kept token is used only while the configured one is the one it was rotated from:
        // an admin who re-authorises (a new configured token) is not overridden.
        let configured = s.refresh_token.as_ref().map(|t| {
            use secrecy::ExposeSecret;
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(t.expose_secret().as_bytes()))
        });
        let rotated = match (&configured, store.cursor(REFRESH_TOKEN).await?) {
            (Some(hash), Some(saved)) if store.cursor(REFRESH_TOKEN_FROM).await?.as_deref() == Some(hash) => {
                Some(secrecy::SecretString::from(saved))
            }
            (Some(hash), _) => {
                store.set_cursor(REFRESH_TOKEN_FROM, hash).await?;
                store.clear_cursor(REFRESH_TOKEN).await?;
                None
            }
            _ => None,
        };
        let auth = match rotated {
            Some(token) => SalesforceAuth::refresh_token(
                &s.login_url,
                s.client_id.as_deref().unwrap_or_default(),
                s.client_secret.clone(),
                token,
            ),
            None => SalesforceAuth::from_settings(s),
        }
        .context("salesforce credentials")?;
        let client =
            SalesforceClient::new(SalesforceClientConfig::from_settings(s), auth).context("salesforce client")?;
        let path = loaded.resolve(&s.mapping_path);
        let mapping = SalesforceMapping::load(&path).map_err(|d| anyhow::anyhow!("{d}"))?;
        Ok(Some(Promoter {
            client: Arc::new(client),
            mapping,
            owners: OwnersCache::default(),
        }))
    }

    /// Contact properties the Salesforce mapping reads.
    pub fn contact_properties(&self) -> Vec<String> {
        sources(&self.mapping)
            .into_iter()
            .filter_map(|s| match s {
                SalesforceSource::Contact(p) => Some(p),
                SalesforceSource::Company(_) => None,
            })
            .collect()
    }

    /// Company properties the Salesforce mapping reads.
    pub fn company_properties(&self) -> Vec<String> {
        sources(&self.mapping)
            .into_iter()
            .filter_map(|s| match s {
                SalesforceSource::Company(p) => Some(p),
                SalesforceSource::Contact(_) => None,
            })
            .collect()
    }

    /// Saves a refresh token the last refresh rotated, so a restart can still log in.
    pub(crate) async fn keep_rotated_token(&self, s: &Syncer) -> Result<(), SyncError> {
        use secrecy::ExposeSecret;
        if let Some(current) = self.client.auth().current_refresh_token().await {
            let current = current.expose_secret();
            if s.store.cursor(REFRESH_TOKEN).await?.as_deref() != Some(current) {
                s.store.set_cursor(REFRESH_TOKEN, current).await?;
            }
        }
        Ok(())
    }

    /// Ok when a Salesforce token can be had.
    pub async fn ready(&self) -> Result<(), String> {
        self.client.auth().token().await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Salesforce calls made, by endpoint.
    pub fn calls(&self) -> Vec<(String, u64)> {
        self.client
            .stats()
            .calls()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Promotes what is due, 200 a batch; returns how many contacts were promoted. A pause
    /// (the org's allocation or leadsync's share spent) leaves the rest in the outbox and says
    /// why in `leadsync status`.
    pub async fn drain(&self, s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let mut promoted = 0;
        loop {
            let due = s.store.due(OutboxKind::Promote, now, PROMOTION_BATCH).await?;
            if due.is_empty() {
                s.store.clear_cursor(HOLD).await?;
                return Ok(promoted);
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
                });
                items.push(item);
            }
            self.owner_emails(s, &mut inputs, now).await?;
            let mut rr = s.store.counter(ROUND_ROBIN).await?;
            let outcomes = match self
                .client
                .promote(&self.mapping, &inputs, &mut rr, now.date_naive())
                .await
            {
                Ok(o) => o,
                Err(e) if e.is_pause() => {
                    warn!(error = %e, "promotions wait: Salesforce allocation");
                    s.store.set_cursor(HOLD, &e.to_string()).await?;
                    return Ok(promoted);
                }
                Err(e) => {
                    for item in &items {
                        s.store
                            .failed(item, &e.to_string(), OutboxState::Pending, now + Duration::minutes(5))
                            .await?;
                    }
                    return Err(SyncError::Salesforce(e.to_string()));
                }
            };
            s.store.set_counter(ROUND_ROBIN, rr).await?;
            for (item, outcome) in items.iter().zip(outcomes) {
                match outcome {
                    PromotionOutcome::Promoted {
                        contact_id,
                        link,
                        owner_id,
                        strategy,
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
                        metrics::counter!("leadsync_promotions_total").increment(1);
                        promoted += 1;
                    }
                    PromotionOutcome::Review { reason, .. } => {
                        s.store.failed(item, &reason, OutboxState::Review, now).await?;
                    }
                    PromotionOutcome::DeadLetter { code, message, .. } => {
                        metrics::counter!("leadsync_dead_letters_total").increment(1);
                        s.store
                            .failed(item, &format!("{code}: {message}"), OutboxState::Dead, now)
                            .await?;
                    }
                    PromotionOutcome::Retry { reason, .. } => {
                        let wait = Duration::seconds(30 * (1 << item.attempts.min(6)));
                        s.store.failed(item, &reason, OutboxState::Pending, now + wait).await?;
                    }
                }
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

    /// Opportunities of promoted leads changed in Salesforce since the watermark: won makes the
    /// contact a customer, lost sets the lost status; amount and close date reach HubSpot.
    /// Returns how many contacts changed.
    pub async fn poll_opportunities(&self, s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let polled = self.poll(s, now).await;
        // A refresh during the poll may have rotated the token, whatever the poll's outcome.
        self.keep_rotated_token(s).await?;
        let changed = polled?;
        if changed > 0 {
            s.flush(Priority::Background, now).await?;
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
        let mut writes: Vec<(HubSpotId, BTreeMap<String, String>)> = Vec::new();
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
            if c.is_closed {
                props.insert(
                    "leadsync_opportunity_closed_at".into(),
                    c.modstamp.date_naive().to_string(),
                );
            }
            writes.push((c.hubspot_contact_id.clone(), props));
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
            .map(|r| evaluate_stored(&s.rules, r, ledger.get(&r.contact_id).unwrap_or(&empty), now))
            .collect();
        let watermark = next.map(|w| format!("{}|{}", w.modstamp.timestamp_millis(), w.id));
        s.store
            .commit(&batch, watermark.as_deref().map(|w| (WATERMARK, w)))
            .await?;
        drop(held);
        Ok(changes.len() as u64)
    }
}
