use crate::common::{repo, run_bin};

#[test]
fn check_passes_on_the_shipped_files() {
    let out = run_bin(&["check"], &repo());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules: ok"));
}

#[test]
fn check_reports_a_broken_rules_file_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(repo().join("mappings/lifecycle.toml"))
        .unwrap()
        .replacen("id = \"sal\"", "id = \"prospect\"", 1);
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    std::fs::write(dir.path().join("leadsync.toml"), "[rules]\npath = \"rules.toml\"\n").unwrap();
    let out = run_bin(&["check", "--config", "leadsync.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.toml:") && err.contains("unknown stage `prospect`"),
        "{err}"
    );
}

#[test]
fn explain_tells_why_in_words_and_in_json() {
    let args = [
        "explain",
        "--snapshot",
        "examples/snapshots/mql-webinar.json",
        "--at",
        "2026-11-24T09:00:00Z",
    ];
    let out = run_bin(&args, &repo());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MQL because fit 80 ≥ 40 and engagement 37.26 ≥ 35"),
        "{text}"
    );
    assert!(
        text.contains("webinar: 19.71 d old, half-life 45 d, 15 → 11.07"),
        "{text}"
    );
    assert!(!text.contains("camille"), "no personal data in the explanation");

    let out = run_bin(&[&args[..], &["--format", "json"]].concat(), &repo());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stage"], "mql");
    assert_eq!(v["grade"], "A2");
}

#[test]
fn explain_rejects_a_malformed_snapshot_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.json"), "{\"contact_id\": \"1\",\n \"events\": [{\"id\": \"x\", \"kind\": \"tweet\", \"at\": \"2026-01-01T00:00:00Z\"}]}").unwrap();
    let rules = repo().join("mappings/lifecycle.toml");
    let out = run_bin(
        &["explain", "--snapshot", "s.json", "--rules", rules.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.json:2:") && err.contains("tweet"), "{err}");
}

#[test]
fn test_rules_passes_the_shipped_cases_and_fails_a_wrong_expectation() {
    let out = run_bin(&["test-rules", "tests/rules"], &repo());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let snap = repo().join("examples/snapshots/mql-webinar.json");
    std::fs::write(
        dir.path().join("wrong.toml"),
        format!(
            "[[case]]\nname = \"expects the wrong stage\"\nat = \"2026-11-24T09:00:00Z\"\nsnapshot = {:?}\nexpect = {{ stage = \"sql\", fit = {{ max = 10 }} }}\n",
            snap.to_str().unwrap()
        ),
    )
    .unwrap();
    let rules = repo().join("mappings/lifecycle.toml");
    let out = run_bin(&["test-rules", ".", "--rules", rules.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stage is mql, expected sql"), "{stdout}");
    assert!(stdout.contains("fit is 80, expected …..=10"), "{stdout}");
    assert!(stdout.contains("wrong.toml:1"), "{stdout}");
}

#[test]
fn the_annotated_example_configuration_is_valid() {
    let out = run_bin(&["check", "--config", "leadsync.example.toml"], &repo());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
