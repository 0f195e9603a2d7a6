//! `GET /query`: the SOQL subset run over the stored records.

use serde_json::{Map, Value, json};

use super::schema::fields;
use super::soql;
use super::{SalesforceState, api_error, with_attributes};

pub(super) fn run_query(s: &SalesforceState, q: &str) -> (u16, Value) {
    let query = match soql::parse(q) {
        Ok(query) => query,
        Err(e) => return api_error(400, "MALFORMED_QUERY", &format!("{q}\n{e}")),
    };
    let Some(defs) = fields(&query.object) else {
        return api_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", query.object),
        );
    };
    let canonical = |f: &str| defs.iter().find(|d| d.0.eq_ignore_ascii_case(f)).map(|d| d.0);
    let mut named = query.fields.clone();
    if let Some(c) = &query.filter {
        c.fields(&mut named);
    }
    named.extend(query.order.iter().map(|o| o.0.clone()));
    if let Some(bad) = named.iter().find(|f| canonical(f).is_none()) {
        return api_error(
            400,
            "INVALID_FIELD",
            &format!("No such column '{bad}' on entity '{}'.", query.object),
        );
    }
    let empty = Vec::new();
    let all = s.records.get(&query.object).unwrap_or(&empty);
    let get = |r: &Map<String, Value>, f: &str| canonical(f).and_then(|c| r.get(c)).cloned().unwrap_or(Value::Null);
    let mut hits: Vec<&Map<String, Value>> = all
        .iter()
        .filter(|r| query.filter.as_ref().is_none_or(|c| c.eval(&|f| get(r, f))))
        .collect();
    for (f, desc) in query.order.iter().rev() {
        hits.sort_by(|a, b| {
            let (x, y) = (get(a, f), get(b, f));
            let o = match (&x, &y) {
                (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                (Value::Null, _) => std::cmp::Ordering::Less,
                (_, Value::Null) => std::cmp::Ordering::Greater,
                (Value::Number(a), Value::Number(b)) => {
                    a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(std::cmp::Ordering::Equal)
                }
                _ => x.to_string().to_lowercase().cmp(&y.to_string().to_lowercase()),
            };
            if *desc { o.reverse() } else { o }
        });
    }
    if let Some(l) = query.limit {
        hits.truncate(l);
    }
    let records: Vec<Value> = hits
        .iter()
        .map(|r| {
            let mut m = Map::new();
            for f in &query.fields {
                let c = canonical(f).unwrap_or("");
                m.insert(c.to_string(), r.get(c).cloned().unwrap_or(Value::Null));
            }
            m.insert("Id".into(), r["Id"].clone());
            let mut v = with_attributes(&query.object, &m);
            if !query.fields.iter().any(|f| f.eq_ignore_ascii_case("Id")) {
                if let Some(o) = v.as_object_mut() {
                    o.remove("Id");
                }
            }
            v
        })
        .collect();
    (
        200,
        json!({"totalSize": records.len(), "done": true, "records": records}),
    )
}
