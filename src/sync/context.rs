//! Marketing context kept current in Salesforce after promotion: the fit and engagement scores,
//! grade, stage and status, the last scored activity and a short summary of the recent scored
//! events (in the rules' own names), on the fields the mapping's `[[contact.context]]` and
//! `[[opportunity.context]]` name. Those fields are leadsync's; every other field is sales' and
//! never written after creation.
//!
//! Decided here, purely ([`ContextValues::of`], [`queued`]): a decision queues the contact's
//! values only when something happened (a new event, a transition, a HubSpot write), so the
//! engagement score's decay alone never sends anything. Carried out by `outbox::context`: only
//! the values that differ from what leadsync last wrote (the `salesforce_ledger`) go out, 200
//! records an sObject Collections update.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lifecycle::{Action, Decision, Event};
use crate::salesforce::mapping::{SalesforceContextField, SalesforceContextValue};

/// Recent events the summary names, newest first.
pub const SUMMARY_EVENTS: usize = 5;

/// A contact's marketing context as one decision left it (the outbox payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextValues {
    /// Fit score.
    pub fit: f64,
    /// Engagement score, whole points (as HubSpot is written).
    pub engagement: f64,
    /// Grade.
    pub grade: String,
    /// Stage (empty before the first).
    pub stage: String,
    /// Status.
    pub status: String,
    /// When the last scored event happened.
    pub last_activity: Option<DateTime<Utc>>,
    /// The recent scored events, newest first: (when, the rule that scored it).
    pub recent: Vec<(DateTime<Utc>, String)>,
}

impl ContextValues {
    /// The context of `d`, whose snapshot held `events` (for the events' times).
    pub fn of(d: &Decision<'_>, events: &[Event]) -> ContextValues {
        let at: HashMap<&str, DateTime<Utc>> = events.iter().map(|e| (e.id.as_str(), e.at)).collect();
        let mut recent: Vec<(DateTime<Utc>, String)> = d
            .engagement
            .contributions
            .iter()
            .filter(|c| c.counted > 0.0)
            .filter_map(|c| Some((*at.get(c.event_id.as_deref()?)?, c.rule.to_string())))
            .collect();
        recent.sort_by(|a, b| b.cmp(a));
        recent.dedup();
        let last_activity = recent.first().map(|(t, _)| *t);
        recent.truncate(SUMMARY_EVENTS);
        ContextValues {
            fit: d.fit.value,
            engagement: d.engagement.value.round(),
            grade: d.grade.clone(),
            stage: d.stage.map(|s| s.as_str().to_string()).unwrap_or_default(),
            status: d.status.as_str().to_string(),
            last_activity,
            recent,
        }
    }

    /// The JSON value a context field gets, `None` when empty (an empty value is never sent).
    pub fn value(&self, f: &SalesforceContextField) -> Option<Value> {
        let text = |s: &str| {
            let s: String = match f.truncate {
                Some(n) => s.chars().take(n).collect(),
                None => s.to_string(),
            };
            (!s.is_empty()).then(|| json!(s))
        };
        match f.value {
            SalesforceContextValue::FitScore => Some(json!(self.fit)),
            SalesforceContextValue::EngagementScore => Some(json!(self.engagement)),
            SalesforceContextValue::Grade => text(&self.grade),
            SalesforceContextValue::Stage => text(&self.stage),
            SalesforceContextValue::Status => text(&self.status),
            SalesforceContextValue::LastActivity => self
                .last_activity
                .map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Millis, true))),
            SalesforceContextValue::RecentActivity => text(&self.summary()),
        }
    }

    /// `2026-11-24 whitepaper_download; 2026-11-20 webinar`.
    pub fn summary(&self) -> String {
        self.recent
            .iter()
            .map(|(t, rule)| format!("{} {rule}", t.format("%Y-%m-%d")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The fields among `fields` whose value differs from `written` (what leadsync last wrote to
    /// the record, as JSON text): field → value.
    pub fn changed(
        &self,
        fields: &[SalesforceContextField],
        written: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<String, Value> {
        fields
            .iter()
            .filter_map(|f| Some((f.field.clone(), self.value(f)?)))
            .filter(|(field, v)| written.and_then(|w| w.get(field)) != Some(&v.to_string()))
            .collect()
    }
}

/// Whether decision `d` queues the contact's context: it is in Salesforce (or is being promoted
/// by this decision) and something happened: a new event, a transition, or a HubSpot write of a
/// value other than those decay moves (`decayed`: the engagement score and the grade it gives,
/// which HubSpot gets when the score crosses a threshold, and the rules' stamp). So the
/// engagement score's decay alone never sends anything to Salesforce.
pub fn queued(d: &Decision<'_>, new_events: usize, decayed: &[&str]) -> bool {
    let promotes = d.actions.iter().any(|a| matches!(a, Action::PromoteToSalesforce));
    let in_salesforce = d.state.salesforce.is_some() || promotes;
    let wrote = d.actions.iter().any(|a| match a {
        Action::WriteHubSpot { properties } => properties.keys().any(|k| !decayed.contains(&k.as_str())),
        _ => false,
    });
    in_salesforce && (new_events > 0 || !d.transitions.is_empty() || wrote)
}

/// The one pending context write of a contact.
pub fn context_key(id: &crate::lifecycle::HubSpotId) -> String {
    format!("sfcontext:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> ContextValues {
        let t = |d: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T10:00:00Z"))
                .unwrap()
                .to_utc()
        };
        ContextValues {
            fit: 80.0,
            engagement: 37.0,
            grade: "A2".into(),
            stage: "sql".into(),
            status: "active".into(),
            last_activity: Some(t(24)),
            recent: vec![(t(24), "whitepaper_download".into()), (t(20), "webinar".into())],
        }
    }

    fn field(name: &str, value: SalesforceContextValue, truncate: Option<usize>) -> SalesforceContextField {
        SalesforceContextField {
            field: name.into(),
            value,
            truncate,
            line: 1,
        }
    }

    #[test]
    fn the_summary_names_the_rules_newest_first_and_is_cut_to_the_field() {
        let v = values();
        assert_eq!(v.summary(), "2026-11-24 whitepaper_download; 2026-11-20 webinar");
        let f = field("R__c", SalesforceContextValue::RecentActivity, Some(10));
        assert_eq!(v.value(&f), Some(json!("2026-11-24")));
    }

    #[test]
    fn only_values_that_differ_from_the_ledger_are_sent_and_empty_ones_never() {
        let v = values();
        let fields = [
            field("E__c", SalesforceContextValue::EngagementScore, None),
            field("G__c", SalesforceContextValue::Grade, None),
            field("L__c", SalesforceContextValue::LastActivity, None),
        ];
        assert_eq!(v.changed(&fields, None).len(), 3);
        let written = BTreeMap::from([
            ("E__c".to_string(), "37.0".to_string()),
            ("G__c".to_string(), "\"A2\"".to_string()),
        ]);
        let changed = v.changed(&fields, Some(&written));
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["L__c"]);
        let empty = ContextValues {
            last_activity: None,
            grade: String::new(),
            ..v
        };
        assert!(empty.changed(&fields[1..], None).is_empty());
    }
}
