//! sObject Collections (create, upsert by external id) and `POST /composite` with references.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use super::query::BATCH_DEFAULT;
use super::schema::fields;
use super::{Positions, RequestContext, SalesforceState, api_error, dispatch, err};

/// sObject Collections: create (`ext` none) or upsert by external id, up to 200 records.
pub(super) fn collection(s: &mut SalesforceState, ext: Option<(&str, &str)>, body: &Value, now: i64) -> (u16, Value) {
    let records = body["records"].as_array().cloned().unwrap_or_default();
    if records.len() > 200 {
        return api_error(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        );
    }
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let mut results = Vec::new();
    // The positions of `ext`'s object's records by their external id (its JSON text).
    let mut keyed: Option<Positions> = None;
    // The Contacts' emails for the duplicate rule, built at the call's first Contact.
    let mut emails: Option<Positions> = None;
    for r in records {
        let Some(map) = r.as_object() else { continue };
        let object = match ext {
            Some((o, _)) => o.to_string(),
            None => r["attributes"]["type"].as_str().unwrap_or("").to_string(),
        };
        let Some(defs) = fields(&object) else {
            results.push(json!({"success": false, "errors": [err("INVALID_TYPE", &format!("sObject type '{object}' is not supported."), &[])]}));
            continue;
        };
        let outcome = match ext {
            None => {
                let index = (object == "Contact").then(|| &mut *emails.get_or_insert_with(|| s.contact_emails()));
                s.save_with(&object, map, None, now, index).map(|id| (id, true))
            }
            Some((_, field)) => {
                let Some(def) = defs.iter().find(|d| d.0.eq_ignore_ascii_case(field) && d.5) else {
                    return api_error(
                        400,
                        "INVALID_FIELD",
                        &format!("Field name provided, {field} is not an External ID or indexed field for {object}"),
                    );
                };
                let key = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(def.0))
                    .map(|(_, v)| v.clone());
                match key.filter(|v| !v.is_null()) {
                    None => Err(err("MISSING_ARGUMENT", &format!("{} not specified", def.0), &[def.0])),
                    Some(key) => {
                        // Built once per call: a scan of every record per upserted one made the
                        // fake org quadratic at a million contacts.
                        let index =
                            keyed.get_or_insert_with(|| s.positions(&object, |r| r.get(def.0).map(Value::to_string)));
                        let found = index.get(&key.to_string()).map(Vec::as_slice).unwrap_or_default();
                        if found.len() > 1 {
                            Err(err(
                                "DUPLICATE_EXTERNAL_ID",
                                "more than one record found for external id field",
                                &[def.0],
                            ))
                        } else {
                            let existing = found.first().copied();
                            let emails =
                                (object == "Contact").then(|| &mut *emails.get_or_insert_with(|| s.contact_emails()));
                            let saved = s.save_with(&object, map, existing, now, emails);
                            if let (Ok(id), None) = (&saved, existing) {
                                let at = s
                                    .records
                                    .get(&object)
                                    .and_then(|rs| rs.iter().rposition(|r| r["Id"] == id.as_str()));
                                index.entry(key.to_string()).or_default().extend(at);
                            }
                            saved.map(|id| (id, existing.is_none()))
                        }
                    }
                }
            }
        };
        results.push(match outcome {
            Ok((id, created)) if ext.is_some() => json!({"id": id, "success": true, "errors": [], "created": created}),
            Ok((id, _)) => json!({"id": id, "success": true, "errors": []}),
            Err(e) => json!({"success": false, "errors": [e]}),
        });
        if all_or_none && results.last().is_some_and(|r| r["success"] == false) {
            break; // simplified: earlier records of the call are not rolled back
        }
    }
    (200, Value::Array(results))
}

/// sObject Collections update (`PATCH /composite/sobjects`): up to 200 records of any types,
/// each named by its `Id`.
pub(super) fn update_collection(s: &mut SalesforceState, body: &Value, now: i64) -> (u16, Value) {
    let records = body["records"].as_array().cloned().unwrap_or_default();
    if records.len() > 200 {
        return api_error(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        );
    }
    let mut results = Vec::new();
    for r in records {
        let Some(map) = r.as_object() else { continue };
        let object = r["attributes"]["type"].as_str().unwrap_or("").to_string();
        let id = r["Id"].as_str().unwrap_or("").to_string();
        let found = s
            .records
            .get(&object)
            .and_then(|rs| rs.iter().position(|x| x["Id"] == id.as_str()));
        let outcome = match (fields(&object), found) {
            (None, _) => Err(err(
                "INVALID_TYPE",
                &format!("sObject type '{object}' is not supported."),
                &[],
            )),
            (_, None) => Err(err("ENTITY_IS_DELETED", "entity is deleted", &[])),
            (Some(_), Some(i)) => s.save(&object, map, Some(i), now),
        };
        results.push(match outcome {
            Ok(id) => json!({"id": id, "success": true, "errors": []}),
            Err(e) => json!({"id": id, "success": false, "errors": [e]}),
        });
    }
    (200, Value::Array(results))
}

/// `POST /composite`: up to 25 subrequests (5 queries), `@{ref.path}` references, one API call.
pub(super) fn composite(s: &mut SalesforceState, body: &Value, now: i64) -> (u16, Value) {
    let subs = body["compositeRequest"].as_array().cloned().unwrap_or_default();
    let queries = subs
        .iter()
        .filter(|r| r["url"].as_str().is_some_and(|u| u.contains("/query")))
        .count();
    if subs.len() > 25 || queries > 5 {
        return api_error(
            400,
            "INVALID_INPUT",
            "composite requests may contain at most 25 subrequests, of which at most 5 queries",
        );
    }
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let mut failed = false;
    let mut out = Vec::new();
    for r in subs {
        let reference = r["referenceId"].as_str().unwrap_or("").to_string();
        if failed && body["allOrNone"].as_bool() == Some(true) {
            out.push(json!({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference}));
            continue;
        }
        let url = resolve(r["url"].as_str().unwrap_or(""), &done);
        let sub_body = resolve_value(&r["body"], &done);
        let method: Method = r["method"].as_str().unwrap_or("GET").parse().unwrap_or(Method::GET);
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let versioned = path.strip_prefix("/services/data/").and_then(|r| r.split_once('/'));
        let rest = versioned.map(|(_, r)| r.to_string()).unwrap_or_default();
        let context = RequestContext {
            version: versioned.map_or("v62.0", |(v, _)| v).to_string(),
            batch: BATCH_DEFAULT,
        };
        let (status, value) = match (url.contains("@{"), sub_body) {
            (false, Ok(b)) => dispatch(s, &method, &rest, query, &b, &context, now),
            _ => api_error(400, "INVALID_REFERENCE", "a reference could not be resolved"),
        };
        failed |= status >= 400;
        done.insert(reference.clone(), value.clone());
        out.push(json!({"body": value, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}));
    }
    (200, json!({"compositeResponse": out}))
}

pub(super) fn lookup(path: &str, done: &BTreeMap<String, Value>) -> Option<Value> {
    let mut v: Option<Value> = None;
    for p in path.split('.') {
        let (name, index) = match p.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (p, None),
        };
        v = Some(match v {
            None => done.get(name)?.clone(),
            Some(v) => v.get(name)?.clone(),
        });
        if let Some(i) = index {
            v = v.and_then(|v| v.get(i).cloned());
        }
    }
    v
}

pub(super) fn resolve(text: &str, done: &BTreeMap<String, Value>) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find("@{") {
        let Some(len) = out[start..].find('}') else { break };
        let path = out[start + 2..start + len].to_string();
        let Some(v) = lookup(&path, done) else { break };
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        out.replace_range(start..start + len + 1, &text);
    }
    out
}

pub(super) fn resolve_value(v: &Value, done: &BTreeMap<String, Value>) -> Result<Value, ()> {
    Ok(match v {
        Value::String(s) if s.contains("@{") => {
            let r = resolve(s, done);
            if r.contains("@{") {
                return Err(());
            }
            Value::String(r)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve_value(x, done)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| resolve_value(x, done).map(|x| (k.clone(), x)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}
