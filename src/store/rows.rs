//! Many rows in one statement: the rows are bound as one JSON array of arrays and read back by
//! the database (SQLite's `json_each`, PostgreSQL's `json_array_elements`), so a batch costs
//! one round trip (to SQLite's worker thread, or to the server) instead of one per row, and the
//! statement's text never changes with the batch's size (each connection prepares it once).
//!
//! Both functions yield the array's elements in order; PostgreSQL's are ordered by their
//! ordinality, SQLite's by their index (`r.key`), so serial ids follow the batch.

use serde_json::Value;

use super::{Backend, StoreError};

/// The rows bound as parameter `$param`, as a `FROM` item named `r`.
pub(super) fn rows(backend: Backend, param: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${param}) AS r"),
        Backend::Postgres => format!("json_array_elements(CAST(${param} AS JSON)) WITH ORDINALITY AS r(value, key)"),
    }
}

/// Element `i` of a row, as text, or cast to `ty` (`BIGINT`) on PostgreSQL (SQLite gives a JSON
/// number as an integer already).
pub(super) fn col(backend: Backend, i: usize, ty: Option<&str>) -> String {
    match (backend, ty) {
        (Backend::Postgres, Some(ty)) => format!("CAST(r.value ->> {i} AS {ty})"),
        _ => format!("r.value ->> {i}"),
    }
}

/// `INSERT INTO {into} SELECT` the rows' elements (`types`: each column's cast, see [`col`]) in
/// order, then `tail` (an `ON CONFLICT` clause, or nothing).
pub(super) fn insert(backend: Backend, into: &str, types: &[Option<&str>], tail: &str) -> String {
    let cols: Vec<String> = types.iter().enumerate().map(|(i, ty)| col(backend, i, *ty)).collect();
    // `WHERE true`: without it SQLite reads `ON CONFLICT` after `FROM` as a join's.
    format!(
        "INSERT INTO {into} SELECT {} FROM {} WHERE true ORDER BY r.key{tail}",
        cols.join(", "),
        rows(backend, 1)
    )
}

/// The rows as the one parameter they are bound as.
pub(super) fn bound(rows: &[Value]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| super::corrupt("a batch of rows", e))
}
