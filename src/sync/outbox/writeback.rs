//! Carries out pending HubSpot writes, 100 contacts a call.
//!
//! Items are claimed (marked `sending`) before the call. An item still `sending` when leadsync
//! starts, or whose claim ran out, was cut off mid-call: it is read back (one call per 100) and
//! only re-sent if HubSpot does not hold its values, so a crash never writes the same values
//! twice.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use crate::hubspot::contacts::UpdateOutcome;
use crate::hubspot::limiter::Priority;
use crate::hubspot::types::BATCH_LIMIT;
use crate::lifecycle::HubSpotId;
use crate::store::{Lapsed, OutboxItem, OutboxKind, OutboxState};
use crate::sync::decide::WritePayload;
use crate::sync::{SyncError, Syncer};

/// Batch update calls a drain sends at once (each of up to 100 contacts): one call after
/// another, the write-back fell behind a backfill's commits, and the promotions, drained once
/// the writes are, waited for its end.
const CALLS_AT_ONCE: usize = 3;

/// One contact's items, their merged properties, and the lifecycle move if any.
type Merged<'a> = (Vec<&'a OutboxItem>, BTreeMap<String, String>, Option<(String, bool)>);

/// Which due writes a drain takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Every one.
    All,
    /// All but those of contacts whose promotion is due or under way: they go out after it,
    /// with its Salesforce ids, in one update.
    BesidePromotions,
}

/// Writes what is due (`which`), after checking the writes whose claim `lapsed`; returns how
/// many contacts were written.
pub async fn drain(
    s: &Syncer,
    priority: Priority,
    now: DateTime<Utc>,
    which: Writes,
    lapsed: Lapsed,
) -> Result<u64, SyncError> {
    recover(s, priority, now, lapsed).await?;
    let lifecycle = s.rules.output().lifecycle_property.clone();
    let mut written = 0;
    loop {
        // Claimed: another drain on the store (another replica's) skips them.
        let claim = BATCH_LIMIT * CALLS_AT_ONCE;
        let due = match which {
            Writes::All => s.store.claim(OutboxKind::HubSpotWrite, now, claim).await?,
            Writes::BesidePromotions => s.store.claim_writes_beside_promotions(now, claim).await?,
        };
        if due.is_empty() {
            return Ok(written);
        }
        // Several items may concern one contact (the engine's values, Salesforce ids, an
        // opportunity's outcome): one update per contact, merged in queue order.
        let mut by_id: BTreeMap<String, Merged> = BTreeMap::new();
        for item in &due {
            let w = match read_payload(item) {
                Ok(w) => w,
                Err(why) => {
                    warn!(
                        item = item.id,
                        "a HubSpot write whose payload does not parse kept as a dead letter"
                    );
                    s.store.failed(item, &why, OutboxState::Dead, now).await?;
                    continue;
                }
            };
            let entry = by_id.entry(item.contact_id.clone()).or_default();
            entry.0.push(item);
            entry.1.extend(w.properties);
            if w.lifecycle.is_some() {
                entry.2 = w.lifecycle;
            }
        }
        let mut updates = Vec::with_capacity(by_id.len());
        let mut backward = Vec::new();
        for (id, (_, props, life)) in by_id.iter_mut() {
            let mut sent = props.clone();
            match life {
                Some((value, false)) => {
                    sent.insert(lifecycle.clone(), value.clone());
                }
                Some((value, true)) => backward.push((id.clone(), value.clone())),
                None => {}
            }
            if let Some((value, _)) = life {
                props.insert(lifecycle.clone(), value.clone());
            }
            if !sent.is_empty() {
                updates.push((id.clone(), sent));
            }
        }
        // The claim's updates, 100 a call, sent at once: all of a contact's items are in one
        // claim and its update in one call, so no two calls in flight write one contact.
        let chunks: Vec<_> = updates.chunks(BATCH_LIMIT).collect();
        let answers =
            futures::future::join_all(chunks.iter().map(|c| s.hubspot.batch_update_contacts(c, priority))).await;
        let mut outcome = UpdateOutcome::default();
        let mut failure = None;
        let mut unsent: HashSet<&str> = HashSet::new();
        for (chunk, answer) in chunks.iter().zip(answers) {
            match answer {
                Ok(o) => {
                    outcome.updated.extend(o.updated);
                    outcome.failed.extend(o.failed);
                    outcome.updated_at.extend(o.updated_at);
                }
                Err(e) => {
                    unsent.extend(chunk.iter().map(|(id, _)| id.as_str()));
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            // The calls that landed are saved as written; the rest, and every backward move
            // (not tried), are due again in a minute.
            let retry = now + Duration::minutes(1);
            let mut done = Vec::new();
            let mut ledger = Vec::new();
            for (id, (items, props, life)) in &by_id {
                let landed = !unsent.contains(id.as_str())
                    && !matches!(life, Some((_, true)))
                    && !outcome.failed.iter().any(|(f, _)| f == id);
                for item in items {
                    if landed {
                        done.push((*item).clone());
                    } else {
                        s.store
                            .failed(item, &e.to_string(), OutboxState::Pending, retry)
                            .await?;
                    }
                }
                if landed && let Ok(hid) = HubSpotId::try_from(id.clone()) {
                    ledger.push((hid, props.clone()));
                }
            }
            s.store.record_writes_marked(&ledger, &outcome.updated_at, now).await?;
            s.store.done(&done, now).await?;
            return Err(e.into());
        }
        // A backward move (recycle) clears, then sets, in two requests, and reads it back.
        let mut backward_failed = Vec::new();
        for (id, value) in &backward {
            if let Err(e) = s
                .hubspot
                .set_lifecycle_stage(id, &lifecycle, value, true, priority)
                .await
            {
                if e.is_pause() {
                    return Err(e.into());
                }
                backward_failed.push((id.clone(), e.to_string()));
            }
        }
        let mut done = Vec::new();
        let mut ledger = Vec::new();
        for (id, (items, props, _)) in &by_id {
            if let Some((_, err)) = outcome.failed.iter().find(|(f, _)| f == id) {
                let removed = err.category.contains("OBJECT_NOT_FOUND");
                warn!(contact = %id, category = %err.category, "HubSpot refused a write; kept as a dead letter");
                if removed && let Ok(hid) = HubSpotId::try_from(id.clone()) {
                    s.store.mark_deleted(&hid).await?;
                }
                let msg = format!("{}: {}", err.category, err.message);
                for item in items {
                    s.store.failed(item, &msg, OutboxState::Dead, now).await?;
                }
            } else if let Some((_, err)) = backward_failed.iter().find(|(f, _)| f == id) {
                for item in items {
                    s.store.failed(item, err, OutboxState::Dead, now).await?;
                }
            } else {
                done.extend(items.iter().map(|i| (*i).clone()));
                if let Ok(hid) = HubSpotId::try_from(id.clone()) {
                    ledger.push((hid, props.clone()));
                }
            }
        }
        // A backward move's second request bumps `updatedAt` again: no mark, read once more.
        let mut marks = outcome.updated_at;
        marks.retain(|id, _| !backward.iter().any(|(b, _)| b == id));
        s.store.record_writes_marked(&ledger, &marks, now).await?;
        s.store.done(&done, now).await?;
        written += ledger.len() as u64;
        info!(contacts = ledger.len(), "HubSpot write-back");
    }
}

/// Items left `sending` by a crash or a stopped drain (their claim `lapsed`): done if HubSpot
/// already holds their values, else pending.
async fn recover(s: &Syncer, priority: Priority, now: DateTime<Utc>, lapsed: Lapsed) -> Result<(), SyncError> {
    let stuck = s.store.reclaim(OutboxKind::HubSpotWrite, lapsed, now).await?;
    if stuck.is_empty() {
        return Ok(());
    }
    let lifecycle = s.rules.output().lifecycle_property.clone();
    // A payload that does not parse cannot be checked against HubSpot: it becomes a dead letter
    // saying so, never "landed" (an empty payload would match any contact).
    let mut readable = Vec::with_capacity(stuck.len());
    for item in stuck {
        match read_payload(&item) {
            Ok(w) => readable.push((item, w)),
            Err(why) => {
                warn!(
                    item = item.id,
                    "a HubSpot write cut off mid-call has a corrupt payload; kept as a dead letter"
                );
                s.store.failed(&item, &why, OutboxState::Dead, now).await?;
            }
        }
    }
    for chunk in readable.chunks(BATCH_LIMIT) {
        let mut wanted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (item, w) in chunk {
            let w = w.clone();
            let props = wanted.entry(item.contact_id.clone()).or_default();
            props.extend(w.properties);
            if let Some((value, _)) = w.lifecycle {
                props.insert(lifecycle.clone(), value);
            }
        }
        let ids: Vec<String> = wanted.keys().cloned().collect();
        let mut names: Vec<String> = wanted.values().flat_map(|p| p.keys().cloned()).collect();
        names.sort();
        names.dedup();
        let current = match s.hubspot.batch_read_contacts(&ids, &names, None, priority).await {
            Ok(c) => c,
            Err(e) => {
                // Still to be checked, by the next drain.
                for (item, _) in chunk {
                    s.store.failed(item, &e.to_string(), OutboxState::Sending, now).await?;
                }
                return Err(e.into());
            }
        };
        let mut landed = Vec::new();
        let mut ledger = Vec::new();
        for (item, w) in chunk {
            let w = w.clone();
            let mut props = w.properties;
            if let Some((value, _)) = w.lifecycle {
                props.insert(lifecycle.clone(), value);
            }
            let holds = current
                .iter()
                .find(|c| c.id == item.contact_id)
                .is_some_and(|c| props.iter().all(|(k, v)| c.prop(k).unwrap_or("").trim() == v.trim()));
            if holds {
                landed.push(item.clone());
                if let Ok(hid) = HubSpotId::try_from(item.contact_id.clone()) {
                    ledger.push((hid, props.clone()));
                }
            } else {
                s.store
                    .failed(
                        item,
                        "cut off mid-call; HubSpot does not hold the values",
                        OutboxState::Pending,
                        now,
                    )
                    .await?;
            }
        }
        s.store.record_writes(&ledger, now).await?;
        s.store.done(&landed, now).await?;
        info!(
            landed = landed.len(),
            resent = chunk.len() - landed.len(),
            "writes cut off by a stop checked"
        );
    }
    Ok(())
}

/// An outbox write's payload, or a reason naming the row, what was found and what to do.
fn read_payload(item: &OutboxItem) -> Result<WritePayload, String> {
    serde_json::from_str(&item.payload).map_err(|e| {
        format!(
            "outbox row {} (hubspot_write, contact {}): payload does not parse ({:?} error at line {} column {}); \
             a newer evaluation of the contact replaces it, or fix the row and `leadsync retry --kind writeback --id {}`",
            item.id,
            item.contact_id,
            e.classify(),
            e.line(),
            e.column(),
            item.id
        )
    })
}
