//! Carries out the SLA breach ladder's steps the sweep queued (outbox kind `sla_step`, one item
//! per timer and step, queued and audited once by `Store::save_sla_timer`):
//!
//! 1. `owner_task`: a HubSpot task for the contact's owner, made once (`ensure_task`, found
//!    again by the item's key on a retry);
//! 2. `manager_task`: the same for the team's manager; `manager_webhook`: a JSON POST of ids
//!    only (no names, no emails) to the policy's URL, retried like other items: at least once,
//!    with the step's key in an `Idempotency-Key` header so the receiver drops a repeat;
//! 3. `reassign`: another available rep of the team, chosen by `route_traced` (caps, absences,
//!    working hours; never the rep the lead leaves), written to HubSpot's `hubspot_owner_id` and
//!    to the stored contact, so the timer follows the new owner;
//! 4. `sales_rejected`: the rules' sales-rejection properties set on the stored contact and the
//!    contact re-decided from the store: the engine's own recycle path, the engine kept pure.
//!
//! An item is marked done only after its step took effect; a failure waits with a growing
//! delay, and a step that cannot be done (no owner, no manager, a payload that does not parse)
//! becomes a dead letter with its reason.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Deserialize;
use tracing::{info, warn};

use crate::hubspot::limiter::Priority;
use crate::hubspot::tasks::HubSpotTask;
use crate::lifecycle::HubSpotId;
use crate::salesforce::routing::{Context, Lead, route_traced};
use crate::sla::{StepAction, Team};
use crate::store::{OutboxItem, OutboxKind, OutboxState};
use crate::sync::decide::{OWNER, WritePayload, decide_stored};
use crate::sync::{SyncError, Syncer};

/// Attempts before a failing step becomes a dead letter.
const MAX_ATTEMPTS: u32 = 8;

/// The round robin's position for reassignments, kept across restarts.
const REASSIGN_POSITION: &str = "sla.reassign.position";

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
                        (
                            OutboxState::Pending,
                            now + Duration::seconds(30 * (1 << item.attempts.min(6))),
                        )
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
        StepAction::Reassign => reassign(s, p, &id, team, owner.as_deref(), now).await,
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

/// Another available rep of the team: HubSpot's owner written (the outbox's write-back) and
/// the stored contact updated in the same call, so the next sweep times the new owner.
async fn reassign(
    s: &Syncer,
    p: &StepPayload,
    id: &HubSpotId,
    team: &Team,
    owner: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let store = |e: crate::store::StoreError| Failure::Retry(e.to_string());
    // Open leads per rep: the contacts whose SLA timer still runs, by HubSpot owner.
    let by_owner = s.store.sla_open_by_owner().await.map_err(store)?;
    let open: HashMap<String, u32> = team
        .members
        .iter()
        .filter_map(|m| {
            let n = m.hubspot_owner.as_ref().and_then(|h| by_owner.get(h)).copied()?;
            Some((m.salesforce_user.clone()?, n))
        })
        .collect();
    let leaving = owner
        .and_then(|o| team.member(o))
        .and_then(|m| m.salesforce_user.clone());
    let ctx = Context {
        current_owner: leaving.as_deref(),
        reroute: true,
        fallback: team.fallback_owner.as_deref(),
        ..Context::default()
    };
    let position = s.store.counter(REASSIGN_POSITION).await.map_err(store)?;
    let routed = route_traced(&Lead::default(), &[], &team.reps(now, &open), &ctx, position);
    s.store
        .set_counter(REASSIGN_POSITION, position + 1)
        .await
        .map_err(store)?;
    let Some(chosen) = routed.assignment else {
        return Err(Failure::Retry(format!(
            "no rep of team {} is available and it has no fallback",
            team.id
        )));
    };
    // A fallback queue has no HubSpot owner: the lead keeps its HubSpot owner, and the step
    // is done (the queue is Salesforce's).
    let Some(new_owner) = team
        .members
        .iter()
        .find(|m| m.salesforce_user.as_deref() == Some(chosen.owner.as_str()))
        .and_then(|m| m.hubspot_owner.clone())
    else {
        info!(contact = %id, queue = %chosen.owner, "SLA reassignment: nobody available, the fallback takes it");
        return Ok(());
    };
    let props: BTreeMap<String, String> = [(OWNER.to_string(), new_owner.clone())].into();
    let payload = serde_json::to_string(&WritePayload {
        properties: props.clone(),
        lifecycle: None,
    })
    .expect("serialisable");
    s.store.fold_properties(&[(id.clone(), props)]).await.map_err(store)?;
    s.store
        .enqueue(
            OutboxKind::HubSpotWrite,
            &format!("hubspot:{id}:owner"),
            id.as_str(),
            &payload,
            now,
        )
        .await
        .map_err(store)?;
    // The timer follows the new owner from now on.
    for mut t in s.store.sla_timers(id.as_str()).await.map_err(store)? {
        if t.record.policy == p.policy && t.record.started_at.timestamp_millis() == p.started_at {
            t.owner = Some(new_owner.clone());
            s.store.save_sla_timer(&t, &[], now).await.map_err(store)?;
        }
    }
    info!(contact = %id, owner = %new_owner, "SLA reassignment");
    Ok(())
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
