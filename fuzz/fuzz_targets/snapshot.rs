//! Snapshots as `leadsync explain --snapshot` reads them: parsed then explained with the shipped
//! rules, or refused with serde's line and column; never a panic.
#![no_main]

use chrono::{DateTime, Utc};
use leadsync::lifecycle::{Snapshot, evaluate, explain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(snap) = serde_json::from_slice::<Snapshot>(data) else {
        return;
    };
    let rules = leadsync::defaults::embedded_rules().unwrap();
    let now: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
    let d = evaluate(&rules, &snap, now);
    let _ = explain::render_text(&d);
    let _ = serde_json::to_string(&d).unwrap();
});
