//! The SLA sweep: the contacts with a running SLA timer re-decided from the store, so an
//! overdue first touch shows without waiting for the contact's next change.

use chrono::{DateTime, Utc};

use super::{SyncError, Syncer};
use crate::store::ContactRow;

impl Syncer {
    /// Re-evaluates the contacts with a running SLA timer, so overdue first touches show;
    /// returns how many were evaluated.
    pub async fn sla_sweep(&self, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let running = |r: &ContactRow| r.state.sla.values().any(|t| t.stopped_at.is_none());
        Ok(self.rescore_where(now, false, running).await?.evaluated)
    }
}
