//! Decisions in words, for the revops people who have to answer "why is this contact an MQL?".

use std::fmt::Write as _;

use super::decision::{Action, Change, Contribution, Decision, Score};
use super::predicate::fmt_num;

/// How many contributions of a score are listed one by one before the rest is summed up.
const LISTED: usize = 12;

/// A multi-line explanation of one decision.
pub fn render_text(d: &Decision) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Contact {} at {} · rules {} ({})",
        d.contact_id,
        d.at.format("%Y-%m-%d %H:%M UTC"),
        d.rules_version,
        d.rules_hash
    );
    let stage = d.stage.map_or("none", |s| s.as_str());
    let was = match d.previous_stage {
        p if p == d.stage => String::new(),
        Some(p) => format!(" (was {p})"),
        None => " (new)".to_string(),
    };
    let _ = writeln!(s, "Stage {stage}{was} · status {} · grade {}", d.status, d.grade);
    if let Some(r) = &d.stage_reason {
        let _ = writeln!(s, "  {r}");
    }
    if let Some(r) = &d.status_reason {
        let _ = writeln!(s, "  status: {r}");
    }
    if !d.derived.is_empty() {
        let kv: Vec<_> = d.derived.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "  derived: {}", kv.join(", "));
    }
    s.push('\n');
    score_section(&mut s, "Fit", &d.fit, false);
    s.push('\n');
    score_section(&mut s, "Engagement", &d.engagement, true);

    if !d.transitions.is_empty() {
        s.push_str("\nChanges\n");
        for t in &d.transitions {
            let what = match &t.change {
                Change::Stage { from, to } => format!("{} → {to}", from.map_or("none", |f| f.as_str())),
                Change::Skipped { stage } => format!("{stage} skipped"),
                Change::Recycle { from, to, cycle } => {
                    format!("recycle #{cycle}: {} → {to}", from.map_or("none", |f| f.as_str()))
                }
                Change::Status { from, to } => format!("status {from} → {to}"),
            };
            let _ = writeln!(s, "  {what}: {}", t.reason);
        }
    }
    if !d.actions.is_empty() {
        s.push_str("\nActions\n");
        for a in &d.actions {
            let line = match a {
                Action::WriteHubSpot { properties } => {
                    let kv: Vec<_> = properties
                        .iter()
                        .map(|(k, v)| {
                            if v.is_empty() {
                                format!("{k} cleared")
                            } else {
                                format!("{k}={v}")
                            }
                        })
                        .collect();
                    format!("write to HubSpot: {}", kv.join(", "))
                }
                Action::SetLifecycleStage { value, backward: true } => {
                    format!("set HubSpot lifecycle stage to {value} (backward: clear, then set)")
                }
                Action::SetLifecycleStage { value, .. } => format!("set HubSpot lifecycle stage to {value}"),
                Action::PromoteToSalesforce => {
                    "create or link the Salesforce Account, Contact and Opportunity".to_string()
                }
            };
            let _ = writeln!(s, "  {line}");
        }
    }
    if !d.notes.is_empty() {
        s.push_str("\nNotes\n");
        for n in &d.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    s
}

fn score_section(s: &mut String, title: &str, score: &Score, dated: bool) {
    let _ = write!(s, "{title} {}", fmt_num(score.value));
    if (score.uncapped - score.value).abs() > 0.005 {
        let _ = write!(s, " (before caps {})", fmt_num(score.uncapped));
    }
    if let Some(m) = score.multiplier {
        let _ = write!(s, " (damped ×{m})");
    }
    s.push('\n');
    let mut listed: Vec<&Contribution> = score.contributions.iter().collect();
    listed.sort_by(|a, b| {
        b.counted
            .abs()
            .total_cmp(&a.counted.abs())
            .then(a.age_days.unwrap_or(0.0).total_cmp(&b.age_days.unwrap_or(0.0)))
    });
    for c in listed.iter().take(LISTED) {
        let _ = write!(s, "  {:>6}  {}", signed(c.counted), c.rule);
        if dated {
            if let Some(age) = c.age_days {
                let _ = write!(s, ": {} d old", fmt_num(age));
                match c.half_life_days {
                    Some(h) => {
                        let _ = write!(
                            s,
                            ", half-life {} d, {} → {}",
                            fmt_num(h),
                            fmt_num(c.points),
                            fmt_num(c.decayed)
                        );
                    }
                    None => {
                        let _ = write!(s, ", no decay");
                    }
                }
            }
            if let Some(id) = &c.event_id {
                let _ = write!(s, " [event {id}]");
            }
        }
        if let Some(n) = &c.note {
            let _ = write!(s, " ({n})");
        }
        s.push('\n');
    }
    if listed.len() > LISTED {
        let rest: f64 = listed[LISTED..].iter().map(|c| c.counted).sum();
        let _ = writeln!(s, "  {:>6}  {} more contributions", signed(rest), listed.len() - LISTED);
    }
    if score.contributions.is_empty() {
        s.push_str("  nothing scored\n");
    }
    for g in score.groups.iter().filter(|g| (g.raw - g.capped).abs() > 0.005) {
        let _ = writeln!(
            s,
            "  group {} capped {} → {}",
            g.group,
            fmt_num(g.raw),
            fmt_num(g.capped)
        );
    }
}

fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", fmt_num(v))
    } else {
        fmt_num(v)
    }
}
