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
fn status_on_a_missing_sqlite_store_says_what_to_run_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        "[store]\nurl = \"sqlite://gone.db\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["status", "--config", "leadsync.toml"])
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .env_remove("LEADSYNC__STORE__URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("gone.db does not exist"), "{err}");
    assert!(
        err.contains("leadsync run --init-store") && err.contains("leadsync backfill"),
        "{err}"
    );
    assert!(!dir.path().join("gone.db").exists(), "status created the store");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["leadsync.toml"], "nothing but the configuration: {left:?}");

    // With no configuration at all, the default ./leadsync.db is not created either.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .arg("status")
        .current_dir(empty.path())
        .env_remove("LEADSYNC_CONFIG")
        .env_remove("LEADSYNC__STORE__URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!empty.path().join("leadsync.db").exists());

    // Once the store exists, status reads it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("gone.db").display());
    rt.block_on(async { leadsync::store::Store::create_or_open(&url).await.unwrap() });
    let out = run_bin(&["status", "--config", "leadsync.toml"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_without_init_store_refuses_a_missing_store_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("run.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .arg("run")
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .env("LEADSYNC__RULES__PATH", repo().join("mappings/lifecycle.toml"))
        .env("LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN", "pat-na1-test")
        .env("LEADSYNC__SERVER__BIND", "127.0.0.1:0")
        .env("LEADSYNC__STORE__URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("store sqlite://{}", db.display())),
        "names the store: {err}"
    );
    assert!(err.contains("--init-store"), "names the flag: {err}");
    assert!(!db.exists(), "run created the store without --init-store");
}

#[test]
fn check_reports_a_server_limit_out_of_range_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        "[server]\nbind = \"127.0.0.1:8080\"\nmax_connections = 0\n",
    )
    .unwrap();
    let out = run_bin(&["check", "--config", "leadsync.toml"], dir.path());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("leadsync.toml:3:1: server.max_connections: 0 is out of range"),
        "{all}"
    );
}

#[test]
fn the_annotated_example_configuration_is_valid() {
    let out = run_bin(&["check", "--config", "leadsync.example.toml"], &repo());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A line a `tracing` formatter wrote: a timestamp then a level, or a JSON object.
fn is_log_line(line: &str) -> bool {
    let l = line.trim_start();
    let mut words = l.split_whitespace();
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    let level = |w: &str| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&w);
    (first.len() >= 20 && first.as_bytes()[..4].iter().all(u8::is_ascii_digit) && level(second))
        || l.starts_with("{\"timestamp\"")
        || l.contains('\u{1b}')
}

fn demo_from_an_empty_folder(extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let args = [&["demo", "--once", "--contacts", "120"][..], extra].concat();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(&args)
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn the_demo_runs_from_an_empty_folder_on_the_embedded_defaults_and_stdout_is_the_story_alone() {
    let (stdout, stderr) = demo_from_an_empty_folder(&[]);
    assert!(
        stdout.contains("rules: embedded default · version 2026.11.1 ("),
        "{stdout}"
    );
    assert!(stdout.contains("funnel: contacts per stage"), "{stdout}");
    let reached: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Salesforce: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Salesforce line:\n{stdout}"));
    assert!(reached > 0, "leads reached Salesforce:\n{stdout}");
    assert!(stdout.contains("owner "), "the records with their owners:\n{stdout}");
    // The live part waits for the webhooks it caused: each demo request reaches Salesforce.
    let live = stdout
        .lines()
        .find(|l| l.contains("demo request(s): HubSpot → webhook"))
        .unwrap_or_else(|| panic!("no live line:\n{stdout}"));
    let requests: u32 = live.split_whitespace().next().unwrap().parse().unwrap();
    let new_opportunities: u32 = live
        .rsplit("; ")
        .next()
        .and_then(|t| t.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{live}"));
    assert!(requests > 0 && new_opportunities == requests, "{live}");
    let logs: Vec<&str> = stdout.lines().filter(|l| is_log_line(l)).collect();
    assert!(logs.is_empty(), "log lines on stdout: {logs:#?}");
    assert!(
        !stderr.contains(" INFO "),
        "logs on stderr only from warn up without -v:\n{stderr}"
    );
}

#[test]
fn the_demo_with_v_logs_leadsync_s_info_on_stderr_without_colours_or_third_party_noise() {
    let (stdout, stderr) = demo_from_an_empty_folder(&["-v"]);
    assert!(stdout.lines().all(|l| !is_log_line(l)), "{stdout}");
    assert!(stderr.contains(" INFO leadsync"), "-v shows leadsync's INFO:\n{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI codes when stderr is not a terminal"
    );
    assert!(
        !stderr.contains("tokio_cron_scheduler") && !stderr.contains("sqlx"),
        "third-party INFO stays filtered:\n{stderr}"
    );
}

#[test]
fn init_writes_a_configuration_that_check_passes_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin(&["init", "here"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for next in ["leadsync check", "leadsync setup", "leadsync backfill --dry-run"] {
        assert!(stdout.contains(next), "{next}\n{stdout}");
    }
    let out = run_bin(&["check", "--config", "here/leadsync.toml"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("rules: ok — here/mappings/lifecycle.toml"),
        "the written files, not the embedded ones:\n{stdout}"
    );
    assert!(
        stdout.contains("sales SLA: ok — here/mappings/sla.toml"),
        "the SLA written beside them:\n{stdout}"
    );
    assert!(
        !stdout.contains("embedded"),
        "nothing comes from the embedded defaults:\n{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("here/mappings/sla.toml")).unwrap(),
        std::fs::read_to_string(repo().join("mappings/sla.toml")).unwrap(),
        "the shipped policy file"
    );
    // `check` reads the written SLA, not the embedded one: a mistake in it is found, with its line.
    let sla = dir.path().join("here/mappings/sla.toml");
    let text = std::fs::read_to_string(&sla).unwrap();
    let first_touch = text
        .lines()
        .position(|l| l.trim_start().starts_with("first_touch"))
        .unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == first_touch {
                "first_touch = \"soon\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&sla, edited.join("\n")).unwrap();
    let out = run_bin(&["check", "--config", "here/leadsync.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("here/mappings/sla.toml:{}:", first_touch + 1)) && stderr.contains("first_touch"),
        "file:line:field of the bad duration:\n{stderr}"
    );
    // README (The sales SLA): `check` refuses a sales rejection at a stage the rules' own
    // `[sales_rejection] applies_at` cannot take (the demo request is an SQL policy), at its line.
    let demo = text
        .find("id = \"demo_request\"")
        .expect("the shipped demo_request policy");
    let ladder = demo + text[demo..].find("ladder = [").unwrap() + "ladder = [".len();
    let line = text[..ladder].lines().count() + 1;
    let edited = format!(
        "{}\n  {{ step = \"sales_rejected\", after = \"0m\" }},{}",
        &text[..ladder],
        &text[ladder..]
    );
    std::fs::write(&sla, edited).unwrap();
    let out = run_bin(&["check", "--config", "here/leadsync.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("here/mappings/sla.toml:{line}:"))
            && stderr.contains("a sales rejection at stage sql"),
        "file:line of the step the rules cannot take:\n{stderr}"
    );
    std::fs::write(&sla, text).unwrap();

    std::fs::write(dir.path().join("here/mappings/lifecycle.toml"), "# edited").unwrap();
    let out = run_bin(&["init", "here"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exist"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("here/mappings/lifecycle.toml")).unwrap(),
        "# edited"
    );
}

#[test]
fn explain_and_check_work_from_an_empty_folder_on_the_embedded_rules_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let snap = repo().join("examples/snapshots/mql-webinar.json");
    let out = run_bin(
        &[
            "explain",
            "--snapshot",
            snap.to_str().unwrap(),
            "--at",
            "2026-11-24T09:00:00Z",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("MQL because fit 80 ≥ 40"), "{stdout}");
    assert!(
        stdout.contains("rules in use: embedded default version 2026.11.1"),
        "{stdout}"
    );

    let out = run_bin(&["check"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rules: ok — embedded default"), "{stdout}");
}

#[test]
fn a_configured_rules_file_that_is_missing_is_an_error_that_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leadsync.toml"), "[rules]\npath = \"nowhere.toml\"\n").unwrap();
    let snap = repo().join("examples/snapshots/mql-webinar.json");
    let out = run_bin(&["explain", "--snapshot", snap.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "no fallback to the embedded rules");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere.toml") && err.contains("--rules FILE") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn check_reports_every_problem_of_the_configuration_and_of_the_rules_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(repo().join("mappings/lifecycle.toml"))
        .unwrap()
        .replacen("id = \"sal\"", "id = \"prospect\"", 1);
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::copy(
        repo().join("mappings/salesforce.toml"),
        dir.path().join("mappings/salesforce.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        "[rules]\npath = \"rules.toml\"\n[hubspot]\nburst_per_10s = \"fast\"\n[server]\nbind = \"nowhere\"\n",
    )
    .unwrap();
    let out = run_bin(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leadsync.toml:4:1: hubspot.burst_per_10s:"), "{err}");
    assert!(err.contains("leadsync.toml:6:1: server.bind:"), "{err}");
    assert!(
        err.contains("rules.toml:") && err.contains("unknown stage `prospect`"),
        "the configured rules, despite the configuration's errors:\n{err}"
    );
    assert!(err.contains("3 problem(s) found"), "{err}");
}

#[test]
fn a_numeric_secret_in_the_environment_is_text_and_no_message_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .arg("check")
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .env("LEADSYNC__SALESFORCE__CLIENT_SECRET", "8923749823749823749")
        .env("LEADSYNC__HUBSPOT__PRIVATE_APP_TOKEN", "12345678901234")
        .env("LEADSYNC__SERVER__BIND", "nowhere")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("LEADSYNC__SERVER__BIND"), "the one real problem:\n{all}");
    assert!(
        all.contains("1 problem(s) found"),
        "the secrets are accepted as text:\n{all}"
    );
    assert!(
        !all.contains("8923749823749823749") && !all.contains("12345678901234"),
        "{all}"
    );
}

#[tokio::test]
async fn leadsync_run_writes_json_log_lines_that_parse() {
    let app = crate::support::TestApp::start(60).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = app
        .run_command(dir.path(), port)
        .env_remove("RUST_LOG")
        .env("LEADSYNC__LOG__FORMAT", "json")
        .env("LEADSYNC__SERVER__HEADER_TIMEOUT_SECS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = crate::support::ready_on(port).await;
    assert!(up, "leadsync run became ready");
    // server.header_timeout_secs reaches the listener: a connection that sends nothing is
    // closed after 1 s, not the default 10.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection is closed after the configured header timeout: {closed:?}"
    );
    crate::support::sigterm(&child).await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stopped within 20 s")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |m: &str| {
        lines
            .iter()
            .any(|v| v["level"] == "INFO" && v["fields"]["message"].as_str().is_some_and(|s| s.contains(m)))
    };
    assert!(said("listening for HubSpot webhooks"), "{stderr}");
    assert!(said("stop requested"), "{stderr}");
}

// README: "Every subcommand's `--help` ends with examples."
#[test]
fn every_subcommand_s_help_ends_with_examples() {
    for sub in [
        "demo",
        "run",
        "backfill",
        "status",
        "check",
        "explain",
        "setup",
        "test-rules",
        "sandbox",
        "init",
    ] {
        let out = run_bin(&[sub, "--help"], &repo());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub}: {help}");
        let examples = help
            .lines()
            .position(|l| l.trim_start().to_lowercase().starts_with("examples"));
        assert!(examples.is_some(), "{sub} --help has no examples:\n{help}");
        assert!(
            help.lines()
                .skip(examples.unwrap() + 1)
                .any(|l| l.contains("leadsync ")),
            "{sub}: the examples are commands:\n{help}"
        );
    }
}

// README: "`check --online` warns when a rules list names a value the portal's enumeration
// property does not offer (by value or label), with the rules file's line."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_warns_about_a_rules_value_the_portal_property_does_not_offer() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let hubspot = MockServer::start().await;
    let option = |v: &str, l: &str| serde_json::json!({"value": v, "label": l, "displayOrder": 0, "hidden": false});
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"results": [
            {"name": "industry", "label": "Industry", "type": "enumeration", "fieldType": "select", "groupName": "contactinformation",
             "options": [option("COMPUTER_SOFTWARE", "Computer Software"), option("INFORMATION_TECHNOLOGY_AND_SERVICES", "Information Technology and Services"),
                         option("INTERNET", "Internet"), option("FINANCIAL_SERVICES", "Financial Services"),
                         option("MARKETING_AND_ADVERTISING", "Marketing and Advertising"),
                         option("SOFTWARE_AS_A_SERVICE", "SaaS"), option("software", "Software (other)")]}
        ]})))
        .expect(1)
        .mount(&hubspot)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(repo().join("mappings/lifecycle.toml"))
        .unwrap()
        .replacen(
            r#""FINANCIAL_SERVICES","#,
            r#""FINANCIAL_SERVICES", "COMPUTR_SOFTWARE","#,
            1,
        );
    assert!(
        rules.contains("COMPUTR_SOFTWARE"),
        "the shipped list names FINANCIAL_SERVICES"
    );
    std::fs::write(dir.path().join("lifecycle.toml"), &rules).unwrap();
    std::fs::copy(
        repo().join("mappings/salesforce.toml"),
        dir.path().join("salesforce.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        format!(
            "[rules]\npath = \"lifecycle.toml\"\n[salesforce]\nmapping_path = \"salesforce.toml\"\n[hubspot]\napi_base_url = \"{}\"\nprivate_app_token = \"pat-test\"\n",
            hubspot.uri()
        ),
    )
    .unwrap();
    let config = dir.path().join("leadsync.toml");
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        run_bin(&["check", "--online", "--config", config.to_str().unwrap()], &cwd)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The warning points at the list the value is written in.
    let line = rules.lines().position(|l| l.starts_with("target_industries")).unwrap() + 1;
    let warning = stderr
        .lines()
        .find(|l| l.contains("COMPUTR_SOFTWARE"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.contains(&format!("lifecycle.toml:{line}:")), "{warning}");
    assert!(warning.contains("industry"), "{warning}");
    assert_eq!(
        stderr.matches("is not an option").count(),
        1,
        "the other values match by value (case folded) or by label: {stderr}"
    );
}

// README (What each team sees of the other): "`check` refuses a context field that is also a
// field written at creation, with its file and line".
#[test]
fn check_refuses_a_salesforce_context_field_that_is_also_a_sales_field_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("mappings/salesforce.toml")).unwrap();
    let mapping = shipped
        .replacen(
            "[opportunity]\n",
            "[[contact.context]]\nfield = \"Title\"\nkeep = \"grade\"\n\n[opportunity]\n",
            1,
        )
        .replacen(
            "[[opportunity.context]]\n",
            "[[opportunity.context]]\nfield = \"StageName\"\nkeep = \"stage\"\n\n[[opportunity.context]]\n",
            1,
        );
    assert_ne!(mapping, shipped);
    let line = mapping
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "field = \"Title\"")
        .last()
        .unwrap()
        .0
        + 1;
    let title_field = shipped
        .lines()
        .position(|l| l == "field = \"Title\"")
        .expect("the shipped mapping writes Title at creation");
    std::fs::write(dir.path().join("salesforce.toml"), &mapping).unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        "[salesforce]\nmapping_path = \"salesforce.toml\"\n",
    )
    .unwrap();
    let out = run_bin(&["check", "--config", "leadsync.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let refusal = err
        .lines()
        .find(|l| l.contains("Title is also in [[contact.fields]]"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(refusal.contains(&format!("salesforce.toml:{line}:")), "{refusal}");
    // It names the sales field's own entry.
    let entry = shipped[..shipped.lines().take(title_field).map(|l| l.len() + 1).sum::<usize>()]
        .rfind("[[contact.fields]]")
        .map(|at| shipped[..at].lines().count() + 1)
        .unwrap();
    assert!(refusal.contains(&format!("(line {entry})")), "{refusal}");
    // A field the promotion sets or the opportunity feedback reads back is sales' too.
    assert!(
        err.contains("opportunity.context[0].field: StageName is set at promotion or read back from sales"),
        "{err}"
    );
}

// README (What each team sees of the other): "`check --online` lists which fields are
// leadsync's and which are sales'".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_lists_which_salesforce_fields_are_leadsync_s_and_which_are_sales() {
    let sb = leadsync::sandbox::Sandbox::start(leadsync::sandbox::SandboxConfig {
        contacts: 10,
        companies: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = sb.config().clone();
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        (
            "LEADSYNC__SALESFORCE__MAPPING_PATH",
            repo().join("mappings/salesforce.toml").display().to_string(),
        ),
        ("LEADSYNC__HUBSPOT__API_BASE_URL", sb.hubspot_base_url()),
        ("LEADSYNC__HUBSPOT__TOKEN_URL", sb.hubspot_token_url()),
        ("LEADSYNC__HUBSPOT__CLIENT_ID", c.hubspot_client_id.clone()),
        ("LEADSYNC__HUBSPOT__CLIENT_SECRET", c.hubspot_client_secret.clone()),
        ("LEADSYNC__HUBSPOT__REFRESH_TOKEN", c.hubspot_refresh_token.clone()),
        ("LEADSYNC__SALESFORCE__LOGIN_URL", sb.salesforce_login_url()),
        ("LEADSYNC__SALESFORCE__CLIENT_ID", c.salesforce_client_id.clone()),
        (
            "LEADSYNC__SALESFORCE__CLIENT_SECRET",
            c.salesforce_client_secret.clone(),
        ),
        (
            "LEADSYNC__SALESFORCE__REFRESH_TOKEN",
            c.salesforce_refresh_token.clone(),
        ),
    ];
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
            .args(["check", "--online"])
            .current_dir(cwd)
            .env_remove("LEADSYNC_CONFIG")
            .envs(envs)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let leadsync_at = stdout
        .find("leadsync's fields")
        .unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let sales_at = stdout.find("sales' fields").unwrap_or_else(|| panic!("{stdout}"));
    let (ours, theirs) = if leadsync_at < sales_at {
        (&stdout[leadsync_at..sales_at], &stdout[sales_at..])
    } else {
        (&stdout[leadsync_at..], &stdout[sales_at..leadsync_at])
    };
    for f in [
        "Contact.LeadSync_Engagement_Score__c",
        "Contact.LeadSync_Recent_Activity__c",
        "Opportunity.LeadSync_Engagement_Score__c",
    ] {
        assert!(ours.contains(f) && !theirs.contains(f), "{f}: {stdout}");
    }
    for f in ["Contact.Title", "Contact.Email", "Account.Name", "Opportunity.Amount"] {
        assert!(theirs.contains(f) && !ours.contains(f), "{f}: {stdout}");
    }
    assert!(ours.contains("salesforce.toml:"), "each with its line: {ours}");
    assert!(
        !stderr.contains("LeadSync_"),
        "the sandbox org has every context field, of the right type: {stderr}"
    );
    // The shipped mapping passes against the sandbox's org: every text field it sends is cut
    // to the field's length (it once lacked `truncate` on the Opportunity's Description).
    assert!(out.status.success(), "{stdout}\n{stderr}");
    sb.shutdown().await;
}
