//! A month of sales on the sandbox's clock: the sandbox's clock stands still and moves in steps;
//! at each step the sales desk (`sandbox::desk`) does what its reps planned, then the daemon's
//! jobs run once at the sandbox's time (`sync::schedule::run_jobs_at`: the incremental sync
//! reading HubSpot, the opportunity feedback reading Salesforce, the SLA sweep, the inbox and
//! the outbox), so every stage entry, timer and touch the report and the status page show went
//! through the product's own path, dated in sandbox time. Deterministic: the same seed, portal
//! and steps give the same store.

use chrono::{DateTime, Duration, Timelike, Utc};

use super::Stack;
use crate::sandbox::desk::{DeskTally, SalesDesk};
use crate::sync::backfill::BackfillOptions;

/// How long a simulated month is and how it moves.
#[derive(Debug, Clone, Copy)]
pub struct MonthOptions {
    /// Days of sandbox time. Default 30.
    pub days: u32,
    /// One step of the clock: the desk acts and the daemon's jobs run once per step. Default 6 h.
    pub step: Duration,
    /// Seed of the desk's choices. Default 42.
    pub seed: u64,
}

impl Default for MonthOptions {
    fn default() -> Self {
        MonthOptions {
            days: 30,
            step: Duration::hours(6),
            seed: 42,
        }
    }
}

/// What a simulated month did.
#[derive(Debug, Clone, Copy)]
pub struct MonthRun {
    /// Sandbox time at the start (the backfill) and at the end.
    pub from: DateTime<Utc>,
    /// The end.
    pub to: DateTime<Utc>,
    /// What the reps did.
    pub desk: DeskTally,
    /// Steps the daemon ran.
    pub steps: u32,
}

impl Stack {
    /// Backfills the portal at the sandbox's time, then runs `opts.days` of sales in steps. The
    /// sandbox must be built with a frozen clock (`SandboxConfig::frozen_clock`), else its time
    /// would also run on its own between steps.
    pub async fn simulate_month(&self, opts: MonthOptions) -> anyhow::Result<MonthRun> {
        anyhow::ensure!(
            self.sandbox.config().frozen_clock,
            "a simulated month needs the sandbox's clock frozen (SandboxConfig::frozen_clock)"
        );
        let from = self.sandbox.now();
        crate::daemon::ensure_setup(&self.syncer, true).await?;
        // Boxed, like each step's jobs below: the pipelined backfill's future is large, and in a
        // debug build a month run on a test thread's 2 MB stack overflowed it.
        Box::pin(self.syncer.with_outbox_worker(from, async {
            Box::pin(self.syncer.backfill(&BackfillOptions::default(), from, |_, _| {}))
                .await
                .map(|_| ())
        }))
        .await?;
        let mut desk = SalesDesk::new(opts.seed);
        // The reps see what the backfill handed them at once, not a step later.
        desk.work(&self.sandbox);
        let to = from + Duration::days(i64::from(opts.days));
        let mut steps = 0;
        while self.sandbox.now() < to {
            let before = self.sandbox.now();
            self.sandbox.advance(opts.step);
            let now = self.sandbox.now();
            desk.work(&self.sandbox);
            // The nightly rescore, at the first step past midnight.
            let nightly = now.date_naive() != before.date_naive() || now.hour() == 0;
            for (job, run) in Box::pin(crate::sync::schedule::run_jobs_at(&self.syncer, now, nightly)).await? {
                if let Some(e) = run.error {
                    anyhow::bail!("simulated month, step at {now}: job {job} failed: {e}");
                }
            }
            steps += 1;
        }
        Ok(MonthRun {
            from,
            to: self.sandbox.now(),
            desk: desk.tally(),
            steps,
        })
    }
}
