//! Wiring: settings in, running parts out. `leadsync run`, `backfill`, `status` and `demo` all
//! build their parts here, so every command sees the same store, rules and clients.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::config::{Loaded, ScheduleSettings};
use crate::hubspot::auth::HubSpotAuth;
use crate::hubspot::client::{HubSpotClient, HubSpotClientConfig};
use crate::replica::Replica;
use crate::server::{AppState, Application};
use crate::store::{Store, StoreError, redact_url};
use crate::sync::Syncer;
use crate::sync::outbox::promotion::Promoter;
use crate::sync::portal::PortalScope;

/// How a command opens the configured store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOpening {
    /// Create the SQLite file and the schema when missing: `backfill` (how a new portal comes
    /// in), `demo`, `run --init-store`.
    CreateIfMissing,
    /// The store must exist already: `run` without `--init-store`, `status`. A deleted file or
    /// an empty database is refused instead of starting an empty store.
    MustExist,
}

/// The configured store, with the configuration's inbox retention.
pub async fn store(loaded: &Loaded, opening: StoreOpening) -> anyhow::Result<Store> {
    let settings = &loaded.settings.store;
    let opened = match opening {
        StoreOpening::CreateIfMissing => Store::create_or_open(&settings.url).await,
        StoreOpening::MustExist => Store::open_existing(&settings.url).await,
    };
    let store = match opened {
        Ok(s) => s,
        // Already names the store and what is missing; the command says what to run.
        Err(e @ StoreError::Missing { .. }) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "store {}: fix store.url (or LEADSYNC__STORE__URL); `leadsync status` opens the store alone to try it",
                redact_url(&settings.url)
            )));
        }
    };
    Ok(store.with_inbox_retention(settings.inbox_retention()))
}

/// The store, rules and clients of one configuration, the store created when missing (see
/// [`syncer_opening`]).
pub async fn syncer(loaded: &Loaded) -> anyhow::Result<Syncer> {
    syncer_opening(loaded, StoreOpening::CreateIfMissing).await
}

/// The store, rules and clients of one configuration, the store opened as `opening` says.
pub async fn syncer_opening(loaded: &Loaded, opening: StoreOpening) -> anyhow::Result<Syncer> {
    let want = crate::defaults::Want::Configured {
        path: loaded.rules_path(),
        how: "rules.path".into(),
    };
    let (rules, origin) = crate::defaults::rules(&want).map_err(|d| anyhow::anyhow!("{d}"))?;
    info!(rules = %rules.stamp(), file = %origin, "rules loaded");
    let hs = &loaded.settings.hubspot;
    let auth = HubSpotAuth::from_settings(hs).context("hubspot credentials")?;
    let cfg = HubSpotClientConfig::from_settings(hs).context("hubspot.api_base_url")?;
    let hubspot = HubSpotClient::new(cfg, auth).context("hubspot client")?;
    let store = store(loaded, opening).await?;
    let promoter = Promoter::from_settings(loaded, &store).await?.map(Arc::new);
    if promoter.is_none() {
        warn!("no Salesforce credentials: sales-qualified leads wait in the outbox until they are configured");
    }
    let sources = crate::sync::behaviour::BehaviourSources {
        event_analytics: hs.event_analytics,
        email_events: hs.email_events,
    };
    // The sales SLA: `rules.sla_path` (`mappings/sla.toml` beside the configuration), else the
    // embedded default (the same file `leadsync check` checks).
    let (sla, sla_origin) =
        crate::defaults::sla(&crate::defaults::Want::Default(loaded.sla_path())).map_err(|d| anyhow::anyhow!("{d}"))?;
    info!(sla = %sla.version, file = %sla_origin, "sales SLA loaded");
    Ok(Syncer::new(Arc::new(rules), Arc::new(hubspot), store, promoter)
        .with_sources(sources)
        .with_sla(sla))
}

/// Checks that the HubSpot properties leadsync writes exist (two calls); with `apply`, creates
/// the missing ones, else says how to.
pub async fn ensure_setup(syncer: &Syncer, apply: bool) -> anyhow::Result<()> {
    let plan = syncer.hubspot.plan_setup(&syncer.rules).await?;
    if plan.create.is_empty() && !plan.create_group {
        return Ok(());
    }
    if apply {
        syncer.hubspot.apply_setup(&plan).await?;
        info!(created = plan.create.len(), "HubSpot properties created");
        return Ok(());
    }
    let names: Vec<&str> = plan.create.iter().map(|p| p.name.as_str()).collect();
    anyhow::bail!(
        "{} HubSpot propert(ies) leadsync writes are missing ({}): run `leadsync setup --apply` first",
        names.len(),
        names.join(", ")
    )
}

/// The webhook server's state for a syncer.
pub fn app_state(loaded: &Loaded, syncer: &Syncer, wake: Arc<Notify>) -> AppState {
    app_state_of(loaded, syncer, wake, None)
}

/// [`app_state`] of a replica, whose status page says whether it holds the portal's lease.
fn app_state_of(loaded: &Loaded, syncer: &Syncer, wake: Arc<Notify>, replica: Option<&Replica>) -> AppState {
    let hubspot = syncer.hubspot.clone();
    let promoter = syncer.promoter.clone();
    let stats_hs = syncer.hubspot.clone();
    let stats_sf = syncer.promoter.clone();
    let (budget_hs, budget_sf) = (syncer.hubspot.clone(), syncer.promoter.clone());
    let server = &loaded.settings.server;
    AppState {
        status: crate::server::status::StatusSources {
            access: crate::server::status::StatusAccess::for_bind(&server.bind, server.status_token.clone()),
            budget: Arc::new(move |now| crate::server::status::ApiBudget {
                hubspot: crate::server::status::HubSpotBudget {
                    leadsync_calls_today: budget_hs.limits().calls_today(now),
                    remaining_today: budget_hs.limits().daily_remaining(now),
                },
                salesforce: budget_sf.as_ref().map(|p| {
                    let usage = p.client.usage();
                    crate::server::status::SalesforceBudget {
                        org_used: usage.map(|u| u.used),
                        org_max: usage.map(|u| u.max),
                        leadsync_calls: p.client.calls_in_window(),
                        leadsync_share_percent: p.client.share().percent,
                    }
                }),
            }),
            replica: replica.map(|r| (r.id.clone(), r.portal.clone())),
        },
        store: syncer.store.clone(),
        client_secret: loaded.settings.hubspot.client_secret.clone(),
        public_base_url: loaded.settings.server.public_base_url.clone(),
        wake,
        ready: Arc::new(move || {
            let hubspot = hubspot.clone();
            let promoter = promoter.clone();
            Box::pin(async move {
                hubspot
                    .auth()
                    .token()
                    .await
                    .map_err(|e| format!("hubspot token: {e}"))?;
                if let Some(p) = promoter {
                    p.ready().await.map_err(|e| format!("salesforce token: {e}"))?;
                }
                Ok(())
            })
        }),
        extra_metrics: Arc::new(move || {
            let mut out = String::from("# TYPE leadsync_api_calls_total counter\n");
            for (endpoint, n) in stats_hs.stats().calls() {
                out.push_str(&format!(
                    "leadsync_api_calls_total{{system=\"hubspot\",endpoint=\"{endpoint}\"}} {n}\n"
                ));
            }
            if let Some(p) = &stats_sf {
                for (endpoint, n) in p.calls() {
                    out.push_str(&format!(
                        "leadsync_api_calls_total{{system=\"salesforce\",endpoint=\"{endpoint}\"}} {n}\n"
                    ));
                }
            }
            out.push_str(&format!(
                "# TYPE leadsync_hubspot_rate_limited_total counter\nleadsync_hubspot_rate_limited_total {}\n",
                stats_hs.stats().rate_limited()
            ));
            // Token requests: a count climbing fast means tokens are refused or expire early.
            out.push_str("# TYPE leadsync_token_requests_total counter\n");
            out.push_str(&format!(
                "leadsync_token_requests_total{{system=\"hubspot\"}} {}\n",
                stats_hs.auth().refresh_count()
            ));
            if let Some(p) = &stats_sf {
                out.push_str(&format!(
                    "leadsync_token_requests_total{{system=\"salesforce\"}} {}\n",
                    p.client.auth().mint_count()
                ));
            }
            out.push_str(&format!(
                "# TYPE leadsync_limiter_wait_seconds_total counter\nleadsync_limiter_wait_seconds_total {}\n",
                stats_hs.limits().waited().as_secs_f64()
            ));
            out
        }),
    }
}

/// `leadsync run`: the webhook server on `server.bind` and, for each portal (`[[portals]]`, or
/// the file's one), its schedules and workers, until `stop` turns true.
pub async fn run(loaded: &Loaded, portals: Vec<(Loaded, Syncer)>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    Daemon::bind(loaded, portals).await?.run(stop).await
}

/// Each portal's syncer (`Loaded::portals`: the file's one, or each of `[[portals]]`), its
/// store opened as `opening` says; a portal that cannot be built names itself.
pub async fn portal_syncers(loaded: &Loaded, opening: StoreOpening) -> anyhow::Result<Vec<(Loaded, Syncer)>> {
    let portals = loaded.portals();
    let several = portals.len() > 1;
    let mut out = Vec::with_capacity(portals.len());
    for (i, portal) in portals.into_iter().enumerate() {
        let syncer = syncer_opening(&portal, opening).await;
        let syncer = if several {
            let id = portal.settings.hubspot.portal_id.unwrap_or_default();
            syncer.with_context(|| format!("portals[{i}] (HubSpot portal {id})"))?
        } else {
            syncer?
        };
        out.push((portal, syncer));
    }
    Ok(out)
}

/// One portal's work in the daemon: its syncer (clients, budgets, limiter, store), schedules,
/// the wake its webhooks ring and its lease. Portals share nothing else but the listener.
struct Pipeline {
    syncer: Syncer,
    schedule: ScheduleSettings,
    wake: Arc<Notify>,
    replica: Replica,
}

/// The daemon of one configuration, built and not yet running: its webhook server, bound, and
/// each portal's schedules and workers. `leadsync run`, `leadsync demo` and the end-to-end
/// tests run it with [`Daemon::run`].
pub struct Daemon {
    app: Application,
    pipelines: Vec<Pipeline>,
}

impl Daemon {
    /// The daemon listening on `server.bind`, for each portal of `portals` (see
    /// [`portal_syncers`]).
    pub async fn bind(loaded: &Loaded, portals: Vec<(Loaded, Syncer)>) -> anyhow::Result<Daemon> {
        let server = &loaded.settings.server;
        let listener = tokio::net::TcpListener::bind(&server.bind)
            .await
            .with_context(|| format!("server.bind {}", server.bind))?;
        Ok(Daemon::on_portals(loaded, portals, listener))
    }

    /// The daemon of one portal on a listener bound already (the demo's, whose address the
    /// sandbox is told before it starts).
    pub fn on(loaded: &Loaded, syncer: Syncer, listener: tokio::net::TcpListener) -> Daemon {
        Daemon::on_portals(loaded, vec![(loaded.clone(), syncer)], listener)
    }

    /// The daemon of several portals on a listener bound already: one webhook server (the
    /// deployment's `[server]`, from `loaded`) routing each event by its `portalId`, and one
    /// pipeline per portal, each from its own settings.
    pub fn on_portals(loaded: &Loaded, portals: Vec<(Loaded, Syncer)>, listener: tokio::net::TcpListener) -> Daemon {
        let server = &loaded.settings.server;
        let several = portals.len() > 1;
        let mut states = Vec::with_capacity(portals.len());
        let mut pipelines = Vec::with_capacity(portals.len());
        // One process holds at most `max_portals_per_replica` leases: its portals share the slots.
        let slots = loaded
            .settings
            .replicas
            .max_portals_per_replica
            .map(|max| Arc::new(tokio::sync::Semaphore::new(max)));
        let id = crate::replica::replica_id();
        for (portal, syncer) in portals {
            let wake = Arc::new(Notify::new());
            let portal_id = portal.settings.hubspot.portal_id;
            let mut replica = Replica::new(portal_id, loaded.settings.replicas.lease());
            replica.id = id.clone();
            if let Some(slots) = &slots {
                replica = replica.with_slots(slots.clone());
            }
            states.push((
                portal_id.filter(|_| several),
                app_state_of(&portal, &syncer, wake.clone(), Some(&replica)),
            ));
            pipelines.push(Pipeline {
                syncer,
                schedule: portal.settings.schedule.clone(),
                wake,
                replica,
            });
        }
        let app = Application::on_portals(states, listener, server.max_body_bytes).with_limits(server.limits());
        Daemon { app, pipelines }
    }

    /// Where the webhook server listens.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.app.local_addr()
    }

    /// Refuses a second replica on a SQLite store and starting without the HubSpot properties
    /// leadsync writes, then serves webhooks until `stop` turns true; while this replica holds
    /// a portal's lease (see [`crate::replica`]) it also runs that portal's schedules, inbox
    /// workers and outbox worker. At `stop` the work in flight finishes, each outbox is drained
    /// once more, the leases are given up, then the server stops.
    ///
    /// With several portals each runs in a task of its own, and a portal whose HubSpot
    /// properties cannot be checked (an outage, a spent quota, or missing properties) is
    /// checked again every 30 s while the others run; a portal's failure stops them all.
    pub async fn run(self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Daemon { app, pipelines } = self;
        let several = pipelines.len() > 1;
        let mut locks = Vec::new();
        for p in &pipelines {
            locks.push(crate::replica::lock_sqlite(&p.syncer.store)?);
        }
        if !several {
            for p in &pipelines {
                ensure_setup(&p.syncer, false).await?;
            }
        }
        // A portal's failure stops the others and the server: `halt` is `stop`, or a failure.
        let (halt_tx, halt) = watch::channel(false);
        let halt_tx = Arc::new(halt_tx);
        let forward = {
            let (halt_tx, mut stop) = (halt_tx.clone(), stop.clone());
            tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
                let _ = halt_tx.send(true);
            })
        };
        let serving = serve(app, halt.clone());
        let mut running = Vec::new();
        for (p, lock) in pipelines.into_iter().zip(&locks) {
            let label = p.replica.portal.clone();
            let exclusive = lock.is_some();
            // With several portals, the portal's log lines and counters name it, down to the
            // tasks its scheduler spawns (`sync::portal`).
            let scope = PortalScope::new(several.then_some(label.as_str()));
            let work = tokio::spawn(scope.run(p.lead(exclusive, several, halt.clone())));
            running.push((label, work));
        }
        let mut failed = None;
        for (label, work) in running {
            let result = match work.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("the task of portal {label} ended: {e}")),
            };
            if let Err(e) = result {
                let _ = halt_tx.send(true);
                let e = if several {
                    e.context(format!("portal {label}"))
                } else {
                    e
                };
                failed.get_or_insert(e);
            }
        }
        forward.abort();
        let _ = halt_tx.send(true);
        serving.await??;
        drop(locks);
        failed.map_or(Ok(()), Err)
    }

    /// Serves webhooks (into the inbox) until `stop`, with no worker taking them: the webhook
    /// server alone, for tests that drive the inbox themselves or stand for a process that
    /// died before its workers ran.
    pub fn serve(self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<std::io::Result<()>> {
        serve(self.app, stop)
    }
}

impl Pipeline {
    /// The portal's jobs and workers while this replica holds its lease, until `stop`.
    async fn lead(self, exclusive: bool, several: bool, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Pipeline {
            syncer,
            schedule,
            wake,
            mut replica,
        } = self;
        if several {
            // Checked here, not before serving: one portal's outage must not hold the others.
            loop {
                let checked = tokio::select! {
                    r = ensure_setup(&syncer, false) => r,
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                let Err(e) = checked else { break };
                warn!(portal = %replica.portal, error = %format!("{e:#}"), "the portal's HubSpot properties could not be checked: its jobs wait, trying again in 30 s");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {},
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        }
        replica.exclusive = exclusive;
        replica
            .lead(&syncer.store, stop, |fenced, stop| {
                // The holder's jobs and workers write through the store fenced by its lease.
                let mut s = syncer.clone();
                s.store = fenced;
                let (schedule, wake) = (schedule.clone(), wake.clone());
                async move { crate::sync::schedule::run(s, &schedule, wake, stop).await }
            })
            .await
    }
}

fn serve(app: Application, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<std::io::Result<()>> {
    info!(addr = %app.local_addr(), "listening for HubSpot webhooks");
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}

/// A stop signal that turns true on Ctrl-C or SIGTERM.
pub fn stop_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; }, None => std::future::pending().await } } => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("stop requested: finishing the work in flight");
        let _ = tx.send(true);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn loaded(url: String, retention_days: u32) -> Loaded {
        let mut settings = Settings::default();
        settings.store.url = url;
        settings.store.inbox_retention_days = retention_days;
        Loaded { settings, file: None }
    }

    #[tokio::test]
    async fn the_store_keeps_the_configured_inbox_retention_and_must_exist_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let l = loaded(format!("sqlite://{}", db.display()), 30);
        let e = store(&l, StoreOpening::MustExist).await.unwrap_err();
        assert!(
            matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Missing { .. })),
            "{e:#}"
        );
        assert!(!db.exists());
        let created = store(&l, StoreOpening::CreateIfMissing).await.unwrap();
        assert_eq!(created.inbox_retention(), chrono::Duration::days(30));
        let reopened = store(&l, StoreOpening::MustExist).await.unwrap();
        assert_eq!(reopened.inbox_retention(), chrono::Duration::days(30));
    }
}
