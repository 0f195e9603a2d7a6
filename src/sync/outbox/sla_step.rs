//! Carries out the SLA breach ladder's steps the sweep queued (outbox kind `sla_step`, one item
//! per timer and step, queued and audited once by `Store::save_sla_timer`):
//!
//! 1. `owner_task`: a HubSpot task for the contact's owner, made once (`ensure_task`, found
//!    again by the item's key on a retry);
//! 2. `manager_task`: the same for the team's manager; `manager_webhook`: a JSON POST of ids
//!    only (no names, no emails) to the policy's URL, retried like other items: at least once,
//!    with the step's key in an `Idempotency-Key` header so the receiver drops a repeat;
//! 3. `reassign`: another available rep, chosen by the one routing (`Syncer::route_now`: caps
//!    from the store's open leads, absences, working hours; never the rep the lead leaves nor
//!    one it had), stored with its trace (`Store::record_assignment`), written to HubSpot's
//!    `hubspot_owner_id` and to the stored contact, so the timer follows the new owner, and to
//!    a promoted contact's Salesforce Contact and open Opportunity;
//! 4. `sales_rejected`: the rules' sales-rejection properties set on the stored contact and the
//!    contact re-decided from the store: the engine's own recycle path, the engine kept pure.
//!
//! An item is marked done only after its step took effect; a failure waits with a growing
//! delay, and a step that cannot be done (no owner, no manager, a payload that does not parse)
//! becomes a dead letter with its reason.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use tracing::{info, warn};

use crate::hubspot::limiter::Priority;
use crate::hubspot::tasks::HubSpotTask;
use crate::lifecycle::{HubSpotId, Stage, Status};
use crate::sla::{StepAction, Team};
use crate::store::{ContactRow, OutboxItem, OutboxKind, OutboxState, OwnerWrite};
use crate::sync::decide::{OWNER, WritePayload, decide_stored};
use crate::sync::{SyncError, Syncer};

/// Attempts before a failing step becomes a dead letter.
const MAX_ATTEMPTS: u32 = 8;

/// The notification webhook's header naming the step (its outbox key), the same on every retry.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// What `Store::save_sla_timer` queued.
#[derive(Debug, Deserialize)]
struct StepPayload {
    policy: String,
    contact: String,
    started_at: i64,
    step: usize,
    action: String,
    due_at: i64,
    owner: Option<String>,
    team: Option<String>,
}

/// Why a step did not happen now.
enum Failure {
    /// Try again later.
    Retry(String),
    /// It never will: a dead letter.
    Dead(String),
    /// HubSpot asked to pause: stop the drain, nothing counted.
    Pause(SyncError),
}

/// Carries out every due ladder step; returns how many were done.
pub async fn drain(s: &Syncer, priority: Priority, now: DateTime<Utc>) -> Result<u64, SyncError> {
    let mut done = 0;
    loop {
        let due = s.store.due(OutboxKind::SlaStep, now, 100).await?;
        if due.is_empty() {
            return Ok(done);
        }
        for item in &due {
            let outcome = match serde_json::from_str::<StepPayload>(&item.payload) {
                Ok(p) => perform(s, item, &p, priority, now).await,
                Err(e) => Err(Failure::Dead(format!("payload does not parse: {e}"))),
            };
            match outcome {
                Ok(()) => {
                    s.store.done(std::slice::from_ref(item), now).await?;
                    done += 1;
                }
                Err(Failure::Pause(e)) => return Err(e),
                Err(Failure::Dead(why)) => {
                    warn!(item = item.id, reason = %why, "an SLA ladder step kept as a dead letter");
                    s.store.failed(item, &why, OutboxState::Dead, now).await?;
                }
                Err(Failure::Retry(why)) => {
                    let (state, at) = if item.attempts + 1 >= MAX_ATTEMPTS {
                        (OutboxState::Dead, now)
                    } else {
                        (OutboxState::Pending, now + super::retry_wait(item.attempts))
                    };
                    warn!(item = item.id, reason = %why, "an SLA ladder step failed; it waits for a retry");
                    s.store.failed(item, &why, state, at).await?;
                }
            }
        }
    }
}

async fn perform(
    s: &Syncer,
    item: &OutboxItem,
    p: &StepPayload,
    priority: Priority,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let store = |e: crate::store::StoreError| Failure::Retry(e.to_string());
    let id = HubSpotId::try_from(p.contact.clone()).map_err(Failure::Dead)?;
    let action = s
        .sla
        .policy(&p.policy)
        .and_then(|policy| policy.ladder.get(p.step))
        .map(|step| step.action.clone())
        .ok_or_else(|| Failure::Dead(format!("policy {} has no ladder step {}", p.policy, p.step)))?;
    let row = s
        .store
        .contacts(std::slice::from_ref(&id))
        .await
        .map_err(store)?
        .remove(&id);
    // The owner as stored now (the timer follows it), else the one the sweep saw.
    let owner = row
        .as_ref()
        .and_then(|r| r.properties.get(OWNER).cloned())
        .or_else(|| p.owner.clone());
    let team = p
        .team
        .as_deref()
        .and_then(|t| s.sla.teams.iter().find(|x| x.id == t))
        .unwrap_or_else(|| s.sla.team_for(owner.as_deref()));
    let due = Utc.timestamp_millis_opt(p.due_at).single().unwrap_or(now);
    match action {
        StepAction::OwnerTask => {
            let owner = owner.ok_or_else(|| Failure::Dead("the contact has no HubSpot owner".into()))?;
            task(s, item, p, &owner, "first touch overdue", due, priority).await
        }
        StepAction::ManagerTask => {
            let manager = team
                .manager
                .clone()
                .ok_or_else(|| Failure::Dead(format!("team {} has no manager", team.id)))?;
            task(
                s,
                item,
                p,
                &manager,
                "a lead of your team is not followed up",
                due,
                priority,
            )
            .await
        }
        StepAction::ManagerWebhook(url) => {
            // Ids only: no name, email or other personal data leaves in a notification.
            let body = serde_json::json!({
                "event": "sla_breach",
                "policy": p.policy,
                "contact": p.contact,
                "started_at": p.started_at,
                "step": p.step,
                "action": p.action,
                "due_at": p.due_at,
                "owner": owner,
                "team": team.id,
                "key": item.key,
            });
            // At least once, with a key: a crash between the answer and the item marked done
            // sends it again with the same `Idempotency-Key` (the step's outbox key), so the
            // receiver can drop the repeat.
            let sent = s
                .notify
                .post(url.clone())
                .header(IDEMPOTENCY_KEY, &item.key)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    Err(Failure::Retry(format!("notification webhook answered {}", r.status())))
                }
                Ok(r) => Err(Failure::Dead(format!("notification webhook answered {}", r.status()))),
                Err(e) => Err(Failure::Retry(format!("notification webhook: {e}"))),
            }
        }
        StepAction::Reassign => reassign(s, item, p, row.as_ref(), team, owner.as_deref(), now).await,
        StepAction::SalesRejected(reason) => reject(s, &id, &reason, now).await,
    }
}

async fn task(
    s: &Syncer,
    item: &OutboxItem,
    p: &StepPayload,
    owner: &str,
    what: &str,
    due: DateTime<Utc>,
    priority: Priority,
) -> Result<(), Failure> {
    let task = HubSpotTask {
        key: item.key.clone(),
        contact_id: p.contact.clone(),
        owner_id: owner.to_string(),
        subject: format!("SLA {}: {what}", p.policy),
        body: format!(
            "leadsync: the first touch of this lead was due {} (policy {}). Call, email or meet them now.",
            due.to_rfc3339(),
            p.policy
        ),
        due,
    };
    match s.hubspot.ensure_task(&task, priority).await {
        Ok(t) => {
            info!(contact = %p.contact, task = %t.id, created = t.created, step = p.step, "SLA ladder task");
            Ok(())
        }
        Err(e) if e.is_pause() => Err(Failure::Pause(e.into())),
        Err(e) => Err(Failure::Retry(e.to_string())),
    }
}

/// Another available rep, chosen by the one routing ([`Syncer::route_now`]: the roster, caps
/// from [`crate::store::Store::open_leads`], absences, working hours and rotation of the
/// promotion path), away from the rep the lead leaves and from the reps it had before. The
/// choice and its trace are saved by [`crate::store::Store::record_assignment`] in one
/// transaction with the new HubSpot owner (folded into the stored contact, its write queued),
/// so the timer follows the new owner; a promoted contact's Salesforce Contact and open
/// Opportunity get the new owner too. A retry (the step's assignment already recorded, at or
/// after the step was queued) routes nothing again and re-sends only what may not have
/// arrived: the same owner, which changes nothing more.
async fn reassign(
    s: &Syncer,
    item: &OutboxItem,
    p: &StepPayload,
    row: Option<&ContactRow>,
    team: &Team,
    owner: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let store = |e: crate::store::StoreError| Failure::Retry(e.to_string());
    let Some(row) = row.filter(|r| r.removed.is_none()) else {
        return Ok(()); // gone from HubSpot: nobody to reassign
    };
    let id = &row.contact_id;
    let before = s.store.assignments(id).await.map_err(store)?;
    let hubspot_owner_of = |user: &str| {
        s.sla
            .teams
            .iter()
            .find_map(|t| t.member(user))
            .and_then(|m| m.hubspot_owner.clone())
    };
    let chosen = match before.iter().rev().find(|a| a.at >= item.created_at) {
        Some(done) => done.owner.clone(),
        None => {
            let mut excluded: Vec<String> = before.into_iter().map(|a| a.owner).collect();
            excluded.extend(
                owner
                    .and_then(|o| team.member(o))
                    .and_then(|m| m.salesforce_user.clone()),
            );
            let routed = match s.route_now(id, &excluded, now).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Failure::Retry(e.to_string())),
            };
            let Some(chosen) = routed.assignment.as_ref().map(|a| a.owner.clone()) else {
                return Err(Failure::Retry(format!(
                    "nobody of team {} is available and it has no fallback",
                    team.id
                )));
            };
            // A fallback queue has no HubSpot owner: the lead keeps its HubSpot owner.
            let props: Option<BTreeMap<String, String>> =
                hubspot_owner_of(&chosen).map(|o| [(OWNER.to_string(), o)].into());
            let payload = props.as_ref().map(|props| {
                serde_json::to_string(&WritePayload {
                    properties: props.clone(),
                    lifecycle: None,
                })
                .expect("serialisable")
            });
            let key = format!("hubspot:{id}:owner");
            let write = props
                .as_ref()
                .zip(payload.as_deref())
                .map(|(properties, payload)| OwnerWrite {
                    properties,
                    key: &key,
                    payload,
                });
            s.store
                .record_assignment(id, &chosen, &routed.trace, write.as_ref(), now)
                .await
                .map_err(store)?;
            chosen
        }
    };
    // The timer follows the new owner from now on.
    if let Some(new_owner) = hubspot_owner_of(&chosen) {
        for mut t in s.store.sla_timers(id.as_str()).await.map_err(store)? {
            if t.record.policy == p.policy
                && t.record.started_at.timestamp_millis() == p.started_at
                && t.owner.as_deref() != Some(new_owner.as_str())
            {
                t.owner = Some(new_owner.clone());
                s.store.save_sla_timer(&t, &[], now).await.map_err(store)?;
            }
        }
    }
    salesforce_owner(s, row, &chosen).await?;
    info!(contact = %id, owner = %chosen, "SLA reassignment");
    Ok(())
}

/// A promoted contact's Salesforce Contact and open Opportunity get the new owner (a user;
/// a queue owns neither), through the Salesforce client.
async fn salesforce_owner(s: &Syncer, row: &ContactRow, owner: &str) -> Result<(), Failure> {
    let (Some(promoter), Some(link)) = (s.promoter.as_ref(), row.state.salesforce.as_ref()) else {
        return Ok(());
    };
    if !owner.starts_with("005") {
        return Ok(());
    }
    let open = row.state.stage < Some(Stage::Customer) && row.state.status != Status::Lost;
    let mut records: Vec<(&str, &str)> = Vec::new();
    records.extend(link.contact_id.as_deref().map(|c| ("Contact", c)));
    records.extend(
        link.opportunity_id
            .as_deref()
            .filter(|_| open)
            .map(|o| ("Opportunity", o)),
    );
    match promoter.client.set_owner(&records, owner).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_pause() => Err(Failure::Retry(format!("Salesforce asks to wait: {e}"))),
        Err(e) => Err(Failure::Retry(format!("Salesforce owner change: {e}"))),
    }
}

/// Sales-rejected with `reason`: the rules' rejection properties set on the stored contact,
/// which is then re-decided from the store, so the engine recycles it as it would a rep's
/// rejection.
async fn reject(s: &Syncer, id: &HubSpotId, reason: &str, now: DateTime<Utc>) -> Result<(), Failure> {
    let store = |e: crate::store::StoreError| Failure::Retry(e.to_string());
    let Some(rej) = s.rules.sales_rejection.as_ref() else {
        return Err(Failure::Dead("the rules have no [sales_rejection]".into()));
    };
    let props: BTreeMap<String, String> = [
        (rej.property.clone(), rej.value.clone()),
        (rej.reason_property.clone(), reason.to_string()),
    ]
    .into();
    let _held = s.evaluating().await;
    // A rejection the rules do not take at the contact's stage (an SQL, say) would be stored and
    // ignored by the engine: the step is refused, visibly, instead of being reported done.
    let before = s.store.contacts(std::slice::from_ref(id)).await.map_err(store)?;
    let stage = before.get(id).and_then(|r| r.state.stage);
    if let Some(st) = stage.filter(|st| !rej.applies_at.contains(st)) {
        let at: Vec<String> = rej
            .applies_at
            .iter()
            .map(|st| format!("{st:?}").to_lowercase())
            .collect();
        return Err(Failure::Dead(format!(
            "sales-rejected does not apply at stage {} (the rules' [sales_rejection] applies_at: {}): \
             end this policy's ladder before it, or let the rules take the rejection there",
            format!("{st:?}").to_lowercase(),
            at.join(", ")
        )));
    }
    s.store.fold_properties(&[(id.clone(), props)]).await.map_err(store)?;
    let rows = s.store.contacts(std::slice::from_ref(id)).await.map_err(store)?;
    let Some(row) = rows.get(id).filter(|r| r.removed.is_none()) else {
        return Ok(()); // gone from HubSpot: nothing to recycle
    };
    let ledger = s.store.events(std::slice::from_ref(id)).await.map_err(store)?;
    let e = decide_stored(
        &s.rules,
        &s.sla,
        row,
        ledger.get(id).map_or(&[][..], Vec::as_slice),
        now,
    );
    s.store.commit(&[e], None).await.map_err(store)?;
    info!(contact = %id, reason, "SLA: sales-rejected");
    Ok(())
}
