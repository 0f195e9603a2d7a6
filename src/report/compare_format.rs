//! The rules comparison written out, side by side: a table for people, JSON and CSV for
//! spreadsheets and scripts, one HTML page.

use std::fmt::Write;

use super::compare::Comparison;
use super::figures::{Figure, GroupReport, Report};
use super::format::{ReportFormat, field};
use super::html::{funnel_bars, page, rate};
use super::svg::{self, escape};
use crate::lifecycle::{Stage, Status};

/// One figure under both rule sets (`None`: that side has no such line, a rejection reason only
/// one side gives, say).
struct Pair {
    metric: String,
    current: Option<Figure>,
    candidate: Option<Figure>,
}

/// One group's figures side by side: the funnel (entries, conversion), then the KPIs.
struct GroupPairs {
    group: String,
    stages: Vec<(Stage, u64, u64, Figure, Figure)>,
    kpis: Vec<Pair>,
}

fn find<'a>(r: &'a Report, group: &str) -> Option<&'a GroupReport> {
    r.groups.iter().find(|g| g.group == group)
}

fn side_by_side(c: &Comparison) -> Vec<GroupPairs> {
    let (a, b) = (&c.current.report, &c.candidate.report);
    let mut names: Vec<&str> = a.groups.iter().map(|g| g.group.as_str()).collect();
    for g in &b.groups {
        if !names.contains(&g.group.as_str()) {
            names.push(&g.group);
        }
    }
    let none = Figure::NotAvailable("no contact in this group under these rules".into());
    names
        .into_iter()
        .map(|name| {
            let (ga, gb) = (find(a, name), find(b, name));
            let stage = |g: Option<&GroupReport>, s: Stage| {
                g.and_then(|g| g.stages.iter().find(|l| l.stage == s))
                    .map_or((0, none.clone()), |l| (l.entered, l.to_next.clone()))
            };
            let stages = Stage::ALL
                .iter()
                .map(|s| {
                    let ((ea, ra), (eb, rb)) = (stage(ga, *s), stage(gb, *s));
                    (*s, ea, eb, ra, rb)
                })
                .collect();
            let mut kpis: Vec<Pair> = Vec::new();
            for (side, g) in [(0, ga), (1, gb)] {
                for k in g.into_iter().flat_map(|g| &g.kpis) {
                    let at = match kpis.iter().position(|p| p.metric == k.name) {
                        Some(i) => i,
                        None => {
                            kpis.push(Pair {
                                metric: k.name.clone(),
                                current: None,
                                candidate: None,
                            });
                            kpis.len() - 1
                        }
                    };
                    let slot = if side == 0 {
                        &mut kpis[at].current
                    } else {
                        &mut kpis[at].candidate
                    };
                    *slot = Some(k.value.clone());
                }
            }
            GroupPairs {
                group: name.to_string(),
                stages,
                kpis,
            }
        })
        .collect()
}

fn shown(f: &Option<Figure>) -> String {
    f.as_ref().map_or_else(|| "-".to_string(), Figure::to_string)
}

fn stage_name(s: Option<Stage>) -> &'static str {
    s.map_or("none", Stage::as_str)
}

fn moved(stage: (Option<Stage>, Option<Stage>), status: (Status, Status)) -> String {
    format!(
        "{}, {} → {}, {}",
        stage_name(stage.0),
        status.0.as_str(),
        stage_name(stage.1),
        status.1.as_str()
    )
}

/// Writes `c` in `format`.
pub fn render(c: &Comparison, format: ReportFormat) -> String {
    match format {
        ReportFormat::Table => table(c),
        ReportFormat::Json => serde_json::to_string_pretty(c).expect("the comparison serialises") + "\n",
        ReportFormat::Csv => csv(c),
        ReportFormat::Html => html(c),
    }
}

fn table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare rules {} → {}: {} contacts replayed from the store",
        c.from.to_rfc3339(),
        c.to.to_rfc3339(),
        c.contacts
    );
    let _ = writeln!(out, "current   {}", c.current.rules);
    let _ = writeln!(out, "candidate {}", c.candidate.rules);
    for g in side_by_side(c) {
        let _ = writeln!(out, "\n== {}", g.group);
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>9} {:>6}  {:<26} to next, candidate",
            "entered", "current", "candidate", "change", "to next, current"
        );
        for (s, ea, eb, ra, rb) in &g.stages {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:>9} {:>+6}  {:<26} {}",
                s.as_str(),
                ea,
                eb,
                *eb as i64 - *ea as i64,
                ra.to_string(),
                rb
            );
        }
        let _ = writeln!(out, "{:<46} {:<26} candidate", "KPI", "current");
        for k in &g.kpis {
            let _ = writeln!(
                out,
                "{:<46} {:<26} {}",
                k.metric,
                shown(&k.current),
                shown(&k.candidate)
            );
        }
    }
    let targets = &c.current.report.targets;
    if !targets.is_empty() {
        let _ = writeln!(out, "\n== marketing SLA (MQLs against targets, prorated to the period)");
        for (a, b) in targets.iter().zip(&c.candidate.report.targets) {
            let _ = writeln!(
                out,
                "{:<28} {:>5} → {:<5} of {:.1}",
                a.id, a.delivered, b.delivered, a.expected
            );
        }
    }
    let _ = writeln!(
        out,
        "\n== contacts whose stage or status would differ if deployed at {}: {}",
        c.at.to_rfc3339(),
        c.differing
    );
    for d in &c.differences {
        let _ = writeln!(
            out,
            "{:<12} {:<40} {}",
            d.contact_id,
            moved(d.stage, d.status),
            d.explain
        );
    }
    if c.differing > c.differences.len() as u64 {
        let _ = writeln!(out, "… and {} more", c.differing - c.differences.len() as u64);
    }
    let k = &c.cost;
    let _ = writeln!(out, "\n== what deploying the candidate would cost");
    let _ = writeln!(
        out,
        "HubSpot: {} contact(s) whose leadsync properties change: {} batch update call(s) (100 a call)",
        k.hubspot_contacts, k.hubspot_write_calls
    );
    let _ = writeln!(
        out,
        "Salesforce: {} new promotion(s): {} call(s) (collections of 200, lookups included; their ids go back to HubSpot in the contacts' own update)",
        k.promotions, k.salesforce_calls
    );
    out
}

/// A figure as one spreadsheet number: a count, a rate as a fraction, a median in hours, a mean.
fn number(f: &Option<Figure>) -> String {
    match f {
        Some(Figure::Count(n)) => n.to_string(),
        Some(Figure::Rate { num, of }) => (*num as f64 / *of as f64).to_string(),
        Some(Figure::Hours { median, .. }) => median.to_string(),
        Some(Figure::Amount { mean, .. }) => mean.to_string(),
        Some(Figure::NotAvailable(_)) | None => String::new(),
    }
}

fn csv(c: &Comparison) -> String {
    let mut out = String::from("section,group,metric,current,candidate\n");
    let mut row = |section: &str, group: &str, metric: &str, a: String, b: String| {
        let _ = writeln!(
            out,
            "{section},{},{},{},{}",
            field(group),
            field(metric),
            field(&a),
            field(&b)
        );
    };
    for g in side_by_side(c) {
        for (s, ea, eb, ra, rb) in g.stages {
            let st = s.as_str();
            row(
                "funnel",
                &g.group,
                &format!("{st} entered"),
                ea.to_string(),
                eb.to_string(),
            );
            row(
                "funnel",
                &g.group,
                &format!("{st} to next stage"),
                number(&Some(ra)),
                number(&Some(rb)),
            );
        }
        for k in &g.kpis {
            row("kpi", &g.group, &k.metric, number(&k.current), number(&k.candidate));
        }
    }
    for (a, b) in c.current.report.targets.iter().zip(&c.candidate.report.targets) {
        row(
            "marketing SLA",
            "all",
            &a.id,
            a.delivered.to_string(),
            b.delivered.to_string(),
        );
    }
    for d in &c.differences {
        row(
            "difference",
            &d.contact_id,
            "stage",
            stage_name(d.stage.0).into(),
            stage_name(d.stage.1).into(),
        );
        row(
            "difference",
            &d.contact_id,
            "status",
            d.status.0.as_str().into(),
            d.status.1.as_str().into(),
        );
    }
    let k = &c.cost;
    for (metric, n) in [
        ("contacts differing", c.differing),
        ("HubSpot contacts written", k.hubspot_contacts),
        ("HubSpot write calls", k.hubspot_write_calls),
        ("Salesforce promotions", k.promotions),
        ("Salesforce calls", k.salesforce_calls),
    ] {
        row("cost", "all", metric, String::new(), n.to_string());
    }
    out
}

fn html(c: &Comparison) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p class=\"muted\">{} → {} (end exclusive), {} contacts replayed from the store. Current: {}. Candidate: {}.</p>",
        escape(&c.from.to_rfc3339()),
        escape(&c.to.to_rfc3339()),
        c.contacts,
        escape(&c.current.rules),
        escape(&c.candidate.rules)
    );
    for (title, side) in [("current rules", &c.current), ("candidate rules", &c.candidate)] {
        if let Some(all) = side.report.groups.first() {
            let _ = writeln!(b, "<h2>Funnel, {title}</h2>");
            let bars = funnel_bars(
                all.stages
                    .iter()
                    .map(|s| (s.stage.as_str(), s.entered, rate(&s.to_next))),
            );
            b.push_str(&svg::bars(
                "funnel",
                &format!("Contacts entering each stage, {title}"),
                &bars,
            ));
        }
    }
    for g in side_by_side(c) {
        let _ = writeln!(b, "<h2>Side by side: {}</h2>", escape(&g.group));
        b.push_str("<table><tr><th>stage</th><th>entered, current</th><th>entered, candidate</th><th>to next, current</th><th>to next, candidate</th></tr>\n");
        for (s, ea, eb, ra, rb) in &g.stages {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"n\">{ea}</td><td class=\"n\">{eb}</td><td>{}</td><td>{}</td></tr>",
                s.as_str(),
                escape(&ra.to_string()),
                escape(&rb.to_string())
            );
        }
        b.push_str("</table>\n<table><tr><th>KPI</th><th>current</th><th>candidate</th></tr>\n");
        for k in &g.kpis {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&k.metric),
                escape(&shown(&k.current)),
                escape(&shown(&k.candidate))
            );
        }
        b.push_str("</table>\n");
    }
    let _ = writeln!(
        b,
        "<h2>Contacts whose stage or status would differ: {}</h2>\n<table>",
        c.differing
    );
    for d in &c.differences {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&d.contact_id),
            escape(&moved(d.stage, d.status)),
            escape(&d.explain)
        );
    }
    let k = &c.cost;
    let _ = writeln!(
        b,
        "</table>\n<h2>What deploying would cost</h2>\n<table><tr><td>HubSpot contacts written</td><td class=\"n\">{}</td></tr><tr><td>HubSpot batch update calls</td><td class=\"n\">{}</td></tr><tr><td>new Salesforce promotions</td><td class=\"n\">{}</td></tr><tr><td>Salesforce calls</td><td class=\"n\">{}</td></tr></table>",
        k.hubspot_contacts, k.hubspot_write_calls, k.promotions, k.salesforce_calls
    );
    page("leadsync: what if the rules change", &b)
}
