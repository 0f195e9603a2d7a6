//! The rules file as written: these structs only mirror `mappings/lifecycle.toml` and deserialize.
//! Every check and every derived structure lives in `compile.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRules {
    pub rules: RawMeta,
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub lists: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    pub derive: BTreeMap<String, Spanned<RawDerive>>,
    #[serde(default)]
    pub forms: Vec<Spanned<RawForm>>,
    pub stages: Vec<Spanned<RawStage>>,
    #[serde(default)]
    pub gates: RawGates,
    /// Same shape as the gates: consent facts that make the contact `opted_out`.
    #[serde(default)]
    pub opt_out: RawGates,
    pub fit: RawScore<RawFitRule>,
    pub engagement: RawScore<RawEngagementRule>,
    pub grades: RawGrades,
    #[serde(default)]
    pub sql_shortcuts: RawShortcuts,
    pub sales_rejection: Option<Spanned<RawSalesRejection>>,
    pub recycle: Spanned<RawRecycle>,
    pub fan: Option<Spanned<RawFan>>,
    pub dormant: Option<Spanned<RawDormant>>,
    pub lost: Option<Spanned<RawLost>>,
    /// Buying signals: what a contact in sales' hands does that its owner hears about.
    #[serde(default)]
    pub signals: Vec<Spanned<RawSignal>>,
    /// The old first-touch timers, now in `mappings/sla.toml`: read only to point there.
    #[serde(default)]
    pub sla: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    pub output: super::rules::Output,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMeta {
    pub version: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDerive {
    pub from: Spanned<String>,
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    pub values: Vec<Spanned<RawDerivedValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDerivedValue {
    pub value: String,
    pub matches: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForm {
    pub kind: Spanned<String>,
    pub matches: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub id: Spanned<String>,
    pub hubspot: Spanned<String>,
    pub when: Spanned<RawPredicate>,
    #[serde(default)]
    pub blocked_by: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGates {
    #[serde(default)]
    pub apply_below: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawReasoned>>,
}

/// A gate or a shortcut: a named condition and the words that explain it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReasoned {
    pub id: Spanned<String>,
    pub when: Spanned<RawPredicate>,
    pub reason: String,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBounds {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// `[fit]` and `[engagement]`: total bounds, groups with their bounds, and rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScore<R> {
    #[serde(default)]
    pub min: Option<Spanned<f64>>,
    #[serde(default)]
    pub max: Option<Spanned<f64>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<RawBounds>>,
    #[serde(default = "Vec::new")]
    pub rules: Vec<Spanned<R>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFitRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    pub points: Spanned<f64>,
    pub when: Spanned<RawPredicate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngagementRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    pub event: Spanned<OneOrMany>,
    #[serde(default, rename = "where")]
    pub filter: Option<Spanned<RawPredicate>>,
    pub points: Spanned<f64>,
    #[serde(default)]
    pub half_life: Option<Spanned<String>>,
    #[serde(default)]
    pub expire_after: Option<Spanned<String>>,
    #[serde(default)]
    pub max_per_day: Option<Spanned<i64>>,
    #[serde(default)]
    pub once_per: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrades {
    pub fit: Spanned<BTreeMap<String, f64>>,
    pub fit_otherwise: String,
    pub engagement: Spanned<BTreeMap<String, f64>>,
    pub engagement_otherwise: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShortcuts {
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub requires: Option<Spanned<RawPredicate>>,
    #[serde(default)]
    pub blocked_by: Vec<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawReasoned>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSalesRejection {
    pub property: Spanned<String>,
    pub value: String,
    pub reason_property: Spanned<String>,
    pub reasons: Vec<String>,
    pub applies_at: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecycle {
    pub to: Spanned<String>,
    pub cooldown: Spanned<String>,
    pub max_cycles: Spanned<i64>,
    #[serde(default)]
    pub clear: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFan {
    pub more_than: Spanned<i64>,
    pub window: Spanned<String>,
    #[serde(default)]
    pub counts: Option<Spanned<OneOrMany>>,
    pub buying_signal: Spanned<RawPredicate>,
    pub engagement_multiplier: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDormant {
    pub after: Spanned<String>,
    pub below: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLost {
    pub when: Spanned<RawPredicate>,
    #[serde(default)]
    pub since: Option<Spanned<String>>,
    pub recycle_after: Spanned<String>,
    /// Signal ids that bring a lost contact back now (recycled), before `recycle_after`.
    #[serde(default)]
    pub recycle_on: Vec<Spanned<String>>,
}

/// One `[[signals]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignal {
    pub id: Spanned<String>,
    pub event: Spanned<OneOrMany>,
    #[serde(default, rename = "where")]
    pub filter: Option<Spanned<RawPredicate>>,
    /// A return: no event of these kinds for at least this long before this one.
    #[serde(default)]
    pub away: Option<Spanned<String>>,
    pub subject: Spanned<String>,
    pub description: Spanned<String>,
}

/// A string or a list of strings (`event = "call"` or `event = ["call", "meeting"]`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A scalar written as a string, number or boolean; compared as text.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A condition as written. The keys present in one table all have to hold (AND).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPredicate {
    #[serde(default)]
    pub all: Option<Vec<Spanned<RawPredicate>>>,
    #[serde(default)]
    pub any: Option<Vec<Spanned<RawPredicate>>>,
    #[serde(default)]
    pub not: Option<Box<Spanned<RawPredicate>>>,
    #[serde(default)]
    pub property: Option<Spanned<String>>,
    #[serde(default)]
    pub attr: Option<Spanned<String>>,
    #[serde(default)]
    pub equals: Option<Spanned<Scalar>>,
    #[serde(default, rename = "in")]
    pub in_values: Option<Spanned<Vec<Scalar>>>,
    #[serde(default)]
    pub in_list: Option<Spanned<String>>,
    #[serde(default)]
    pub domain_in: Option<Spanned<String>>,
    #[serde(default)]
    pub matches: Option<Spanned<String>>,
    #[serde(default)]
    pub known: Option<Spanned<bool>>,
    #[serde(default)]
    pub at_least: Option<Spanned<f64>>,
    #[serde(default)]
    pub at_most: Option<Spanned<f64>>,
    #[serde(default)]
    pub fit_at_least: Option<Spanned<f64>>,
    #[serde(default)]
    pub engagement_at_least: Option<Spanned<f64>>,
    #[serde(default)]
    pub event: Option<Spanned<OneOrMany>>,
    #[serde(default, rename = "where")]
    pub filter: Option<Box<Spanned<RawPredicate>>>,
    #[serde(default)]
    pub within: Option<Spanned<String>>,
    #[serde(default)]
    pub count_at_least: Option<Spanned<i64>>,
}
