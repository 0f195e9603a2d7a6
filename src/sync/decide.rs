//! From what was pulled and what was stored to what must be saved: snapshots in, `Evaluated`
//! out, and for a whole pulled batch one [`Plan`] ([`decide_batch`]: removals, merges, restores
//! and evaluations). No IO here: the callers read HubSpot and the store, and commit the plan.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hubspot::analytics::{CONVERSION_PROPERTIES, COUNTERS, Counter, conversion_event, events_from_counter};
use crate::hubspot::behaviour::same_submission;
use crate::hubspot::types::HubSpotObject;
use crate::lifecycle::{
    Action, Change, Decision, Event, EventKind, HubSpotId, Rules, Snapshot, evaluate, evaluate_signalled, signals,
};
use crate::sla::{SlaFile, SlaRecord, assess};
use crate::store::{ContactRow, Evaluated, OutboxKind, Plan, Removal, SlaTimer, merged_state};
use crate::sync::outbox::owner_alert::alert_items;

/// The contact property naming its HubSpot owner: whose SLA clock runs, and in which team.
pub const OWNER: &str = "hubspot_owner_id";

/// A HubSpot write the outbox carries out: properties, then the lifecycle stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WritePayload {
    /// Property name → value (empty clears).
    pub properties: BTreeMap<String, String>,
    /// HubSpot's lifecycle stage value and whether it moves backward (clear, then set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<(String, bool)>,
}

/// What a promotion needs, frozen when the decision was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotePayload {
    /// Recycle cycle the promotion belongs to (a recycled lead can be promoted again).
    pub cycle: u32,
    /// Contact properties.
    pub contact: BTreeMap<String, String>,
    /// Company id, when the contact has one.
    pub company_id: Option<String>,
    /// Company properties.
    pub company: BTreeMap<String, String>,
}

/// The leadsync properties the engine writes (HubSpot's lifecycle stage aside).
pub fn written_properties(rules: &Rules) -> [&str; 7] {
    let out = rules.output();
    [
        &out.stage,
        &out.status,
        &out.fit_score,
        &out.engagement_score,
        &out.grade,
        &out.reason,
        &out.rules_version,
    ]
    .map(String::as_str)
}

/// The contact properties a sync reads: what the rules read, what leadsync writes (to write
/// only differences), the behaviour counters, and what Salesforce promotion maps.
pub fn contact_properties(rules: &Rules, extra: &[String]) -> Vec<String> {
    let mut props: Vec<String> = rules.properties.keys().cloned().collect();
    props.push(rules.output().lifecycle_property.clone());
    props.extend(written_properties(rules).map(str::to_string));
    for c in COUNTERS {
        props.push(c.count.to_string());
        props.push(c.last_at.to_string());
    }
    props.extend(CONVERSION_PROPERTIES.iter().map(|p| p.to_string()));
    props.extend(super::behaviour::PROPERTIES.iter().map(|p| p.to_string()));
    props.extend(["lastmodifieddate".to_string(), "hs_object_id".to_string()]);
    props.push(MERGED_IDS.to_string());
    props.push(OWNER.to_string());
    props.extend(extra.iter().cloned());
    props.sort();
    props.dedup();
    props
}

/// A pulled contact: HubSpot's current values, the company, events found in this pull.
#[derive(Debug, Clone)]
pub struct PulledContact {
    /// HubSpot's record.
    pub contact: HubSpotObject,
    /// Company id and properties, when the pull read them.
    pub company: Option<(String, BTreeMap<String, String>)>,
    /// Engagement and behaviour events read in this pull.
    pub events: Vec<Event>,
    /// The analytics counters turned into events (those no event-by-event API replaces).
    pub counters: Vec<Counter>,
}

/// Properties of a HubSpot record without the empty ones.
pub fn known_properties(o: &HubSpotObject) -> BTreeMap<String, String> {
    o.properties
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect()
}

/// Evaluates one contact from HubSpot's current values, the stored state and ledger, and this
/// pull's events. Returns what to save.
pub fn decide_pulled(
    rules: &Rules,
    sla: &SlaFile,
    pulled: PulledContact,
    stored: Option<&ContactRow>,
    ledger: &[Event],
    now: DateTime<Utc>,
) -> Option<Evaluated> {
    let id = HubSpotId::try_from(pulled.contact.id.clone()).ok()?;
    let properties = newest_properties(known_properties(&pulled.contact), stored);
    let (company_id, company) = match pulled.company {
        Some((cid, props)) => (Some(cid), props),
        None => stored.map_or((None, BTreeMap::new()), |s| (s.company_id.clone(), s.company.clone())),
    };

    // Behaviour summarised on the contact: counters and the latest conversion become events
    // whose ids make a re-read count nothing twice.
    let mut fresh = pulled.events;
    for c in &pulled.counters {
        let before = stored
            .and_then(|s| s.properties.get(c.count))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v.max(0.0) as u64);
        fresh.extend(events_from_counter(
            id.as_str(),
            c,
            before,
            properties.get(c.count).map(String::as_str),
            properties.get(c.last_at).map(String::as_str),
        ));
    }
    let p = |k: &str| properties.get(k).map(String::as_str);
    fresh.extend(conversion_event(
        id.as_str(),
        p(CONVERSION_PROPERTIES[0]),
        p(CONVERSION_PROPERTIES[1]),
        p(CONVERSION_PROPERTIES[2]),
    ));

    // An event counts once: by id, and a form submission also against its twin from the other
    // source (forms API, conversion properties), never against another form of the same time.
    let known: HashSet<&str> = ledger.iter().map(|e| e.id.as_str()).collect();
    let submitted: Vec<&Event> = ledger.iter().filter(|e| e.kind == EventKind::FormSubmission).collect();
    let mut new_events: Vec<Event> = Vec::new();
    for e in fresh {
        let repeated = known.contains(e.id.as_str())
            || new_events.iter().any(|n| n.id == e.id)
            || (e.kind == EventKind::FormSubmission
                && submitted
                    .iter()
                    .copied()
                    .chain(&new_events)
                    .any(|n| same_submission(n, &e)));
        if !repeated {
            new_events.push(e);
        }
    }
    let mut events = ledger.to_vec();
    events.extend(new_events.iter().cloned());
    let seen = match stored {
        Some(_) => Seen::Before,
        None => Seen::First(events.iter().map(|e| e.at).filter(|at| *at <= now).max()),
    };

    let snapshot = Snapshot {
        contact_id: id.clone(),
        properties: properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        events,
        state: stored.map(|s| s.state.clone()).unwrap_or_default(),
    };
    // Buying signals of the new events: a lost contact showing one the rules name comes back
    // (recycled), and a contact in sales' hands gets its owner told (an outbox item, no state).
    let fired = signals(rules, &snapshot, &new_events, now);
    let decision = evaluate_signalled(rules, &snapshot, &fired, now);
    let alerts = alert_items(&id, &snapshot.state, &decision.state, &fired, now);
    let context = context_item(rules, &decision, &snapshot.events, new_events.len());
    let mut e = saved(sla, &decision, seen, properties, company_id, company, new_events);
    e.outbox.extend(alerts);
    e.outbox.extend(context);
    Some(e)
}

/// HubSpot's values to decide from: those pulled, unless the stored row holds a later
/// `lastmodifieddate`. Two passes whose pulls overlap (the scheduled cycle and a webhook's) can
/// commit out of order, and the older snapshot may still show a stage write of leadsync's that
/// the newer one saw land: judged against the newer state, it would look like a person moving
/// the contact back (a recycle nobody asked for). The newer values stored are HubSpot's present.
fn newest_properties(pulled: BTreeMap<String, String>, stored: Option<&ContactRow>) -> BTreeMap<String, String> {
    let modified = |p: &BTreeMap<String, String>| {
        p.get("lastmodifieddate")
            .and_then(|v| crate::hubspot::types::parse_time(v))
    };
    match stored {
        Some(s) if matches!((modified(&pulled), modified(&s.properties)), (Some(a), Some(b)) if a < b) => {
            s.properties.clone()
        }
        _ => pulled,
    }
}

/// What to save for a decision.
fn saved(
    sla: &SlaFile,
    decision: &Decision<'_>,
    seen: Seen,
    properties: BTreeMap<String, String>,
    company_id: Option<String>,
    company: BTreeMap<String, String>,
    new_events: Vec<Event>,
) -> Evaluated {
    Evaluated {
        contact_id: decision.contact_id.clone(),
        at: decision.at,
        outbox: outbox_items(decision, &properties, company_id.as_deref(), &company),
        sla_timers: sla_starts(sla, decision, seen, properties.get(OWNER).map(String::as_str)),
        properties,
        company_id,
        company,
        fit: decision.fit.value,
        engagement: decision.engagement.value,
        grade: decision.grade.clone(),
        rules: format!("{} ({})", decision.rules_version, decision.rules_hash),
        transitions: decision.transitions.clone(),
        state: decision.state.clone(),
        new_events,
    }
}

/// The ids whose stored rows and ledgers [`decide_batch`] needs for these pulled contacts and
/// the removals webhooks told: theirs, and those of the contacts merged into them.
pub fn stored_ids(contacts: &[HubSpotObject], told: &[Removal]) -> Vec<HubSpotId> {
    let mut ids: Vec<HubSpotId> = contacts
        .iter()
        .filter_map(|c| HubSpotId::try_from(c.id.clone()).ok())
        .collect();
    ids.extend(merges(contacts).into_iter().map(|(loser, _)| loser));
    for r in told {
        match r {
            Removal::Deleted(id) | Removal::Restored(id) => ids.push(id.clone()),
            Removal::Merged { loser, survivor } => ids.extend([loser.clone(), survivor.clone()]),
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// (loser, survivor) of every merge the survivors' `hs_merged_object_ids` tell.
fn merges<'a>(contacts: impl IntoIterator<Item = &'a HubSpotObject>) -> Vec<(HubSpotId, HubSpotId)> {
    contacts
        .into_iter()
        .filter(|c| !c.archived)
        .filter_map(|c| Some((HubSpotId::try_from(c.id.clone()).ok()?, c)))
        .flat_map(|(survivor, c)| {
            merged_ids(c)
                .into_iter()
                .filter(|l| *l != survivor)
                .map(|l| (l, survivor.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Decides one pulled batch against what the store holds (`stored` and `ledger`, read for
/// [`stored_ids`]): the merges the survivors tell or a webhook `told` (the loser's ledger and,
/// when it had gone further, its state continue in the survivor, which is evaluated as merged),
/// the contacts HubSpot lists as archived or a webhook told deleted (deleted once), those listed
/// as active again after a deletion (restored), and every active contact's evaluation. A
/// contact merged away or erased is never evaluated again. What HubSpot lists as active wins
/// over a deletion told earlier. [`crate::store::Store::commit_plan`] applies the plan in one
/// transaction.
pub fn decide_batch(
    rules: &Rules,
    sla: &SlaFile,
    pulled: Vec<PulledContact>,
    told: &[Removal],
    mut stored: HashMap<HubSpotId, ContactRow>,
    mut ledger: HashMap<HubSpotId, Vec<Event>>,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let told_merges = told.iter().filter_map(|r| match r {
        Removal::Merged { loser, survivor } => Some((loser.clone(), survivor.clone())),
        _ => None,
    });
    let mut all_merges = merges(pulled.iter().map(|p| &p.contact));
    for m in told_merges {
        if !all_merges.contains(&m) {
            all_merges.push(m);
        }
    }
    for (loser, survivor) in all_merges {
        let Some(row) = stored.get(&loser) else {
            continue; // never seen: nothing of it to move
        };
        if row.merged_into.as_deref() == Some(survivor.as_str()) || row.removed.as_deref() == Some("privacy") {
            continue; // already merged (the webhook came first), or erased
        }
        let loser_state = row.state.clone();
        if let Some(s) = stored.get_mut(&survivor) {
            s.state = merged_state(&s.state, &loser_state).clone();
        }
        let moved = ledger.get(&loser).cloned().unwrap_or_default();
        let into = ledger.entry(survivor.clone()).or_default();
        for e in moved {
            if !into.iter().any(|k| k.id == e.id) {
                into.push(e);
            }
        }
        plan.removals.push(Removal::Merged { loser, survivor });
    }
    let (active, archived): (Vec<PulledContact>, Vec<PulledContact>) =
        pulled.into_iter().partition(|p| !p.contact.archived);
    let listed: HashSet<&str> = active.iter().map(|p| p.contact.id.as_str()).collect();
    let told_deleted = told.iter().filter_map(|r| match r {
        Removal::Deleted(id) if !listed.contains(id.as_str()) => Some(id.clone()),
        _ => None,
    });
    let deleted: Vec<HubSpotId> = archived
        .iter()
        .filter_map(|p| HubSpotId::try_from(p.contact.id.clone()).ok())
        .chain(told_deleted)
        .collect();
    // Deleted in HubSpot: once (a contact already removed, merged above or by a webhook, stays
    // as it is).
    for id in deleted {
        if stored.get(&id).is_some_and(|row| row.removed.is_none())
            && !plan
                .removals
                .iter()
                .any(|m| matches!(m, Removal::Merged { loser, .. } | Removal::Deleted(loser) if *loser == id))
        {
            plan.removals.push(Removal::Deleted(id));
        }
    }
    let empty = Vec::new();
    for p in active {
        let Ok(id) = HubSpotId::try_from(p.contact.id.clone()) else {
            continue;
        };
        let row = stored.get(&id);
        match row.and_then(|r| r.removed.as_deref()) {
            // Merged away or erased on request: never evaluated again.
            Some("merged" | "privacy") => continue,
            // HubSpot lists it as active again: it was restored.
            Some(_) => plan.removals.push(Removal::Restored(id.clone())),
            None => {}
        }
        if let Some(e) = decide_pulled(rules, sla, p, row, ledger.get(&id).unwrap_or(&empty), now) {
            plan.evaluated.push(e);
        }
    }
    plan
}

/// Re-evaluates a stored contact from the store alone (nightly decay, timers, a rules change).
pub fn decide_stored(
    rules: &Rules,
    sla: &SlaFile,
    row: &ContactRow,
    ledger: &[Event],
    now: DateTime<Utc>,
) -> Evaluated {
    decide_stored_owned(rules, sla, row.clone(), ledger.to_vec(), now).evaluated
}

/// [`decide_stored`]'s decision of a contact, and whether it changes nothing stored but its
/// time.
pub struct Rescored {
    /// What to save.
    pub evaluated: Evaluated,
    /// Same state and scores, and nothing for the audit, the outbox or the SLA: only
    /// `evaluated_at` would change.
    pub settled: bool,
}

/// [`decide_stored`] of a row and ledger the caller gives up (the rescore's), so that neither
/// is copied: the events, the state and the properties move into the snapshot and the result.
pub fn decide_stored_owned(
    rules: &Rules,
    sla: &SlaFile,
    row: ContactRow,
    ledger: Vec<Event>,
    now: DateTime<Utc>,
) -> Rescored {
    let ContactRow {
        contact_id,
        state,
        properties,
        company_id,
        company,
        fit,
        engagement,
        grade,
        ..
    } = row;
    let snapshot = Snapshot {
        contact_id,
        properties: properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        events: ledger,
        state,
    };
    let decision = evaluate(rules, &snapshot, now);
    let mut e = saved(
        sla,
        &decision,
        Seen::Before,
        properties,
        company_id,
        company,
        Vec::new(),
    );
    e.outbox.extend(context_item(rules, &decision, &snapshot.events, 0));
    let settled = e.state == snapshot.state
        && e.fit == fit
        && e.engagement == engagement
        && e.grade == grade
        && e.transitions.is_empty()
        && e.outbox.is_empty()
        && e.sla_timers.is_empty();
    Rescored { evaluated: e, settled }
}

/// The contact's marketing context for Salesforce, when the decision queues it
/// ([`super::context::queued`]).
fn context_item(
    rules: &Rules,
    d: &Decision<'_>,
    events: &[Event],
    new_events: usize,
) -> Option<(OutboxKind, String, String)> {
    let out = rules.output();
    let decayed = [
        out.engagement_score.as_str(),
        out.grade.as_str(),
        out.rules_version.as_str(),
    ];
    super::context::queued(d, new_events, &decayed).then(|| {
        let values = super::context::ContextValues::of(d, events);
        (
            OutboxKind::SalesforceContext,
            super::context::context_key(&d.contact_id),
            serde_json::to_string(&values).expect("serialisable"),
        )
    })
}

/// How leadsync came to see the stage a decision puts a contact in, for the SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Stored before this decision: a stage it enters now is a move leadsync watched.
    Before,
    /// Seen for the first time (a backfill, the first cycle after install, a new contact): the
    /// time of its latest activity, if it has any.
    First(Option<DateTime<Utc>>),
}

/// The SLA timers a decision starts: the contact moved into a stage (by a shortcut or not),
/// and each policy of that stage and path starts its clock, in the calendar of the owner's
/// team, assessed once so its next check is known.
///
/// Only a stage entered now starts a clock. A move leadsync watched ([`Seen::Before`]) starts
/// it at the decision's time. A contact seen for the first time may have sat at that stage
/// long before leadsync ran, so its clock starts at its latest activity (the demo request that
/// just arrived), and only when that activity is fresh: its first touch is not yet due now.
/// A backfill of leads waiting since before leadsync starts no timer, so no ladder step.
pub fn sla_starts(sla: &SlaFile, d: &Decision<'_>, seen: Seen, owner: Option<&str>) -> Vec<SlaTimer> {
    let started_at = match seen {
        Seen::Before => d.at,
        Seen::First(Some(latest)) => latest.min(d.at),
        Seen::First(None) => return Vec::new(),
    };
    let team = sla.team_for(owner);
    d.transitions
        .iter()
        .filter_map(|t| match t.change {
            Change::Stage { to, .. } => Some(to),
            _ => None,
        })
        .flat_map(|stage| sla.policies_for(stage, d.via_shortcut))
        .filter_map(|policy| {
            let record = SlaRecord::start(policy, team, d.contact_id.as_str(), started_at)?;
            if record.due_at <= d.at && seen != Seen::Before {
                return None; // waiting since before leadsync saw it: not a fresh entry
            }
            let next_check_at = assess(policy, team, &record, &[], owner, d.at).next_check;
            Some(SlaTimer {
                record,
                owner: owner.map(str::to_string),
                team: Some(team.id.clone()),
                next_check_at,
            })
        })
        .collect()
}

/// The outbox items a decision asks for, keyed so that saving them twice adds nothing.
fn outbox_items(
    d: &Decision<'_>,
    contact: &BTreeMap<String, String>,
    company_id: Option<&str>,
    company: &BTreeMap<String, String>,
) -> Vec<(OutboxKind, String, String)> {
    let mut items = Vec::new();
    let mut write = WritePayload::default();
    for a in &d.actions {
        match a {
            Action::WriteHubSpot { properties } => write.properties.extend(properties.clone()),
            Action::SetLifecycleStage { value, backward } => write.lifecycle = Some((value.clone(), *backward)),
            Action::PromoteToSalesforce => {
                let payload = PromotePayload {
                    cycle: d.state.recycle_count,
                    contact: contact.clone(),
                    company_id: company_id.map(str::to_string),
                    company: company.clone(),
                };
                items.push((
                    OutboxKind::Promote,
                    promote_key(&d.contact_id, d.state.recycle_count),
                    serde_json::to_string(&payload).expect("serialisable"),
                ));
            }
        }
    }
    if write != WritePayload::default() {
        items.push((
            OutboxKind::HubSpotWrite,
            write_key(&d.contact_id),
            serde_json::to_string(&write).expect("serialisable"),
        ));
    }
    items
}

/// The one pending HubSpot write of a contact.
pub fn write_key(id: &HubSpotId) -> String {
    format!("hubspot:{id}")
}

/// The one promotion of a contact in a recycle cycle.
pub fn promote_key(id: &HubSpotId, cycle: u32) -> String {
    format!("promote:{id}:{cycle}")
}

/// HubSpot's property on a merge's survivor listing the ids merged into it (`;`-separated).
pub const MERGED_IDS: &str = "hs_merged_object_ids";

/// The contacts merged into this one, as HubSpot lists them.
fn merged_ids(c: &HubSpotObject) -> Vec<HubSpotId> {
    c.prop(MERGED_IDS)
        .unwrap_or_default()
        .split(';')
        .filter_map(|m| HubSpotId::try_from(m.trim().to_string()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Stage;

    /// A pulled contact: id, archived, and the ids HubSpot says were merged into it.
    fn pulled(id: &str, archived: bool, merged: &str) -> PulledContact {
        let mut properties = HashMap::new();
        properties.insert("email".to_string(), Some(format!("p{id}@example.com")));
        if !merged.is_empty() {
            properties.insert(MERGED_IDS.to_string(), Some(merged.to_string()));
        }
        PulledContact {
            contact: HubSpotObject {
                id: id.to_string(),
                properties,
                archived,
            },
            company: None,
            events: Vec::new(),
            counters: Vec::new(),
        }
    }

    fn hid(id: &str) -> HubSpotId {
        HubSpotId::try_from(id.to_string()).unwrap()
    }

    /// A stored contact: id, `removed`, `merged_into`, stage.
    fn row(id: &str, removed: Option<&str>, merged_into: Option<&str>, stage: Option<Stage>) -> ContactRow {
        ContactRow {
            contact_id: hid(id),
            state: crate::lifecycle::ContactState {
                stage,
                ..Default::default()
            },
            properties: BTreeMap::new(),
            company_id: None,
            company: BTreeMap::new(),
            removed: removed.map(str::to_string),
            merged_into: merged_into.map(str::to_string),
            fit: 0.0,
            engagement: 0.0,
            grade: String::new(),
            evaluated_at: DateTime::UNIX_EPOCH,
        }
    }

    fn event(id: &str) -> Event {
        serde_json::from_value(serde_json::json!({"id": id, "kind": "page_view", "at": "2026-11-20T10:00:00Z"}))
            .unwrap()
    }

    /// The plan for `pulled` against `stored` (with one ledger event per stored contact):
    /// its removals, and the ids it evaluates.
    fn plan(pulled: Vec<PulledContact>, stored: Vec<ContactRow>) -> (Vec<Removal>, Vec<String>, Plan) {
        plan_told(pulled, Vec::new(), stored)
    }

    /// The same with the removals webhooks told.
    fn plan_told(
        pulled: Vec<PulledContact>,
        told: Vec<Removal>,
        stored: Vec<ContactRow>,
    ) -> (Vec<Removal>, Vec<String>, Plan) {
        let rules = crate::defaults::embedded_rules().unwrap();
        let ledger = stored
            .iter()
            .map(|r| (r.contact_id.clone(), vec![event(&format!("ev-{}", r.contact_id))]))
            .collect();
        let stored = stored.into_iter().map(|r| (r.contact_id.clone(), r)).collect();
        let now = "2026-11-25T12:00:00Z".parse().unwrap();
        let p = decide_batch(
            &rules,
            &crate::defaults::embedded_sla(),
            pulled,
            &told,
            stored,
            ledger,
            now,
        );
        let ids = p.evaluated.iter().map(|e| e.contact_id.as_str().to_string()).collect();
        (p.removals.clone(), ids, p)
    }

    #[test]
    fn a_snapshot_older_than_the_stored_one_is_not_taken_for_a_person_moving_the_stage_back() {
        // Stored: leadsync made the contact SQL and a later pull saw its write land in HubSpot.
        let mut stored = row("1", None, None, Some(Stage::Sql));
        stored.state.hubspot_stage_seen = Some("salesqualifiedlead".into());
        stored.properties = BTreeMap::from([
            ("lifecyclestage".to_string(), "salesqualifiedlead".to_string()),
            ("lastmodifieddate".to_string(), "2026-11-25T11:00:00Z".to_string()),
        ]);
        let decide = |modified: &str| {
            let mut p = pulled("1", false, "");
            p.contact
                .properties
                .insert("lifecyclestage".into(), Some("lead".into()));
            p.contact
                .properties
                .insert("lastmodifieddate".into(), Some(modified.into()));
            let rules = crate::defaults::embedded_rules().unwrap();
            let now = "2026-11-25T12:00:00Z".parse().unwrap();
            let e = decide_pulled(&rules, &crate::defaults::embedded_sla(), p, Some(&stored), &[], now).unwrap();
            let recycled = e.transitions.iter().any(|t| matches!(t.change, Change::Recycle { .. }));
            (e.state.stage, recycled, e.properties["lifecyclestage"].clone())
        };
        // Pulled before that write landed, committed after: HubSpot's present is the stored one.
        assert_eq!(
            decide("2026-11-25T10:00:00Z"),
            (Some(Stage::Sql), false, "salesqualifiedlead".to_string())
        );
        // Changed after it: a person did move the contact back.
        let (_, recycled, seen) = decide("2026-11-25T11:30:00Z");
        assert!(recycled, "a later `lead` is a person's move back");
        assert_eq!(seen, "lead");
    }

    #[test]
    fn an_archived_contact_is_deleted_once_and_only_when_leadsync_knows_it() {
        let (r, ids, _) = plan(vec![pulled("1", true, "")], vec![row("1", None, None, None)]);
        assert_eq!((r, ids), (vec![Removal::Deleted(hid("1"))], vec![]));
        let (r, ids, _) = plan(vec![pulled("1", true, "")], vec![row("1", Some("deleted"), None, None)]);
        assert_eq!((r, ids), (vec![], vec![]), "already deleted");
        let (r, ids, _) = plan(vec![pulled("1", true, "")], vec![]);
        assert_eq!((r, ids), (vec![], vec![]), "never seen: nothing to remove");
    }

    #[test]
    fn an_active_contact_stored_as_deleted_is_restored_and_evaluated() {
        let (r, ids, _) = plan(
            vec![pulled("1", false, "")],
            vec![row("1", Some("deleted"), None, None)],
        );
        assert_eq!((r, ids), (vec![Removal::Restored(hid("1"))], vec!["1".to_string()]));
    }

    #[test]
    fn a_contact_merged_away_or_erased_is_never_evaluated_again() {
        for removed in ["merged", "privacy"] {
            let (r, ids, _) = plan(vec![pulled("1", false, "")], vec![row("1", Some(removed), None, None)]);
            assert_eq!((r, ids), (vec![], vec![]), "{removed}");
        }
    }

    #[test]
    fn a_new_and_a_live_contact_are_evaluated_with_nothing_removed() {
        let (r, ids, _) = plan(
            vec![pulled("1", false, ""), pulled("2", false, "")],
            vec![row("2", None, None, None)],
        );
        assert_eq!((r, ids), (vec![], vec!["1".to_string(), "2".to_string()]));
    }

    #[test]
    fn a_merge_told_by_the_survivor_moves_the_ledger_and_the_further_stage() {
        let merged = Removal::Merged {
            loser: hid("2"),
            survivor: hid("1"),
        };
        let (r, ids, p) = plan(
            vec![pulled("1", false, "1;2")],
            vec![
                row("1", None, None, Some(Stage::Lead)),
                row("2", None, None, Some(Stage::Sql)),
            ],
        );
        assert_eq!((r, ids), (vec![merged.clone()], vec!["1".to_string()]));
        assert!(
            p.evaluated[0].state.stage >= Some(Stage::Sql),
            "the survivor goes on from the loser's SQL"
        );
        // The loser archived in the same batch is merged, not deleted too.
        let (r, _, _) = plan(
            vec![pulled("1", false, "2"), pulled("2", true, "")],
            vec![row("1", None, None, None), row("2", None, None, None)],
        );
        assert_eq!(r, vec![merged]);
    }

    #[test]
    fn a_merge_already_applied_erased_or_of_an_unknown_contact_changes_nothing() {
        for loser in [
            Some(row("2", Some("merged"), Some("1"), None)),
            Some(row("2", Some("privacy"), None, None)),
            None,
        ] {
            let mut stored = vec![row("1", None, None, None)];
            stored.extend(loser.clone());
            let (r, ids, _) = plan(vec![pulled("1", false, "2")], stored);
            assert_eq!((r, ids), (vec![], vec!["1".to_string()]), "{loser:?}");
        }
    }

    #[test]
    fn the_ids_read_for_a_batch_include_the_losers_of_its_merges() {
        let contacts = vec![pulled("3", false, "1; 2").contact, pulled("4", true, "9").contact];
        let told = [Removal::Deleted(hid("7"))];
        assert_eq!(
            stored_ids(&contacts, &told),
            vec![hid("1"), hid("2"), hid("3"), hid("4"), hid("7")]
        );
    }

    #[test]
    fn removals_told_by_webhooks_are_decided_like_those_hubspot_lists() {
        let merged = Removal::Merged {
            loser: hid("2"),
            survivor: hid("1"),
        };
        let stored = || vec![row("1", None, None, None), row("2", None, None, Some(Stage::Sql))];
        // `contact.merge`: the survivor read, the loser told.
        let (r, ids, p) = plan_told(vec![pulled("1", false, "")], vec![merged.clone()], stored());
        assert_eq!((r, ids), (vec![merged.clone()], vec!["1".to_string()]));
        assert!(p.evaluated[0].state.stage >= Some(Stage::Sql));
        // Told and listed: once.
        let (r, _, _) = plan_told(vec![pulled("1", false, "2")], vec![merged.clone()], stored());
        assert_eq!(r, vec![merged]);
        // `contact.deletion`: deleted once, even told twice; never when HubSpot lists it active.
        let deleted = Removal::Deleted(hid("2"));
        let (r, ids, _) = plan_told(vec![], vec![deleted.clone(), deleted.clone()], stored());
        assert_eq!((r, ids), (vec![deleted.clone()], vec![]));
        let (r, ids, _) = plan_told(vec![pulled("2", false, "")], vec![deleted], stored());
        assert_eq!((r, ids), (vec![], vec!["2".to_string()]));
    }
}
