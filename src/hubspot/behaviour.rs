//! Dated behaviour beyond sales activity, from the sources a portal has (configuration says
//! which): form submissions per form (every portal; cost in proportion to submissions), the
//! event analytics API (page views event by event, Enterprise) and the email events API
//! (opens and clicks event by event, Enterprise). Portals without the last two use the
//! analytics counters on the contact (`analytics.rs`).

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::client::{Call, HubSpotClient, HubSpotError};
use super::limiter::{Budget, Priority};
use super::types::{LIST_PAGE_LIMIT, Page};
use crate::lifecycle::{Event, EventKind};

/// Submissions per page of the form-integrations API (its maximum).
const SUBMISSIONS_PAGE: usize = 50;

/// A form of the portal.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Form {
    /// Form GUID.
    pub id: String,
    /// Form name (what `[[forms]]` patterns classify).
    pub name: String,
}

/// One submission, with the email it was made with (the API gives no contact id).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Lower-cased email of the submitter: personal data, never logged.
    pub email: String,
    /// The event for the engine.
    pub event: Event,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSubmission {
    submitted_at: i64,
    #[serde(default)]
    values: Vec<RawValue>,
    #[serde(default)]
    page_url: Option<String>,
}

#[derive(Deserialize)]
struct RawValue {
    name: String,
    value: String,
}

/// Whether two form events are one submission read from two sources: the forms API
/// (`hs-form-{guid}-{ms}`) and the contact's conversion properties (`hs-conversion-…`, see
/// `analytics::conversion_event`) describe the same submission when they share its millisecond
/// and its form. Two events of one source are never one by time: a forms-API id already is the
/// (form, time), so two forms submitted in the same millisecond stay two events, whichever is
/// read first and whatever order the store returns them in.
pub fn same_submission(a: &Event, b: &Event) -> bool {
    let conversion = |e: &Event| e.id.starts_with("hs-conversion-");
    if a.kind != EventKind::FormSubmission
        || b.kind != EventKind::FormSubmission
        || a.at != b.at
        || conversion(a) == conversion(b)
    {
        return false;
    }
    let (named, listed) = if conversion(a) { (a, b) } else { (b, a) };
    match (named.form.as_deref(), listed.form.as_deref()) {
        // The conversion name is "Page title: Form name" (or the form name alone).
        (Some(named), Some(form)) => {
            let (named, form) = (named.trim().to_lowercase(), form.trim().to_lowercase());
            named == form || named.ends_with(&format!(": {form}"))
        }
        _ => false,
    }
}

impl HubSpotClient {
    /// Every form of the portal.
    pub async fn forms(&self, priority: Priority) -> Result<Vec<Form>, HubSpotError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", LIST_PAGE_LIMIT.to_string())];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let page: Page<Form> = self
                .call(Call::<()> {
                    endpoint: "forms.list",
                    method: Method::GET,
                    path: "/marketing/v3/forms",
                    query: &query,
                    body: None,
                    budget: Budget::General,
                    priority,
                })
                .await?;
            after = page.next_after().map(str::to_string);
            out.extend(page.results);
            if after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Submissions of `form` since `since` (newest first from HubSpot; paging stops at `since`).
    pub async fn form_submissions(
        &self,
        form: &Form,
        since: DateTime<Utc>,
        priority: Priority,
    ) -> Result<Vec<Submission>, HubSpotError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = self.form_submissions_page(form, after.as_deref(), priority).await?;
            let reached_since = page.iter().any(|s| s.event.at < since);
            out.extend(page.into_iter().filter(|s| s.event.at >= since));
            after = next;
            if reached_since || after.is_none() {
                return Ok(out);
            }
        }
    }

    /// One page of `form`'s submissions, newest first, and the cursor of the next page.
    pub async fn form_submissions_page(
        &self,
        form: &Form,
        after: Option<&str>,
        priority: Priority,
    ) -> Result<(Vec<Submission>, Option<String>), HubSpotError> {
        let path = format!("/form-integrations/v1/submissions/forms/{}", form.id);
        let mut query = vec![("limit", SUBMISSIONS_PAGE.to_string())];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let page: Page<RawSubmission> = self
            .call(Call::<()> {
                endpoint: "forms.submissions",
                method: Method::GET,
                path: &path,
                query: &query,
                body: None,
                budget: Budget::General,
                priority,
            })
            .await?;
        let next = page.next_after().map(str::to_string);
        let submissions = page
            .results
            .iter()
            .filter_map(|s| {
                // A submission without an email cannot be linked to a contact.
                let email = s
                    .values
                    .iter()
                    .find(|v| v.name == "email")
                    .map(|v| v.value.trim().to_lowercase())
                    .filter(|e| !e.is_empty())?;
                let at = DateTime::from_timestamp_millis(s.submitted_at)?;
                Some(Submission {
                    event: Event {
                        id: format!("hs-form-{}-{}", form.id, s.submitted_at),
                        kind: EventKind::FormSubmission,
                        at,
                        url: s.page_url.clone(),
                        form: Some(form.name.clone()),
                        campaign: None,
                        direction: None,
                        outcome: None,
                        owner: None,
                    },
                    email,
                })
            })
            .collect();
        Ok((submissions, next))
    }

    /// Page views of one contact since `since`, event by event (event analytics API, Enterprise).
    pub async fn page_views(
        &self,
        contact_id: &str,
        since: DateTime<Utc>,
        priority: Priority,
    ) -> Result<Vec<Event>, HubSpotError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RawEvent {
            id: String,
            event_type: String,
            occurred_at: DateTime<Utc>,
            #[serde(default)]
            properties: std::collections::HashMap<String, String>,
        }
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("objectType", "contact".to_string()),
                ("objectId", contact_id.to_string()),
                ("eventType", "e_visited_page".to_string()),
                (
                    "occurredAfter",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
                ("limit", LIST_PAGE_LIMIT.to_string()),
            ];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let page: Page<RawEvent> = self
                .call(Call::<()> {
                    endpoint: "events.list",
                    method: Method::GET,
                    path: "/events/v3/events",
                    query: &query,
                    body: None,
                    budget: Budget::General,
                    priority,
                })
                .await?;
            out.extend(
                page.results
                    .iter()
                    .filter(|e| e.event_type == "e_visited_page")
                    .map(|e| Event {
                        id: format!("hs-event-{}", e.id),
                        kind: EventKind::PageView,
                        at: e.occurred_at,
                        url: e.properties.get("hs_url").cloned(),
                        form: None,
                        campaign: None,
                        direction: None,
                        outcome: None,
                        owner: None,
                    }),
            );
            after = page.next_after().map(str::to_string);
            if after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Marketing email opens and clicks of one recipient since `since` (email events API).
    pub async fn email_events(
        &self,
        email: &str,
        since: DateTime<Utc>,
        priority: Priority,
    ) -> Result<Vec<Event>, HubSpotError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            events: Vec<RawEmailEvent>,
            #[serde(default)]
            has_more: bool,
            #[serde(default)]
            offset: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RawEmailEvent {
            id: String,
            #[serde(rename = "type")]
            kind: String,
            created: i64,
            #[serde(default)]
            email_campaign_id: Option<u64>,
            #[serde(default)]
            url: Option<String>,
        }
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut query = vec![
                ("recipient", email.to_string()),
                ("startTimestamp", since.timestamp_millis().to_string()),
                ("limit", "1000".to_string()),
            ];
            if let Some(o) = &offset {
                query.push(("offset", o.clone()));
            }
            let page: Raw = self
                .call(Call::<()> {
                    endpoint: "email_events.list",
                    method: Method::GET,
                    path: "/email/public/v1/events",
                    query: &query,
                    body: None,
                    budget: Budget::General,
                    priority,
                })
                .await?;
            for e in &page.events {
                let kind = match e.kind.as_str() {
                    "OPEN" => EventKind::EmailOpen,
                    "CLICK" => EventKind::EmailClick,
                    _ => continue,
                };
                let Some(at) = DateTime::from_timestamp_millis(e.created) else {
                    continue;
                };
                out.push(Event {
                    id: format!("hs-email-event-{}", e.id),
                    kind,
                    at,
                    url: e.url.clone(),
                    form: None,
                    campaign: e.email_campaign_id.map(|c| c.to_string()),
                    direction: None,
                    outcome: None,
                    owner: None,
                });
            }
            offset = page.offset.filter(|_| page.has_more);
            if offset.is_none() {
                return Ok(out);
            }
        }
    }
}
