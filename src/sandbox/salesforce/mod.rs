//! The fake Salesforce: the REST surface of `docs/architecture.md` (token, SOQL query,
//! composite, sObject Collections upsert, create and update by id, describe) and the standard
//! single-record calls other clients make (`sobjects/{SObject}/{id}`, upsert by external id, `query` paged by
//! `nextRecordsUrl`, `queryAll`), 18-character ids, `Sforce-Limit-Info` on every answer, a daily
//! allocation over a rolling 24 hours, a duplicate rule on Contact email, and the Tasks and
//! Events reps log (seeded history, created over REST, read by SOQL).

use std::collections::{BTreeMap, VecDeque};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::portal::{ContactKind, Portal, iso};
use super::{SandboxConfig, Shared, form_pairs, json, lock};

/// Tasks and Events: defaults, reference checks, seeded history, activity a rep logs.
mod activities;
/// The token endpoint: refresh token, JWT bearer, client credentials.
mod auth;
/// sObject Collections and `POST /composite`.
mod composite;
/// `GET /query` over the stored records, in batches with `nextRecordsUrl`.
mod query;
/// Objects, fields, describe, 18-character ids.
mod schema;
/// Single-record create, read, update, delete and upsert by external id.
mod sobjects;
/// The SOQL subset's parser.
mod soql;

use self::auth::token;
use self::composite::{collection, composite, update_collection};
use self::query::{Cursor, batch_size, query_more};
pub use self::schema::salesforce_id;
use self::schema::{describe, fields, required};

/// The fake Salesforce's state.
#[derive(Debug)]
pub struct SalesforceState {
    records: BTreeMap<String, Vec<Map<String, Value>>>,
    next: u64,
    /// When each counted request was made (sandbox ms), over the rolling 24 hours.
    used: VecDeque<i64>,
    pub(super) allocation: u64,
    sessions: BTreeMap<String, i64>,
    /// Deleted records, which only `queryAll` still sees.
    recycled: BTreeMap<String, Vec<Map<String, Value>>>,
    /// Query answers not read to their end, by locator.
    cursors: VecDeque<Cursor>,
    next_cursor: u64,
}

/// What a request carries besides its path and body: the API version it named and the batch size
/// it asked for.
pub(super) struct RequestContext {
    /// `v62.0`.
    pub(super) version: String,
    /// Rows per query batch.
    pub(super) batch: usize,
}

/// The user every API call acts as (the token response's `id` names it): leadsync's
/// integration user. A rep's edit ([`SalesforceState::edit`]) is made by the record's owner.
pub fn integration_user() -> String {
    salesforce_id("User", 1)
}

pub(super) fn sf_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

impl SalesforceState {
    pub(crate) fn new(portal: &Portal, config: &SandboxConfig) -> Self {
        let mut s = Self {
            records: BTreeMap::new(),
            next: 1,
            used: VecDeque::new(),
            allocation: config.salesforce_daily_allocation,
            sessions: BTreeMap::new(),
            recycled: BTreeMap::new(),
            cursors: VecDeque::new(),
            next_cursor: 1,
        };
        let t = portal.now_ms - portal.history_ms;
        let users: Vec<String> = portal
            .owners
            .iter()
            .enumerate()
            .map(|(n, (_, first, last, email))| {
                let mut r = Map::new();
                // The ids `mappings/salesforce.toml` names in its territories and round robin.
                r.insert("Id".into(), json!(format!("005{:012}AAA", n + 1)));
                r.insert("Name".into(), json!(format!("{first} {last}")));
                // Most reps have the email they log in to HubSpot with (one written with capitals,
                // as people type it); the last two have another in Salesforce, so their HubSpot
                // ownership does not map to a Salesforce user.
                let email = match n {
                    0 => email.to_uppercase(),
                    n if n + 2 >= portal.owners.len() => format!("sf.{email}"),
                    _ => email.clone(),
                };
                r.insert("Email".into(), json!(email));
                r.insert("Username".into(), json!(email));
                r.insert("IsActive".into(), json!(true));
                s.insert("User", r, t)
            })
            .collect();
        let mut accounts = BTreeMap::new();
        for i in 0..portal.contacts {
            let kind = portal.kind(i);
            if !matches!(kind, ContactKind::InSalesforce | ContactKind::Customer) {
                continue;
            }
            let c = portal.contact(i);
            let owner = users[c.owner.unwrap_or(0) % users.len()].clone();
            let account = c.company.map(|ci| {
                accounts
                    .entry(ci)
                    .or_insert_with(|| {
                        let co = portal.company(ci);
                        let mut r = Map::new();
                        r.insert("Name".into(), json!(co.name));
                        r.insert("Website".into(), json!(co.domain));
                        r.insert("NumberOfEmployees".into(), json!(co.employees));
                        r.insert("OwnerId".into(), json!(owner));
                        if co.customer {
                            let hs = u64::from(ci) + super::portal::COMPANY_ID_BASE;
                            r.insert("HubSpot_Company_Id__c".into(), json!(hs.to_string()));
                        }
                        s.insert("Account", r, co.created_ms)
                    })
                    .clone()
            });
            let p = &c.properties;
            let mut r = Map::new();
            r.insert("FirstName".into(), json!(p.get("firstname")));
            r.insert("LastName".into(), json!(p.get("lastname")));
            r.insert("Email".into(), json!(p.get("email")));
            r.insert("Title".into(), json!(p.get("jobtitle")));
            r.insert("AccountId".into(), json!(account));
            r.insert("OwnerId".into(), json!(owner));
            // Customers were promoted earlier and carry their HubSpot id; the others were typed
            // in by sales, so only their email links them.
            if kind == ContactKind::Customer {
                r.insert("HubSpot_Contact_Id__c".into(), json!(p.get("hs_object_id")));
            }
            let created = portal.contact_created_ms(i);
            let contact = s.insert("Contact", r, created);
            let mut opportunity = None;
            if kind == ContactKind::Customer {
                let mut o = Map::new();
                o.insert(
                    "Name".into(),
                    json!(format!(
                        "{} - new business",
                        p.get("company").cloned().unwrap_or_default()
                    )),
                );
                o.insert("AccountId".into(), json!(account));
                o.insert("StageName".into(), json!("Closed Won"));
                o.insert("CloseDate".into(), json!(iso(created + 30 * 86_400_000)[..10]));
                o.insert("Amount".into(), json!(12_000));
                o.insert("IsClosed".into(), json!(true));
                o.insert("IsWon".into(), json!(true));
                o.insert("OwnerId".into(), json!(owner));
                opportunity = Some(s.insert("Opportunity", o, created));
            }
            // The owner's first call, a quarter of the way from the contact's creation to now.
            let called = created + (portal.now_ms - created) / 4;
            s.seed_activities(&contact, opportunity.as_deref(), &json!(owner), called);
        }
        s
    }

    fn insert(&mut self, object: &str, mut r: Map<String, Value>, now: i64) -> String {
        let id = match r.get("Id").and_then(Value::as_str) {
            Some(given) => given.to_string(),
            None => {
                self.next += 1;
                salesforce_id(object, self.next - 1)
            }
        };
        r.insert("Id".into(), json!(id));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            r.insert(f.into(), json!(sf_time(now)));
        }
        let by = r.get("OwnerId").cloned().unwrap_or_else(|| json!(integration_user()));
        r.entry("LastModifiedById").or_insert(by);
        if fields(object).is_some_and(|fs| fs.iter().any(|f| f.0 == "IsClosed")) {
            r.entry("IsClosed").or_insert(json!(false));
            r.entry("IsWon").or_insert(json!(false));
        }
        self.records.entry(object.into()).or_default().push(r);
        id
    }

    /// Every record of `object`, with `attributes`.
    pub fn records(&self, object: &str) -> Vec<Value> {
        self.records
            .get(object)
            .map(|rs| rs.iter().map(|r| with_attributes(object, r)).collect())
            .unwrap_or_default()
    }

    /// A rep's edit of one record in the Salesforce UI: `fields` set as given (no field check,
    /// as a page layout would allow), last modified by the record's owner, not leadsync.
    pub(crate) fn edit(&mut self, object: &str, id: &str, fields: &Map<String, Value>, now: i64) -> bool {
        let Some(r) = self
            .records
            .get_mut(object)
            .and_then(|rs| rs.iter_mut().find(|r| r["Id"] == id))
        else {
            return false;
        };
        for (k, v) in fields {
            r.insert(k.clone(), v.clone());
        }
        let by = r.get("OwnerId").cloned().unwrap_or(Value::Null);
        r.insert("LastModifiedById".into(), by);
        r.insert("LastModifiedDate".into(), json!(sf_time(now)));
        r.insert("SystemModstamp".into(), json!(sf_time(now)));
        true
    }

    /// Marks an opportunity won or lost, with its final amount when given.
    pub(crate) fn close_opportunity(&mut self, id: &str, won: bool, amount: Option<f64>, now: i64) -> bool {
        let Some(r) = self
            .records
            .get_mut("Opportunity")
            .and_then(|rs| rs.iter_mut().find(|r| r["Id"] == id))
        else {
            return false;
        };
        r.insert(
            "StageName".into(),
            json!(if won { "Closed Won" } else { "Closed Lost" }),
        );
        r.insert("IsClosed".into(), json!(true));
        r.insert("IsWon".into(), json!(won));
        if let Some(a) = amount {
            r.insert("Amount".into(), json!(a));
        }
        let by = r.get("OwnerId").cloned().unwrap_or(Value::Null);
        r.insert("LastModifiedById".into(), by);
        r.insert("LastModifiedDate".into(), json!(sf_time(now)));
        r.insert("SystemModstamp".into(), json!(sf_time(now)));
        true
    }

    fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.used.len(), self.allocation)
    }

    /// Writes one record (create, or update of `existing`), checking fields and duplicate rules.
    fn save(
        &mut self,
        object: &str,
        record: &Map<String, Value>,
        existing: Option<usize>,
        now: i64,
    ) -> Result<String, Value> {
        self.save_with(object, record, existing, now, None)
    }

    /// The positions of `object`'s records by `key` (records it gives none left out): what a
    /// collection call looks records up in instead of reading every one per saved record.
    pub(super) fn positions(&self, object: &str, key: impl Fn(&Map<String, Value>) -> Option<String>) -> Positions {
        let mut index = Positions::new();
        for (i, r) in self.records.get(object).into_iter().flatten().enumerate() {
            if let Some(k) = key(r) {
                index.entry(k).or_default().push(i);
            }
        }
        index
    }

    /// The Contacts' positions by their email in lower case, for the duplicate rule.
    pub(super) fn contact_emails(&self) -> Positions {
        self.positions("Contact", |r| {
            r.get("Email").and_then(Value::as_str).map(str::to_lowercase)
        })
    }

    /// [`SalesforceState::save`], with the Contacts' emails looked up in `emails` (built by
    /// [`SalesforceState::contact_emails`] and kept up to date here) instead of read from every
    /// Contact: a call's 200 saves in an org of tens of thousands of Contacts.
    pub(super) fn save_with(
        &mut self,
        object: &str,
        record: &Map<String, Value>,
        existing: Option<usize>,
        now: i64,
        emails: Option<&mut Positions>,
    ) -> Result<String, Value> {
        let defs = fields(object).unwrap_or_default();
        let mut clean = Map::new();
        for (k, v) in record {
            if k == "attributes" {
                continue;
            }
            let Some(f) = defs.iter().find(|f| f.0.eq_ignore_ascii_case(k)) else {
                return Err(err(
                    "INVALID_FIELD",
                    &format!("No such column '{k}' on sobject of type {object}"),
                    &[k],
                ));
            };
            let allowed = if existing.is_some() { f.4 } else { f.3 };
            if !allowed && f.0 != "Id" {
                return Err(err(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    &format!("Unable to create/update fields: {}.", f.0),
                    &[f.0],
                ));
            }
            clean.insert(f.0.to_string(), v.clone());
        }
        clean.remove("Id");
        activities::prepare(self, object, &mut clean, existing.is_none())?;
        let list = self.records.entry(object.into()).or_default();
        if existing.is_none() {
            let missing: Vec<&str> = required(object)
                .iter()
                .copied()
                .filter(|f| clean.get(*f).is_none_or(|v| v.is_null() || v == ""))
                .collect();
            if !missing.is_empty() {
                return Err(err(
                    "REQUIRED_FIELD_MISSING",
                    &format!("Required fields are missing: [{}]", missing.join(", ")),
                    &missing,
                ));
            }
        }
        let emails = emails.filter(|_| object == "Contact");
        if object == "Contact" {
            if let Some(email) = clean.get("Email").and_then(Value::as_str).map(str::to_lowercase) {
                let dup = match emails.as_deref() {
                    Some(index) => index
                        .get(&email)
                        .is_some_and(|at| at.iter().any(|i| Some(*i) != existing)),
                    None => list.iter().enumerate().any(|(i, r)| {
                        Some(i) != existing
                            && r.get("Email")
                                .and_then(Value::as_str)
                                .is_some_and(|e| same_email(e, &email))
                    }),
                };
                if dup {
                    return Err(json!({"statusCode": "DUPLICATES_DETECTED",
                        "message": "Use one of these records?", "fields": [],
                        "duplicateResult": {"allowSave": false, "duplicateRule": "Standard_Contact_Duplicate_Rule",
                            "duplicateRuleEntityType": "Contact", "errorMessage": "Use one of these records?"}}));
                }
            }
        }
        if let Some(index) = emails {
            // The saved Contact's email, as it will be: moved from its old one, or added.
            let before = existing.and_then(|i| list[i].get("Email")).and_then(Value::as_str);
            let after = clean.get("Email").map(Value::as_str).unwrap_or(before);
            let at = existing.unwrap_or(list.len());
            if let Some(old) = before.map(str::to_lowercase) {
                if let Some(v) = index.get_mut(&old) {
                    v.retain(|i| *i != at);
                }
            }
            if let Some(new) = after.map(str::to_lowercase) {
                index.entry(new).or_default().push(at);
            }
        }
        match existing {
            Some(i) => {
                let r = &mut list[i];
                for (k, v) in clean {
                    r.insert(k, v);
                }
                r.insert("LastModifiedDate".into(), json!(sf_time(now)));
                r.insert("SystemModstamp".into(), json!(sf_time(now)));
                r.insert("LastModifiedById".into(), json!(integration_user()));
                Ok(r["Id"].as_str().unwrap_or("").to_string())
            }
            None => Ok(self.insert(object, clean, now)),
        }
    }
}

/// Records' positions in their object's list, by a key.
pub(super) type Positions = std::collections::HashMap<String, Vec<usize>>;

/// Whether `email` equals `lower` (already in lower case) ignoring case, as the duplicate rule
/// matches: without a copy for ASCII addresses, which every record of a large org is compared.
fn same_email(email: &str, lower: &str) -> bool {
    if email.is_ascii() {
        email.eq_ignore_ascii_case(lower)
    } else {
        email.to_lowercase() == lower
    }
}

pub(super) fn with_attributes(object: &str, r: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{}", r["Id"].as_str().unwrap_or(""))}),
    );
    out.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(out)
}

pub(super) fn err(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"statusCode": code, "message": message, "fields": fields})
}

pub(super) fn api_error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (status, json!([{"message": message, "errorCode": code}]))
}

/// Serves one Salesforce request.
pub(crate) async fn serve(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let path = uri.path().trim_end_matches('/');
    if method == Method::POST && path == "/services/oauth2/token" {
        shared.count("salesforce", "oauth.token");
        return token(shared, body);
    }
    let versioned = path.strip_prefix("/services/data/").and_then(|r| r.split_once('/'));
    let rest = versioned.map(|(_, r)| r.to_string());
    let context = RequestContext {
        version: versioned.map_or("v62.0", |(v, _)| v).to_string(),
        batch: batch_size(headers.get("sforce-query-options").and_then(|v| v.to_str().ok())),
    };
    let endpoint = match (method.as_str(), rest.as_deref()) {
        ("GET", Some("query")) => "query",
        ("GET", Some("queryAll")) => "queryAll",
        ("GET", Some(r)) if r.starts_with("query/") || r.starts_with("queryAll/") => "query.more",
        ("POST", Some("composite")) => "composite",
        ("PATCH", Some(r)) if r.starts_with("composite/sobjects/") => "sobjects.upsert",
        ("PATCH", Some("composite/sobjects")) => "sobjects.update",
        ("POST", Some("composite/sobjects")) => "sobjects.create",
        ("GET", Some(r)) if r.starts_with("sobjects/") && r.ends_with("/describe") => "describe",
        (m, Some(r)) if r.starts_with("sobjects/") => match (m, r.split('/').count()) {
            ("POST", 2) => "sobject.create",
            ("GET", 3) => "sobject.read",
            ("PATCH", 3) => "sobject.update",
            ("DELETE", 3) => "sobject.delete",
            ("GET", 4) => "sobject.read_by_external_id",
            ("PATCH", 4) => "sobject.upsert",
            _ => "unknown",
        },
        _ => "unknown",
    };
    shared.count("salesforce", endpoint);
    if let Some(r) = shared.delay_or_fault("salesforce").await {
        return r;
    }
    let now = shared.clock.now_ms();
    let mut state = lock(&shared.salesforce);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if shared.in_rate_limit_burst() {
        let (status, value) = api_error(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.");
        let mut r = json(status, &value);
        if let Ok(v) = HeaderValue::from_str(&state.limit_info()) {
            r.headers_mut().insert("sforce-limit-info", v);
        }
        return r;
    }
    let (status, value) = match state.sessions.get(bearer) {
        Some(&exp) if exp <= now => {
            shared.count_fault(super::fault_kind::EXPIRED);
            api_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        }
        Some(_) => {
            while state.used.front().is_some_and(|t| *t <= now - 86_400_000) {
                state.used.pop_front();
            }
            if state.used.len() as u64 >= state.allocation {
                api_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            } else {
                state.used.push_back(now);
                match serde_json::from_slice::<Value>(body) {
                    Err(e) if !body.is_empty() => {
                        api_error(400, "JSON_PARSER_ERROR", &format!("The request body is not JSON: {e}"))
                    }
                    parsed => dispatch(
                        &mut state,
                        method,
                        rest.as_deref().unwrap_or(""),
                        uri.query().unwrap_or(""),
                        &parsed.unwrap_or(Value::Null),
                        &context,
                        now,
                    ),
                }
            }
        }
        _ => api_error(401, "INVALID_SESSION_ID", "Session expired or invalid"),
    };
    let write = matches!(
        endpoint,
        "composite" | "sobjects.upsert" | "sobjects.create" | "sobjects.update"
    ) || (endpoint.starts_with("sobject.") && method != Method::GET);
    if write && (200..300).contains(&status) && shared.lose_answer() {
        // Applied; the answer never arrives.
        let (status, value) = api_error(
            503,
            "SERVER_UNAVAILABLE",
            "Service unavailable (sandbox fault: applied, answer lost)",
        );
        return json(status, &value);
    }
    let mut r = if value.is_null() && status == 204 {
        axum::http::StatusCode::NO_CONTENT.into_response()
    } else {
        json(status, &value)
    };
    if let Ok(v) = HeaderValue::from_str(&state.limit_info()) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
    r
}

pub(super) fn dispatch(
    s: &mut SalesforceState,
    method: &Method,
    rest: &str,
    query: &str,
    body: &Value,
    context: &RequestContext,
    now: i64,
) -> (u16, Value) {
    let version = context.version.as_str();
    match (method.as_str(), rest) {
        ("GET", "query" | "queryAll") => {
            let q = form_pairs(query).get("q").cloned().unwrap_or_default();
            self::query::query(s, &q, rest == "queryAll", context.batch, version)
        }
        ("GET", r) if r.starts_with("query/") => query_more(s, &r["query/".len()..], false, version),
        ("GET", r) if r.starts_with("queryAll/") => query_more(s, &r["queryAll/".len()..], true, version),
        ("POST", "composite") => composite(s, body, now),
        ("POST", "composite/sobjects") => collection(s, None, body, now),
        ("PATCH", "composite/sobjects") => update_collection(s, body, now),
        ("PATCH", r) if r.starts_with("composite/sobjects/") => {
            let parts: Vec<&str> = r.trim_start_matches("composite/sobjects/").split('/').collect();
            match parts.as_slice() {
                [object, ext] => collection(s, Some((object, ext)), body, now),
                _ => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
            }
        }
        ("GET", r) if r.starts_with("sobjects/") && r.ends_with("/describe") => {
            let object = r.trim_start_matches("sobjects/").trim_end_matches("/describe");
            describe(object)
        }
        (m, r) if r.starts_with("sobjects/") => match sobjects::target(r) {
            Some(t) => sobjects::serve(s, m, t, query, body, version, now),
            None => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
        },
        _ => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_duplicate_rule_matches_emails_as_lower_casing_both_would() {
        let emails = [
            "jane@acme.com",
            "JANE@Acme.COM",
            "jane@acme.co",
            "k@x.io",
            "\u{212A}@x.io",
            "ÉLÉNA@x.fr",
            "éléna@x.fr",
            "",
        ];
        for a in emails {
            for b in emails {
                let lower = b.to_lowercase();
                assert_eq!(
                    super::same_email(a, &lower),
                    a.to_lowercase() == lower,
                    "{a} against {b}"
                );
            }
        }
    }
}
