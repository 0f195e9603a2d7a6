//! `mappings/salesforce.toml`: which HubSpot properties become which Salesforce fields, the
//! external ids, the opportunity's defaults, the free-mail domains and the owner routing.
//!
//! Two phases, as for the rules file: [`raw`] structs only mirror the file; [`SalesforceMapping`]
//! is compiled once, every problem reported with its line, column and field, all at once.
//! Applying a mapping to one lead is pure ([`SalesforceMapping::record`]).

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;

use chrono::NaiveDate;
use serde_json::{Map, Value};
use toml::Spanned;

use super::routing::Territory;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

/// The file as written (deserialize only).
pub(crate) mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawMapping {
        pub external_ids: RawExternalIds,
        #[serde(default)]
        pub lookup: RawLookup,
        #[serde(default)]
        pub account: RawObject,
        #[serde(default)]
        pub contact: RawObject,
        pub opportunity: RawOpportunity,
        #[serde(default)]
        pub routing: RawRouting,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawExternalIds {
        pub account: Spanned<String>,
        pub contact: Spanned<String>,
        pub opportunity: Spanned<String>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawLookup {
        pub contact_email: Option<Spanned<String>>,
        pub company_domain: Option<Spanned<String>>,
        pub account_domain_field: Option<Spanned<String>>,
        #[serde(default)]
        pub freemail_domains: Vec<Spanned<String>>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawObject {
        #[serde(default)]
        pub fields: Vec<Spanned<RawField>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawOpportunity {
        pub name: Spanned<String>,
        pub stage: Spanned<String>,
        pub close_in_days: Spanned<i64>,
        #[serde(default)]
        pub contact_role: Option<Spanned<String>>,
        #[serde(default)]
        pub fields: Vec<Spanned<RawField>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawField {
        pub field: Spanned<String>,
        pub from: Option<Spanned<String>>,
        pub template: Option<Spanned<String>>,
        pub value: Option<Spanned<String>>,
        #[serde(default)]
        pub transforms: Vec<Spanned<String>>,
        #[serde(default)]
        pub map: BTreeMap<String, String>,
        pub map_other: Option<String>,
        pub default: Option<String>,
        pub truncate: Option<Spanned<i64>>,
        #[serde(rename = "type")]
        pub kind: Option<Spanned<String>>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawRouting {
        pub country: Option<Spanned<String>>,
        pub employees: Option<Spanned<String>>,
        pub industry: Option<Spanned<String>>,
        #[serde(default)]
        pub territories: Vec<Spanned<RawTerritory>>,
        #[serde(default)]
        pub round_robin: Vec<Spanned<RawUser>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawTerritory {
        pub name: String,
        #[serde(default)]
        pub countries: Vec<String>,
        pub min_employees: Option<f64>,
        pub max_employees: Option<f64>,
        #[serde(default)]
        pub industries: Vec<String>,
        pub owner: Spanned<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawUser {
        pub user: Spanned<String>,
        #[serde(default = "one")]
        pub weight: Spanned<u32>,
    }

    fn one() -> Spanned<u32> {
        Spanned::new(0..0, 1)
    }
}

/// Where a value comes from: a contact or a company property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesforceSource {
    /// `contact.<property>`.
    Contact(String),
    /// `company.<property>`.
    Company(String),
}

impl SalesforceSource {
    fn parse(s: &str) -> Option<Self> {
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
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceTemplate(Vec<Piece>);

impl SalesforceTemplate {
    fn parse(s: &str) -> Result<Self, String> {
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

const DEFAULT_FREEMAIL: [&str; 12] = [
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "aol.com",
    "icloud.com",
    "gmx.com",
    "proton.me",
    "orange.fr",
    "free.fr",
];

impl SalesforceMapping {
    /// Reads and compiles the mapping file; every problem at once, with line and column.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        Self::from_source(&SourceText::read(path)?)
    }

    /// Compiles a mapping held in memory.
    pub fn from_source(src: &SourceText) -> Result<Self, Diagnostics> {
        let raw: raw::RawMapping = src.parse_toml()?;
        let mut c = Compiler { src, diags: vec![] };
        let mapping = c.compile(raw);
        Diagnostics(c.diags).into_result(()).map(|()| mapping)
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

struct Compiler<'s> {
    src: &'s SourceText,
    diags: Vec<Diagnostic>,
}

impl Compiler<'_> {
    fn err(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.diags.push(self.src.error(span, field, message));
    }

    fn api_name(&mut self, s: &Spanned<String>, field: &str) -> String {
        let v = s.get_ref().trim();
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.err(s.span(), field, format!("`{v}` is not a Salesforce field API name"));
        }
        v.to_string()
    }

    fn source(&mut self, s: Option<&Spanned<String>>, field: &str, default: &str) -> SalesforceSource {
        match s {
            None => SalesforceSource::parse(default).unwrap_or(SalesforceSource::Contact(default.into())),
            Some(s) => SalesforceSource::parse(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    s.span(),
                    field,
                    format!("`{}`: write `contact.<property>` or `company.<property>`", s.get_ref()),
                );
                SalesforceSource::Contact(String::new())
            }),
        }
    }

    fn user_id(&mut self, s: &Spanned<String>, field: &str) -> String {
        let v = s.get_ref().trim();
        if !(v.len() == 15 || v.len() == 18) || !v.starts_with("005") || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.err(
                s.span(),
                field,
                format!("`{v}` is not a Salesforce user id (005…, 15 or 18 characters)"),
            );
        }
        v.to_string()
    }

    fn compile(&mut self, raw: raw::RawMapping) -> SalesforceMapping {
        let account_external_id = self.api_name(&raw.external_ids.account, "external_ids.account");
        let contact_external_id = self.api_name(&raw.external_ids.contact, "external_ids.contact");
        let opportunity_external_id = self.api_name(&raw.external_ids.opportunity, "external_ids.opportunity");
        let l = &raw.lookup;
        let contact_email = self.source(l.contact_email.as_ref(), "lookup.contact_email", "contact.email");
        let company_domain = self.source(l.company_domain.as_ref(), "lookup.company_domain", "company.domain");
        let account_domain_field = match &l.account_domain_field {
            Some(f) => self.api_name(f, "lookup.account_domain_field"),
            None => "Website".into(),
        };
        let mut freemail: HashSet<String> = DEFAULT_FREEMAIL.iter().map(|d| d.to_string()).collect();
        for d in &l.freemail_domains {
            let v = d.get_ref().trim().to_lowercase();
            if v.is_empty() || !v.contains('.') || v.contains('@') {
                self.err(d.span(), "lookup.freemail_domains", format!("`{v}` is not a domain"));
            }
            freemail.insert(v);
        }
        let account = self.fields(&raw.account.fields, "account");
        let contact = self.fields(&raw.contact.fields, "contact");
        let o = &raw.opportunity;
        let opportunity = self.fields(&o.fields, "opportunity");
        let opportunity_name = SalesforceTemplate::parse(o.name.get_ref()).unwrap_or_else(|e| {
            self.err(o.name.span(), "opportunity.name", e);
            SalesforceTemplate(vec![])
        });
        let stage = o.stage.get_ref().trim().to_string();
        if stage.is_empty() {
            self.err(
                o.stage.span(),
                "opportunity.stage",
                "must name a stage (StageName is required)",
            );
        }
        let close_in_days = match u32::try_from(*o.close_in_days.get_ref()) {
            Ok(d) if d <= 3650 => d,
            _ => {
                self.err(
                    o.close_in_days.span(),
                    "opportunity.close_in_days",
                    "must be 0 to 3650 days",
                );
                0
            }
        };
        let contact_role = o
            .contact_role
            .as_ref()
            .map_or_else(|| "Decision Maker".to_string(), |r| r.get_ref().trim().to_string());
        for (name, fields) in [
            ("account", &account),
            ("contact", &contact),
            ("opportunity", &opportunity),
        ] {
            let ext = match name {
                "account" => &account_external_id,
                "contact" => &contact_external_id,
                _ => &opportunity_external_id,
            };
            if fields.iter().any(|f| &f.field == ext) {
                self.err(
                    0..0,
                    format!("{name}.fields"),
                    format!("{ext} is the external id: leadsync sets it"),
                );
            }
        }
        let r = &raw.routing;
        let routing = SalesforceRoutingSources {
            country: self.source(r.country.as_ref(), "routing.country", "company.country"),
            employees: self.source(r.employees.as_ref(), "routing.employees", "company.numberofemployees"),
            industry: self.source(r.industry.as_ref(), "routing.industry", "company.industry"),
        };
        let mut territories = Vec::new();
        for (i, t) in r.territories.iter().enumerate() {
            let field = format!("routing.territories[{i}]");
            let tr = t.get_ref();
            if let (Some(a), Some(b)) = (tr.min_employees, tr.max_employees) {
                if a > b {
                    self.err(
                        t.span(),
                        &field,
                        "min_employees is above max_employees: it never matches",
                    );
                }
            }
            territories.push(Territory {
                name: tr.name.clone(),
                countries: tr.countries.iter().map(|c| c.trim().to_lowercase()).collect(),
                min_employees: tr.min_employees,
                max_employees: tr.max_employees,
                industries: tr.industries.iter().map(|c| c.trim().to_lowercase()).collect(),
                owner: self.user_id(&tr.owner, &format!("{field}.owner")),
            });
        }
        let mut round_robin = Vec::new();
        for (i, u) in r.round_robin.iter().enumerate() {
            let field = format!("routing.round_robin[{i}]");
            let w = *u.get_ref().weight.get_ref();
            if w == 0 {
                self.err(
                    u.span(),
                    format!("{field}.weight"),
                    "must be at least 1 (remove the user instead)",
                );
            }
            round_robin.push((self.user_id(&u.get_ref().user, &format!("{field}.user")), w));
        }
        SalesforceMapping {
            account_external_id,
            contact_external_id,
            opportunity_external_id,
            contact_email,
            company_domain,
            account_domain_field,
            freemail,
            account,
            contact,
            opportunity,
            opportunity_name,
            stage,
            close_in_days,
            contact_role,
            routing,
            territories,
            round_robin,
        }
    }

    fn fields(&mut self, raw: &[Spanned<raw::RawField>], object: &str) -> Vec<SalesforceFieldMap> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, f) in raw.iter().enumerate() {
            let at = format!("{object}.fields[{i}]");
            let r = f.get_ref();
            let field = self.api_name(&r.field, &format!("{at}.field"));
            if !seen.insert(field.to_lowercase()) {
                self.err(
                    r.field.span(),
                    format!("{at}.field"),
                    format!("{field} is mapped twice"),
                );
            }
            let value = match (&r.from, &r.template, &r.value) {
                (Some(s), None, None) => SalesforceValue::From(self.source(Some(s), &format!("{at}.from"), "")),
                (None, Some(t), None) => match SalesforceTemplate::parse(t.get_ref()) {
                    Ok(t) => SalesforceValue::Template(t),
                    Err(e) => {
                        self.err(t.span(), format!("{at}.template"), e);
                        SalesforceValue::Constant(String::new())
                    }
                },
                (None, None, Some(v)) => SalesforceValue::Constant(v.get_ref().clone()),
                _ => {
                    self.err(f.span(), &at, "write exactly one of `from`, `template` or `value`");
                    SalesforceValue::Constant(String::new())
                }
            };
            let mut transforms = Vec::new();
            for t in &r.transforms {
                match t.get_ref().as_str() {
                    "trim" => transforms.push(SalesforceTransform::Trim),
                    "lowercase" => transforms.push(SalesforceTransform::Lowercase),
                    "uppercase" => transforms.push(SalesforceTransform::Uppercase),
                    other => self.err(
                        t.span(),
                        format!("{at}.transforms"),
                        format!("unknown transform `{other}` (trim, lowercase, uppercase)"),
                    ),
                }
            }
            let truncate = r.truncate.as_ref().and_then(|t| match usize::try_from(*t.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.err(t.span(), format!("{at}.truncate"), "must be a positive length");
                    None
                }
            });
            let kind = match r.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
                None | Some((_, "text")) => SalesforceFieldType::Text,
                Some((_, "number")) => SalesforceFieldType::Number,
                Some((_, "boolean")) => SalesforceFieldType::Boolean,
                Some((_, "date")) => SalesforceFieldType::Date,
                Some((k, other)) => {
                    self.err(
                        k.span(),
                        format!("{at}.type"),
                        format!("unknown type `{other}` (text, number, boolean, date)"),
                    );
                    SalesforceFieldType::Text
                }
            };
            out.push(SalesforceFieldMap {
                field,
                value,
                transforms,
                map: r.map.clone(),
                map_other: r.map_other.clone(),
                default: r.default.clone(),
                truncate,
                kind,
                line: self.src.line_col(f.span().start).0,
            });
        }
        out
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
}
