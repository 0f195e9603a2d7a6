//! Webhook workers: drain the inbox, a short window at a time, one evaluation per contact.
//!
//! Events are coalesced per contact; the contacts are read in one batch (with their
//! engagements), evaluated from that current snapshot (so the order events arrived in does not
//! matter), written back and promoted. Echoes of leadsync's own writes cost no read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{SyncError, SyncReport, Syncer};
use crate::hubspot::limiter::Priority;
use crate::lifecycle::HubSpotId;
use crate::store::{InboxRow, Removal};

/// Events taken from the inbox per pass.
pub const INBOX_BATCH: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    subscription_type: String,
    object_id: serde_json::Value,
    #[serde(default)]
    object_type_id: Option<String>,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default)]
    property_value: Option<String>,
    #[serde(default)]
    merged_object_ids: Vec<u64>,
    #[serde(default)]
    primary_object_id: Option<u64>,
}

/// An event ready to process: its payload read, its ids checked.
#[derive(Debug)]
struct Parsed {
    row: InboxRow,
    ev: Stored,
    /// The object id, as HubSpot writes it.
    object: String,
    id: HubSpotId,
    /// For a merge: the surviving contact and those merged into it.
    merge: Option<(HubSpotId, Vec<HubSpotId>)>,
}

/// Reads a stored event, or says why it cannot be processed (the reason kept with the dead
/// event: no property value is quoted, only the row's shape).
fn parse(row: &InboxRow) -> Result<Parsed, String> {
    let ev = serde_json::from_str::<Stored>(&row.payload)
        // serde's words can quote a value: only the error's class and place are kept.
        .map_err(|e| {
            format!(
                "inbox row {}: payload does not parse ({:?} error at line {} column {})",
                row.id,
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
    let object = match &ev.object_id {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Array(_) => "an array",
                _ => "an object",
            };
            return Err(format!(
                "inbox row {}: objectId is {kind}, expected a number or a string",
                row.id
            ));
        }
    };
    let id = HubSpotId::try_from(object.clone()).map_err(|e| format!("inbox row {}: objectId {e}", row.id))?;
    let merge = if ev.subscription_type == "contact.merge" {
        let survivor = ev.primary_object_id.map(|p| p.to_string()).unwrap_or(object.clone());
        let survivor_id =
            HubSpotId::try_from(survivor.clone()).map_err(|e| format!("inbox row {}: primaryObjectId {e}", row.id))?;
        let mut losers = Vec::new();
        for m in ev
            .merged_object_ids
            .iter()
            .map(u64::to_string)
            .filter(|m| *m != survivor)
        {
            losers.push(HubSpotId::try_from(m).map_err(|e| format!("inbox row {}: mergedObjectIds {e}", row.id))?);
        }
        Some((survivor_id, losers))
    } else {
        None
    };
    Ok(Parsed {
        row: row.clone(),
        ev,
        object,
        id,
        merge,
    })
}

/// HubSpot object type ids of the engagements leadsync scores.
fn engagement_object(type_id: &str) -> Option<&'static str> {
    match type_id {
        "0-48" => Some("calls"),
        "0-49" => Some("emails"),
        "0-47" => Some("meetings"),
        "0-46" => Some("notes"),
        "0-27" => Some("tasks"),
        _ => None,
    }
}

impl Syncer {
    /// One pass over the inbox; returns the report and how many events it took. Events whose
    /// processing fails wait and are tried again later (never dropped): a failing batch is
    /// retried contact by contact, so that one bad event does not hold the others back.
    pub async fn drain_inbox(&self, now: DateTime<Utc>) -> Result<(SyncReport, usize), SyncError> {
        // Claimed, not only read: another pass on the store (another replica's) skips them.
        let rows = self.store.inbox_claim(now, INBOX_BATCH).await?;
        if rows.is_empty() {
            return Ok((SyncReport::default(), 0));
        }
        // An event acknowledged to HubSpot that cannot be processed is set aside with its
        // reason (dead, shown by `status`), never dropped and never marked done.
        let mut dead = Vec::new();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            match parse(row) {
                Ok(p) => events.push(p),
                Err(reason) => dead.push((row.id, reason)),
            }
        }
        if !dead.is_empty() {
            warn!(events = dead.len(), first = %dead[0].1, "inbox events that cannot be processed set aside as dead");
            self.store.inbox_dead(&dead, now).await?;
        }
        if events.is_empty() {
            return Ok((SyncReport::default(), rows.len()));
        }
        let error = match self.process(&events, now).await {
            Ok(report) => {
                self.done(&events, now).await?;
                return Ok((report, rows.len()));
            }
            Err(e) => e,
        };
        if error.is_pause() {
            warn!(error = %error, events = events.len(), "inbox paused: the events wait a minute");
            let ids: Vec<i64> = events.iter().map(|p| p.row.id).collect();
            self.store
                .inbox_retry(&ids, &error.to_string(), now + chrono::Duration::minutes(1))
                .await?;
            return Ok((SyncReport::default(), rows.len()));
        }
        let mut by_contact: BTreeMap<String, Vec<Parsed>> = BTreeMap::new();
        for p in events {
            by_contact.entry(p.row.contact_id.clone()).or_default().push(p);
        }
        let mut report = SyncReport::default();
        for (contact, group) in by_contact {
            match self.process(&group, now).await {
                Ok(r) => {
                    report.add(&r);
                    self.done(&group, now).await?;
                }
                Err(e) => {
                    let attempts = group.iter().map(|p| p.row.attempts).max().unwrap_or(0);
                    let wait = chrono::Duration::seconds((5i64 << attempts.min(7)).min(600));
                    warn!(object = contact, error = %e, attempts, "webhook events wait before another try");
                    let ids: Vec<i64> = group.iter().map(|p| p.row.id).collect();
                    self.store.inbox_retry(&ids, &e.to_string(), now + wait).await?;
                }
            }
        }
        Ok((report, rows.len()))
    }

    async fn done(&self, events: &[Parsed], now: DateTime<Utc>) -> Result<(), SyncError> {
        let ids: Vec<i64> = events.iter().map(|p| p.row.id).collect();
        self.store.inbox_done(&ids, now).await?;
        let oldest = events.iter().map(|p| p.row.received_at).min().unwrap_or(now);
        metrics::histogram!("leadsync_inbox_processing_lag_seconds", super::portal::metric_labels())
            .record((now - oldest).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(())
    }

    /// Reads, decides and commits what these events are about.
    async fn process(&self, events: &[Parsed], now: DateTime<Utc>) -> Result<SyncReport, SyncError> {
        let ours: BTreeSet<&str> = super::decide::written_properties(&self.rules).into_iter().collect();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut engagements: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let mut echoes = 0;
        // Deletions and merges, decided with the batch and committed in its transaction.
        let mut told: Vec<Removal> = Vec::new();
        for p in events {
            let (ev, id, object) = (&p.ev, &p.id, p.object.clone());
            match ev.subscription_type.as_str() {
                "contact.deletion" => told.push(Removal::Deleted(id.clone())),
                // A GDPR deletion: personal data leaves the store; nothing is read or written.
                "contact.privacyDeletion" => self.store.forget(id).await?,
                // Read again: listed as active, it is restored in the commit.
                "contact.restore" => {
                    touched.insert(object);
                }
                "contact.merge" => {
                    if let Some((survivor, losers)) = &p.merge {
                        told.extend(losers.iter().map(|loser| Removal::Merged {
                            loser: loser.clone(),
                            survivor: survivor.clone(),
                        }));
                        touched.insert(survivor.as_str().to_string());
                    }
                }
                "contact.propertyChange" => {
                    let name = ev.property_name.as_deref().unwrap_or("");
                    let value = ev.property_value.as_deref().unwrap_or("");
                    // leadsync's own write coming back: nothing to read, nothing to write.
                    let own = ours.contains(name) || self.store.wrote(id, name, value).await?;
                    if own {
                        echoes += 1;
                    } else {
                        touched.insert(object);
                    }
                }
                t if t.starts_with("contact.") || t == "workflow" => {
                    touched.insert(object);
                }
                _ => {
                    // An engagement event: find its contacts.
                    let kind = ev
                        .object_type_id
                        .as_deref()
                        .and_then(engagement_object)
                        .or_else(|| ev.subscription_type.split('.').next().and_then(plural));
                    if let Some(kind) = kind {
                        engagements.entry(kind).or_default().push(object);
                    }
                }
            }
        }
        let p = Priority::RealTime;
        for (kind, ids) in engagements {
            let links = self.hubspot.associations(kind, "contacts", &ids, p).await?;
            touched.extend(links.into_values().flatten());
        }
        let mut report = SyncReport::default();
        if !touched.is_empty() || !told.is_empty() {
            let ids: Vec<String> = touched.into_iter().collect();
            let known: Vec<String> = {
                let hs: Vec<HubSpotId> = ids.iter().filter_map(|i| HubSpotId::try_from(i.clone()).ok()).collect();
                let stored = self.store.contacts(&hs).await?;
                ids.iter()
                    .filter(|i| HubSpotId::try_from((*i).clone()).is_ok_and(|h| stored.contains_key(&h)))
                    .cloned()
                    .collect()
            };
            // The contacts and the known ones' engagements (re-read: ledger ids make repeats
            // free) at once: neither read needs the other. New contacts get their engagements
            // inside `evaluate_and_save`.
            let read_contacts = async {
                if ids.is_empty() {
                    Ok(Vec::new()) // deletions alone: nothing to read
                } else {
                    self.hubspot.batch_read_contacts(&ids, &self.properties, None, p).await
                }
            };
            // Engagements the ledger holds are not read again: it would drop them as repeats.
            let read_engagements = async {
                if known.is_empty() {
                    return Ok(BTreeMap::new());
                }
                let hs: Vec<HubSpotId> = known
                    .iter()
                    .filter_map(|i| HubSpotId::try_from(i.clone()).ok())
                    .collect();
                let held: HashMap<String, HashSet<String>> = self
                    .store
                    .events(&hs)
                    .await?
                    .into_iter()
                    .map(|(c, events)| (c.as_str().to_string(), events.into_iter().map(|e| e.id).collect()))
                    .collect();
                Ok::<_, SyncError>(self.hubspot.contact_engagements_except(&known, &held, p).await?)
            };
            let read_contacts = async { Ok::<_, SyncError>(read_contacts.await?) };
            let (contacts, fresh) = tokio::try_join!(read_contacts, read_engagements)?;
            report = self.evaluate_and_save(contacts, &told, fresh, p, now, None).await?;
        }
        if echoes > 0 {
            debug!(echoes, "own writes recognised in the inbox");
        }
        info!(events = events.len(), evaluated = report.evaluated, "inbox drained");
        Ok(report)
    }
}

fn plural(object: &str) -> Option<&'static str> {
    match object {
        "call" => Some("calls"),
        "email" => Some("emails"),
        "meeting" => Some("meetings"),
        "note" => Some("notes"),
        "task" => Some("tasks"),
        _ => None,
    }
}
