//! Behaviour APIs as HubSpot serves them: the forms list (`limit`, `after`), the event analytics
//! API (page views of one contact, newest first, `after` cursor) and the legacy email events API
//! (`offset` and `hasMore`). The last two exist only on an Enterprise portal; elsewhere HubSpot
//! refuses the scope they need, with 403 `MISSING_SCOPES`.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{Value, json};

use super::{HubSpotState, error};
use crate::sandbox::portal::{BehaviourEvent, CONTACT_ID_BASE, EMAIL_CAMPAIGNS, PAGES, iso, mix, parse_ms, uuid};
use crate::sandbox::{correlation_id, json};

/// Forms per page unless asked (HubSpot's default).
const FORMS_PAGE_DEFAULT: usize = 20;
/// Events per page of the event analytics API unless asked, and its maximum.
const EVENTS_PAGE_DEFAULT: usize = 100;
const EVENTS_PAGE_MAX: usize = 1_000;
/// Events per page of the email events API unless asked, and its maximum.
const EMAIL_PAGE_DEFAULT: usize = 100;
const EMAIL_PAGE_MAX: usize = 1_000;

/// HubSpot's answer to a call whose scope the portal cannot grant (its tier lacks the API).
pub(super) fn missing_scopes(scope: &str, api: &str, tier: &str, now: i64) -> Response {
    json(
        403,
        &json!({"status": "error",
            "message": format!("This app hasn't been granted all required scopes to make this call: the {api} needs {scope}, which a {tier} portal does not have (Marketing Hub Enterprise)."),
            "correlationId": correlation_id(now),
            "errors": [{"message": "One or more of the following scopes are required.",
                "context": {"requiredScopes": [scope]}}],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES"}),
    )
}

/// `GET /marketing/v3/forms`: every form, `limit` a page (at most 100), `after` cursor.
pub(super) fn forms(s: &HubSpotState, query: &BTreeMap<String, String>, now: i64) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => FORMS_PAGE_DEFAULT,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return error(400, "VALIDATION_ERROR", "limit must be between 1 and 100", now),
    };
    let start = query.get("after").and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
    let created = iso(s.portal.now_ms - s.portal.history_ms);
    let results: Vec<Value> = s
        .portal
        .forms
        .iter()
        .skip(start)
        .take(limit)
        .map(|f| {
            json!({"id": f.guid, "name": f.name, "formType": "hubspot", "archived": false,
                "createdAt": created, "updatedAt": created})
        })
        .collect();
    let mut out = json!({"results": results});
    if start + limit < s.portal.forms.len() {
        out["paging"] = json!({"next": {"after": (start + limit).to_string()}});
    }
    json(200, &out)
}

/// A page limit from the query: its default when absent; past the maximum, why not.
fn page_limit(query: &BTreeMap<String, String>, default: usize, max: usize) -> Result<usize, String> {
    match query.get("limit").map(|l| l.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=max).contains(&l) => Ok(l),
        Some(_) => Err(format!("limit must be between 1 and {max}")),
    }
}

/// A time bound from the query (ISO 8601 or epoch ms), or why it cannot be read.
fn time_bound(query: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, String> {
    match query.get(name) {
        None => Ok(None),
        Some(v) => parse_ms(v)
            .map(Some)
            .ok_or_else(|| format!("{name} must be an ISO 8601 date-time or epoch milliseconds, not {v:?}")),
    }
}

/// The page limit and the two time bounds of a listing, or HubSpot's 400 naming the bad one.
fn listing(
    query: &BTreeMap<String, String>,
    (default, max): (usize, usize),
    (from, to): (&str, &str),
) -> Result<(usize, Option<i64>, Option<i64>), String> {
    Ok((
        page_limit(query, default, max)?,
        time_bound(query, from)?,
        time_bound(query, to)?,
    ))
}

/// Pages an oldest-first list newest first; the cursor is a position in the oldest-first list,
/// so events that arrive meanwhile do not shift the pages being read.
fn newest_first<T: Clone>(list: &[T], after: Option<&String>, limit: usize) -> (Vec<T>, Option<String>) {
    let end = after
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(list.len())
        .min(list.len());
    let start = end.saturating_sub(limit);
    let page = list[start..end].iter().rev().cloned().collect();
    (page, (start > 0).then(|| start.to_string()))
}

/// `GET /events/v3/events?objectType=contact&objectId=…&eventType=e_visited_page`: one contact's
/// page views, newest first (HubSpot's default order), within `occurredAfter`/`occurredBefore`.
pub(super) fn page_views(s: &HubSpotState, query: &BTreeMap<String, String>, now: i64) -> Response {
    let (limit, after_ms, before_ms) = match listing(
        query,
        (EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX),
        ("occurredAfter", "occurredBefore"),
    ) {
        Ok(l) => l,
        Err(m) => return error(400, "VALIDATION_ERROR", &m, now),
    };
    if !matches!(
        query.get("objectType").map(String::as_str),
        Some("contact" | "contacts" | "0-1")
    ) {
        return error(
            400,
            "VALIDATION_ERROR",
            "objectType must be contact: the sandbox serves contacts' events",
            now,
        );
    }
    let Some(id) = query.get("objectId") else {
        return error(
            400,
            "VALIDATION_ERROR",
            "objectId is required: the sandbox lists one contact's events at a time",
            now,
        );
    };
    let Some(index) = s.contact_index(id) else {
        return json(200, &json!({"results": []}));
    };
    let wanted = query.get("eventType").map(String::as_str);
    let events: Vec<BehaviourEvent> = if wanted.is_some_and(|t| t != "e_visited_page") {
        vec![]
    } else {
        s.page_views(index)
            .into_iter()
            .filter(|e| after_ms.is_none_or(|a| e.at > a) && before_ms.is_none_or(|b| e.at < b))
            .collect()
    };
    let (page, next) = newest_first(&events, query.get("after"), limit);
    let contact = u64::from(index) + CONTACT_ID_BASE;
    let results: Vec<Value> = page
        .iter()
        .map(|e| {
            let path = PAGES[e.what % PAGES.len()];
            json!({"objectType": "CONTACT", "objectId": contact.to_string(), "eventType": "e_visited_page",
                "occurredAt": iso(e.at), "id": uuid(mix(s.portal.seed, 0xEE, contact), e.n),
                "properties": {"hs_url": format!("https://www.example.com{path}"),
                    "hs_page_path": path, "hs_session_id": format!("{:x}", mix(contact, e.n / 4, 0x5E))}})
        })
        .collect();
    let mut out = json!({"results": results});
    if let Some(after) = next {
        out["paging"] = json!({"next": {"after": after}});
    }
    json(200, &out)
}

/// `GET /email/public/v1/events?recipient=…&startTimestamp=…`: one recipient's marketing email
/// opens and clicks, newest first, `offset` and `hasMore` paging.
pub(super) fn email_events(s: &HubSpotState, query: &BTreeMap<String, String>, now: i64) -> Response {
    let (limit, start, end) = match listing(
        query,
        (EMAIL_PAGE_DEFAULT, EMAIL_PAGE_MAX),
        ("startTimestamp", "endTimestamp"),
    ) {
        Ok(l) => l,
        Err(m) => return error(400, "VALIDATION_ERROR", &m, now),
    };
    let wanted = query.get("eventType").map(String::as_str);
    let recipient = query.get("recipient").map(|r| r.trim().to_lowercase());
    let Some(index) = recipient.as_deref().and_then(|r| s.index_by_email(r)) else {
        return json(200, &json!({"events": [], "hasMore": false}));
    };
    let (opens, clicks) = s.email_events(index);
    let mut events: Vec<(BehaviourEvent, &str)> = opens
        .into_iter()
        .map(|e| (e, "OPEN"))
        .chain(clicks.into_iter().map(|e| (e, "CLICK")))
        .filter(|(e, kind)| {
            start.is_none_or(|a| e.at >= a) && end.is_none_or(|b| e.at <= b) && wanted.is_none_or(|w| w == *kind)
        })
        .collect();
    events.sort_by_key(|(e, kind)| (e.at, *kind == "CLICK", e.n));
    let (page, next) = newest_first(&events, query.get("offset"), limit);
    let contact = u64::from(index) + CONTACT_ID_BASE;
    let email = recipient.unwrap_or_default();
    let out: Vec<Value> = page
        .iter()
        .map(|(e, kind)| {
            let campaign = EMAIL_CAMPAIGNS[e.what % EMAIL_CAMPAIGNS.len()];
            let salt = if *kind == "OPEN" { 0xE0 } else { 0xC1 };
            let mut v = json!({"id": uuid(mix(s.portal.seed, salt, contact), e.n), "type": kind,
                "created": e.at, "recipient": email, "emailCampaignId": campaign,
                "portalId": s.portal_id, "appId": 113, "sentBy": {"id": uuid(campaign, 0), "created": e.at - 3_600_000}});
            if *kind == "CLICK" {
                v["url"] = json!(format!("https://www.example.com{}", PAGES[e.what % PAGES.len()]));
            }
            v
        })
        .collect();
    let mut body = json!({"events": out, "hasMore": next.is_some()});
    if let Some(offset) = next {
        body["offset"] = json!(offset);
    }
    json(200, &body)
}
