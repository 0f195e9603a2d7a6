//! The REST endpoints leadsync uses (docs/architecture.md lists them): SOQL query, composite
//! (several queries in one API call), sObject Collections upsert by external id and create, in
//! chunks of 200 with `allOrNone: false`, and describe.

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{Call, SalesforceClient, SalesforceError};
use super::errors::SalesforceRecordError;
use super::retry::read_errors;

/// Records per sObject Collections call (Salesforce's maximum).
pub const COLLECTION_MAX: usize = 200;
/// Query subrequests per composite call (Salesforce's maximum).
pub const COMPOSITE_QUERIES_MAX: usize = 5;

/// One record's answer in an sObject Collections call.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceSaveResult {
    /// Record id when saved.
    pub id: Option<String>,
    /// Whether it was saved.
    pub success: bool,
    /// For upserts: true when the record was created, false when an existing one was updated.
    pub created: Option<bool>,
    /// Why not, when not.
    pub errors: Vec<SalesforceSaveError>,
}

/// A per-record error, with the records a duplicate rule or an ambiguous match named.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceSaveError {
    /// Code and message.
    pub error: SalesforceRecordError,
    /// Ids of matching records (`DUPLICATES_DETECTED` match results, 300 answers).
    pub matches: Vec<String>,
}

impl SalesforceSaveResult {
    pub(crate) fn read(v: &Value) -> Self {
        let errors = v["errors"]
            .as_array()
            .map(|errs| errs.iter().map(SalesforceSaveError::read).collect())
            .unwrap_or_default();
        Self {
            id: v["id"].as_str().map(str::to_string),
            success: v["success"].as_bool().unwrap_or(false),
            created: v["created"].as_bool(),
            errors,
        }
    }
}

impl SalesforceSaveError {
    fn read(v: &Value) -> Self {
        let error = serde_json::from_value(v.clone()).unwrap_or_else(|_| SalesforceRecordError {
            code: "UNKNOWN".into(),
            message: v.to_string(),
            fields: vec![],
        });
        let mut matches: Vec<String> = v["duplicateResult"]["matchResults"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["matchRecords"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["record"]["Id"].as_str().map(str::to_string))
            .collect();
        matches.sort();
        matches.dedup();
        Self { error, matches }
    }
}

#[derive(Deserialize)]
struct QueryPage<T> {
    records: Vec<T>,
}

/// A subrequest's answer inside a composite call.
#[derive(Debug, Deserialize)]
struct SubResponse {
    body: Value,
    #[serde(rename = "httpStatusCode")]
    status: u16,
}

impl SalesforceClient {
    fn version_path(&self, rest: &str) -> String {
        format!("/services/data/{}/{}", self.api_version(), rest.trim_start_matches('/'))
    }

    /// Runs one SOQL query (first page: leadsync's lookups are batched under 2,000 rows).
    pub async fn query<T: DeserializeOwned>(&self, soql: &str) -> Result<Vec<T>, SalesforceError> {
        let page: QueryPage<T> = self
            .call(Call::<()> {
                endpoint: "query",
                method: Method::GET,
                path: "query",
                query: &[("q", soql.to_string())],
                body: None,
            })
            .await?;
        Ok(page.records)
    }

    /// Runs up to five SOQL queries in one composite call (one API call); each answer is its
    /// records or Salesforce's errors for that query alone.
    pub async fn query_many(
        &self,
        soql: &[String],
    ) -> Result<Vec<Result<Vec<Value>, Vec<SalesforceRecordError>>>, SalesforceError> {
        let mut out = Vec::with_capacity(soql.len());
        for chunk in soql.chunks(COMPOSITE_QUERIES_MAX) {
            let requests: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let mut url = url::form_urlencoded::Serializer::new(String::new());
                    url.append_pair("q", q);
                    json!({
                        "method": "GET",
                        "url": format!("{}?{}", self.version_path("query"), url.finish()),
                        "referenceId": format!("q{i}"),
                    })
                })
                .collect();
            let body = json!({"allOrNone": false, "compositeRequest": requests});
            let answer: Value = self
                .call(Call {
                    endpoint: "composite",
                    method: Method::POST,
                    path: "composite",
                    query: &[],
                    body: Some(&body),
                })
                .await?;
            let subs: Vec<SubResponse> =
                serde_json::from_value(answer["compositeResponse"].clone()).map_err(|e| SalesforceError::Decode {
                    endpoint: "composite",
                    message: e.to_string(),
                })?;
            if subs.len() != chunk.len() {
                return Err(SalesforceError::Decode {
                    endpoint: "composite",
                    message: format!("{} answers to {} queries", subs.len(), chunk.len()),
                });
            }
            for sub in subs {
                if (200..300).contains(&sub.status) {
                    out.push(Ok(sub.body["records"].as_array().cloned().unwrap_or_default()));
                } else {
                    out.push(Err(read_errors(sub.status, &sub.body.to_string())));
                }
            }
        }
        Ok(out)
    }

    /// Upserts `records` of `sobject` by `external_id_field`, 200 a call, `allOrNone: false`;
    /// one result per record, in order.
    pub async fn upsert(
        &self,
        sobject: &str,
        external_id_field: &str,
        records: &[Value],
    ) -> Result<Vec<SalesforceSaveResult>, SalesforceError> {
        let path = format!("composite/sobjects/{sobject}/{external_id_field}");
        self.collections("composite/sobjects upsert", Method::PATCH, &path, sobject, records)
            .await
    }

    /// Creates `records` of `sobject`, 200 a call, `allOrNone: false`; one result per record.
    pub async fn create(&self, sobject: &str, records: &[Value]) -> Result<Vec<SalesforceSaveResult>, SalesforceError> {
        self.collections(
            "composite/sobjects create",
            Method::POST,
            "composite/sobjects",
            sobject,
            records,
        )
        .await
    }

    async fn collections(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        sobject: &str,
        records: &[Value],
    ) -> Result<Vec<SalesforceSaveResult>, SalesforceError> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX) {
            let typed: Vec<Value> = chunk
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(obj) = r.as_object_mut() {
                        obj.insert("attributes".into(), json!({"type": sobject}));
                    }
                    r
                })
                .collect();
            let body = json!({"allOrNone": false, "records": typed});
            let answer: Vec<Value> = self
                .call(Call {
                    endpoint,
                    method: method.clone(),
                    path,
                    query: &[],
                    body: Some(&body),
                })
                .await?;
            if answer.len() != chunk.len() {
                return Err(SalesforceError::Decode {
                    endpoint,
                    message: format!("{} results for {} records", answer.len(), chunk.len()),
                });
            }
            out.extend(answer.iter().map(SalesforceSaveResult::read));
        }
        Ok(out)
    }

    /// `GET /sobjects/{sobject}/describe`, as JSON.
    pub async fn describe(&self, sobject: &str) -> Result<Value, SalesforceError> {
        let path = format!("sobjects/{sobject}/describe");
        self.call(Call::<()> {
            endpoint: "describe",
            method: Method::GET,
            path: &path,
            query: &[],
            body: None,
        })
        .await
    }
}
