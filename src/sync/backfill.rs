//! `leadsync backfill`: every contact, 100 a page, resumable from a checkpoint saved with each
//! block; and `--rescore`: every stored contact re-evaluated from the store, no HubSpot read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use std::collections::HashMap;

use super::behaviour::FormSource;
use super::cycle::CURSOR;
use super::decide::decide_stored;
use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::behaviour::Form;
use crate::hubspot::limiter::Priority;
use crate::hubspot::types::{ASSOCIATION_BATCH_LIMIT, HubSpotObject};
use crate::lifecycle::{Event, HubSpotId};
use crate::store::email_key;

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
    /// Where filing them stands: the form being read (forms go in id order) and its next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<Staging>,
}

/// The next page of form submissions a backfill files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Staging {
    /// The form's id: forms before it in id order are filed.
    pub form: String,
    /// HubSpot's cursor of its next page (`None`: its first).
    pub after: Option<String>,
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

    /// Files every form submission of the portal in the store, page by page, the checkpoint
    /// saved after each page: a backfill stopped while filing goes on from the page it stopped
    /// at (a page filed twice adds nothing).
    async fn stage_forms(&self, cp: &mut Checkpoint, p: Priority) -> Result<(), SyncError> {
        if cp.staged {
            return Ok(());
        }
        let mut forms = self.hubspot.forms(p).await?;
        forms.sort_by(|a, b| a.id.cmp(&b.id));
        if cp.staging.is_none() {
            self.store.clear_staged().await?;
        }
        let start = cp.staging.clone().unwrap_or_default();
        let todo: Vec<&Form> = forms.iter().filter(|f| f.id >= start.form).collect();
        for (i, form) in todo.iter().enumerate() {
            let mut after = if form.id == start.form {
                start.after.clone()
            } else {
                None
            };
            loop {
                let (page, next) = self.hubspot.form_submissions_page(form, after.as_deref(), p).await?;
                let rows: Vec<(String, Event)> = page.into_iter().map(|s| (email_key(&s.email), s.event)).collect();
                self.store.stage(&rows).await?;
                after = next;
                let Some(next) = &after else { break };
                cp.staging = Some(Staging {
                    form: form.id.clone(),
                    after: Some(next.clone()),
                });
                self.save_checkpoint(cp).await?;
            }
            // The form is filed: a resume starts at the next one's first page.
            if let Some(next) = todo.get(i + 1) {
                cp.staging = Some(Staging {
                    form: next.id.clone(),
                    after: None,
                });
                self.save_checkpoint(cp).await?;
            }
        }
        cp.staged = true;
        cp.staging = None;
        self.save_checkpoint(cp).await
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

    /// The backfill's pages, block by block, each committed with its checkpoint.
    async fn backfill_pages(
        &self,
        opts: &BackfillOptions,
        now: DateTime<Utc>,
        mut on_block: impl FnMut(&SyncReport, &Checkpoint),
    ) -> Result<(SyncReport, Costs), SyncError> {
        let p = Priority::Background;
        let mut costs = Costs::default();
        let mut report = SyncReport::default();
        // Contacts since a date come from the search window; nothing to resume there.
        if let Some(since) = opts.since {
            let contacts = self
                .hubspot
                .search_modified(
                    "contacts",
                    "lastmodifieddate",
                    since.timestamp_millis(),
                    now.timestamp_millis(),
                    &self.properties,
                    p,
                )
                .await?;
            let held = self.submissions_by_email(since, p).await?;
            let limit = opts.limit.map_or(usize::MAX, |l| l as usize);
            for block in contacts
                .into_iter()
                .take(limit)
                .collect::<Vec<_>>()
                .chunks(ASSOCIATION_BATCH_LIMIT)
            {
                let r = self
                    .backfill_block(block.to_vec(), opts, None, now, &mut costs, FormSource::Held(&held))
                    .await?;
                report.add(&r);
                on_block(&report, &Checkpoint::default());
            }
            return Ok((report, costs));
        }

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
        // Every form submission of the portal, read once before the contacts (the forms API
        // links them to emails, not to contacts): filed in the store, or held for a dry run.
        let mut held = HashMap::new();
        if opts.dry_run {
            held = self.submissions_by_email(DateTime::UNIX_EPOCH, p).await?;
        } else {
            self.stage_forms(&mut cp, p).await?;
        }
        if cp.done > 0 {
            info!(done = cp.done, "backfill resumes from its checkpoint");
        }
        let block_size = opts
            .block
            .unwrap_or(ASSOCIATION_BATCH_LIMIT)
            .clamp(100, ASSOCIATION_BATCH_LIMIT);
        let mut block: Vec<HubSpotObject> = Vec::with_capacity(block_size);
        let forms = || {
            if opts.dry_run {
                FormSource::Held(&held)
            } else {
                FormSource::Staged
            }
        };
        while !cp.listed {
            let page = self
                .hubspot
                .list_contacts(cp.after.as_deref(), &self.properties, p)
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
            if block.len() >= block_size || last {
                let n = block.len() as u64;
                let next_cp = Checkpoint {
                    after: next.clone(),
                    done: cp.done + n,
                    started_ms: cp.started_ms,
                    listed: last,
                    staged: cp.staged,
                    staging: None,
                };
                let saved = serde_json::to_string(&next_cp).expect("serialisable");
                let r = self
                    .backfill_block(std::mem::take(&mut block), opts, Some(&saved), now, &mut costs, forms())
                    .await?;
                report.add(&r);
                cp = next_cp;
                on_block(&report, &cp);
            } else {
                // Pages gathered into a block are not checkpointed until the block is saved.
                cp.after = next;
                continue;
            }
        }
        if !opts.dry_run {
            // Done: the incremental cycle takes over from when the backfill started.
            self.store.set_cursor(CURSOR, &cp.started_ms.to_string()).await?;
            self.store.clear_cursor(CHECKPOINT).await?;
            self.store.clear_staged().await?;
        }
        Ok((report, costs))
    }

    async fn backfill_block(
        &self,
        contacts: Vec<HubSpotObject>,
        opts: &BackfillOptions,
        checkpoint: Option<&str>,
        now: DateTime<Utc>,
        costs: &mut Costs,
        forms: FormSource<'_>,
    ) -> Result<SyncReport, SyncError> {
        let p = Priority::Background;
        let mut report = SyncReport {
            pulled: contacts.len() as u64,
            ..SyncReport::default()
        };
        let batch = self
            .evaluate_and_commit(
                contacts,
                Default::default(),
                p,
                now,
                super::Pass {
                    checkpoint: checkpoint.map(|c| (CHECKPOINT, c)),
                    dry_run: opts.dry_run,
                    forms,
                    told: &[],
                },
            )
            .await?;
        report.count(&batch);
        if opts.dry_run {
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
            costs.hubspot_writes += promotions.hubspot_write_calls;
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
        Ok(report)
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
        let mut after: Option<String> = None;
        loop {
            let held = self.evaluating().await;
            let rows = self.store.contact_page(after.as_deref(), 500).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.contact_id.as_str().to_string());
            let rows: Vec<_> = rows.into_iter().filter(|r| r.removed.is_none() && keep(r)).collect();
            if rows.is_empty() {
                continue;
            }
            let ids: Vec<HubSpotId> = rows.iter().map(|r| r.contact_id.clone()).collect();
            let ledger = self.store.events(&ids).await?;
            let empty = Vec::new();
            let batch: Vec<_> = rows
                .iter()
                .map(|r| {
                    decide_stored(
                        &self.rules,
                        &self.sla,
                        r,
                        ledger.get(&r.contact_id).unwrap_or(&empty),
                        now,
                    )
                })
                .collect();
            report.count(&batch);
            if !dry_run {
                self.store.commit(&batch, None).await?;
                self.outbox.wake(Priority::Background);
            }
            drop(held);
        }
        Ok(report)
    }
}

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
