//! The pipeline around the engine: pull → decide (pure, `decide`) → one commit → the outbox
//! worker. `Syncer::evaluate_and_commit` is the one place a pulled batch is decided
//! (`decide::decide_batch`: merges, removals, restores and evaluations, one `Plan`) and
//! committed (`Store::commit_plan`, one transaction).
//!
//! ```text
//! incremental (cycle) ─┐
//! inbox (webhooks) ────┼→ pull → decide::decide_batch → Store::commit_plan ─┐
//! backfill (admin) ────┘                                                    ├→ outbox ─┬→ writeback
//! rescore → Store → decide::decide_stored → Store::commit ──────────────────┘          ├→ promotion
//! sla_sweep → Store (timers, touches) → sla::assess → ladder steps in the outbox ──────├→ sla_step
//!                                                                                       └→ context
//! ```
//!
//! Every step saves before it acts: a crash at any point leaves either the old state or the new
//! state with its pending outbox items, never half of one. The commit wakes the outbox worker
//! ([`outbox::worker`], run by [`schedule::run`]); a one-shot command runs the same worker beside
//! its job ([`Syncer::with_outbox_worker`]).

pub mod backfill;
pub mod behaviour;
pub mod context;
pub mod cycle;
pub mod decide;
pub mod followup;
pub mod inbox;
pub mod outbox;
pub mod owners;
pub mod portal;
pub mod schedule;
pub mod sla_sweep;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::hubspot::client::{HubSpotClient, HubSpotError};
use crate::hubspot::limiter::Priority;
use crate::hubspot::types::HubSpotObject;
use crate::lifecycle::{HubSpotId, Rules};
use crate::store::{Evaluated, Removal, Store, StoreError};
pub use decide::MERGED_IDS;
use decide::{PulledContact, decide_batch, stored_ids};

/// Why a sync step stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// HubSpot refused, or asked to pause (daily limit, reserve): the checkpoint is kept.
    #[error(transparent)]
    HubSpot(#[from] HubSpotError),
    /// The store failed: nothing after the last commit happened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Salesforce refused or asked to pause: promotions stay in the outbox.
    #[error("salesforce: {0}")]
    Salesforce(String),
    /// A stored cursor does not parse: guessing a window would lose the changes before it.
    #[error(
        "store cursor `{name}` holds `{value}`, not epoch milliseconds: the incremental cycle stops rather \
         than guess a window and miss older changes; run `leadsync backfill` to read every contact and set it again"
    )]
    CorruptCursor {
        /// The cursor's name.
        name: String,
        /// What it holds.
        value: String,
    },
}

impl SyncError {
    /// True when the job should stop for now and resume later, with nothing lost.
    pub fn is_pause(&self) -> bool {
        matches!(self, SyncError::HubSpot(e) if e.is_pause())
    }
}

/// What one pass did, for logs, the CLI and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Contacts read from HubSpot.
    pub pulled: u64,
    /// Contacts evaluated.
    pub evaluated: u64,
    /// Stage moves, by target stage or kind (`mql`, `sql`, `recycle`, …).
    pub moves: BTreeMap<String, u64>,
    /// Contacts whose HubSpot values were written.
    pub written: u64,
    /// Contacts promoted to Salesforce.
    pub promoted: u64,
    /// Promotions queued (dry runs count here).
    pub promotions_queued: u64,
    /// Buying-signal alerts carried out (Salesforce Tasks made or found for the owner).
    pub alerted: u64,
    /// Salesforce records whose marketing context was updated.
    pub context_written: u64,
}

impl SyncReport {
    fn count(&mut self, batch: &[Evaluated]) {
        self.count_settled(batch.len());
        for e in batch {
            for t in &e.transitions {
                let key = match &t.change {
                    crate::lifecycle::Change::Stage { to, .. } => to.as_str().to_string(),
                    crate::lifecycle::Change::Skipped { .. } => continue,
                    crate::lifecycle::Change::Recycle { .. } => "recycle".into(),
                    crate::lifecycle::Change::Status { to, .. } => format!("status:{}", to.as_str()),
                };
                let mut labels = portal::metric_labels();
                labels.push(metrics::Label::new("to", key.clone()));
                metrics::counter!("leadsync_transitions_total", labels).increment(1);
                *self.moves.entry(key).or_default() += 1;
            }
            self.promotions_queued += e
                .outbox
                .iter()
                .filter(|(k, _, _)| *k == crate::store::OutboxKind::Promote)
                .count() as u64;
        }
    }

    /// Counts `n` evaluations in the report and the metric; [`SyncReport::count`] adds their
    /// transitions and promotions (a rescore counts its settled decisions with this alone).
    fn count_settled(&mut self, n: usize) {
        self.evaluated += n as u64;
        metrics::counter!("leadsync_evaluations_total", portal::metric_labels()).increment(n as u64);
    }

    /// Adds another pass's counts.
    pub fn add(&mut self, other: &SyncReport) {
        self.pulled += other.pulled;
        self.evaluated += other.evaluated;
        for (k, v) in &other.moves {
            *self.moves.entry(k.clone()).or_default() += v;
        }
        self.written += other.written;
        self.promoted += other.promoted;
        self.promotions_queued += other.promotions_queued;
        self.alerted += other.alerted;
        self.context_written += other.context_written;
    }
}

/// How one evaluation pass saves and where it finds form submissions.
pub(crate) struct Pass<'a> {
    /// The checkpoint or cursor saved with the pass: (name, value).
    pub checkpoint: Option<(&'a str, &'a str)>,
    /// Save and write nothing.
    pub dry_run: bool,
    /// Where the contacts' form submissions come from.
    pub forms: behaviour::FormSource<'a>,
    /// Deletions and merges webhooks told (none for a listing, which shows them itself).
    pub told: &'a [Removal],
}

/// Everything a sync step needs, shared by the schedule, the webhook workers and the CLI.
#[derive(Clone)]
pub struct Syncer {
    /// Compiled rules.
    pub rules: Arc<Rules>,
    /// The sales SLA: teams, policies and their ladders (`mappings/sla.toml`).
    pub sla: Arc<crate::sla::SlaFile>,
    /// HTTP client for the SLA ladder's notification webhooks.
    pub(crate) notify: reqwest::Client,
    /// HubSpot.
    pub hubspot: Arc<HubSpotClient>,
    /// State.
    pub store: Store,
    /// Salesforce promotion, when configured.
    pub promoter: Option<Arc<outbox::promotion::Promoter>>,
    /// Contact properties every read asks for.
    pub properties: Vec<String>,
    /// Company properties every read asks for.
    pub company_properties: Vec<String>,
    /// Held from reading stored contacts to saving their evaluation.
    eval_lock: Arc<tokio::sync::Mutex<u64>>,
    /// Held while the outbox is carried out.
    drain_lock: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the outbox worker; every commit rings it.
    pub outbox: outbox::OutboxWake,
    /// Companies read recently (a backfill reads each once).
    companies: Arc<crate::hubspot::pull::CompanyCache>,
    /// Which event-by-event behaviour APIs the portal has.
    pub(crate) sources: behaviour::BehaviourSources,
}

impl Syncer {
    /// A syncer over these parts; `extra` adds properties the Salesforce mapping reads.
    pub fn new(
        rules: Arc<Rules>,
        hubspot: Arc<HubSpotClient>,
        store: Store,
        promoter: Option<Arc<outbox::promotion::Promoter>>,
    ) -> Self {
        let (extra, company_properties) = promoter
            .as_ref()
            .map(|p| (p.contact_properties(), p.company_properties()))
            .unwrap_or_default();
        let mut company_properties: Vec<String> = company_properties;
        for p in ["name", "domain", "country", "numberofemployees", "industry"] {
            if !company_properties.iter().any(|c| c == p) {
                company_properties.push(p.to_string());
            }
        }
        Syncer {
            properties: decide::contact_properties(&rules, &extra),
            rules,
            sla: Arc::new(crate::defaults::embedded_sla()),
            notify: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            hubspot,
            store,
            promoter,
            company_properties,
            eval_lock: Arc::default(),
            drain_lock: Arc::default(),
            outbox: outbox::OutboxWake::default(),
            companies: Arc::default(),
            sources: behaviour::BehaviourSources::default(),
        }
    }

    /// The same syncer, with this SLA file's teams and policies.
    pub fn with_sla(mut self, sla: crate::sla::SlaFile) -> Self {
        self.sla = Arc::new(sla);
        self
    }

    /// The same syncer, reading page views and email events event by event where the portal
    /// has those APIs (instead of from the contact's counters).
    pub fn with_sources(mut self, sources: behaviour::BehaviourSources) -> Self {
        self.sources = sources;
        self
    }

    /// The evaluation lock (held by every part that reads, decides and saves contacts). It
    /// counts its holders: the guard holds this holder's number, so a holder that read ahead
    /// knows whether anyone else held the lock since ([`Syncer::rescore_where`]).
    pub(crate) async fn evaluating(&self) -> tokio::sync::MutexGuard<'_, u64> {
        let mut held = self.eval_lock.lock().await;
        *held += 1;
        held
    }

    /// Pulls engagements and companies of contacts new to leadsync and the behaviour their
    /// records do not tell (IO only), then, under the evaluation lock, reads their stored state
    /// and ledger, decides the batch ([`decide::decide_batch`], pure) and commits the plan with
    /// the pass's checkpoint (nothing is saved on a dry run). Returns the evaluations saved (or
    /// that would be).
    pub(crate) async fn evaluate_and_commit(
        &self,
        contacts: Vec<HubSpotObject>,
        mut fresh: BTreeMap<String, Vec<crate::lifecycle::Event>>,
        priority: Priority,
        now: DateTime<Utc>,
        pass: Pass<'_>,
    ) -> Result<Vec<Evaluated>, SyncError> {
        let Pass {
            checkpoint,
            dry_run,
            forms,
            told,
        } = pass;
        let ids = stored_ids(&contacts, told);
        // Contacts never seen need their whole history and their company, once. Read before
        // taking the lock: HubSpot's answers can take seconds.
        let known = self.store.contacts(&ids).await?;
        let (active, archived): (Vec<HubSpotObject>, Vec<HubSpotObject>) =
            contacts.into_iter().partition(|c| !c.archived);
        let new: Vec<HubSpotObject> = active
            .iter()
            .filter(|c| HubSpotId::try_from(c.id.clone()).is_ok_and(|id| !known.contains_key(&id)))
            .cloned()
            .collect();
        let mut companies = BTreeMap::new();
        if !new.is_empty() {
            let pulled = self
                .hubspot
                .pull_block_cached(new, &self.company_properties, priority, &self.companies)
                .await?;
            for (c, events) in pulled.events {
                fresh.entry(c).or_default().extend(events);
            }
            for (c, company) in pulled.companies {
                companies.insert(c, (company.id.clone(), decide::known_properties(&company)));
            }
        }
        // Form submissions, page views and email events the records do not tell.
        for (c, events) in self.behaviour(&active, &known, forms, priority).await? {
            fresh.entry(c).or_default().extend(events);
        }
        let pulled = self.pulled_contacts(active.into_iter().chain(archived), fresh, companies);
        self.decide_and_commit(pulled, &ids, told, checkpoint, dry_run, priority, now)
            .await
    }

    /// Contacts with the events and company their pull found.
    pub(crate) fn pulled_contacts(
        &self,
        contacts: impl IntoIterator<Item = HubSpotObject>,
        mut events: BTreeMap<String, Vec<crate::lifecycle::Event>>,
        mut companies: BTreeMap<String, (String, BTreeMap<String, String>)>,
    ) -> Vec<PulledContact> {
        contacts
            .into_iter()
            .map(|c| PulledContact {
                counters: self.sources.counters(),
                events: events.remove(&c.id).unwrap_or_default(),
                company: companies.remove(&c.id),
                contact: c,
            })
            .collect()
    }

    /// Under the evaluation lock, reads the stored state and ledger of `ids` (the pulled
    /// contacts and those `told` names), decides the batch ([`decide::decide_batch`], pure) and
    /// commits the plan with `checkpoint` (nothing is saved on a dry run).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decide_and_commit(
        &self,
        pulled: Vec<PulledContact>,
        ids: &[HubSpotId],
        told: &[Removal],
        checkpoint: Option<(&str, &str)>,
        dry_run: bool,
        priority: Priority,
        now: DateTime<Utc>,
    ) -> Result<Vec<Evaluated>, SyncError> {
        // Read, decide and save under one lock, so that no other evaluation in this process
        // (a webhook, the rescore) saves in between and is overwritten by an older state.
        let _held = self.evaluating().await;
        let stored = self.store.contacts(ids).await?;
        let ledger = self.store.events(ids).await?;
        let plan = decide_batch(&self.rules, &self.sla, pulled, told, stored, ledger, now);
        if !dry_run {
            self.store.commit_plan(&plan, checkpoint).await?;
            // What the commit queued is the outbox worker's to carry out.
            self.outbox.wake(priority);
        }
        Ok(plan.evaluated)
    }
}
