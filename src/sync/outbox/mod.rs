//! The outbox: what a commit queued, carried out. `writeback` writes HubSpot values, 100
//! contacts a call; `promotion` creates the sales-qualified leads in Salesforce and brings their
//! opportunities back; `sla_step` carries out the SLA breach ladder's steps.
//!
//! [`Syncer::drain_outbox`] is the one place that carries out the outbox, one drain at a time
//! per process (two would both take the same items). In the daemon, [`worker`] calls it, woken
//! by every commit and by the schedules' jobs; one-shot commands (`backfill`, `rescore`) call it
//! themselves, as no worker runs there.

pub mod promotion;
pub mod sla_step;
pub mod writeback;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::limiter::Priority;

/// Wakes the outbox worker: a commit queued items, or a job wants due retries carried out.
/// A wake with no worker waiting is kept for the next wait, never lost; a wake for real-time
/// work (a webhook's decisions) makes the next drain real-time, so it is not paused with
/// background work when HubSpot's daily budget runs low.
#[derive(Debug, Clone, Default)]
pub struct OutboxWake(Arc<(Notify, AtomicBool)>);

impl OutboxWake {
    /// Asks the worker for one more drain, at `priority` or higher.
    pub fn wake(&self, priority: Priority) {
        if priority == Priority::RealTime {
            self.0.1.store(true, Ordering::SeqCst);
        }
        self.0.0.notify_one();
    }

    /// Waits for a wake; returns the priority the drain should run at.
    async fn woken(&self) -> Priority {
        self.0.0.notified().await;
        if self.0.1.swap(false, Ordering::SeqCst) {
            Priority::RealTime
        } else {
            Priority::Background
        }
    }
}

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
        // The SLA ladder's steps; a reassignment or a rejection queues HubSpot writes.
        if sla_step::drain(self, priority, now).await? > 0 {
            report.written += writeback::drain(self, priority, now).await?;
        }
        Ok(report)
    }
}

/// The daemon's outbox worker: drains whenever woken, until `stop` turns true, then once more
/// so that what the last jobs queued is carried out before the process exits. A failed drain
/// leaves its items in the outbox for the next wake.
pub async fn worker(syncer: Syncer, mut stop: watch::Receiver<bool>) {
    let wake = syncer.outbox.clone();
    loop {
        let priority = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            p = wake.woken() => p,
        };
        drain(&syncer, priority, "outbox drained").await;
    }
    drain(&syncer, Priority::Background, "outbox drained at stop").await;
}

async fn drain(syncer: &Syncer, priority: Priority, done: &str) {
    match syncer.drain_outbox(priority, Utc::now()).await {
        Ok(r) if r.written + r.promoted > 0 => info!(written = r.written, promoted = r.promoted, "{done}"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "outbox not fully drained; its items wait for the next wake"),
    }
}
