//! The SLA sweep: the timers whose next check has come (one indexed query, [`Store::sla_due`]),
//! each re-assessed with its touches and saved, its due ladder steps queued in the outbox (once
//! each, in the same transaction), which the one outbox worker carries out (`outbox::sla_step`).
//!
//! Touches: the HubSpot engagements already in the ledger (the pull brings them; nothing more is
//! read from HubSpot), and the Salesforce Tasks and Events of promoted contacts with a running
//! timer, read by one pair of `SystemModstamp` watermarks and kept in the store
//! (`sla_touches`). A contact whose Salesforce touch just arrived is assessed in the same sweep.
//!
//! One watermark pair serves every record: records join the set when their contact is promoted,
//! after the previous sweep's upper bound, so their activities are all newer than it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use tracing::info;

use super::decide::OWNER;
use super::{SyncError, Syncer};
use crate::hubspot::limiter::Priority;
use crate::lifecycle::HubSpotId;
use crate::salesforce::activities::{ActivityWatermarks, SalesforceActivityConfig};
use crate::salesforce::feedback::SalesforceWatermark;
use crate::sla::{Touch, assess};
use crate::store::{SlaTimer, Store};

/// The cursor holding the Salesforce activities' watermarks.
const ACTIVITIES_CURSOR: &str = "sla.salesforce_activities";

/// Timers read per sweep query.
const SWEEP_BATCH: usize = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlaSweep {
    /// Timers assessed.
    pub assessed: u64,
    /// Ladder steps queued in the outbox (new ones only).
    pub steps_queued: u64,
    /// Touches read from Salesforce.
    pub salesforce_touches: u64,
}

impl Syncer {
    /// Reads new Salesforce touches, then assesses every timer due at `now` (and those of the
    /// contacts just touched in Salesforce), saves each and queues its due ladder steps; wakes
    /// the outbox worker when a step was queued.
    pub async fn sla_sweep(&self, now: DateTime<Utc>) -> Result<SlaSweep, SyncError> {
        let mut report = SlaSweep::default();
        let touched = self.salesforce_touches(now, &mut report).await?;
        let mut seen: BTreeSet<(String, String, i64)> = BTreeSet::new();
        let mut extra: Vec<SlaTimer> = Vec::new();
        for contact in &touched {
            extra.extend(
                self.store
                    .sla_timers(contact)
                    .await?
                    .into_iter()
                    .filter(|t| t.next_check_at.is_some()),
            );
        }
        let mut batch = extra;
        loop {
            batch.extend(self.store.sla_due(now, SWEEP_BATCH).await?);
            batch.retain(|t| {
                seen.insert((
                    t.record.contact.clone(),
                    t.record.policy.clone(),
                    t.record.started_at.timestamp_millis(),
                ))
            });
            if batch.is_empty() {
                break;
            }
            let full = batch.len() >= SWEEP_BATCH;
            self.assess_timers(&batch, now, &mut report).await?;
            // Every assessed timer's next check is now later than `now` (or none): the next
            // query reads only the ones not assessed yet.
            if !full {
                break;
            }
            batch = Vec::new();
        }
        if report.steps_queued > 0 {
            self.outbox.wake(Priority::Background);
            info!(
                assessed = report.assessed,
                steps = report.steps_queued,
                "SLA ladder steps queued"
            );
        }
        Ok(report)
    }

    async fn assess_timers(
        &self,
        timers: &[SlaTimer],
        now: DateTime<Utc>,
        report: &mut SlaSweep,
    ) -> Result<(), SyncError> {
        let ids: Vec<HubSpotId> = timers
            .iter()
            .filter_map(|t| HubSpotId::try_from(t.record.contact.clone()).ok())
            .collect();
        let rows = self.store.contacts(&ids).await?;
        let ledger = self.store.events(&ids).await?;
        let mut followups = super::followup::FollowUps::default();
        for timer in timers {
            let id = HubSpotId::try_from(timer.record.contact.clone()).ok();
            let row = id.as_ref().and_then(|i| rows.get(i));
            let policy = self.sla.policy(&timer.record.policy);
            let (Some(row), Some(policy)) = (row.filter(|r| r.removed.is_none()), policy) else {
                // Merged, deleted, or a policy no longer in the file: nothing left to time.
                let stopped = SlaTimer {
                    next_check_at: None,
                    ..timer.clone()
                };
                self.store.save_sla_timer(&stopped, &[], now).await?;
                continue;
            };
            // The timer follows the contact's owner as stored now (a pull, or a reassignment).
            let owner = row.properties.get(OWNER).cloned().or_else(|| timer.owner.clone());
            let team = self.sla.team_for(owner.as_deref());
            let mut touches: Vec<Touch> = id
                .as_ref()
                .and_then(|i| ledger.get(i))
                .map(|events| events.iter().map(Touch::from_hubspot).collect())
                .unwrap_or_default();
            touches.extend(self.store.sla_touches(&timer.record.contact).await?);
            let a = assess(policy, team, &timer.record, &touches, owner.as_deref(), now);
            let f = super::followup::FollowUp::from_assessment(&a, owner.as_deref());
            followups.add(&timer.record.contact, timer.record.started_at, f);
            let saved = SlaTimer {
                record: a.record,
                owner,
                team: Some(team.id.clone()),
                next_check_at: a.next_check,
            };
            let queued = self.store.save_sla_timer(&saved, &a.due_steps, now).await?;
            report.assessed += 1;
            report.steps_queued += queued.len() as u64;
        }
        followups.queue(self, now).await?;
        Ok(())
    }

    /// Tasks and Events logged in Salesforce on the promoted contacts with a running timer
    /// since the watermarks, kept as touches; returns the contacts that got one.
    async fn salesforce_touches(&self, now: DateTime<Utc>, report: &mut SlaSweep) -> Result<Vec<String>, SyncError> {
        let Some(p) = &self.promoter else {
            return Ok(Vec::new());
        };
        let promoted = self.store.sla_promoted().await?;
        if promoted.is_empty() {
            return Ok(Vec::new());
        }
        let since = read_watermarks(&self.store).await?;
        let records: Vec<String> = promoted
            .iter()
            .flat_map(|c| c.records.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (found, marks) = p
            .client
            .activities(&records, &since, now, &SalesforceActivityConfig::default())
            .await
            .map_err(|e| SyncError::Salesforce(e.to_string()))?;
        // Each activity goes to the contacts it is on: its Contact (`WhoId`), else the contacts
        // of its Opportunity or Account (`WhatId`).
        let mut kept: Vec<(String, Touch)> = Vec::new();
        for a in &found {
            let on = |id: &Option<String>| {
                id.as_ref().map_or_else(Vec::new, |id| {
                    promoted
                        .iter()
                        .filter(|c| c.records.contains(id))
                        .map(|c| c.contact_id.clone())
                        .collect::<Vec<_>>()
                })
            };
            let mut contacts = on(&a.who_id);
            if contacts.is_empty() {
                contacts = on(&a.what_id);
            }
            kept.extend(contacts.into_iter().map(|c| (c, a.touch.clone())));
        }
        self.store.add_sla_touches(&kept).await?;
        if marks != since {
            self.store
                .set_cursor(ACTIVITIES_CURSOR, &write_watermarks(&marks))
                .await?;
        }
        report.salesforce_touches += kept.len() as u64;
        Ok(kept
            .into_iter()
            .map(|(c, _)| c)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }
}

/// The stored watermarks: `{"task": [ms, id], "event": [ms, id]}`; none before the first read.
async fn read_watermarks(store: &Store) -> Result<ActivityWatermarks, SyncError> {
    let Some(text) = store.cursor(ACTIVITIES_CURSOR).await? else {
        return Ok(ActivityWatermarks::default());
    };
    let parsed: BTreeMap<String, (i64, String)> = serde_json::from_str(&text).map_err(|e| {
        SyncError::Salesforce(format!(
            "store cursor `{ACTIVITIES_CURSOR}` holds `{text}`, not the activities' watermarks ({e}): \
             delete that cursor to read the Tasks and Events of the running timers again"
        ))
    })?;
    let mark = |k: &str| {
        parsed.get(k).and_then(|(ms, id)| {
            Some(SalesforceWatermark {
                modstamp: Utc.timestamp_millis_opt(*ms).single()?,
                id: id.clone(),
            })
        })
    };
    Ok(ActivityWatermarks {
        task: mark("task"),
        event: mark("event"),
    })
}

fn write_watermarks(m: &ActivityWatermarks) -> String {
    let mut out: BTreeMap<&str, (i64, String)> = BTreeMap::new();
    for (k, w) in [("task", &m.task), ("event", &m.event)] {
        if let Some(w) = w {
            out.insert(k, (w.modstamp.timestamp_millis(), w.id.clone()));
        }
    }
    serde_json::to_string(&out).expect("serialisable")
}
