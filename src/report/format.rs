//! The report written out: a table for people, JSON and CSV for spreadsheets and scripts.

use std::fmt::{self, Write};

use super::figures::{Figure, Report};

/// How `leadsync report` writes the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned text.
    Table,
    /// One JSON document.
    Json,
    /// One row per figure: group, metric, value, of, median_h, p90_h, note.
    Csv,
    /// One self-contained HTML file with inline SVG charts, printable to PDF.
    Html,
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Figure::Count(n) => write!(f, "{n}"),
            Figure::Rate { num, of } => write!(f, "{:.1} % ({num}/{of})", 100.0 * *num as f64 / *of as f64),
            Figure::Hours { median, p90, n } => write!(f, "median {median:.1} h, p90 {p90:.1} h (n={n})"),
            Figure::Amount { mean, n } => write!(f, "{mean:.2} (n={n})"),
            Figure::NotAvailable(why) => write!(f, "n/a ({why})"),
        }
    }
}

/// Writes `report` in `format`.
pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Table => table(report),
        ReportFormat::Json => serde_json::to_string_pretty(report).expect("the report serialises") + "\n",
        ReportFormat::Csv => csv(report),
        ReportFormat::Html => super::html::render(report),
    }
}

fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "report {} → {}", r.from.to_rfc3339(), r.to.to_rfc3339());
    for g in &r.groups {
        let title = match r.by {
            Some(by) if g.group != "all" => format!("{by:?} {}", g.group).to_lowercase(),
            _ => g.group.clone(),
        };
        let _ = writeln!(out, "\n== {title}");
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>7}  {:<28} time in stage",
            "stage", "entered", "skipped", "to next stage"
        );
        for s in &g.stages {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:>7}  {:<28} {}",
                s.stage.as_str(),
                s.entered,
                s.skipped,
                s.to_next.to_string(),
                s.time_in_stage
            );
        }
        for k in &g.kpis {
            let _ = writeln!(out, "{:<46} {}", k.name, k.value);
        }
    }
    let _ = writeln!(out, "\n== sales SLA (timers started in the period)");
    match &r.sla_note {
        Some(note) => {
            let _ = writeln!(out, "{note}");
        }
        None => {
            let _ = writeln!(
                out,
                "{:<5} {:<20} {:>4} {:>8} {:>4}  time to first touch",
                "by", "who", "met", "breached", "open"
            );
            for l in &r.sla {
                let _ = writeln!(
                    out,
                    "{:<5} {:<20} {:>4} {:>8} {:>4}  {}",
                    l.by, l.who, l.met, l.breached, l.open, l.first_touch
                );
            }
        }
    }
    if !r.targets.is_empty() {
        let _ = writeln!(out, "\n== marketing SLA (MQLs against targets, prorated to the period)");
        for t in &r.targets {
            let _ = writeln!(out, "{:<28} {:>5} of {:.1}", t.id, t.delivered, t.expected);
        }
    }
    out
}

/// A CSV field, quoted when it must be.
pub(super) fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(out: &mut String, group: &str, metric: &str, f: &Figure) {
    let (value, of, median, p90, note) = match f {
        Figure::Count(n) => (
            n.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Figure::Rate { num, of } => (
            format!("{}", *num as f64 / *of as f64),
            of.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Figure::Hours { median, p90, n } => (
            String::new(),
            n.to_string(),
            median.to_string(),
            p90.to_string(),
            String::new(),
        ),
        Figure::Amount { mean, n } => (
            mean.to_string(),
            n.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Figure::NotAvailable(why) => (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!("n/a ({why})"),
        ),
    };
    let _ = writeln!(
        out,
        "{},{},{value},{of},{median},{p90},{}",
        field(group),
        field(metric),
        field(&note)
    );
}

fn csv(r: &Report) -> String {
    let mut out = String::from("group,metric,value,of,median_h,p90_h,note\n");
    for g in &r.groups {
        for s in &g.stages {
            let st = s.stage.as_str();
            csv_row(&mut out, &g.group, &format!("{st} entered"), &Figure::Count(s.entered));
            csv_row(&mut out, &g.group, &format!("{st} skipped"), &Figure::Count(s.skipped));
            csv_row(&mut out, &g.group, &format!("{st} to next stage"), &s.to_next);
            csv_row(&mut out, &g.group, &format!("{st} time in stage"), &s.time_in_stage);
        }
        for k in &g.kpis {
            csv_row(&mut out, &g.group, &k.name, &k.value);
        }
    }
    match &r.sla_note {
        Some(note) => {
            let _ = writeln!(out, "sla,sales SLA,,,,,{}", field(note));
        }
        None => {
            for l in &r.sla {
                let group = format!("sla {} {}", l.by, l.who);
                csv_row(&mut out, &group, "met", &Figure::Count(l.met));
                csv_row(&mut out, &group, "breached", &Figure::Count(l.breached));
                csv_row(&mut out, &group, "open", &Figure::Count(l.open));
                csv_row(&mut out, &group, "time to first touch", &l.first_touch);
            }
        }
    }
    for t in &r.targets {
        let _ = writeln!(out, "marketing SLA,{},{},{},,,", field(&t.id), t.delivered, t.expected);
    }
    out
}
