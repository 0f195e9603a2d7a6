//! Promotion of sales-qualified leads to Salesforce, from the outbox.

use chrono::{DateTime, Utc};

use super::{SyncError, Syncer};

/// Salesforce calls a batch of `n` promotions costs (lookups, upserts, contact roles), 200 a batch.
pub fn calls_for(n: u64) -> u64 {
    n.div_ceil(200) * 5
}

/// Carries out pending promotions.
#[derive(Debug)]
pub struct Promoter {}

impl Promoter {
    /// From the `[salesforce]` settings; `None` when no credentials are configured.
    pub async fn from_settings(_loaded: &crate::config::Loaded) -> anyhow::Result<Option<Promoter>> {
        Ok(None)
    }

    /// Ok when a Salesforce token can be had.
    pub async fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Salesforce calls made, by endpoint.
    pub fn calls(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Contact properties the Salesforce mapping reads.
    pub fn contact_properties(&self) -> Vec<String> {
        Vec::new()
    }

    /// Company properties the Salesforce mapping reads.
    pub fn company_properties(&self) -> Vec<String> {
        Vec::new()
    }

    /// Reads opportunities changed in Salesforce back into HubSpot.
    pub async fn poll_opportunities(&self, _s: &Syncer, _now: DateTime<Utc>) -> Result<u64, SyncError> {
        Ok(0)
    }

    /// Promotes what is due; returns how many contacts were promoted.
    pub async fn drain(&self, _s: &Syncer, _now: DateTime<Utc>) -> Result<u64, SyncError> {
        Ok(0)
    }
}
