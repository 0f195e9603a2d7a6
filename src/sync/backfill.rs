//! `leadsync backfill`: every contact, 100 a page, resumable from a checkpoint saved with each
//! block; and `--rescore`: every stored contact re-evaluated from the store, no HubSpot read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::behaviour::FormSource;
use super::cycle::CURSOR;
use super::decide::{self, decide_stored_owned, stored_ids};
use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::behaviour::Form;
use crate::hubspot::limiter::Priority;
use crate::hubspot::pull::{BlockLinks, Carried, Complete};
use crate::hubspot::types::{ASSOCIATION_BATCH_LIMIT, HubSpotObject};
use crate::lifecycle::{Event, HubSpotId};
use crate::store::{Evaluated, email_key};

/// Name of the backfill checkpoint.
pub const CHECKPOINT: &str = "backfill";

/// What to backfill.
#[derive(Debug, Clone, Default)]
pub struct BackfillOptions {
    /// Only contacts modified since this time (a search window instead of the full list).
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many contacts.
    pub limit: Option<u64>,
    /// Save and write nothing; report what would change.
    pub dry_run: bool,
    /// Contacts evaluated and saved together (default 1,000, the associations batch size: the
    /// fewest calls; smaller blocks checkpoint more often).
    pub block: Option<usize>,
    /// Discard the saved checkpoint (and the filed form submissions) and start from the first
    /// page: the way out when the checkpoint is corrupt.
    pub restart: bool,
}

/// Where a backfill stands: saved with each block, in the same transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// HubSpot's paging cursor of the next page (`None`: from the start).
    pub after: Option<String>,
    /// Contacts done so far.
    pub done: u64,
    /// When the backfill started (the incremental cursor starts there once it is done).
    pub started_ms: i64,
    /// Every page is saved; only the final flush and hand-over to the incremental cycle remain.
    #[serde(default)]
    pub listed: bool,
    /// The portal's form submissions are filed in the store (read once per backfill).
    #[serde(default)]
    pub staged: bool,
    /// Where filing them stands, as an earlier version saved it: the form being read (forms
    /// before it in id order are filed) and its next page. Read on resume, never written.
    #[serde(default, skip_serializing)]
    pub staging: Option<Staging>,
    /// Where filing them stands: the forms whose submissions are all filed, and the next page
    /// of each form begun (forms are read a few at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filing: Option<Filing>,
}

/// The next page of form submissions a backfill files (an earlier version's checkpoint).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Staging {
    /// The form's id: forms before it in id order are filed.
    pub form: String,
    /// HubSpot's cursor of its next page (`None`: its first).
    pub after: Option<String>,
}

/// Which forms' submissions a backfill has filed, and where each form begun stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Filing {
    /// Forms whose every submission is filed.
    #[serde(default)]
    pub done: BTreeSet<String>,
    /// HubSpot's cursor of the next page of each form begun and not done.
    #[serde(default)]
    pub next: BTreeMap<String, String>,
}

/// Forms whose submissions are read at once while filing (the limiter paces the calls; each
/// form's pages follow one another).
const FORMS_AT_ONCE: usize = 8;

/// Blocks queued between two stages of the backfill.
const QUEUED: usize = 2;

/// Blocks listed and not yet committed, at most: enough for the next blocks to be listed and
/// read while one is committed (and for a block's partial batches to be carried into the
/// next's reads), few enough that memory stays flat and a stopped backfill loses little.
const IN_FLIGHT: usize = 3;

/// More blocks listed and read ahead while the forms are filed (none is committed before they
/// all are): the last forms' pages follow one another and leave most of the budget unused.
const AHEAD_WHILE_FILING: usize = 3;

/// The listing starts once at most this many forms are left to file.
const FORMS_IN_TAIL: usize = 1;

/// Waits for a place among the blocks in flight (given back when a block is committed).
async fn admit(in_flight: &tokio::sync::Semaphore) {
    if let Ok(permit) = in_flight.acquire().await {
        permit.forget();
    }
}

/// Where the backfill's blocks find their form submissions.
enum Forms {
    /// Filed in the store before the contacts are listed.
    Staged,
    /// Held in memory (a dry run, a `--since` backfill).
    Held(Arc<HashMap<String, Vec<Event>>>),
}

/// A listed block: its contacts and the checkpoint its commit saves (none for a `--since`
/// window).
struct Listed {
    contacts: Vec<HubSpotObject>,
    checkpoint: Option<Checkpoint>,
}

/// A block whose association reads are done.
struct Linked {
    /// Its contacts, the active ones (`..active`) first.
    contacts: Vec<HubSpotObject>,
    active: usize,
    /// The ids whose stored state the commit reads.
    ids: Vec<HubSpotId>,
    /// The stored state of those leadsync knew when the block was linked.
    known: HashMap<HubSpotId, crate::store::ContactRow>,
    checkpoint: Option<Checkpoint>,
}

/// A block ready to be decided and committed.
struct Gathered {
    contacts: Vec<HubSpotObject>,
    ids: Vec<HubSpotId>,
    events: BTreeMap<String, Vec<Event>>,
    companies: BTreeMap<String, (String, BTreeMap<String, String>)>,
    checkpoint: Option<Checkpoint>,
}

/// What a dry run would cost.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Costs {
    /// HubSpot write calls (100 contacts a call).
    pub hubspot_writes: u64,
    /// Salesforce calls for the promotions (lookups included).
    pub salesforce_calls: u64,
}

/// A saved checkpoint, or a refusal naming it, what was found and what to do: a corrupt
/// checkpoint never silently restarts a backfill from zero (nor resumes from a wrong page).
fn read_checkpoint(v: &str) -> Result<Checkpoint, crate::store::StoreError> {
    serde_json::from_str(v).map_err(|e| {
        let found: String = v.chars().take(80).collect();
        crate::store::StoreError::Corrupt {
            what: format!("cursors `{CHECKPOINT}` (the backfill checkpoint)"),
            message: format!(
                "found `{found}`, which does not parse ({e}); `leadsync backfill --restart` discards it and starts from the first page"
            ),
        }
    })
}

impl Syncer {
    /// Every form submission since `since`, held by email key (dry runs and `--since`).
    async fn submissions_by_email(
        &self,
        since: DateTime<Utc>,
        p: Priority,
    ) -> Result<HashMap<String, Vec<Event>>, SyncError> {
        let mut held: HashMap<String, Vec<Event>> = HashMap::new();
        for (email, event) in self.submissions_since(since, p).await? {
            held.entry(email_key(&email)).or_default().push(event);
        }
        Ok(held)
    }

    /// Files every form submission of the portal in the store, page by page, a few forms at
    /// once, the checkpoint saved after each page: a backfill stopped while filing goes on from
    /// the pages it stopped at (a page filed twice adds nothing). `tail` is told once at most
    /// [`FORMS_IN_TAIL`] forms are left to read: one form's pages follow one another and leave
    /// most of the budget to the contacts' first blocks (see [`Syncer::backfill_pages`]).
    async fn stage_forms(
        &self,
        cp: &mut Checkpoint,
        tail: &tokio::sync::watch::Sender<bool>,
        p: Priority,
    ) -> Result<(), SyncError> {
        if cp.staged {
            tail.send_replace(true);
            return Ok(());
        }
        let forms = self.hubspot.forms(p).await?;
        if cp.staging.is_none() && cp.filing.is_none() {
            self.store.clear_staged().await?;
        }
        let mut filing = cp.filing.take().unwrap_or_default();
        if let Some(old) = cp.staging.take() {
            // An earlier version's checkpoint: forms before `form` in id order are filed.
            filing
                .done
                .extend(forms.iter().filter(|f| f.id < old.form).map(|f| f.id.clone()));
            if let Some(after) = old.after {
                filing.next.insert(old.form, after);
            }
        }
        let todo: Vec<&Form> = forms.iter().filter(|f| !filing.done.contains(&f.id)).collect();
        let mut left = todo.len();
        if left <= FORMS_IN_TAIL {
            tail.send_replace(true);
        }
        let first_pages: Vec<Option<String>> = todo.iter().map(|f| filing.next.get(&f.id).cloned()).collect();
        // One checkpoint for all forms: each page's progress is saved under the lock, after
        // its rows are filed, so a saved checkpoint never runs ahead of the store.
        let shared = tokio::sync::Mutex::new((cp.clone(), filing));
        let mut waiting = todo.into_iter().zip(first_pages);
        let mut reading = futures::stream::FuturesUnordered::new();
        for (form, after) in waiting.by_ref().take(FORMS_AT_ONCE) {
            reading.push(self.file_form(form, after, &shared, p));
        }
        while let Some(filed) = reading.next().await {
            filed?;
            left -= 1;
            if left <= FORMS_IN_TAIL {
                tail.send_replace(true);
            }
            if let Some((form, after)) = waiting.next() {
                reading.push(self.file_form(form, after, &shared, p));
            }
        }
        drop(reading);
        let (saved, _) = shared.into_inner();
        *cp = saved;
        cp.staged = true;
        cp.filing = None;
        self.save_checkpoint(cp).await
    }

    /// Files one form's submissions from page `after` on, saving each page's progress in the
    /// shared checkpoint after its rows are filed.
    async fn file_form(
        &self,
        form: &Form,
        mut after: Option<String>,
        shared: &tokio::sync::Mutex<(Checkpoint, Filing)>,
        p: Priority,
    ) -> Result<(), SyncError> {
        // Each page waits for the one before: served before other background calls, so that a
        // form's chain of pages is not stretched by the contacts' reads beside it.
        let p = if p == Priority::Background {
            Priority::Chained
        } else {
            p
        };
        loop {
            let (page, next) = self.hubspot.form_submissions_page(form, after.as_deref(), p).await?;
            let rows: Vec<(String, Event)> = page.into_iter().map(|s| (email_key(&s.email), s.event)).collect();
            self.store.stage(&rows).await?;
            after = next;
            let mut held = shared.lock().await;
            let (cp, filing) = &mut *held;
            match &after {
                Some(next) => {
                    filing.next.insert(form.id.clone(), next.clone());
                }
                None => {
                    filing.next.remove(&form.id);
                    filing.done.insert(form.id.clone());
                }
            }
            cp.filing = Some(filing.clone());
            self.save_checkpoint(cp).await?;
            if after.is_none() {
                return Ok(());
            }
        }
    }

    async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), SyncError> {
        let v = serde_json::to_string(cp).expect("serialisable");
        Ok(self.store.set_cursor(CHECKPOINT, &v).await?)
    }

    /// Backfills the portal from its checkpoint, the outbox worker beside it (what a stopped
    /// run decided goes first; see [`Syncer::with_outbox_worker`]); `on_block` sees the running
    /// report after each block (the progress bar). A dry run saves and writes nothing.
    pub async fn backfill(
        &self,
        opts: &BackfillOptions,
        now: DateTime<Utc>,
        on_block: impl FnMut(&SyncReport, &Checkpoint),
    ) -> Result<(SyncReport, Costs), SyncError> {
        if opts.dry_run {
            return self.backfill_pages(opts, now, on_block).await;
        }
        let ((mut report, costs), carried_out) = self
            .with_outbox_worker(now, self.backfill_pages(opts, now, on_block))
            .await?;
        report.add(&carried_out);
        Ok((report, costs))
    }

    /// The backfill's pages, block by block, each committed with its checkpoint. The blocks
    /// flow through stages joined by short queues ([`QUEUED`]): listing, the association
    /// reads, the batch reads (leftover partial batches carried into the next block's,
    /// [`Carried`]), the behaviour the records do not tell, and the commit. So the next pages
    /// are listed and read while a block is decided and committed, and HubSpot's budget rather
    /// than its latency bounds the time. Blocks are committed one at a time in listing order,
    /// each with the checkpoint after its last page: a checkpoint never covers a block not yet
    /// committed, and a stopped backfill loses only reads.
    async fn backfill_pages(
        &self,
        opts: &BackfillOptions,
        now: DateTime<Utc>,
        mut on_block: impl FnMut(&SyncReport, &Checkpoint),
    ) -> Result<(SyncReport, Costs), SyncError> {
        let p = Priority::Background;
        let mut costs = Costs::default();
        let mut report = SyncReport::default();
        let (listed_tx, listed) = mpsc::channel(QUEUED);
        let in_flight = tokio::sync::Semaphore::new(IN_FLIGHT);
        // Places given while the forms are filed, taken back by the first commits.
        let mut ahead = 0;
        // Contacts since a date come from the search window; nothing to resume there.
        // The full listing resumes from its checkpoint and, once done, hands over to the
        // incremental cycle from when it started (`started_ms`).
        type Stage<'a> = BoxFuture<'a, Result<(), SyncError>>;
        let done = || -> Stage<'_> { Box::pin(async { Ok(()) }) };
        // The full listing waits until few forms are left to file (or none is filed).
        let (tail, tail_seen) = tokio::sync::watch::channel(opts.dry_run);
        let (forms, filing, lister, started_ms): (Forms, Stage<'_>, Stage<'_>, Option<i64>) =
            if let Some(since) = opts.since {
                let held = Arc::new(self.submissions_by_email(since, p).await?);
                (
                    Forms::Held(held),
                    done(),
                    Box::pin(self.search_blocks(since, now, opts, listed_tx, &in_flight)),
                    None,
                )
            } else {
                if opts.restart && !opts.dry_run {
                    info!("backfill restarts from the first page: its checkpoint is discarded");
                    self.store.clear_cursor(CHECKPOINT).await?;
                    self.store.clear_staged().await?;
                }
                let mut cp: Checkpoint = match self.store.cursor(CHECKPOINT).await? {
                    Some(v) if !opts.dry_run => read_checkpoint(&v)?,
                    _ => Checkpoint::default(),
                };
                if cp.started_ms == 0 {
                    cp.started_ms = now.timestamp_millis();
                }
                // Every form submission of the portal, read once per backfill (the forms API links
                // them to emails, not to contacts): filed in the store, or held for a dry run. The
                // filing runs while the first blocks are listed and read (one form's pages follow
                // one another, so its last pages alone would leave most of the budget unused); no
                // block's behaviour is gathered, so none is committed, before every form is filed.
                if !opts.dry_run && !cp.staged {
                    in_flight.add_permits(AHEAD_WHILE_FILING);
                    ahead = AHEAD_WHILE_FILING;
                }
                let (forms, filing): (Forms, Stage<'_>) = if opts.dry_run {
                    let held = self.submissions_by_email(DateTime::UNIX_EPOCH, p).await?;
                    (Forms::Held(Arc::new(held)), done())
                } else {
                    let mut filed = cp.clone();
                    let tail = &tail;
                    (
                        Forms::Staged,
                        Box::pin(async move { self.stage_forms(&mut filed, tail, p).await }),
                    )
                };
                if cp.done > 0 {
                    info!(done = cp.done, "backfill resumes from its checkpoint");
                }
                let started_ms = Some(cp.started_ms);
                if cp.listed {
                    drop(listed_tx);
                    (forms, filing, done(), started_ms)
                } else {
                    (
                        forms,
                        filing,
                        Box::pin(self.list_blocks(cp, opts, tail_seen, listed_tx, &in_flight)),
                        started_ms,
                    )
                }
            };
        let (linked_tx, linked) = mpsc::channel(QUEUED);
        let (read_tx, read) = mpsc::channel(QUEUED);
        let (ready_tx, mut ready) = mpsc::channel(QUEUED);
        let commits = async {
            while let Some(block) = ready.recv().await {
                let Gathered {
                    contacts,
                    ids,
                    events,
                    companies,
                    checkpoint,
                } = block;
                let saved = checkpoint
                    .as_ref()
                    .map(|cp| serde_json::to_string(cp).expect("serialisable"));
                let n = contacts.len() as u64;
                let pulled = self.pulled_contacts(contacts, events, companies);
                let batch = self
                    .decide_and_commit(
                        pulled,
                        &ids,
                        &[],
                        saved.as_deref().map(|c| (CHECKPOINT, c)),
                        opts.dry_run,
                        p,
                        now,
                    )
                    .await?;
                let mut r = SyncReport {
                    pulled: n,
                    ..SyncReport::default()
                };
                r.count(&batch);
                if opts.dry_run {
                    self.dry_run_costs(&batch, &r, &mut costs);
                }
                report.add(&r);
                on_block(&report, checkpoint.as_ref().unwrap_or(&Checkpoint::default()));
                // Committed: the lister may list one more block (past the read-ahead of the
                // filing).
                if ahead > 0 {
                    ahead -= 1;
                } else {
                    in_flight.add_permits(1);
                }
            }
            Ok::<_, SyncError>(())
        };
        tokio::try_join!(
            lister,
            self.link_blocks(listed, linked_tx, p),
            self.read_blocks(linked, read_tx, p),
            async {
                filing.await?;
                self.behaviour_of_blocks(read, ready_tx, &forms, p).await
            },
            commits,
        )?;
        if let Some(started_ms) = started_ms
            && !opts.dry_run
        {
            // Done: the incremental cycle takes over from when the backfill started.
            self.store.set_cursor(CURSOR, &started_ms.to_string()).await?;
            self.store.clear_cursor(CHECKPOINT).await?;
            self.store.clear_staged().await?;
        }
        Ok((report, costs))
    }

    /// The contacts of a `--since` window, in blocks (no checkpoint: nothing to resume there).
    async fn search_blocks(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        opts: &BackfillOptions,
        tx: mpsc::Sender<Listed>,
        in_flight: &tokio::sync::Semaphore,
    ) -> Result<(), SyncError> {
        let contacts = self
            .hubspot
            .search_modified(
                "contacts",
                "lastmodifieddate",
                since.timestamp_millis(),
                now.timestamp_millis(),
                &self.properties,
                Priority::Background,
            )
            .await?;
        let limit = opts.limit.map_or(usize::MAX, |l| l as usize);
        let mut contacts = contacts.into_iter().take(limit).peekable();
        while contacts.peek().is_some() {
            let block: Vec<HubSpotObject> = contacts.by_ref().take(ASSOCIATION_BATCH_LIMIT).collect();
            admit(in_flight).await;
            if tx
                .send(Listed {
                    contacts: block,
                    checkpoint: None,
                })
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Lists the contacts from `cp`, 100 a page, into blocks, each with the checkpoint its
    /// commit saves (the page after its last one); the last block's checkpoint says `listed`.
    async fn list_blocks(
        &self,
        mut cp: Checkpoint,
        opts: &BackfillOptions,
        mut tail: tokio::sync::watch::Receiver<bool>,
        tx: mpsc::Sender<Listed>,
        in_flight: &tokio::sync::Semaphore,
    ) -> Result<(), SyncError> {
        // While several forms are filed they use the budget; their tail leaves room for the
        // first blocks. (A filing that failed ends the backfill with its error anyway.)
        let _ = tail.wait_for(|open| *open).await;
        let block_size = opts
            .block
            .unwrap_or(ASSOCIATION_BATCH_LIMIT)
            .clamp(100, ASSOCIATION_BATCH_LIMIT);
        let mut block: Vec<HubSpotObject> = Vec::with_capacity(block_size);
        while !cp.listed {
            if block.is_empty() {
                // A new block: wait until few enough are listed and not committed.
                admit(in_flight).await;
            }
            let page = self
                .hubspot
                .list_contacts(cp.after.as_deref(), &self.properties, Priority::Background)
                .await?;
            let next = page.next_after().map(str::to_string);
            let mut results = page.results;
            if let Some(limit) = opts.limit {
                let left = limit.saturating_sub(cp.done + block.len() as u64) as usize;
                results.truncate(left);
            }
            block.extend(results);
            let reached = opts.limit.is_some_and(|l| cp.done + block.len() as u64 >= l);
            let last = next.is_none() || reached;
            // Pages gathered into a block are not checkpointed until the block is saved.
            cp.after = next;
            if block.len() >= block_size || last {
                cp = Checkpoint {
                    after: cp.after.take(),
                    done: cp.done + block.len() as u64,
                    started_ms: cp.started_ms,
                    listed: last,
                    // Saved with the block's commit, which waits for every form to be filed.
                    staged: true,
                    staging: None,
                    filing: None,
                };
                let listed = Listed {
                    contacts: std::mem::replace(&mut block, Vec::with_capacity(block_size)),
                    checkpoint: Some(cp.clone()),
                };
                if tx.send(listed).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// For each listed block: which contacts are new to leadsync (they need their whole
    /// history and their company, once) and their association reads.
    async fn link_blocks(
        &self,
        mut rx: mpsc::Receiver<Listed>,
        tx: mpsc::Sender<(Linked, BlockLinks)>,
        p: Priority,
    ) -> Result<(), SyncError> {
        while let Some(Listed { contacts, checkpoint }) = rx.recv().await {
            let ids = stored_ids(&contacts, &[]);
            let known = self.store.contacts(&ids).await?;
            // Active contacts first, then the archived (as a cycle's pass orders them).
            let (mut contacts, archived): (Vec<HubSpotObject>, Vec<HubSpotObject>) =
                contacts.into_iter().partition(|c| !c.archived);
            let active = contacts.len();
            let new: Vec<String> = contacts
                .iter()
                .filter(|c| HubSpotId::try_from(c.id.clone()).is_ok_and(|id| !known.contains_key(&id)))
                .map(|c| c.id.clone())
                .collect();
            contacts.extend(archived);
            let links = if new.is_empty() {
                BlockLinks::default()
            } else {
                self.hubspot.block_links(&new, p).await?
            };
            let block = Linked {
                contacts,
                active,
                ids,
                known,
                checkpoint,
            };
            if tx.send((block, links)).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The engagement and company batch reads of the linked blocks, 100 records a call, the
    /// partial last batch of each type carried into the next block's reads; passes each block
    /// on once all its records are read.
    async fn read_blocks(
        &self,
        mut rx: mpsc::Receiver<(Linked, BlockLinks)>,
        tx: mpsc::Sender<Complete<Linked>>,
        p: Priority,
    ) -> Result<(), SyncError> {
        let mut carried: Carried<Linked> = Carried::default();
        loop {
            let next = rx.recv().await;
            let last = next.is_none();
            if let Some((block, links)) = next {
                carried.push(block, links, &self.companies);
            }
            let complete = carried
                .read(&self.hubspot, &self.company_properties, p, &self.companies, last)
                .await?;
            for block in complete {
                if tx.send(block).await.is_err() {
                    return Ok(());
                }
            }
            if last && carried.is_empty() {
                return Ok(());
            }
        }
    }

    /// The form submissions, page views and email events each read block's records do not
    /// tell, added after its engagements.
    async fn behaviour_of_blocks(
        &self,
        mut rx: mpsc::Receiver<Complete<Linked>>,
        tx: mpsc::Sender<Gathered>,
        forms: &Forms,
        p: Priority,
    ) -> Result<(), SyncError> {
        while let Some((block, mut events, companies)) = rx.recv().await {
            let source = match forms {
                Forms::Staged => FormSource::Staged,
                Forms::Held(held) => FormSource::Held(held),
            };
            let active = &block.contacts[..block.active];
            for (c, more) in self.behaviour(active, &block.known, source, p).await? {
                events.entry(c).or_default().extend(more);
            }
            let companies = companies
                .into_iter()
                .map(|(c, company)| (c, (company.id.clone(), decide::known_properties(&company))))
                .collect();
            let gathered = Gathered {
                contacts: block.contacts,
                ids: block.ids,
                events,
                companies,
                checkpoint: block.checkpoint,
            };
            if tx.send(gathered).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// What a dry run's block would cost in calls.
    fn dry_run_costs(&self, batch: &[Evaluated], report: &SyncReport, costs: &mut Costs) {
        let writes = batch
            .iter()
            .filter(|e| {
                e.outbox
                    .iter()
                    .any(|(k, _, _)| *k == crate::store::OutboxKind::HubSpotWrite)
            })
            .count() as u64;
        costs.hubspot_writes += writes.div_ceil(100);
        let promotions = super::outbox::promotion::PromotionCost::of(report.promotions_queued);
        costs.salesforce_calls += promotions.salesforce_calls;
        if let Some(p) = &self.promoter {
            let context = batch
                .iter()
                .filter(|e| {
                    e.outbox
                        .iter()
                        .any(|(k, _, _)| *k == crate::store::OutboxKind::SalesforceContext)
                })
                .count() as u64;
            costs.salesforce_calls += super::outbox::context::calls(&p.mapping, context);
        }
    }

    /// Re-evaluates every stored contact from the store alone (after a rules change, or the
    /// nightly decay, dormancy and timer sweep); each commit wakes the outbox worker, which
    /// writes back what changed.
    pub async fn rescore(&self, now: DateTime<Utc>, dry_run: bool) -> Result<SyncReport, SyncError> {
        self.rescore_where(now, dry_run, |_| true).await
    }

    /// Re-evaluates the stored contacts `keep` selects, from the store alone.
    pub async fn rescore_where(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
        keep: impl Fn(&crate::store::ContactRow) -> bool,
    ) -> Result<SyncReport, SyncError> {
        let mut report = SyncReport::default();
        // The ids once, in numeric order, then each page's rows and ledgers by id: paging the
        // table itself (`contact_page`) sorted every row for every page.
        let started = std::time::Instant::now();
        let ids = self.store.contact_ids().await?;
        // Where the time goes, logged at the end: reading, deciding, committing.
        let (mut reading, mut deciding, mut committing) = (started.elapsed(), Duration::ZERO, Duration::ZERO);
        // Each page is read while the one before is decided (under the same hold of the
        // evaluation lock), and used if nobody else held the lock before the rescore took it
        // again: read again otherwise, so no page is decided from rows another evaluation
        // changed meanwhile.
        let pages: Vec<&[HubSpotId]> = ids.chunks(RESCORE_PAGE).collect();
        let mut ahead: Option<(u64, RescorePage)> = None;
        let mut read_again = 0u32;
        for (i, page) in pages.iter().enumerate() {
            let held = self.evaluating().await;
            let t = std::time::Instant::now();
            let (rows, mut ledger) = match ahead.take() {
                Some((taken, read)) if *held == taken + 1 => read,
                other => {
                    read_again += u32::from(other.is_some());
                    self.rescore_page(page, &keep).await?
                }
            };
            reading += t.elapsed();
            let t = std::time::Instant::now();
            // The evaluations are pure CPU: off the async threads, so the next page is read and
            // the outbox worker beside the rescore keeps writing back changes meanwhile.
            let (rules, sla) = (self.rules.clone(), self.sla.clone());
            let decided = tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .map(|r| {
                        let events = ledger.remove(&r.contact_id).unwrap_or_default();
                        decide_stored_owned(&rules, &sla, r, events, now)
                    })
                    .collect::<Vec<decide::Rescored>>()
            });
            let next = async {
                match pages.get(i + 1) {
                    Some(p) => self.rescore_page(p, &keep).await.map(Some),
                    None => Ok(None),
                }
            };
            let (batch, next) = tokio::join!(decided, next);
            let batch = batch.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            ahead = next?.map(|read| (*held, read));
            deciding += t.elapsed();
            let (same, changed): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| r.settled);
            let same: Vec<HubSpotId> = same.into_iter().map(|r| r.evaluated.contact_id).collect();
            let changed: Vec<Evaluated> = changed.into_iter().map(|r| r.evaluated).collect();
            report.count(&changed);
            report.count_settled(same.len());
            let t = std::time::Instant::now();
            let nothing = changed.is_empty() && same.is_empty();
            if !dry_run && !nothing {
                self.store.commit_rescored(&changed, &same, now).await?;
                if !changed.is_empty() {
                    self.outbox.wake(Priority::Background);
                }
            }
            committing += t.elapsed();
            drop(held);
        }
        let ms = |d: Duration| d.as_millis() as u64;
        info!(
            contacts = ids.len(),
            evaluated = report.evaluated,
            total_ms = ms(started.elapsed()),
            reading_ms = ms(reading),
            deciding_ms = ms(deciding),
            committing_ms = ms(committing),
            pages_read_again = read_again,
            "rescore done"
        );
        Ok(report)
    }

    /// A rescore's page: the stored rows of `page` that are not removed and `keep` selects, in
    /// `page`'s order, and their ledgers.
    async fn rescore_page(
        &self,
        page: &[HubSpotId],
        keep: &impl Fn(&crate::store::ContactRow) -> bool,
    ) -> Result<RescorePage, SyncError> {
        let mut stored = self.store.contacts(page).await?;
        let rows: Vec<_> = page
            .iter()
            .filter_map(|id| stored.remove(id))
            .filter(|r| r.removed.is_none() && keep(r))
            .collect();
        if rows.is_empty() {
            return Ok((rows, HashMap::new()));
        }
        let kept: Vec<HubSpotId> = rows.iter().map(|r| r.contact_id.clone()).collect();
        Ok((rows, self.store.events(&kept).await?))
    }
}

/// What a rescore decides from, a page at a time: stored rows and their ledgers.
type RescorePage = (
    Vec<crate::store::ContactRow>,
    HashMap<HubSpotId, Vec<crate::lifecycle::Event>>,
);

/// Contacts a rescore reads, decides and commits at once (under the evaluation lock).
const RESCORE_PAGE: usize = 1_000;

/// The backfill's progress: a bar in a terminal, log lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar when stderr is a terminal.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        });
        Progress { bar }
    }

    /// After each block.
    pub fn update(&self, r: &SyncReport, cp: &Checkpoint, calls: u64) {
        let msg = format!(
            "{} contacts · {} evaluated · {} promotions queued · {} HubSpot calls",
            cp.done.max(r.pulled),
            r.evaluated,
            r.promotions_queued,
            calls
        );
        match &self.bar {
            Some(b) => {
                b.set_message(msg);
                b.tick();
            }
            None => info!("{msg}"),
        }
    }

    /// At the end.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
