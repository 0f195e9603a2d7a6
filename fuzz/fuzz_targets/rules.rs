//! Rules files: compiled, or refused with located diagnostics; what compiles is evaluated on the
//! shipped example snapshots without a panic.
#![no_main]

use chrono::{DateTime, Utc};
use leadsync::diagnostics::SourceText;
use leadsync::lifecycle::{Rules, Snapshot, evaluate, explain};
use libfuzzer_sys::fuzz_target;

const SNAPSHOTS: [&str; 3] = [
    include_str!("../../examples/snapshots/mql-webinar.json"),
    include_str!("../../examples/snapshots/sales-rejected.json"),
    include_str!("../../examples/snapshots/fan.json"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Rules::from_source(&SourceText::new("fuzz.toml", text)) {
        Ok(rules) => {
            let now: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
            for s in SNAPSHOTS {
                let snap: Snapshot = serde_json::from_str(s).unwrap();
                let _ = explain::render_text(&evaluate(&rules, &snap, now));
            }
        }
        Err(d) => {
            assert!(!d.is_empty());
            for e in &d.0 {
                assert!(e.line > 0, "a rules error without a line: {e}");
                assert!(!e.message.is_empty());
            }
        }
    }
});
