//! The incremental cycle: what changed in HubSpot since the cursor, pulled, decided and
//! committed (the outbox worker writes back and promotes). It costs in proportion to activity,
//! not to the size of the portal.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use tracing::info;

use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::limiter::Priority;
use crate::hubspot::types::HubSpotObject;
use crate::lifecycle::HubSpotId;

/// Name of the incremental cursor: epoch milliseconds of HubSpot's `lastmodifieddate`.
pub const CURSOR: &str = "contacts.modified";

/// How far back each window starts before the cursor: HubSpot's search index lags writes by
/// "a few moments", and a repeat costs nothing (ledger ids and diff-only writes).
pub const OVERLAP: Duration = Duration::minutes(5);

/// Watermark of the archived listing: epoch milliseconds at which the last listing saved began.
pub const ARCHIVED_CURSOR: &str = "contacts.archived";

/// How often a cycle pages the archived listing. It has no time filter (one call per 100
/// archived contacts in the portal, whatever changed), so it runs once an hour rather than every
/// cycle; the deletion and merge webhooks are the real-time path.
pub const ARCHIVED_EVERY: Duration = Duration::hours(1);

impl Syncer {
    /// One incremental cycle at `now`. Without a cursor (first run), it starts `first_window`
    /// back; a backfill sets the cursor when it finishes.
    pub async fn incremental(&self, now: DateTime<Utc>, first_window: Duration) -> Result<SyncReport, SyncError> {
        let cursor = self
            .ms_cursor(CURSOR)
            .await?
            .unwrap_or((now - first_window).timestamp_millis());
        let from = cursor - OVERLAP.num_milliseconds();
        let archived_mark = self.ms_cursor(ARCHIVED_CURSOR).await?;
        let to = now.timestamp_millis();
        let p = Priority::Background;

        // Merges come with their survivors (`hs_merged_object_ids` changes, and with it
        // `lastmodifieddate`); deletions only from the archived listing, as search never
        // returns archived records.
        let mut contacts = self
            .hubspot
            .search_modified("contacts", "lastmodifieddate", from, to, &self.properties, p)
            .await?;
        let ours = self.changed_only_by_us(&contacts).await?;
        contacts.retain(|c| !ours.contains(&c.id));
        let list_archived = archived_mark.is_none_or(|m| to - m >= ARCHIVED_EVERY.num_milliseconds());
        if list_archived {
            let since = archived_mark.map_or(from, |m| m - OVERLAP.num_milliseconds());
            contacts.extend(self.hubspot.archived_contacts_since(since, p).await?);
        }
        let mut fresh = self.hubspot.engagements_modified(from, to, p).await?;
        self.drop_known(&mut fresh).await?;
        let report = self.evaluate_and_save(contacts, &[], fresh, p, now, Some(to)).await?;
        if list_archived {
            // After the commit: a crash in between lists the same hour again, which is harmless
            // (a removal is applied once); saving it first could skip deletions.
            self.store.set_cursor(ARCHIVED_CURSOR, &to.to_string()).await?;
        }
        Ok(report)
    }

    /// The search results whose only change since is leadsync's own write: their
    /// `lastmodifieddate` is still the `updatedAt` HubSpot answered to that write. Anyone
    /// else's change after it shows a later one, and the contact is read.
    async fn changed_only_by_us(&self, found: &[HubSpotObject]) -> Result<BTreeSet<String>, SyncError> {
        let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        let marks = self.store.write_marks(&ids).await?;
        Ok(found
            .iter()
            .filter(|c| {
                let modified = c
                    .prop("lastmodifieddate")
                    .and_then(crate::hubspot::types::parse_time)
                    .map(|t| t.timestamp_millis());
                modified.is_some() && marks.get(&c.id).copied() == modified
            })
            .map(|c| c.id.clone())
            .collect())
    }

    /// Drops the engagements the ledger already holds (by id, as a decision counts them): the
    /// overlap finds them again, and a contact whose only activity is one of them is not read.
    async fn drop_known(&self, fresh: &mut BTreeMap<String, Vec<crate::lifecycle::Event>>) -> Result<(), SyncError> {
        let ids: Vec<HubSpotId> = fresh
            .keys()
            .filter_map(|k| HubSpotId::try_from(k.clone()).ok())
            .collect();
        let ledger = self.store.events(&ids).await?;
        fresh.retain(|id, events| {
            let held = HubSpotId::try_from(id.clone()).ok().and_then(|h| ledger.get(&h));
            let known: BTreeSet<&str> = held.into_iter().flatten().map(|e| e.id.as_str()).collect();
            events.retain(|e| !known.contains(e.id.as_str()));
            !events.is_empty()
        });
        Ok(())
    }

    /// A cursor holding epoch milliseconds; one that does not parse is a named error, never a
    /// guessed window that would miss older changes.
    async fn ms_cursor(&self, name: &str) -> Result<Option<i64>, SyncError> {
        match self.store.cursor(name).await? {
            None => Ok(None),
            Some(c) => c.trim().parse::<i64>().map(Some).map_err(|_| SyncError::CorruptCursor {
                name: name.to_string(),
                value: c.clone(),
            }),
        }
    }

    /// Evaluates these contacts (reading any contact that only had new activity) and saves the
    /// result, with the deletions and merges webhooks `told`, and the cursor moved to `bookmark`
    /// (the minimum of run start and last modified seen); the commit wakes the outbox worker.
    pub(crate) async fn evaluate_and_save(
        &self,
        mut contacts: Vec<HubSpotObject>,
        told: &[crate::store::Removal],
        fresh: BTreeMap<String, Vec<crate::lifecycle::Event>>,
        p: Priority,
        now: DateTime<Utc>,
        run_start_ms: Option<i64>,
    ) -> Result<SyncReport, SyncError> {
        let seen: BTreeSet<String> = contacts.iter().map(|c| c.id.clone()).collect();
        let only_activity: Vec<String> = fresh.keys().filter(|id| !seen.contains(*id)).cloned().collect();
        if !only_activity.is_empty() {
            contacts.extend(
                self.hubspot
                    .batch_read_contacts(&only_activity, &self.properties, None, p)
                    .await?,
            );
        }
        let mut report = SyncReport {
            pulled: contacts.len() as u64,
            ..SyncReport::default()
        };
        let last_modified = contacts
            .iter()
            .filter_map(|c| c.prop("lastmodifieddate"))
            .filter_map(|v| crate::hubspot::types::parse_time(v).map(|t| t.timestamp_millis()))
            .max();
        let bookmark = run_start_ms.map(|start| last_modified.map_or(start, |m| m.min(start)).to_string());
        let batch = self
            .evaluate_and_commit(
                contacts,
                fresh,
                p,
                now,
                super::Pass {
                    checkpoint: bookmark.as_deref().map(|b| (CURSOR, b)),
                    dry_run: false,
                    forms: super::behaviour::FormSource::Listing,
                    told,
                },
            )
            .await?;
        report.count(&batch);
        // The decisions are saved with their outbox items; the outbox worker carries them out.
        info!(pulled = report.pulled, evaluated = report.evaluated, "cycle done");
        Ok(report)
    }
}
