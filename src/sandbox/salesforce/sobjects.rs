//! Single-record REST: `sobjects/{SObject}` create, `sobjects/{SObject}/{id}` read, update and
//! delete, and `sobjects/{SObject}/{ExtIdField}/{value}` read and upsert by external id, with
//! Salesforce's statuses (201 created, 200 or 204 updated, 300 several matches, 404 none) and
//! its error array `[{"message","errorCode","fields"}]`.

use serde_json::{Map, Value, json};

use super::schema::fields;
use super::{SalesforceState, api_error, with_attributes};
use crate::sandbox::form_pairs;

/// What a request asked for, decoded from its path.
pub(super) enum Target<'a> {
    /// `sobjects/{SObject}`.
    Object(&'a str),
    /// `sobjects/{SObject}/{id}`.
    Record(&'a str, String),
    /// `sobjects/{SObject}/{ExtIdField}/{value}`.
    External(&'a str, &'a str, String),
}

/// Reads `sobjects/...` (without `describe`, which is routed before).
pub(super) fn target(rest: &str) -> Option<Target<'_>> {
    let parts: Vec<&str> = rest.strip_prefix("sobjects/")?.split('/').collect();
    match parts.as_slice() {
        [object] => Some(Target::Object(object)),
        [object, id] => Some(Target::Record(object, decode(id))),
        [object, field, value] => Some(Target::External(object, field, decode(value))),
        _ => None,
    }
}

/// A path segment as text (percent-decoded; `+` is a space, as `quote_plus` sends it).
fn decode(segment: &str) -> String {
    form_pairs(&format!("v={segment}")).remove("v").unwrap_or_default()
}

fn not_found() -> (u16, Value) {
    api_error(404, "NOT_FOUND", "The requested resource does not exist")
}

/// A record-level error (`{"statusCode","message","fields"}`) in the REST array shape.
fn as_api_error(status: u16, e: Value) -> (u16, Value) {
    let mut out = json!({"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]});
    if !e["duplicateResult"].is_null() {
        out["duplicateResult"] = e["duplicateResult"].clone();
    }
    (status, json!([out]))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Positions of the records of `object` whose `field` holds `value`.
fn matching(s: &SalesforceState, object: &str, field: &str, value: &str) -> Vec<usize> {
    s.records
        .get(object)
        .map(|rs| {
            rs.iter()
                .enumerate()
                .filter(|(_, r)| r.get(field).and_then(text).as_deref() == Some(value))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default()
}

/// The canonical name of an external-id field (or `Id`) of `object`, or the error to answer.
fn external_field(object: &str, field: &str) -> Result<&'static str, (u16, Value)> {
    let defs = fields(object).unwrap_or_default();
    match defs.iter().find(|d| d.0.eq_ignore_ascii_case(field)) {
        Some(d) if d.5 || d.0 == "Id" => Ok(d.0),
        Some(d) => Err(api_error(
            400,
            "INVALID_FIELD",
            &format!(
                "Field name provided, {} is not an External ID or indexed field for {object}",
                d.0
            ),
        )),
        None => Err(api_error(
            404,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
        )),
    }
}

/// The record's URL, as `attributes.url` and 300 answers name it.
fn record_url(version: &str, object: &str, r: &Map<String, Value>) -> String {
    format!(
        "/services/data/{version}/sobjects/{object}/{}",
        r["Id"].as_str().unwrap_or("")
    )
}

/// The 300 answer: the URLs of every matching record.
fn several(s: &SalesforceState, version: &str, object: &str, found: &[usize]) -> (u16, Value) {
    let urls: Vec<Value> = found
        .iter()
        .map(|&i| json!(record_url(version, object, &s.records[object][i])))
        .collect();
    (300, Value::Array(urls))
}

/// Serves one single-record request.
pub(super) fn serve(
    s: &mut SalesforceState,
    method: &str,
    target: Target<'_>,
    query: &str,
    body: &Value,
    version: &str,
    now: i64,
) -> (u16, Value) {
    let object = match &target {
        Target::Object(o) | Target::Record(o, _) | Target::External(o, _, _) => *o,
    };
    if fields(object).is_none() {
        return api_error(
            404,
            "NOT_FOUND",
            &format!("The requested resource does not exist: sObject type '{object}' is not supported."),
        );
    }
    let record = body.as_object().cloned().unwrap_or_default();
    match (method, target) {
        ("POST", Target::Object(_)) => match s.save(object, &record, None, now) {
            Ok(id) => (201, json!({"id": id, "success": true, "errors": []})),
            Err(e) => as_api_error(400, e),
        },
        ("GET", Target::Record(_, id)) => match matching(s, object, "Id", &id).first() {
            Some(&i) => (200, with_attributes(object, &s.records[object][i])),
            None => not_found(),
        },
        ("PATCH", Target::Record(_, id)) => match matching(s, object, "Id", &id).first() {
            Some(&i) => match s.save(object, &record, Some(i), now) {
                Ok(_) => (204, Value::Null),
                Err(e) => as_api_error(400, e),
            },
            None => not_found(),
        },
        ("DELETE", Target::Record(_, id)) => match matching(s, object, "Id", &id).first() {
            Some(&i) => {
                let mut gone = s.records.get_mut(object).map(|rs| rs.remove(i)).unwrap_or_default();
                gone.insert("IsDeleted".into(), json!(true));
                s.recycled.entry(object.into()).or_default().push(gone);
                (204, Value::Null)
            }
            None => not_found(),
        },
        ("GET", Target::External(_, field, value)) => {
            let field = match external_field(object, field) {
                Ok(f) => f,
                Err(e) => return e,
            };
            match matching(s, object, field, &value).as_slice() {
                [] => not_found(),
                [i] => (200, with_attributes(object, &s.records[object][*i])),
                found => several(s, version, object, found),
            }
        }
        ("PATCH", Target::External(_, field, value)) => {
            let field = match external_field(object, field) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let update_only = form_pairs(query).get("updateOnly").map(String::as_str) == Some("true");
            let found = matching(s, object, field, &value);
            let body_key = record
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(field))
                .and_then(|(_, v)| text(v));
            if body_key.is_some_and(|k| k != value) {
                return api_error(
                    400,
                    "INVALID_FIELD",
                    &format!("The value of {field} in the body does not match the one in the URL"),
                );
            }
            match found.as_slice() {
                [] if update_only || field == "Id" => not_found(),
                [] => {
                    let mut record = record;
                    record.insert(field.into(), json!(value));
                    match s.save(object, &record, None, now) {
                        Ok(id) => (201, json!({"id": id, "success": true, "errors": [], "created": true})),
                        Err(e) => as_api_error(400, e),
                    }
                }
                [i] => match s.save(object, &record, Some(*i), now) {
                    // Since API v46 an update by external id answers 200 with a body; before, 204.
                    Ok(id) if api_version(version) >= 46.0 => {
                        (200, json!({"id": id, "success": true, "errors": [], "created": false}))
                    }
                    Ok(_) => (204, Value::Null),
                    Err(e) => as_api_error(400, e),
                },
                found => several(s, version, object, found),
            }
        }
        _ => api_error(
            405,
            "METHOD_NOT_ALLOWED",
            &format!("HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE,POST"),
        ),
    }
}

/// `v62.0` → 62.0.
pub(super) fn api_version(version: &str) -> f64 {
    version.trim_start_matches('v').parse().unwrap_or(0.0)
}
