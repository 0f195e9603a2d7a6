//! CRM search: filters, one sort, pages of at most 200, and the 10,000-result cap.

use axum::response::Response;
use serde_json::{Value, json};

use super::{HubSpotState, error, strings};
use crate::sandbox::json;
use crate::sandbox::portal::parse_ms;

/// Compares a record's value with a filter value: as numbers or instants when both read as
/// such, otherwise as text ignoring case.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (parse_ms(a), parse_ms(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

fn matches_filter(value: Option<&str>, f: &Value) -> bool {
    use std::cmp::Ordering::*;
    let op = f["operator"].as_str().unwrap_or("EQ");
    let fv = match &f["value"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let list: Vec<String> = f["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match (op, value) {
        ("HAS_PROPERTY", v) => v.is_some(),
        ("NOT_HAS_PROPERTY", v) => v.is_none(),
        ("NEQ", None) => true,
        ("NOT_IN", None) => true,
        (_, None) => false,
        ("EQ", Some(v)) => compare(v, &fv) == Equal,
        ("NEQ", Some(v)) => compare(v, &fv) != Equal,
        ("LT", Some(v)) => compare(v, &fv) == Less,
        ("LTE", Some(v)) => compare(v, &fv) != Greater,
        ("GT", Some(v)) => compare(v, &fv) == Greater,
        ("GTE", Some(v)) => compare(v, &fv) != Less,
        ("BETWEEN", Some(v)) => {
            let hi = f["highValue"]
                .as_str()
                .map_or_else(|| f["highValue"].to_string(), str::to_string);
            compare(v, &fv) != Less && compare(v, &hi) != Greater
        }
        ("IN", Some(v)) => list.iter().any(|x| compare(v, x) == Equal),
        ("NOT_IN", Some(v)) => !list.iter().any(|x| compare(v, x) == Equal),
        ("CONTAINS_TOKEN", Some(v)) => v.to_lowercase().contains(&fv.trim_matches('*').to_lowercase()),
        ("NOT_CONTAINS_TOKEN", Some(v)) => !v.to_lowercase().contains(&fv.trim_matches('*').to_lowercase()),
        _ => false,
    }
}

pub(super) fn search(s: &HubSpotState, ty: &str, body: &Value, now: i64) -> Response {
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        return error(
            400,
            "VALIDATION_ERROR",
            &format!("Search limit must be at most 200, but {limit} was requested"),
            now,
        );
    }
    let after: usize = match &body["after"] {
        Value::String(a) => match a.parse() {
            Ok(a) => a,
            Err(_) => return error(400, "VALIDATION_ERROR", "after must be an integer", now),
        },
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    if after + limit > 10_000 {
        return error(
            400,
            "VALIDATION_ERROR",
            "Search results are limited to 10,000: paging past the 10,000th result is not possible. Narrow the query",
            now,
        );
    }
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    let total_filters: usize = groups.iter().map(|g| g["filters"].as_array().map_or(0, Vec::len)).sum();
    if groups.len() > 5 || total_filters > 18 || groups.iter().any(|g| g["filters"].as_array().map_or(0, Vec::len) > 6)
    {
        return error(
            400,
            "VALIDATION_ERROR",
            "Too many filters: at most 5 filterGroups of 6 filters, 18 in all",
            now,
        );
    }
    let props = strings(&body["properties"]);
    let sort = body["sorts"].as_array().and_then(|a| a.first()).cloned();
    let (sort_prop, descending) = match &sort {
        Some(Value::Object(o)) => (
            o.get("propertyName")
                .and_then(Value::as_str)
                .unwrap_or("hs_object_id")
                .to_string(),
            o.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
        ),
        Some(Value::String(p)) => (p.trim_start_matches('-').to_string(), p.starts_with('-')),
        _ => ("hs_object_id".to_string(), false),
    };
    let mut hits: Vec<(Option<String>, u64)> = Vec::new();
    for id in s.ids(ty) {
        let mut cache = None;
        let ok = groups.is_empty()
            || groups.iter().any(|g| {
                g["filters"].as_array().is_none_or(|fs| {
                    fs.iter().all(|f| {
                        let p = f["propertyName"].as_str().unwrap_or("");
                        matches_filter(s.value(ty, id, p, &mut cache).as_deref(), f)
                    })
                })
            });
        if ok {
            let key = (sort_prop != "hs_object_id")
                .then(|| s.value(ty, id, &sort_prop, &mut cache))
                .flatten();
            hits.push((key, id));
        }
    }
    if sort_prop != "hs_object_id" {
        hits.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) => compare(x, y).then(a.1.cmp(&b.1)),
            (x, y) => y.is_none().cmp(&x.is_none()).then(a.1.cmp(&b.1)),
        });
    }
    if descending {
        hits.reverse();
    }
    let total = hits.len();
    let results: Vec<Value> = hits
        .iter()
        .skip(after)
        .take(limit)
        .filter_map(|(_, id)| s.props(ty, *id).map(|p| s.object_json(ty, *id, &p, &props)))
        .collect();
    let mut out = json!({"total": total, "results": results});
    if after + limit < total {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    json(200, &out)
}
