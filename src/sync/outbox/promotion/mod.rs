//! Promotion of sales-qualified leads to Salesforce from the outbox, and the way back:
//! opportunities won or lost in Salesforce reach HubSpot and the engine.
//!
//! A promotion is keyed by contact and SQL cycle in the outbox, and written in Salesforce by
//! upserts on external ids: a crash anywhere between the Salesforce call and the HubSpot
//! write-back makes the next attempt update the same records, never create them again.
//!
//! One job per file: `settings` (wiring from the `[salesforce]` settings and the mapping),
//! `token` (the rotated refresh token kept across restarts), `drain` (the outbox of promotions,
//! each outcome saved in one transaction), `routing` (who can take a lead, from the SLA file's
//! teams and the store) and `feedback` (opportunities back to HubSpot).

mod drain;
mod feedback;
mod routing;
mod settings;
mod token;

use std::sync::Arc;

use crate::salesforce::client::SalesforceClient;
use crate::salesforce::mapping::SalesforceMapping;
use crate::salesforce::promote::fresh_batch_calls;
use crate::sync::owners::OwnersCache;

/// Promotions per Salesforce batch (sObject Collections' limit).
pub const PROMOTION_BATCH: usize = 200;

/// What promoting `n` fresh leads costs, planned the way [`Promoter::drain`] runs it: batches
/// of [`PROMOTION_BATCH`], each costing what the Salesforce client's own budget check counts
/// ([`fresh_batch_calls`]). The Salesforce ids a promotion writes back to HubSpot cost no call
/// of their own: the drain promotes before it writes, so they go out with the promoted
/// contact's values (which its move to SQL queued) in the same update.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromotionCost {
    /// Salesforce calls.
    pub salesforce_calls: u64,
}

impl PromotionCost {
    /// The cost of promoting `n` leads new to Salesforce.
    pub fn of(n: u64) -> PromotionCost {
        let batch = PROMOTION_BATCH as u64;
        let full = n / batch;
        let rest = (n % batch) as usize;
        PromotionCost {
            salesforce_calls: full * fresh_batch_calls(PROMOTION_BATCH) + fresh_batch_calls(rest),
        }
    }
}

/// Store counter holding the round-robin position.
const ROUND_ROBIN: &str = "salesforce.round_robin";
/// Store cursor holding the opportunity feedback watermark (`modstamp ms|id`).
const WATERMARK: &str = "salesforce.opportunities";
/// Store cursor saying why promotions wait, when they do.
pub const HOLD: &str = "salesforce.hold";
/// The system name of Salesforce's row in the store's `refresh_tokens`.
pub const TOKEN_SYSTEM: &str = "salesforce";

/// Salesforce, its mapping, and what leadsync reads for it.
pub struct Promoter {
    /// The client.
    pub client: Arc<SalesforceClient>,
    /// The compiled mapping file.
    pub mapping: SalesforceMapping,
    /// HubSpot owners and their emails, for routing to a contact's HubSpot owner. Who can take
    /// a lead now (caps, absences, hours, fallback) comes from the syncer's one SLA file.
    pub owners: OwnersCache,
}

impl std::fmt::Debug for Promoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter").finish_non_exhaustive()
    }
}

impl Promoter {
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
}
