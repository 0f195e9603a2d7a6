//! The fake HubSpot: the CRM v3 objects, search, batch and associations v4 APIs, owners,
//! properties, forms and OAuth, over the seeded portal, with HubSpot's budgets and refusals.
//!
//! Records nobody wrote are generated on demand from the portal; a write copies the contact into
//! an overlay first. `lastmodifieddate` is kept for every contact in one vector (the search
//! index), and bumped on every write, as HubSpot does (our own write-backs move the cursor too).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::portal::{COMPANY_ID_BASE, CONTACT_ID_BASE, ENGAGEMENT_OBJECTS, Portal, iso, parse_ms};
use super::webhooks::Event;
use super::{Shared, correlation_id, form_pairs, json, lock};

const DAY_MS: i64 = 86_400_000;
/// HubSpot's default lifecycle stages, in their order.
pub const STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];
const LEAD_STATUSES: [&str; 8] = [
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
];
/// Contact properties the portal defines: (name, type, read-only).
const CONTACT_PROPERTIES: [(&str, &str, bool); 34] = [
    ("email", "string", false),
    ("firstname", "string", false),
    ("lastname", "string", false),
    ("phone", "string", false),
    ("company", "string", false),
    ("jobtitle", "string", false),
    ("hs_persona", "enumeration", false),
    ("numemployees", "number", false),
    ("industry", "string", false),
    ("country", "string", false),
    ("lifecyclestage", "enumeration", false),
    ("hs_lead_status", "enumeration", false),
    ("hubspot_owner_id", "enumeration", false),
    ("hs_object_id", "number", true),
    ("createdate", "datetime", true),
    ("lastmodifieddate", "datetime", true),
    ("hs_lastmodifieddate", "datetime", true),
    ("hs_analytics_num_page_views", "number", true),
    ("hs_analytics_num_visits", "number", true),
    ("hs_analytics_last_visit_timestamp", "datetime", true),
    ("hs_email_open", "number", true),
    ("hs_email_click", "number", true),
    ("hs_email_last_open_date", "datetime", true),
    ("hs_email_last_click_date", "datetime", true),
    ("first_conversion_event_name", "string", true),
    ("first_conversion_date", "datetime", true),
    ("recent_conversion_event_name", "string", true),
    ("recent_conversion_date", "datetime", true),
    ("num_conversion_events", "number", true),
    ("num_unique_conversion_events", "number", true),
    ("website", "string", false),
    ("city", "string", false),
    ("hs_email_optout", "bool", false),
    ("notes_last_contacted", "datetime", true),
];

/// The fake HubSpot's state.
#[derive(Debug)]
pub struct HubSpotState {
    portal: Arc<Portal>,
    /// `lastmodifieddate` of every contact (epoch ms), by index.
    modified: Vec<i64>,
    /// Contacts written since start (or created), with all their properties.
    overlay: HashMap<u32, BTreeMap<String, String>>,
    /// Emails of overlay contacts.
    emails: HashMap<String, u32>,
    /// Submissions per form, oldest first: (epoch ms, contact index).
    submissions: Vec<Vec<(i64, u32)>>,
    /// Contact property definitions.
    properties: Vec<Value>,
    names: HashSet<String>,
    read_only: HashSet<String>,
    groups: Vec<Value>,
    tokens: HashMap<String, i64>,
    issued: u64,
    burst: VecDeque<Instant>,
    search: VecDeque<Instant>,
    daily_used: u64,
    day: i64,
    events: u64,
}

impl HubSpotState {
    pub(crate) fn new(portal: Arc<Portal>) -> Self {
        let mut modified = Vec::with_capacity(portal.contacts as usize);
        let mut submissions = vec![Vec::new(); portal.forms.len()];
        for i in 0..portal.contacts {
            let a = portal.activity(i);
            modified.push(a.modified);
            for (f, at) in a.submissions {
                submissions[f].push((at, i));
            }
        }
        for s in &mut submissions {
            s.sort();
        }
        let properties: Vec<Value> = CONTACT_PROPERTIES
            .iter()
            .map(|(name, kind, read_only)| {
                let options: Vec<Value> = match *name {
                    "lifecyclestage" => options(&STAGES),
                    "hs_lead_status" => options(&LEAD_STATUSES),
                    _ => vec![],
                };
                json!({"name": name, "label": name, "type": kind,
                    "fieldType": match *kind { "enumeration" => "select", "number" => "number",
                        "datetime" => "date", "bool" => "booleancheckbox", _ => "text" },
                    "groupName": "contactinformation", "options": options,
                    "modificationMetadata": {"readOnlyValue": read_only, "archivable": true, "readOnlyDefinition": true}})
            })
            .collect();
        Self {
            names: CONTACT_PROPERTIES.iter().map(|p| p.0.to_string()).collect(),
            read_only: CONTACT_PROPERTIES
                .iter()
                .filter(|p| p.2)
                .map(|p| p.0.to_string())
                .collect(),
            portal,
            modified,
            overlay: HashMap::new(),
            emails: HashMap::new(),
            submissions,
            properties,
            groups: vec![
                json!({"name": "contactinformation", "label": "Contact information", "displayOrder": -1, "archived": false}),
            ],
            tokens: HashMap::new(),
            issued: 0,
            burst: VecDeque::new(),
            search: VecDeque::new(),
            daily_used: 0,
            day: 0,
            events: 0,
        }
    }

    fn count(&self) -> u32 {
        self.modified.len() as u32
    }

    fn contact_index(&self, id: &str) -> Option<u32> {
        let index = u32::try_from(id.trim().parse::<u64>().ok()?.checked_sub(CONTACT_ID_BASE)?).ok()?;
        (index < self.count()).then_some(index)
    }

    fn index_by_email(&self, email: &str) -> Option<u32> {
        let e = email.trim().to_lowercase();
        if let Some(i) = self.emails.get(&e) {
            return Some(*i);
        }
        let i = self.portal.index_of_email(&e)?;
        // A contact whose email was changed is no longer found by its old one.
        match self.overlay.get(&i) {
            Some(p) if p.get("email").map(|v| v.to_lowercase()) != Some(e) => None,
            _ => Some(i),
        }
    }

    fn resolve(&self, contact: &str) -> Option<u32> {
        if contact.contains('@') {
            self.index_by_email(contact)
        } else {
            self.contact_index(contact)
        }
    }

    fn contact_props(&self, index: u32) -> BTreeMap<String, String> {
        match self.overlay.get(&index) {
            Some(p) => p.clone(),
            None => self.portal.contact(index).properties,
        }
    }

    /// A contact's properties by id, for tests.
    pub fn contact_properties(&self, id: &str) -> Option<BTreeMap<String, String>> {
        self.contact_index(id).map(|i| self.contact_props(i))
    }

    fn materialize(&mut self, index: u32) -> &mut BTreeMap<String, String> {
        let portal = &self.portal;
        self.overlay
            .entry(index)
            .or_insert_with(|| portal.contact(index).properties)
    }

    fn set_modified(&mut self, index: u32, now: i64) {
        let t = now.max(self.modified[index as usize] + 1);
        self.modified[index as usize] = t;
        self.materialize(index).insert("lastmodifieddate".into(), iso(t));
    }

    /// One value of a record, cheaply for the properties search filters on.
    fn value(&self, ty: &str, id: u64, prop: &str, cache: &mut Option<BTreeMap<String, String>>) -> Option<String> {
        if prop == "hs_object_id" {
            return Some(id.to_string());
        }
        if ty == "contacts" {
            let index = (id - CONTACT_ID_BASE) as u32;
            if matches!(prop, "lastmodifieddate" | "hs_lastmodifieddate") {
                return Some(self.modified[index as usize].to_string());
            }
            if prop == "createdate" && !self.overlay.contains_key(&index) && index < self.portal.contacts {
                return Some(self.portal.contact_created_ms(index).to_string());
            }
        }
        if cache.is_none() {
            *cache = self.props(ty, id);
        }
        cache.as_ref()?.get(prop).filter(|v| !v.is_empty()).cloned()
    }

    fn props(&self, ty: &str, id: u64) -> Option<BTreeMap<String, String>> {
        match ty {
            "contacts" => {
                let index = u32::try_from(id.checked_sub(CONTACT_ID_BASE)?).ok()?;
                (index < self.count()).then(|| self.contact_props(index))
            }
            "companies" => {
                let index = u32::try_from(id.checked_sub(COMPANY_ID_BASE)?).ok()?;
                (index < self.portal.companies).then(|| self.portal.company_properties(index))
            }
            _ => {
                let t = ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == ty)?;
                self.portal.engagement(t, id).map(|e| e.properties)
            }
        }
    }

    fn ids(&self, ty: &str) -> Box<dyn Iterator<Item = u64> + '_> {
        match ty {
            "contacts" => Box::new((0..self.count()).map(|i| u64::from(i) + CONTACT_ID_BASE)),
            "companies" => Box::new((0..self.portal.companies).map(|i| u64::from(i) + COMPANY_ID_BASE)),
            _ => match ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == ty) {
                Some(t) => Box::new((0..self.portal.contacts).flat_map(move |i| {
                    (0..self.portal.engagement_count(i, t)).map(move |j| Portal::engagement_id(i, j))
                })),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    fn object_json(&self, ty: &str, id: u64, props: &BTreeMap<String, String>, wanted: &[String]) -> Value {
        let defaults: &[&str] = match ty {
            "contacts" => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            "companies" => &["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        };
        let mut out = serde_json::Map::new();
        for p in defaults.iter().copied().chain(wanted.iter().map(String::as_str)) {
            if ty == "contacts" && !self.names.contains(p) {
                continue; // HubSpot leaves unknown properties out of reads
            }
            let v = props.get(p).filter(|v| !v.is_empty());
            out.insert(p.to_string(), v.map_or(Value::Null, |v| Value::String(v.clone())));
        }
        let created = props
            .get("createdate")
            .or(props.get("hs_createdate"))
            .cloned()
            .unwrap_or_default();
        let updated = props
            .get("lastmodifieddate")
            .or(props.get("hs_lastmodifieddate"))
            .cloned()
            .unwrap_or_default();
        json!({"id": id.to_string(), "properties": out, "createdAt": created, "updatedAt": updated, "archived": false})
    }

    /// Applies one contact update as HubSpot would, or says why it refuses.
    fn update(&mut self, index: u32, changes: &BTreeMap<String, String>, now: i64) -> Result<(), (String, String)> {
        let current = self.contact_props(index);
        for (name, value) in changes {
            if !self.names.contains(name) {
                return Err((
                    "PROPERTY_DOESNT_EXIST".into(),
                    format!("Property \"{name}\" does not exist"),
                ));
            }
            if self.read_only.contains(name) {
                return Err((
                    "READ_ONLY_VALUE".into(),
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                ));
            }
            if name == "lifecyclestage" && !value.is_empty() {
                let Some(to) = STAGES.iter().position(|s| s == value) else {
                    return Err((
                        "INVALID_OPTION".into(),
                        format!("{value} was not one of the allowed options: {}", STAGES.join(", ")),
                    ));
                };
                let from = current
                    .get("lifecyclestage")
                    .and_then(|c| STAGES.iter().position(|s| s == c));
                if let Some(from) = from.filter(|&f| f > to) {
                    return Err((
                        "INVALID_LIFECYCLE_STAGE".into(),
                        format!(
                            "lifecyclestage can only be set forward: it is {}, so it cannot be set to {value}; \
                             clear the value first to set it backward",
                            STAGES[from]
                        ),
                    ));
                }
            }
            if name == "hs_lead_status" && !value.is_empty() && !LEAD_STATUSES.contains(&value.as_str()) {
                return Err((
                    "INVALID_OPTION".into(),
                    format!("{value} was not one of the allowed options"),
                ));
            }
        }
        let old_email = current.get("email").map(|e| e.to_lowercase());
        let props = self.materialize(index);
        for (name, value) in changes {
            props.insert(name.clone(), value.clone());
        }
        if let Some(e) = changes.get("email") {
            if let Some(old) = old_email {
                self.emails.remove(&old);
            }
            self.emails.insert(e.to_lowercase(), index);
        }
        self.set_modified(index, now);
        Ok(())
    }

    fn next_event(&mut self, now: i64, kind: &str, index: u32, prop: Option<(&str, &str)>, portal_id: u64) -> Event {
        self.events += 1;
        Event {
            event_id: 1_000_000 + self.events,
            subscription_id: 4_242,
            portal_id,
            app_id: 1_234,
            occurred_at: now,
            subscription_type: kind.into(),
            attempt_number: 0,
            object_id: u64::from(index) + CONTACT_ID_BASE,
            property_name: prop.map(|p| p.0.to_string()),
            property_value: prop.map(|p| p.1.to_string()),
            change_source: "FORM".into(),
        }
    }

    /// Records a form submission; returns the contact id and the webhook events it causes.
    pub(crate) fn submit_form_for_portal(
        &mut self,
        contact: &str,
        form: &str,
        now: i64,
        portal_id: u64,
    ) -> Option<(String, Vec<Event>)> {
        let f = self
            .portal
            .forms
            .iter()
            .position(|f| f.guid == form || f.name.eq_ignore_ascii_case(form))
            .or_else(|| {
                let needle = form.to_lowercase();
                self.portal
                    .forms
                    .iter()
                    .position(|f| f.name.to_lowercase().contains(&needle))
            })?;
        let mut events = Vec::new();
        let index = match self.resolve(contact) {
            Some(i) => i,
            None if contact.contains('@') => {
                let index = self.count();
                let email = contact.trim().to_lowercase();
                let id = u64::from(index) + CONTACT_ID_BASE;
                let props = BTreeMap::from([
                    ("email".to_string(), email.clone()),
                    ("hs_object_id".to_string(), id.to_string()),
                    ("createdate".to_string(), iso(now)),
                    ("lastmodifieddate".to_string(), iso(now)),
                    ("lifecyclestage".to_string(), "subscriber".to_string()),
                    ("num_conversion_events".to_string(), "0".to_string()),
                ]);
                self.overlay.insert(index, props);
                self.emails.insert(email, index);
                self.modified.push(now);
                events.push(self.next_event(now, "contact.creation", index, None, portal_id));
                index
            }
            None => return None,
        };
        self.submissions[f].push((now, index));
        let def = &self.portal.forms[f];
        let name = format!("{}: {}", def.page, def.name);
        let props = self.materialize(index);
        let n = props
            .get("num_conversion_events")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        if !props.contains_key("first_conversion_event_name") {
            props.insert("first_conversion_event_name".into(), name.clone());
            props.insert("first_conversion_date".into(), iso(now));
        }
        props.insert("recent_conversion_event_name".into(), name.clone());
        props.insert("recent_conversion_date".into(), iso(now));
        props.insert("num_conversion_events".into(), n.to_string());
        self.set_modified(index, now);
        let n = n.to_string();
        events.push(self.next_event(
            now,
            "contact.propertyChange",
            index,
            Some(("recent_conversion_event_name", &name)),
            portal_id,
        ));
        events.push(self.next_event(
            now,
            "contact.propertyChange",
            index,
            Some(("num_conversion_events", &n)),
            portal_id,
        ));
        Some(((u64::from(index) + CONTACT_ID_BASE).to_string(), events))
    }

    /// Simulated behaviour: `n` page views, a visit, opens and clicks.
    pub(crate) fn touch(&mut self, contact: &str, n: u32, now: i64) -> bool {
        let Some(index) = self.resolve(contact) else {
            return false;
        };
        let props = self.materialize(index);
        let mut bump = |k: &str, by: u32| {
            let v = props.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + u64::from(by);
            props.insert(k.to_string(), v.to_string());
        };
        bump("hs_analytics_num_page_views", n);
        bump("hs_analytics_num_visits", 1);
        bump("hs_email_open", n.div_ceil(2));
        bump("hs_email_click", n.div_ceil(3));
        for k in [
            "hs_analytics_last_visit_timestamp",
            "hs_email_last_open_date",
            "hs_email_last_click_date",
        ] {
            props.insert(k.to_string(), iso(now));
        }
        self.set_modified(index, now);
        true
    }
}

fn options(values: &[&str]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"label": v, "value": v, "displayOrder": i, "hidden": false}))
        .collect()
}

/// A HubSpot error body.
fn error(status: u16, category: &str, message: &str, now: i64) -> Response {
    json(
        status,
        &json!({"status": "error", "message": message, "correlationId": correlation_id(now), "category": category}),
    )
}

/// Which budget a request spends.
#[derive(PartialEq)]
enum Budget {
    General,
    Search,
}

fn endpoint(method: &Method, segs: &[&str]) -> (String, Budget) {
    let name = match (method.as_str(), segs) {
        ("GET", ["crm", "v3", "objects", "contacts"]) => "contacts.list".into(),
        ("GET", ["crm", "v3", "objects", "contacts", _]) => "contacts.read".into(),
        ("PATCH", ["crm", "v3", "objects", "contacts", _]) => "contacts.update".into(),
        ("POST", ["crm", "v3", "objects", t, "batch", "read"]) => format!("{t}.batch_read"),
        ("POST", ["crm", "v3", "objects", t, "batch", "update"]) => format!("{t}.batch_update"),
        ("POST", ["crm", "v3", "objects", t, "search"]) => return (format!("{t}.search"), Budget::Search),
        ("POST", ["crm", "v4", "associations", f, t, "batch", "read"]) => format!("associations.{f}.{t}"),
        ("GET", ["crm", "v3", "owners", ..]) => "owners.list".into(),
        ("GET", ["crm", "v3", "properties", _, "groups"]) => "properties.groups".into(),
        ("POST", ["crm", "v3", "properties", _, "groups"]) => "properties.create_group".into(),
        ("POST", ["crm", "v3", "properties", _, "batch", "create"]) => "properties.batch_create".into(),
        ("GET", ["crm", "v3", "properties", _]) => "properties.list".into(),
        ("GET", ["marketing", "v3", "forms"]) => "forms.list".into(),
        ("GET", ["form-integrations", "v1", "submissions", "forms", _]) => "forms.submissions".into(),
        _ => "unknown".into(),
    };
    (name, Budget::General)
}

/// Serves one HubSpot request.
pub(crate) async fn serve(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = form_pairs(uri.query().unwrap_or(""));
    if method == Method::POST && path == "/oauth/v1/token" {
        shared.count("hubspot", "oauth.token");
        return token(shared, body);
    }
    let (name, budget) = endpoint(method, &segs);
    shared.count("hubspot", &name);
    if let Some(r) = shared.delay_or_fault("hubspot").await {
        return r;
    }
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let mut state = lock(&shared.hubspot);
    // Authentication.
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
        .unwrap_or("");
    let private_app = bearer == cfg.hubspot_private_app_token;
    if !private_app {
        match state.tokens.get(bearer) {
            Some(&exp) if exp > now => {}
            Some(&exp) => {
                return json(
                    401,
                    &json!({"status": "error",
                        "message": format!("The OAuth token used to make this call expired {} second(s) ago.", (now - exp) / 1000),
                        "correlationId": correlation_id(now), "category": "EXPIRED_AUTHENTICATION",
                        "context": {"expire time": [iso(exp)]}}),
                );
            }
            None => {
                return error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                    now,
                );
            }
        }
    }
    // Budgets.
    let real = Instant::now();
    let day = now.div_euclid(DAY_MS);
    if state.day != day {
        state.day = day;
        state.daily_used = 0;
    }
    let burst = cfg.hubspot_burst_per_10s;
    let window = Duration::from_secs(10);
    while state.burst.front().is_some_and(|t| real.duration_since(*t) >= window) {
        state.burst.pop_front();
    }
    while state
        .search
        .front()
        .is_some_and(|t| real.duration_since(*t) >= Duration::from_secs(1))
    {
        state.search.pop_front();
    }
    let limited = |msg: &str, policy: &str| {
        json!({"status": "error", "message": msg, "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(now), "policyName": policy, "requestId": correlation_id(now)})
    };
    let mut rate_headers = Vec::new();
    if state.daily_used >= cfg.hubspot_daily_limit {
        let mut r = json(429, &limited("You have reached your daily limit.", "DAILY"));
        add_rate_headers(
            &mut r,
            burst,
            burst.saturating_sub(state.burst.len() as u32),
            private_app,
            cfg.hubspot_daily_limit,
            0,
        );
        return r;
    }
    if budget == Budget::Search {
        if state.search.len() as u32 >= cfg.hubspot_search_per_second {
            return json(429, &limited("You have reached your secondly limit.", "SECONDLY"));
        }
        state.search.push_back(real);
    } else {
        if state.burst.len() as u32 >= burst {
            let mut r = json(
                429,
                &limited("You have reached your ten secondly limit.", "TEN_SECONDLY_ROLLING"),
            );
            add_rate_headers(
                &mut r,
                burst,
                0,
                private_app,
                cfg.hubspot_daily_limit,
                cfg.hubspot_daily_limit - state.daily_used,
            );
            return r;
        }
        state.burst.push_back(real);
        rate_headers.push(burst.saturating_sub(state.burst.len() as u32));
    }
    state.daily_used += 1;
    let daily_left = cfg.hubspot_daily_limit - state.daily_used;
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, "VALIDATION_ERROR", &format!("Invalid input JSON: {e}"), now),
        }
    };
    let mut response = route(&mut state, method, &segs, &query, &body, now);
    if let Some(remaining) = rate_headers.pop() {
        add_rate_headers(
            &mut response,
            burst,
            remaining,
            private_app,
            cfg.hubspot_daily_limit,
            daily_left,
        );
    }
    response
}

fn add_rate_headers(r: &mut Response, max: u32, remaining: u32, private_app: bool, daily: u64, daily_left: u64) {
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("x-hubspot-ratelimit-max", max.to_string());
    put("x-hubspot-ratelimit-remaining", remaining.to_string());
    put("x-hubspot-ratelimit-interval-milliseconds", "10000".into());
    // HubSpot leaves the daily headers out on OAuth-authorized requests.
    if private_app {
        put("x-hubspot-ratelimit-daily", daily.to_string());
        put("x-hubspot-ratelimit-daily-remaining", daily_left.to_string());
    }
}

fn token(shared: &Shared, body: &Bytes) -> Response {
    let cfg = &shared.config;
    let now = shared.clock.now_ms();
    let form = form_pairs(&String::from_utf8_lossy(body));
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != cfg.hubspot_client_id || get("client_secret") != cfg.hubspot_client_secret {
        return json(
            400,
            &json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id",
                "correlationId": correlation_id(now), "error": "invalid_client", "error_description": "missing or unknown client id"}),
        );
    }
    if get("grant_type") != "refresh_token" || get("refresh_token") != cfg.hubspot_refresh_token {
        return json(
            400,
            &json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                "correlationId": correlation_id(now), "error": "invalid_grant", "error_description": "missing or unknown refresh token"}),
        );
    }
    let mut state = lock(&shared.hubspot);
    state.issued += 1;
    let access = format!(
        "sandbox-{}-{:016x}",
        state.issued,
        super::portal::mix(cfg.seed, 0xACC, state.issued)
    );
    let lifetime = cfg.hubspot_token_lifetime;
    state.tokens.insert(access.clone(), now + lifetime.as_millis() as i64);
    json(
        200,
        &json!({"token_type": "bearer", "access_token": access, "refresh_token": cfg.hubspot_refresh_token,
            "expires_in": lifetime.as_secs(), "hub_id": cfg.hubspot_portal_id}),
    )
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Value::String(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

fn normalize_type(t: &str) -> Option<&'static str> {
    Some(match t.to_lowercase().as_str() {
        "contact" | "contacts" | "0-1" => "contacts",
        "company" | "companies" | "0-2" => "companies",
        "call" | "calls" | "0-48" => "calls",
        "email" | "emails" | "0-49" => "emails",
        "meeting" | "meetings" | "meeting_event" | "0-47" => "meetings",
        "note" | "notes" | "0-46" => "notes",
        "task" | "tasks" | "0-27" => "tasks",
        _ => return None,
    })
}

fn route(
    s: &mut HubSpotState,
    method: &Method,
    segs: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
    now: i64,
) -> Response {
    match (method.as_str(), segs) {
        ("GET", ["crm", "v3", "objects", "contacts"]) => list_contacts(s, query, now),
        ("GET", ["crm", "v3", "objects", "contacts", id]) => {
            let props = strings(&Value::String(query.get("properties").cloned().unwrap_or_default()));
            match s.contact_index(id) {
                Some(i) => json(
                    200,
                    &s.object_json("contacts", u64::from(i) + CONTACT_ID_BASE, &s.contact_props(i), &props),
                ),
                None => error(404, "OBJECT_NOT_FOUND", "resource not found", now),
            }
        }
        ("PATCH", ["crm", "v3", "objects", "contacts", id]) => {
            let Some(i) = s.contact_index(id) else {
                return error(404, "OBJECT_NOT_FOUND", "resource not found", now);
            };
            let changes = changes(&body["properties"]);
            match s.update(i, &changes, now) {
                Ok(()) => {
                    let wanted: Vec<String> = changes.keys().cloned().collect();
                    json(
                        200,
                        &s.object_json("contacts", u64::from(i) + CONTACT_ID_BASE, &s.contact_props(i), &wanted),
                    )
                }
                Err((code, message)) => validation(&code, &message, changes.keys().next(), now),
            }
        }
        ("POST", ["crm", "v3", "objects", t, "batch", "read"]) => match normalize_type(t) {
            Some(ty) => batch_read(s, ty, body, now),
            None => error(
                400,
                "VALIDATION_ERROR",
                &format!("Unable to infer object type from: {t}"),
                now,
            ),
        },
        ("POST", ["crm", "v3", "objects", "contacts", "batch", "update"]) => batch_update(s, body, now),
        ("POST", ["crm", "v3", "objects", t, "search"]) => match normalize_type(t) {
            Some(ty) => search(s, ty, body, now),
            None => error(
                400,
                "VALIDATION_ERROR",
                &format!("Unable to infer object type from: {t}"),
                now,
            ),
        },
        ("POST", ["crm", "v4", "associations", from, to, "batch", "read"]) => {
            match (normalize_type(from), normalize_type(to)) {
                (Some(f), Some(t)) => associations(s, f, t, body, now),
                _ => error(400, "VALIDATION_ERROR", "Unknown object type", now),
            }
        }
        ("GET", ["crm", "v3", "owners", ..]) => {
            let results: Vec<Value> = if query.get("archived").map(String::as_str) == Some("true") {
                vec![]
            } else {
                s.portal
                    .owners
                    .iter()
                    .enumerate()
                    .map(|(i, (id, first, last, email))| {
                        json!({"id": id, "email": email, "firstName": first, "lastName": last,
                            "userId": 9_000_001 + i, "createdAt": iso(s.portal.now_ms - 400 * DAY_MS),
                            "updatedAt": iso(s.portal.now_ms - 400 * DAY_MS), "archived": false, "teams": []})
                    })
                    .collect()
            };
            json(200, &json!({"results": results}))
        }
        ("GET", ["crm", "v3", "properties", object, "groups"]) if *object == "contacts" => {
            json(200, &json!({"results": s.groups}))
        }
        ("POST", ["crm", "v3", "properties", object, "groups"]) if *object == "contacts" => {
            let name = body["name"].as_str().unwrap_or("");
            if name.is_empty() {
                return error(400, "VALIDATION_ERROR", "name is required", now);
            }
            if s.groups.iter().any(|g| g["name"] == name) {
                return error(
                    409,
                    "CONFLICT",
                    &format!("A property group named '{name}' already exists."),
                    now,
                );
            }
            let g =
                json!({"name": name, "label": body["label"], "displayOrder": body["displayOrder"], "archived": false});
            s.groups.push(g.clone());
            json(201, &g)
        }
        ("POST", ["crm", "v3", "properties", "contacts", "batch", "create"]) => {
            let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for p in inputs {
                let name = p["name"].as_str().unwrap_or("").to_string();
                if name.is_empty() || s.names.contains(&name) {
                    errors.push(json!({"status": "error", "category": "OBJECT_ALREADY_EXISTS",
                        "message": format!("Property named '{name}' already exists."), "context": {"name": [name]}}));
                    continue;
                }
                s.names.insert(name);
                s.properties.push(p.clone());
                results.push(p);
            }
            let status = if errors.is_empty() { 201 } else { 207 };
            json(
                status,
                &json!({"status": "COMPLETE", "results": results, "errors": errors}),
            )
        }
        ("GET", ["crm", "v3", "properties", object]) => match *object {
            "contacts" => json(200, &json!({"results": s.properties})),
            _ => json(200, &json!({"results": []})),
        },
        ("GET", ["marketing", "v3", "forms"]) => {
            let results: Vec<Value> = s
                .portal
                .forms
                .iter()
                .map(|f| {
                    json!({"id": f.guid, "name": f.name, "formType": "hubspot", "archived": false,
                        "createdAt": iso(s.portal.now_ms - s.portal.history_ms), "updatedAt": iso(s.portal.now_ms - s.portal.history_ms)})
                })
                .collect();
            json(200, &json!({"results": results}))
        }
        ("GET", ["form-integrations", "v1", "submissions", "forms", guid]) => submissions(s, guid, query, now),
        _ => error(
            404,
            "OBJECT_NOT_FOUND",
            "The requested resource was not found in the sandbox",
            now,
        ),
    }
}

fn changes(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn validation(code: &str, message: &str, property: Option<&String>, now: i64) -> Response {
    let detail = json!([{"isValid": false, "message": message, "error": code, "name": property}]);
    json(
        400,
        &json!({"status": "error", "message": format!("Property values were not valid: {detail}"),
            "correlationId": correlation_id(now), "category": "VALIDATION_ERROR",
            "errors": [{"message": message, "code": code, "context": {"propertyName": [property]}}]}),
    )
}

fn too_many(what: &str, max: usize, got: usize, now: i64) -> Response {
    error(
        400,
        "VALIDATION_ERROR",
        &format!("{what} must contain at most {max} inputs, but {got} were given"),
        now,
    )
}

fn list_contacts(s: &HubSpotState, query: &BTreeMap<String, String>, now: i64) -> Response {
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    if limit > 100 {
        return error(400, "VALIDATION_ERROR", "limit must be less than or equal to 100", now);
    }
    let props = strings(&Value::String(query.get("properties").cloned().unwrap_or_default()));
    let start = query
        .get("after")
        .and_then(|a| a.parse::<u64>().ok())
        .map_or(0, |a| a.saturating_sub(CONTACT_ID_BASE) as u32);
    let end = (start as usize + limit).min(s.count() as usize) as u32;
    let results: Vec<Value> = (start..end)
        .map(|i| s.object_json("contacts", u64::from(i) + CONTACT_ID_BASE, &s.contact_props(i), &props))
        .collect();
    let mut out = json!({"results": results});
    if end < s.count() {
        out["paging"] = json!({"next": {"after": (u64::from(end) + CONTACT_ID_BASE).to_string()}});
    }
    json(200, &out)
}

fn batch_read(s: &HubSpotState, ty: &str, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return too_many("Batch read", 100, inputs.len(), now);
    }
    let props = strings(&body["properties"]);
    let by_email = body["idProperty"].as_str() == Some("email");
    if body["idProperty"]
        .as_str()
        .is_some_and(|p| p != "email" && p != "hs_object_id")
    {
        return error(400, "VALIDATION_ERROR", "idProperty must be a unique property", now);
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let key = match &input["id"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let id = if by_email && ty == "contacts" {
            s.index_by_email(&key).map(|i| u64::from(i) + CONTACT_ID_BASE)
        } else {
            key.parse::<u64>().ok()
        };
        match id.and_then(|id| s.props(ty, id).map(|p| (id, p))) {
            Some((id, p)) => results.push(s.object_json(ty, id, &p, &props)),
            None => missing.push(key),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if missing.is_empty() {
        return json(200, &out);
    }
    out["numErrors"] = json!(1);
    out["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
        "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", ty.trim_end_matches('s').to_uppercase()),
        "context": {"ids": missing}}]);
    json(207, &out)
}

fn batch_update(s: &mut HubSpotState, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return too_many("Batch update", 100, inputs.len(), now);
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let id = match &input["id"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let context = match input["objectWriteTraceId"].as_str() {
            Some(t) => json!({"objectWriteTraceId": [t]}),
            None => json!({"ids": [id]}),
        };
        let Some(index) = s.contact_index(&id) else {
            errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": format!("Object {id} not found"), "context": context}));
            continue;
        };
        let changes = changes(&input["properties"]);
        match s.update(index, &changes, now) {
            Ok(()) => {
                let wanted: Vec<String> = changes.keys().cloned().collect();
                let props = s.contact_props(index);
                results.push(s.object_json("contacts", u64::from(index) + CONTACT_ID_BASE, &props, &wanted));
            }
            Err((code, message)) => errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                "subCategory": code, "message": format!("Property values were not valid: {message}"),
                "context": context})),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if errors.is_empty() {
        return json(200, &out);
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    json(207, &out)
}

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

fn search(s: &HubSpotState, ty: &str, body: &Value, now: i64) -> Response {
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

fn associations(s: &HubSpotState, from: &str, to: &str, body: &Value, now: i64) -> Response {
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 1000 {
        return too_many("Associations batch read", 1000, inputs.len(), now);
    }
    let type_id = |t: &str| ENGAGEMENT_OBJECTS.iter().find(|(o, _)| *o == t).map(|(_, id)| *id);
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let key = input["id"]
            .as_str()
            .map_or_else(|| input["id"].to_string(), str::to_string);
        let Some(id) = key.parse::<u64>().ok().filter(|id| s.props(from, *id).is_some()) else {
            missing.push(key);
            continue;
        };
        let linked: Vec<(u64, u32)> = match (from, to) {
            ("contacts", "companies") => {
                let index = (id - CONTACT_ID_BASE) as u32;
                let company = (index < s.portal.contacts)
                    .then(|| s.portal.contact_company(index))
                    .flatten();
                company
                    .map(|c| (u64::from(c) + COMPANY_ID_BASE, 279))
                    .into_iter()
                    .collect()
            }
            ("companies", "contacts") => {
                let c = (id - COMPANY_ID_BASE) as u32;
                (0..s.portal.contacts)
                    .filter(|&i| s.portal.contact_company(i) == Some(c))
                    .map(|i| (u64::from(i) + CONTACT_ID_BASE, 280))
                    .collect()
            }
            ("contacts", t) if type_id(t).is_some() => {
                let index = (id - CONTACT_ID_BASE) as u32;
                let ti = ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == t).unwrap_or(0);
                let n = if index < s.portal.contacts {
                    s.portal.engagement_count(index, ti)
                } else {
                    0
                };
                (0..n)
                    .map(|j| (Portal::engagement_id(index, j), type_id(t).unwrap_or(0)))
                    .collect()
            }
            (f, "contacts") if type_id(f).is_some() => Portal::engagement_owner(id)
                .map(|(i, _)| (u64::from(i) + CONTACT_ID_BASE, type_id(f).unwrap_or(0) + 1))
                .into_iter()
                .collect(),
            _ => vec![],
        };
        if linked.is_empty() {
            missing.push(key);
            continue;
        }
        let to_json: Vec<Value> = linked
            .iter()
            .map(|(tid, type_id)| {
                json!({"toObjectId": tid, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
            })
            .collect();
        results.push(json!({"from": {"id": id.to_string()}, "to": to_json}));
    }
    let mut out = json!({"status": "COMPLETE", "results": results, "startedAt": iso(now), "completedAt": iso(now)});
    if missing.is_empty() {
        return json(200, &out);
    }
    let errors: Vec<Value> = missing
        .iter()
        .map(|k| json!({"status": "error", "category": "OBJECT_NOT_FOUND", "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": format!("No {to} is associated with {from} {k}."), "context": {"fromObjectId": [k]}}))
        .collect();
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    json(207, &out)
}

fn submissions(s: &HubSpotState, guid: &str, query: &BTreeMap<String, String>, now: i64) -> Response {
    let Some(f) = s.portal.forms.iter().position(|f| f.guid == *guid) else {
        return error(404, "OBJECT_NOT_FOUND", &format!("Form {guid} not found"), now);
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 50);
    let list = &s.submissions[f];
    // Newest first; the cursor is a position in the oldest-first list, stable as new ones arrive.
    let end = query
        .get("after")
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(list.len())
        .min(list.len());
    let start = end.saturating_sub(limit);
    let page = s.portal.forms[f].page.to_lowercase();
    let results: Vec<Value> = list[start..end]
        .iter()
        .rev()
        .map(|(at, index)| {
            let p = s.contact_props(*index);
            let mut values = vec![json!({"name": "email", "value": p.get("email").cloned().unwrap_or_default()})];
            for k in ["firstname", "lastname", "company"] {
                if let Some(v) = p.get(k) {
                    values.push(json!({"name": k, "value": v}));
                }
            }
            json!({"submittedAt": at, "values": values, "pageUrl": format!("https://www.example.com/{page}")})
        })
        .collect();
    let mut out = json!({"results": results});
    if start > 0 {
        out["paging"] = json!({"next": {"after": start.to_string()}});
    }
    json(200, &out)
}
