//! `mappings/salesforce.toml`: which HubSpot properties become which Salesforce fields, the
//! external ids, the opportunity's defaults, the free-mail domains and the owner routing.
//!
//! Two phases, as for the rules file: `mapping_file.rs` mirrors the file and compiles it; a
//! [`SalesforceMapping`] is compiled once, every problem reported with its line, column and field, all at once.
//! Applying a mapping to one lead is pure ([`SalesforceMapping::record`]).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::mapping_file::{RawMapping, compile};
use super::routing::Territory;
use crate::diagnostics::{Diagnostics, SourceText};

/// Where a value comes from: a contact or a company property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesforceSource {
    /// `contact.<property>`.
    Contact(String),
    /// `company.<property>`.
    Company(String),
}

impl SalesforceSource {
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s.trim().split_once('.') {
            Some(("contact", p)) if !p.is_empty() => Some(Self::Contact(p.to_string())),
            Some(("company", p)) if !p.is_empty() => Some(Self::Company(p.to_string())),
            _ => None,
        }
    }

    /// The value for one lead (empty values read as absent).
    pub fn get<'a>(&self, lead: &LeadProperties<'a>) -> Option<&'a str> {
        let (props, name) = match self {
            Self::Contact(p) => (lead.contact, p),
            Self::Company(p) => (lead.company, p),
        };
        props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// The HubSpot properties of one lead and its company.
#[derive(Debug, Clone, Copy)]
pub struct LeadProperties<'a> {
    /// Contact properties.
    pub contact: &'a BTreeMap<String, String>,
    /// Company properties (empty when the contact has none).
    pub company: &'a BTreeMap<String, String>,
}

/// One piece of a template: text, or a property (`{contact.firstname}`, `{company.name}`, or
/// `{firstname}`: the contact's property, else the company's).
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Prop(Option<SalesforceSource>, String),
}

/// A compiled `"{company} – {firstname} {lastname}"`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SalesforceTemplate(Vec<Piece>);

impl SalesforceTemplate {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{{` at byte {open} is never closed"))?;
            let name = rest[open + 1..open + close].trim();
            if name.is_empty() {
                return Err("empty `{}`".into());
            }
            let source = if name.contains('.') {
                Some(
                    SalesforceSource::parse(name)
                        .ok_or_else(|| format!("`{{{name}}}`: write `contact.<property>` or `company.<property>`"))?,
                )
            } else {
                None
            };
            pieces.push(Piece::Prop(source, name.to_string()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self(pieces))
    }

    /// The properties the template reads (a bare `{name}` may be the contact's or the company's).
    pub fn sources(&self) -> Vec<SalesforceSource> {
        self.0
            .iter()
            .flat_map(|p| match p {
                Piece::Text(_) => vec![],
                Piece::Prop(Some(src), _) => vec![src.clone()],
                Piece::Prop(None, name) => vec![
                    SalesforceSource::Contact(name.clone()),
                    SalesforceSource::Company(name.clone()),
                ],
            })
            .collect()
    }

    /// The text for one lead; missing properties read as empty and spaces are collapsed.
    pub fn render(&self, lead: &LeadProperties<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Prop(Some(src), _) => out.push_str(src.get(lead).unwrap_or("")),
                Piece::Prop(None, name) => out.push_str(
                    SalesforceSource::Contact(name.clone())
                        .get(lead)
                        .or_else(|| SalesforceSource::Company(name.clone()).get(lead))
                        .unwrap_or(""),
                ),
            }
        }
        let collapsed: Vec<&str> = out.split_whitespace().collect();
        let text = collapsed.join(" ");
        // "Acme – " when the name is unknown: drop dangling separators.
        text.trim_matches(|c: char| c.is_whitespace() || matches!(c, '–' | '-' | ',' | '|'))
            .to_string()
    }
}

/// A field's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceFieldType {
    /// A string (text, picklist, email, phone, URL, reference).
    Text,
    /// A number (double, currency, percent, int).
    Number,
    /// A boolean.
    Boolean,
    /// A date `YYYY-MM-DD`, from HubSpot milliseconds or an ISO date.
    Date,
}

/// A text transform, applied in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesforceTransform {
    /// Strip surrounding whitespace.
    Trim,
    /// Lower-case.
    Lowercase,
    /// Upper-case.
    Uppercase,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SalesforceValue {
    /// A property.
    From(SalesforceSource),
    /// A template.
    Template(SalesforceTemplate),
    /// A constant.
    Constant(String),
}

/// A value leadsync keeps current on a promoted lead's Salesforce record (`keep = "..."` in a
/// `[[contact.context]]` or `[[opportunity.context]]` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SalesforceContextValue {
    /// The fit score (a number).
    FitScore,
    /// The engagement score, in whole points (a number; decay alone never sends it).
    EngagementScore,
    /// The grade (`A1` … `C3`).
    Grade,
    /// The lifecycle stage (`mql`, `sql`, …).
    Stage,
    /// The status (`active`, `lost`, …).
    Status,
    /// When the last scored activity happened (a datetime).
    LastActivity,
    /// The recent meaningful events, newest first, in the rules' own names
    /// (`2026-11-24 whitepaper_download; 2026-11-20 webinar`).
    RecentActivity,
}

impl SalesforceContextValue {
    /// Every value, with its name in the file.
    pub const ALL: [(&'static str, SalesforceContextValue); 7] = [
        ("fit_score", Self::FitScore),
        ("engagement_score", Self::EngagementScore),
        ("grade", Self::Grade),
        ("stage", Self::Stage),
        ("status", Self::Status),
        ("last_activity", Self::LastActivity),
        ("recent_activity", Self::RecentActivity),
    ];

    /// The JSON type it is sent as (what `check --online` compares with the field's type).
    pub fn kind(self) -> SalesforceFieldType {
        match self {
            Self::FitScore | Self::EngagementScore => SalesforceFieldType::Number,
            Self::LastActivity => SalesforceFieldType::Date,
            _ => SalesforceFieldType::Text,
        }
    }
}

/// One Salesforce field leadsync owns and keeps current after promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceContextField {
    /// Salesforce API field name.
    pub field: String,
    /// What it holds.
    pub value: SalesforceContextValue,
    /// Longest text kept, in characters.
    pub truncate: Option<usize>,
    /// Position in the file.
    pub line: usize,
}

impl SalesforceContextField {
    /// As a field map, for `check --online`'s comparison with the org's describe.
    pub fn as_field_map(&self) -> SalesforceFieldMap {
        SalesforceFieldMap {
            field: self.field.clone(),
            value: SalesforceValue::Constant(String::new()),
            transforms: vec![],
            map: BTreeMap::new(),
            map_other: None,
            default: None,
            truncate: self.truncate,
            kind: self.value.kind(),
            line: self.line,
        }
    }
}

/// One Salesforce field and how to fill it.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceFieldMap {
    /// Salesforce API field name.
    pub field: String,
    /// Source.
    pub value: SalesforceValue,
    /// Transforms.
    pub transforms: Vec<SalesforceTransform>,
    /// Picklist value map (keys compared case-insensitively).
    pub map: BTreeMap<String, String>,
    /// Value for anything the map does not name; `None` passes it through.
    pub map_other: Option<String>,
    /// Value when the source is empty.
    pub default: Option<String>,
    /// Longest text kept, in characters.
    pub truncate: Option<usize>,
    /// JSON type sent.
    pub kind: SalesforceFieldType,
    /// Position in the file, for `check --online` messages.
    pub line: usize,
}

impl SalesforceFieldMap {
    /// The HubSpot properties this field reads.
    pub fn sources(&self) -> Vec<SalesforceSource> {
        match &self.value {
            SalesforceValue::From(src) => vec![src.clone()],
            SalesforceValue::Template(t) => t.sources(),
            SalesforceValue::Constant(_) => vec![],
        }
    }

    /// The JSON value for one lead; `Ok(None)` leaves the field out (never sends null, which
    /// would erase what sales typed). `Err` says why the value cannot be sent.
    pub fn apply(&self, lead: &LeadProperties<'_>) -> Result<Option<Value>, String> {
        let mut text = match &self.value {
            SalesforceValue::From(src) => src.get(lead).unwrap_or("").to_string(),
            SalesforceValue::Template(t) => t.render(lead),
            SalesforceValue::Constant(c) => c.clone(),
        };
        for t in &self.transforms {
            text = match t {
                SalesforceTransform::Trim => text.trim().to_string(),
                SalesforceTransform::Lowercase => text.to_lowercase(),
                SalesforceTransform::Uppercase => text.to_uppercase(),
            };
        }
        if !text.is_empty() && (!self.map.is_empty() || self.map_other.is_some()) {
            let key = text.to_lowercase();
            text = match self.map.iter().find(|(k, _)| k.to_lowercase() == key) {
                Some((_, v)) => v.clone(),
                None => self.map_other.clone().unwrap_or(text),
            };
        }
        if text.trim().is_empty() {
            match &self.default {
                Some(d) => text = d.clone(),
                None => return Ok(None),
            }
        }
        if let Some(n) = self.truncate {
            if text.chars().count() > n {
                text = text.chars().take(n).collect();
            }
        }
        let value = match self.kind {
            SalesforceFieldType::Text => Value::String(text),
            SalesforceFieldType::Number => {
                let n: f64 = text
                    .replace(',', "")
                    .parse()
                    .map_err(|_| format!("{}: `{text}` is not a number", self.field))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{}: `{text}` is not a finite number", self.field))?
            }
            SalesforceFieldType::Boolean => match text.to_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Value::Bool(true),
                "false" | "no" | "0" | "off" => Value::Bool(false),
                _ => return Err(format!("{}: `{text}` is not a yes/no value", self.field)),
            },
            SalesforceFieldType::Date => Value::String(
                hubspot_date(&text)
                    .ok_or_else(|| format!("{}: `{text}` is not a date", self.field))?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
        };
        Ok(Some(value))
    }
}

/// A HubSpot date: milliseconds since the epoch (date properties are midnight UTC), or ISO.
pub fn hubspot_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = t.parse().ok()?;
        return chrono::DateTime::from_timestamp_millis(ms).map(|d| d.date_naive());
    }
    NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok()
}

/// Attributes the owner routing reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceRoutingSources {
    /// Country.
    pub country: SalesforceSource,
    /// Employee count.
    pub employees: SalesforceSource,
    /// Industry.
    pub industry: SalesforceSource,
    /// The contact's HubSpot owner id (`contact.hubspot_owner_id`); `None` when
    /// `routing.hubspot_owner = false`.
    pub hubspot_owner: Option<SalesforceSource>,
    /// A contact promoted before keeps its owner when it qualifies again after a recycle
    /// (route once); `routing.keep_owner = false` routes it afresh, like a new lead.
    pub keep_owner: bool,
}

impl SalesforceRoutingSources {
    /// What territories look at for one lead: country, size, industry (owners left to the caller).
    pub fn lead<'a>(&self, lead: &LeadProperties<'a>) -> super::routing::Lead<'a> {
        super::routing::Lead {
            country: self.country.get(lead),
            employees: self.employees.get(lead).and_then(|e| e.replace(',', "").parse().ok()),
            industry: self.industry.get(lead),
            ..super::routing::Lead::default()
        }
    }
}

/// The compiled mapping file.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceMapping {
    /// Account external-id field (`HubSpot_Company_Id__c`).
    pub account_external_id: String,
    /// Contact external-id field (`HubSpot_Contact_Id__c`).
    pub contact_external_id: String,
    /// Opportunity external-id field (`LeadSync_Key__c`).
    pub opportunity_external_id: String,
    /// The lead's email.
    pub contact_email: SalesforceSource,
    /// The company's domain (falls back to the email's domain).
    pub company_domain: SalesforceSource,
    /// Account field holding the website or domain, matched by domain.
    pub account_domain_field: String,
    /// Domains that never identify a company.
    pub freemail: HashSet<String>,
    /// Account fields.
    pub account: Vec<SalesforceFieldMap>,
    /// Contact fields.
    pub contact: Vec<SalesforceFieldMap>,
    /// Opportunity fields beyond name, stage and close date.
    pub opportunity: Vec<SalesforceFieldMap>,
    /// Contact fields leadsync keeps current after promotion (`[[contact.context]]`): leadsync's.
    /// Every other field is written once at creation, then sales'.
    pub contact_context: Vec<SalesforceContextField>,
    /// Opportunity fields leadsync keeps current (`[[opportunity.context]]`).
    pub opportunity_context: Vec<SalesforceContextField>,
    /// Opportunity name.
    pub opportunity_name: SalesforceTemplate,
    /// Opportunity stage at promotion.
    pub stage: String,
    /// Close date = promotion day + this.
    pub close_in_days: u32,
    /// Role of the primary contact on the opportunity.
    pub contact_role: String,
    /// Routing attributes.
    pub routing: SalesforceRoutingSources,
    /// Territory rules, first match wins.
    pub territories: Vec<Territory>,
    /// Round-robin users and weights.
    pub round_robin: Vec<(String, u32)>,
}

impl SalesforceMapping {
    /// Reads and compiles the mapping file; every problem at once, with line and column.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        Self::from_source(&SourceText::read(path)?)
    }

    /// Compiles a mapping held in memory.
    pub fn from_source(src: &SourceText) -> Result<Self, Diagnostics> {
        let raw: RawMapping = src.parse_toml()?;
        compile(src, raw)
    }

    /// A lead's record for `object`'s mapped fields; the errors say which fields cannot be sent.
    pub fn record(fields: &[SalesforceFieldMap], lead: &LeadProperties<'_>) -> Result<Map<String, Value>, Vec<String>> {
        let mut out = Map::new();
        let mut errors = Vec::new();
        for f in fields {
            match f.apply(lead) {
                Ok(Some(v)) => {
                    out.insert(f.field.clone(), v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> SalesforceMapping {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/salesforce.toml");
        SalesforceMapping::load(&path).unwrap_or_else(|d| panic!("{d}"))
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_shipped_mapping_compiles() {
        let m = shipped();
        assert_eq!(
            (
                m.account_external_id.as_str(),
                m.contact_external_id.as_str(),
                m.opportunity_external_id.as_str()
            ),
            ("HubSpot_Company_Id__c", "HubSpot_Contact_Id__c", "LeadSync_Key__c")
        );
        assert!(m.freemail.contains("gmail.com"));
    }

    #[test]
    fn templates_render_and_drop_dangling_separators() {
        let t = SalesforceTemplate::parse("{company} – {firstname} {lastname}").unwrap();
        let contact = props(&[("firstname", " Ada "), ("lastname", "Lovelace"), ("company", "Acme")]);
        let empty = BTreeMap::new();
        let lead = LeadProperties {
            contact: &contact,
            company: &empty,
        };
        assert_eq!(t.render(&lead), "Acme – Ada Lovelace");
        let only = props(&[("company", "Acme")]);
        let lead = LeadProperties {
            contact: &only,
            company: &empty,
        };
        assert_eq!(t.render(&lead), "Acme");
        assert!(SalesforceTemplate::parse("{contact.x").is_err());
        assert!(SalesforceTemplate::parse("{deal.x}").is_err());
    }

    fn field(kind: SalesforceFieldType) -> SalesforceFieldMap {
        SalesforceFieldMap {
            field: "F".into(),
            value: SalesforceValue::From(SalesforceSource::Contact("p".into())),
            transforms: vec![SalesforceTransform::Trim],
            map: BTreeMap::new(),
            map_other: None,
            default: None,
            truncate: None,
            kind,
            line: 1,
        }
    }

    #[test]
    fn transforms() {
        let empty = BTreeMap::new();
        let run = |f: &SalesforceFieldMap, v: &str| {
            let c = props(&[("p", v)]);
            f.apply(&LeadProperties {
                contact: &c,
                company: &empty,
            })
        };
        let mut lower = field(SalesforceFieldType::Text);
        lower.transforms.push(SalesforceTransform::Lowercase);
        lower.truncate = Some(5);
        assert_eq!(run(&lower, "  ABCDEFG "), Ok(Some(Value::from("abcde"))));
        let mut pick = field(SalesforceFieldType::Text);
        pick.map = [("COMPUTER_SOFTWARE".to_string(), "Technology".to_string())].into();
        pick.map_other = Some("Other".into());
        assert_eq!(run(&pick, "computer_software"), Ok(Some(Value::from("Technology"))));
        assert_eq!(run(&pick, "FARMING"), Ok(Some(Value::from("Other"))));
        let date = field(SalesforceFieldType::Date);
        assert_eq!(run(&date, "1735689600000"), Ok(Some(Value::from("2025-01-01"))));
        assert_eq!(run(&date, "2025-03-04T10:00:00Z"), Ok(Some(Value::from("2025-03-04"))));
        assert!(run(&date, "soon").is_err());
        let mut num = field(SalesforceFieldType::Number);
        assert_eq!(run(&num, "1,500"), Ok(Some(Value::from(1500.0))));
        assert_eq!(run(&num, ""), Ok(None), "empty is left out, never sent as null");
        num.default = Some("0".into());
        assert_eq!(run(&num, " "), Ok(Some(Value::from(0.0))));
        assert!(run(&num, "lots").is_err());
        assert_eq!(
            run(&field(SalesforceFieldType::Boolean), "Yes"),
            Ok(Some(Value::Bool(true)))
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = r#"
[external_ids]
account = "HubSpot Company"
contact = "HubSpot_Contact_Id__c"
opportunity = "LeadSync_Key__c"

[opportunity]
name = "{deal.name}"
stage = "Qualification"
close_in_days = -3

[[account.fields]]
field = "Name"
from = "organisation.name"
transforms = ["shout"]

[[account.fields]]
field = "Industry"
from = "company.industry"
template = "{industry}"

[[routing.round_robin]]
user = "bob"
weight = 0
"#;
        let err = SalesforceMapping::from_source(&SourceText::new("sf.toml", text)).unwrap_err();
        let lines: Vec<(usize, &str)> = err.0.iter().map(|d| (d.line, d.field.as_str())).collect();
        for want in [
            (3, "external_ids.account"),
            (8, "opportunity.name"),
            (10, "opportunity.close_in_days"),
            (14, "account.fields[0].from"),
            (15, "account.fields[0].transforms"),
            (23, "routing.round_robin[0].user"),
        ] {
            assert!(lines.contains(&want), "{want:?} missing in {err}");
        }
        assert!(err.0.iter().any(|d| d.field == "account.fields[1]"), "{err}");
        assert!(
            err.0.iter().any(|d| d.field == "routing.round_robin[0].weight"),
            "{err}"
        );
    }

    #[test]
    fn routing_by_hubspot_owner_is_on_unless_switched_off() {
        let text = |routing: &str| {
            format!(
                "[external_ids]\naccount = \"A__c\"\ncontact = \"C__c\"\nopportunity = \"O__c\"\n\
                 [opportunity]\nname = \"x\"\nstage = \"Qualification\"\nclose_in_days = 30\n{routing}"
            )
        };
        let load = |t: String| SalesforceMapping::from_source(&SourceText::new("sf.toml", &t)).unwrap();
        let owner = Some(SalesforceSource::Contact("hubspot_owner_id".into()));
        assert_eq!(load(text("")).routing.hubspot_owner, owner);
        assert_eq!(
            load(text("[routing]\nhubspot_owner = true\n")).routing.hubspot_owner,
            owner
        );
        assert_eq!(
            load(text("[routing]\nhubspot_owner = false\n")).routing.hubspot_owner,
            None
        );
        assert!(load(text("")).routing.keep_owner, "route once unless switched off");
        assert!(!load(text("[routing]\nkeep_owner = false\n")).routing.keep_owner);
    }
}
