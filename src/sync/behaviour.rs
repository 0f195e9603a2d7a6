//! Behaviour the contact record cannot tell on its own: every form submission (all tiers), and,
//! where the portal has the APIs, page views and marketing-email opens and clicks event by event.
//!
//! The contact's own counters say when there is something to read: a contact whose
//! `num_conversion_events` rose by one has its one new submission in `recent_conversion_*`
//! (already an event, `analytics::conversion_event`); only a rise of two or more, or a new
//! contact with two or more, sends leadsync to the per-form submissions listing, newest first
//! and back to the earliest time any such contact needs. Page views and email events are read
//! per contact, and only for contacts whose counter rose. So the cost follows new behaviour,
//! not the size of the portal or the number of cycles.
//!
//! A backfill reads every form's submissions once, before it lists the contacts, and files them
//! in the store (`staged`, keyed by a hash of the email); each block takes its own from there,
//! and a resumed backfill does not read them again.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::{SyncError, Syncer};
use crate::hubspot::analytics::{CONVERSION_PROPERTIES, COUNTERS, Counter};
use crate::hubspot::behaviour::Form;
use crate::hubspot::limiter::Priority;
use crate::hubspot::types::{HubSpotObject, parse_time};
use crate::lifecycle::{Event, EventKind, HubSpotId};
use crate::store::{ContactRow, email_key};

/// How far before the last counted event a re-read starts (HubSpot's clocks and indexes lag a
/// little; the ledger's ids make a repeat free).
const MARGIN: Duration = Duration::minutes(5);

/// Contact properties the behaviour reads rely on.
pub const PROPERTIES: [&str; 2] = ["email", "createdate"];

/// Which event-by-event sources the portal has (`hubspot.event_analytics`, `hubspot.email_events`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BehaviourSources {
    /// Page views from the event analytics API (Enterprise) instead of the page-view counter.
    pub event_analytics: bool,
    /// Email opens and clicks from the email events API instead of their counters.
    pub email_events: bool,
}

impl BehaviourSources {
    /// The counters still turned into events: those no API replaces.
    pub fn counters(&self) -> Vec<Counter> {
        COUNTERS
            .into_iter()
            .filter(|c| match c.kind {
                EventKind::PageView => !self.event_analytics,
                EventKind::EmailOpen | EventKind::EmailClick => !self.email_events,
                _ => true,
            })
            .collect()
    }
}

/// Where a pass finds the contacts' form submissions.
pub(crate) enum FormSource<'a> {
    /// The per-form listing, read now for the contacts that need it (cycles, webhooks).
    Listing,
    /// Filed in the store by the backfill that runs.
    Staged,
    /// Held in memory (a dry run, a `--since` backfill).
    Held(&'a HashMap<String, Vec<Event>>),
}

fn number(props: &BTreeMap<String, String>, name: &str) -> u64 {
    props
        .get(name)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v.max(0.0) as u64)
}

fn hubspot_number(c: &HubSpotObject, name: &str) -> u64 {
    c.prop(name)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v.max(0.0) as u64)
}

/// The contact's email as HubSpot holds it, lower-cased.
fn email(c: &HubSpotObject) -> Option<String> {
    c.prop("email")
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

/// From when a contact's behaviour must be read: since its last evaluation (whose `now` is never
/// later than the read of the record it used: everything before is in the ledger, the counters
/// and conversion count then included it), or since it was created (new to leadsync).
fn read_since(c: &HubSpotObject, stored: Option<&ContactRow>) -> DateTime<Utc> {
    let known = match stored {
        Some(row) => Some(row.evaluated_at),
        None => c.prop("createdate").and_then(parse_time),
    };
    known.map_or(DateTime::UNIX_EPOCH, |t| t - MARGIN)
}

/// When the per-form listing must be read for this contact, and from when: its submission count
/// rose by more than the one its conversion properties describe.
pub(crate) fn forms_needed(c: &HubSpotObject, stored: Option<&ContactRow>) -> Option<DateTime<Utc>> {
    let now = hubspot_number(c, CONVERSION_PROPERTIES[2]);
    let before = stored.map_or(0, |s| number(&s.properties, CONVERSION_PROPERTIES[2]));
    (now >= before + 2).then(|| read_since(c, stored))
}

/// When a counter's events must be read for this contact, and from when: the counter rose.
fn counter_needed(c: &HubSpotObject, stored: Option<&ContactRow>, counter: &Counter) -> Option<DateTime<Utc>> {
    let now = hubspot_number(c, counter.count);
    let before = stored.map_or(0, |s| number(&s.properties, counter.count));
    (now > before).then(|| read_since(c, stored))
}

impl Syncer {
    /// Behaviour events of these contacts that their records do not carry, by contact id.
    pub(crate) async fn behaviour(
        &self,
        contacts: &[HubSpotObject],
        stored: &HashMap<HubSpotId, ContactRow>,
        forms: FormSource<'_>,
        p: Priority,
    ) -> Result<BTreeMap<String, Vec<Event>>, SyncError> {
        let row = |c: &HubSpotObject| HubSpotId::try_from(c.id.clone()).ok().and_then(|id| stored.get(&id));
        let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();

        // Form submissions: by email, the only link the forms API gives.
        let by_email: HashMap<String, &str> = contacts
            .iter()
            .filter_map(|c| email(c).map(|e| (e, c.id.as_str())))
            .collect();
        match forms {
            FormSource::Listing => {
                let since = contacts.iter().filter_map(|c| forms_needed(c, row(c))).min();
                if let Some(since) = since {
                    for (email, event) in self.submissions_since(since, p).await? {
                        if let Some(id) = by_email.get(&email) {
                            out.entry(id.to_string()).or_default().push(event);
                        }
                    }
                }
            }
            FormSource::Staged => {
                let keys: Vec<String> = by_email.keys().map(|e| email_key(e)).collect();
                let staged = self.store.staged(&keys).await?;
                for (email, id) in &by_email {
                    if let Some(events) = staged.get(&email_key(email)) {
                        out.entry(id.to_string()).or_default().extend(events.iter().cloned());
                    }
                }
            }
            FormSource::Held(held) => {
                for (email, id) in &by_email {
                    if let Some(events) = held.get(&email_key(email)) {
                        out.entry(id.to_string()).or_default().extend(events.iter().cloned());
                    }
                }
            }
        }

        // Page views and email events, contact by contact, only where the counter rose. The
        // limiter paces the calls; they are sent a few at a time.
        let [page_views, opens, clicks] = COUNTERS;
        let mut reads = Vec::new();
        for c in contacts {
            let stored = row(c);
            if self.sources.event_analytics
                && let Some(since) = counter_needed(c, stored, &page_views)
            {
                reads.push(Read::PageViews(c.id.clone(), since));
            }
            if self.sources.email_events
                && let Some(email) = email(c)
            {
                let since = [&opens, &clicks]
                    .into_iter()
                    .filter_map(|counter| counter_needed(c, stored, counter))
                    .min();
                if let Some(since) = since {
                    reads.push(Read::EmailEvents(c.id.clone(), email, since));
                }
            }
        }
        for group in reads.chunks(8) {
            let calls = group.iter().map(|r| async move {
                match r {
                    Read::PageViews(id, since) => Ok((id.clone(), self.hubspot.page_views(id, *since, p).await?)),
                    Read::EmailEvents(id, email, since) => {
                        Ok((id.clone(), self.hubspot.email_events(email, *since, p).await?))
                    }
                }
            });
            for (id, events) in futures::future::try_join_all(calls).await.map_err(SyncError::HubSpot)? {
                out.entry(id).or_default().extend(events);
            }
        }
        Ok(out)
    }

    /// Every form's submissions since `since`, as (lower-cased email, event).
    pub(crate) async fn submissions_since(
        &self,
        since: DateTime<Utc>,
        p: Priority,
    ) -> Result<Vec<(String, Event)>, SyncError> {
        let forms: Vec<Form> = self.hubspot.forms(p).await?;
        let mut out = Vec::new();
        for form in &forms {
            for s in self.hubspot.form_submissions(form, since, p).await? {
                out.push((s.email, s.event));
            }
        }
        Ok(out)
    }
}

/// One per-contact behaviour read.
enum Read {
    PageViews(String, DateTime<Utc>),
    EmailEvents(String, String, DateTime<Utc>),
}
