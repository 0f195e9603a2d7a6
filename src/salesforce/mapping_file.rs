//! `mappings/salesforce.toml` as written: structs that only deserialize, then the compiler that
//! checks every entry and collects every problem with its line, column and field.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::mapping::{
    SalesforceContextField, SalesforceContextValue, SalesforceFieldMap, SalesforceFieldType, SalesforceMapping,
    SalesforceRoutingSources, SalesforceSource, SalesforceTemplate, SalesforceTransform, SalesforceValue,
};
use super::routing::Territory;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

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
    #[serde(default)]
    pub context: Vec<Spanned<RawContext>>,
}

/// A field leadsync keeps current after promotion: `field = "..."`, `keep = "engagement_score"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    pub field: Spanned<String>,
    pub keep: Spanned<String>,
    pub truncate: Option<Spanned<i64>>,
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
    #[serde(default)]
    pub context: Vec<Spanned<RawContext>>,
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
    /// Route to the contact's HubSpot owner when they are a Salesforce user (default true).
    pub hubspot_owner: Option<bool>,
    /// A recycled lead that qualifies again keeps its owner (default true).
    pub keep_owner: Option<bool>,
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

/// Checks `raw`; every problem at once.
pub(super) fn compile(src: &SourceText, raw: RawMapping) -> Result<SalesforceMapping, Diagnostics> {
    let mut c = Compiler { src, diags: vec![] };
    let mapping = c.mapping(raw);
    Diagnostics(c.diags).into_result(()).map(|()| mapping)
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

    fn mapping(&mut self, raw: RawMapping) -> SalesforceMapping {
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
        let account = self.fields(&raw.account.fields, "account", &account_external_id);
        let contact = self.fields(&raw.contact.fields, "contact", &contact_external_id);
        let o = &raw.opportunity;
        let opportunity = self.fields(&o.fields, "opportunity", &opportunity_external_id);
        let opportunity_name = SalesforceTemplate::parse(o.name.get_ref()).unwrap_or_else(|e| {
            self.err(o.name.span(), "opportunity.name", e);
            SalesforceTemplate::default()
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
        if let Some(first) = raw.account.context.first() {
            self.err(
                first.span(),
                "account.context",
                "an Account is shared by its contacts: keep context on the Contact or the Opportunity",
            );
        }
        let contact_context = self.context(
            &raw.contact.context,
            "contact",
            &contact,
            &[contact_external_id.as_str(), "AccountId", "OwnerId"],
        );
        let opportunity_context = self.context(
            &o.context,
            "opportunity",
            &opportunity,
            // Written at promotion, or read back by the opportunity feedback (sales' to change).
            &[
                opportunity_external_id.as_str(),
                "Name",
                "StageName",
                "CloseDate",
                "AccountId",
                "OwnerId",
                "Amount",
                "IsWon",
                "IsClosed",
            ],
        );
        let contact_role = o
            .contact_role
            .as_ref()
            .map_or_else(|| "Decision Maker".to_string(), |r| r.get_ref().trim().to_string());
        let r = &raw.routing;
        let routing = SalesforceRoutingSources {
            country: self.source(r.country.as_ref(), "routing.country", "company.country"),
            employees: self.source(r.employees.as_ref(), "routing.employees", "company.numberofemployees"),
            industry: self.source(r.industry.as_ref(), "routing.industry", "company.industry"),
            hubspot_owner: r
                .hubspot_owner
                .unwrap_or(true)
                .then(|| SalesforceSource::Contact("hubspot_owner_id".into())),
            keep_owner: r.keep_owner.unwrap_or(true),
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
            contact_context,
            opportunity_context,
            opportunity_name,
            stage,
            close_in_days,
            contact_role,
            routing,
            territories,
            round_robin,
        }
    }

    /// An object's context fields: leadsync's, so never one of the fields written at creation
    /// (`sales`, then sales'), nor one leadsync or the feedback read uses otherwise (`reserved`).
    fn context(
        &mut self,
        raw: &[Spanned<RawContext>],
        object: &str,
        sales: &[SalesforceFieldMap],
        reserved: &[&str],
    ) -> Vec<SalesforceContextField> {
        let mut out: Vec<SalesforceContextField> = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let at = format!("{object}.context[{i}]");
            let r = c.get_ref();
            let field = self.api_name(&r.field, &format!("{at}.field"));
            if let Some(f) = sales.iter().find(|f| f.field.eq_ignore_ascii_case(&field)) {
                self.err(
                    r.field.span(),
                    format!("{at}.field"),
                    format!(
                        "{field} is also in [[{object}.fields]] (line {}): a field is either sales' (written once at \
                         creation, never after) or leadsync's (kept current); remove one of the two",
                        f.line
                    ),
                );
            }
            if reserved.iter().any(|r| r.eq_ignore_ascii_case(&field)) {
                self.err(
                    r.field.span(),
                    format!("{at}.field"),
                    format!("{field} is set at promotion or read back from sales: it cannot be kept current"),
                );
            }
            if out.iter().any(|o| o.field.eq_ignore_ascii_case(&field)) {
                self.err(r.field.span(), format!("{at}.field"), format!("{field} is kept twice"));
            }
            let keep = r.keep.get_ref().trim();
            let value = SalesforceContextValue::ALL
                .iter()
                .find(|(name, _)| *name == keep)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| {
                    let names: Vec<&str> = SalesforceContextValue::ALL.iter().map(|(n, _)| *n).collect();
                    self.err(
                        r.keep.span(),
                        format!("{at}.keep"),
                        format!("unknown value `{keep}` ({})", names.join(", ")),
                    );
                    SalesforceContextValue::Grade
                });
            let truncate = r.truncate.as_ref().and_then(|t| match usize::try_from(*t.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.err(t.span(), format!("{at}.truncate"), "must be a positive length");
                    None
                }
            });
            out.push(SalesforceContextField {
                field,
                value,
                truncate,
                line: self.src.line_col(c.span().start).0,
            });
        }
        out
    }

    /// An object's mapped fields; `external_id` is leadsync's to set, never mapped.
    fn fields(&mut self, raw: &[Spanned<RawField>], object: &str, external_id: &str) -> Vec<SalesforceFieldMap> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (i, f) in raw.iter().enumerate() {
            let at = format!("{object}.fields[{i}]");
            let r = f.get_ref();
            let field = self.api_name(&r.field, &format!("{at}.field"));
            if field == external_id {
                self.err(
                    r.field.span(),
                    format!("{at}.field"),
                    format!("{field} is the external id: leadsync sets it"),
                );
            }
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
