//! Raw rules → checked [`Rules`]: every reference resolved, every regex compiled, every number
//! range-checked; all problems collected with their line and column before giving up.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::model::{EventAttr, EventKind, RuleDuration, Stage, Status};
use super::predicate::{EventPredicate, Predicate, Subject, Test, fold};
use super::raw::*;
use super::rules::*;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

/// Kinds a fan's activity is counted over when the file does not say.
const MARKETING_KINDS: [EventKind; 5] = [
    EventKind::PageView,
    EventKind::EmailOpen,
    EventKind::EmailClick,
    EventKind::FormSubmission,
    EventKind::WebinarAttended,
];

pub(super) fn compile(src: &SourceText, raw: RawRules) -> Result<Rules, Diagnostics> {
    let mut c = Compiler {
        src,
        diags: Vec::new(),
        props: HashMap::new(),
        lists: HashMap::new(),
        folded_lists: HashMap::new(),
        list_items: HashMap::new(),
        enum_refs: Vec::new(),
        derived: HashMap::new(),
        form_kinds: HashSet::new(),
        ids: HashMap::new(),
        memo_slots: 0,
        url_patterns: Vec::new(),
        prop_slots: HashMap::new(),
        fit_bounds: Bounds {
            min: f64::MIN,
            max: f64::MAX,
        },
        engagement_bounds: Bounds {
            min: 0.0,
            max: f64::MAX,
        },
    };

    if raw.rules.version.get_ref().trim().is_empty() {
        c.err(
            raw.rules.version.span(),
            "rules.version",
            "must not be empty: every decision is stamped with it",
        );
    }
    c.properties(&raw);
    c.lists(&raw);
    let derives = c.derives(&raw);
    let forms = c.forms(&raw);
    let fit_total = c.total_bounds(&raw.fit.min, &raw.fit.max, "fit", f64::MIN);
    let engagement_total = c.total_bounds(&raw.engagement.min, &raw.engagement.max, "engagement", 0.0);
    c.fit_bounds = fit_total;
    c.engagement_bounds = engagement_total;

    let stages = c.stages(&raw);
    let gates = Gates {
        apply_below: raw
            .gates
            .apply_below
            .as_ref()
            .and_then(|s| c.stage(s, "gates.apply_below")),
        rules: c.reasoned(&raw.gates.rules, "gates.rules"),
    };
    let opt_out = Gates {
        apply_below: raw
            .opt_out
            .apply_below
            .as_ref()
            .and_then(|s| c.stage(s, "opt_out.apply_below")),
        rules: c.reasoned(&raw.opt_out.rules, "opt_out.rules"),
    };
    let fit = c.fit(&raw.fit, fit_total);
    let engagement = c.engagement(&raw.engagement, engagement_total);
    let grades = Grades {
        fit: c.grade_table(&raw.grades.fit, "grades.fit", fit_total),
        fit_otherwise: raw.grades.fit_otherwise.clone(),
        engagement: c.grade_table(&raw.grades.engagement, "grades.engagement", engagement_total),
        engagement_otherwise: raw.grades.engagement_otherwise.clone(),
    };
    let shortcuts = c.shortcuts(&raw.sql_shortcuts);
    let sales_rejection = raw.sales_rejection.as_ref().map(|s| c.sales_rejection(s));
    let recycle = c.recycle(&raw.recycle);
    let fan = raw.fan.as_ref().map(|f| c.fan(f));
    let dormant = raw.dormant.as_ref().map(|d| {
        let d = d.get_ref();
        Dormant {
            after: c
                .duration(&d.after, "dormant.after", false)
                .unwrap_or(RuleDuration::INFINITE),
            below: c.stage(&d.below, "dormant.below").unwrap_or(Stage::Mql),
        }
    });
    let signals = c.signals(&raw.signals);
    let lost = raw.lost.as_ref().map(|l| c.lost(l, &signals));
    // The sales SLA has one home: a rules file still holding the old timers is refused.
    for (i, s) in raw.sla.iter().enumerate() {
        c.err(
            s.span(),
            format!("sla[{i}]"),
            "`[[sla]]` is no longer read from the rules: SLA policies live in mappings/sla.toml \
             (stage, path, first_touch, attempts, touches, ladder); move this timer there and delete it here",
        );
    }

    let hash = hex::encode(Sha256::digest(src.text().as_bytes()))[..12].to_string();
    let mut engagement_thresholds: Vec<f64> = grades.engagement.iter().map(|(_, t)| *t).collect();
    let reasoned = gates.rules.iter().chain(&opt_out.rules).chain(&shortcuts.rules);
    for p in stages
        .iter()
        .map(|s| &s.when)
        .chain(reasoned.map(|r| &r.when))
        .chain(&shortcuts.requires)
    {
        p.engagement_thresholds(&mut engagement_thresholds);
    }
    engagement_thresholds.sort_by(f64::total_cmp);
    engagement_thresholds.dedup();
    let version = raw.rules.version.get_ref().trim().to_string();
    let rules = Rules {
        stamp: format!("{version} ({hash})"),
        version,
        description: raw.rules.description.clone(),
        hash,
        properties: c.props.clone(),
        memo_slots: c.memo_slots,
        url_patterns: std::mem::take(&mut c.url_patterns),
        urls: TextMemo::default(),
        prop_slots: c.prop_slots.len(),
        derives,
        forms,
        stages,
        gates,
        opt_out,
        fit,
        engagement,
        grades,
        shortcuts,
        sales_rejection,
        recycle,
        fan,
        dormant,
        lost,
        signals,
        output: raw.output,
        enum_refs: std::mem::take(&mut c.enum_refs),
        engagement_thresholds,
    };
    Diagnostics(c.diags).into_result(rules)
}

struct Compiler<'s> {
    src: &'s SourceText,
    diags: Vec<Diagnostic>,
    props: HashMap<String, PropType>,
    lists: HashMap<String, Arc<HashSet<String>>>,
    /// The same lists folded for `in_list` (case, spaces and underscores), built on first use.
    folded_lists: HashMap<String, Arc<HashSet<String>>>,
    /// Each list's entries as written, with where the list is.
    list_items: HashMap<String, (Vec<String>, Range<usize>)>,
    /// Text values conditions compare string properties with, for the portal check.
    enum_refs: Vec<EnumRef>,
    derived: HashMap<String, usize>,
    form_kinds: HashSet<String>,
    /// Rule ids seen so far, with the line they were first defined on.
    ids: HashMap<String, usize>,
    /// Patterns on event attributes, each with a memo slot.
    memo_slots: usize,
    /// Those on the event's URL, with their slots.
    url_patterns: Vec<(usize, Regex)>,
    /// Properties read by conditions, each with a slot in the per-evaluation cache.
    prop_slots: HashMap<String, usize>,
    fit_bounds: Bounds,
    engagement_bounds: Bounds,
}

impl Compiler<'_> {
    fn err(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.diags.push(self.src.error(span, field, message));
    }

    fn properties(&mut self, raw: &RawRules) {
        for (name, ty) in &raw.properties {
            let t = match ty.get_ref().as_str() {
                "string" => PropType::String,
                "email" => PropType::Email,
                "number" => PropType::Number,
                "bool" => PropType::Bool,
                "date" => PropType::Date,
                other => {
                    self.err(
                        ty.span(),
                        format!("properties.{name}"),
                        format!("unknown type `{other}` (expected string, email, number, bool or date)"),
                    );
                    PropType::String
                }
            };
            self.props.insert(name.clone(), t);
        }
    }

    fn lists(&mut self, raw: &RawRules) {
        for (name, items) in &raw.lists {
            let set: HashSet<String> = items.get_ref().iter().map(|s| s.trim().to_ascii_lowercase()).collect();
            if set.is_empty() {
                self.err(items.span(), format!("lists.{name}"), "is empty");
            }
            self.lists.insert(name.clone(), Arc::new(set));
            self.list_items.insert(
                name.clone(),
                (
                    items.get_ref().iter().map(|s| s.trim().to_string()).collect(),
                    items.span(),
                ),
            );
        }
    }

    fn derives(&mut self, raw: &RawRules) -> Vec<Derive> {
        let mut out = Vec::new();
        for (name, d) in &raw.derive {
            let field = format!("derive.{name}");
            if self.props.contains_key(name) {
                self.err(
                    d.span(),
                    &field,
                    format!("`{name}` is already a property; pick another name"),
                );
            }
            let dr = d.get_ref();
            self.property_ref(&dr.from, &format!("{field}.from"));
            if let Some(fb) = &dr.fallback {
                self.property_ref(fb, &format!("{field}.fallback"));
            }
            let named: Vec<_> = dr
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        v.get_ref().value.as_str(),
                        &v.get_ref().matches,
                        format!("{field}.values[{i}].matches"),
                    )
                })
                .collect();
            let values = self.first_match(&named);
            self.derived.insert(name.clone(), out.len());
            out.push(Derive {
                name: Arc::from(name.as_str()),
                from: dr.from.get_ref().clone(),
                fallback: dr.fallback.as_ref().map(|f| f.get_ref().clone()),
                values,
            });
        }
        out
    }

    fn forms(&mut self, raw: &RawRules) -> FirstMatch {
        let mut named = Vec::new();
        for (i, f) in raw.forms.iter().enumerate() {
            let kind = f.get_ref().kind.get_ref();
            if !self.form_kinds.insert(kind.clone()) {
                self.err(
                    f.get_ref().kind.span(),
                    format!("forms[{i}].kind"),
                    format!("form kind `{kind}` is listed twice"),
                );
            }
            named.push((kind.as_str(), &f.get_ref().matches, format!("forms[{i}].matches")));
        }
        self.first_match(&named)
    }

    /// Named patterns tried in order; the first that matches names the value.
    fn first_match(&mut self, named: &[(&str, &Spanned<String>, String)]) -> FirstMatch {
        let mut names = Vec::new();
        let mut patterns = Vec::new();
        for (name, pattern, field) in named {
            if self.regex(pattern, field).is_some() {
                names.push(Arc::from(*name));
                patterns.push(pattern.get_ref().as_str());
            }
        }
        let set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .build()
            .unwrap_or_else(|_| RegexSet::empty());
        FirstMatch {
            names,
            set,
            seen: TextMemo::default(),
        }
    }

    fn total_bounds(
        &mut self,
        min: &Option<Spanned<f64>>,
        max: &Option<Spanned<f64>>,
        field: &str,
        default_min: f64,
    ) -> Bounds {
        let b = Bounds {
            min: min.as_ref().map_or(default_min, |m| *m.get_ref()),
            max: max.as_ref().map_or(f64::MAX, |m| *m.get_ref()),
        };
        if b.min > b.max {
            let span = min.as_ref().map_or(0..0, |m| m.span());
            self.err(
                span,
                format!("{field}.min"),
                format!("min {} is above max {}", b.min, b.max),
            );
        }
        if field == "engagement" && b.min < 0.0 {
            let span = min.as_ref().map_or(0..0, |m| m.span());
            self.err(span, "engagement.min", "the engagement floor must be 0 or more");
        }
        b
    }

    fn groups(&mut self, raw: &std::collections::BTreeMap<String, Spanned<RawBounds>>, field: &str) -> Vec<Group> {
        raw.iter()
            .map(|(name, b)| {
                let rb = *b.get_ref();
                let bounds = Bounds {
                    min: rb.min.unwrap_or(f64::MIN),
                    max: rb.max.unwrap_or(f64::MAX),
                };
                if bounds.min > bounds.max {
                    self.err(b.span(), format!("{field}.groups.{name}"), "min is above max");
                }
                Group {
                    name: Arc::from(name.as_str()),
                    bounds,
                }
            })
            .collect()
    }

    fn group_ref(&mut self, groups: &[Group], g: &Option<Spanned<String>>, field: &str) -> Option<usize> {
        let g = g.as_ref()?;
        let found = groups.iter().position(|x| &*x.name == g.get_ref().as_str());
        if found.is_none() {
            let known: Vec<_> = groups.iter().map(|x| &*x.name).collect();
            self.err(
                g.span(),
                field,
                format!("unknown group `{}` (declared: {})", g.get_ref(), known.join(", ")),
            );
        }
        found
    }

    fn stages(&mut self, raw: &RawRules) -> Vec<StageRule> {
        let mut out: Vec<Option<StageRule>> = (0..Stage::ALL.len()).map(|_| None).collect();
        let mut unknown = false;
        for (i, s) in raw.stages.iter().enumerate() {
            let f = format!("stages[{i}]");
            let r = s.get_ref();
            let Some(stage) = self.stage(&r.id, &format!("{f}.id")) else {
                unknown = true;
                continue;
            };
            if out[stage.index()].is_some() {
                self.err(
                    r.id.span(),
                    format!("{f}.id"),
                    format!("stage `{stage}` is defined twice"),
                );
                continue;
            }
            if stage.index() != i {
                self.err(
                    r.id.span(),
                    format!("{f}.id"),
                    format!(
                        "stages must be listed in funnel order; expected `{}` here",
                        Stage::ALL.get(i).map_or("nothing", |s| s.as_str())
                    ),
                );
            }
            let when = self.predicate(&r.when, &format!("{f}.when"), false);
            let blocked_by = self.statuses(&r.blocked_by, &format!("{f}.blocked_by"));
            out[stage.index()] = Some(StageRule {
                stage,
                hubspot: r.hubspot.get_ref().trim().to_string(),
                when,
                blocked_by,
            });
        }
        let span = raw.stages.first().map_or(0..0, |s| s.span());
        Stage::ALL
            .iter()
            .zip(out)
            .map(|(stage, rule)| {
                rule.unwrap_or_else(|| {
                    // An unknown id was already reported; the stage it was meant to be is not news.
                    if !unknown {
                        self.err(
                            span.clone(),
                            "stages",
                            format!("stage `{stage}` is missing; all seven stages must be defined"),
                        );
                    }
                    StageRule {
                        stage: *stage,
                        hubspot: String::new(),
                        when: Predicate::Always,
                        blocked_by: Vec::new(),
                    }
                })
            })
            .collect()
    }

    fn fit(&mut self, raw: &RawScore<RawFitRule>, total: Bounds) -> FitModel {
        let groups = self.groups(&raw.groups, "fit");
        let rules = raw
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let f = format!("fit.rules[{i}]");
                let r = r.get_ref();
                FitRule {
                    id: self.unique_id(&r.id, &f),
                    group: self.group_ref(&groups, &r.group, &format!("{f}.group")),
                    points: self.finite(&r.points, &format!("{f}.points")),
                    when: self.predicate(&r.when, &format!("{f}.when"), false),
                }
            })
            .collect();
        FitModel { total, groups, rules }
    }

    fn engagement(&mut self, raw: &RawScore<RawEngagementRule>, total: Bounds) -> EngagementModel {
        let groups = self.groups(&raw.groups, "engagement");
        let mut by_kind = vec![Vec::new(); EventKind::ALL.len()];
        let mut rules = Vec::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let f = format!("engagement.rules[{i}]");
            let r = r.get_ref();
            let id = self.unique_id(&r.id, &f);
            let matcher = self.event_matcher(&r.event, r.filter.as_ref(), &f);
            let half_life = match &r.half_life {
                Some(h) => self
                    .duration(h, &format!("{f}.half_life"), false)
                    .unwrap_or(RuleDuration::INFINITE),
                None => RuleDuration::INFINITE,
            };
            let expire_after = r
                .expire_after
                .as_ref()
                .and_then(|e| self.duration(e, &format!("{f}.expire_after"), false));
            let max_per_day = r.max_per_day.as_ref().and_then(|m| {
                let v = *m.get_ref();
                if v < 1 {
                    self.err(m.span(), format!("{f}.max_per_day"), "must be 1 or more");
                    None
                } else {
                    Some(u32::try_from(v).unwrap_or(u32::MAX))
                }
            });
            let once_per = r.once_per.as_ref().and_then(|o| match o.get_ref().as_str() {
                "contact" => Some(OncePer::Contact),
                other => match other.parse::<EventAttr>() {
                    Ok(a) => Some(OncePer::Attr(a)),
                    Err(e) => {
                        self.err(o.span(), format!("{f}.once_per"), format!("{e}, or `contact`"));
                        None
                    }
                },
            });
            for k in &matcher.kinds {
                by_kind[*k as usize].push(rules.len());
            }
            rules.push(EngagementRule {
                id,
                group: self.group_ref(&groups, &r.group, &format!("{f}.group")),
                matcher,
                points: self.finite(&r.points, &format!("{f}.points")),
                half_life,
                expire_after,
                max_per_day,
                once_per,
            });
        }
        EngagementModel {
            total,
            groups,
            rules,
            by_kind,
        }
    }

    fn grade_table(
        &mut self,
        raw: &Spanned<std::collections::BTreeMap<String, f64>>,
        field: &str,
        bounds: Bounds,
    ) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = raw.get_ref().iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (k, v) in &out {
            if *v < bounds.min || *v > bounds.max {
                self.err(
                    raw.span(),
                    format!("{field}.{k}"),
                    format!(
                        "threshold {v} is out of range: the score is kept within {}..={}",
                        bounds.min, bounds.max
                    ),
                );
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    fn shortcuts(&mut self, raw: &RawShortcuts) -> Shortcuts {
        Shortcuts {
            to: raw
                .to
                .as_ref()
                .and_then(|t| self.stage(t, "sql_shortcuts.to"))
                .unwrap_or(Stage::Sql),
            requires: raw
                .requires
                .as_ref()
                .map(|r| self.predicate(r, "sql_shortcuts.requires", false)),
            blocked_by: self.statuses(&raw.blocked_by, "sql_shortcuts.blocked_by"),
            rules: self.reasoned(&raw.rules, "sql_shortcuts.rules"),
        }
    }

    /// Gates and shortcuts: named conditions with the words that explain them.
    fn reasoned(&mut self, raw: &[Spanned<RawReasoned>], field: &str) -> Vec<Reasoned> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| {
                let f = format!("{field}[{i}]");
                let r = r.get_ref();
                Reasoned {
                    id: self.unique_id(&r.id, &f),
                    when: self.predicate(&r.when, &format!("{f}.when"), false),
                    reason: r.reason.clone(),
                }
            })
            .collect()
    }

    fn sales_rejection(&mut self, raw: &Spanned<RawSalesRejection>) -> SalesRejection {
        let r = raw.get_ref();
        self.property_ref(&r.property, "sales_rejection.property");
        self.property_ref(&r.reason_property, "sales_rejection.reason_property");
        if r.reasons.is_empty() {
            self.err(
                raw.span(),
                "sales_rejection.reasons",
                "list at least one reason: a rejection without a reason is refused",
            );
        }
        SalesRejection {
            property: r.property.get_ref().clone(),
            value: r.value.clone(),
            reason_property: r.reason_property.get_ref().clone(),
            reasons: r.reasons.clone(),
            applies_at: r
                .applies_at
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.stage(s, &format!("sales_rejection.applies_at[{i}]")))
                .collect(),
        }
    }

    fn recycle(&mut self, raw: &Spanned<RawRecycle>) -> Recycle {
        let r = raw.get_ref();
        let max_cycles = *r.max_cycles.get_ref();
        if max_cycles < 1 {
            self.err(r.max_cycles.span(), "recycle.max_cycles", "must be 1 or more");
        }
        for (i, p) in r.clear.iter().enumerate() {
            self.property_ref(p, &format!("recycle.clear[{i}]"));
        }
        Recycle {
            to: self.stage(&r.to, "recycle.to").unwrap_or(Stage::Lead),
            cooldown: self
                .duration(&r.cooldown, "recycle.cooldown", true)
                .unwrap_or(RuleDuration::days(0.0)),
            max_cycles: u32::try_from(max_cycles.max(1)).unwrap_or(u32::MAX),
            clear: r.clear.iter().map(|p| p.get_ref().clone()).collect(),
        }
    }

    fn fan(&mut self, raw: &Spanned<RawFan>) -> Fan {
        let r = raw.get_ref();
        let more_than = *r.more_than.get_ref();
        if more_than < 0 {
            self.err(r.more_than.span(), "fan.more_than", "must be 0 or more");
        }
        let m = *r.engagement_multiplier.get_ref();
        if !(0.0..=1.0).contains(&m) {
            self.err(
                r.engagement_multiplier.span(),
                "fan.engagement_multiplier",
                format!("{m} is out of range 0..=1"),
            );
        }
        Fan {
            more_than: usize::try_from(more_than.max(0)).unwrap_or(usize::MAX),
            window: self
                .duration(&r.window, "fan.window", false)
                .unwrap_or(RuleDuration::days(30.0)),
            counts: r
                .counts
                .as_ref()
                .map_or_else(|| MARKETING_KINDS.to_vec(), |c| self.event_kinds(c, "fan.counts")),
            buying_signal: self.predicate(&r.buying_signal, "fan.buying_signal", false),
            multiplier: m.clamp(0.0, 1.0),
        }
    }

    fn lost(&mut self, raw: &Spanned<RawLost>, signals: &[SignalRule]) -> Lost {
        let r = raw.get_ref();
        let mut recycle_on = Vec::new();
        for (i, name) in r.recycle_on.iter().enumerate() {
            match signals.iter().find(|s| &*s.id == name.get_ref().trim()) {
                Some(s) => recycle_on.push(s.id.clone()),
                None => {
                    let known: Vec<&str> = signals.iter().map(|s| &*s.id).collect();
                    self.err(
                        name.span(),
                        format!("lost.recycle_on[{i}]"),
                        format!(
                            "`{}` is not a signal of [[signals]] (known: {})",
                            name.get_ref(),
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        if let Some(s) = &r.since {
            if self.property_ref(s, "lost.since") && self.props.get(s.get_ref()) != Some(&PropType::Date) {
                self.err(
                    s.span(),
                    "lost.since",
                    format!("`{}` must be declared as a date property", s.get_ref()),
                );
            }
        }
        Lost {
            when: self.predicate(&r.when, "lost.when", false),
            since: r.since.as_ref().map(|s| s.get_ref().clone()),
            recycle_after: self
                .duration(&r.recycle_after, "lost.recycle_after", true)
                .unwrap_or(RuleDuration::INFINITE),
            recycle_on,
        }
    }

    /// One event's match of an engagement rule or a signal: `event` kinds and a `where` on the
    /// event (fields `{f}.event`, `{f}.where`).
    fn event_matcher(
        &mut self,
        event: &Spanned<OneOrMany>,
        filter: Option<&Spanned<RawPredicate>>,
        f: &str,
    ) -> EventPredicate {
        EventPredicate {
            kinds: self.event_kinds(event, &format!("{f}.event")),
            filter: filter.map(|w| self.predicate(w, &format!("{f}.where"), true)),
            within: None,
            count_at_least: 1,
        }
    }

    fn signals(&mut self, raw: &[Spanned<RawSignal>]) -> Vec<SignalRule> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let f = format!("signals[{i}]");
            let r = r.get_ref();
            let id = self.unique_id(&r.id, &f);
            let matcher = self.event_matcher(&r.event, r.filter.as_ref(), &f);
            let away = r
                .away
                .as_ref()
                .and_then(|a| self.duration(a, &format!("{f}.away"), false));
            for (name, t) in [("subject", &r.subject), ("description", &r.description)] {
                if t.get_ref().trim().is_empty() {
                    self.err(
                        t.span(),
                        format!("{f}.{name}"),
                        "must not be empty: it is what the owner reads",
                    );
                }
                if let Err(e) = super::signals::check_template(t.get_ref()) {
                    self.err(t.span(), format!("{f}.{name}"), e);
                }
            }
            out.push(SignalRule {
                id,
                matcher,
                away,
                subject: r.subject.get_ref().trim().to_string(),
                description: r.description.get_ref().trim().to_string(),
            });
        }
        out
    }

    // ---- building blocks -------------------------------------------------------------------

    fn predicate(&mut self, raw: &Spanned<RawPredicate>, field: &str, in_event: bool) -> Predicate {
        let r = raw.get_ref();
        let span = raw.span();
        let mut parts = Vec::new();

        if let Some(all) = &r.all {
            let ps = all
                .iter()
                .enumerate()
                .map(|(i, p)| self.predicate(p, &format!("{field}.all[{i}]"), in_event))
                .collect();
            parts.push(Predicate::All(ps));
        }
        if let Some(any) = &r.any {
            if any.is_empty() {
                self.err(span.clone(), format!("{field}.any"), "an empty `any` can never hold");
            }
            let ps = any
                .iter()
                .enumerate()
                .map(|(i, p)| self.predicate(p, &format!("{field}.any[{i}]"), in_event))
                .collect();
            parts.push(Predicate::Any(ps));
        }
        if let Some(not) = &r.not {
            parts.push(Predicate::Not(Box::new(self.predicate(
                not,
                &format!("{field}.not"),
                in_event,
            ))));
        }

        let subject = match (&r.property, &r.attr) {
            (Some(p), Some(_)) => {
                self.err(p.span(), field, "use `property` or `attr`, not both");
                None
            }
            (Some(p), None) => self.subject(p, &format!("{field}.property")),
            (None, Some(a)) => {
                if !in_event {
                    self.err(
                        a.span(),
                        format!("{field}.attr"),
                        "`attr` is only allowed inside an event's `where`",
                    );
                    None
                } else {
                    match a.get_ref().parse::<EventAttr>() {
                        Ok(at) => {
                            if at == EventAttr::FormKind && self.form_kinds.is_empty() {
                                self.err(a.span(), format!("{field}.attr"), "`form_kind` needs [[forms]] entries");
                            }
                            Some(Subject::Attr(at))
                        }
                        Err(e) => {
                            self.err(a.span(), format!("{field}.attr"), e);
                            None
                        }
                    }
                }
            }
            (None, None) => None,
        };
        let tests = self.tests(r, field, subject.as_ref());
        let has_subject = r.property.is_some() || r.attr.is_some();
        let wrote_a_test = r.known.is_some()
            || r.equals.is_some()
            || r.in_values.is_some()
            || r.in_list.is_some()
            || r.domain_in.is_some()
            || r.matches.is_some()
            || r.at_least.is_some()
            || r.at_most.is_some();
        if has_subject && !wrote_a_test {
            self.err(
                span.clone(),
                field,
                "a `property` needs a test: equals, in, in_list, domain_in, matches, known, at_least or at_most",
            );
        }
        if let Some(subject) = subject {
            parts.extend(tests.into_iter().map(|test| Predicate::Test {
                subject: subject.clone(),
                test,
            }));
        }

        if let Some(t) = &r.fit_at_least {
            let b = self.fit_bounds;
            self.threshold(t, &format!("{field}.fit_at_least"), "fit", b);
            parts.push(Predicate::FitAtLeast(*t.get_ref()));
        }
        if let Some(t) = &r.engagement_at_least {
            let b = self.engagement_bounds;
            self.threshold(t, &format!("{field}.engagement_at_least"), "engagement", b);
            parts.push(Predicate::EngagementAtLeast(*t.get_ref()));
        }

        match &r.event {
            Some(ev) => {
                let kinds = self.event_kinds(ev, &format!("{field}.event"));
                let filter = r
                    .filter
                    .as_ref()
                    .map(|w| self.predicate(w, &format!("{field}.where"), true));
                let within = r
                    .within
                    .as_ref()
                    .and_then(|w| self.duration(w, &format!("{field}.within"), false));
                let count = r.count_at_least.as_ref().map_or(1, |c| {
                    let v = *c.get_ref();
                    if v < 1 {
                        self.err(c.span(), format!("{field}.count_at_least"), "must be 1 or more");
                    }
                    usize::try_from(v.max(1)).unwrap_or(usize::MAX)
                });
                parts.push(Predicate::Event(Box::new(EventPredicate {
                    kinds,
                    filter,
                    within,
                    count_at_least: count,
                })));
            }
            None => {
                for (present, key) in [
                    (r.filter.is_some(), "where"),
                    (r.within.is_some(), "within"),
                    (r.count_at_least.is_some(), "count_at_least"),
                ] {
                    if present {
                        self.err(
                            span.clone(),
                            format!("{field}.{key}"),
                            format!("`{key}` needs an `event`"),
                        );
                    }
                }
            }
        }

        match parts.len() {
            0 => {
                if !has_subject {
                    self.err(
                        span,
                        field,
                        "empty condition: say what must hold (property, event, fit_at_least, all, any, …)",
                    );
                }
                Predicate::Always
            }
            1 => parts.pop().unwrap_or(Predicate::Always),
            _ => Predicate::All(parts),
        }
    }

    fn tests(&mut self, r: &RawPredicate, field: &str, subject: Option<&Subject>) -> Vec<Test> {
        let ptype = match subject {
            Some(Subject::Property(_, name)) => self.props.get(&**name).copied(),
            _ => Some(PropType::String),
        };
        let mut tests = Vec::new();
        let orphan = |c: &mut Self, span: Range<usize>, key: &str| {
            if subject.is_none() && r.property.is_none() && r.attr.is_none() {
                c.err(
                    span,
                    format!("{field}.{key}"),
                    format!("`{key}` needs a `property` (or an `attr` inside `where`)"),
                );
            }
        };
        if let Some(k) = &r.known {
            orphan(self, k.span(), "known");
            tests.push(Test::Known(*k.get_ref()));
        }
        // A text property compared with listed values: the portal check (`check --online`)
        // looks each value up among the HubSpot property's options.
        let text_property = match subject {
            Some(Subject::Property(_, name)) if ptype == Some(PropType::String) => Some(name.to_string()),
            _ => None,
        };
        if let Some(e) = &r.equals {
            orphan(self, e.span(), "equals");
            let v = e.get_ref().to_text().trim().to_string();
            if let Some(p) = &text_property {
                self.enum_ref(p, &v, e.span(), format!("{field}.equals"));
            }
            tests.push(Test::equals(v));
        }
        if let Some(vs) = &r.in_values {
            orphan(self, vs.span(), "in");
            let values: Vec<String> = vs.get_ref().iter().map(|v| v.to_text().trim().to_string()).collect();
            if let Some(p) = &text_property {
                for v in &values {
                    self.enum_ref(p, v, vs.span(), format!("{field}.in"));
                }
            }
            tests.push(Test::one_of(values));
        }
        if let Some(l) = &r.in_list {
            orphan(self, l.span(), "in_list");
            if let Some(set) = self.folded_list(l, &format!("{field}.in_list")) {
                if let Some(p) = &text_property {
                    let name = l.get_ref();
                    let seen = self
                        .enum_refs
                        .iter()
                        .any(|e| e.property == *p && e.field == format!("lists.{name}"));
                    if let Some((items, span)) = self.list_items.get(name).cloned().filter(|_| !seen) {
                        for v in &items {
                            self.enum_ref(p, v, span.clone(), format!("lists.{name}"));
                        }
                    }
                }
                tests.push(Test::InSet(Arc::from(l.get_ref().as_str()), set));
            }
        }
        if let Some(l) = &r.domain_in {
            orphan(self, l.span(), "domain_in");
            if subject.is_some() && !matches!(ptype, Some(PropType::Email)) {
                self.err(
                    l.span(),
                    format!("{field}.domain_in"),
                    "`domain_in` needs a property declared as `email`",
                );
            }
            if let Some(set) = self.list(l, &format!("{field}.domain_in")) {
                tests.push(Test::DomainIn(Arc::from(l.get_ref().as_str()), set));
            }
        }
        if let Some(m) = &r.matches {
            orphan(self, m.span(), "matches");
            if let Some(re) = self.regex(m, &format!("{field}.matches")) {
                let slot = matches!(subject, Some(Subject::Attr(_))).then(|| {
                    self.memo_slots += 1;
                    self.memo_slots - 1
                });
                if let (Some(slot), Some(Subject::Attr(EventAttr::Url))) = (slot, subject) {
                    self.url_patterns.push((slot, re.clone()));
                }
                tests.push(Test::Matches(re, slot));
            }
        }
        for (bound, key, is_min) in [(&r.at_least, "at_least", true), (&r.at_most, "at_most", false)] {
            if let Some(b) = bound {
                orphan(self, b.span(), key);
                if matches!(subject, Some(Subject::Property(..))) && ptype != Some(PropType::Number) {
                    self.err(
                        b.span(),
                        format!("{field}.{key}"),
                        format!("`{key}` needs a property declared as `number`"),
                    );
                }
                let v = *b.get_ref();
                tests.push(if is_min { Test::AtLeast(v) } else { Test::AtMost(v) });
            }
        }
        tests
    }

    fn subject(&mut self, p: &Spanned<String>, field: &str) -> Option<Subject> {
        let name = p.get_ref();
        if let Some(i) = self.derived.get(name) {
            return Some(Subject::Derived(*i, Arc::from(name.as_str())));
        }
        if !self.property_ref(p, field) {
            return None;
        }
        let next = self.prop_slots.len();
        let slot = *self.prop_slots.entry(name.clone()).or_insert(next);
        Some(Subject::Property(slot, Arc::from(name.as_str())))
    }

    fn property_ref(&mut self, p: &Spanned<String>, field: &str) -> bool {
        let ok = self.props.contains_key(p.get_ref());
        if !ok {
            self.err(
                p.span(),
                field,
                format!(
                    "unknown property `{}`: declare it in [properties] with its type",
                    p.get_ref()
                ),
            );
        }
        ok
    }

    fn enum_ref(&mut self, property: &str, value: &str, span: Range<usize>, field: String) {
        let at = self.src.error(span, field.clone(), String::new());
        self.enum_refs.push(EnumRef {
            property: property.to_string(),
            value: value.to_string(),
            field,
            at,
        });
    }

    /// A list folded for `in_list`: values compare with case, spaces and underscores folded.
    fn folded_list(&mut self, l: &Spanned<String>, field: &str) -> Option<Arc<HashSet<String>>> {
        if let Some(set) = self.folded_lists.get(l.get_ref()) {
            return Some(set.clone());
        }
        let plain = self.list(l, field)?;
        let set: Arc<HashSet<String>> = Arc::new(plain.iter().map(|v| fold(v).into_owned()).collect());
        self.folded_lists.insert(l.get_ref().clone(), set.clone());
        Some(set)
    }

    fn list(&mut self, l: &Spanned<String>, field: &str) -> Option<Arc<HashSet<String>>> {
        let found = self.lists.get(l.get_ref()).cloned();
        if found.is_none() {
            self.err(
                l.span(),
                field,
                format!("unknown list `{}`: define it in [lists]", l.get_ref()),
            );
        }
        found
    }

    fn threshold(&mut self, t: &Spanned<f64>, field: &str, score: &str, b: Bounds) {
        let v = *t.get_ref();
        if !v.is_finite() || v < b.min || v > b.max {
            self.err(
                t.span(),
                field,
                format!(
                    "threshold {v} is out of range: {score} is kept within {}..={}",
                    b.min, b.max
                ),
            );
        }
    }

    fn finite(&mut self, v: &Spanned<f64>, field: &str) -> f64 {
        let x = *v.get_ref();
        if !x.is_finite() {
            self.err(v.span(), field, "must be a finite number");
            return 0.0;
        }
        x
    }

    fn unique_id(&mut self, id: &Spanned<String>, field: &str) -> Arc<str> {
        let name = id.get_ref().trim();
        let (line, _) = self.src.line_col(id.span().start);
        if name.is_empty() {
            self.err(id.span(), format!("{field}.id"), "must not be empty");
        } else if let Some(first) = self.ids.get(name) {
            let first = *first;
            self.err(
                id.span(),
                format!("{field}.id"),
                format!("duplicate rule id `{name}` (first defined on line {first})"),
            );
        } else {
            self.ids.insert(name.to_string(), line);
        }
        Arc::from(name)
    }

    fn stage(&mut self, s: &Spanned<String>, field: &str) -> Option<Stage> {
        match s.get_ref().parse::<Stage>() {
            Ok(st) => Some(st),
            Err(e) => {
                self.err(s.span(), field, e);
                None
            }
        }
    }

    fn statuses(&mut self, raw: &[Spanned<String>], field: &str) -> Vec<Status> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, s)| match s.get_ref().parse::<Status>() {
                Ok(Status::Active) | Err(_) => {
                    self.err(
                        s.span(),
                        format!("{field}[{i}]"),
                        format!(
                            "`{}` cannot block (use disqualified, opted_out, fan, recycle, dormant or lost)",
                            s.get_ref()
                        ),
                    );
                    None
                }
                Ok(st) => Some(st),
            })
            .collect()
    }

    fn event_kinds(&mut self, raw: &Spanned<OneOrMany>, field: &str) -> Vec<EventKind> {
        let items = raw.get_ref().items();
        if items.is_empty() {
            self.err(raw.span(), field, "name at least one event kind");
        }
        items
            .into_iter()
            .filter_map(|k| match k.parse::<EventKind>() {
                Ok(k) => Some(k),
                Err(e) => {
                    self.err(raw.span(), field, e);
                    None
                }
            })
            .collect()
    }

    /// Parses a duration; `allow_zero` for cooldowns and delays, never for half-lives and windows.
    fn duration(&mut self, s: &Spanned<String>, field: &str, allow_zero: bool) -> Option<RuleDuration> {
        match s.get_ref().parse::<RuleDuration>() {
            Ok(d) if d.seconds() == 0.0 && !allow_zero => {
                self.err(s.span(), field, "must be more than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(s.span(), field, e);
                None
            }
        }
    }

    /// Compiles a pattern; matching ignores case, since HubSpot values are typed by people.
    fn regex(&mut self, s: &Spanned<String>, field: &str) -> Option<Regex> {
        match RegexBuilder::new(s.get_ref()).case_insensitive(true).build() {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or("invalid").trim().to_string();
                self.err(s.span(), field, format!("invalid regular expression: {last}"));
                None
            }
        }
    }
}
