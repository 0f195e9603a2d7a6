//! The outbox: what a commit queued, carried out. `writeback` writes HubSpot values, 100
//! contacts a call; `promotion` creates the sales-qualified leads in Salesforce and brings their
//! opportunities back.
//!
//! [`Syncer::drain_outbox`] carries out the outbox, one drain at a time per process (two would
//! both take the same items).

pub mod promotion;
pub mod writeback;

use chrono::{DateTime, Utc};

use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::limiter::Priority;

impl Syncer {
    /// Carries out pending HubSpot writes and promotions until none is due. One drain at a time
    /// per process: two would both take the same items.
    pub async fn drain_outbox(&self, priority: Priority, now: DateTime<Utc>) -> Result<SyncReport, SyncError> {
        let _held = self.drain_lock.lock().await;
        let mut report = SyncReport {
            written: writeback::drain(self, priority, now).await?,
            ..SyncReport::default()
        };
        if let Some(p) = &self.promoter {
            let promoted = p.drain(self, now).await;
            p.keep_rotated_token(self).await?;
            report.promoted = promoted?;
            // Promotions write Salesforce ids back to HubSpot.
            report.written += writeback::drain(self, priority, now).await?;
        }
        Ok(report)
    }
}
