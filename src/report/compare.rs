//! `leadsync report --compare-rules NEW.toml`: what a rules change would do, from the store alone.
//!
//! Two questions, answered by pure functions over stored contacts (`ContactRow` and their
//! engagement ledger), with time passed in:
//! - **the funnel of the period under each rule set** ([`replay`]): each contact's events are
//!   replayed in time order from a fresh state, evaluated at every event time, when first seen,
//!   just before the period and just before its end; the transitions become audit lines, and
//!   the same [`figures::compute`] the report uses turns them into the funnel and KPIs;
//! - **what deploying the candidate would change now** ([`Deploy`]): each stored contact is
//!   re-evaluated from its stored state at `now`, as `backfill --rescore` does
//!   (`sync::decide::decide_stored`), under both rule sets; the contacts whose stage or status
//!   would differ, and the HubSpot writes and Salesforce promotions the candidate alone asks for.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::figures::{self, GroupBy, Report, ReportError};
use crate::lifecycle::{ContactState, Event, Rules, Snapshot, Stage, Status, evaluate};
use crate::sla::SlaFile;
use crate::sla::policy::MarketingTarget;
use crate::store::report::{AuditLine, ContactFacts, TimerLine};
use crate::store::{ContactRow, Evaluated, OutboxKind};
use crate::sync::decide::{WritePayload, decide_stored, written_properties};
use crate::sync::outbox::promotion::PromotionCost;

/// How many differing contacts the output lists (all are counted).
pub const SHOWN: usize = 50;
/// Contacts per HubSpot batch update.
const HUBSPOT_BATCH: u64 = crate::hubspot::types::BATCH_LIMIT as u64;

/// The audit lines `rules` would have written for one contact up to `to` (exclusive), replayed
/// from a fresh state over the stored properties and events.
///
/// The store keeps a contact's properties as last seen, not their history, so every moment is
/// judged with today's properties; leadsync's own outputs (its stage, status, scores and
/// HubSpot's lifecycle stage, which leadsync writes) are left out, or the replay would only
/// read back the current rules' verdict. Evaluation times: each event, the contact's first
/// sighting (its earliest stored stage entry), 1 ms before `from` and 1 ms before `to`, so a
/// change that time alone makes (decay, dormancy, a cooldown's end) is seen at the next of
/// those moments.
pub fn replay(
    rules: &Rules,
    row: &ContactRow,
    events: &[Event],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<AuditLine> {
    let out = rules.output();
    let own: Vec<&str> = written_properties(rules)
        .into_iter()
        .chain([out.lifecycle_property.as_str()])
        .collect();
    let properties = row
        .properties
        .iter()
        .filter(|(k, _)| !own.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.at);
    let first_seen = row
        .state
        .stages
        .values()
        .map(|e| e.at)
        .chain(sorted.first().map(|e| e.at))
        .min()
        .unwrap_or(row.evaluated_at);
    let just_before = Duration::milliseconds(1);
    let mut times: Vec<DateTime<Utc>> = sorted
        .iter()
        .map(|e| e.at)
        .chain([first_seen, from - just_before, to - just_before])
        .filter(|t| *t >= first_seen && *t < to)
        .collect();
    times.sort();
    times.dedup();

    let mut snapshot = Snapshot {
        contact_id: row.contact_id.clone(),
        properties,
        events: Vec::with_capacity(sorted.len()),
        state: ContactState::default(),
    };
    let mut pending = sorted.into_iter().peekable();
    let mut lines = Vec::new();
    for at in times {
        while let Some(e) = pending.next_if(|e| e.at <= at) {
            snapshot.events.push(e.clone());
        }
        let d = evaluate(rules, &snapshot, at);
        for t in &d.transitions {
            lines.push(AuditLine {
                contact_id: row.contact_id.to_string(),
                at,
                change: serde_json::to_string(&t.change).expect("a change serialises"),
                reason: t.reason.clone(),
            });
        }
        let state = d.state;
        snapshot.state = state;
    }
    lines
}

/// What one contact's re-evaluation now writes and asks for, reduced to what a comparison needs.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    stage: Option<Stage>,
    status: Status,
    /// The values leadsync's properties would hold in HubSpot after the write (the rules'
    /// version stamp left out: it changes with any edit and is written only beside a change).
    written: Vec<String>,
    promotes: bool,
}

fn outcome(rules: &Rules, row: &ContactRow, e: &Evaluated) -> Outcome {
    let write = e
        .outbox
        .iter()
        .find(|(k, _, _)| *k == OutboxKind::HubSpotWrite)
        .and_then(|(_, _, p)| serde_json::from_str::<WritePayload>(p).ok())
        .unwrap_or_default();
    let out = rules.output();
    let value = |p: &str| {
        write
            .properties
            .get(p)
            .or_else(|| row.properties.get(p))
            .map_or_else(String::new, |v| v.trim().to_string())
    };
    let mut written: Vec<String> = written_properties(rules)
        .into_iter()
        .filter(|p| *p != out.rules_version)
        .map(value)
        .collect();
    written.push(match &write.lifecycle {
        Some((v, _)) => v.clone(),
        None => value(&out.lifecycle_property),
    });
    Outcome {
        stage: e.state.stage,
        status: e.state.status,
        written,
        promotes: e.outbox.iter().any(|(k, _, _)| *k == OutboxKind::Promote),
    }
}

/// A contact whose stage or status the candidate rules would change now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// HubSpot contact id.
    pub contact_id: String,
    /// Stage under the current rules, then under the candidate.
    pub stage: (Option<Stage>, Option<Stage>),
    /// Status under the current rules, then under the candidate.
    pub status: (Status, Status),
    /// The command that shows the contact's stored decision, owner and timers.
    pub explain: String,
}

/// What deploying the candidate would cost, in calls, beyond what the current rules do anyway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Contacts whose leadsync properties in HubSpot would hold other values.
    pub hubspot_contacts: u64,
    /// HubSpot batch updates for them (100 contacts a call).
    pub hubspot_write_calls: u64,
    /// Contacts the candidate promotes to Salesforce and the current rules do not.
    pub promotions: u64,
    /// Salesforce calls for those promotions (collections of 200, lookups included). Their
    /// Salesforce ids cost no HubSpot call: they go out in the promoted contacts' own update.
    pub salesforce_calls: u64,
}

/// Both rule sets' verdicts on the stored contacts now: differences and cost.
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    /// Contacts compared.
    pub contacts: u64,
    /// Every differing contact, in the store's id order.
    pub differences: Vec<Difference>,
    cost: Cost,
}

impl Deploy {
    /// Re-evaluates one stored contact at `now` under both rule sets, from its stored state.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        current: &Rules,
        candidate: &Rules,
        sla: &SlaFile,
        row: &ContactRow,
        ledger: &[Event],
        now: DateTime<Utc>,
    ) {
        let a = outcome(current, row, &decide_stored(current, sla, row, ledger, now));
        let b = outcome(candidate, row, &decide_stored(candidate, sla, row, ledger, now));
        self.contacts += 1;
        if (a.stage, a.status) != (b.stage, b.status) {
            self.differences.push(Difference {
                contact_id: row.contact_id.to_string(),
                stage: (a.stage, b.stage),
                status: (a.status, b.status),
                explain: format!("leadsync explain --contact {}", row.contact_id),
            });
        }
        self.cost.hubspot_contacts += u64::from(a.written != b.written);
        self.cost.promotions += u64::from(b.promotes && !a.promotes);
    }

    /// The calls deploying would cost.
    pub fn cost(&self) -> Cost {
        Cost {
            hubspot_write_calls: self.cost.hubspot_contacts.div_ceil(HUBSPOT_BATCH),
            salesforce_calls: PromotionCost::of(self.cost.promotions).salesforce_calls,
            ..self.cost
        }
    }
}

/// One rule set's side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// `version (hash)` of the rules.
    pub rules: String,
    /// The funnel and KPIs of the period under these rules, replayed.
    pub report: Report,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Start of the period (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// When the deploy's re-evaluation is made.
    pub at: DateTime<Utc>,
    /// Contacts replayed and compared.
    pub contacts: u64,
    /// The rules in use.
    pub current: Side,
    /// The candidate.
    pub candidate: Side,
    /// How many contacts' stage or status would differ now.
    pub differing: u64,
    /// The first [`SHOWN`] of them.
    pub differences: Vec<Difference>,
    /// What deploying would cost.
    pub cost: Cost,
}

/// Everything the comparison is computed from, beside the replayed lines.
pub struct Inputs<'a> {
    /// The rules in use.
    pub current: &'a Rules,
    /// The candidate.
    pub candidate: &'a Rules,
    /// Facts of every contact, for `--by` and deal amounts.
    pub facts: BTreeMap<String, ContactFacts>,
    /// The stored SLA timers (the report's SLA section is not replayed).
    pub timers: Vec<TimerLine>,
    /// The marketing targets.
    pub targets: &'a [MarketingTarget],
}

/// The comparison of `[from, to)`, from both replays (the audit lines each rule set would have
/// written, each contact's in time order) and the deploy's re-evaluation.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    inputs: Inputs<'_>,
    current: Vec<AuditLine>,
    candidate: Vec<AuditLine>,
    deploy: Deploy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: Option<GroupBy>,
    now: DateTime<Utc>,
) -> Result<Comparison, ReportError> {
    let mut rows = crate::store::report::ReportRows {
        audit: current,
        contacts: inputs.facts,
        timers: inputs.timers,
    };
    let current_report = figures::compute(&rows, from, to, by, inputs.targets)?;
    rows.audit = candidate;
    let candidate_report = figures::compute(&rows, from, to, by, inputs.targets)?;
    let cost = deploy.cost();
    Ok(Comparison {
        from,
        to,
        at: now,
        contacts: deploy.contacts,
        current: Side {
            rules: inputs.current.stamp(),
            report: current_report,
        },
        candidate: Side {
            rules: inputs.candidate.stamp(),
            report: candidate_report,
        },
        differing: deploy.differences.len() as u64,
        differences: deploy.differences.into_iter().take(SHOWN).collect(),
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn row(properties: &[(&str, &str)]) -> ContactRow {
        ContactRow {
            contact_id: crate::lifecycle::HubSpotId::try_from("7".to_string()).unwrap(),
            state: ContactState::default(),
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            company_id: None,
            company: BTreeMap::new(),
            removed: None,
            merged_into: None,
            fit: 0.0,
            engagement: 0.0,
            grade: String::new(),
            evaluated_at: t("2026-11-03T00:00:00Z"),
        }
    }

    fn changes(lines: &[AuditLine]) -> Vec<(String, String)> {
        lines.iter().map(|l| (l.at.to_rfc3339(), l.change.clone())).collect()
    }

    #[test]
    fn the_replay_ignores_leadsyncs_own_outputs_and_evaluates_from_the_first_sighting() {
        let rules = crate::defaults::embedded_rules().unwrap();
        let (from, to) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
        // What leadsync wrote to HubSpot says customer; replayed, it is the lead its
        // properties make it, first seen when it was last evaluated (no event, no stage entry).
        let stored = row(&[
            ("email", "sam@northwind.io"),
            ("jobtitle", "Head of Revenue Operations"),
            ("lifecyclestage", "customer"),
            ("leadsync_stage", "customer"),
        ]);
        assert_eq!(
            changes(&replay(&rules, &stored, &[], from, to)),
            [(
                "2026-11-03T00:00:00+00:00".to_string(),
                r#"{"kind":"stage","from":null,"to":"lead"}"#.to_string()
            )]
        );
        // A period starting later: the entry stays at the first sighting, before the period.
        assert_eq!(
            replay(&rules, &stored, &[], t("2026-11-04T00:00:00Z"), to)[0].at,
            t("2026-11-03T00:00:00Z")
        );
        // Nothing is evaluated from `to` on.
        assert!(
            replay(
                &rules,
                &stored,
                &[],
                t("2026-10-01T00:00:00Z"),
                t("2026-11-03T00:00:00Z")
            )
            .is_empty()
        );
    }
}
