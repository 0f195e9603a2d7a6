//! `GET /query` and `/queryAll`: the SOQL subset run over the stored records, answered in
//! batches (2,000 rows by default, `Sforce-Query-Options: batchSize=` from 200 to 2,000) with
//! `nextRecordsUrl` pointing at `query/{locator}-{offset}`, as Salesforce pages.

use std::collections::VecDeque;

use serde_json::{Map, Value, json};

use super::schema::fields;
use super::soql;
use super::{SalesforceState, api_error, with_attributes};

/// Rows per batch when the client asks for none (Salesforce's default and maximum).
pub(super) const BATCH_DEFAULT: usize = 2_000;
/// The smallest batch Salesforce honours.
const BATCH_MIN: usize = 200;
/// Open query cursors kept; Salesforce allows 10 per user and drops the oldest.
const CURSORS_MAX: usize = 10;

/// The rest of a query answer, waiting to be read by its locator.
#[derive(Debug)]
pub(super) struct Cursor {
    locator: String,
    records: Vec<Value>,
    batch: usize,
}

/// The batch size a request asks for (`Sforce-Query-Options: batchSize=500`), within 200–2,000.
pub(super) fn batch_size(options: Option<&str>) -> usize {
    options
        .into_iter()
        .flat_map(|o| o.split([',', ';']))
        .filter_map(|kv| kv.trim().strip_prefix("batchSize="))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .next()
        .map_or(BATCH_DEFAULT, |n| n.clamp(BATCH_MIN, BATCH_DEFAULT))
}

/// Answers a query's records from `offset`, keeping a cursor when more remain.
fn page(
    cursors: &mut VecDeque<Cursor>,
    next_id: &mut u64,
    endpoint: &str,
    version: &str,
    cursor: Cursor,
    offset: usize,
) -> Value {
    let total = cursor.records.len();
    let end = (offset + cursor.batch).min(total);
    let records: Vec<Value> = cursor.records[offset.min(end)..end].to_vec();
    let mut out = json!({"totalSize": total, "done": end >= total, "records": records});
    if end < total {
        out["nextRecordsUrl"] = json!(format!("/services/data/{version}/{endpoint}/{}-{end}", cursor.locator));
        if !cursors.iter().any(|c| c.locator == cursor.locator) {
            *next_id += 1;
            if cursors.len() >= CURSORS_MAX {
                cursors.pop_front();
            }
            cursors.push_back(cursor);
        }
    }
    out
}

/// `GET query?q=` (or `queryAll?q=`, recycled records included): the first batch.
pub(super) fn query(s: &mut SalesforceState, q: &str, all: bool, batch: usize, version: &str) -> (u16, Value) {
    let records = match run_query(s, q, all) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let locator = format!("01g{:015}", s.next_cursor);
    let cursor = Cursor {
        locator,
        records,
        batch,
    };
    let endpoint = if all { "queryAll" } else { "query" };
    let out = page(&mut s.cursors, &mut s.next_cursor, endpoint, version, cursor, 0);
    (200, out)
}

/// `GET query/{locator}-{offset}`: the batch a `nextRecordsUrl` names.
pub(super) fn query_more(s: &mut SalesforceState, locator: &str, all: bool, version: &str) -> (u16, Value) {
    let invalid = || api_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    let Some((id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let Some(pos) = s.cursors.iter().position(|c| c.locator == id) else {
        return invalid();
    };
    let Some(cursor) = s.cursors.remove(pos) else {
        return invalid();
    };
    let endpoint = if all { "queryAll" } else { "query" };
    // Read again, it goes back at the end: the most recently used cursor is the last dropped.
    let out = page(&mut s.cursors, &mut s.next_cursor, endpoint, version, cursor, offset);
    (200, out)
}

fn run_query(s: &SalesforceState, q: &str, all: bool) -> Result<Vec<Value>, (u16, Value)> {
    let query = match soql::parse(q) {
        Ok(query) => query,
        Err(e) => return Err(api_error(400, "MALFORMED_QUERY", &format!("{q}\n{e}"))),
    };
    let Some(defs) = fields(&query.object) else {
        return Err(api_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", query.object),
        ));
    };
    let canonical = |f: &str| defs.iter().find(|d| d.0.eq_ignore_ascii_case(f)).map(|d| d.0);
    let mut named = query.fields.clone();
    if let Some(c) = &query.filter {
        c.fields(&mut named);
    }
    named.extend(query.order.iter().map(|o| o.0.clone()));
    if let Some(bad) = named.iter().find(|f| canonical(f).is_none()) {
        return Err(api_error(
            400,
            "INVALID_FIELD",
            &format!("No such column '{bad}' on entity '{}'.", query.object),
        ));
    }
    let empty = Vec::new();
    let live = s.records.get(&query.object).unwrap_or(&empty);
    let recycled = s.recycled.get(&query.object).filter(|_| all).unwrap_or(&empty);
    let get = |r: &Map<String, Value>, f: &str| canonical(f).and_then(|c| r.get(c)).cloned().unwrap_or(Value::Null);
    let mut hits: Vec<&Map<String, Value>> = live
        .iter()
        .chain(recycled)
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
    Ok(records)
}
