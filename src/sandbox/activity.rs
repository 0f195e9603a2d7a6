//! Sales activity a rep logs, as tests and `leadsync demo` simulate it: a call, an email or a
//! meeting, in HubSpot (an engagement on the contact) or in Salesforce (a Task or an Event on a
//! Contact, Account or Opportunity), through [`SandboxHandle::log_hubspot_activity`],
//! [`SandboxHandle::log_salesforce_activity`] or `POST /_sandbox/activities` on either listener.
//!
//! [`SandboxHandle::log_hubspot_activity`]: super::SandboxHandle::log_hubspot_activity
//! [`SandboxHandle::log_salesforce_activity`]: super::SandboxHandle::log_salesforce_activity

use axum::body::Bytes;
use axum::http::Method;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Shared, json};

/// The control path that logs a rep's activity (`POST`), on both listeners.
pub const ACTIVITIES_PATH: &str = "/_sandbox/activities";

/// What kind of touch a rep logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesActivityKind {
    /// A phone call: a HubSpot call, a Salesforce Task with `TaskSubtype` `Call`.
    Call,
    /// A one-to-one sales email: a HubSpot email, a Salesforce Task with `TaskSubtype` `Email`.
    Email,
    /// A meeting: a HubSpot meeting logged by the rep, a Salesforce Event.
    Meeting,
}

/// One touch a rep logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesActivity {
    /// Call, email or meeting.
    pub kind: SalesActivityKind,
    /// The rep: a HubSpot owner id, or a Salesforce user id. Default: the record's owner.
    pub rep: Option<String>,
    /// When it happened (the call, the email, the meeting's start). Default: the sandbox's now.
    /// The record itself is made now whatever this says, so it is read after any watermark.
    pub at: Option<DateTime<Utc>>,
    /// The contact reached out (an inbound call, a reply). Default false: the rep did.
    pub inbound: bool,
    /// A call that connected (Salesforce `CallDisposition` `Connected`, HubSpot
    /// `hs_call_status` `COMPLETED`); else no answer. A meeting that took place. Default true.
    pub connected: bool,
}

impl SalesActivity {
    /// An outbound, connected touch of `kind` by the record's owner, now.
    pub fn new(kind: SalesActivityKind) -> Self {
        Self {
            kind,
            rep: None,
            at: None,
            inbound: false,
            connected: true,
        }
    }
}

/// `POST /_sandbox/activities` with `{"on": id, "kind": "call"|"email"|"meeting", "rep"?,
/// "at"? (RFC 3339), "inbound"? (false), "connected"? (true)}`: `on` is a HubSpot contact (id or
/// email) on the HubSpot listener, a Salesforce Contact, Account or Opportunity id on the
/// Salesforce one. 201 with the record's `id` and `object`; 400 naming a bad field; 404 for an
/// unknown record.
pub(super) fn serve(shared: &Shared, salesforce: bool, method: &Method, body: &Bytes) -> Response {
    let refuse = |status: u16, message: String| json(status, &json!({"status": "error", "message": message}));
    if method != Method::POST {
        return refuse(405, format!("{ACTIVITIES_PATH}: POST only"));
    }
    let (on, activity) = match parse(body) {
        Ok(parsed) => parsed,
        Err(message) => return refuse(400, format!("{ACTIVITIES_PATH}: {message}")),
    };
    let now = shared.clock.now_ms();
    let logged = if salesforce {
        super::lock(&shared.salesforce)
            .log_activity(&on, &activity, now)
            .map(|(object, id)| (object.to_string(), id))
            .map_err(|e| (e["statusCode"].as_str() == Some("NOT_FOUND"), e))
    } else {
        super::lock(&shared.hubspot)
            .log_activity(&on, &activity, now)
            .map(|(object, id)| (object.to_string(), id))
            .map_err(|(missing, message)| (missing, json!({"message": message})))
    };
    match logged {
        Ok((object, id)) => json(201, &json!({"id": id, "object": object})),
        Err((true, e)) => refuse(
            404,
            format!("{ACTIVITIES_PATH}: on: {}", e["message"].as_str().unwrap_or("")),
        ),
        Err((false, e)) if salesforce => json(400, &json!([e])),
        Err((false, e)) => refuse(
            400,
            format!("{ACTIVITIES_PATH}: {}", e["message"].as_str().unwrap_or("")),
        ),
    }
}

fn parse(body: &Bytes) -> Result<(String, SalesActivity), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body must be a JSON object: {e}"))?;
    let text = |k: &str| -> Result<Option<String>, String> {
        match &v[k] {
            Value::Null => Ok(None),
            Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
            other => Err(format!("{k} must be a non-empty string, not {other}")),
        }
    };
    let flag = |k: &str, default: bool| -> Result<bool, String> {
        match &v[k] {
            Value::Null => Ok(default),
            Value::Bool(b) => Ok(*b),
            other => Err(format!("{k} must be true or false, not {other}")),
        }
    };
    let on = text("on")?.ok_or("on is required: the record the activity is logged on")?;
    let kind = match text("kind")?.as_deref() {
        Some("call") => SalesActivityKind::Call,
        Some("email") => SalesActivityKind::Email,
        Some("meeting") => SalesActivityKind::Meeting,
        Some(other) => return Err(format!("kind: {other:?} is not one of call, email, meeting")),
        None => return Err("kind is required: call, email or meeting".into()),
    };
    let at = match text("at")? {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|e| format!("at: {t:?} is not an RFC 3339 time: {e}"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    if let Some(unknown) = v
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| !["on", "kind", "rep", "at", "inbound", "connected"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {unknown:?}; known: on, kind, rep, at, inbound, connected"
        ));
    }
    Ok((
        on,
        SalesActivity {
            kind,
            rep: text("rep")?,
            at,
            inbound: flag("inbound", false)?,
            connected: flag("connected", true)?,
        },
    ))
}
