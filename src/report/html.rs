//! The report as one self-contained HTML file (inline CSS and SVG, no JavaScript, no external
//! asset) that prints to a clean PDF page; and the page frame the status page shares.

use std::fmt::Write;

use super::figures::{Figure, Report};
use super::svg::{self, Bar, escape};

const CSS: &str = "\
body{font:14px/1.4 system-ui,sans-serif;color:#1b1f24;margin:24px auto;max-width:960px;padding:0 16px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;margin:8px 0;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
svg.chart{max-width:100%;height:auto;font-size:12px}svg .bar{fill:#2f6feb}svg .met{fill:#2da44e}svg .breached{fill:#cf222e}svg .open{fill:#bf8700}\
.muted{color:#57606a}\
@page{margin:14mm 12mm}\
@media print{*{background:transparent!important;box-shadow:none!important}\
body{margin:0;padding:0;max-width:none;font-size:10pt;color:#000}h1{font-size:16pt;margin-top:0}\
h2{font-size:12.5pt;margin-top:16px;break-after:avoid;page-break-after:avoid}\
svg.chart{display:block;width:100%;break-inside:avoid;page-break-inside:avoid}\
table,tr{break-inside:avoid;page-break-inside:avoid}th,td{border-bottom-color:#bbb}\
.muted{color:#444}a{color:inherit;text-decoration:none}}";

/// A whole page: the title, the shared CSS, and `body` (already escaped HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{CSS}</style></head><body><h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    )
}

/// The funnel's bars: each stage, its count and its conversion to the next stage.
pub fn funnel_bars<'a>(lines: impl Iterator<Item = (&'a str, u64, Option<f64>)>) -> Vec<Bar> {
    lines
        .map(|(stage, n, rate)| Bar {
            label: stage.to_string(),
            value: n as f64,
            text: match rate {
                Some(r) => format!("{n} · {:.1} % to next", 100.0 * r),
                None => n.to_string(),
            },
        })
        .collect()
}

/// A rate figure as a fraction, when it is one.
pub(super) fn rate(f: &Figure) -> Option<f64> {
    match f {
        Figure::Rate { num, of } if *of > 0 => Some(*num as f64 / *of as f64),
        _ => None,
    }
}

/// The report of a period as HTML.
pub fn render(r: &Report) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p class=\"muted\">{} → {} (end exclusive), from leadsync's audit log and SLA records.</p>",
        escape(&r.from.to_rfc3339()),
        escape(&r.to.to_rfc3339())
    );
    if let Some(all) = r.groups.first() {
        b.push_str("<h2>Funnel</h2>\n");
        let bars = funnel_bars(
            all.stages
                .iter()
                .map(|s| (s.stage.as_str(), s.entered, rate(&s.to_next))),
        );
        b.push_str(&svg::bars("funnel", "Contacts entering each stage", &bars));
    }
    b.push_str("\n<h2>Time to first touch per week</h2>\n");
    let weeks: Vec<Bar> = r
        .first_touch_weeks
        .iter()
        .map(|w| Bar {
            label: w.week.format("%Y-%m-%d").to_string(),
            value: match w.first_touch {
                Figure::Hours { median, .. } => median,
                _ => 0.0,
            },
            text: w.first_touch.to_string(),
        })
        .collect();
    b.push_str(&svg::bars(
        "first-touch",
        "Median hours to first touch, by week",
        &weeks,
    ));
    b.push_str("\n<h2>Sales SLA compliance</h2>\n");
    match &r.sla_note {
        Some(note) => {
            let _ = writeln!(b, "<p>{}</p>", escape(note));
        }
        None => {
            let rows: Vec<(String, [u64; 3])> = r
                .sla
                .iter()
                .filter(|l| l.by == "team")
                .map(|l| (l.who.clone(), [l.met, l.breached, l.open]))
                .collect();
            b.push_str(&svg::stacked("sla", "SLA timers per team: met, breached, open", &rows));
            b.push_str("\n<table><tr><th>by</th><th>who</th><th>met</th><th>breached</th><th>open</th><th>time to first touch</th></tr>\n");
            for l in &r.sla {
                let _ = writeln!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    escape(l.by),
                    escape(&l.who),
                    l.met,
                    l.breached,
                    l.open,
                    escape(&l.first_touch.to_string())
                );
            }
            b.push_str("</table>\n");
        }
    }
    for g in &r.groups {
        let title = match r.by {
            Some(by) if g.group != "all" => format!("{by:?} {}", g.group).to_lowercase(),
            _ => g.group.clone(),
        };
        let _ = writeln!(b, "<h2>Stages and KPIs: {}</h2>", escape(&title));
        b.push_str("<table><tr><th>stage</th><th>entered</th><th>skipped</th><th>to next stage</th><th>time in stage</th></tr>\n");
        for s in &g.stages {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(s.stage.as_str()),
                s.entered,
                s.skipped,
                escape(&s.to_next.to_string()),
                escape(&s.time_in_stage.to_string())
            );
        }
        b.push_str("</table>\n<table>");
        for k in &g.kpis {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&k.name),
                escape(&k.value.to_string())
            );
        }
        b.push_str("</table>\n");
    }
    if !r.targets.is_empty() {
        b.push_str("<h2>Marketing SLA (MQLs against targets, prorated to the period)</h2>\n<table>");
        for t in &r.targets {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"n\">{} of {:.1}</td></tr>",
                escape(&t.id),
                t.delivered,
                t.expected
            );
        }
        b.push_str("</table>\n");
    }
    page("leadsync monthly report", &b)
}
