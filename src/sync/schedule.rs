//! The daemon's jobs: incremental sync, nightly rescore, SLA sweep, opportunity feedback, the
//! inbox workers and the outbox worker. A job never overlaps itself; a stop lets the job in
//! flight finish, then the outbox worker drains once more, so cursors and checkpoints are saved
//! and what they queued is carried out before the process exits.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use tokio::sync::{Mutex, Notify, watch};
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{error, info, warn};

use super::portal::PortalScope;
use super::{SyncError, Syncer};
use crate::config::ScheduleSettings;
use crate::hubspot::limiter::Priority;
use crate::store::status::{JobOutcome, JobRun};

/// How far back the first incremental cycle looks when no backfill ever ran.
pub const FIRST_WINDOW: Duration = Duration::days(1);

type JobFn<C = Syncer> = Arc<dyn Fn(C) -> Pin<Box<dyn Future<Output = Result<(), SyncError>> + Send>> + Send + Sync>;

/// A job that skips a tick while its previous run is still going.
struct Guarded<C = Syncer> {
    name: &'static str,
    lock: Arc<Mutex<()>>,
    run: JobFn<C>,
}

impl<C> Guarded<C> {
    fn new(name: &'static str, run: JobFn<C>) -> Self {
        Guarded {
            name,
            lock: Arc::new(Mutex::new(())),
            run,
        }
    }

    /// Runs the job unless its previous run is still going; returns how it ended, or `None`
    /// when it did not run.
    async fn tick(
        name: &'static str,
        lock: Arc<Mutex<()>>,
        run: JobFn<C>,
        context: C,
        clock: &Clock,
    ) -> Option<JobRun> {
        let Ok(_held) = lock.try_lock() else {
            warn!(job = name, "previous run still going; this tick is skipped");
            return None;
        };
        let started = std::time::Instant::now();
        let result = run(context).await;
        let ms = started.elapsed().as_millis() as u64;
        let (outcome, error) = match result {
            Ok(()) => {
                info!(job = name, ms, "job done");
                (JobOutcome::Ok, None)
            }
            Err(e) if e.is_pause() => {
                warn!(job = name, error = %e, "job paused; it resumes from its checkpoint");
                (JobOutcome::Paused, Some(e.to_string()))
            }
            Err(e) => {
                error!(job = name, error = %e, "job failed; the next tick retries");
                (JobOutcome::Failed, Some(e.to_string()))
            }
        };
        Some(JobRun {
            at: clock(),
            ms,
            outcome,
            error,
        })
    }
}

/// The daemon's clock: `Utc::now` under `leadsync run`, the sandbox's in a simulated month.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<Utc> + Send + Sync>;

/// The scheduled jobs, each with its cron expression, deciding at `clock()`.
fn jobs(schedule: &ScheduleSettings, clock: &Clock) -> Vec<(String, Guarded)> {
    let c = clock.clone();
    let sync: JobFn = Arc::new(move |s: Syncer| {
        let now = c();
        Box::pin(async move { s.incremental(now, FIRST_WINDOW).await.map(|_| ()) })
    });
    let c = clock.clone();
    let rescore: JobFn = Arc::new(move |s: Syncer| {
        let now = c();
        Box::pin(async move { s.rescore(now, false).await.map(|_| ()) })
    });
    let c = clock.clone();
    let sla: JobFn = Arc::new(move |s: Syncer| {
        let now = c();
        Box::pin(async move { s.sla_sweep(now).await.map(|_| ()) })
    });
    let c = clock.clone();
    let opportunities: JobFn = Arc::new(move |s: Syncer| {
        let now = c();
        Box::pin(async move {
            match s.promoter.clone() {
                Some(p) => p.poll_opportunities(&s, now).await.map(|_| ()),
                None => Ok(()),
            }
        })
    });
    vec![
        (schedule.sync.clone(), Guarded::new("sync", sync)),
        (schedule.rescore.clone(), Guarded::new("rescore", rescore)),
        (schedule.sla.clone(), Guarded::new("sla", sla)),
        (
            schedule.opportunities.clone(),
            Guarded::new("opportunities", opportunities),
        ),
    ]
}

/// One pass of the daemon at `now`, for a simulated clock that moves in steps (`leadsync
/// demo`'s month): the sync, then the inbox and the outbox drained, the opportunities polled, the
/// SLA swept and the outbox drained again, each job's run recorded as the scheduler records it.
/// `rescore` runs too when asked (the nightly job). The same jobs as [`run`]'s, at a given time.
/// Returns each job's run (a failed job's error is in its run, as on the status page).
pub async fn run_jobs_at(
    syncer: &Syncer,
    now: chrono::DateTime<Utc>,
    rescore: bool,
) -> Result<Vec<(&'static str, JobRun)>, SyncError> {
    let clock: Clock = Arc::new(move || now);
    let mut table: BTreeMap<&'static str, Guarded> = jobs(&ScheduleSettings::default(), &clock)
        .into_iter()
        .map(|(_, g)| (g.name, g))
        .collect();
    let mut order = vec!["sync", "opportunities", "sla"];
    if rescore {
        order.insert(1, "rescore");
    }
    let mut runs = Vec::new();
    for name in order {
        let Some(job) = table.remove(name) else { continue };
        if let Some(ran) = Guarded::tick(name, job.lock.clone(), job.run.clone(), syncer.clone(), &clock).await {
            syncer.store.record_job_run(name, &ran).await?;
            runs.push((name, ran));
        }
        while syncer.drain_inbox(now).await?.1 > 0 {}
        syncer.drain_outbox(Priority::Background, now).await?;
    }
    Ok(runs)
}

/// Runs the schedules and the inbox workers until `stop` turns true.
pub async fn run(
    syncer: Syncer,
    schedule: &ScheduleSettings,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), anyhow::Error> {
    let clock: Clock = Arc::new(Utc::now);
    let jobs = jobs(schedule, &clock);
    // The scheduler runs each job, and the outbox worker runs, in a task of its own: each
    // carries the portal's scope (its log lines' span, its counters' label) in.
    let scope = PortalScope::current();
    let sched = JobScheduler::new().await?;
    let mut locks = Vec::new();
    for (cron, job) in jobs {
        let (name, lock, run) = (job.name, job.lock.clone(), job.run.clone());
        locks.push(job.lock.clone());
        let s = syncer.clone();
        let (clock, scope) = (clock.clone(), scope.clone());
        let job = Job::new_async(cron.as_str(), move |_, _| {
            let (lock, run, s, clock) = (lock.clone(), run.clone(), s.clone(), clock.clone());
            Box::pin(scope.run(async move {
                let store = s.store.clone();
                // The status page shows each job's last run, kept in the store across restarts.
                if let Some(ran) = Guarded::tick(name, lock, run, s, &clock).await {
                    if let Err(e) = store.record_job_run(name, &ran).await {
                        warn!(job = name, error = %e, "the job's run could not be recorded");
                    }
                }
            }))
        })
        .map_err(|e| {
            anyhow::anyhow!("schedule.{name}: `{cron}` is not a cron expression (sec min hour day month weekday): {e}")
        })?;
        sched.add(job).await?;
    }
    sched.start().await?;
    info!("schedules started");
    // The outbox worker stops after the jobs, so it carries out what the last of them queued.
    let (outbox_stop, outbox_stopped) = watch::channel(false);
    let outbox = tokio::spawn(scope.run(super::outbox::worker(syncer.clone(), outbox_stopped, Utc::now)));

    // What a stopped or killed run's inbox pass had claimed is due again at once.
    match syncer.store.inbox_free_claims().await {
        Ok(0) => {}
        Ok(n) => info!(events = n, "inbox events claimed by a stopped run taken back"),
        Err(e) => warn!(error = %e, "inbox claims of a stopped run not freed; they are due when they run out"),
    }
    // Inbox workers: woken by the intake (on PostgreSQL any replica's, announced through the
    // database), and every two seconds for anything left behind.
    let listening = syncer.store.listen_inbox(wake.clone());
    let inbox_lock = Arc::new(Mutex::new(()));
    locks.push(inbox_lock.clone());
    loop {
        tokio::select! {
            _ = stop.changed() => if *stop.borrow() { break },
            _ = wake.notified() => {},
            _ = tokio::time::sleep(StdDuration::from_secs(2)) => {},
        }
        // Coalesce: events of one form submission arrive together.
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        let _held = inbox_lock.lock().await;
        loop {
            match syncer.drain_inbox(Utc::now()).await {
                Ok((_, 0)) => break,
                Ok(_) => continue,
                Err(e) => {
                    warn!(error = %e, "inbox pass failed; the events stay in the inbox");
                    tokio::time::sleep(StdDuration::from_secs(1)).await;
                    break;
                }
            }
        }
    }

    drop(listening);
    info!("stopping: letting jobs in flight finish");
    let mut sched = sched;
    sched.shutdown().await?;
    for l in &locks {
        let _ = l.lock().await;
    }
    let _ = outbox_stop.send(true);
    if let Err(e) = outbox.await? {
        warn!(error = %e, "the outbox's last drain failed; its items wait for the next start");
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tick_while_the_previous_run_is_going_is_skipped() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let job: Guarded<()> = Guarded::new(
            "slow",
            Arc::new(move |()| {
                let counted = counted.clone();
                Box::pin(async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(StdDuration::from_secs(60)).await;
                    Ok(())
                })
            }),
        );
        let clock: Clock = Arc::new(Utc::now);
        let first = tokio::spawn({
            let clock = clock.clone();
            let (lock, run) = (job.lock.clone(), job.run.clone());
            async move { Guarded::tick(job.name, lock, run, (), &clock).await }
        });
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        let second = Guarded::tick(job.name, job.lock.clone(), job.run.clone(), (), &clock).await;
        assert!(second.is_none(), "the second tick must not start while the first runs");
        assert_eq!(first.await.unwrap().map(|r| r.outcome), Some(JobOutcome::Ok));
        assert!(
            Guarded::tick(job.name, job.lock.clone(), job.run.clone(), (), &clock)
                .await
                .is_some(),
            "runs again once free"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    /// Log lines as JSON, kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
        }
    }

    // README (Many portals): "the jobs' log lines carry the portal, in the scheduler's tasks too"
    // A current-thread runtime: the scheduler's tasks run on this thread, under this subscriber.
    #[tokio::test]
    async fn a_portal_s_jobs_log_in_its_span_inside_the_tasks_the_scheduler_spawns() {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(logs.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::config::Settings::default();
        settings.store.url = format!("sqlite://{}", dir.path().join("s.db").display());
        settings.hubspot.private_app_token = Some(secrecy::SecretString::from("pat-test"));
        settings.hubspot.api_base_url = "http://127.0.0.1:9".into();
        let loaded = crate::config::Loaded { settings, file: None };
        let syncer = crate::daemon::syncer(&loaded).await.unwrap();
        // Only the opportunities job, every second: with no Salesforce it is done at once.
        let never = "0 0 0 1 1 *".to_string();
        let schedule = ScheduleSettings {
            sync: never.clone(),
            rescore: never.clone(),
            sla: never,
            opportunities: "* * * * * *".into(),
        };
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(
            PortalScope::new(Some("42"))
                .run(async move { run(syncer, &schedule, Arc::new(Notify::new()), stopped).await }),
        );
        let job_done =
            |v: &serde_json::Value| v["fields"]["job"] == "opportunities" && v["fields"]["message"] == "job done";
        let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
        while !logs.lines().iter().any(job_done) {
            // Another test of this binary may meet the same callsites while this subscriber is
            // being set: the interest tracing caches for them is asked again.
            tracing::callsite::rebuild_interest_cache();
            assert!(
                std::time::Instant::now() < deadline,
                "the job ran within 20 s: {:?}",
                logs.lines()
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        running.await.unwrap().unwrap();
        let lines = logs.lines();
        let in_portal = |v: &serde_json::Value| {
            v["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "portal" && s["portal"] == "42"))
        };
        let job = lines.iter().find(|v| job_done(v)).unwrap();
        assert!(in_portal(job), "the job's line names its portal: {job}");
        let started = lines
            .iter()
            .find(|v| v["fields"]["message"] == "schedules started")
            .expect("the scheduler started");
        assert!(in_portal(started), "{started}");
    }
}
