//! Web and marketing-email behaviour from HubSpot's analytics counters on the contact.
//!
//! Portals without the event analytics API only have running counters (page views, visits,
//! email opens and clicks) and the time of the latest one. leadsync reads them at each sync and
//! turns the increase since its last read into dated events. Each event's id is the counter's
//! value (`hs-page_view-<contact>-<n>` is the n-th page view), so reading the same counters
//! twice, or replaying a sync, never counts an event twice. Counters carry no URL or campaign:
//! these events score with the generic rules (a page view, an email open), not the specific ones.

use super::types::parse_time;
use crate::lifecycle::{Event, EventKind};

/// A counter property and the property holding the time of its latest increment.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// Event kind each increment becomes.
    pub kind: EventKind,
    /// Running count property.
    pub count: &'static str,
    /// Time of the latest increment.
    pub last_at: &'static str,
}

/// HubSpot's default analytics counters.
pub const COUNTERS: [Counter; 3] = [
    Counter {
        kind: EventKind::PageView,
        count: "hs_analytics_num_page_views",
        last_at: "hs_analytics_last_visit_timestamp",
    },
    Counter {
        kind: EventKind::EmailOpen,
        count: "hs_email_open",
        last_at: "hs_email_last_open_date",
    },
    Counter {
        kind: EventKind::EmailClick,
        count: "hs_email_click",
        last_at: "hs_email_last_click_date",
    },
];

/// Most events made from one counter in one read: a first read of an old contact must not
/// date years of history on one day.
pub const MAX_EVENTS_PER_READ: u64 = 20;

/// Events for the increase of `counter` from `before` (last read, `None` the first time) to the
/// values in `now_value` / `last_at`, for contact `contact_id`.
pub fn events_from_counter(
    contact_id: &str,
    counter: &Counter,
    before: Option<u64>,
    now_value: Option<&str>,
    last_at: Option<&str>,
) -> Vec<Event> {
    let Some(now) = now_value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v.max(0.0) as u64)
    else {
        return Vec::new();
    };
    let Some(at) = last_at.and_then(parse_time) else {
        return Vec::new();
    };
    let prev = before.unwrap_or(0);
    if now <= prev {
        return Vec::new(); // unchanged, or reset by a merge: nothing new to date
    }
    let first = (prev + 1).max(now.saturating_sub(MAX_EVENTS_PER_READ - 1));
    (first..=now)
        .map(|n| Event {
            id: format!("hs-{}-{contact_id}-{n}", counter.kind.as_str()),
            kind: counter.kind,
            at,
            url: None,
            form: None,
            campaign: None,
            direction: None,
            outcome: None,
            owner: None,
        })
        .collect()
}

/// Properties holding the contact's latest form submission.
pub const CONVERSION_PROPERTIES: [&str; 3] = [
    "recent_conversion_event_name",
    "recent_conversion_date",
    "num_conversion_events",
];

/// The contact's latest form submission from its conversion properties, when the form
/// submissions API was not read for it. The id is the conversion count, so the same submission
/// read twice counts once, and the next one gets a new id. The name is "Page title: Form name",
/// which the rules' `[[forms]]` patterns classify like a form name.
pub fn conversion_event(
    contact_id: &str,
    name: Option<&str>,
    date: Option<&str>,
    count: Option<&str>,
) -> Option<Event> {
    let name = name.map(str::trim).filter(|n| !n.is_empty())?;
    let at = parse_time(date?)?;
    let n = count.and_then(|c| c.trim().parse::<f64>().ok()).map_or(0, |c| c as u64);
    Some(Event {
        id: format!("hs-conversion-{contact_id}-{n}"),
        kind: EventKind::FormSubmission,
        at,
        url: None,
        form: Some(name.to_string()),
        campaign: None,
        direction: None,
        outcome: None,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PV: Counter = COUNTERS[0];

    #[test]
    fn an_increase_becomes_dated_events_with_stable_ids() {
        let e = events_from_counter("42", &PV, Some(3), Some("5"), Some("2026-11-20T10:00:00Z"));
        let ids: Vec<_> = e.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["hs-page_view-42-4", "hs-page_view-42-5"]);
        assert!(
            e.iter()
                .all(|e| e.kind == EventKind::PageView && e.at.to_rfc3339() == "2026-11-20T10:00:00+00:00")
        );
        // the same read again makes the same ids: the engine counts them once
        assert_eq!(
            e,
            events_from_counter("42", &PV, Some(3), Some("5"), Some("2026-11-20T10:00:00Z"))
        );
    }

    #[test]
    fn the_latest_conversion_is_a_form_event_counted_once() {
        let e = conversion_event("42", Some("Pricing: Request a demo"), Some("1764000000000"), Some("3")).unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind, e.form.as_deref()),
            (
                "hs-conversion-42-3",
                EventKind::FormSubmission,
                Some("Pricing: Request a demo")
            )
        );
        assert!(conversion_event("42", None, Some("1764000000000"), Some("3")).is_none());
        assert!(conversion_event("42", Some("x"), None, Some("3")).is_none());
    }

    #[test]
    fn no_increase_no_events_and_a_first_read_is_capped() {
        assert!(events_from_counter("42", &PV, Some(5), Some("5"), Some("1700000000000")).is_empty());
        assert!(events_from_counter("42", &PV, Some(9), Some("5"), Some("1700000000000")).is_empty());
        assert!(
            events_from_counter("42", &PV, None, Some("7"), None).is_empty(),
            "undatable"
        );
        let e = events_from_counter("42", &PV, None, Some("300"), Some("1700000000000"));
        assert_eq!(e.len() as u64, MAX_EVENTS_PER_READ);
        assert_eq!(e.last().unwrap().id, "hs-page_view-42-300");
    }
}
