//! The compiled rules: what `compile.rs` builds once from `mappings/lifecycle.toml` and the engine reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use regex::RegexSet;

use super::model::{EventKind, RuleDuration, Stage, Status};
use super::predicate::{EventPredicate, Predicate};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

/// The type a rules file declares for a HubSpot property it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    /// Free text.
    String,
    /// An email address (its domain can be tested).
    Email,
    /// A number (HubSpot sends it as text).
    Number,
    /// `true` / `false`.
    Bool,
    /// A date or date-time (ISO 8601 or epoch milliseconds).
    Date,
}

/// A checked, ready-to-evaluate rule set.
#[derive(Debug)]
pub struct Rules {
    /// The `version` the file declares.
    pub version: String,
    /// The file's own one-line description.
    pub description: Option<String>,
    /// First 12 hex digits of the SHA-256 of the file's bytes.
    pub hash: String,
    /// `version (hash)`, made once: every decision stamps it.
    pub(crate) stamp: String,
    /// Properties the rules read, by name.
    pub properties: HashMap<String, PropType>,
    /// Number of memoised patterns on event attributes.
    pub(crate) memo_slots: usize,
    /// The patterns on an event's URL, with their memo slots.
    pub(crate) url_patterns: Vec<(usize, regex::Regex)>,
    /// Each URL seen: its row of the memo table (1 no, 2 yes in the URL patterns' slots, 0 in
    /// the others), so the same pages met contact after contact are matched once.
    pub(crate) urls: TextMemo<Box<[u8]>>,
    /// Number of distinct properties conditions read (slots of the per-evaluation cache).
    pub(crate) prop_slots: usize,
    pub(crate) derives: Vec<Derive>,
    pub(crate) forms: FirstMatch,
    pub(crate) stages: Vec<StageRule>,
    pub(crate) gates: Gates,
    pub(crate) opt_out: Gates,
    pub(crate) fit: FitModel,
    pub(crate) engagement: EngagementModel,
    pub(crate) grades: Grades,
    pub(crate) shortcuts: Shortcuts,
    pub(crate) sales_rejection: Option<SalesRejection>,
    pub(crate) recycle: Recycle,
    pub(crate) fan: Option<Fan>,
    pub(crate) dormant: Option<Dormant>,
    pub(crate) lost: Option<Lost>,
    /// Buying signals, in the file's order (the first that matches an event is the one it fires).
    pub(crate) signals: Vec<SignalRule>,
    pub(crate) output: Output,
    /// Text values conditions compare string properties with, and where each is written.
    pub(crate) enum_refs: Vec<EnumRef>,
    /// Every engagement threshold a stage, shortcut, gate, opt-out or grade names: a decayed
    /// engagement score crossing one is written at once.
    pub(crate) engagement_thresholds: Vec<f64>,
}

/// A value a condition compares a text property with (`equals`, `in`, an `in_list` entry).
#[derive(Debug, Clone)]
pub(crate) struct EnumRef {
    pub property: String,
    pub value: String,
    /// Dotted path of the test (`fit.rules[10].when.in`, or `lists.NAME` for a list entry).
    pub field: String,
    /// Where it is written (the message is filled in by the check).
    pub at: Diagnostic,
}

#[derive(Debug)]
pub(crate) struct Derive {
    pub name: Arc<str>,
    pub from: String,
    pub fallback: Option<String>,
    pub values: FirstMatch,
}

/// Named patterns tried in file order in one pass; the first that matches names the value.
#[derive(Debug)]
pub(crate) struct FirstMatch {
    pub names: Vec<Arc<str>>,
    pub set: RegexSet,
    /// The answer for each text seen: job titles and form names come back contact after contact.
    pub seen: TextMemo<Option<usize>>,
}

impl FirstMatch {
    /// The name of the first pattern that matches `text`.
    pub fn first(&self, text: &str) -> Option<&str> {
        let i = self.seen.with(text, || self.set.matches(text).iter().next(), |i| *i);
        i.map(|i| &*self.names[i])
    }
}

/// Texts a memo keeps at most; past that it starts again empty, so a portal's long tail of
/// distinct values costs memory no more than this.
const TEXT_MEMO_MAX: usize = 4096;

/// What a pure function of a text (patterns on a job title, a page's URL, a form's name) gave,
/// kept across evaluations. The engine stays pure: a value is the function's own result,
/// computed on first sight, so a decision is the same with the memo full or empty.
#[derive(Debug)]
pub(crate) struct TextMemo<V> {
    map: Mutex<HashMap<Box<str>, V>>,
}

impl<V> Default for TextMemo<V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> TextMemo<V> {
    /// `read` of the value for `text`, `compute`d (outside the lock) when not kept yet.
    pub fn with<R>(&self, text: &str, compute: impl FnOnce() -> V, read: impl FnOnce(&V) -> R) -> R {
        if let Some(v) = self.lock().get(text) {
            return read(v);
        }
        let v = compute();
        let out = read(&v);
        let mut map = self.lock();
        if map.len() >= TEXT_MEMO_MAX {
            map.clear();
        }
        map.insert(text.into(), v);
        out
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, V>> {
        // A value is complete once inserted: a panic elsewhere cannot leave one half-made.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(crate) struct StageRule {
    pub stage: Stage,
    pub hubspot: String,
    pub when: Predicate,
    pub blocked_by: Vec<Status>,
}

#[derive(Debug, Default)]
pub(crate) struct Gates {
    pub apply_below: Option<Stage>,
    pub rules: Vec<Reasoned>,
}

/// A gate or a shortcut: a named condition and the words that explain it.
#[derive(Debug)]
pub(crate) struct Reasoned {
    pub id: Arc<str>,
    pub when: Predicate,
    pub reason: String,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub min: f64,
    pub max: f64,
}

impl Bounds {
    pub fn clamp(self, v: f64) -> f64 {
        v.clamp(self.min, self.max)
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub name: Arc<str>,
    pub bounds: Bounds,
}

#[derive(Debug)]
pub(crate) struct FitModel {
    pub total: Bounds,
    pub groups: Vec<Group>,
    pub rules: Vec<FitRule>,
}

#[derive(Debug)]
pub(crate) struct FitRule {
    pub id: Arc<str>,
    pub group: Option<usize>,
    pub points: f64,
    pub when: Predicate,
}

#[derive(Debug)]
pub(crate) struct EngagementModel {
    pub total: Bounds,
    pub groups: Vec<Group>,
    pub rules: Vec<EngagementRule>,
    /// For each event kind, the rules that may match it, in file order.
    pub by_kind: Vec<Vec<usize>>,
}

#[derive(Debug)]
pub(crate) struct EngagementRule {
    pub id: Arc<str>,
    pub group: Option<usize>,
    pub matcher: EventPredicate,
    pub points: f64,
    pub half_life: RuleDuration,
    pub expire_after: Option<RuleDuration>,
    pub max_per_day: Option<u32>,
    pub once_per: Option<OncePer>,
}

/// What "once per" counts distinct values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OncePer {
    /// Only the first matching event ever counts.
    Contact,
    /// Once per distinct value of an attribute.
    Attr(super::model::EventAttr),
}

#[derive(Debug)]
pub(crate) struct Grades {
    /// (letter, threshold), highest threshold first.
    pub fit: Vec<(String, f64)>,
    pub fit_otherwise: String,
    pub engagement: Vec<(String, f64)>,
    pub engagement_otherwise: String,
}

#[derive(Debug)]
pub(crate) struct Shortcuts {
    pub to: Stage,
    pub requires: Option<Predicate>,
    pub blocked_by: Vec<Status>,
    pub rules: Vec<Reasoned>,
}

#[derive(Debug)]
pub(crate) struct SalesRejection {
    pub property: String,
    pub value: String,
    pub reason_property: String,
    pub reasons: Vec<String>,
    pub applies_at: Vec<Stage>,
}

#[derive(Debug)]
pub(crate) struct Recycle {
    pub to: Stage,
    pub cooldown: RuleDuration,
    pub max_cycles: u32,
    pub clear: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Fan {
    pub more_than: usize,
    pub window: RuleDuration,
    pub counts: Vec<EventKind>,
    pub buying_signal: Predicate,
    pub multiplier: f64,
}

#[derive(Debug)]
pub(crate) struct Dormant {
    pub after: RuleDuration,
    pub below: Stage,
}

#[derive(Debug)]
pub(crate) struct Lost {
    pub when: Predicate,
    pub since: Option<String>,
    pub recycle_after: RuleDuration,
    /// Signal ids (of `signals`) that recycle a lost contact at once.
    pub recycle_on: Vec<Arc<str>>,
}

/// A buying signal (`[[signals]]`): an event matching `matcher` (and, with `away`, coming after
/// at least that long without an event of the same kinds), told to the owner with `subject`
/// and `description` (templates whose placeholders `compile` checked).
#[derive(Debug)]
pub(crate) struct SignalRule {
    pub id: Arc<str>,
    pub matcher: EventPredicate,
    pub away: Option<RuleDuration>,
    pub subject: String,
    pub description: String,
}

/// Names of the HubSpot properties leadsync writes (`[output]`; every name has a default).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    /// HubSpot's own lifecycle stage property.
    pub lifecycle_property: String,
    /// leadsync's stage (includes SAL, which HubSpot has no default for).
    pub stage: String,
    /// Side status.
    pub status: String,
    /// Fit score.
    pub fit_score: String,
    /// Engagement score.
    pub engagement_score: String,
    /// Grade such as `A1`.
    pub grade: String,
    /// Short explanation of the last decision.
    pub reason: String,
    /// Version and hash of the rules.
    pub rules_version: String,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            lifecycle_property: "lifecyclestage".into(),
            stage: "leadsync_stage".into(),
            status: "leadsync_status".into(),
            fit_score: "leadsync_fit_score".into(),
            engagement_score: "leadsync_engagement_score".into(),
            grade: "leadsync_grade".into(),
            reason: "leadsync_reason".into(),
            rules_version: "leadsync_rules_version".into(),
        }
    }
}

impl Rules {
    /// Loads and checks a rules file; every problem is reported, with its line and column.
    pub fn load(path: &Path) -> Result<Rules, Diagnostics> {
        let src = SourceText::read(path)?;
        Self::from_source(&src)
    }

    /// Checks rules already read into memory.
    pub fn from_source(src: &SourceText) -> Result<Rules, Diagnostics> {
        let raw = src.parse_toml()?;
        super::compile::compile(src, raw)
    }

    /// `version (hash)`, as stamped on decisions and written to HubSpot.
    pub fn stamp(&self) -> String {
        self.stamp.clone()
    }

    /// The property names leadsync writes.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// The HubSpot lifecycle value a stage is written as.
    pub fn hubspot_value(&self, stage: Stage) -> &str {
        &self.stages[stage.index()].hubspot
    }

    /// Warnings for rules values a portal's enumeration property does not offer: `options` maps a
    /// property name to its options' values and labels (as HubSpot's properties API lists them).
    /// A value matches an option's value or label with case, spaces and underscores folded, the
    /// way the engine compares them; properties missing from `options` (free text) are skipped.
    /// Each warning points at the rules file line where the value is written.
    pub fn enumeration_warnings(&self, options: &HashMap<String, Vec<String>>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for r in &self.enum_refs {
            let Some(allowed) = options.get(&r.property) else {
                continue;
            };
            if allowed.iter().any(|o| super::predicate::fold_eq(o.trim(), &r.value)) {
                continue;
            }
            let mut d = r.at.clone();
            d.message = format!(
                "`{}` is not an option of HubSpot property `{}` in this portal (neither a value nor a label); the condition can never match it",
                r.value, r.property
            );
            out.push(d);
        }
        out
    }

    /// The kind the `[[forms]]` patterns give a form name (the first that matches), if any.
    pub fn form_kind(&self, form: &str) -> Option<&str> {
        self.forms.first(form)
    }

    /// The lowest leadsync stage written as this HubSpot lifecycle value.
    pub fn stage_for_hubspot(&self, value: &str) -> Option<Stage> {
        self.stages
            .iter()
            .find(|s| s.hubspot.eq_ignore_ascii_case(value.trim()))
            .map(|s| s.stage)
    }
}
