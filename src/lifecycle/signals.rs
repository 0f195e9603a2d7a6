//! Buying signals: which of a contact's NEW events the rules' `[[signals]]` name (a pricing
//! visit, a bottom-of-funnel form, a demo request, a return after days away), with the words
//! its owner is told. Pure, like `evaluate`: the snapshot, the events new in this pull and the
//! time are passed in.
//!
//! Each new event fires at most one signal: the first in the file's order that matches it (so a
//! demo request after a month away is a demo request). A signal fires once per UTC day of its
//! events: [`Signal::key`] is the contact, the signal and that day, the idempotency key of the
//! owner's alert.

use std::cell::Cell;
use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::engine::{derive, prepare_events};
use super::model::EventKind;
use super::predicate::Ctx;
use super::rules::Rules;
use super::snapshot::{Event, HubSpotId, Snapshot};

/// The placeholders a signal's `subject` and `description` may hold.
pub const PLACEHOLDERS: [&str; 6] = ["signal", "event", "detail", "at", "date", "away"];

/// One signal fired by one new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// The `[[signals]]` id.
    pub signal: String,
    /// The event that fired it.
    pub event_id: String,
    /// Its kind.
    pub kind: EventKind,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The page's URL or the form's name, when the event has one.
    pub detail: Option<String>,
    /// Whole days since the contact's previous event of the signal's kinds, for a signal with
    /// `away` (a return).
    pub away_days: Option<i64>,
    /// The subject, rendered.
    pub subject: String,
    /// The description, rendered.
    pub description: String,
}

impl Signal {
    /// The alert's idempotency key: one per contact, signal and UTC day of the event.
    pub fn key(&self, contact: &HubSpotId) -> String {
        format!("signal:{contact}:{}:{}", self.signal, self.at.format("%Y-%m-%d"))
    }
}

/// The signals the events of `new` (ids of events in `snapshot.events`) fire at `now`, oldest
/// event first, one per signal and UTC day. Events in the future are ignored, as `evaluate`
/// ignores them; a recycle's engagement reset does not hide the past from a return's `away`.
pub fn signals(rules: &Rules, snapshot: &Snapshot, new: &[Event], now: DateTime<Utc>) -> Vec<Signal> {
    if rules.signals.is_empty() || new.is_empty() {
        return Vec::new();
    }
    let new_ids: HashSet<&str> = new.iter().map(|e| e.id.as_str()).collect();
    let (events, _) = prepare_events(rules, &snapshot.events, now, None);
    let derived = derive(rules, &snapshot.properties);
    let props: Vec<Cell<Option<Option<&str>>>> = vec![Cell::new(None); rules.prop_slots];
    let ctx = Ctx {
        properties: &snapshot.properties,
        derived: &derived,
        fit: 0.0,
        engagement: 0.0,
        events: &events,
        now,
        event: std::cell::Cell::new(None),
        memo: &[],
        memo_stride: 0,
        props: &props,
    };
    let mut fired: Vec<Signal> = Vec::new();
    for (i, p) in events.iter().enumerate() {
        if !new_ids.contains(p.event.id.as_str()) {
            continue;
        }
        let hit = rules.signals.iter().find_map(|s| {
            if !s.matcher.accepts(&ctx, *p) {
                return None;
            }
            let away_days = match s.away {
                None => None,
                Some(away) => {
                    let previous = events[..i]
                        .iter()
                        .rev()
                        .find(|q| s.matcher.kinds.contains(&q.event.kind) && q.event.at < p.event.at)?;
                    let gap = p.event.at - previous.event.at;
                    if away.to_chrono().is_none_or(|a| gap < a) {
                        return None;
                    }
                    Some(gap.num_days())
                }
            };
            Some((s, away_days))
        });
        let Some((s, away_days)) = hit else { continue };
        let day = p.event.at.date_naive();
        if fired.iter().any(|f| f.signal == *s.id && f.at.date_naive() == day) {
            continue;
        }
        let detail = match p.event.kind {
            EventKind::FormSubmission => p.event.form.clone(),
            _ => p.event.url.clone(),
        };
        let mut signal = Signal {
            signal: s.id.to_string(),
            event_id: p.event.id.clone(),
            kind: p.event.kind,
            at: p.event.at,
            detail,
            away_days,
            subject: String::new(),
            description: String::new(),
        };
        signal.subject = render(&s.subject, &signal);
        signal.description = render(&s.description, &signal);
        fired.push(signal);
    }
    fired
}

/// A template's placeholders checked: `{name}` with a name of [`PLACEHOLDERS`]; `{{` and `}}`
/// are literal braces.
pub(crate) fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
            rest = &after[1..];
            continue;
        }
        if rest.as_bytes()[open] == b'}' {
            return Err("a `}` with no `{` before it (write `}}` for a brace)".into());
        }
        let Some(close) = after.find('}') else {
            return Err("a `{` that is never closed (write `{{` for a brace)".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// A checked template with the signal's values in.
fn render(t: &str, s: &Signal) -> String {
    let value = |name: &str| -> String {
        match name {
            "signal" => s.signal.clone(),
            "event" => s.kind.label().to_string(),
            "detail" => s.detail.clone().unwrap_or_default(),
            "at" => s.at.format("%Y-%m-%d %H:%M UTC").to_string(),
            "date" => s.at.format("%Y-%m-%d").to_string(),
            "away" => s.away_days.map_or_else(String::new, |d| d.to_string()),
            _ => String::new(),
        }
    };
    let mut out = String::with_capacity(t.len() + 32);
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        let here = &rest[open..];
        if here.starts_with("{{") || here.starts_with("}}") {
            out.push_str(&here[..1]);
            rest = &here[2..];
            continue;
        }
        match here[1..].find('}') {
            Some(close) if here.starts_with('{') => {
                out.push_str(&value(&here[1..=close]));
                rest = &here[close + 2..];
            }
            _ => {
                out.push_str(here);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: &str, at: &str, url: Option<&str>, form: Option<&str>) -> Event {
        let mut e = serde_json::json!({"id": id, "kind": kind, "at": at});
        if let Some(u) = url {
            e["url"] = u.into();
        }
        if let Some(f) = form {
            e["form"] = f.into();
        }
        serde_json::from_value(e).unwrap()
    }

    fn page(id: &str, at: &str, url: &str) -> Event {
        event(id, "page_view", at, Some(url), None)
    }

    fn form(id: &str, at: &str, name: &str) -> Event {
        event(id, "form_submission", at, None, Some(name))
    }

    /// (signal, event id, key) of each signal fired.
    type Fired = Vec<(String, String, String)>;

    /// What fires when `new` arrives after `ledger`, at 2026-11-25 18:00.
    fn fired(ledger: &[Event], new: &[Event]) -> Fired {
        let rules = crate::defaults::embedded_rules().unwrap();
        let mut events = ledger.to_vec();
        events.extend(new.iter().cloned());
        let snapshot = Snapshot {
            contact_id: HubSpotId::try_from("7".to_string()).unwrap(),
            properties: Default::default(),
            events,
            state: Default::default(),
        };
        let now = "2026-11-25T18:00:00Z".parse().unwrap();
        signals(&rules, &snapshot, new, now)
            .into_iter()
            .map(|s| (s.signal.clone(), s.event_id.clone(), s.key(&snapshot.contact_id)))
            .collect()
    }

    fn one(signal: &str, event: &str, day: &str) -> Fired {
        vec![(signal.into(), event.into(), format!("signal:7:{signal}:{day}"))]
    }

    #[test]
    fn which_signal_which_event_which_key() {
        let recent = [page("old", "2026-11-20T09:00:00Z", "/blog/x")];
        let long_ago = [page("old", "2026-10-01T09:00:00Z", "/blog/x")];
        let pricing = |id: &str, at: &str| page(id, at, "https://www.example.com/pricing");
        #[rustfmt::skip]
        let table: Vec<(&str, Vec<Event>, Vec<Event>, Fired)> = vec![
            ("a pricing visit", recent.to_vec(), vec![pricing("p1", "2026-11-25T10:00:00Z")],
             one("pricing_visit", "p1", "2026-11-25")),
            ("the French pricing page too", recent.to_vec(), vec![page("p1", "2026-11-25T10:00:00Z", "/fr/tarifs")],
             one("pricing_visit", "p1", "2026-11-25")),
            ("twice in a day: once, the first", recent.to_vec(),
             vec![pricing("p2", "2026-11-25T11:00:00Z"), pricing("p1", "2026-11-25T10:00:00Z")],
             one("pricing_visit", "p1", "2026-11-25")),
            ("on two days: one each", recent.to_vec(),
             vec![pricing("p1", "2026-11-24T10:00:00Z"), pricing("p2", "2026-11-25T10:00:00Z")],
             [one("pricing_visit", "p1", "2026-11-24"), one("pricing_visit", "p2", "2026-11-25")].concat()),
            ("a visit already in the ledger fires nothing", vec![pricing("p1", "2026-11-25T10:00:00Z")], vec![], vec![]),
            ("a page that is no signal", recent.to_vec(), vec![page("b", "2026-11-25T10:00:00Z", "/blog/y")], vec![]),
            ("a demo request", recent.to_vec(), vec![form("f", "2026-11-25T10:00:00Z", "Pricing: Request a demo")],
             one("demo_asked", "f", "2026-11-25")),
            ("a demo request after a month away is a demo request (first match)", long_ago.to_vec(),
             vec![form("f", "2026-11-25T10:00:00Z", "Request a demo")], one("demo_asked", "f", "2026-11-25")),
            ("a bottom-of-funnel form", recent.to_vec(), vec![form("f", "2026-11-25T10:00:00Z", "Contact sales")],
             one("sales_form", "f", "2026-11-25")),
            ("a content download is no signal", recent.to_vec(), vec![form("f", "2026-11-25T10:00:00Z", "White paper")], vec![]),
            ("back after 55 days", long_ago.to_vec(), vec![page("b", "2026-11-25T10:00:00Z", "/blog/y")],
             one("came_back", "b", "2026-11-25")),
            ("back after 5 days: not away", recent.to_vec(), vec![page("b", "2026-11-25T10:00:00Z", "/blog/y")], vec![]),
            ("a first event ever is no return", vec![], vec![page("b", "2026-11-25T10:00:00Z", "/blog/y")], vec![]),
            ("a sales call in between does not end the absence", 
             [long_ago.to_vec(), vec![event("c", "call", "2026-11-20T09:00:00Z", None, None)]].concat(),
             vec![page("b", "2026-11-25T10:00:00Z", "/blog/y")], one("came_back", "b", "2026-11-25")),
            ("an event in the future is ignored", recent.to_vec(), vec![pricing("p1", "2026-11-26T10:00:00Z")], vec![]),
        ];
        for (why, ledger, new, want) in table {
            assert_eq!(fired(&ledger, &new), want, "{why}");
        }
    }

    #[test]
    fn the_owner_is_told_what_happened_and_when() {
        let rules = crate::defaults::embedded_rules().unwrap();
        let old = page("old", "2026-10-01T09:00:00Z", "/blog/x");
        let back = page("b", "2026-11-25T10:30:00Z", "/blog/y");
        let snapshot = Snapshot {
            contact_id: HubSpotId::try_from("7".to_string()).unwrap(),
            properties: Default::default(),
            events: vec![old, back.clone()],
            state: Default::default(),
        };
        let s = signals(&rules, &snapshot, &[back], "2026-11-25T18:00:00Z".parse().unwrap());
        assert_eq!(s[0].subject, "Buying signal: back after 55 days on 2026-11-25");
        assert_eq!(
            s[0].description,
            "leadsync: this contact came back (page view: /blog/y) at 2026-11-25 10:30 UTC, after 55 days without activity."
        );
    }

    #[test]
    fn a_lost_contact_showing_a_signal_of_recycle_on_is_recycled_now() {
        use crate::lifecycle::{Change, ContactState, Stage, Status, evaluate, evaluate_signalled};
        let rules = crate::defaults::embedded_rules().unwrap();
        let now: DateTime<Utc> = "2026-11-25T18:00:00Z".parse().unwrap();
        let visit = page("p", "2026-11-25T10:00:00Z", "/pricing");
        let mut stages = std::collections::BTreeMap::new();
        stages.insert(
            Stage::Sql,
            crate::lifecycle::snapshot::StageEntry {
                at: "2026-09-01T00:00:00Z".parse().unwrap(),
                skipped: false,
            },
        );
        let snapshot = Snapshot {
            contact_id: HubSpotId::try_from("7".to_string()).unwrap(),
            properties: [
                ("email", "a@acme.io"),
                ("jobtitle", "VP Marketing"),
                ("leadsync_sql_qualified", "true"),
                ("leadsync_opportunity_status", "lost"),
                ("leadsync_opportunity_closed_at", "2026-11-01"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            events: vec![page("old", "2026-09-01T09:00:00Z", "/"), visit.clone()],
            state: ContactState {
                stage: Some(Stage::Sql),
                stages,
                status: Status::Lost,
                status_since: Some("2026-11-01T00:00:00Z".parse().unwrap()),
                ..Default::default()
            },
        };
        // Without the signal: lost, waiting for its 90 days.
        let d = evaluate(&rules, &snapshot, now);
        assert_eq!((d.stage, d.status), (Some(Stage::Sql), Status::Lost));
        let fired = signals(&rules, &snapshot, &[visit], now);
        assert_eq!(fired.len(), 1);
        let d = evaluate_signalled(&rules, &snapshot, &fired, now);
        assert_eq!(
            (d.stage, d.status),
            (Some(Stage::Lead), Status::Recycle),
            "{:?}",
            d.transitions
        );
        let recycled = d
            .transitions
            .iter()
            .find(|t| matches!(t.change, Change::Recycle { .. }))
            .expect("a recycle");
        assert_eq!(
            recycled.reason,
            "opportunity lost on 2026-11-01, came back: pricing_visit on 2026-11-25"
        );
        assert_eq!(d.state.recycle_count, 1);
        // A signal the rules do not list in `recycle_on` brings nobody back.
        let mut other = fired[0].clone();
        other.signal = "not_listed".into();
        let d = evaluate_signalled(&rules, &snapshot, &[other], now);
        assert_eq!(d.status, Status::Lost);
    }

    #[test]
    fn templates_name_known_placeholders_only() {
        assert!(check_template("at {at}, {{literal}} {detail}").is_ok());
        assert!(
            check_template("{when}")
                .unwrap_err()
                .contains("unknown placeholder `{when}`")
        );
        assert!(check_template("{at").unwrap_err().contains("never closed"));
        assert!(check_template("at}").unwrap_err().contains("no `{`"));
        let s = Signal {
            signal: "x".into(),
            event_id: "e".into(),
            kind: EventKind::PageView,
            at: "2026-11-25T10:00:00Z".parse().unwrap(),
            detail: None,
            away_days: None,
            subject: String::new(),
            description: String::new(),
        };
        assert_eq!(render("{{{signal}}} on {date}{detail}", &s), "{x} on 2026-11-25");
    }
}
