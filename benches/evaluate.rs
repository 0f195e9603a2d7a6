//! `cargo bench --bench evaluate`: evaluations per second per core of `evaluate` on a contact
//! with 50 events and the shipped default rules. Prints the median of 15 runs and its ratio to
//! the 250,000/s target. Single-threaded, so the figure is per core.
//!
//! `EVALUATE_ONLY=transition` (or `steady`) runs one line; `EVALUATE_RUNS` and
//! `EVALUATE_PER_RUN` shrink the runs, so `valgrind --tool=callgrind` can count the instructions
//! of a few thousand evaluations (callgrind's counts do not move with the machine's load).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use leadsync::lifecycle::snapshot::Direction;
use leadsync::lifecycle::{Event, EventKind, Rules, Snapshot, evaluate};

const TARGET_PER_SECOND: f64 = 250_000.0;
const RUNS: usize = 15;
const PER_RUN: usize = 20_000;

/// A positive count from the environment, or `default`.
fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn snapshot(now: DateTime<Utc>) -> Snapshot {
    let mut s: Snapshot = serde_json::from_str(
        r#"{"contact_id": "1001", "properties": {
            "email": "camille.durand@acme-logistics.fr", "firstname": "Camille", "lastname": "Durand",
            "company": "Acme Logistics", "jobtitle": "Head of Revenue Operations", "numemployees": "320",
            "industry": "COMPUTER_SOFTWARE", "country": "France", "lifecyclestage": "lead"},
            "state": {"stage": "lead", "hubspot_stage_seen": "lead"}}"#,
    )
    .expect("snapshot");
    let urls = [
        "/pricing",
        "/blog/scoring",
        "/features",
        "/careers",
        "/integrations/salesforce",
    ];
    for i in 0..50u32 {
        let kind = [
            EventKind::PageView,
            EventKind::PageView,
            EventKind::EmailOpen,
            EventKind::EmailClick,
            EventKind::FormSubmission,
            EventKind::WebinarAttended,
            EventKind::PageView,
            EventKind::Call,
        ][i as usize % 8];
        s.events.push(Event {
            id: format!("ev-{i}"),
            kind,
            at: now - Duration::hours(i64::from(i) * 29 + 3),
            url: Some(format!("https://www.example.com{}", urls[i as usize % urls.len()])),
            form: (kind == EventKind::FormSubmission)
                .then(|| ["Ebook: revops", "Newsletter", "Checklist"][i as usize % 3].into()),
            campaign: Some(format!("c-{}", i % 6)),
            direction: (kind == EventKind::Call).then_some(Direction::Outbound),
            outcome: None,
            owner: None,
        });
    }
    s
}

fn main() {
    let rules = Rules::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings/lifecycle.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let now: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().expect("time");
    let moving = snapshot(now);
    let d = evaluate(&rules, &moving, now);
    println!(
        "contact: 50 events, {} scored; decision {}",
        d.engagement.contributions.len(),
        leadsync::lifecycle::headline(&d)
    );
    // The same contact once its decision was stored and written back: what a nightly rescore sees.
    let mut steady = moving.clone();
    steady.state = d.state.clone();
    if let Some(w) = d.hubspot_writes() {
        steady.properties.extend(w.clone());
    }
    steady.properties.insert(
        "lifecyclestage".into(),
        rules.hubspot_value(d.stage.expect("staged")).into(),
    );
    steady.state.hubspot_stage_seen = steady.properties.get("lifecyclestage").cloned();
    let again = evaluate(&rules, &steady, now);
    assert!(
        again.transitions.is_empty(),
        "steady contact should not move: {:?}",
        again.transitions
    );

    let only = std::env::var("EVALUATE_ONLY").unwrap_or_default();
    let (runs, per_run) = (count("EVALUATE_RUNS", RUNS), count("EVALUATE_PER_RUN", PER_RUN));
    for (name, snap) in [
        ("transition (lead → mql every time)", &moving),
        ("steady (no change, nothing to write)", &steady),
    ] {
        if !only.is_empty() && !name.starts_with(only.as_str()) {
            continue;
        }
        for _ in 0..per_run / 4 {
            black_box(evaluate(&rules, black_box(snap), now));
        }
        let mut rates: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..per_run {
                    black_box(evaluate(&rules, black_box(snap), now));
                }
                per_run as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[runs / 2];
        println!(
            "evaluate, {name}: median {:.0}/s/core over {runs} runs of {per_run} (min {:.0}, max {:.0}); {:.2}× the {:.0}/s target; {:.2} µs each",
            median,
            rates[0],
            rates[runs - 1],
            median / TARGET_PER_SECOND,
            TARGET_PER_SECOND,
            1e6 / median
        );
    }
}
