//! The SLA file's checks: raw (as written) in, [`SlaFile`] out, every problem reported at once
//! with its file, line and column through [`crate::diagnostics`], like the rules file.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use toml::Spanned;

use super::calendar::{Calendar, Interval};
use super::policy::{
    Attempts, ClockKind, EntryPath, MarketingTarget, Member, Period, Policy, SlaFile, Step, StepAction, TOUCH_KINDS,
    Team, TouchBy, TouchRule,
};
use super::raw::{RawAbsence, RawFile, RawMarketing, RawMember, RawPolicy, RawStep, RawTeam};
use crate::diagnostics::{Diagnostics, SourceText};
use crate::lifecycle::model::RuleDuration;
use crate::lifecycle::{EventKind, Stage};

/// Checks and compiles a parsed file.
pub(super) fn compile(src: &SourceText, raw: RawFile) -> Result<SlaFile, Diagnostics> {
    let mut c = Compiler {
        src,
        diags: Diagnostics::default(),
    };
    let file = c.file(raw);
    c.diags.into_result(file)
}

struct Compiler<'a> {
    src: &'a SourceText,
    diags: Diagnostics,
}

impl Compiler<'_> {
    fn err(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.diags.0.push(self.src.error(span, field, message));
    }

    /// The setting `value` of `field` as one of `choices` (`default` when it is absent); any
    /// other word is an error at its span that lists the choices.
    fn keyword<T: Copy>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: String,
        default: T,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let Some(value) = value else { return Some(default) };
        let word = value.get_ref().as_str();
        if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == word) {
            return Some(*choice);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let listed = match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.err(value.span(), field, format!("`{word}`: use {listed}"));
        None
    }

    fn file(&mut self, raw: RawFile) -> SlaFile {
        let mut teams = Vec::new();
        let mut member_ids: HashMap<String, String> = HashMap::new();
        for (i, t) in raw.teams.iter().enumerate() {
            let field = format!("teams[{i}]");
            if teams.iter().any(|x: &Team| x.id == *t.get_ref().id.get_ref()) {
                let id = &t.get_ref().id;
                self.err(
                    id.span(),
                    format!("{field}.id"),
                    format!("duplicate team id `{}`", id.get_ref()),
                );
            }
            teams.push(self.team(t.get_ref(), &field, &mut member_ids));
        }
        let default_team = match teams.iter().position(|t| t.id == *raw.sla.default_team.get_ref()) {
            Some(i) => i,
            None => {
                let names: Vec<&str> = teams.iter().map(|t| t.id.as_str()).collect();
                self.err(
                    raw.sla.default_team.span(),
                    "sla.default_team",
                    format!(
                        "no team `{}` (teams: {})",
                        raw.sla.default_team.get_ref(),
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
                0
            }
        };
        let mut policies: Vec<Policy> = Vec::new();
        for (i, p) in raw.policies.iter().enumerate() {
            let field = format!("policies[{i}]");
            if let Some(policy) = self.policy(p.get_ref(), &field) {
                if policies.iter().any(|x| x.id == policy.id) {
                    let id = &p.get_ref().id;
                    self.err(
                        id.span(),
                        format!("{field}.id"),
                        format!("duplicate policy id `{}`", policy.id),
                    );
                }
                policies.push(policy);
            }
        }
        let marketing = raw
            .marketing
            .iter()
            .enumerate()
            .filter_map(|(i, m)| self.marketing(m.get_ref(), &format!("marketing[{i}]"), &teams))
            .collect();
        SlaFile {
            version: raw.sla.version.into_inner(),
            description: raw.sla.description,
            teams,
            default_team,
            policies,
            marketing,
        }
    }

    fn team(&mut self, t: &RawTeam, field: &str, member_ids: &mut HashMap<String, String>) -> Team {
        let zone = t.time_zone.get_ref().parse::<Tz>().unwrap_or_else(|_| {
            self.err(
                t.time_zone.span(),
                format!("{field}.time_zone"),
                format!(
                    "`{}` is not an IANA time zone (write e.g. Europe/Paris)",
                    t.time_zone.get_ref()
                ),
            );
            chrono_tz::UTC
        });
        let mut hours: [Vec<Interval>; 7] = Default::default();
        for (d, (day, raw)) in t.hours.days().into_iter().enumerate() {
            if let Some(raw) = raw {
                hours[d] = self.intervals(raw, &format!("{field}.hours.{day}"));
            }
        }
        if hours.iter().all(Vec::is_empty) {
            self.err(
                t.id.span(),
                format!("{field}.hours"),
                "no working hours on any day: write e.g. mon = \"08:00-18:00\"",
            );
        }
        let holidays: BTreeSet<NaiveDate> = t
            .holidays
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.date(h, &format!("{field}.holidays[{i}]")))
            .collect();
        let capacity = t
            .capacity
            .as_ref()
            .and_then(|c| self.count(c, &format!("{field}.capacity")));
        let members = t
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| self.member(m, &format!("{field}.members[{i}]"), member_ids))
            .collect();
        Team {
            id: t.id.get_ref().trim().to_string(),
            calendar: Calendar { zone, hours, holidays },
            capacity,
            manager: t.manager.as_ref().map(|m| m.get_ref().trim().to_string()),
            fallback_owner: t.fallback_owner.as_ref().map(|m| m.get_ref().trim().to_string()),
            members,
        }
    }

    fn member(&mut self, m: &Spanned<RawMember>, field: &str, ids: &mut HashMap<String, String>) -> Member {
        let raw = m.get_ref();
        let email = raw.email.get_ref().trim().to_lowercase();
        if !email.contains('@') {
            self.err(raw.email.span(), format!("{field}.email"), "not an email address");
        }
        if raw.hubspot_owner.is_none() && raw.salesforce_user.is_none() {
            self.err(m.span(), field, "give hubspot_owner, salesforce_user or both");
        }
        for (key, id) in [
            ("hubspot_owner", &raw.hubspot_owner),
            ("salesforce_user", &raw.salesforce_user),
        ] {
            if let Some(id) = id {
                let v = id.get_ref().trim();
                if v.is_empty() {
                    self.err(id.span(), format!("{field}.{key}"), "must not be empty");
                } else if let Some(first) = ids.get(v) {
                    self.err(
                        id.span(),
                        format!("{field}.{key}"),
                        format!("`{v}` is already {first}: a rep belongs to one team, once"),
                    );
                } else {
                    ids.insert(v.to_string(), field.to_string());
                }
            }
        }
        let weight = raw
            .weight
            .as_ref()
            .and_then(|w| self.count(w, &format!("{field}.weight")))
            .unwrap_or(1);
        Member {
            email,
            hubspot_owner: raw.hubspot_owner.as_ref().map(|s| s.get_ref().trim().to_string()),
            salesforce_user: raw.salesforce_user.as_ref().map(|s| s.get_ref().trim().to_string()),
            capacity: raw
                .capacity
                .as_ref()
                .and_then(|c| self.count(c, &format!("{field}.capacity"))),
            weight,
            absences: raw
                .absences
                .iter()
                .enumerate()
                .filter_map(|(i, a)| self.absence(a, &format!("{field}.absences[{i}]")))
                .collect(),
        }
    }

    fn absence(&mut self, a: &Spanned<RawAbsence>, field: &str) -> Option<(NaiveDate, NaiveDate)> {
        let raw = a.get_ref();
        let from = self.date(&raw.from, &format!("{field}.from"));
        let to = self.date(&raw.to, &format!("{field}.to"));
        let (from, to) = (from?, to?);
        if to < from {
            self.err(
                raw.to.span(),
                format!("{field}.to"),
                format!("ends ({to}) before it starts ({from})"),
            );
            return None;
        }
        Some((from, to))
    }

    fn intervals(&mut self, raw: &Spanned<super::raw::OneOrMany>, field: &str) -> Vec<Interval> {
        let mut out: Vec<Interval> = Vec::new();
        for item in raw.get_ref().items() {
            match parse_interval(item) {
                Ok(i) => out.push(i),
                Err(e) => self.err(raw.span(), field, e),
            }
        }
        out.sort_by_key(|i| i.start);
        if out.windows(2).any(|w| w[1].start < w[0].end) {
            self.err(raw.span(), field, "working intervals overlap");
        }
        out
    }

    fn date(&mut self, s: &Spanned<String>, field: &str) -> Option<NaiveDate> {
        match s.get_ref().trim().parse::<NaiveDate>() {
            Ok(d) => Some(d),
            Err(_) => {
                self.err(
                    s.span(),
                    field,
                    format!("`{}` is not a date (write YYYY-MM-DD)", s.get_ref()),
                );
                None
            }
        }
    }

    fn count(&mut self, n: &Spanned<i64>, field: &str) -> Option<u32> {
        match u32::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                self.err(
                    n.span(),
                    field,
                    format!("must be a whole number from 1 (got {})", n.get_ref()),
                );
                None
            }
        }
    }

    fn duration(&mut self, s: &Spanned<String>, field: &str, allow_zero: bool) -> Option<Duration> {
        match s.get_ref().parse::<RuleDuration>() {
            Ok(d) if d.is_infinite() => {
                self.err(s.span(), field, "must be finite (an SLA with no deadline is no SLA)");
                None
            }
            Ok(d) if d.seconds() == 0.0 && !allow_zero => {
                self.err(s.span(), field, "must be more than zero");
                None
            }
            Ok(d) => d.to_chrono(),
            Err(e) => {
                self.err(s.span(), field, e);
                None
            }
        }
    }

    fn policy(&mut self, p: &RawPolicy, field: &str) -> Option<Policy> {
        let stage = match p.stage.get_ref().as_str() {
            "mql" => Some(Stage::Mql),
            "sal" => Some(Stage::Sal),
            "sql" => Some(Stage::Sql),
            other => {
                self.err(
                    p.stage.span(),
                    format!("{field}.stage"),
                    format!("`{other}` is not an entry stage with a sales SLA (use mql, sal or sql)"),
                );
                None
            }
        };
        let path = self.keyword(
            &p.path,
            format!("{field}.path"),
            EntryPath::Any,
            &[
                ("any", EntryPath::Any),
                ("standard", EntryPath::Standard),
                ("shortcut", EntryPath::Shortcut),
            ],
        );
        let clock = self.keyword(
            &p.clock,
            format!("{field}.clock"),
            ClockKind::Business,
            &[("business", ClockKind::Business), ("wall", ClockKind::Wall)],
        );
        let first_touch = self.duration(&p.first_touch, &format!("{field}.first_touch"), false);
        let attempts = p.attempts.as_ref().and_then(|a| {
            let a = a.get_ref();
            let f = format!("{field}.attempts");
            let count = self.count(&a.count, &format!("{f}.count"));
            let within = self.duration(&a.within, &format!("{f}.within"), false);
            let min_interval = match &a.min_interval {
                Some(m) => self.duration(m, &format!("{f}.min_interval"), true),
                None => Some(Duration::zero()),
            };
            Some(Attempts {
                count: count?,
                within: within?,
                min_interval: min_interval?,
            })
        });
        let touches = self.touches(&p.touches, &format!("{field}.touches"));
        let ladder: Vec<Option<Step>> = p
            .ladder
            .iter()
            .enumerate()
            .map(|(i, s)| self.step(s, &format!("{field}.ladder[{i}]")))
            .collect();
        for (i, pair) in ladder.windows(2).enumerate() {
            if let [Some(a), Some(b)] = pair
                && b.after < a.after
            {
                let raw = p.ladder[i + 1].get_ref();
                self.err(
                    raw.after.span(),
                    format!("{field}.ladder[{}].after", i + 1),
                    "steps climb in order: each `after` is at least the previous one",
                );
            }
        }
        Some(Policy {
            id: p.id.get_ref().trim().to_string(),
            stage: stage?,
            path: path?,
            clock: clock?,
            first_touch: first_touch?,
            attempts,
            touches: touches?,
            ladder: ladder.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    fn touches(&mut self, t: &Spanned<super::raw::RawTouches>, field: &str) -> Option<TouchRule> {
        let raw = t.get_ref();
        if raw.kinds.get_ref().is_empty() {
            self.err(
                raw.kinds.span(),
                format!("{field}.kinds"),
                "name at least one kind of touch",
            );
        }
        let mut kinds = Vec::new();
        for (i, k) in raw.kinds.get_ref().iter().enumerate() {
            match k.get_ref().parse::<EventKind>() {
                Ok(kind) if TOUCH_KINDS.contains(&kind) => kinds.push(kind),
                _ => self.err(
                    k.span(),
                    format!("{field}.kinds[{i}]"),
                    format!(
                        "`{}` is not a touch (use call, sales_email, meeting or chat)",
                        k.get_ref()
                    ),
                ),
            }
        }
        let by = self.keyword(
            &raw.by,
            format!("{field}.by"),
            TouchBy::OwnerOrTeam,
            &[
                ("owner", TouchBy::Owner),
                ("owner_or_team", TouchBy::OwnerOrTeam),
                ("anyone", TouchBy::Anyone),
            ],
        );
        let same_touch_within = match &raw.same_touch_within {
            Some(s) => self.duration(s, &format!("{field}.same_touch_within"), true),
            None => Some(Duration::minutes(10)),
        };
        Some(TouchRule {
            kinds,
            by: by?,
            connected_calls_only: raw.connected_calls_only,
            same_touch_within: same_touch_within?,
        })
    }

    fn step(&mut self, s: &Spanned<RawStep>, field: &str) -> Option<Step> {
        let raw = s.get_ref();
        let after = self.duration(&raw.after, &format!("{field}.after"), true);
        let extra = |c: &mut Self, key: &str, v: &Option<Spanned<String>>| {
            if let Some(v) = v {
                c.err(
                    v.span(),
                    format!("{field}.{key}"),
                    format!(
                        "only for step = \"{}\"",
                        if key == "webhook" {
                            "manager_webhook"
                        } else {
                            "sales_rejected"
                        }
                    ),
                );
            }
        };
        let action = match raw.step.get_ref().as_str() {
            "owner_task" | "manager_task" | "reassign" => {
                extra(self, "webhook", &raw.webhook);
                extra(self, "reason", &raw.reason);
                match raw.step.get_ref().as_str() {
                    "owner_task" => Some(StepAction::OwnerTask),
                    "manager_task" => Some(StepAction::ManagerTask),
                    _ => Some(StepAction::Reassign),
                }
            }
            "manager_webhook" => {
                extra(self, "reason", &raw.reason);
                match &raw.webhook {
                    None => {
                        self.err(s.span(), field, "manager_webhook needs webhook = \"https://…\"");
                        None
                    }
                    Some(w) => match url::Url::parse(w.get_ref().trim()) {
                        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(StepAction::ManagerWebhook(u)),
                        _ => {
                            self.err(w.span(), format!("{field}.webhook"), "not an http(s) URL");
                            None
                        }
                    },
                }
            }
            "sales_rejected" => {
                extra(self, "webhook", &raw.webhook);
                let reason = raw
                    .reason
                    .as_ref()
                    .map_or("no_follow_up".to_string(), |r| r.get_ref().trim().to_string());
                if reason.is_empty() {
                    let span = raw.reason.as_ref().map_or(s.span(), Spanned::span);
                    self.err(span, format!("{field}.reason"), "must not be empty");
                }
                Some(StepAction::SalesRejected(reason))
            }
            other => {
                self.err(
                    raw.step.span(),
                    format!("{field}.step"),
                    format!("`{other}` is not a step (use owner_task, manager_task, manager_webhook, reassign or sales_rejected)"),
                );
                None
            }
        };
        Some(Step {
            after: after?,
            action: action?,
            written_at: self.src.error(s.span(), format!("{field}.step"), ""),
        })
    }

    fn marketing(&mut self, m: &RawMarketing, field: &str, teams: &[Team]) -> Option<MarketingTarget> {
        let mqls = self.count(&m.mqls, &format!("{field}.mqls"));
        let per = match m.per.get_ref().as_str() {
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "quarter" => Some(Period::Quarter),
            other => {
                self.err(
                    m.per.span(),
                    format!("{field}.per"),
                    format!("`{other}`: use week, month or quarter"),
                );
                None
            }
        };
        if let Some(t) = &m.team
            && !teams.iter().any(|x| x.id == *t.get_ref())
        {
            self.err(t.span(), format!("{field}.team"), format!("no team `{}`", t.get_ref()));
        }
        Some(MarketingTarget {
            id: m.id.get_ref().trim().to_string(),
            mqls: mqls?,
            per: per?,
            team: m.team.as_ref().map(|t| t.get_ref().clone()),
            source: m.source.as_ref().map(|s| s.get_ref().trim().to_string()),
        })
    }
}

/// `"08:00-18:00"` as minutes from midnight; the end may be `24:00`.
fn parse_interval(s: &str) -> Result<Interval, String> {
    let bad = || format!("`{s}` is not working hours (write 08:00-18:00)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
    if start >= end {
        return Err(format!("`{s}` ends before it starts"));
    }
    Ok(Interval { start, end })
}
