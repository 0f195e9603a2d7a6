//! From what was pulled and what was stored to what must be saved: snapshots in, `Evaluated`
//! out. No IO here: the callers read HubSpot and the store, and save the result.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hubspot::analytics::{CONVERSION_PROPERTIES, COUNTERS, Counter, conversion_event, events_from_counter};
use crate::hubspot::behaviour::same_submission;
use crate::hubspot::types::HubSpotObject;
use crate::lifecycle::{Action, Change, Decision, Event, EventKind, HubSpotId, Rules, Snapshot, evaluate};
use crate::sla::{SlaFile, SlaRecord, assess};
use crate::store::{ContactRow, Evaluated, OutboxKind, SlaTimer};

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
    let properties = known_properties(&pulled.contact);
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

    let snapshot = Snapshot {
        contact_id: id.clone(),
        properties: properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        events,
        state: stored.map(|s| s.state.clone()).unwrap_or_default(),
    };
    let decision = evaluate(rules, &snapshot, now);
    Some(saved(sla, &decision, properties, company_id, company, new_events))
}

/// What to save for a decision.
fn saved(
    sla: &SlaFile,
    decision: &Decision<'_>,
    properties: BTreeMap<String, String>,
    company_id: Option<String>,
    company: BTreeMap<String, String>,
    new_events: Vec<Event>,
) -> Evaluated {
    Evaluated {
        contact_id: decision.contact_id.clone(),
        at: decision.at,
        outbox: outbox_items(decision, &properties, company_id.as_deref(), &company),
        sla_timers: sla_starts(sla, decision, properties.get(OWNER).map(String::as_str)),
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

/// Re-evaluates a stored contact from the store alone (nightly decay, timers, a rules change).
pub fn decide_stored(
    rules: &Rules,
    sla: &SlaFile,
    row: &ContactRow,
    ledger: &[Event],
    now: DateTime<Utc>,
) -> Evaluated {
    let snapshot = Snapshot {
        contact_id: row.contact_id.clone(),
        properties: row.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        events: ledger.to_vec(),
        state: row.state.clone(),
    };
    let decision = evaluate(rules, &snapshot, now);
    saved(
        sla,
        &decision,
        row.properties.clone(),
        row.company_id.clone(),
        row.company.clone(),
        Vec::new(),
    )
}

/// The SLA timers a decision starts: the contact moved into a stage (by a shortcut or not),
/// and each policy of that stage and path starts its clock at the decision's time, in the
/// calendar of the owner's team, assessed once so its next check is known.
pub fn sla_starts(sla: &SlaFile, d: &Decision<'_>, owner: Option<&str>) -> Vec<SlaTimer> {
    let team = sla.team_for(owner);
    d.transitions
        .iter()
        .filter_map(|t| match t.change {
            Change::Stage { to, .. } => Some(to),
            _ => None,
        })
        .flat_map(|stage| sla.policies_for(stage, d.via_shortcut))
        .filter_map(|policy| {
            let record = SlaRecord::start(policy, team, d.contact_id.as_str(), d.at)?;
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
pub(super) fn merged_ids(c: &HubSpotObject) -> Vec<HubSpotId> {
    c.prop(MERGED_IDS)
        .unwrap_or_default()
        .split(';')
        .filter_map(|m| HubSpotId::try_from(m.trim().to_string()).ok())
        .collect()
}
