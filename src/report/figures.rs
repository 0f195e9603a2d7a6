//! The monthly report's figures, computed from the store's rows ([`ReportRows`]) by pure
//! functions: the funnel of a period, conversions for the cohort that entered, time in stage,
//! acceptance and rejection, the sales SLA per team and rep, opportunities, side statuses and
//! MQLs against the marketing targets.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{Stage, Status};
use crate::sla::policy::{MarketingTarget, Period};
use crate::store::report::{ContactFacts, ReportRows, TimerLine};

/// What a report can be split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The team of the contact's latest SLA timer.
    Team,
    /// The contact's owner.
    Rep,
    /// HubSpot's original source (`hs_analytics_source`).
    Source,
    /// HubSpot's persona (`hs_persona`).
    Persona,
}

impl GroupBy {
    fn name(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::Rep => "rep",
            GroupBy::Source => "source",
            GroupBy::Persona => "persona",
        }
    }

    fn key(self, c: &ContactFacts) -> Option<&str> {
        match self {
            GroupBy::Team => c.team.as_deref(),
            GroupBy::Rep => c.owner.as_deref(),
            GroupBy::Source => c.source.as_deref(),
            GroupBy::Persona => c.persona.as_deref(),
        }
    }

    fn where_from(self) -> &'static str {
        match self {
            GroupBy::Team => "teams come from SLA timers",
            GroupBy::Rep => "owners are set when a contact is promoted to Salesforce",
            GroupBy::Source => "HubSpot's hs_analytics_source property",
            GroupBy::Persona => "HubSpot's hs_persona property",
        }
    }
}

/// Why a report could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An audit line's change does not parse.
    #[error("audit line of contact {contact} at {at}: change `{change}` is not valid: {message}")]
    Audit {
        /// The contact.
        contact: String,
        /// When.
        at: DateTime<Utc>,
        /// The stored change.
        change: String,
        /// The parse error.
        message: String,
    },
    /// `--by` names something no contact in the store has.
    #[error("cannot group by {by}: no contact in the store has one ({why})")]
    CannotGroup {
        /// The grouping asked for.
        by: &'static str,
        /// Where that value would come from.
        why: &'static str,
    },
    /// `--from` is not before `--to`.
    #[error("the period is empty: --from {from} is not before --to {to}")]
    EmptyPeriod {
        /// Start.
        from: DateTime<Utc>,
        /// End.
        to: DateTime<Utc>,
    },
}

/// One figure of the report: a number, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// A count.
    Count(u64),
    /// `num` of `of`.
    Rate {
        /// How many did.
        num: u64,
        /// Out of how many.
        of: u64,
    },
    /// Durations: median and 90th percentile (nearest rank), in hours, over `n` values.
    Hours {
        /// Median, hours.
        median: f64,
        /// 90th percentile, hours.
        p90: f64,
        /// How many durations.
        n: u64,
    },
    /// A mean amount over `n` deals.
    Amount {
        /// The mean.
        mean: f64,
        /// How many deals.
        n: u64,
    },
    /// No input for this figure yet: the text says which.
    NotAvailable(String),
}

impl Figure {
    fn rate(num: u64, of: u64, none: &str) -> Figure {
        if of == 0 {
            Figure::NotAvailable(none.into())
        } else {
            Figure::Rate { num, of }
        }
    }

    fn hours(mut values: Vec<Duration>, none: &str) -> Figure {
        if values.is_empty() {
            return Figure::NotAvailable(none.into());
        }
        values.sort();
        let h = |d: Duration| d.num_seconds() as f64 / 3600.0;
        Figure::Hours {
            median: h(nearest_rank(&values, 50)),
            p90: h(nearest_rank(&values, 90)),
            n: values.len() as u64,
        }
    }
}

/// The `p`th percentile of sorted values by nearest rank (the median of 1, 2, 3, 4 is 2).
pub fn nearest_rank<T: Copy>(sorted: &[T], p: u32) -> T {
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// One stage's line in the funnel of a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageLine {
    /// The stage.
    pub stage: Stage,
    /// Entries in the period, those jumped over by a shortcut included.
    pub entered: u64,
    /// Of which jumped over by a shortcut.
    pub skipped: u64,
    /// Of the cohort that entered in the period, how many went on to the next stage.
    pub to_next: Figure,
    /// Time spent in the stage by those of the cohort who left it (jumps over excluded).
    pub time_in_stage: Figure,
}

/// A named figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    /// What it is.
    pub name: String,
    /// Its value.
    pub value: Figure,
}

/// The report of one group (or of everyone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    /// The group's value (`all` for everyone, `(none)` for contacts without one).
    pub group: String,
    /// The funnel, in stage order.
    pub stages: Vec<StageLine>,
    /// The KPIs, in a fixed order.
    pub kpis: Vec<Kpi>,
}

/// The sales SLA for one team or rep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaLine {
    /// `team` or `rep`.
    pub by: &'static str,
    /// The team or rep id (`(none)` when the timer has none).
    pub who: String,
    /// Time from the clock's start to the first touch.
    pub first_touch: Figure,
    /// Timers met.
    pub met: u64,
    /// Timers breached.
    pub breached: u64,
    /// Timers neither met nor breached yet.
    pub open: u64,
}

/// MQLs delivered against one marketing target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetLine {
    /// The target's id.
    pub id: String,
    /// MQLs promised over the report's period (prorated by days from the target's period).
    pub expected: f64,
    /// MQLs that entered in the period, for the target's team or source.
    pub delivered: u64,
}

/// The whole report of a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// What the groups are split by, if anything.
    pub by: Option<GroupBy>,
    /// `all` first, then each group.
    pub groups: Vec<GroupReport>,
    /// The sales SLA per team, then per rep, from the timers started in the period.
    pub sla: Vec<SlaLine>,
    /// Why there is no SLA line, when there is none.
    pub sla_note: Option<String>,
    /// MQLs against the marketing targets.
    pub targets: Vec<TargetLine>,
    /// Time to first touch per week (Monday, UTC) of the timers started in the period.
    pub first_touch_weeks: Vec<WeekLine>,
}

/// Time to first touch of the timers started in one week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekLine {
    /// The week's Monday, 00:00 UTC (clipped to the period's start).
    pub week: DateTime<Utc>,
    /// From the clock's start to the first touch.
    pub first_touch: Figure,
}

/// The change of an audit line, as `Store::commit` writes it (`lifecycle::Change`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Logged {
    Stage { to: Stage },
    Skipped { stage: Stage },
    Recycle { from: Option<Stage> },
    Status { to: Status },
}

/// One parsed audit line.
#[derive(Debug, Clone)]
struct Line {
    at: DateTime<Utc>,
    change: Logged,
    reason: String,
}

/// The audit of each contact, oldest first.
type Histories = BTreeMap<String, Vec<Line>>;

fn histories(rows: &ReportRows) -> Result<Histories, ReportError> {
    let mut out: Histories = BTreeMap::new();
    for a in &rows.audit {
        let refused = |e: serde_json::Error| ReportError::Audit {
            contact: a.contact_id.clone(),
            at: a.at,
            change: a.change.clone(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(&a.change).map_err(refused)?;
        // Owner assignments (routing, the SLA ladder's reassignment) and the ladder's steps
        // share the audit log without a `kind`: they are no lifecycle move. Found by the
        // simulated month, whose promotions route owners and whose breaches climb the ladder.
        if value.get("kind").is_none() {
            continue;
        }
        let change: Logged = serde_json::from_value(value).map_err(refused)?;
        out.entry(a.contact_id.clone()).or_default().push(Line {
            at: a.at,
            change,
            reason: a.reason.clone(),
        });
    }
    Ok(out)
}

/// An entry into a stage: `skipped` when a shortcut jumped over it.
fn entry(l: &Line) -> Option<(Stage, bool)> {
    match l.change {
        Logged::Stage { to, .. } => Some((to, false)),
        Logged::Skipped { stage } => Some((stage, true)),
        _ => None,
    }
}

fn next_stage(s: Stage) -> Option<Stage> {
    Stage::ALL.iter().copied().skip_while(|x| *x != s).nth(1)
}

/// What followed an entry into a stage: the line that entered the next stage, the line that
/// left the stage (a higher stage or a recycle), both before the next recycle.
fn after(lines: &[Line], i: usize, stage: Stage) -> (Option<&Line>, Option<&Line>) {
    let next = next_stage(stage);
    let mut entered_next = None;
    let mut left = None;
    for l in &lines[i + 1..] {
        match (l.change, entry(l)) {
            (Logged::Recycle { .. }, _) => {
                left = left.or(Some(l));
                break;
            }
            (_, Some((s, _))) if s > stage => {
                left = left.or(Some(l));
                if Some(s) == next {
                    entered_next = Some(l);
                    break;
                }
            }
            _ => {}
        }
    }
    (entered_next, left)
}

fn in_period(at: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    at >= from && at < to
}

/// Stage-to-stage conversion measured over a window: (from, to, converted, cohort) for each
/// consecutive pair from lead to customer (the measured rates of `leadsync plan`).
pub fn measured_rates(
    rows: &ReportRows,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(Stage, Stage, u64, u64)>, ReportError> {
    let h = histories(rows)?;
    let all: Vec<&str> = h.keys().map(String::as_str).collect();
    let stages = funnel(&h, &all, from, to);
    Ok(stages
        .iter()
        .filter(|l| l.stage >= Stage::Lead)
        .filter_map(|l| {
            let next = next_stage(l.stage)?;
            match l.to_next {
                Figure::Rate { num, of } => Some((l.stage, next, num, of)),
                _ => Some((l.stage, next, 0, 0)),
            }
        })
        .collect())
}

/// Entries per stage in a period (shortcut jumps included): what a period delivered.
pub fn delivered(rows: &ReportRows, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(Stage, u64)>, ReportError> {
    let h = histories(rows)?;
    let all: Vec<&str> = h.keys().map(String::as_str).collect();
    Ok(funnel(&h, &all, from, to)
        .iter()
        .map(|l| (l.stage, l.entered))
        .collect())
}

fn funnel(h: &Histories, ids: &[&str], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<StageLine> {
    Stage::ALL
        .iter()
        .map(|&stage| {
            let (mut entered, mut skipped, mut converted) = (0, 0, 0);
            let mut times = Vec::new();
            for id in ids {
                let Some(lines) = h.get(*id) else { continue };
                for (i, l) in lines.iter().enumerate() {
                    let Some((s, jumped)) = entry(l) else { continue };
                    if s != stage || !in_period(l.at, from, to) {
                        continue;
                    }
                    entered += 1;
                    skipped += u64::from(jumped);
                    let (next, left) = after(lines, i, stage);
                    converted += u64::from(next.is_some());
                    if let (false, Some(left)) = (jumped, left) {
                        times.push(left.at - l.at);
                    }
                }
            }
            let to_next = match next_stage(stage) {
                Some(_) => Figure::rate(
                    converted,
                    entered,
                    &format!("no contact entered {} in the period", stage.as_str()),
                ),
                None => Figure::NotAvailable("the last stage".into()),
            };
            StageLine {
                stage,
                entered,
                skipped,
                to_next,
                time_in_stage: Figure::hours(
                    times,
                    &format!("nobody who entered {} in the period left it yet", stage.as_str()),
                ),
            }
        })
        .collect()
}

fn kpis(
    h: &Histories,
    facts: &BTreeMap<String, ContactFacts>,
    ids: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Kpi> {
    let (mut mqls, mut accepted, mut rejected) = (0, 0, 0);
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut sqls, mut to_opportunity, mut won, mut lost) = (0, 0, 0, 0);
    let mut amounts = Vec::new();
    let mut cycles = Vec::new();
    let (mut recycled, mut dormant, mut disqualified) = (0, 0, 0);
    for id in ids {
        let Some(lines) = h.get(*id) else { continue };
        for (i, l) in lines.iter().enumerate() {
            if !in_period(l.at, from, to) {
                continue;
            }
            match (l.change, entry(l)) {
                (_, Some((Stage::Mql, false))) => {
                    mqls += 1;
                    if after(lines, i, Stage::Mql)
                        .0
                        .is_some_and(|n| entry(n) == Some((Stage::Sal, false)))
                    {
                        accepted += 1;
                    }
                    // A rejection: recycled from MQL, or from the SAL it was accepted into.
                    let end = lines[i + 1..].iter().find(|x| {
                        matches!(x.change, Logged::Recycle { .. }) || entry(x).is_some_and(|(s, _)| s > Stage::Sal)
                    });
                    if let Some(Line {
                        change:
                            Logged::Recycle {
                                from: Some(Stage::Mql | Stage::Sal),
                                ..
                            },
                        reason,
                        ..
                    }) = end
                    {
                        rejected += 1;
                        *reasons.entry(reason.as_str()).or_default() += 1;
                    }
                }
                (_, Some((Stage::Sql, _))) => {
                    sqls += 1;
                    if after(lines, i, Stage::Sql).0.is_some() {
                        to_opportunity += 1;
                    }
                }
                (_, Some((Stage::Customer, _))) => {
                    won += 1;
                    if let Some(a) = facts.get(*id).and_then(|f| f.amount) {
                        amounts.push(a);
                    }
                    if let Some(sql) = lines[..i]
                        .iter()
                        .rev()
                        .find(|x| entry(x).is_some_and(|(s, _)| s == Stage::Sql))
                    {
                        cycles.push(l.at - sql.at);
                    }
                }
                (Logged::Status { to: Status::Lost, .. }, _) => lost += 1,
                (
                    Logged::Status {
                        to: Status::Dormant, ..
                    },
                    _,
                ) => dormant += 1,
                (
                    Logged::Status {
                        to: Status::Disqualified,
                        ..
                    },
                    _,
                ) => disqualified += 1,
                (Logged::Recycle { .. }, _) => recycled += 1,
                _ => {}
            }
        }
    }
    let kpi = |name: &str, value: Figure| Kpi {
        name: name.into(),
        value,
    };
    let no_mql = "no MQL entered in the period";
    let mut out = vec![
        kpi("MQLs entered", Figure::Count(mqls)),
        kpi("lead acceptance (MQL → SAL)", Figure::rate(accepted, mqls, no_mql)),
        kpi(
            "lead rejection (MQL or SAL recycled by sales)",
            Figure::rate(rejected, mqls, no_mql),
        ),
    ];
    for (reason, n) in reasons {
        out.push(kpi(&format!("rejected: {reason}"), Figure::Count(n)));
    }
    let mean = (!amounts.is_empty()).then(|| amounts.iter().sum::<f64>() / amounts.len() as f64);
    out.extend([
        kpi(
            "SQL → opportunity",
            Figure::rate(to_opportunity, sqls, "no SQL entered in the period"),
        ),
        kpi(
            "win rate (won of closed)",
            Figure::rate(won, won + lost, "no opportunity closed in the period"),
        ),
        kpi(
            "average deal size (won)",
            match mean {
                Some(mean) => Figure::Amount {
                    mean,
                    n: amounts.len() as u64,
                },
                None => Figure::NotAvailable("no won deal with an amount in the period".into()),
            },
        ),
        kpi(
            "sales cycle (SQL → won)",
            Figure::hours(cycles, "no deal won in the period"),
        ),
        kpi("recycled", Figure::Count(recycled)),
        kpi("dormant", Figure::Count(dormant)),
        kpi("disqualified", Figure::Count(disqualified)),
    ]);
    out
}

fn sla_lines(timers: &[&TimerLine]) -> Vec<SlaLine> {
    let mut out = Vec::new();
    for (by, key) in [
        (
            "team",
            (|t: &TimerLine| t.team.clone()) as fn(&TimerLine) -> Option<String>,
        ),
        ("rep", |t: &TimerLine| t.owner.clone()),
    ] {
        let mut groups: BTreeMap<String, Vec<&TimerLine>> = BTreeMap::new();
        for t in timers {
            groups
                .entry(key(t).unwrap_or_else(|| "(none)".into()))
                .or_default()
                .push(t);
        }
        for (who, ts) in groups {
            let touches = ts
                .iter()
                .filter_map(|t| Some(t.first_touch_at? - t.started_at))
                .collect();
            out.push(SlaLine {
                by,
                who,
                first_touch: Figure::hours(touches, "no first touch yet"),
                met: ts.iter().filter(|t| t.met_at.is_some()).count() as u64,
                breached: ts.iter().filter(|t| t.breached_at.is_some()).count() as u64,
                open: ts
                    .iter()
                    .filter(|t| t.met_at.is_none() && t.breached_at.is_none())
                    .count() as u64,
            });
        }
    }
    out
}

fn weeks(timers: &[&TimerLine], from: DateTime<Utc>) -> Vec<WeekLine> {
    let mut by_week: BTreeMap<DateTime<Utc>, Vec<Duration>> = BTreeMap::new();
    for t in timers {
        let day = t.started_at.date_naive();
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        let week = Utc
            .from_utc_datetime(&monday.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .max(from);
        let touches = by_week.entry(week).or_default();
        if let Some(at) = t.first_touch_at {
            touches.push(at - t.started_at);
        }
    }
    by_week
        .into_iter()
        .map(|(week, touches)| WeekLine {
            week,
            first_touch: Figure::hours(touches, "no first touch yet"),
        })
        .collect()
}

fn period_days(p: Period) -> f64 {
    match p {
        Period::Week => 7.0,
        Period::Month => 365.25 / 12.0,
        Period::Quarter => 365.25 / 4.0,
    }
}

/// The report of `[from, to)` from the store's rows, split by `by` when given.
pub fn compute(
    rows: &ReportRows,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: Option<GroupBy>,
    targets: &[MarketingTarget],
) -> Result<Report, ReportError> {
    if from >= to {
        return Err(ReportError::EmptyPeriod { from, to });
    }
    let h = histories(rows)?;
    let all: Vec<&str> = h.keys().map(String::as_str).collect();
    let group = |name: String, ids: &[&str]| GroupReport {
        group: name,
        stages: funnel(&h, ids, from, to),
        kpis: kpis(&h, &rows.contacts, ids, from, to),
    };
    let mut groups = vec![group("all".into(), &all)];
    if let Some(by) = by {
        let mut split: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for id in &all {
            let key = rows.contacts.get(*id).and_then(|c| by.key(c));
            split.entry(key.unwrap_or("(none)").to_string()).or_default().push(id);
        }
        if split.keys().all(|k| k == "(none)") {
            return Err(ReportError::CannotGroup {
                by: by.name(),
                why: by.where_from(),
            });
        }
        groups.extend(split.iter().map(|(k, ids)| group(k.clone(), ids)));
    }
    let timers: Vec<&TimerLine> = rows
        .timers
        .iter()
        .filter(|t| in_period(t.started_at, from, to))
        .collect();
    let sla_note = timers
        .is_empty()
        .then(|| "n/a (no SLA records in the period)".to_string());
    let days = (to - from).num_seconds() as f64 / 86_400.0;
    let targets = targets
        .iter()
        .map(|t| {
            let delivered = all
                .iter()
                .filter(|id| {
                    let c = rows.contacts.get(**id);
                    let team = c.and_then(|c| c.team.as_deref());
                    let source = c.and_then(|c| c.source.as_deref());
                    t.team.as_deref().is_none_or(|w| team == Some(w))
                        && t.source.as_deref().is_none_or(|w| source == Some(w))
                })
                .flat_map(|id| h.get(*id).into_iter().flatten())
                .filter(|l| in_period(l.at, from, to) && entry(l) == Some((Stage::Mql, false)))
                .count() as u64;
            TargetLine {
                id: t.id.clone(),
                expected: f64::from(t.mqls) * days / period_days(t.per),
                delivered,
            }
        })
        .collect();
    Ok(Report {
        from,
        to,
        by,
        groups,
        sla: sla_lines(&timers),
        sla_note,
        targets,
        first_touch_weeks: weeks(&timers, from),
    })
}

/// The last full calendar month before `now`: the report's default period.
pub fn last_month(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let this = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let (y, m) = if now.month() == 1 {
        (now.year() - 1, 12)
    } else {
        (now.year(), now.month() - 1)
    };
    (Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(this), this)
}

/// The last full calendar quarter before `now`.
pub fn last_quarter(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let q0 = (now.month() - 1) / 3 * 3 + 1;
    let this = Utc.with_ymd_and_hms(now.year(), q0, 1, 0, 0, 0).single().unwrap_or(now);
    let (y, m) = if q0 == 1 {
        (now.year() - 1, 10)
    } else {
        (now.year(), q0 - 3)
    };
    (Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(this), this)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_stored_change_that_does_not_parse_is_an_error_naming_its_contact_and_time() {
        let rows = ReportRows {
            audit: vec![crate::store::report::AuditLine {
                contact_id: "42".into(),
                at: t("2026-11-02T00:00:00Z"),
                change: r#"{"kind":"stage","to":"prospect"}"#.into(),
                reason: "hand-edited".into(),
            }],
            ..ReportRows::default()
        };
        let e = compute(&rows, t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"), None, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("audit line of contact 42 at 2026-11-02 00:00:00 UTC"),
            "{text}"
        );
        assert!(text.contains("prospect"), "{text}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), 2);
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 90), 4);
        assert_eq!(nearest_rank(&[7], 90), 7);
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), 9);
    }

    #[test]
    fn the_default_periods_are_the_last_full_calendar_month_and_quarter() {
        let now = t("2026-12-01T16:00:00Z");
        assert_eq!(last_month(now), (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z")));
        assert_eq!(
            last_month(t("2026-01-15T00:00:00Z")),
            (t("2025-12-01T00:00:00Z"), t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            last_quarter(now),
            (t("2026-07-01T00:00:00Z"), t("2026-10-01T00:00:00Z"))
        );
        assert_eq!(
            last_quarter(t("2026-02-01T00:00:00Z")),
            (t("2025-10-01T00:00:00Z"), t("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn first_touch_is_grouped_by_the_monday_of_the_timers_start() {
        let timer = |start: &str, touch: Option<&str>| TimerLine {
            contact_id: "1".into(),
            policy: "p".into(),
            started_at: t(start),
            first_touch_at: touch.map(t),
            met_at: None,
            breached_at: None,
            owner: None,
            team: None,
        };
        // Sunday 1 Nov belongs to the week of Monday 26 Oct, clipped to the period's start.
        let a = timer("2026-11-01T10:00:00Z", Some("2026-11-01T12:00:00Z"));
        let b = timer("2026-11-03T10:00:00Z", Some("2026-11-03T11:00:00Z"));
        let c = timer("2026-11-04T10:00:00Z", Some("2026-11-04T13:00:00Z"));
        let d = timer("2026-11-05T10:00:00Z", None);
        let w = weeks(&[&a, &b, &c, &d], t("2026-11-01T00:00:00Z"));
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].week, t("2026-11-01T00:00:00Z"));
        assert_eq!(
            w[0].first_touch,
            Figure::Hours {
                median: 2.0,
                p90: 2.0,
                n: 1
            }
        );
        assert_eq!(w[1].week, t("2026-11-02T00:00:00Z"));
        assert_eq!(
            w[1].first_touch,
            Figure::Hours {
                median: 1.0,
                p90: 3.0,
                n: 2
            }
        );
    }
}
