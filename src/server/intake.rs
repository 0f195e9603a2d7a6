//! HubSpot's deliveries into the inbox: verified, parsed, deduplicated, saved, acknowledged.
//!
//! Nothing here logs a body or a property value: deliveries carry personal data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::{AppState, Portals};
use crate::hubspot::signature::{self, SignatureError};
use crate::store::{InboxEvent, InboxWriter};

/// Why a delivery was refused, as HTTP.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Bad, missing or stale signature: 401.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// No client secret configured, so nothing can be verified: 401.
    #[error("no HubSpot client secret is configured; deliveries cannot be verified")]
    NoSecret,
    /// Not the JSON HubSpot sends: 400.
    #[error("body: {0}")]
    Malformed(String),
    /// The store is down: 503 (HubSpot delivers again later).
    #[error("store unavailable")]
    Store,
    /// Events for portals this deployment does not serve (`[[portals]]`): 400. The events of
    /// its own portals in the same delivery were kept.
    #[error(
        "portal(s) {} not among this deployment's portals (hubspot.portal_id of [[portals]]): {refused} event(s) refused, {kept} kept",
        .portals.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    )]
    UnknownPortal {
        /// The portal ids refused.
        portals: Vec<u64>,
        /// Events refused.
        refused: usize,
        /// Events of configured portals kept from the same delivery.
        kept: usize,
    },
}

impl IntakeError {
    fn status(&self) -> StatusCode {
        match self {
            IntakeError::Signature(_) | IntakeError::NoSecret => StatusCode::UNAUTHORIZED,
            IntakeError::Malformed(_) | IntakeError::UnknownPortal { .. } => StatusCode::BAD_REQUEST,
            IntakeError::Store => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl axum::response::IntoResponse for IntakeError {
    fn into_response(self) -> axum::response::Response {
        (self.status(), self.to_string()).into_response()
    }
}

/// A refusal and the portal it is about (index in [`Portals::routes`]), when one is: the
/// portal whose inbox could not take its events. A delivery refused before it is routed (its
/// signature, its body) or for a portal not served has none.
struct Refusal {
    error: IntakeError,
    route: Option<usize>,
}

impl From<IntakeError> for Refusal {
    fn from(error: IntakeError) -> Refusal {
        Refusal { error, route: None }
    }
}

/// The portal label of an intake series: none with one portal (as a single-portal file always
/// had), else `portal="ID"` of the route, or `portal="unknown"` when the delivery names no
/// portal this deployment serves. Never a raw id from the body: a signed delivery could still
/// name any number of portals, each a new series.
fn portal_labels(portals: &Portals, route: Option<usize>) -> Vec<metrics::Label> {
    if !portals.several() {
        return Vec::new();
    }
    let label = route.map_or_else(|| "unknown".to_string(), |r| portals.label(r));
    vec![metrics::Label::new("portal", label)]
}

/// Counts a refusal (by status, and by portal with several) and answers it.
fn answer(portals: &Portals, result: Result<StatusCode, Refusal>) -> Result<StatusCode, IntakeError> {
    result.map_err(|Refusal { error, route }| {
        let mut labels = portal_labels(portals, route);
        labels.push(metrics::Label::new("status", error.status().as_u16().to_string()));
        metrics::counter!("leadsync_webhook_refused_total", labels).increment(1);
        error
    })
}

/// One event of a Webhooks API delivery (the fields leadsync reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotEvent {
    /// `contact.propertyChange`, `contact.creation`, `contact.merge`, `contact.deletion`,
    /// `contact.associationChange`, `object.creation`, …
    pub subscription_type: String,
    /// The object the event is about (a contact, or an engagement).
    pub object_id: u64,
    /// Changed property.
    #[serde(default)]
    pub property_name: Option<String>,
    /// New value.
    #[serde(default)]
    pub property_value: Option<String>,
    /// When it happened, epoch ms.
    #[serde(default)]
    pub occurred_at: i64,
    /// What made the change (`INTEGRATION`, `FORM`, `CRM_UI`, …).
    #[serde(default)]
    pub change_source: Option<String>,
    /// HubSpot's event id (not guaranteed unique: not the dedupe key).
    #[serde(default)]
    pub event_id: Option<u64>,
    /// Object type of generic `object.*` events (`0-48` calls, …).
    #[serde(default)]
    pub object_type_id: Option<String>,
    /// `contact.merge`: the contact that survives.
    #[serde(default)]
    pub primary_object_id: Option<u64>,
    /// `contact.merge`: the contacts merged into it.
    #[serde(default)]
    pub merged_object_ids: Vec<u64>,
    /// The portal (HubSpot account) the event happened in: with several portals, the inbox it
    /// goes to.
    #[serde(default)]
    pub portal_id: Option<u64>,
}

/// The dedupe key HubSpot's documentation allows: what the event says, not its id. The value
/// is hashed (SHA-256, hex): a key must not hold personal data, which a privacy deletion could
/// not reach inside a unique index.
pub fn dedupe_key(e: &HubSpotEvent) -> String {
    let value = match e.property_value.as_deref() {
        Some(v) => hex::encode(Sha256::digest(v.as_bytes())),
        None => String::new(),
    };
    format!(
        "{}|{}|{}|{}|{}",
        e.subscription_type,
        e.object_id,
        e.property_name.as_deref().unwrap_or(""),
        value,
        e.occurred_at
    )
}

/// A NUL byte, which PostgreSQL refuses in text. In the value it is replaced (U+FFFD) so the
/// event is kept (the worker reads the contact from HubSpot anyway); in a field HubSpot itself
/// names (type, property, source) it makes the delivery malformed, named by event and field.
fn without_nul(events: &mut [HubSpotEvent]) -> Result<(), IntakeError> {
    for (i, e) in events.iter_mut().enumerate() {
        let named = [
            ("subscriptionType", Some(&e.subscription_type)),
            ("propertyName", e.property_name.as_ref()),
            ("changeSource", e.change_source.as_ref()),
            ("objectTypeId", e.object_type_id.as_ref()),
        ];
        if let Some((field, _)) = named.iter().find(|(_, v)| v.is_some_and(|v| v.contains('\0'))) {
            return Err(IntakeError::Malformed(format!(
                "event {i}: {field} contains a NUL byte"
            )));
        }
        if let Some(v) = e.property_value.as_mut().filter(|v| v.contains('\0')) {
            *v = v.replace('\0', "\u{FFFD}");
            metrics::counter!("leadsync_webhook_nul_replaced_total").increment(1);
        }
    }
    Ok(())
}

/// The URI HubSpot signed: the public base URL when a proxy sits in front, else the request's.
fn signed_uri(state: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match &state.public_base_url {
        Some(base) => format!("{}{}", base.trim_end_matches('/'), path),
        None => {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /webhooks/hubspot`: a Webhooks API delivery (v3 signature, 5-minute window), its
/// events saved in the inbox of the portal each names.
pub async fn webhooks(
    State(portals): State<Arc<Portals>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, IntakeError> {
    answer(
        &portals,
        webhook_delivery(&portals, &method, &uri, &headers, &body).await,
    )
}

async fn webhook_delivery(
    portals: &Portals,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<StatusCode, Refusal> {
    let started = Instant::now();
    let signed = signed_uri(&portals.first().app, headers, uri);
    let now = Utc::now().timestamp_millis();
    let (_, signs_for) = portals
        .verify(|secret| {
            signature::verify_v3(
                secret,
                method.as_str(),
                &signed,
                body,
                header(headers, "x-hubspot-request-timestamp"),
                header(headers, "x-hubspot-signature-v3"),
                now,
            )
        })
        .map_err(IntakeError::from)?
        .ok_or(IntakeError::NoSecret)?;
    let events = webhook_events(body)?;
    let n = events.len() as u64;
    let routed = route(
        portals,
        signs_for,
        events.into_iter().enumerate().map(|(i, (p, e))| (i, p, e)),
    )?;
    // A delivery is counted under each portal it carried events of, `unknown` for those of
    // portals not served and for one with no event at all (one portal: every event its own,
    // unlabelled).
    let mut counted: Vec<(Option<usize>, u64)> = match portals.several() {
        false => vec![(None, n)],
        true => routed
            .kept
            .iter()
            .map(|(r, rows)| (Some(*r), rows.len() as u64))
            .collect(),
    };
    let unknown: usize = routed.unknown.values().sum();
    if unknown > 0 || counted.is_empty() {
        counted.push((None, unknown as u64));
    }
    let kept = save_routed(portals, routed.kept).await?;
    let ack = started.elapsed().as_secs_f64();
    for (r, events) in counted {
        let labels = portal_labels(portals, r);
        metrics::counter!("leadsync_webhook_deliveries_total", labels.clone()).increment(1);
        metrics::counter!("leadsync_webhook_events_total", labels.clone()).increment(events);
        metrics::histogram!("leadsync_webhook_ack_seconds", labels).record(ack);
    }
    Ok(refuse_unknown(routed.unknown, kept)?)
}

/// `POST /webhooks/hubspot/workflow`: a workflow "send a webhook" action (a contact record,
/// v2 signature); with several portals the record names its portal (`portalId` or
/// `portal-id`).
pub async fn workflow(
    State(portals): State<Arc<Portals>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, IntakeError> {
    answer(
        &portals,
        workflow_delivery(&portals, &method, &uri, &headers, &body).await,
    )
}

async fn workflow_delivery(
    portals: &Portals,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<StatusCode, Refusal> {
    let signed = signed_uri(&portals.first().app, headers, uri);
    let (secret, signs_for) = portals
        .verify(|secret| {
            signature::verify_v2(
                secret,
                method.as_str(),
                &signed,
                body,
                header(headers, "x-hubspot-signature"),
            )
        })
        .map_err(IntakeError::from)?
        .ok_or(IntakeError::NoSecret)?;
    let (portal, row) = workflow_row_of_portal(secret, body)?;
    let routed = route(portals, signs_for, [(0, portal, row)])?;
    let kept = save_routed(portals, routed.kept).await?;
    Ok(refuse_unknown(routed.unknown, kept)?)
}

/// A delivery's rows by the portal they go to (index in [`Portals::routes`]), and the events
/// of portals this deployment does not serve, counted by portal id.
struct Routed {
    kept: BTreeMap<usize, Vec<InboxEvent>>,
    unknown: BTreeMap<u64, usize>,
}

/// Each event to its portal: with one portal, every event to it (as a single-portal file has
/// always had); with several, to the portal its `portalId` names among those the delivery's
/// secret signs for. An event that names no portal then makes the delivery malformed.
fn route(
    portals: &Portals,
    signs_for: &[usize],
    events: impl IntoIterator<Item = (usize, Option<u64>, InboxEvent)>,
) -> Result<Routed, IntakeError> {
    let mut routed = Routed {
        kept: BTreeMap::new(),
        unknown: BTreeMap::new(),
    };
    for (i, portal, row) in events {
        if !portals.several() {
            routed.kept.entry(0).or_default().push(row);
            continue;
        }
        let Some(portal) = portal else {
            return Err(IntakeError::Malformed(format!(
                "event {i} has no portalId: this deployment serves several portals and routes each event by it"
            )));
        };
        match signs_for.iter().find(|r| portals.routes[**r].id == Some(portal)) {
            Some(r) => routed.kept.entry(*r).or_default().push(row),
            None => *routed.unknown.entry(portal).or_default() += 1,
        }
    }
    Ok(routed)
}

/// Saves each portal's rows in its inbox; the number of rows kept. A portal whose inbox
/// refuses them is the refusal's.
async fn save_routed(portals: &Portals, kept: BTreeMap<usize, Vec<InboxEvent>>) -> Result<usize, Refusal> {
    let mut n = 0;
    for (r, rows) in kept {
        n += rows.len();
        let route = &portals.routes[r];
        if portals.several() {
            metrics::counter!("leadsync_webhook_portal_events_total", "portal" => portals.label(r))
                .increment(rows.len() as u64);
        }
        save(&route.app, &route.inbox, rows, portal_labels(portals, Some(r)))
            .await
            .map_err(|error| Refusal { error, route: Some(r) })?;
    }
    Ok(n)
}

/// 200, unless events named portals this deployment does not serve: then 400, logged with
/// the portal ids and counts only.
fn refuse_unknown(unknown: BTreeMap<u64, usize>, kept: usize) -> Result<StatusCode, IntakeError> {
    if unknown.is_empty() {
        return Ok(StatusCode::OK);
    }
    let refused = unknown.values().sum();
    let portals: Vec<u64> = unknown.into_keys().collect();
    warn!(portals = ?portals, refused, kept, "webhook events for portals this deployment does not serve: refused");
    Err(IntakeError::UnknownPortal { portals, refused, kept })
}

/// A Webhooks API delivery's body (already signature-checked) as inbox rows, one per event, each
/// with the portal its event names; a body that is not HubSpot's JSON array of events is
/// `Malformed`, with serde's line and column.
pub fn webhook_events(body: &[u8]) -> Result<Vec<(Option<u64>, InboxEvent)>, IntakeError> {
    let mut events: Vec<HubSpotEvent> =
        serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    without_nul(&mut events)?;
    Ok(events
        .iter()
        .map(|e| {
            (
                e.portal_id,
                InboxEvent {
                    dedupe_key: dedupe_key(e),
                    contact_id: e.object_id.to_string(),
                    subscription: e.subscription_type.clone(),
                    payload: serde_json::json!({
                        "subscriptionType": e.subscription_type,
                        "objectId": e.object_id,
                        "objectTypeId": e.object_type_id,
                        "propertyName": e.property_name,
                        "propertyValue": e.property_value,
                        "occurredAt": e.occurred_at,
                        "changeSource": e.change_source,
                        "eventId": e.event_id,
                        "primaryObjectId": e.primary_object_id,
                        "mergedObjectIds": e.merged_object_ids,
                    })
                    .to_string(),
                },
            )
        })
        .collect())
}

/// A workflow webhook's body (already signature-checked) as its one inbox row, with the portal
/// the record names (`portalId`, or `portal-id` as the contacts API's records have it).
pub fn workflow_row_of_portal(
    secret: &secrecy::SecretString,
    body: &[u8],
) -> Result<(Option<u64>, InboxEvent), IntakeError> {
    let record: serde_json::Value = serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    let portal = ["portalId", "portal-id"]
        .into_iter()
        .find_map(|k| record.get(k).and_then(serde_json::Value::as_u64));
    let id = workflow_record_id(&record)
        .ok_or_else(|| IntakeError::Malformed("the record has no numeric id (objectId, vid or hs_object_id)".into()))?;
    // A workflow fires once per enrolment; the signature-checked body is its identity.
    let digest = signature::sign_v1(secret, body);
    Ok((
        portal,
        InboxEvent {
            dedupe_key: format!("workflow|{id}|{digest}"),
            contact_id: id.clone(),
            subscription: "workflow".into(),
            payload: serde_json::json!({ "subscriptionType": "workflow", "objectId": id }).to_string(),
        },
    ))
}

/// The contact id of a workflow webhook body: HubSpot sends the record as its object API reads
/// it, so one body may carry several ids at once (`objectId`, `vid` with `canonical-vid`, and
/// `hs_object_id`, at the top or among `properties`, plain or as `{"value": …}`). The first of
/// those, in that order, that holds a numeric id wins; `canonical-vid` before `vid`, because a
/// merged contact's canonical id is the one that lives on.
fn workflow_record_id(record: &serde_json::Value) -> Option<String> {
    fn numeric(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Number(n) if n.is_u64() => Some(n.to_string()),
            serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("value").and_then(numeric),
            _ => None,
        }
    }
    let top = ["objectId", "canonical-vid", "vid", "hs_object_id"]
        .into_iter()
        .find_map(|k| record.get(k).and_then(numeric));
    top.or_else(|| record.get("properties")?.get("hs_object_id").and_then(numeric))
}

/// Keeps the events through the group-commit writer: returns once they are committed.
/// Duplicates are counted under `labels` (the portal's, with several).
async fn save(
    state: &AppState,
    inbox: &InboxWriter,
    rows: Vec<InboxEvent>,
    labels: Vec<metrics::Label>,
) -> Result<(), IntakeError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len() as u64;
    match inbox.put(rows).await {
        Ok(new) => {
            metrics::counter!("leadsync_webhook_duplicates_total", labels).increment(n - new);
            state.wake.notify_one();
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, "inbox unavailable; HubSpot will deliver again");
            Err(IntakeError::Store)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::workflow_record_id;
    use serde_json::json;

    #[test]
    fn a_workflow_body_with_several_ids_names_one_contact() {
        let cases = [
            (
                json!({"objectId": 51, "vid": 51, "properties": {"hs_object_id": {"value": "51"}}}),
                Some("51"),
            ),
            (json!({"vid": 7, "canonical-vid": 9, "properties": {}}), Some("9")),
            (json!({"hs_object_id": "12"}), Some("12")),
            (json!({"properties": {"hs_object_id": {"value": "33"}}}), Some("33")),
            (json!({"properties": {"hs_object_id": "34"}}), Some("34")),
            (json!({"objectId": "x1", "vid": 5}), Some("5")),
            (json!({"objectId": -4}), None),
            (json!({"name": "no id"}), None),
        ];
        for (body, want) in cases {
            assert_eq!(workflow_record_id(&body).as_deref(), want, "{body}");
        }
    }
}
