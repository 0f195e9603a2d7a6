//! The REST endpoints leadsync uses (docs/architecture.md lists them): SOQL query, composite
//! (several queries in one API call), sObject Collections upsert by external id, create and
//! update by id (the context leadsync keeps current), in chunks of 200 with `allOrNone: false`,
//! and describe. Every query answer, direct or inside a composite call, is read to its end by following `nextRecordsUrl` ([`SalesforceClient::follow`]):
//! Salesforce returns at most 2,000 rows a page, and may return fewer than asked.

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

/// One page of a query answer: its records, and where the next page is when not `done`.
#[derive(Deserialize)]
struct QueryPage<T> {
    records: Vec<T>,
    #[serde(default = "yes")]
    done: bool,
    #[serde(default, rename = "nextRecordsUrl")]
    next_records_url: Option<String>,
}

fn yes() -> bool {
    true
}

/// The path of a `nextRecordsUrl` (`/services/data/v62.0/query/01gxx-2000`) under the versioned
/// API root the client prefixes (`query/01gxx-2000`).
fn next_records_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("/services/data/")?;
    let (_version, path) = rest.split_once('/')?;
    (!path.is_empty()).then_some(path)
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

    /// Runs one SOQL query and reads every page of its answer.
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
        self.follow(page).await
    }

    /// The records of `page` and of every page after it: while Salesforce says the answer is not
    /// `done`, `GET` its `nextRecordsUrl` (one API call a page). The one paging loop of the client.
    async fn follow<T: DeserializeOwned>(&self, page: QueryPage<T>) -> Result<Vec<T>, SalesforceError> {
        let mut records = page.records;
        let mut next = if page.done { None } else { page.next_records_url };
        if !page.done && next.is_none() {
            return Err(SalesforceError::Decode {
                endpoint: "query",
                message: "an answer not done has no nextRecordsUrl".into(),
            });
        }
        while let Some(url) = next.take() {
            let path = next_records_path(&url).ok_or_else(|| SalesforceError::Decode {
                endpoint: "query more",
                message: format!("nextRecordsUrl {url:?} is not under /services/data/<version>/"),
            })?;
            let page: QueryPage<T> = self
                .call(Call::<()> {
                    endpoint: "query more",
                    method: Method::GET,
                    path,
                    query: &[],
                    body: None,
                })
                .await?;
            records.extend(page.records);
            if !page.done {
                next = Some(page.next_records_url.ok_or_else(|| SalesforceError::Decode {
                    endpoint: "query more",
                    message: "an answer not done has no nextRecordsUrl".into(),
                })?);
            }
        }
        Ok(records)
    }

    /// Runs SOQL queries five to a composite call (one API call); each answer is its records
    /// (every page: an answer that is not `done` is followed by `nextRecordsUrl`, one more call a
    /// page) or Salesforce's errors for that query alone.
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
                    let page: QueryPage<Value> =
                        serde_json::from_value(sub.body).map_err(|e| SalesforceError::Decode {
                            endpoint: "composite",
                            message: format!("a query answer: {e}"),
                        })?;
                    out.push(Ok(self.follow(page).await?));
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

    /// Updates `records` by `Id`, 200 a call, `allOrNone: false`; each record is `(sobject, its
    /// fields with Id)`, of any types mixed in one call. One result per record, in order.
    pub async fn update(&self, records: &[(&str, Value)]) -> Result<Vec<SalesforceSaveResult>, SalesforceError> {
        const ENDPOINT: &str = "composite/sobjects update";
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX) {
            let typed: Vec<Value> = chunk.iter().map(|(sobject, r)| typed(sobject, r)).collect();
            let body = json!({"allOrNone": false, "records": typed});
            let answer: Vec<Value> = self
                .call(Call {
                    endpoint: ENDPOINT,
                    method: Method::PATCH,
                    path: "composite/sobjects",
                    query: &[],
                    body: Some(&body),
                })
                .await?;
            if answer.len() != chunk.len() {
                return Err(SalesforceError::Decode {
                    endpoint: ENDPOINT,
                    message: format!("{} results for {} records", answer.len(), chunk.len()),
                });
            }
            out.extend(answer.iter().map(SalesforceSaveResult::read));
        }
        Ok(out)
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
            let body = collection_body(sobject, chunk);
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

    /// Sets the `OwnerId` of each record (`(sobject, id)`), one `PATCH /sobjects/{sobject}/{id}`
    /// each: an update to the value it has, so sending it again (a retry) changes nothing more.
    pub async fn set_owner(&self, records: &[(&str, &str)], owner: &str) -> Result<(), SalesforceError> {
        let body = serde_json::json!({ "OwnerId": owner });
        for (sobject, id) in records {
            let path = format!("sobjects/{sobject}/{id}");
            let _: Value = self
                .call(Call {
                    endpoint: "sobject update",
                    method: Method::PATCH,
                    path: &path,
                    query: &[],
                    body: Some(&body),
                })
                .await?;
        }
        Ok(())
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

/// The body of an sObject Collections call: `records` typed as `sobject`, each judged on its own
/// (`allOrNone: false`).
pub(crate) fn collection_body(sobject: &str, records: &[Value]) -> Value {
    let typed: Vec<Value> = records.iter().map(|r| typed(sobject, r)).collect();
    json!({"allOrNone": false, "records": typed})
}

/// `record` with its `attributes.type`.
fn typed(sobject: &str, record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(obj) = r.as_object_mut() {
        obj.insert("attributes".into(), json!({"type": sobject}));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::next_records_path;

    #[test]
    fn next_records_urls_become_paths_under_the_versioned_root() {
        assert_eq!(
            next_records_path("/services/data/v62.0/query/01gD0000002HU6KIAW-2000"),
            Some("query/01gD0000002HU6KIAW-2000")
        );
        assert_eq!(
            next_records_path("/services/data/v59.0/queryAll/01g-200"),
            Some("queryAll/01g-200")
        );
        assert_eq!(next_records_path("https://elsewhere.example/query/01g-2000"), None);
        assert_eq!(next_records_path("/services/data/v62.0"), None);
    }
}
