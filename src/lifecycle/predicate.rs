//! Compiled conditions and their evaluation against one contact at one moment.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use regex::Regex;

use super::model::{EventAttr, EventKind, RuleDuration};
use super::snapshot::Event;

/// A condition, checked once at load time, cheap to evaluate.
#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    /// Always true (an empty table).
    Always,
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
    Test {
        subject: Subject,
        test: Test,
    },
    FitAtLeast(f64),
    EngagementAtLeast(f64),
    Event(Box<EventPredicate>),
}

/// What a test reads.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// A HubSpot property: its slot in the per-evaluation cache, and its name.
    Property(usize, Arc<str>),
    /// A value derived by `[derive.NAME]`, by index.
    Derived(usize, Arc<str>),
    /// An attribute of the event being matched (only inside `where`).
    Attr(EventAttr),
}

/// How a value is tested. Text comparisons fold case, surrounding spaces, and runs of spaces and
/// underscores (`COMPUTER_SOFTWARE` is `Computer Software`: HubSpot's enumeration value and label).
#[derive(Debug, Clone)]
pub(crate) enum Test {
    Known(bool),
    /// A text, and the same folded once at load (what [`fold_eq`] compares).
    Equals(String, Box<str>),
    /// Texts, and the same folded once at load.
    In(Vec<String>, Vec<Box<str>>),
    InSet(Arc<str>, Arc<HashSet<String>>),
    DomainIn(Arc<str>, Arc<HashSet<String>>),
    /// A pattern; on an event attribute, `Some(slot)` memoises the result per event.
    Matches(Regex, Option<usize>),
    AtLeast(f64),
    AtMost(f64),
}

/// "At least N events of these kinds, matching `where`, within a window".
#[derive(Debug, Clone)]
pub(crate) struct EventPredicate {
    /// Kinds accepted; never empty.
    pub kinds: Vec<EventKind>,
    pub filter: Option<Predicate>,
    pub within: Option<RuleDuration>,
    pub count_at_least: usize,
}

/// An event with what the engine derived for it once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<'a> {
    pub event: &'a Event,
    pub form_kind: Option<&'a str>,
    /// Position among the evaluation's events (row of the memo table).
    pub index: usize,
    /// Row of the memo table for patterns on the URL: the first event with the same URL.
    pub url_row: usize,
}

impl<'a> Prepared<'a> {
    /// The value of one attribute of the event, if it has one.
    pub fn attr(&self, a: EventAttr) -> Option<&'a str> {
        let e = self.event;
        match a {
            EventAttr::Url => e.url.as_deref(),
            EventAttr::Form => e.form.as_deref(),
            EventAttr::FormKind => self.form_kind,
            EventAttr::Campaign => e.campaign.as_deref(),
            EventAttr::Direction => e.direction.map(|d| d.as_str()),
            EventAttr::Outcome => e.outcome.as_deref(),
        }
    }
}

/// Everything a condition may read.
pub(crate) struct Ctx<'a> {
    pub properties: &'a HashMap<String, String>,
    pub derived: &'a [Option<&'a str>],
    pub fit: f64,
    pub engagement: f64,
    /// Events that count now: deduplicated, not in the future, in the current cycle, oldest first.
    pub events: &'a [Prepared<'a>],
    pub now: DateTime<Utc>,
    /// The event a `where` is being matched against: set in place for each event (a context
    /// copied per event and condition cost more than the condition).
    pub event: Cell<Option<Prepared<'a>>>,
    /// Pattern results per (event, slot): 0 unknown, 1 no, 2 yes. Empty disables memoising.
    pub memo: &'a [Cell<u8>],
    /// Slots per event in `memo`.
    pub memo_stride: usize,
    /// Property values by slot, trimmed, `Some(None)` when absent or blank; filled on first use.
    pub props: &'a [Cell<Option<Option<&'a str>>>],
}

impl<'a> Ctx<'a> {
    fn value(&self, subject: &Subject) -> Option<&'a str> {
        let raw = match subject {
            Subject::Property(slot, name) => {
                let cell = &self.props[*slot];
                if let Some(v) = cell.get() {
                    return v;
                }
                let v = self.properties.get(&**name).map(|v| v.trim()).filter(|v| !v.is_empty());
                cell.set(Some(v));
                return v;
            }
            Subject::Derived(i, _) => self.derived[*i],
            Subject::Attr(attr) => self.event.get()?.attr(*attr),
        }?;
        let v = raw.trim();
        (!v.is_empty()).then_some(v)
    }

    /// Whether `filter` holds on one event, in this context.
    fn holds_on(&self, event: Prepared<'a>, filter: &Predicate) -> bool {
        let outer = self.event.replace(Some(event));
        let holds = filter.eval(self);
        self.event.set(outer);
        holds
    }
}

impl Predicate {
    /// True when the condition holds in `ctx`.
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Predicate::Always => true,
            Predicate::All(ps) => ps.iter().all(|p| p.eval(ctx)),
            Predicate::Any(ps) => ps.iter().any(|p| p.eval(ctx)),
            Predicate::Not(p) => !p.eval(ctx),
            Predicate::Test {
                subject,
                test: Test::Matches(re, Some(slot)),
            } if !ctx.memo.is_empty() && ctx.event.get().is_some() => {
                // The same URL is tested by engagement rules, stage criteria and shortcuts: match it once.
                let p = ctx.event.get().expect("checked above");
                let row = match subject {
                    Subject::Attr(EventAttr::Url) => p.url_row,
                    _ => p.index,
                };
                let cell = &ctx.memo[row * ctx.memo_stride + slot];
                match cell.get() {
                    1 => false,
                    2 => true,
                    _ => {
                        let hit = ctx.value(subject).is_some_and(|v| re.is_match(v));
                        cell.set(1 + u8::from(hit));
                        hit
                    }
                }
            }
            Predicate::Test { subject, test } => test.holds(ctx.value(subject)),
            Predicate::FitAtLeast(t) => ctx.fit >= *t,
            Predicate::EngagementAtLeast(t) => ctx.engagement >= *t,
            Predicate::Event(ep) => ep.matching(ctx).nth(ep.count_at_least.saturating_sub(1)).is_some(),
        }
    }

    /// Every engagement threshold the condition names (`engagement ≥ N`), pushed to `out`.
    pub fn engagement_thresholds(&self, out: &mut Vec<f64>) {
        match self {
            Predicate::All(ps) | Predicate::Any(ps) => ps.iter().for_each(|p| p.engagement_thresholds(out)),
            Predicate::Not(p) => p.engagement_thresholds(out),
            Predicate::EngagementAtLeast(t) => out.push(*t),
            Predicate::Event(ep) => {
                if let Some(f) = &ep.filter {
                    f.engagement_thresholds(out);
                }
            }
            Predicate::Always | Predicate::Test { .. } | Predicate::FitAtLeast(_) => {}
        }
    }

    /// Why the condition holds, in words, or `None` when it does not.
    pub fn why(&self, ctx: &Ctx<'_>) -> Option<String> {
        match self {
            Predicate::Always => Some("always".into()),
            Predicate::All(ps) => {
                let mut parts = Vec::with_capacity(ps.len());
                for p in ps {
                    parts.push(p.why(ctx)?);
                }
                Some(parts.join(" and "))
            }
            Predicate::Any(ps) => ps.iter().find_map(|p| p.why(ctx)),
            Predicate::Not(p) => (!p.eval(ctx)).then(|| format!("not ({})", p.describe())),
            Predicate::Test { subject, test } => {
                let v = ctx.value(subject);
                test.holds(v).then(|| {
                    let name = subject.name();
                    match (test, v) {
                        (Test::Known(false), _) => format!("{name} unknown"),
                        (Test::Known(true), Some(v)) => format!("{name} known ({v})"),
                        (Test::AtLeast(t), Some(v)) => format!("{name} {v} ≥ {}", fmt_num(*t)),
                        (Test::AtMost(t), Some(v)) => format!("{name} {v} ≤ {}", fmt_num(*t)),
                        (Test::InSet(list, _) | Test::DomainIn(list, _), Some(v)) => format!("{name} {v} in {list}"),
                        (Test::Matches(re, _), Some(v)) => format!("{name} \"{v}\" matches /{}/", re.as_str()),
                        (_, Some(v)) => format!("{name} = {v}"),
                        (_, None) => name,
                    }
                })
            }
            Predicate::FitAtLeast(t) => (ctx.fit >= *t).then(|| format!("fit {} ≥ {}", fmt_num(ctx.fit), fmt_num(*t))),
            Predicate::EngagementAtLeast(t) => {
                (ctx.engagement >= *t).then(|| format!("engagement {} ≥ {}", fmt_num(ctx.engagement), fmt_num(*t)))
            }
            Predicate::Event(ep) => {
                let (count, last) = ep.matching(ctx).fold((0, None), |(n, _), p| (n + 1, Some(p)));
                let last = last.filter(|_| count >= ep.count_at_least)?;
                Some({
                    // Kind, form and date: one allocation, not one per part.
                    let mut s = String::with_capacity(64);
                    if count > 1 {
                        let _ = write!(s, "{count} × ");
                    }
                    s.push_str(last.event.kind.label());
                    if let Some(k) = last.form_kind.or(last.event.form.as_deref()) {
                        let _ = write!(s, " \"{k}\"");
                    }
                    let _ = write!(s, " on {}", last.event.at.format("%Y-%m-%d"));
                    s
                })
            }
        }
    }

    /// The condition itself in words (for `not`).
    pub fn describe(&self) -> String {
        match self {
            Predicate::Always => "always".into(),
            Predicate::All(ps) => ps.iter().map(Predicate::describe).collect::<Vec<_>>().join(" and "),
            Predicate::Any(ps) => format!(
                "({})",
                ps.iter().map(Predicate::describe).collect::<Vec<_>>().join(" or ")
            ),
            Predicate::Not(p) => format!("not ({})", p.describe()),
            Predicate::Test { subject, test } => {
                let name = subject.name();
                match test {
                    Test::Known(true) => format!("{name} known"),
                    Test::Known(false) => format!("{name} unknown"),
                    Test::Equals(v, _) => format!("{name} = {v}"),
                    Test::In(vs, _) => format!("{name} in [{}]", vs.join(", ")),
                    Test::InSet(l, _) | Test::DomainIn(l, _) => format!("{name} in {l}"),
                    Test::Matches(re, _) => format!("{name} matches /{}/", re.as_str()),
                    Test::AtLeast(t) => format!("{name} ≥ {}", fmt_num(*t)),
                    Test::AtMost(t) => format!("{name} ≤ {}", fmt_num(*t)),
                }
            }
            Predicate::FitAtLeast(t) => format!("fit ≥ {}", fmt_num(*t)),
            Predicate::EngagementAtLeast(t) => format!("engagement ≥ {}", fmt_num(*t)),
            Predicate::Event(ep) => {
                let kinds: Vec<_> = ep.kinds.iter().map(|k| k.label()).collect();
                format!("{} {}", ep.count_at_least, kinds.join("/"))
            }
        }
    }
}

impl Subject {
    fn name(&self) -> String {
        match self {
            Subject::Property(_, n) | Subject::Derived(_, n) => n.to_string(),
            Subject::Attr(a) => format!("{a:?}").to_lowercase(),
        }
    }
}

impl EventPredicate {
    /// Matching events, oldest first.
    fn matching<'c, 'a>(&'c self, ctx: &'c Ctx<'a>) -> impl Iterator<Item = Prepared<'a>> + 'c {
        let from = self
            .within
            .and_then(RuleDuration::to_chrono)
            .and_then(|w| ctx.now.checked_sub_signed(w));
        // Events are oldest first: skip straight to the window.
        let start = from.map_or(0, |f| ctx.events.partition_point(|p| p.event.at < f));
        ctx.events[start..].iter().copied().filter(move |p| {
            self.kinds.contains(&p.event.kind) && self.filter.as_ref().is_none_or(|f| ctx.holds_on(*p, f))
        })
    }

    /// True when one event matches the kinds and the `where` (no window, no count).
    pub fn accepts<'a>(&self, ctx: &Ctx<'a>, event: Prepared<'a>) -> bool {
        self.kinds.contains(&event.event.kind) && self.filter.as_ref().is_none_or(|f| ctx.holds_on(event, f))
    }
}

impl Test {
    /// `equals`: the text, folded once here.
    pub fn equals(text: String) -> Self {
        let folded = Folded::new(&text).collect::<String>().into();
        Test::Equals(text, folded)
    }

    /// `in`: the texts, folded once here.
    pub fn one_of(texts: Vec<String>) -> Self {
        let folded = texts
            .iter()
            .map(|t| Folded::new(t).collect::<String>().into())
            .collect();
        Test::In(texts, folded)
    }

    fn holds(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return matches!(self, Test::Known(false));
        };
        match self {
            Test::Known(k) => *k,
            Test::Equals(_, e) => folded_eq(v, e),
            Test::In(_, vs) => vs.iter().any(|e| folded_eq(v, e)),
            Test::InSet(_, set) => in_folded(set, v),
            Test::DomainIn(_, set) => email_domain(v).is_some_and(|d| domain_in(set, d)),
            Test::Matches(re, _) => re.is_match(v),
            Test::AtLeast(t) => parse_number(v).is_some_and(|n| n >= *t),
            Test::AtMost(t) => parse_number(v).is_some_and(|n| n <= *t),
        }
    }
}

/// Two texts equal once case, surrounding spaces and runs of spaces or underscores are folded;
/// no allocation.
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    // Rules and HubSpot's enumerations are nearly always ASCII: folded byte by byte, the same
    // answer without decoding characters (this test runs many times per evaluation).
    if a.is_ascii() && b.is_ascii() {
        return FoldedAscii::new(a).eq(FoldedAscii::new(b));
    }
    Folded::new(a).eq(Folded::new(b))
}

/// [`fold_eq`] of `v` and a text whose [`Folded`] characters are `folded`: folding a text that is
/// equal but for ASCII case gives the same characters, so the comparison of the folded texts
/// alone gives the same answer.
fn folded_eq(v: &str, folded: &str) -> bool {
    if v.is_ascii() {
        FoldedAscii::new(v).eq(folded.bytes())
    } else {
        Folded::new(v).eq(folded.chars())
    }
}

/// Texts of a list (`in_list`, folded at load) hold `v` once folded; an ASCII value is folded on
/// the stack, not in a new string.
fn in_folded(set: &HashSet<String>, v: &str) -> bool {
    const MAX: usize = 64;
    if is_plain(v) {
        return set.contains(v);
    }
    if v.is_ascii() && v.len() <= MAX {
        let mut buf = [0u8; MAX];
        let mut n = 0;
        for b in FoldedAscii::new(v) {
            buf[n] = b;
            n += 1;
        }
        return std::str::from_utf8(&buf[..n]).is_ok_and(|f| set.contains(f));
    }
    set.contains(&*fold(v))
}

/// `v` folded (lowercase, runs of spaces and underscores as one space, trimmed); borrowed when
/// it already is.
pub(crate) fn fold(v: &str) -> std::borrow::Cow<'_, str> {
    if is_plain(v) {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned(Folded::new(v).collect())
    }
}

/// Whether [`fold`] keeps `v` as it is (lowercase ASCII, single spaces inside; a vertical tab,
/// which `u8::is_ascii_whitespace` leaves out, counts as a letter here).
fn is_plain(v: &str) -> bool {
    let b = v.as_bytes();
    b.iter()
        .all(|c| c.is_ascii() && !c.is_ascii_uppercase() && *c != b'_' && !c.is_ascii_whitespace() || *c == b' ')
        && !v.contains("  ")
        && b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
}

/// The bytes of an ASCII text as [`Folded`] gives its characters: ASCII letters lowercased,
/// runs of `_` and of what [`char::is_whitespace`] calls a space (tab to carriage return, space)
/// as one space, none at either end.
struct FoldedAscii<'a> {
    bytes: std::slice::Iter<'a, u8>,
    /// A letter held back while the space before it is given.
    held: Option<u8>,
    gap: bool,
    started: bool,
}

impl<'a> FoldedAscii<'a> {
    fn new(s: &'a str) -> Self {
        debug_assert!(s.is_ascii());
        FoldedAscii {
            bytes: s.as_bytes().iter(),
            held: None,
            gap: false,
            started: false,
        }
    }
}

impl Iterator for FoldedAscii<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        if let Some(b) = self.held.take() {
            return Some(b);
        }
        loop {
            let b = *self.bytes.next()?;
            if matches!(b, b'_' | b' ' | b'\t'..=b'\r') {
                self.gap = self.started;
                continue;
            }
            self.started = true;
            let lower = b.to_ascii_lowercase();
            if std::mem::take(&mut self.gap) {
                self.held = Some(lower);
                return Some(b' ');
            }
            return Some(lower);
        }
    }
}

/// The characters of a text as [`fold`] gives them.
struct Folded<'a> {
    chars: std::str::Chars<'a>,
    lower: Option<std::char::ToLowercase>,
    gap: bool,
    started: bool,
}

impl<'a> Folded<'a> {
    fn new(s: &'a str) -> Self {
        Folded {
            chars: s.chars(),
            lower: None,
            gap: false,
            started: false,
        }
    }
}

impl Iterator for Folded<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        if let Some(c) = self.lower.as_mut().and_then(Iterator::next) {
            return Some(c);
        }
        self.lower = None;
        loop {
            let c = self.chars.next()?;
            if c == '_' || c.is_whitespace() {
                self.gap = self.started;
                continue;
            }
            self.started = true;
            let mut lower = c.to_lowercase();
            if std::mem::take(&mut self.gap) {
                self.lower = Some(lower);
                return Some(' ');
            }
            let first = lower.next();
            self.lower = Some(lower);
            return first;
        }
    }
}

fn contains_lowercase(set: &HashSet<String>, v: &str) -> bool {
    if v.bytes().any(|b| b.is_ascii_uppercase()) {
        set.contains(&v.to_ascii_lowercase())
    } else {
        set.contains(v)
    }
}

/// The domain of an email address, or the value itself when it is already a bare domain.
fn email_domain(v: &str) -> Option<&str> {
    let d = v.rsplit_once('@').map_or(v, |(_, d)| d).trim_end_matches('.');
    (!d.is_empty()).then_some(d)
}

/// A domain or any of its parents is in the set (`eu.acme.com` matches `acme.com`).
fn domain_in(set: &HashSet<String>, domain: &str) -> bool {
    let mut d = domain;
    loop {
        if contains_lowercase(set, d) {
            return true;
        }
        match d.split_once('.') {
            Some((_, rest)) if rest.contains('.') => d = rest,
            _ => return false,
        }
    }
}

/// HubSpot numbers arrive as text, sometimes with thousands separators.
pub(crate) fn parse_number(v: &str) -> Option<f64> {
    v.parse::<f64>()
        .ok()
        .or_else(|| v.replace([',', ' ', '\u{a0}'], "").parse().ok())
        .filter(|n: &f64| n.is_finite())
}

/// A score for people: at most two decimals, no trailing zeros (what HubSpot shows too).
pub fn fmt_num(v: f64) -> String {
    let cents = (v * 100.0).round();
    if !cents.is_finite() || cents.abs() > 1e15 {
        return format!("{v}");
    }
    // Integer arithmetic and no formatting machinery: this runs several times per evaluation.
    let c = cents as i64;
    let a = c.unsigned_abs();
    let (int, frac) = (a / 100, a % 100);
    let mut s = String::with_capacity(24);
    if c < 0 {
        s.push('-');
    }
    push_int(&mut s, int);
    if frac != 0 {
        s.push('.');
        s.push(char::from(b'0' + (frac / 10) as u8));
        if frac % 10 != 0 {
            s.push(char::from(b'0' + (frac % 10) as u8));
        }
    }
    s
}

/// Appends the decimal digits of `n` (what `write!(s, "{n}")` gives, without `fmt`).
pub(crate) fn push_int(s: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        s.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> Arc<HashSet<String>> {
        Arc::new(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn tests_on_values() {
        let cases: &[(Test, Option<&str>, bool)] = &[
            (Test::Known(true), Some("x"), true),
            (Test::Known(true), None, false),
            (Test::Known(false), None, true),
            (Test::equals("FR".into()), Some("fr"), true),
            (Test::one_of(vec!["a".into(), "b".into()]), Some("B"), true),
            (Test::InSet("l".into(), set(&["france"])), Some("France"), true),
            // HubSpot enumerations: the API's value and the label exports and forms show
            (
                Test::InSet("l".into(), set(&["computer software"])),
                Some("COMPUTER_SOFTWARE"),
                true,
            ),
            (
                Test::InSet("l".into(), set(&["computer software"])),
                Some(" Computer  Software "),
                true,
            ),
            (
                Test::InSet("l".into(), set(&["computer software"])),
                Some("COMPUTER_HARDWARE"),
                false,
            ),
            (
                Test::equals("COMPUTER_SOFTWARE".into()),
                Some("Computer Software"),
                true,
            ),
            (
                Test::equals("COMPUTER_SOFTWARE".into()),
                Some("computer_software"),
                true,
            ),
            (
                Test::equals("COMPUTER_SOFTWARE".into()),
                Some("ComputerSoftware"),
                false,
            ),
            (
                Test::one_of(vec!["Financial Services".into()]),
                Some("FINANCIAL_SERVICES"),
                true,
            ),
            (Test::equals("Étudiant".into()), Some("ÉTUDIANT"), true),
            (
                Test::DomainIn("l".into(), set(&["gmail.com"])),
                Some("Jo@GMail.com"),
                true,
            ),
            (
                Test::DomainIn("l".into(), set(&["acme.com"])),
                Some("jo@eu.acme.com"),
                true,
            ),
            (
                Test::DomainIn("l".into(), set(&["acme.com"])),
                Some("jo@acme.com.evil.io"),
                false,
            ),
            (Test::DomainIn("l".into(), set(&["com"])), Some("jo@acme.com"), false),
            (Test::AtLeast(50.0), Some("50"), true),
            (Test::AtLeast(50.0), Some("49.99"), false),
            (Test::AtLeast(50.0), Some("1,200"), true),
            (Test::AtLeast(50.0), Some("lots"), false),
            (Test::AtMost(10.0), Some("10"), true),
            (
                Test::Matches(Regex::new("(?i)vp").unwrap(), None),
                Some("VP Sales"),
                true,
            ),
        ];
        for (i, (t, v, want)) in cases.iter().enumerate() {
            assert_eq!(t.holds(*v), *want, "case {i}: {t:?} on {v:?}");
        }
    }

    #[test]
    fn ascii_texts_and_folded_constants_compare_as_folded_characters_do() {
        let texts = [
            "COMPUTER_SOFTWARE",
            "Computer Software",
            "  computer  software ",
            "computer\tsoftware",
            "computer\u{b}software",
            "computer\u{c}\r\nsoftware",
            "computer\u{1f}software",
            "__Computer__Software__",
            "ComputerSoftware",
            "computer software x",
            "",
            " ",
            "_",
            "a",
            "A_",
            "_a",
            "revops_leader",
            "Demo Request",
            "Étudiant",
            "ÉTUDIANT",
            "étudiant",
        ];
        for a in texts {
            if a.is_ascii() {
                let bytes: Vec<u8> = FoldedAscii::new(a).collect();
                let chars: String = Folded::new(a).collect();
                assert_eq!(bytes, chars.as_bytes(), "{a:?}");
            }
            let listed: HashSet<String> = std::iter::once(fold(a).into_owned()).collect();
            assert!(in_folded(&listed, a), "{a:?} in its own folded list");
            for b in texts {
                let by_chars = Folded::new(a).eq(Folded::new(b));
                assert_eq!(fold_eq(a, b), a.eq_ignore_ascii_case(b) || by_chars, "{a:?} vs {b:?}");
                let folded: String = Folded::new(b).collect();
                assert_eq!(folded_eq(a, &folded), fold_eq(a, b), "{a:?} vs folded {b:?}");
                let list: HashSet<String> = std::iter::once(fold(b).into_owned()).collect();
                assert_eq!(in_folded(&list, a), list.contains(&*fold(a)), "{a:?} in [{b:?}]");
            }
        }
    }

    #[test]
    fn numbers_print_like_people_write_them() {
        assert_eq!(fmt_num(45.0), "45");
        assert_eq!(fmt_num(36.2), "36.2");
        assert_eq!(fmt_num(36.244), "36.24");
        assert_eq!(fmt_num(-0.001), "0");
        assert_eq!(fmt_num(-12.05), "-12.05");
        assert_eq!(fmt_num(0.5), "0.5");
    }
}
