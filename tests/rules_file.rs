use leadsync::diagnostics::SourceText;
use leadsync::lifecycle::Rules;

use crate::common::default_rules_text;

/// Compiles the default file with `from` replaced by `to`; returns the rendered problems.
fn broken(from: &str, to: &str) -> Vec<String> {
    let text = default_rules_text();
    assert!(
        text.contains(from),
        "fixture drift: `{from}` is not in the default rules"
    );
    let src = SourceText::new("lifecycle.toml", text.replacen(from, to, 1));
    match Rules::from_source(&src) {
        Ok(_) => vec![],
        Err(d) => d.0.iter().map(|x| x.to_string()).collect(),
    }
}

fn line_of(needle: &str) -> usize {
    default_rules_text().lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// Compiles the default file with `from` replaced by `to`, checks that it gives exactly one
/// problem, in this file, naming `field` and saying `message`; returns the problem's line and
/// the line `from` was on.
fn one_problem(from: &str, to: &str, field: &str, message: &str) -> (usize, usize) {
    let problems = broken(from, to);
    assert_eq!(problems.len(), 1, "{to}: {problems:#?}");
    let p = &problems[0];
    assert!(p.starts_with("lifecycle.toml:"), "{p}");
    assert!(p.contains(&format!(": {field}: ")), "expected field {field} in {p}");
    assert!(p.contains(message), "expected `{message}` in {p}");
    let line: usize = p.split(':').nth(1).unwrap().parse().unwrap();
    (line, line_of(from.lines().next().unwrap()))
}

#[test]
fn the_shipped_rules_compile() {
    assert!(broken("version = \"2026.11.1\"", "version = \"2026.11.1\"").is_empty());
}

#[test]
fn each_mistake_is_reported_with_file_line_column_and_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "id = \"sal\"",
            "id = \"prospect\"",
            "stages[3].id",
            "unknown stage `prospect`",
        ),
        (
            "when = { property = \"persona\", equals = \"revops_leader\" }",
            "when = { property = \"persona_x\", equals = \"revops_leader\" }",
            "fit.rules[0].when.property",
            "unknown property `persona_x`",
        ),
        (
            "id = \"senior_head\"",
            "id = \"persona_revops\"",
            "fit.rules[4].id",
            "duplicate rule id `persona_revops`",
        ),
        (
            "half_life = \"45d\"",
            "half_life = \"-45d\"",
            "engagement.rules[11].half_life",
            "negative",
        ),
        (
            "half_life = \"10d\"",
            "half_life = \"0d\"",
            "engagement.rules[1].half_life",
            "more than zero",
        ),
        (
            "  { fit_at_least = 40, engagement_at_least = 35 },",
            "  { fit_at_least = 40, engagement_at_least = 350 },",
            "stages[2].when.any[0].engagement_at_least",
            "out of range",
        ),
        (
            "matches = \"/(pricing|tarifs)\"",
            "matches = \"/(pricing|tarifs\"",
            "engagement.rules[1].where.matches",
            "invalid regular expression",
        ),
        ("more_than = 40", "more_than = -1", "fan.more_than", "must be 0 or more"),
        (
            "engagement_multiplier = 0.25",
            "engagement_multiplier = 1.5",
            "fan.engagement_multiplier",
            "out of range",
        ),
        (
            "event = \"email_click\"",
            "event = \"email_clik\"",
            "engagement.rules[5].event",
            "unknown event kind `email_clik`",
        ),
        (
            "where = { attr = \"url\", matches = \"/(pricing|tarifs)\" }",
            "where = { attr = \"uri\", matches = \"/(pricing|tarifs)\" }",
            "engagement.rules[1].where.attr",
            "unknown event attribute `uri`",
        ),
        (
            "group = \"persona\"\npoints = 25",
            "group = \"personas\"\npoints = 25",
            "fit.rules[0].group",
            "unknown group `personas`",
        ),
        (
            "domain_in = \"competitor_domains\"",
            "domain_in = \"competitors\"",
            "gates.rules[0].when.domain_in",
            "unknown list `competitors`",
        ),
    ];
    for (from, to, field, message) in cases {
        let (line, expect) = one_problem(from, to, field, message);
        let first_line_of_change = to.lines().next().unwrap();
        assert!(
            line == expect || first_line_of_change.contains("when"),
            "{to}: at line {line}, expected line {expect}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = default_rules_text()
        .replacen("id = \"sal\"", "id = \"prospect\"", 1)
        .replacen("half_life = \"45d\"", "half_life = \"-45d\"", 1)
        .replacen("matches = \"/(pricing|tarifs)\"", "matches = \"(\"", 1);
    let err = Rules::from_source(&SourceText::new("x.toml", text)).unwrap_err();
    assert_eq!(err.len(), 3, "{err}");
    let lines: Vec<usize> = err.0.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "sorted by position");
}

#[test]
fn syntax_and_shape_errors_are_located() {
    let p = broken("max_cycles = 3", "max_cycles = = 3");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with(&format!("lifecycle.toml:{}:", line_of("max_cycles = 3"))),
        "{}",
        p[0]
    );
    let p = broken("cooldown = \"30d\"", "cooldown = \"30d\"\nretries = 2");
    assert!(p[0].contains("retries"), "{}", p[0]);
}

// README (The sales SLA): the rules file's old `[[sla]]` timers are refused, pointing at
// mappings/sla.toml, with their file and line.
#[test]
fn an_old_sla_timer_in_the_rules_is_refused_pointing_at_the_sla_file() {
    let from = "# ---- The sales SLA (first touch, attempts, the breach ladder) lives in mappings/sla.toml.";
    let line = line_of(from);
    let errs = broken(
        from,
        "[[sla]]\nid = \"first_touch\"\nstarts_at = \"mql\"\ndue = \"24h\"",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert!(e.contains(&format!("lifecycle.toml:{line}:")), "{e}");
    assert!(e.contains("sla[0]") && e.contains("mappings/sla.toml"), "{e}");
}

// README (What each team sees of the other): a buying signal or a lost contact's `recycle_on`
// written wrong is refused at its file:line, with its field.
#[test]
fn a_signal_written_wrong_is_reported_with_its_line_and_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "recycle_on = [\"pricing_visit\"",
            "recycle_on = [\"pricing_vist\"",
            "lost.recycle_on[0]",
            "`pricing_vist` is not a signal of [[signals]]",
        ),
        ("away = \"30d\"", "away = \"30x\"", "signals[3].away", ""),
        (
            "subject = \"Buying signal: pricing page visit on {date}\"",
            "subject = \"Buying signal: pricing page visit on {day}\"",
            "signals[2].subject",
            "unknown placeholder `{day}`",
        ),
        (
            "description = \"leadsync: this contact asked for a demo ({detail}) at {at}. Call them today.\"",
            "description = \"leadsync: this contact asked for a demo ({detail} at {at}. Call {them today.\"",
            "signals[0].description",
            "never closed",
        ),
        (
            "event = [\"page_view\", \"form_submission\", \"email_click\", \"webinar_attended\"]",
            "event = [\"page_vue\", \"form_submission\", \"email_click\", \"webinar_attended\"]",
            "signals[3].event",
            "unknown event kind `page_vue`",
        ),
        (
            "where = { attr = \"form_kind\", equals = \"demo_request\" }\nsubject",
            "where = { attr = \"form_knd\", equals = \"demo_request\" }\nsubject",
            "signals[0].where.attr",
            "unknown event attribute `form_knd`",
        ),
    ];
    for (from, to, field, message) in cases {
        let (line, expect) = one_problem(from, to, field, message);
        assert_eq!(line, expect, "{to}");
    }
    // Signal ids share the rules' one namespace: an engagement rule named like a signal makes
    // the signal, defined later, the duplicate.
    let problems = broken("id = \"webinar\"", "id = \"came_back\"");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let want = format!("lifecycle.toml:{}:", line_of("id = \"came_back\""));
    assert!(problems[0].starts_with(&want), "{problems:?}");
    assert!(
        problems[0].contains(": signals[3].id: duplicate rule id `came_back`"),
        "{problems:?}"
    );
}
