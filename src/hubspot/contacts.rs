//! Contacts: list, batch read (by id or email), batch update with per-record outcomes, search by
//! modification window past the 10,000 cap, and lifecycle-stage writes that respect HubSpot's
//! forward-only rule.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Serialize;

use super::client::{Call, HubSpotClient, HubSpotError};
use super::limiter::{Budget, Priority};
use super::search::SearchPlan;
use super::types::{
    BATCH_LIMIT, BatchError, BatchReadRequest, BatchResponse, BatchUpdateRequest, HubSpotObject, IdInput,
    LIST_PAGE_LIMIT, Page, UpdateInput,
};

/// Batch reads of one call in flight at once: enough to keep a budget of a few hundred calls
/// per 10 s busy across 50–100 ms round trips, few enough not to flood the connection pool.
pub const READ_CONCURRENCY: usize = 8;

/// Longest property list put in a URL; longer lists go through the POST batch read.
const URL_PROPERTIES_BUDGET: usize = 2_000;

/// A record of the archived listing: its id and when it was archived.
#[derive(Debug, serde::Deserialize)]
struct ArchivedContact {
    id: String,
    #[serde(rename = "archivedAt", default)]
    archived_at: Option<String>,
}

/// What a batch update did, record by record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// Records HubSpot updated.
    pub updated: Vec<String>,
    /// Records it refused, with its reason.
    pub failed: Vec<(String, BatchError)>,
    /// The `updatedAt` HubSpot answered for each record it updated (epoch ms): the
    /// `lastmodifieddate` a search shows while nobody else changed the record since.
    pub updated_at: BTreeMap<String, i64>,
}

/// A record of a batch update's answer: its id and when HubSpot updated it.
#[derive(Debug, serde::Deserialize)]
struct Updated {
    id: String,
    #[serde(rename = "updatedAt", default)]
    updated_at: Option<String>,
}

impl HubSpotClient {
    /// One page of all contacts (`limit` 100). With a long property list, the page's ids are
    /// listed first and the properties fetched with one POST batch read, so no URL grows past a
    /// couple of kilobytes.
    pub async fn list_contacts(
        &self,
        after: Option<&str>,
        properties: &[String],
        priority: Priority,
    ) -> Result<Page<HubSpotObject>, HubSpotError> {
        let joined = properties.join(",");
        let wide = joined.len() > URL_PROPERTIES_BUDGET;
        let mut query = vec![("limit", LIST_PAGE_LIMIT.to_string())];
        if !wide {
            query.push(("properties", joined));
        }
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let mut page: Page<HubSpotObject> = self.contacts_page("contacts.list", &query, priority).await?;
        if wide && !page.results.is_empty() {
            let ids: Vec<String> = page.results.iter().map(|o| o.id.clone()).collect();
            page.results = self.batch_read_contacts(&ids, properties, None, priority).await?;
        }
        Ok(page)
    }

    /// One page of `GET /crm/v3/objects/contacts` with this query (live or archived records).
    async fn contacts_page<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &[(&str, String)],
        priority: Priority,
    ) -> Result<Page<T>, HubSpotError> {
        self.call(Call::<()> {
            endpoint,
            method: Method::GET,
            path: "/crm/v3/objects/contacts",
            query,
            body: None,
            budget: Budget::General,
            priority,
        })
        .await
    }

    /// Contacts archived (deleted, or merged away) at or after `since_ms`, as records with
    /// `archived` set and no properties. HubSpot's search never returns archived records and its
    /// archived listing has no time filter, so every page of the listing (100 a page) is read
    /// and the older ones left out: one call per 100 archived contacts in the portal.
    pub async fn archived_contacts_since(
        &self,
        since_ms: i64,
        priority: Priority,
    ) -> Result<Vec<HubSpotObject>, HubSpotError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("limit", LIST_PAGE_LIMIT.to_string()),
                ("archived", "true".to_string()),
                ("properties", "hs_object_id".to_string()),
            ];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let page: Page<ArchivedContact> = self.contacts_page("contacts.list_archived", &query, priority).await?;
            for c in &page.results {
                // A record without a readable archivedAt is kept: reading it twice costs
                // nothing, missing a deletion would keep a deleted contact alive.
                let at = c.archived_at.as_deref().and_then(super::types::parse_time);
                if at.is_none_or(|t| t.timestamp_millis() >= since_ms) {
                    out.push(HubSpotObject {
                        id: c.id.clone(),
                        properties: Default::default(),
                        archived: true,
                    });
                }
            }
            match page.next_after() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// Contacts by id, or by `id_property` (`email`), 100 per call. Unknown ids are left out.
    pub async fn batch_read_contacts(
        &self,
        ids: &[String],
        properties: &[String],
        id_property: Option<&str>,
        priority: Priority,
    ) -> Result<Vec<HubSpotObject>, HubSpotError> {
        self.batch_read("contacts", ids, properties, id_property, priority)
            .await
    }

    /// Records of any CRM object type by id, 100 per call, [`READ_CONCURRENCY`] calls at a time
    /// (the limiter paces them); results come back in the order of `ids`.
    pub async fn batch_read(
        &self,
        object_type: &str,
        ids: &[String],
        properties: &[String],
        id_property: Option<&str>,
        priority: Priority,
    ) -> Result<Vec<HubSpotObject>, HubSpotError> {
        let path = format!("/crm/v3/objects/{object_type}/batch/read");
        let chunks: Vec<&[String]> = ids.chunks(BATCH_LIMIT).collect();
        let mut out = Vec::with_capacity(ids.len());
        for group in chunks.chunks(READ_CONCURRENCY) {
            let calls = group
                .iter()
                .map(|chunk| self.batch_read_chunk(object_type, &path, chunk, properties, id_property, priority));
            for page in futures::future::try_join_all(calls).await? {
                out.extend(page);
            }
        }
        Ok(out)
    }

    /// One batch read of at most 100 records.
    async fn batch_read_chunk(
        &self,
        object_type: &str,
        path: &str,
        chunk: &[String],
        properties: &[String],
        id_property: Option<&str>,
        priority: Priority,
    ) -> Result<Vec<HubSpotObject>, HubSpotError> {
        let body = BatchReadRequest {
            properties,
            id_property,
            inputs: chunk.iter().map(|id| IdInput { id }).collect(),
        };
        let resp: BatchResponse<HubSpotObject> = self
            .call(Call {
                endpoint: batch_read_endpoint(object_type),
                method: Method::POST,
                path,
                query: &[],
                body: Some(&body),
                budget: Budget::General,
                priority,
            })
            .await?;
        Ok(resp.results)
    }

    /// Updates contacts, 100 per call. HubSpot's multi-status answers are split per record:
    /// one refused record does not fail the others.
    pub async fn batch_update_contacts(
        &self,
        updates: &[(String, BTreeMap<String, String>)],
        priority: Priority,
    ) -> Result<UpdateOutcome, HubSpotError> {
        let mut outcome = UpdateOutcome::default();
        for chunk in updates.chunks(BATCH_LIMIT) {
            let body = BatchUpdateRequest {
                inputs: chunk
                    .iter()
                    .map(|(id, properties)| UpdateInput {
                        id,
                        object_write_trace_id: id,
                        properties,
                    })
                    .collect(),
            };
            let resp: BatchResponse<Updated> = self
                .call(Call {
                    endpoint: "contacts.batch_update",
                    method: Method::POST,
                    path: "/crm/v3/objects/contacts/batch/update",
                    query: &[],
                    body: Some(&body),
                    budget: Budget::General,
                    priority,
                })
                .await?;
            let mut refused: BTreeMap<&str, &BatchError> = BTreeMap::new();
            for e in &resp.errors {
                for id in e.record_ids() {
                    refused.insert(id, e);
                }
            }
            for r in &resp.results {
                if let Some(at) = r.updated_at.as_deref().and_then(super::types::parse_time) {
                    outcome.updated_at.insert(r.id.clone(), at.timestamp_millis());
                }
            }
            for (id, _) in chunk {
                match refused.get(id.as_str()) {
                    Some(e) => outcome.failed.push((id.clone(), (*e).clone())),
                    None => outcome.updated.push(id.clone()),
                }
            }
        }
        Ok(outcome)
    }

    /// One page of a windowed search (see [`SearchPlan`]); call `plan.next` with its ids.
    pub async fn search_page(
        &self,
        object_type: &str,
        plan: &SearchPlan,
        priority: Priority,
    ) -> Result<Page<HubSpotObject>, HubSpotError> {
        let path = format!("/crm/v3/objects/{object_type}/search");
        let body = plan.request();
        self.call(Call {
            endpoint: "search",
            method: Method::POST,
            path: &path,
            query: &[],
            body: Some(&body),
            budget: Budget::Search,
            priority,
        })
        .await
    }

    /// Every record of `object_type` modified in `[from_ms, to_ms)`, each once.
    pub async fn search_modified(
        &self,
        object_type: &str,
        time_property: &str,
        from_ms: i64,
        to_ms: i64,
        properties: &[String],
        priority: Priority,
    ) -> Result<Vec<HubSpotObject>, HubSpotError> {
        let mut plan = SearchPlan::new(time_property, from_ms, to_ms, properties.to_vec());
        let mut out = Vec::new();
        loop {
            let page = self.search_page(object_type, &plan, priority).await?;
            let ids: Vec<u64> = page.results.iter().filter_map(|o| o.id.parse().ok()).collect();
            let more = plan.next(&ids, page.next_after());
            out.extend(page.results);
            if !more {
                return Ok(out);
            }
        }
    }

    /// Sets a contact's lifecycle stage. HubSpot ignores a backward move unless the value is
    /// cleared first, in a separate request (a batch does not guarantee order); the result is
    /// read back and checked.
    pub async fn set_lifecycle_stage(
        &self,
        contact_id: &str,
        property: &str,
        value: &str,
        backward: bool,
        priority: Priority,
    ) -> Result<(), HubSpotError> {
        let path = format!("/crm/v3/objects/contacts/{contact_id}");
        if backward {
            self.patch_properties(&path, property, "", priority).await?;
        }
        self.patch_properties(&path, property, value, priority).await?;
        let query = [("properties", property.to_string())];
        let read: HubSpotObject = self
            .call(Call::<()> {
                endpoint: "contacts.read",
                method: Method::GET,
                path: &path,
                query: &query,
                body: None,
                budget: Budget::General,
                priority,
            })
            .await?;
        match read.prop(property) {
            Some(v) if v == value => Ok(()),
            other => Err(HubSpotError::Api {
                endpoint: "contacts.set_lifecycle_stage",
                error: super::retry::HubSpotApiError {
                    status: 409,
                    message: Some(format!(
                        "lifecycle stage of contact {contact_id} reads back as {:?}, not {value:?}",
                        other.unwrap_or("")
                    )),
                    ..Default::default()
                },
            }),
        }
    }

    async fn patch_properties(
        &self,
        path: &str,
        property: &str,
        value: &str,
        priority: Priority,
    ) -> Result<(), HubSpotError> {
        #[derive(Serialize)]
        struct Body<'a> {
            properties: BTreeMap<&'a str, &'a str>,
        }
        let body = Body {
            properties: BTreeMap::from([(property, value)]),
        };
        let _: serde_json::Value = self
            .call(Call {
                endpoint: "contacts.update",
                method: Method::PATCH,
                path,
                query: &[],
                body: Some(&body),
                budget: Budget::General,
                priority,
            })
            .await?;
        Ok(())
    }
}

fn batch_read_endpoint(object_type: &str) -> &'static str {
    match object_type {
        "contacts" => "contacts.batch_read",
        "companies" => "companies.batch_read",
        "calls" => "calls.batch_read",
        "emails" => "emails.batch_read",
        "meetings" => "meetings.batch_read",
        "notes" => "notes.batch_read",
        "tasks" => "tasks.batch_read",
        _ => "objects.batch_read",
    }
}
