//! Property tests for every parser at leadsync's edge (issue 13): the webhook body and its
//! signature, the rules and configuration compilers, the Salesforce mapping file and the
//! snapshot reader. Each takes arbitrary bytes or text, and structure-aware inputs (a valid file
//! or delivery with one part mutated), and must never panic: it accepts, or it refuses with the
//! typed error that says what and where. What compiles is also run (evaluated, rendered), since
//! a value the compiler lets through must not take the engine down later.
//!
//! The cargo-fuzz targets in `fuzz/` drive the same entry points; the regressions at the end are
//! what fuzzing and these properties found.

use chrono::{DateTime, Utc};
use leadsync::config;
use leadsync::diagnostics::{Diagnostics, SourceText};
use leadsync::hubspot::signature::{self, SignatureError};
use leadsync::lifecycle::{Rules, Snapshot, evaluate, explain};
use leadsync::salesforce::mapping::SalesforceMapping;
use leadsync::server::intake::{IntakeError, webhook_events, workflow_row_of_portal};
use proptest::prelude::*;
use proptest::test_runner::Config;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Case counts keep the whole module well under a minute in a debug build.
fn cases(n: u32) -> Config {
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-24T09:00:00Z".parse().unwrap()
}

const SNAPSHOTS: [&str; 4] = [
    include_str!("../examples/snapshots/mql-webinar.json"),
    include_str!("../examples/snapshots/sales-rejected.json"),
    include_str!("../examples/snapshots/fan.json"),
    include_str!("../examples/snapshots/dormant-lead.json"),
];

fn example_snapshots() -> Vec<Snapshot> {
    SNAPSHOTS.iter().map(|s| serde_json::from_str(s).unwrap()).collect()
}

/// Every diagnostic is in `file`, on a line of it (1-based, at most one past the last line),
/// and says something; its Display starts `file:line:column: `.
fn located(d: &Diagnostics, file: &str, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!d.is_empty(), "an error with no diagnostic");
    let lines = text.split('\n').count();
    for e in &d.0 {
        prop_assert_eq!(e.file.to_str(), Some(file));
        prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {}: {}", e.line, lines, e);
        prop_assert!(e.column >= 1, "{}", e);
        prop_assert!(!e.message.trim().is_empty(), "{}", e);
        let prefix = format!("{file}:{}:{}: ", e.line, e.column);
        prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
    }
    Ok(())
}

// ---- mutations of a valid text file ------------------------------------------------------

/// One edit of a line-oriented text file.
#[derive(Debug, Clone)]
enum Edit {
    /// Drop line `n` (modulo the line count).
    Delete(usize),
    /// Write line `n` twice.
    Duplicate(usize),
    /// Keep `key =` of line `n`, replace what follows.
    Value(usize, String),
    /// Insert a line before line `n`.
    Insert(usize, String),
    /// Cut the file at a character.
    Truncate(usize),
}

/// Values a person (or a bad merge) might write after `=` in TOML.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"\"".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("1e308".to_string()),
        Just("\"99999999999999999999d\"".to_string()),
        Just("\"1e300d\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"(\"".to_string()),
        Just("\"inf\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("\"é\u{0}😀\"".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "[a-z_]{0,12}".prop_map(|s| format!("\"{s}\"")),
        "[0-9]{1,25}[smhdwy]?".prop_map(|s| format!("\"{s}\"")),
        ".{0,16}".prop_map(|s| format!("{:?}", s)),
        ".{0,16}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), toml_value()).prop_map(|(n, v)| Edit::Value(n, v)),
        (any::<usize>(), ".{0,30}").prop_map(|(n, v)| Edit::Insert(n, v)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::Delete(i) => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Value(i, v) => {
                // The n-th line that assigns something (else line n itself).
                let assigns: Vec<usize> = (0..n).filter(|j| lines[*j].contains(" = ")).collect();
                let j = if assigns.is_empty() {
                    i % n
                } else {
                    assigns[i % assigns.len()]
                };
                let key = lines[j].split(" = ").next().unwrap_or("").to_string();
                lines[j] = format!("{key} = {v}");
            }
            Edit::Insert(i, l) => lines.insert(i % (n + 1), l.clone()),
            Edit::Truncate(i) => {
                let all = lines.join("\n");
                let cut: String = all.chars().take(i % (all.chars().count() + 1)).collect();
                lines = cut.lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n")
}

// ---- rules ---------------------------------------------------------------------------------

/// The rules compiler on `text`: compiled rules are evaluated on the example snapshots;
/// refused ones have every diagnostic located.
fn check_rules(text: &str) -> Result<(), TestCaseError> {
    match Rules::from_source(&SourceText::new("rules.toml", text)) {
        Ok(rules) => {
            for snap in example_snapshots() {
                let d = evaluate(&rules, &snap, now());
                prop_assert!(!explain::render_text(&d).is_empty());
            }
            Ok(())
        }
        Err(d) => located(&d, "rules.toml", text),
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn rules_any_text_compiles_or_every_error_has_its_line(text in ".{0,300}") {
        check_rules(&text)?;
    }

    #[test]
    fn rules_the_shipped_file_mutated_compiles_and_runs_or_every_error_has_its_line(
        edits in proptest::collection::vec(edit(), 1..4)
    ) {
        check_rules(&mutate(leadsync::defaults::LIFECYCLE, &edits))?;
    }
}

// ---- Salesforce mapping --------------------------------------------------------------------

fn check_mapping(text: &str) -> Result<(), TestCaseError> {
    if let Err(d) = SalesforceMapping::from_source(&SourceText::new("salesforce.toml", text)) {
        located(&d, "salesforce.toml", text)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn mapping_any_text_compiles_or_every_error_has_its_line(text in ".{0,300}") {
        check_mapping(&text)?;
    }

    #[test]
    fn mapping_the_shipped_file_mutated_compiles_or_every_error_has_its_line(
        edits in proptest::collection::vec(edit(), 1..4)
    ) {
        check_mapping(&mutate(leadsync::defaults::SALESFORCE, &edits))?;
    }
}

// ---- configuration -------------------------------------------------------------------------

/// The configuration loader on `text` (as a file) and `env`: every problem is in the file with
/// a line, or names its key, or is in the environment naming its variable; a secret's value is
/// never shown.
fn check_config(text: &str, env: Vec<(String, String)>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadsync.toml");
    std::fs::write(&path, text).unwrap();
    let secrets: Vec<String> = env
        .iter()
        .filter(|(k, v)| (k.contains("SECRET") || k.contains("TOKEN")) && v.len() >= 6)
        .map(|(_, v)| v.clone())
        .collect();
    let report = config::report_with_env(Some(&path), env);
    for e in &report.problems.0 {
        let shown = e.to_string();
        prop_assert!(!e.message.trim().is_empty(), "{}", shown);
        if e.file == path {
            prop_assert!(e.line >= 1 || !e.field.is_empty(), "neither line nor key: {}", shown);
            prop_assert!(e.line <= text.split('\n').count(), "{}", shown);
        } else {
            prop_assert_eq!(e.file.to_str(), Some("(environment)"), "{}", shown);
            prop_assert!(e.field.starts_with("LEADSYNC"), "{}", shown);
        }
        for s in &secrets {
            prop_assert!(!shown.contains(s.as_str()), "a secret is shown: {}", shown);
        }
    }
    Ok(())
}

fn env_entry() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("LEADSYNC__HUBSPOT__BURST_PER_10S".to_string()),
        Just("LEADSYNC__HUBSPOT__CLIENT_SECRET".to_string()),
        Just("LEADSYNC__SALESFORCE__REFRESH_TOKEN".to_string()),
        Just("LEADSYNC__STORE__URL".to_string()),
        Just("LEADSYNC__SCHEDULE__SYNC".to_string()),
        Just("LEADSYNC__SERVER__BIND".to_string()),
        Just("LEADSYNC__RULES".to_string()),
        "LEADSYNC__[A-Z_]{0,12}__[A-Z_0-9]{0,12}",
    ];
    (key, prop_oneof![toml_value(), "[0-9]{6,12}", ".{0,20}"])
}

proptest! {
    #![proptest_config(cases(48))]

    #[test]
    fn config_any_text_loads_or_every_problem_names_its_line_or_key(text in ".{0,200}") {
        check_config(&text, Vec::new())?;
    }

    #[test]
    fn config_the_example_mutated_with_any_environment_says_where_each_problem_is(
        edits in proptest::collection::vec(edit(), 1..4),
        env in proptest::collection::vec(env_entry(), 0..3),
    ) {
        let text = mutate(include_str!("../leadsync.example.toml"), &edits);
        check_config(&text, env)?;
    }
}

// ---- snapshots -----------------------------------------------------------------------------

/// The snapshot reader: a snapshot that parses is explained with the shipped rules at `now`;
/// one that does not gives serde's error with a line.
fn check_snapshot(text: &str) -> Result<(), TestCaseError> {
    match serde_json::from_str::<Snapshot>(text) {
        Ok(snap) => {
            let rules = leadsync::defaults::embedded_rules().unwrap();
            let d = evaluate(&rules, &snap, now());
            prop_assert!(!explain::render_text(&d).is_empty());
            prop_assert!(serde_json::to_string(&d).is_ok());
        }
        Err(e) => {
            prop_assert!(e.line() >= 1, "{}", e);
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

/// Times at the edges of what chrono holds, and odd ones.
fn any_time() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("+262142-12-31T23:59:59Z")),
        Just(json!("-262143-01-01T00:00:00Z")),
        Just(json!("9999-12-31")),
        Just(json!("2026-11-24")),
        Just(json!("2026-02-30T00:00:00Z")),
        Just(json!("")),
        Just(json!(0)),
        Just(json!(null)),
        (1i64..300_000).prop_map(|y| json!(format!("{y:04}-01-01T00:00:00Z"))),
        ".{0,25}".prop_map(|s| json!(s)),
    ]
}

/// Property values, including dates HubSpot could send as milliseconds at chrono's ends.
fn any_property_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("8210266876799999")),
        Just(json!("-8334601228800000")),
        Just(json!(i64::MAX.to_string())),
        Just(json!(i64::MIN.to_string())),
        Just(json!("+262142-12-31T23:59:59Z")),
        Just(json!("1e308")),
        Just(json!("NaN")),
        Just(json!("lost")),
        Just(json!(null)),
        any::<i64>().prop_map(|v| json!(v.to_string())),
        any::<f64>().prop_map(|v| json!(v.to_string())),
        ".{0,20}".prop_map(|s| json!(s)),
    ]
}

/// Mutations of a snapshot's JSON.
#[derive(Debug, Clone)]
enum SnapshotEdit {
    EventTime(usize, Value),
    Property(usize, Value),
    StateTime(usize, Value),
    Field(usize, String, Value),
}

fn snapshot_edit() -> impl Strategy<Value = SnapshotEdit> {
    prop_oneof![
        (any::<usize>(), any_time()).prop_map(|(i, v)| SnapshotEdit::EventTime(i, v)),
        (any::<usize>(), any_property_value()).prop_map(|(i, v)| SnapshotEdit::Property(i, v)),
        (any::<usize>(), any_time()).prop_map(|(i, v)| SnapshotEdit::StateTime(i, v)),
        (
            any::<usize>(),
            prop_oneof![
                Just("kind".to_string()),
                Just("id".to_string()),
                Just("direction".to_string()),
                "[a-z_]{1,8}"
            ],
            prop_oneof![
                any_time(),
                Just(json!("page_view")),
                Just(json!("inbound")),
                Just(json!([]))
            ],
        )
            .prop_map(|(i, k, v)| SnapshotEdit::Field(i, k, v)),
    ]
}

/// Properties a rule reads as dates and the stored timers: where overflow would be.
const DATE_PROPERTIES: [&str; 4] = [
    "leadsync_opportunity_closed_at",
    "leadsync_opportunity_close_date",
    "leadsync_opportunity_status",
    "createdate",
];

fn apply(snap: &mut Value, e: &SnapshotEdit) {
    let events = snap["events"].as_array().map_or(0, Vec::len);
    match e {
        SnapshotEdit::EventTime(i, v) if events > 0 => snap["events"][i % events]["at"] = v.clone(),
        SnapshotEdit::Field(i, k, v) if events > 0 => snap["events"][i % events][k] = v.clone(),
        SnapshotEdit::Property(i, v) => {
            let props: Vec<String> = snap["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let mut names: Vec<String> = DATE_PROPERTIES.iter().map(|s| s.to_string()).collect();
            names.extend(props);
            let name = &names[i % names.len()];
            snap["properties"][name] = v.clone();
        }
        SnapshotEdit::StateTime(i, v) => {
            let fields = ["status_since", "cooldown_until", "engagement_reset_at"];
            match i % 6 {
                0..=2 => snap["state"][fields[i % 3]] = v.clone(),
                3 => snap["state"]["stages"]["mql"] = json!({ "at": v }),
                4 => {
                    snap["state"]["stage"] = json!("sql");
                    snap["state"]["stages"]["sql"] = json!({ "at": v });
                }
                _ => snap["state"]["sla"]["mql-first-touch"] = json!({ "started_at": v, "due_at": v }),
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn snapshot_any_text_is_explained_or_refused_with_its_line(text in ".{0,200}") {
        check_snapshot(&text)?;
    }

    #[test]
    fn snapshot_an_example_mutated_is_explained_or_refused_with_its_line(
        which in 0..SNAPSHOTS.len(),
        edits in proptest::collection::vec(snapshot_edit(), 1..5),
    ) {
        let mut snap: Value = serde_json::from_str(SNAPSHOTS[which]).unwrap();
        for e in &edits {
            apply(&mut snap, e);
        }
        check_snapshot(&snap.to_string())?;
    }
}

// ---- webhook bodies ------------------------------------------------------------------------

/// The body check: rows for a delivery HubSpot could send; otherwise `Malformed`, whose words
/// name the event and field, or serde's line and column.
fn check_webhook(body: &[u8]) -> Result<Option<usize>, TestCaseError> {
    match webhook_events(body) {
        Ok(rows) => Ok(Some(rows.len())),
        Err(IntakeError::Malformed(m)) => {
            let located = (m.contains(" line ") && m.contains(" column ")) || m.starts_with("event ");
            prop_assert!(located, "a refusal that says neither where nor which event: {}", m);
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "a body is refused as malformed, not {e:?}"
        ))),
    }
}

/// A field of an event, valid or not.
#[derive(Debug, Clone)]
enum EventField {
    /// Keeps the event valid.
    Good(&'static str, Value),
    /// Makes the delivery malformed.
    Bad(&'static str, Value),
    /// A NUL in a field HubSpot names: refused, naming the field.
    Nul(&'static str),
}

fn good_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z.]{1,20}"].prop_map(|s: String| s.replace('\0', ""))
}

fn event_field() -> impl Strategy<Value = EventField> {
    prop_oneof![
        good_text().prop_map(|s| EventField::Good("propertyName", json!(s))),
        ".{0,16}".prop_map(|s| EventField::Good("propertyValue", json!(s))),
        Just(EventField::Good("propertyValue", json!("a\u{0}b"))),
        any::<i64>().prop_map(|v| EventField::Good("occurredAt", json!(v))),
        any::<u64>().prop_map(|v| EventField::Good("eventId", json!(v))),
        good_text().prop_map(|s| EventField::Good("changeSource", json!(s))),
        proptest::collection::vec(any::<u64>(), 0..3).prop_map(|v| EventField::Good("mergedObjectIds", json!(v))),
        Just(EventField::Good("unknownField", json!({"x": [1, 2]}))),
        any::<i64>()
            .prop_filter("negative", |v| *v < 0)
            .prop_map(|v| EventField::Bad("objectId", json!(v))),
        Just(EventField::Bad("objectId", json!("12"))),
        Just(EventField::Bad("objectId", json!(1.5))),
        Just(EventField::Bad("objectId", json!(null))),
        Just(EventField::Bad("subscriptionType", json!(7))),
        Just(EventField::Bad("occurredAt", json!("yesterday"))),
        Just(EventField::Bad("occurredAt", json!(1e300))),
        Just(EventField::Bad("eventId", json!(-1))),
        Just(EventField::Bad("mergedObjectIds", json!(["1"]))),
        Just(EventField::Nul("subscriptionType")),
        Just(EventField::Nul("propertyName")),
        Just(EventField::Nul("changeSource")),
        Just(EventField::Nul("objectTypeId")),
    ]
}

/// The fields a NUL byte is refused in, in the order the intake names the first.
const NUL_ORDER: [&str; 4] = ["subscriptionType", "propertyName", "changeSource", "objectTypeId"];

/// An event id and its fields, one per key (the last written wins, as in the JSON).
fn event() -> impl Strategy<Value = (u64, Vec<EventField>)> {
    (any::<u64>(), proptest::collection::vec(event_field(), 0..3)).prop_map(|(id, fields)| {
        let key = |f: &EventField| match f {
            EventField::Good(k, _) | EventField::Bad(k, _) | EventField::Nul(k) => *k,
        };
        let mut kept: Vec<EventField> = Vec::new();
        for f in fields {
            kept.retain(|g| key(g) != key(&f));
            kept.push(f);
        }
        (id, kept)
    })
}

fn render_event(id: u64, fields: &[EventField]) -> Value {
    let mut e = json!({"subscriptionType": "contact.propertyChange", "objectId": id});
    for f in fields {
        match f {
            EventField::Good(k, v) | EventField::Bad(k, v) => e[*k] = v.clone(),
            EventField::Nul(k) => e[*k] = json!("a\u{0}b"),
        }
    }
    e
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn webhook_any_bytes_are_rows_or_a_located_refusal(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_webhook(&body)?;
        let secret = SecretString::from("s");
        match workflow_row_of_portal(&secret, &body) {
            Ok((_, r)) => prop_assert!(r.contact_id.bytes().all(|b| b.is_ascii_digit())),
            Err(IntakeError::Malformed(m)) => prop_assert!(!m.is_empty()),
            Err(e) => prop_assert!(false, "a workflow body is refused as malformed, not {:?}", e),
        }
    }

    #[test]
    fn webhook_any_json_is_rows_or_a_located_refusal(text in r#"[\[\]{}",:0-9a-zA-Z\\ \-.]{0,80}"#) {
        check_webhook(text.as_bytes())?;
    }

    #[test]
    fn webhook_a_delivery_with_mutated_fields_is_kept_whole_or_refused_naming_where(
        events in proptest::collection::vec(event(), 0..5)
    ) {
        let body = Value::Array(events.iter().map(|(id, f)| render_event(*id, f)).collect()).to_string();
        let bad = events.iter().any(|(_, f)| f.iter().any(|f| matches!(f, EventField::Bad(..))));
        // The first event with a NUL, and its first such field in the order the intake checks them.
        let first_nul = events.iter().enumerate().find_map(|(i, (_, f))| {
            NUL_ORDER
                .iter()
                .find(|k| f.iter().any(|f| matches!(f, EventField::Nul(n) if n == *k)))
                .map(|k| (i, *k))
        });
        match webhook_events(body.as_bytes()) {
            Ok(rows) => {
                prop_assert!(!bad && first_nul.is_none(), "accepted a bad delivery: {}", body);
                prop_assert_eq!(rows.len(), events.len());
                for ((_, r), (id, fields)) in rows.iter().zip(&events) {
                    prop_assert_eq!(&r.contact_id, &id.to_string());
                    // The dedupe key never holds the value in clear (a privacy deletion could not reach it).
                    for f in fields {
                        if let EventField::Good("propertyValue", Value::String(v)) = f {
                            if v.chars().count() >= 4 {
                                prop_assert!(!r.dedupe_key.contains(v.as_str()));
                            }
                        }
                    }
                    prop_assert!(!r.payload.contains('\0'));
                }
            }
            Err(IntakeError::Malformed(m)) => {
                prop_assert!(bad || first_nul.is_some(), "refused a good delivery ({}): {}", m, body);
                if !bad {
                    let (i, field) = first_nul.unwrap();
                    prop_assert_eq!(m, format!("event {i}: {field} contains a NUL byte"));
                } else {
                    prop_assert!(m.contains(" line ") && m.contains(" column "), "{}", m);
                }
            }
            Err(e) => prop_assert!(false, "refused as {:?}", e),
        }
    }
}

// ---- signatures ----------------------------------------------------------------------------

const NOW_MS: i64 = 1_764_000_000_000;
const URI: &str = "https://leadsync.example.com/webhooks/hubspot";

fn secret() -> SecretString {
    SecretString::from("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy")
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn signature_any_header_that_is_not_the_signature_is_refused(
        sig in prop_oneof![".{0,90}", "[A-Za-z0-9+/=]{40,48}", "[0-9a-fA-F]{63,65}"],
        body in proptest::collection::vec(any::<u8>(), 0..64),
        uri in prop_oneof![Just(URI.to_string()), ".{0,40}"],
    ) {
        let ts = NOW_MS.to_string();
        let s = secret();
        if sig.trim() != signature::sign_v3(&s, "POST", &uri, &body, &ts) {
            prop_assert_eq!(
                signature::verify_v3(&s, "POST", &uri, &body, Some(&ts), Some(&sig), NOW_MS),
                Err(SignatureError::Mismatch)
            );
        }
        if !sig.trim().eq_ignore_ascii_case(&signature::sign_v2(&s, "POST", &uri, &body)) {
            prop_assert_eq!(
                signature::verify_v2(&s, "POST", &uri, &body, Some(&sig)),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn signature_a_right_signature_with_one_character_changed_is_refused(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<usize>(),
        with in any::<char>(),
    ) {
        let ts = NOW_MS.to_string();
        let s = secret();
        let right = signature::sign_v3(&s, "POST", URI, &body, &ts);
        prop_assert_eq!(signature::verify_v3(&s, "POST", URI, &body, Some(&ts), Some(&right), NOW_MS), Ok(()));
        let mut chars: Vec<char> = right.chars().collect();
        let i = at % chars.len();
        prop_assume!(chars[i] != with && !with.is_whitespace());
        chars[i] = with;
        let wrong: String = chars.into_iter().collect();
        prop_assert_eq!(
            signature::verify_v3(&s, "POST", URI, &body, Some(&ts), Some(&wrong), NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn signature_any_timestamp_header_is_judged_without_a_panic(
        ts in prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            (-1_000_000i64..1_000_000).prop_map(|d| (NOW_MS + d).to_string()),
            Just(i64::MIN.to_string()),
            Just(i64::MAX.to_string()),
            ".{0,24}",
        ],
    ) {
        let s = secret();
        let sig = signature::sign_v3(&s, "POST", URI, b"[]", ts.trim());
        let got = signature::verify_v3(&s, "POST", URI, b"[]", Some(&ts), Some(&sig), NOW_MS);
        match ts.trim().parse::<i64>() {
            Err(_) => prop_assert_eq!(got, Err(SignatureError::MalformedTimestamp)),
            Ok(t) => {
                let age = i128::from(NOW_MS) - i128::from(t);
                let max = i128::from(signature::MAX_AGE_MS);
                if age > max {
                    prop_assert!(matches!(got, Err(SignatureError::Stale { .. })), "{:?}", got);
                } else if -age > max {
                    prop_assert!(matches!(got, Err(SignatureError::FromFuture { .. })), "{:?}", got);
                } else {
                    prop_assert_eq!(got, Ok(()));
                }
            }
        }
    }

    #[test]
    fn signature_any_uri_normalizes_without_a_panic(uri in ".{0,60}", codes in "(%[0-9a-fA-F]{0,2}|%.|[a-z/]){0,10}") {
        let u = format!("{uri}{codes}");
        let n = signature::normalize_uri(&u);
        prop_assert!(n.len() <= u.len());
    }
}

// ---- regressions ---------------------------------------------------------------------------
// Each one failed before its fix. Two were found by the properties above (as named); the others
// by reading the parsers for what the generators should reach, and the generators reach them now.

/// Found by `signature_any_timestamp_header_is_judged_without_a_panic`: `now - ts` overflowed.
#[test]
fn regression_a_timestamp_header_of_i64_min_or_max_is_refused_not_an_overflow() {
    let s = secret();
    for (ts, stale) in [(i64::MIN, true), (i64::MAX, false)] {
        let ts = ts.to_string();
        let sig = signature::sign_v3(&s, "POST", URI, b"[]", &ts);
        let got = signature::verify_v3(&s, "POST", URI, b"[]", Some(&ts), Some(&sig), NOW_MS);
        if stale {
            assert_eq!(got, Err(SignatureError::Stale { age_ms: i64::MAX }));
        } else {
            assert!(matches!(got, Err(SignatureError::FromFuture { .. })), "{got:?}");
        }
    }
}

/// Found by `config_the_example_mutated_with_any_environment_says_where_each_problem_is`: an
/// unknown section was reported at its key, then again for the whole file, with no line and
/// no key, and nothing else of the file was loaded.
#[test]
fn regression_an_unknown_section_is_reported_once_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadsync.toml");
    std::fs::write(
        &path,
        "[hubspot]\nburst_per_10s = 50\n\n[hubspto]\nsearch_per_second = 2\n",
    )
    .unwrap();
    let report = config::report_with_env(Some(&path), Vec::new());
    let shown: Vec<String> = report.problems.0.iter().map(|d| d.to_string()).collect();
    assert_eq!(report.problems.len(), 1, "{shown:?}");
    let d = &report.problems.0[0];
    assert_eq!(
        (d.line, d.column, d.field.as_str()),
        (5, 1, "hubspto.search_per_second"),
        "{d}"
    );
    assert!(d.message.contains("unknown field `hubspto`"), "{d}");
    let loaded = report.loaded.expect("the rest of the file is still read");
    assert_eq!(loaded.settings.hubspot.burst_per_10s, 50);

    // The same from the environment: one problem, naming the variable.
    std::fs::write(&path, "").unwrap();
    let env = vec![("LEADSYNC__HUBSPTO__SEARCH_PER_SECOND".to_string(), "2".to_string())];
    let report = config::report_with_env(Some(&path), env);
    let shown: Vec<String> = report.problems.0.iter().map(|d| d.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("(environment): LEADSYNC__HUBSPTO__SEARCH_PER_SECOND: "),
        "{shown:?}"
    );
}

/// A duration no calendar holds compiled, then the engine's `now + cooldown` overflowed (the
/// mutated-rules property writes such values): now refused at its line, naming the field.
#[test]
fn regression_a_huge_duration_in_the_rules_is_refused_naming_its_field() {
    let text = leadsync::defaults::LIFECYCLE.replace("cooldown = \"30d\"", "cooldown = \"99999999999999999999d\"");
    let err = Rules::from_source(&SourceText::new("rules.toml", text.as_str())).unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    let line = text.lines().position(|l| l.starts_with("cooldown = ")).unwrap() + 1;
    let d = &err.0[0];
    assert_eq!((d.line, d.field.as_str()), (line, "recycle.cooldown"), "{d}");
    assert!(d.message.contains("longer than 100 years"), "{d}");
}

fn snapshot(v: Value) -> Snapshot {
    serde_json::from_value(v).unwrap()
}

/// A lost opportunity whose close date (a HubSpot value) is at the calendar's end: `since +
/// recycle_after` overflowed. Now it is simply not due yet.
#[test]
fn regression_a_lost_opportunity_dated_at_the_calendars_end_is_not_due_and_no_panic() {
    let rules = leadsync::defaults::embedded_rules().unwrap();
    for closed_at in ["8210266876799999", "+262142-12-31T00:00:00Z"] {
        let snap = snapshot(json!({
            "contact_id": "7",
            "properties": {
                "email": "ops@example.com",
                "leadsync_opportunity_status": "lost",
                "leadsync_opportunity_closed_at": closed_at,
            },
            "state": {
                "stage": "sql",
                "stages": {"mql": {"at": "2026-01-01T00:00:00Z"}, "sql": {"at": "2026-02-01T00:00:00Z"}},
            }
        }));
        let d = evaluate(&rules, &snap, now());
        assert_ne!(d.status.as_str(), "recycle", "{}", explain::render_text(&d));
    }
}

/// Decisions taken at the calendar's end (`explain --at`, snapshots dated then): an SLA due
/// time or a cooldown past it overflowed. Every example is explained there without a panic.
#[test]
fn regression_decisions_at_the_calendars_end_never_overflow() {
    let rules = leadsync::defaults::embedded_rules().unwrap();
    let at: DateTime<Utc> = "+262142-12-31T09:00:00Z".parse().unwrap();
    for text in SNAPSHOTS
        .iter()
        .chain([&include_str!("../examples/snapshots/demo-request-new.json")])
    {
        let moved = text
            .replace("2026-09-", "+262142-10-")
            .replace("2026-10-", "+262142-11-")
            .replace("2026-11-", "+262142-12-");
        let snap: Snapshot = serde_json::from_str(&moved).unwrap();
        let d = evaluate(&rules, &snap, at);
        assert!(!explain::render_text(&d).is_empty());
    }
}

/// The external id mapped as a field was reported at line 1, column 1 (a span of 0..0), far from
/// the mistake; now at the field that maps it.
#[test]
fn regression_an_external_id_mapped_as_a_field_is_reported_where_it_is_mapped() {
    let text = format!(
        "{}\n[[account.fields]]\nfield = \"HubSpot_Company_Id__c\"\nvalue = \"x\"\n",
        leadsync::defaults::SALESFORCE
    );
    let err = SalesforceMapping::from_source(&SourceText::new("salesforce.toml", text.as_str())).unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    let d = &err.0[0];
    let line = text.lines().count() - 1;
    assert_eq!((d.line, d.column), (line, 9), "{d}");
    assert!(
        d.field.starts_with("account.fields[") && d.field.ends_with("].field"),
        "{d}"
    );
    assert!(d.message.contains("HubSpot_Company_Id__c is the external id"), "{d}");
}

/// Found by the `config` fuzz target: a configuration file that is not UTF-8 was refused with
/// no line ("stream did not contain valid UTF-8"); now the first bad byte is located.
#[test]
fn regression_a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadsync.toml");
    std::fs::write(&path, b"[hubspot]\nburst_per_10s = 5\xff0\n").unwrap();
    let report = config::report_with_env(Some(&path), Vec::new());
    assert_eq!(report.problems.len(), 1);
    let d = &report.problems.0[0];
    assert_eq!((d.line, d.column), (2, 18), "{d}");
    assert!(d.message.contains("not UTF-8") && d.message.contains("0xff"), "{d}");
}
