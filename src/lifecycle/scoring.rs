//! Fit and engagement scores, and the grade: rule points, decay, frequency caps, group and total caps.
//!
//! Order of operations (documented in the rules file too): each event is scored by the first
//! engagement rule that matches it; frequency caps (`once_per`, `max_per_day`, UTC calendar
//! days) zero the extra events; decay halves points every `half_life`; `expire_after` zeroes
//! them; a fan's multiplier scales what is left; groups are clamped to their min and max; the
//! total is clamped last, which also applies the floor of 0.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

use super::decision::{Contribution, GroupTotal, Score};
use super::model::EventAttr;
use super::predicate::{Ctx, Prepared, push_int};
use super::rules::{Bounds, Grades, Group, OncePer, Rules};

/// Rounds a score to 2 decimals, so thresholds compare the value people see.
pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Fit: every rule whose condition holds adds its points.
pub(crate) fn fit<'a>(rules: &'a Rules, ctx: &Ctx<'_>) -> Score<'a> {
    let model = &rules.fit;
    let mut contributions = Vec::with_capacity(model.rules.len());
    let mut sums = vec![0.0; model.groups.len()];
    let mut loose = 0.0;
    for r in &model.rules {
        if r.when.eval(ctx) {
            match r.group {
                Some(g) => sums[g] += r.points,
                None => loose += r.points,
            }
            contributions.push(Contribution {
                rule: Cow::Borrowed(&r.id),
                group: r.group.map(|g| Cow::Borrowed(&*model.groups[g].name)),
                event_id: None,
                age_days: None,
                half_life_days: None,
                points: r.points,
                decayed: r.points,
                counted: r.points,
                note: None,
            });
        }
    }
    finish(contributions, &model.groups, &sums, loose, model.total, None)
}

/// Per-rule bookkeeping for frequency caps while walking events oldest first.
#[derive(Default, Clone)]
struct Caps<'a> {
    day: Option<NaiveDate>,
    today: u32,
    seen: Vec<Option<&'a str>>,
    seen_any: bool,
}

/// Engagement as of `now`, before any fan multiplier.
pub(crate) fn engagement<'a: 'c, 'c>(
    rules: &'a Rules,
    ctx: &Ctx<'c>,
    events: &[Prepared<'a>],
    now: DateTime<Utc>,
) -> Score<'a> {
    let model = &rules.engagement;
    let now_s = now.timestamp();
    let mut caps: Vec<Caps<'_>> = vec![Caps::default(); model.rules.len()];
    let mut contributions = Vec::with_capacity(events.len());
    for p in events {
        let Some(&ri) = model.by_kind[p.event.kind as usize]
            .iter()
            .find(|&&ri| model.rules[ri].matcher.accepts(ctx, *p))
        else {
            continue;
        };
        let rule = &model.rules[ri];
        let cap = &mut caps[ri];
        let mut note = None;

        if let Some(once) = rule.once_per {
            let key = match once {
                OncePer::Contact => None,
                OncePer::Attr(a) => p.attr(a),
            };
            let repeated = match once {
                OncePer::Contact => cap.seen_any,
                OncePer::Attr(_) => key.is_some() && cap.seen.contains(&key),
            };
            if repeated {
                note = Some(Cow::Borrowed(match once {
                    OncePer::Contact => "counted once per contact",
                    OncePer::Attr(a) => once_per_note(a),
                }));
            } else {
                cap.seen_any = true;
                if cap.seen.capacity() == 0 {
                    cap.seen.reserve(8); // a few pages or forms: no regrowth one by one
                }
                cap.seen.push(key);
            }
        }
        if let Some(max) = rule.max_per_day {
            let day = p.event.at.naive_utc().date(); // `date_naive` without adding a zero offset
            if cap.day == Some(day) {
                cap.today += 1;
            } else {
                cap.day = Some(day);
                cap.today = 1;
            }
            if note.is_none() && cap.today > max {
                let mut n = String::with_capacity(16);
                n.push_str("over ");
                push_int(&mut n, u64::from(max));
                n.push_str(" a day");
                note = Some(Cow::Owned(n));
            }
        }

        let age = millis_between(now, now_s, p.event.at).max(0) as f64 / 86_400_000.0;
        let half_life = rule.half_life.as_days();
        let expired = rule.expire_after.is_some_and(|e| age >= e.as_days());
        let decayed = if expired {
            0.0
        } else if rule.half_life.is_infinite() {
            rule.points
        } else {
            rule.points * 0.5f64.powf(age / half_life)
        };
        if expired && note.is_none() {
            note = Some(Cow::Borrowed("expired"));
        }
        let counted = if note.is_some() { 0.0 } else { decayed };
        contributions.push(Contribution {
            rule: Cow::Borrowed(&rule.id),
            group: rule.group.map(|g| Cow::Borrowed(&*model.groups[g].name)),
            event_id: Some(Cow::Borrowed(p.event.id.as_str())),
            age_days: Some(age),
            half_life_days: (!rule.half_life.is_infinite()).then_some(half_life),
            points: rule.points,
            decayed,
            counted,
            note,
        });
    }
    let (sums, loose) = sum_groups(rules, &contributions);
    finish(contributions, &model.groups, &sums, loose, model.total, None)
}

/// `(now - at).num_milliseconds()` (`now_s` is `now.timestamp()`), from the instants' seconds
/// and nanoseconds: chrono's calendar arithmetic cost more per event than the rest of its
/// scoring. An instant inside a leap second goes through chrono.
fn millis_between(now: DateTime<Utc>, now_s: i64, at: DateTime<Utc>) -> i64 {
    const NANOS: i64 = 1_000_000_000;
    let (a, b) = (
        i64::from(now.timestamp_subsec_nanos()),
        i64::from(at.timestamp_subsec_nanos()),
    );
    if a >= NANOS || b >= NANOS {
        return (now - at).num_milliseconds();
    }
    // A `TimeDelta` as chrono keeps it: seconds, and nanoseconds in 0..10⁹.
    let (mut secs, mut nanos) = (now_s - at.timestamp(), a - b);
    if nanos < 0 {
        secs -= 1;
        nanos += NANOS;
    }
    // `num_milliseconds` rounds towards zero.
    if secs < 0 && nanos > 0 {
        (secs + 1) * 1000 + (nanos - NANOS) / 1_000_000
    } else {
        secs * 1000 + nanos / 1_000_000
    }
}

/// Scales every engagement contribution (a fan's damping) and recomputes the caps.
pub(crate) fn damp<'a>(rules: &'a Rules, mut score: Score<'a>, multiplier: f64) -> Score<'a> {
    for c in &mut score.contributions {
        c.counted *= multiplier;
    }
    let (sums, loose) = sum_groups(rules, &score.contributions);
    let model = &rules.engagement;
    finish(
        score.contributions,
        &model.groups,
        &sums,
        loose,
        model.total,
        Some(multiplier),
    )
}

fn sum_groups(rules: &Rules, contributions: &[Contribution]) -> (Vec<f64>, f64) {
    let groups = &rules.engagement.groups;
    let mut sums = vec![0.0; groups.len()];
    let mut loose = 0.0;
    for c in contributions {
        match &c.group {
            Some(g) => {
                // Contributions borrow the group's own name: the pointer finds it without comparing text.
                let same = |x: &Group| std::ptr::eq(x.name.as_ptr(), g.as_ptr()) && x.name.len() == g.len();
                let found = groups
                    .iter()
                    .position(same)
                    .or_else(|| groups.iter().position(|x| *x.name == **g));
                if let Some(i) = found {
                    sums[i] += c.counted;
                }
            }
            None => loose += c.counted,
        }
    }
    (sums, loose)
}

fn finish<'a>(
    contributions: Vec<Contribution<'a>>,
    groups: &'a [Group],
    sums: &[f64],
    loose: f64,
    total: Bounds,
    multiplier: Option<f64>,
) -> Score<'a> {
    let mut out_groups = Vec::with_capacity(groups.len());
    let mut sum = loose;
    let mut uncapped = loose;
    for (g, raw) in groups.iter().zip(sums) {
        let capped = g.bounds.clamp(*raw);
        uncapped += raw;
        sum += capped;
        out_groups.push(GroupTotal {
            group: Cow::Borrowed(&g.name),
            raw: round2(*raw),
            capped: round2(capped),
        });
    }
    Score {
        value: round2(total.clamp(sum)),
        uncapped: round2(uncapped),
        contributions,
        groups: out_groups,
        multiplier,
    }
}

/// Fit letter then engagement digit: `A1` is a great fit on fire, `C3` neither.
pub(crate) fn grade(g: &Grades, fit: f64, engagement: f64) -> String {
    let letter = g
        .fit
        .iter()
        .find(|(_, t)| fit >= *t)
        .map_or(&g.fit_otherwise, |(l, _)| l);
    let digit = g
        .engagement
        .iter()
        .find(|(_, t)| engagement >= *t)
        .map_or(&g.engagement_otherwise, |(d, _)| d);
    [letter.as_str(), digit.as_str()].concat()
}

/// The note of a contribution counted once per value of `a`.
fn once_per_note(a: EventAttr) -> &'static str {
    match a {
        EventAttr::Url => "counted once per page",
        EventAttr::Form => "counted once per form",
        EventAttr::FormKind => "counted once per form kind",
        EventAttr::Campaign => "counted once per campaign",
        EventAttr::Direction => "counted once per direction",
        EventAttr::Outcome => "counted once per outcome",
    }
}

#[cfg(test)]
fn attr_name(a: EventAttr) -> &'static str {
    match a {
        EventAttr::Url => "page",
        EventAttr::Form => "form",
        EventAttr::FormKind => "form kind",
        EventAttr::Campaign => "campaign",
        EventAttr::Direction => "direction",
        EventAttr::Outcome => "outcome",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_age_in_milliseconds_is_chrono_s() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let now = t("2026-11-24T09:00:00.250Z");
        let instants = [
            "2026-11-24T09:00:00.250Z",
            "2026-11-24T09:00:00.2509Z",
            "2026-11-24T09:00:00.2491Z",
            "2026-11-24T08:59:59.999999999Z",
            "2026-11-24T09:00:01.000000001Z",
            "2026-11-25T00:00:00Z",
            "2026-02-28T23:59:59.001Z",
            "2024-02-29T12:00:00.5Z",
            "1969-12-31T23:59:59.999Z",
            "1900-01-01T00:00:00.123456789Z",
            "2100-03-01T00:00:00.7Z",
            "2016-12-31T23:59:60.5Z",
        ];
        for now in [now, t("2016-12-31T23:59:60.25Z"), t("1970-01-01T00:00:00Z")] {
            for at in instants.map(t) {
                assert_eq!(
                    millis_between(now, now.timestamp(), at),
                    (now - at).num_milliseconds(),
                    "{now} - {at}"
                );
                assert_eq!(at.naive_utc().date(), at.date_naive());
            }
        }
    }

    #[test]
    fn each_once_per_note_names_its_attribute() {
        for a in [
            EventAttr::Url,
            EventAttr::Form,
            EventAttr::FormKind,
            EventAttr::Campaign,
            EventAttr::Direction,
            EventAttr::Outcome,
        ] {
            assert_eq!(once_per_note(a), ["counted once per ", attr_name(a)].concat());
        }
    }
}
