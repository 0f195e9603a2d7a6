//! The outbox: what a commit queued, carried out. `writeback` writes HubSpot values, 100
//! contacts a call; `promotion` creates the sales-qualified leads in Salesforce and brings their
//! opportunities back; `sla_step` carries out the SLA breach ladder's steps; `owner_alert` tells
//! a contact's owner of a buying signal with a Salesforce Task; `context` keeps the promoted
//! contacts' marketing context current on their Salesforce records.
//!
//! [`Syncer::drain_outbox`] is the one place that carries out the outbox, one drain at a time
//! per process, each HubSpot write and promotion claimed in the store (so two drains, in two
//! replicas, never take the same item), and [`worker`] the one loop that calls it, woken by
//! every commit. The daemon runs it beside its schedules; a one-shot command
//! (`backfill`, `backfill --rescore`) runs it beside its job with
//! [`Syncer::with_outbox_worker`], so both carry out the outbox with the same code.

pub mod context;
pub mod owner_alert;
pub mod promotion;
pub mod sla_step;
pub mod writeback;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::limiter::Priority;
use crate::store::Lapsed;
use writeback::Writes;

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
    /// per process; across processes (replicas on one PostgreSQL store) each item is claimed
    /// ([`Store::claim`](crate::store::Store::claim)), so two drains never take the same one.
    pub async fn drain_outbox(&self, priority: Priority, now: DateTime<Utc>) -> Result<SyncReport, SyncError> {
        self.drain_claimed(priority, now, Lapsed::Expired).await
    }

    /// [`Syncer::drain_outbox`], first taking back the claims that `lapsed`: at a worker's start,
    /// every claim (what a stopped or killed run left `sending`).
    async fn drain_claimed(
        &self,
        priority: Priority,
        now: DateTime<Utc>,
        lapsed: Lapsed,
    ) -> Result<SyncReport, SyncError> {
        let _held = self.drain_lock.lock().await;
        let mut report = SyncReport::default();
        if let Some(p) = &self.promoter {
            // Promotions first, then the HubSpot writes: a promoted contact's values go out with
            // its Salesforce ids in one update (both are outbox items until written, so a crash
            // between the promotion and the write-back loses neither), and a form's path to its
            // Opportunity waits for no HubSpot write. A promotion queued while this drain wrote
            // (a backfill's next block) holds its contact's values back for the next drain, which
            // its commit rang for; one that waits for Salesforce (failed, retried later, or
            // paused) holds nothing back.
            let promoted = p.drain(self, now, lapsed).await;
            let token = p.keep_rotated_token(self).await;
            let hold = match &promoted {
                Ok((_, paused)) => !paused,
                Err(_) => false,
            };
            let writes = if hold { Writes::BesidePromotions } else { Writes::All };
            report.written = writeback::drain(self, priority, now, writes, lapsed).await?;
            token?;
            report.promoted = promoted?.0;
            // After the promotions, so that a contact promoted just now has its records.
            let context = context::drain(self, now).await;
            p.keep_rotated_token(self).await?;
            report.context_written = context?;
        } else {
            report.written = writeback::drain(self, priority, now, Writes::All, lapsed).await?;
        }
        // Buying-signal alerts: Salesforce Tasks only, nothing queued after them.
        report.alerted = owner_alert::drain(self, now).await?;
        // The SLA ladder's steps; a reassignment or a rejection queues HubSpot writes.
        if sla_step::drain(self, priority, now).await? > 0 {
            report.written += writeback::drain(self, priority, now, Writes::All, Lapsed::Expired).await?;
        }
        Ok(report)
    }
}

impl Syncer {
    /// Runs a one-shot command's `job` with the outbox worker beside it, in the same task (a
    /// command aborted or killed stops both): the job's commits wake the worker as they wake the
    /// daemon's, what an earlier run left pending goes first, and once the job is done the
    /// worker drains a last time. Every drain is at the command's `now`, as its decisions are.
    /// Returns the job's result and what the worker carried out; a failure of the last drain is
    /// the command's error (its items stay in the outbox).
    pub async fn with_outbox_worker<T>(
        &self,
        now: DateTime<Utc>,
        job: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<(T, SyncReport), SyncError> {
        let (stop, stopped) = watch::channel(false);
        let job = async move {
            let out = job.await;
            let _ = stop.send(true);
            out
        };
        let (out, drained) = tokio::join!(job, worker(self.clone(), stopped, move || now));
        Ok((out?, drained?))
    }
}

/// How long an outbox item waits after its `attempts`-th failed try (a call that failed, a
/// record refused for a reason that may pass): 30 s, doubling with each attempt, at most 32 min.
pub(crate) fn retry_wait(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(30 * (1 << attempts.min(6)))
}

/// The outbox worker: drains at start (what a stopped or crashed run left pending), then whenever
/// woken, until `stop` turns true, then once more so that what the last jobs queued is carried
/// out before the process exits. A failed drain while running leaves its items in the outbox for
/// the next wake; the last drain's failure is returned. Returns what it carried out. Each drain
/// is at `clock()` (the daemon's: `Utc::now`).
pub async fn worker(
    syncer: Syncer,
    mut stop: watch::Receiver<bool>,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<SyncReport, SyncError> {
    let wake = syncer.outbox.clone();
    wake.wake(Priority::Background);
    let mut done = SyncReport::default();
    // The first drain takes back every claim: what a stopped or killed run left `sending`.
    let mut lapsed = Lapsed::Every;
    loop {
        let priority = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            p = wake.woken() => p,
        };
        let drained = syncer.drain_claimed(priority, clock(), lapsed).await;
        lapsed = Lapsed::Expired;
        match drained {
            Ok(r) => {
                logged(&r, "outbox drained");
                done.add(&r);
            }
            Err(e) => warn!(error = %e, "outbox not fully drained; its items wait for the next wake"),
        }
    }
    let last = syncer.drain_claimed(Priority::Background, clock(), lapsed).await?;
    logged(&last, "outbox drained at stop");
    done.add(&last);
    Ok(done)
}

fn logged(r: &SyncReport, done: &str) {
    if r.written + r.promoted + r.context_written > 0 {
        info!(
            written = r.written,
            promoted = r.promoted,
            context = r.context_written,
            "{done}"
        );
    }
}
