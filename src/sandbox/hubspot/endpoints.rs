//! Reads and writes: list, batch read and update, associations v4, form submissions.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{Value, json};

use super::engagements::{MADE_ID_BASE, made_contacts};
use super::{HubSpotState, error, strings};
use crate::sandbox::portal::{COMPANY_ID_BASE, CONTACT_ID_BASE, ENGAGEMENT_OBJECTS, Portal, iso};
use crate::sandbox::{correlation_id, json};

pub(super) fn changes(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn validation(code: &str, message: &str, property: Option<&String>, now: i64) -> Response {
    let detail = json!([{"isValid": false, "message": message, "error": code, "name": property}]);
    json(
        400,
        &json!({"status": "error", "message": format!("Property values were not valid: {detail}"),
            "correlationId": correlation_id(now), "category": "VALIDATION_ERROR",
            "errors": [{"message": message, "code": code, "context": {"propertyName": [property]}}]}),
    )
}

fn too_many(what: &str, max: usize, got: usize, now: i64) -> Response {
    error(
        400,
        "VALIDATION_ERROR",
        &format!("{what} must contain at most {max} inputs, but {got} were given"),
        now,
    )
}

/// `GET /crm/v3/objects/{type}`: a page of records in id order (`limit` at most 100, default
/// 10), the `after` cursor being the next record's id, as the SDKs' `get_page` reads it.
pub(super) fn list_objects(
    s: &HubSpotState,
    ty: &str,
    query: &BTreeMap<String, String>,
    raw_query: &str,
    now: i64,
) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return error(400, "VALIDATION_ERROR", "limit must be between 1 and 100", now),
    };
    let after = match query.get("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            return error(
                400,
                "VALIDATION_ERROR",
                "after must be the cursor of a previous page (paging.next.after)",
                now,
            );
        }
    };
    if query.get("archived").map(String::as_str) == Some("true") {
        return list_archived(s, ty, after, limit);
    }
    let props = multi(raw_query, "properties");
    let with = multi(raw_query, "associations");
    let mut ids = s.ids_from(ty, after);
    let page: Vec<u64> = ids.by_ref().take(limit).collect();
    let next = ids.next();
    let results: Vec<Value> = page
        .iter()
        .filter_map(|id| {
            let p = s.props(ty, *id)?;
            let mut o = s.object_json(ty, *id, &p, &props);
            add_associations(s, ty, *id, &with, &mut o);
            Some(o)
        })
        .collect();
    let mut out = json!({"results": results});
    if let Some(next) = next {
        out["paging"] = json!({"next": {"after": next.to_string(),
            "link": format!("/crm/v3/objects/{ty}?after={next}")}});
    }
    json(200, &out)
}

/// `GET /crm/v3/objects/{type}?archived=true`: only archived records, in id order, each with
/// `archived: true` and `archivedAt` (HubSpot filters this listing by nothing else).
fn list_archived(s: &HubSpotState, ty: &str, after: u64, limit: usize) -> Response {
    let mut rows: Vec<(u64, i64)> = if ty == "contacts" {
        s.archived_from(after).take(limit + 1).collect()
    } else {
        Vec::new()
    };
    let next = (rows.len() > limit).then(|| rows.pop()).flatten();
    let results: Vec<Value> = rows
        .iter()
        .map(|(id, at)| {
            json!({"id": id.to_string(), "properties": {"hs_object_id": id.to_string()},
                "archived": true, "archivedAt": iso(*at)})
        })
        .collect();
    let mut out = json!({"results": results});
    if let Some((next, _)) = next {
        out["paging"] = json!({"next": {"after": next.to_string(),
            "link": format!("/crm/v3/objects/{ty}?archived=true&after={next}")}});
    }
    json(200, &out)
}

/// `GET /crm/v3/objects/{type}/{id}`: one record with `properties` and `associations`
/// (`idProperty=email` for contacts); 404 with HubSpot's body for an unknown id.
pub(super) fn read_object(
    s: &HubSpotState,
    ty: &str,
    id: &str,
    query: &BTreeMap<String, String>,
    raw_query: &str,
    now: i64,
) -> Response {
    let by_email = ty == "contacts" && query.get("idProperty").map(String::as_str) == Some("email");
    let found = if by_email {
        s.index_by_email(&percent_decoded(id))
            .map(|i| u64::from(i) + CONTACT_ID_BASE)
    } else {
        id.parse::<u64>().ok()
    };
    let Some((id, p)) = found.and_then(|n| s.props(ty, n).map(|p| (n, p))) else {
        return error(
            404,
            "OBJECT_NOT_FOUND",
            &format!("resource not found: no {} has id {id}", singular(ty)),
            now,
        );
    };
    let mut o = s.object_json(ty, id, &p, &multi(raw_query, "properties"));
    add_associations(s, ty, id, &multi(raw_query, "associations"), &mut o);
    json(200, &o)
}

/// A path segment's text: `%XX` decoded (a `+` stays a `+`, as in paths).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `contacts` → `contact`, `companies` → `company`.
fn singular(ty: &str) -> &str {
    match ty {
        "companies" => "company",
        t => t.strip_suffix('s').unwrap_or(t),
    }
}

/// The v3 `associations` of a read: per asked type, the linked ids with their type name.
fn add_associations(s: &HubSpotState, ty: &str, id: u64, with: &[String], o: &mut Value) {
    let mut map = serde_json::Map::new();
    for to in with.iter().filter_map(|t| super::normalize_type(t)) {
        let linked = linked(s, ty, to, id);
        if linked.is_empty() {
            continue; // HubSpot leaves out the types a record has no association with
        }
        let kind = format!("{}_to_{}", singular(ty), singular(to));
        let results: Vec<Value> = linked
            .iter()
            .map(|(tid, _)| json!({"id": tid.to_string(), "type": kind}))
            .collect();
        map.insert(to.to_string(), json!({"results": results}));
    }
    if !map.is_empty() {
        o["associations"] = Value::Object(map);
    }
}

/// Query values of `key`, repeated (`properties=a&properties=b`, as the SDKs send them) or
/// comma-separated (`properties=a,b`).
pub(super) fn multi(raw_query: &str, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(raw_query.as_bytes())
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `GET /crm/v4/objects/{from}/{id}/associations/{to}`: one record's associations, `limit` a
/// page (at most 500, default 500), `after` cursor.
pub(super) fn association_page(
    s: &HubSpotState,
    from: &str,
    id: &str,
    to: &str,
    query: &BTreeMap<String, String>,
    now: i64,
) -> Response {
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 500,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        Some(_) => return error(400, "VALIDATION_ERROR", "limit must be between 1 and 500", now),
    };
    let Some(n) = id.parse::<u64>().ok().filter(|n| s.props(from, *n).is_some()) else {
        return error(
            404,
            "OBJECT_NOT_FOUND",
            &format!("resource not found: no {} has id {id}", singular(from)),
            now,
        );
    };
    let linked = linked(s, from, to, n);
    let start = query.get("after").and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
    let results: Vec<Value> = linked
        .iter()
        .skip(start)
        .take(limit)
        .map(|(tid, type_id)| {
            json!({"toObjectId": tid, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
        })
        .collect();
    let mut out = json!({"results": results});
    if start + limit < linked.len() {
        let next = start + limit;
        out["paging"] = json!({"next": {"after": next.to_string(),
            "link": format!("/crm/v4/objects/{from}/{n}/associations/{to}?after={next}")}});
    }
    json(200, &out)
}

/// The records of type `to` linked to record `id` of type `from`, with their association type id.
fn linked(s: &HubSpotState, from: &str, to: &str, id: u64) -> Vec<(u64, u32)> {
    let type_id = |t: &str| ENGAGEMENT_OBJECTS.iter().find(|(o, _)| *o == t).map(|(_, id)| *id);
    match (from, to) {
        ("contacts", "companies") => {
            let index = (id - CONTACT_ID_BASE) as u32;
            let company = (index < s.portal.contacts)
                .then(|| s.portal.contact_company(index))
                .flatten();
            company
                .map(|c| (u64::from(c) + COMPANY_ID_BASE, 279))
                .into_iter()
                .collect()
        }
        ("companies", "contacts") => {
            let c = (id - COMPANY_ID_BASE) as u32;
            (0..s.portal.contacts)
                .filter(|&i| s.portal.contact_company(i) == Some(c))
                .map(|i| (u64::from(i) + CONTACT_ID_BASE, 280))
                .collect()
        }
        ("contacts", t) if type_id(t).is_some() => {
            let index = (id - CONTACT_ID_BASE) as u32;
            let ti = ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == t).unwrap_or(0);
            let n = if index < s.portal.contacts {
                s.portal.engagement_count(index, ti)
            } else {
                0
            };
            let type_id = type_id(t).unwrap_or(0);
            (0..n)
                .map(|j| Portal::engagement_id(index, j))
                .chain(s.made_for_contact(t, index))
                .map(|e| (e, type_id))
                .collect()
        }
        (f, "contacts") if id >= MADE_ID_BASE => s.made(f, id).map(made_contacts).unwrap_or_default(),
        (f, "contacts") if type_id(f).is_some() => Portal::engagement_owner(id)
            .map(|(i, _)| (u64::from(i) + CONTACT_ID_BASE, type_id(f).unwrap_or(0) + 1))
            .into_iter()
            .collect(),
        _ => vec![],
    }
}

pub(super) fn batch_read(s: &HubSpotState, ty: &str, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return too_many("Batch read", 100, inputs.len(), now);
    }
    let props = strings(&body["properties"]);
    let by_email = body["idProperty"].as_str() == Some("email");
    if body["idProperty"]
        .as_str()
        .is_some_and(|p| p != "email" && p != "hs_object_id")
    {
        return error(400, "VALIDATION_ERROR", "idProperty must be a unique property", now);
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let key = match &input["id"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let id = if by_email && ty == "contacts" {
            s.index_by_email(&key).map(|i| u64::from(i) + CONTACT_ID_BASE)
        } else {
            key.parse::<u64>().ok()
        };
        match id.and_then(|id| s.props(ty, id).map(|p| (id, p))) {
            Some((id, p)) => results.push(s.object_json(ty, id, &p, &props)),
            None => missing.push(key),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if missing.is_empty() {
        return json(200, &out);
    }
    out["numErrors"] = json!(1);
    out["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
        "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", ty.trim_end_matches('s').to_uppercase()),
        "context": {"ids": missing}}]);
    json(207, &out)
}

pub(super) fn batch_update(s: &mut HubSpotState, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return too_many("Batch update", 100, inputs.len(), now);
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let id = match &input["id"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let context = match input["objectWriteTraceId"].as_str() {
            Some(t) => json!({"objectWriteTraceId": [t]}),
            None => json!({"ids": [id]}),
        };
        let Some(index) = s.contact_index(&id) else {
            errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": format!("Object {id} not found"), "context": context}));
            continue;
        };
        let changes = changes(&input["properties"]);
        match s.update(index, &changes, now) {
            Ok(()) => {
                let wanted: Vec<String> = changes.keys().cloned().collect();
                let props = s.contact_props(index);
                results.push(s.object_json("contacts", u64::from(index) + CONTACT_ID_BASE, &props, &wanted));
            }
            Err((code, message, _)) => errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                "subCategory": code, "message": format!("Property values were not valid: {message}"),
                "context": context})),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if errors.is_empty() {
        return json(200, &out);
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    json(207, &out)
}

pub(super) fn associations(s: &HubSpotState, from: &str, to: &str, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 1000 {
        return too_many("Associations batch read", 1000, inputs.len(), now);
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let key = input["id"]
            .as_str()
            .map_or_else(|| input["id"].to_string(), str::to_string);
        let Some(id) = key.parse::<u64>().ok().filter(|id| s.props(from, *id).is_some()) else {
            missing.push(key);
            continue;
        };
        let linked = linked(s, from, to, id);
        if linked.is_empty() {
            missing.push(key);
            continue;
        }
        let to_json: Vec<Value> = linked
            .iter()
            .map(|(tid, type_id)| {
                json!({"toObjectId": tid, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
            })
            .collect();
        results.push(json!({"from": {"id": id.to_string()}, "to": to_json}));
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if missing.is_empty() {
        return json(200, &out);
    }
    let errors: Vec<Value> = missing
        .iter()
        .map(|k| json!({"status": "error", "category": "OBJECT_NOT_FOUND", "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": format!("No {to} is associated with {from} {k}."), "context": {"fromObjectId": [k]}}))
        .collect();
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    json(207, &out)
}

pub(super) fn submissions(s: &HubSpotState, guid: &str, query: &BTreeMap<String, String>, now: i64) -> Response {
    let Some(f) = s.portal.forms.iter().position(|f| f.guid == *guid) else {
        return error(404, "OBJECT_NOT_FOUND", &format!("Form {guid} not found"), now);
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 50);
    let list = &s.submissions[f];
    // Newest first; the cursor is a position in the oldest-first list, stable as new ones arrive.
    let end = query
        .get("after")
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(list.len())
        .min(list.len());
    let start = end.saturating_sub(limit);
    let page = s.portal.forms[f].page.to_lowercase();
    let results: Vec<Value> = list[start..end]
        .iter()
        .rev()
        .map(|(at, index)| {
            let p = s.contact_props(*index);
            let mut values = vec![json!({"name": "email", "value": p.get("email").cloned().unwrap_or_default()})];
            for k in ["firstname", "lastname", "company"] {
                if let Some(v) = p.get(k) {
                    values.push(json!({"name": k, "value": v}));
                }
            }
            json!({"submittedAt": at, "values": values, "pageUrl": format!("https://www.example.com/{page}")})
        })
        .collect();
    let mut out = json!({"results": results});
    if start > 0 {
        out["paging"] = json!({"next": {"after": start.to_string()}});
    }
    json(200, &out)
}
