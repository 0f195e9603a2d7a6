//! Rule authors' own test cases: `leadsync test-rules DIR` runs every `*.toml` case file in DIR.
//!
//! A case file holds `[[case]]` entries: a snapshot (a JSON file path relative to the case file,
//! or an inline `[case.snapshot]` table), a time, and what is expected. Only the expectations
//! written are checked:
//!
//! ```toml
//! [[case]]
//! name = "VP revops after a webinar and pricing visits is an MQL"
//! at = "2026-11-24T09:00:00Z"
//! snapshot = "../../examples/snapshots/mql-webinar.json"
//! expect = { stage = "mql", status = "active", grade = "A2", fit = { min = 40 }, engagement = { min = 35, max = 60 } }
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::engine::evaluate;
use super::rules::Rules;
use super::snapshot::Snapshot;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceText};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Spanned<RawCase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    at: Spanned<String>,
    snapshot: Spanned<SnapshotSource>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SnapshotSource {
    File(String),
    Inline(Box<Snapshot>),
}

/// What a case expects; absent fields are not checked.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Stage id, or `none`.
    pub stage: Option<String>,
    /// Status id.
    pub status: Option<String>,
    /// Grade such as `A1`.
    pub grade: Option<String>,
    /// Fit bounds (inclusive).
    pub fit: Option<Range>,
    /// Engagement bounds (inclusive).
    pub engagement: Option<Range>,
    /// Whether the decision asks for a Salesforce promotion.
    pub promotes: Option<bool>,
    /// Stages stamped as skipped by this decision.
    pub skipped: Option<Vec<String>>,
}

/// Inclusive score bounds.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Lowest accepted.
    pub min: Option<f64>,
    /// Highest accepted.
    pub max: Option<f64>,
}

/// One case's outcome.
#[derive(Debug)]
pub struct CaseResult {
    /// `file:line`.
    pub location: String,
    /// The case's name.
    pub name: String,
    /// Every expectation that did not hold; empty when the case passes.
    pub mismatches: Vec<String>,
    /// One-line summary of the decision.
    pub headline: String,
}

/// Runs every case file in `dir` (sorted by name). Unreadable or malformed cases are diagnostics.
pub fn run_dir(rules: &Rules, dir: &Path) -> Result<Vec<CaseResult>, Diagnostics> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| single(dir, format!("cannot read directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(single(dir, "no *.toml case files found"));
    }
    let mut results = Vec::new();
    let mut problems = Diagnostics::default();
    for f in files {
        match run_file(rules, &f) {
            Ok(mut r) => results.append(&mut r),
            Err(d) => problems.extend(d),
        }
    }
    problems.into_result(results)
}

/// Runs one case file.
pub fn run_file(rules: &Rules, path: &Path) -> Result<Vec<CaseResult>, Diagnostics> {
    let src = SourceText::read(path)?;
    let file: CaseFile = src.parse_toml()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for case in file.case {
        let (line, _) = src.line_col(case.span().start);
        let c = case.into_inner();
        let at = match DateTime::parse_from_rfc3339(c.at.get_ref()) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                problems.push(src.error(c.at.span(), "case.at", format!("not an RFC 3339 time: {e}")));
                continue;
            }
        };
        let span = c.snapshot.span();
        let snapshot = match c.snapshot.into_inner() {
            SnapshotSource::Inline(s) => *s,
            SnapshotSource::File(rel) => match load_snapshot(&base.join(&rel)) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(src.error(span, "case.snapshot", e));
                    continue;
                }
            },
        };
        let d = evaluate(rules, &snapshot, at);
        out.push(CaseResult {
            location: format!("{}:{line}", path.display()),
            name: c.name,
            mismatches: check(&c.expect, &d),
            headline: super::engine::headline(&d),
        });
    }
    Diagnostics(problems).into_result(out)
}

/// Reads a snapshot JSON file; the error names the file, line and column.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
}

fn check(e: &Expect, d: &super::decision::Decision) -> Vec<String> {
    let mut m = Vec::new();
    let stage = d.stage.map_or("none", |s| s.as_str());
    if let Some(want) = &e.stage {
        if want != stage {
            m.push(format!("stage is {stage}, expected {want}"));
        }
    }
    if let Some(want) = &e.status {
        if want != d.status.as_str() {
            m.push(format!("status is {}, expected {want}", d.status));
        }
    }
    if let Some(want) = &e.grade {
        if *want != d.grade {
            m.push(format!("grade is {}, expected {want}", d.grade));
        }
    }
    for (name, range, value) in [
        ("fit", e.fit, d.fit.value),
        ("engagement", e.engagement, d.engagement.value),
    ] {
        let Some(r) = range else { continue };
        if r.min.is_some_and(|min| value < min) || r.max.is_some_and(|max| value > max) {
            let lo = r.min.map_or("…".into(), |v| v.to_string());
            let hi = r.max.map_or("…".into(), |v| v.to_string());
            m.push(format!("{name} is {value}, expected {lo}..={hi}"));
        }
    }
    if let Some(want) = e.promotes {
        if want != d.promotes() {
            m.push(format!("promotes is {}, expected {want}", d.promotes()));
        }
    }
    if let Some(want) = &e.skipped {
        let got: Vec<&str> = d
            .transitions
            .iter()
            .filter_map(|t| match t.change {
                super::decision::Change::Skipped { stage } => Some(stage.as_str()),
                _ => None,
            })
            .collect();
        if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
            m.push(format!("skipped {got:?}, expected {want:?}"));
        }
    }
    m
}

fn single(path: &Path, message: impl Into<String>) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: message.into(),
    }])
}
