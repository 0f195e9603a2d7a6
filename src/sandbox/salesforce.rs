//! The fake Salesforce: the REST surface of `docs/architecture.md` (token, SOQL query,
//! composite, sObject Collections upsert and create, describe), 18-character ids,
//! `Sforce-Limit-Info` on every answer, a daily allocation, and a duplicate rule on Contact email.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::portal::{ContactKind, Portal, iso};
use super::{SandboxConfig, Shared, form_pairs, json, lock, soql};

/// (name, type, length, createable, updateable, externalId, picklist values).
type Field = (
    &'static str,
    &'static str,
    u32,
    bool,
    bool,
    bool,
    &'static [&'static str],
);

const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
const COMMON: [Field; 5] = [
    ("Id", "id", 18, false, false, false, &[]),
    ("OwnerId", "reference", 18, true, true, false, &[]),
    ("CreatedDate", "datetime", 0, false, false, false, &[]),
    ("LastModifiedDate", "datetime", 0, false, false, false, &[]),
    ("SystemModstamp", "datetime", 0, false, false, false, &[]),
];

fn fields(object: &str) -> Option<Vec<Field>> {
    let own: Vec<Field> = match object {
        "Account" => vec![
            ("Name", "string", 255, true, true, false, &[]),
            ("Website", "url", 255, true, true, false, &[]),
            ("Industry", "picklist", 255, true, true, false, &[]),
            ("NumberOfEmployees", "int", 0, true, true, false, &[]),
            ("BillingCountry", "string", 80, true, true, false, &[]),
            ("HubSpot_Company_Id__c", "string", 40, true, true, true, &[]),
        ],
        "Contact" => vec![
            ("FirstName", "string", 40, true, true, false, &[]),
            ("LastName", "string", 80, true, true, false, &[]),
            ("Email", "email", 80, true, true, false, &[]),
            ("Title", "string", 128, true, true, false, &[]),
            ("Phone", "phone", 40, true, true, false, &[]),
            ("AccountId", "reference", 18, true, true, false, &[]),
            (
                "LeadSource",
                "picklist",
                255,
                true,
                true,
                false,
                &["Web", "Phone Inquiry", "Partner", "Other"],
            ),
            ("MailingCountry", "string", 80, true, true, false, &[]),
            ("HubSpot_Contact_Id__c", "string", 40, true, true, true, &[]),
        ],
        "Opportunity" => vec![
            ("Name", "string", 120, true, true, false, &[]),
            ("AccountId", "reference", 18, true, true, false, &[]),
            ("StageName", "picklist", 255, true, true, false, STAGES),
            ("CloseDate", "date", 0, true, true, false, &[]),
            ("Amount", "currency", 0, true, true, false, &[]),
            ("IsClosed", "boolean", 0, false, false, false, &[]),
            ("IsWon", "boolean", 0, false, false, false, &[]),
            (
                "LeadSource",
                "picklist",
                255,
                true,
                true,
                false,
                &["Web", "Phone Inquiry", "Partner", "Other"],
            ),
            ("LeadSync_Key__c", "string", 80, true, true, true, &[]),
        ],
        "OpportunityContactRole" => vec![
            ("OpportunityId", "reference", 18, true, false, false, &[]),
            ("ContactId", "reference", 18, true, true, false, &[]),
            (
                "Role",
                "picklist",
                255,
                true,
                true,
                false,
                &["Decision Maker", "Economic Buyer", "Evaluator", "Influencer", "Other"],
            ),
            ("IsPrimary", "boolean", 0, true, true, false, &[]),
            ("LeadSync_Key__c", "string", 80, true, true, true, &[]),
        ],
        "User" => vec![
            ("Name", "string", 121, false, false, false, &[]),
            ("Email", "email", 128, false, false, false, &[]),
            ("Username", "string", 80, false, false, false, &[]),
            ("IsActive", "boolean", 0, false, false, false, &[]),
        ],
        _ => return None,
    };
    Some(
        COMMON
            .iter()
            .copied()
            .filter(|f| object != "User" || f.0 != "OwnerId")
            .chain(own)
            .collect(),
    )
}

fn required(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &["Name"],
        "Contact" => &["LastName"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        "OpportunityContactRole" => &["OpportunityId", "ContactId"],
        _ => &[],
    }
}

fn prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "OpportunityContactRole" => "00K",
        _ => "005",
    }
}

/// A 15-character id made 18 with Salesforce's case-safe suffix.
pub fn salesforce_id(object: &str, n: u64) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut tail = [b'0'; 9];
    let mut v = n;
    for c in tail.iter_mut().rev() {
        *c = B62[(v % 62) as usize];
        v /= 62;
    }
    let id15 = format!("{}5g0{}", prefix(object), String::from_utf8_lossy(&tail));
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id15.clone();
    for chunk in id15.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0usize, |acc, (i, c)| acc | (usize::from(c.is_ascii_uppercase()) << i));
        out.push(alphabet[bits] as char);
    }
    out
}

/// The fake Salesforce's state.
#[derive(Debug)]
pub struct SalesforceState {
    records: BTreeMap<String, Vec<Map<String, Value>>>,
    next: u64,
    used: u64,
    allocation: u64,
    sessions: BTreeMap<String, i64>,
}

fn sf_time(ms: i64) -> String {
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
            used: 0,
            allocation: config.salesforce_daily_allocation,
            sessions: BTreeMap::new(),
        };
        let t = portal.now_ms - portal.history_ms;
        let users: Vec<String> = portal
            .owners
            .iter()
            .map(|(_, first, last, email)| {
                let mut r = Map::new();
                r.insert("Name".into(), json!(format!("{first} {last}")));
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
            s.insert("Contact", r, created);
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
                s.insert("Opportunity", o, created);
            }
        }
        s
    }

    fn insert(&mut self, object: &str, mut r: Map<String, Value>, now: i64) -> String {
        let id = salesforce_id(object, self.next);
        self.next += 1;
        r.insert("Id".into(), json!(id));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            r.insert(f.into(), json!(sf_time(now)));
        }
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

    /// Marks an opportunity won or lost.
    pub(crate) fn close_opportunity(&mut self, id: &str, won: bool, now: i64) -> bool {
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
        r.insert("LastModifiedDate".into(), json!(sf_time(now)));
        r.insert("SystemModstamp".into(), json!(sf_time(now)));
        true
    }

    fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.used, self.allocation)
    }

    /// Writes one record (create, or update of `existing`), checking fields and duplicate rules.
    fn save(
        &mut self,
        object: &str,
        record: &Map<String, Value>,
        existing: Option<usize>,
        now: i64,
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
        if object == "Contact" {
            if let Some(email) = clean.get("Email").and_then(Value::as_str).map(str::to_lowercase) {
                let dup = list.iter().enumerate().any(|(i, r)| {
                    Some(i) != existing
                        && r.get("Email").and_then(Value::as_str).map(str::to_lowercase) == Some(email.clone())
                });
                if dup {
                    return Err(json!({"statusCode": "DUPLICATES_DETECTED",
                        "message": "Use one of these records?", "fields": [],
                        "duplicateResult": {"allowSave": false, "duplicateRule": "Standard_Contact_Duplicate_Rule",
                            "duplicateRuleEntityType": "Contact", "errorMessage": "Use one of these records?"}}));
                }
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
                Ok(r["Id"].as_str().unwrap_or("").to_string())
            }
            None => Ok(self.insert(object, clean, now)),
        }
    }
}

fn with_attributes(object: &str, r: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{}", r["Id"].as_str().unwrap_or(""))}),
    );
    out.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(out)
}

fn err(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"statusCode": code, "message": message, "fields": fields})
}

fn api_error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (status, json!([{"message": message, "errorCode": code}]))
}

/// Serves one Salesforce request.
pub(crate) async fn serve(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let path = uri.path().trim_end_matches('/');
    if method == Method::POST && path == "/services/oauth2/token" {
        shared.count("salesforce", "oauth.token");
        return token(shared, body);
    }
    let rest = path
        .strip_prefix("/services/data/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, r)| r.to_string());
    let endpoint = match (method.as_str(), rest.as_deref()) {
        ("GET", Some("query")) => "query",
        ("POST", Some("composite")) => "composite",
        ("PATCH", Some(r)) if r.starts_with("composite/sobjects/") => "sobjects.upsert",
        ("POST", Some("composite/sobjects")) => "sobjects.create",
        ("GET", Some(r)) if r.starts_with("sobjects/") && r.ends_with("/describe") => "describe",
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
    let (status, value) = match state.sessions.get(bearer) {
        Some(&exp) if exp > now => {
            if state.used >= state.allocation {
                api_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            } else {
                state.used += 1;
                let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                dispatch(
                    &mut state,
                    method,
                    rest.as_deref().unwrap_or(""),
                    uri.query().unwrap_or(""),
                    &body,
                    now,
                )
            }
        }
        _ => api_error(401, "INVALID_SESSION_ID", "Session expired or invalid"),
    };
    let mut r = json(status, &value);
    if let Ok(v) = HeaderValue::from_str(&state.limit_info()) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
    r
}

fn token(shared: &Shared, body: &Bytes) -> Response {
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let form = form_pairs(&String::from_utf8_lossy(body));
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let refused = |d: &str| json(400, &json!({"error": "invalid_grant", "error_description": d}));
    let ok = match get("grant_type") {
        "refresh_token" => {
            get("client_id") == cfg.salesforce_client_id
                && get("refresh_token") == cfg.salesforce_refresh_token
                && (get("client_secret").is_empty() || get("client_secret") == cfg.salesforce_client_secret)
        }
        "client_credentials" => {
            get("client_id") == cfg.salesforce_client_id && get("client_secret") == cfg.salesforce_client_secret
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => match check_jwt(get("assertion"), cfg) {
            Ok(()) => true,
            Err(e) => return refused(&e),
        },
        other => {
            return json(
                400,
                &json!({"error": "unsupported_grant_type", "error_description": format!("grant type not supported: {other}")}),
            );
        }
    };
    if !ok {
        return refused("authentication failure");
    }
    let mut state = lock(&shared.salesforce);
    let n = state.sessions.len() as u64 + 1;
    let access = format!("00D5g000000SBX!{:016x}", super::portal::mix(cfg.seed, 0x5F, n));
    state
        .sessions
        .insert(access.clone(), now + cfg.salesforce_session_lifetime.as_millis() as i64);
    json(
        200,
        &json!({"access_token": access, "instance_url": shared.salesforce_url,
            "id": format!("{}/id/00D5g000000SBXEAA4/{}", shared.salesforce_url, salesforce_id("User", 1)),
            "token_type": "Bearer", "issued_at": now.to_string(), "signature": "c2FuZGJveA==",
            "scope": "api refresh_token"}),
    )
}

/// A well-formed JWT whose claims name the connected app (`iss`), a user (`sub`), a login
/// audience (`aud`) and an expiry in the future. The signature is not verified.
fn check_jwt(assertion: &str, cfg: &SandboxConfig) -> Result<(), String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 || parts[2].is_empty() {
        return Err("invalid assertion: not a signed JWT".into());
    }
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| "invalid assertion: bad base64url".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "invalid assertion: bad JSON".to_string())
    };
    let header = decode(parts[0])?;
    let claims = decode(parts[1])?;
    if header["alg"].as_str().is_none() {
        return Err("invalid assertion: no alg".into());
    }
    if claims["iss"].as_str() != Some(cfg.salesforce_client_id.as_str()) {
        return Err("client identifier invalid".into());
    }
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return Err("user hasn't approved this consumer".into());
    }
    if claims["aud"].as_str().is_none_or(str::is_empty) {
        return Err("audience is invalid".into());
    }
    let exp = claims["exp"].as_i64().ok_or("expiration is invalid")?;
    if exp < chrono::Utc::now().timestamp() {
        return Err("expired authorization code".into());
    }
    Ok(())
}

fn dispatch(s: &mut SalesforceState, method: &Method, rest: &str, query: &str, body: &Value, now: i64) -> (u16, Value) {
    match (method.as_str(), rest) {
        ("GET", "query") => {
            let q = form_pairs(query).get("q").cloned().unwrap_or_default();
            run_query(s, &q)
        }
        ("POST", "composite") => composite(s, body, now),
        ("POST", "composite/sobjects") => collection(s, None, body, now),
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
        _ => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

fn describe(object: &str) -> (u16, Value) {
    let Some(fs) = fields(object) else {
        return api_error(
            404,
            "NOT_FOUND",
            &format!("The requested resource does not exist: {object}"),
        );
    };
    let fields: Vec<Value> = fs
        .iter()
        .map(|(name, kind, length, createable, updateable, external, picklist)| {
            let values: Vec<Value> = picklist
                .iter()
                .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": false}))
                .collect();
            json!({"name": name, "label": name, "type": kind, "length": length, "createable": createable,
                "updateable": updateable, "externalId": external, "idLookup": *external || *name == "Id",
                "custom": name.ends_with("__c"), "nillable": !required(object).contains(name) && *name != "Id",
                "unique": external, "picklistValues": values})
        })
        .collect();
    (
        200,
        json!({"name": object, "label": object, "custom": false, "createable": object != "User",
        "updateable": object != "User", "queryable": true, "keyPrefix": prefix(object), "fields": fields}),
    )
}

fn run_query(s: &SalesforceState, q: &str) -> (u16, Value) {
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

/// sObject Collections: create (`ext` none) or upsert by external id, up to 200 records.
fn collection(s: &mut SalesforceState, ext: Option<(&str, &str)>, body: &Value, now: i64) -> (u16, Value) {
    let records = body["records"].as_array().cloned().unwrap_or_default();
    if records.len() > 200 {
        return api_error(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        );
    }
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let mut results = Vec::new();
    for r in records {
        let Some(map) = r.as_object() else { continue };
        let object = match ext {
            Some((o, _)) => o.to_string(),
            None => r["attributes"]["type"].as_str().unwrap_or("").to_string(),
        };
        let Some(defs) = fields(&object) else {
            results.push(json!({"success": false, "errors": [err("INVALID_TYPE", &format!("sObject type '{object}' is not supported."), &[])]}));
            continue;
        };
        let outcome = match ext {
            None => s.save(&object, map, None, now).map(|id| (id, true)),
            Some((_, field)) => {
                let Some(def) = defs.iter().find(|d| d.0.eq_ignore_ascii_case(field) && d.5) else {
                    return api_error(
                        400,
                        "INVALID_FIELD",
                        &format!("Field name provided, {field} is not an External ID or indexed field for {object}"),
                    );
                };
                let key = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(def.0))
                    .map(|(_, v)| v.clone());
                match key.filter(|v| !v.is_null()) {
                    None => Err(err("MISSING_ARGUMENT", &format!("{} not specified", def.0), &[def.0])),
                    Some(key) => {
                        let found: Vec<usize> = s
                            .records
                            .get(&object)
                            .map(|rs| {
                                rs.iter()
                                    .enumerate()
                                    .filter(|(_, r)| r.get(def.0) == Some(&key))
                                    .map(|(i, _)| i)
                                    .collect()
                            })
                            .unwrap_or_default();
                        if found.len() > 1 {
                            Err(err(
                                "DUPLICATE_EXTERNAL_ID",
                                "more than one record found for external id field",
                                &[def.0],
                            ))
                        } else {
                            let existing = found.first().copied();
                            s.save(&object, map, existing, now).map(|id| (id, existing.is_none()))
                        }
                    }
                }
            }
        };
        results.push(match outcome {
            Ok((id, created)) if ext.is_some() => json!({"id": id, "success": true, "errors": [], "created": created}),
            Ok((id, _)) => json!({"id": id, "success": true, "errors": []}),
            Err(e) => json!({"success": false, "errors": [e]}),
        });
        if all_or_none && results.last().is_some_and(|r| r["success"] == false) {
            break; // simplified: earlier records of the call are not rolled back
        }
    }
    (200, Value::Array(results))
}

/// `POST /composite`: up to 25 subrequests (5 queries), `@{ref.path}` references, one API call.
fn composite(s: &mut SalesforceState, body: &Value, now: i64) -> (u16, Value) {
    let subs = body["compositeRequest"].as_array().cloned().unwrap_or_default();
    let queries = subs
        .iter()
        .filter(|r| r["url"].as_str().is_some_and(|u| u.contains("/query")))
        .count();
    if subs.len() > 25 || queries > 5 {
        return api_error(
            400,
            "INVALID_INPUT",
            "composite requests may contain at most 25 subrequests, of which at most 5 queries",
        );
    }
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let mut failed = false;
    let mut out = Vec::new();
    for r in subs {
        let reference = r["referenceId"].as_str().unwrap_or("").to_string();
        if failed && body["allOrNone"].as_bool() == Some(true) {
            out.push(json!({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference}));
            continue;
        }
        let url = resolve(r["url"].as_str().unwrap_or(""), &done);
        let sub_body = resolve_value(&r["body"], &done);
        let method: Method = r["method"].as_str().unwrap_or("GET").parse().unwrap_or(Method::GET);
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let rest = path
            .strip_prefix("/services/data/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        let (status, value) = match (url.contains("@{"), sub_body) {
            (false, Ok(b)) => dispatch(s, &method, &rest, query, &b, now),
            _ => api_error(400, "INVALID_REFERENCE", "a reference could not be resolved"),
        };
        failed |= status >= 400;
        done.insert(reference.clone(), value.clone());
        out.push(json!({"body": value, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}));
    }
    (200, json!({"compositeResponse": out}))
}

fn lookup(path: &str, done: &BTreeMap<String, Value>) -> Option<Value> {
    let mut v: Option<Value> = None;
    for p in path.split('.') {
        let (name, index) = match p.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (p, None),
        };
        v = Some(match v {
            None => done.get(name)?.clone(),
            Some(v) => v.get(name)?.clone(),
        });
        if let Some(i) = index {
            v = v.and_then(|v| v.get(i).cloned());
        }
    }
    v
}

fn resolve(text: &str, done: &BTreeMap<String, Value>) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find("@{") {
        let Some(len) = out[start..].find('}') else { break };
        let path = out[start + 2..start + len].to_string();
        let Some(v) = lookup(&path, done) else { break };
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        out.replace_range(start..start + len + 1, &text);
    }
    out
}

fn resolve_value(v: &Value, done: &BTreeMap<String, Value>) -> Result<Value, ()> {
    Ok(match v {
        Value::String(s) if s.contains("@{") => {
            let r = resolve(s, done);
            if r.contains("@{") {
                return Err(());
            }
            Value::String(r)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve_value(x, done)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| resolve_value(x, done).map(|x| (k.clone(), x)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_18_characters_with_the_case_safe_suffix() {
        let id = salesforce_id("Contact", 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert_ne!(salesforce_id("Contact", 2), id);
    }
}
