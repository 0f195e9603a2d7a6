//! HubSpot's JSON shapes, as the CRM v3 objects, search, batch and associations APIs send them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Records per batch read or update call (HubSpot's limit).
pub const BATCH_LIMIT: usize = 100;
/// Records per search page (HubSpot's limit).
pub const SEARCH_PAGE_LIMIT: usize = 200;
/// Results one search query can page through before HubSpot answers 400.
pub const SEARCH_RESULT_CAP: usize = 10_000;
/// Records per list page.
pub const LIST_PAGE_LIMIT: usize = 100;
/// Ids per associations v4 batch read.
pub const ASSOCIATION_BATCH_LIMIT: usize = 1_000;

/// A CRM object: id and the requested properties (HubSpot sends every value as text or null).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HubSpotObject {
    /// Record id.
    pub id: String,
    /// Property values; `None` for a property HubSpot knows but that is empty.
    #[serde(default)]
    pub properties: HashMap<String, Option<String>>,
    /// Whether the record is archived (deleted).
    #[serde(default)]
    pub archived: bool,
}

impl HubSpotObject {
    /// A property's value, `None` when absent or empty.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(|v| v.as_deref())
            .filter(|v| !v.is_empty())
    }
}

/// One page of a list or search.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page<T> {
    /// Records on this page.
    pub results: Vec<T>,
    /// Where the next page starts, when there is one.
    #[serde(default)]
    pub paging: Option<Paging>,
    /// Total matches (search only).
    #[serde(default)]
    pub total: Option<u64>,
}

/// `paging` of a page.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Paging {
    /// The next page's cursor.
    pub next: Option<NextPage>,
}

/// `paging.next`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NextPage {
    /// Opaque cursor for `after`.
    pub after: String,
}

impl<T> Page<T> {
    /// The cursor of the next page, if any.
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

/// A batch answer: HubSpot's 200 or 207 multi-status.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct BatchResponse<T> {
    /// Records that succeeded.
    #[serde(default)]
    pub results: Vec<T>,
    /// Per-record failures (207).
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

/// One failure inside a batch.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BatchError {
    /// HubSpot's category (`VALIDATION_ERROR`, `OBJECT_NOT_FOUND`, …).
    #[serde(default)]
    pub category: String,
    /// HubSpot's message.
    #[serde(default)]
    pub message: String,
    /// Which inputs it concerns: `ids`, or the `objectWriteTraceId` leadsync sets to the record id.
    #[serde(default)]
    pub context: BTreeMap<String, Vec<String>>,
}

impl BatchError {
    /// The record ids this error is about.
    pub fn record_ids(&self) -> Vec<&str> {
        ["objectWriteTraceId", "ids", "id"]
            .iter()
            .filter_map(|k| self.context.get(*k))
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

/// `inputs` of a batch read by id.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadRequest<'a> {
    /// Properties to return.
    pub properties: &'a [String],
    /// Look records up by this unique property instead of the id (`email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_property: Option<&'a str>,
    /// Ids (or values of `id_property`).
    pub inputs: Vec<IdInput<'a>>,
}

/// `{ "id": … }`
#[derive(Debug, Clone, Serialize)]
pub struct IdInput<'a> {
    /// Record id or unique value.
    pub id: &'a str,
}

/// `inputs` of a batch update.
#[derive(Debug, Clone, Serialize)]
pub struct BatchUpdateRequest<'a> {
    /// One input per record.
    pub inputs: Vec<UpdateInput<'a>>,
}

/// One record's update.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInput<'a> {
    /// Record id.
    pub id: &'a str,
    /// Echoed in errors, so a 207 names the record it failed for.
    pub object_write_trace_id: &'a str,
    /// New values; an empty string clears.
    pub properties: &'a BTreeMap<String, String>,
}

/// A CRM search body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// OR of AND groups.
    pub filter_groups: Vec<FilterGroup>,
    /// One sort is honoured.
    pub sorts: Vec<Sort>,
    /// Properties to return.
    pub properties: Vec<String>,
    /// Page size, at most 200.
    pub limit: usize,
    /// Offset cursor, written as an integer string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Filters that must all hold.
#[derive(Debug, Clone, Serialize)]
pub struct FilterGroup {
    /// The filters.
    pub filters: Vec<Filter>,
}

/// `propertyName operator value`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Property.
    pub property_name: String,
    /// `GTE`, `LT`, `EQ`, …
    pub operator: &'static str,
    /// Value as text (dates as epoch milliseconds).
    pub value: String,
}

/// Sort order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    /// Property.
    pub property_name: String,
    /// `ASCENDING` or `DESCENDING`.
    pub direction: &'static str,
}

/// Associations v4 batch read answer: for each source id, the associated ids.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AssociationResult {
    /// The source record.
    pub from: AssociationId,
    /// Associated records.
    #[serde(default)]
    pub to: Vec<AssociatedRecord>,
}

/// `{ "id": … }` in association answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AssociationId {
    /// Record id.
    pub id: String,
}

/// One associated record.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociatedRecord {
    /// Record id (a number in v4 answers).
    #[serde(deserialize_with = "id_as_text")]
    pub to_object_id: String,
}

fn id_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    })
}

/// A HubSpot datetime value: epoch milliseconds (what the API sends for datetime properties) or
/// RFC 3339 (what some engagement properties hold).
pub fn parse_time(v: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let v = v.trim();
    v.parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_status_answer_names_the_failed_records() {
        let body = r#"{"status":"COMPLETE","results":[{"id":"1","properties":{"a":"x"}}],"numErrors":1,
            "errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid",
                       "context":{"objectWriteTraceId":["2"]}}]}"#;
        let r: BatchResponse<HubSpotObject> = serde_json::from_str(body).unwrap();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.errors[0].record_ids(), vec!["2"]);
    }

    #[test]
    fn association_ids_may_be_numbers() {
        let r: AssociationResult =
            serde_json::from_str(r#"{"from":{"id":"7"},"to":[{"toObjectId":123,"associationTypes":[]}]}"#).unwrap();
        assert_eq!(r.to[0].to_object_id, "123");
    }

    #[test]
    fn update_inputs_carry_the_trace_id() {
        let props = BTreeMap::from([("leadsync_stage".to_string(), "mql".to_string())]);
        let body = serde_json::to_value(BatchUpdateRequest {
            inputs: vec![UpdateInput {
                id: "9",
                object_write_trace_id: "9",
                properties: &props,
            }],
        })
        .unwrap();
        assert_eq!(body["inputs"][0]["objectWriteTraceId"], "9");
    }
}
