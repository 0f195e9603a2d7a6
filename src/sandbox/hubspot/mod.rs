//! The fake HubSpot: the CRM v3 objects (list, read, update; engagements and tasks created),
//! search, batch and associations v4 APIs, owners, properties, forms, event analytics and email
//! events (Enterprise tier), and OAuth, over the seeded portal, with HubSpot's budgets and
//! refusals.
//!
//! Records nobody wrote are generated on demand from the portal; a write copies the contact into
//! an overlay first. `lastmodifieddate` is kept for every contact in one vector (the search
//! index), and bumped on every write, as HubSpot does (our own write-backs move the cursor too).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use serde_json::{Value, json};

use super::portal::{BehaviourEvent, COMPANY_ID_BASE, CONTACT_ID_BASE, ENGAGEMENT_OBJECTS, PAGES, Portal, iso};
use super::webhooks::Event;
use super::{HubSpotTier, SandboxConfig};

/// Forms, page views (event analytics) and email events, per tier.
mod behaviour;
/// List, batch read and update, associations v4, form submissions.
mod endpoints;
/// Engagements made through the API (tasks for reps) or logged by the activity hook.
mod engagements;
/// CRM search with its page size and 10,000-result cap.
mod search;
/// Authentication, budgets, the token endpoint, routing.
mod serve;

use super::{correlation_id, json};
pub(crate) use serve::serve;

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
const CONTACT_PROPERTIES: [(&str, &str, bool); 35] = [
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
    ("hs_merged_object_ids", "enumeration", true),
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
    portal_id: u64,
    /// Properties whose changes are delivered as webhooks (form submissions always are).
    subscribed: HashSet<String>,
    /// Webhook events not yet handed to delivery.
    pending: Vec<Event>,
    /// Accepted writes per contact index (tests assert nothing is written twice).
    writes: HashMap<u32, u32>,
    /// Accepted writes that changed no value (a resend of what HubSpot already held).
    repeated_writes: HashMap<u32, u32>,
    /// Simulated behaviour since start, per contact index: (epoch ms, page views).
    touches: HashMap<u32, Vec<(i64, u32)>>,
    /// Page views of a named page (`visit`): (at, index in `PAGES`).
    visits: HashMap<u32, Vec<(i64, usize)>>,
    /// Archived (deleted or merged away) contacts: index → `archivedAt` (epoch ms). Search,
    /// reads and the plain listing leave them out; `?archived=true` lists only them.
    archived: BTreeMap<u32, i64>,
    /// Engagements made since start (API creates, logged activity), by id.
    made: BTreeMap<u64, engagements::Made>,
    /// The portal's tier (which APIs it serves); settable while running.
    pub(crate) tier: HubSpotTier,
    /// Requests allowed per burst window; settable while running.
    pub(crate) burst_max: u32,
    /// The burst window (HubSpot: 10 s); settable while running.
    pub(crate) burst_window: std::time::Duration,
}

impl HubSpotState {
    pub(crate) fn new(portal: Arc<Portal>, config: &SandboxConfig) -> Self {
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
            portal_id: config.hubspot_portal_id,
            subscribed: config.webhook_properties.iter().cloned().collect(),
            pending: Vec::new(),
            writes: HashMap::new(),
            repeated_writes: HashMap::new(),
            touches: HashMap::new(),
            visits: HashMap::new(),
            archived: BTreeMap::new(),
            made: BTreeMap::new(),
            tier: config.hubspot_tier,
            burst_max: config.hubspot_burst_per_10s,
            burst_window: config.hubspot_burst_window,
        }
    }

    /// Contact `index`'s page views: the portal's history, then the simulated ones, oldest first.
    fn page_views(&self, index: u32) -> Vec<BehaviourEvent> {
        let mut out = if index < self.portal.contacts {
            self.portal.page_views(index)
        } else {
            Vec::new()
        };
        out.extend(self.touched(index, |n| n));
        // Pages a test visited by name, numbered after the touches' (ids never collide).
        for (k, (at, page)) in self.visits.get(&index).into_iter().flatten().enumerate() {
            out.push(BehaviourEvent {
                at: *at,
                n: 2_000_000 + k as u64,
                what: *page,
            });
        }
        out.sort_by_key(|e| e.at);
        out
    }

    /// Contact `index`'s email opens and clicks: history, then simulated ones, oldest first.
    fn email_events(&self, index: u32) -> (Vec<BehaviourEvent>, Vec<BehaviourEvent>) {
        let (mut opens, mut clicks) = if index < self.portal.contacts {
            self.portal.email_events(index)
        } else {
            (Vec::new(), Vec::new())
        };
        opens.extend(self.touched(index, |n| n.div_ceil(2)));
        clicks.extend(self.touched(index, |n| n.div_ceil(3)));
        (opens, clicks)
    }

    /// Events of the simulated touches, `per(n)` of them for a touch of `n`, numbered after
    /// the history's (so their ids never collide with it).
    fn touched(&self, index: u32, per: impl Fn(u32) -> u32) -> Vec<BehaviourEvent> {
        let mut k = 1_000_000u64;
        let mut out = Vec::new();
        for (at, n) in self.touches.get(&index).into_iter().flatten() {
            for _ in 0..per(*n) {
                out.push(BehaviourEvent {
                    at: *at,
                    n: k,
                    what: (k % 8) as usize,
                });
                k += 1;
            }
        }
        out
    }

    fn count(&self) -> u32 {
        self.modified.len() as u32
    }

    fn contact_index(&self, id: &str) -> Option<u32> {
        let index = u32::try_from(id.trim().parse::<u64>().ok()?.checked_sub(CONTACT_ID_BASE)?).ok()?;
        (index < self.count() && !self.archived.contains_key(&index)).then_some(index)
    }

    /// Archived contacts from id `first` on, in id order: (id, `archivedAt` ms).
    fn archived_from(&self, first: u64) -> impl Iterator<Item = (u64, i64)> + '_ {
        let start = u32::try_from(first.saturating_sub(CONTACT_ID_BASE)).unwrap_or(u32::MAX);
        self.archived
            .range(start..)
            .map(|(i, at)| (u64::from(*i) + CONTACT_ID_BASE, *at))
    }

    /// Deletes (archives) a contact, as a person in HubSpot would. False when it is unknown.
    pub(crate) fn archive(&mut self, contact: &str, now: i64) -> bool {
        let Some(index) = self.resolve(contact) else {
            return false;
        };
        self.archived.insert(index, now);
        true
    }

    /// Merges `merged` into `primary`: the merged contact is archived, and the primary lists it
    /// in `hs_merged_object_ids` (with `lastmodifieddate` moved), as HubSpot does.
    pub(crate) fn merge(&mut self, primary: &str, merged: &str, now: i64) -> bool {
        let (Some(p), Some(m)) = (self.resolve(primary), self.resolve(merged)) else {
            return false;
        };
        if p == m {
            return false;
        }
        self.archived.insert(m, now);
        let loser = (u64::from(m) + CONTACT_ID_BASE).to_string();
        let props = self.materialize(p);
        let ids = match props.get("hs_merged_object_ids").filter(|v| !v.is_empty()) {
            Some(v) => format!("{v};{loser}"),
            None => loser,
        };
        props.insert("hs_merged_object_ids".into(), ids);
        self.set_modified(p, now);
        true
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
                (index < self.count() && !self.archived.contains_key(&index)).then(|| self.contact_props(index))
            }
            "companies" => {
                let index = u32::try_from(id.checked_sub(COMPANY_ID_BASE)?).ok()?;
                (index < self.portal.companies).then(|| self.portal.company_properties(index))
            }
            _ if id >= engagements::MADE_ID_BASE => self.made(ty, id).map(|m| m.properties.clone()),
            _ => {
                let t = ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == ty)?;
                self.portal.engagement(t, id).map(|e| e.properties)
            }
        }
    }

    fn ids(&self, ty: &str) -> Box<dyn Iterator<Item = u64> + '_> {
        match ty {
            "contacts" => Box::new(
                (0..self.count())
                    .filter(|i| !self.archived.contains_key(i))
                    .map(|i| u64::from(i) + CONTACT_ID_BASE),
            ),
            "companies" => Box::new((0..self.portal.companies).map(|i| u64::from(i) + COMPANY_ID_BASE)),
            _ => match ENGAGEMENT_OBJECTS.iter().position(|(o, _)| *o == ty) {
                Some(t) => Box::new(
                    (0..self.portal.contacts)
                        .flat_map(move |i| {
                            (0..self.portal.engagement_count(i, t)).map(move |j| Portal::engagement_id(i, j))
                        })
                        .chain(self.made_ids(ENGAGEMENT_OBJECTS[t].0)),
                ),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    /// Ids of `ty` from `first` on, in order; contacts and companies without a scan.
    fn ids_from(&self, ty: &str, first: u64) -> Box<dyn Iterator<Item = u64> + '_> {
        let skip = |base: u64, count: u32| {
            let start = first.saturating_sub(base).min(u64::from(count));
            (start..u64::from(count)).map(move |i| i + base)
        };
        match ty {
            "contacts" => Box::new(
                skip(CONTACT_ID_BASE, self.count())
                    .filter(|id| !self.archived.contains_key(&((id - CONTACT_ID_BASE) as u32))),
            ),
            "companies" => Box::new(skip(COMPANY_ID_BASE, self.portal.companies)),
            _ => Box::new(self.ids(ty).filter(move |id| *id >= first)),
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
    /// Refusals carry HubSpot's code, its message and the property refused.
    fn update(
        &mut self,
        index: u32,
        changes: &BTreeMap<String, String>,
        now: i64,
    ) -> Result<(), (String, String, String)> {
        let current = self.contact_props(index);
        for (name, value) in changes {
            if !self.names.contains(name) {
                return Err((
                    "PROPERTY_DOESNT_EXIST".into(),
                    format!("Property \"{name}\" does not exist"),
                    name.clone(),
                ));
            }
            if self.read_only.contains(name) {
                return Err((
                    "READ_ONLY_VALUE".into(),
                    format!("\"{name}\" is a read only property; its value cannot be set."),
                    name.clone(),
                ));
            }
            if name == "lifecyclestage" && !value.is_empty() {
                let Some(to) = STAGES.iter().position(|s| s == value) else {
                    return Err((
                        "INVALID_OPTION".into(),
                        format!("{value} was not one of the allowed options: {}", STAGES.join(", ")),
                        name.clone(),
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
                        name.clone(),
                    ));
                }
            }
            if name == "hs_lead_status" && !value.is_empty() && !LEAD_STATUSES.contains(&value.as_str()) {
                return Err((
                    "INVALID_OPTION".into(),
                    format!("{value} was not one of the allowed options"),
                    name.clone(),
                ));
            }
        }
        let old_email = current.get("email").map(|e| e.to_lowercase());
        if changes
            .iter()
            .all(|(name, value)| current.get(name).map_or("", String::as_str) == value)
        {
            *self.repeated_writes.entry(index).or_default() += 1;
        }
        for (name, value) in changes {
            if self.subscribed.contains(name) && current.get(name).map_or("", String::as_str) != value {
                self.event(now, "contact.propertyChange", index, Some((name, value)), "INTEGRATION");
            }
        }
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
        *self.writes.entry(index).or_default() += 1;
        Ok(())
    }

    /// Accepted writes per contact id.
    pub fn writes(&self) -> BTreeMap<String, u32> {
        self.writes
            .iter()
            .map(|(i, n)| ((u64::from(*i) + CONTACT_ID_BASE).to_string(), *n))
            .collect()
    }

    /// Accepted writes that changed no value, per contact id: what a write sent twice leaves.
    pub fn repeated_writes(&self) -> BTreeMap<String, u32> {
        self.repeated_writes
            .iter()
            .map(|(i, n)| ((u64::from(*i) + CONTACT_ID_BASE).to_string(), *n))
            .collect()
    }

    /// Queues a webhook event.
    fn event(&mut self, now: i64, kind: &str, index: u32, prop: Option<(&str, &str)>, source: &str) {
        self.events += 1;
        self.pending.push(Event {
            event_id: 1_000_000 + self.events,
            subscription_id: 4_242,
            portal_id: self.portal_id,
            app_id: 1_234,
            occurred_at: now,
            subscription_type: kind.into(),
            attempt_number: 0,
            object_id: u64::from(index) + CONTACT_ID_BASE,
            property_name: prop.map(|p| p.0.to_string()),
            property_value: prop.map(|p| p.1.to_string()),
            change_source: source.into(),
        });
    }

    /// The webhook events queued since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }

    /// Records a form submission and queues its webhook events; returns the contact id.
    pub(crate) fn submit_form(&mut self, contact: &str, form: &str, now: i64) -> Option<String> {
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
                self.event(now, "contact.creation", index, None, "FORM");
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
        let change = "contact.propertyChange";
        self.event(
            now,
            change,
            index,
            Some(("recent_conversion_event_name", &name)),
            "FORM",
        );
        self.event(now, change, index, Some(("num_conversion_events", &n)), "FORM");
        Some((u64::from(index) + CONTACT_ID_BASE).to_string())
    }

    /// One page view of `page` (a path of `PAGES`) in one visit: the counters and the last visit's
    /// time move, with `lastmodifieddate`; the event analytics API lists it with its URL.
    pub(crate) fn visit(&mut self, contact: &str, page: &str, now: i64) -> bool {
        let Some(what) = PAGES.iter().position(|p| *p == page) else {
            return false;
        };
        let Some(index) = self.resolve(contact) else {
            return false;
        };
        self.visits.entry(index).or_default().push((now, what));
        let props = self.materialize(index);
        for k in ["hs_analytics_num_page_views", "hs_analytics_num_visits"] {
            let v = props.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            props.insert(k.to_string(), v.to_string());
        }
        props.insert("hs_analytics_last_visit_timestamp".to_string(), iso(now));
        self.set_modified(index, now);
        true
    }

    /// A person edits a contact in HubSpot's UI (a rep's decision, a deal size): the values are
    /// set and `lastmodifieddate` moves; no webhook (no subscription on these properties).
    pub(crate) fn set_by_person(&mut self, contact: &str, values: &[(&str, String)], now: i64) -> bool {
        let Some(index) = self.resolve(contact) else {
            return false;
        };
        let props = self.materialize(index);
        for (k, v) in values {
            props.insert((*k).to_string(), v.clone());
        }
        self.set_modified(index, now);
        true
    }

    /// The contacts someone (leadsync) has written `property` on, with its value, in id order.
    pub(crate) fn written(&self, property: &str) -> Vec<(String, String)> {
        let mut out: Vec<(u32, String)> = self
            .overlay
            .iter()
            .filter(|(i, _)| !self.archived.contains_key(i))
            .filter_map(|(i, p)| Some((*i, p.get(property)?.clone())))
            .collect();
        out.sort();
        out.into_iter()
            .map(|(i, v)| ((u64::from(i) + CONTACT_ID_BASE).to_string(), v))
            .collect()
    }

    /// Simulated behaviour: `n` page views, a visit, opens and clicks.
    pub(crate) fn touch(&mut self, contact: &str, n: u32, now: i64) -> bool {
        let Some(index) = self.resolve(contact) else {
            return false;
        };
        self.touches.entry(index).or_default().push((now, n));
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
        let props = &self.overlay[&index];
        let subscribed: Vec<(String, String)> = props
            .iter()
            .filter(|(k, _)| k.starts_with("hs_analytics_num") || k.starts_with("hs_email_"))
            .filter(|(k, _)| self.subscribed.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in subscribed {
            self.event(now, "contact.propertyChange", index, Some((&k, &v)), "ANALYTICS");
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
