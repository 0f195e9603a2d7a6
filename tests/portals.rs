//! Many portals in one deployment (`[[portals]]`): the configuration compiled into one
//! settings per portal, and the daemon running one pipeline per portal behind one webhook
//! server that routes each event by its `portalId`. One sandbox portal answering nothing but
//! 429s does not slow the other's webhook-to-Salesforce path.

use std::time::{Duration as StdDuration, Instant};

use leadsync::config::{Loaded, Settings, load_with_env};
use leadsync::daemon::Daemon;
use leadsync::lifecycle::HubSpotId;
use leadsync::sandbox::portal::CONTACT_ID_BASE;
use leadsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle, fault_kind};
use leadsync::store::{OutboxKind, OutboxState, Store};
use leadsync::sync::Syncer;
use leadsync::sync::backfill::BackfillOptions;
use secrecy::SecretString;

use crate::common::run_bin;
use crate::support::{Backend, NEVER, TestApp, demo_ready_leads, post_signed, repo_root};

fn load(text: &str) -> (Result<Loaded, leadsync::diagnostics::Diagnostics>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("leadsync.toml");
    std::fs::write(&p, text).unwrap();
    (load_with_env(Some(&p), Vec::new()), dir)
}

#[test]
fn a_file_without_portals_is_one_portal_exactly_as_it_reads() {
    let (loaded, _dir) = load(
        "[hubspot]\nportal_id = 42\nprivate_app_token = \"pat-na1-x\"\nburst_per_10s = 50\n\
         [store]\nurl = \"sqlite://one.db\"\n",
    );
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    let portals = loaded.portals();
    assert_eq!(portals.len(), 1);
    let p = &portals[0].settings;
    assert_eq!(p.hubspot.portal_id, Some(42));
    assert_eq!(p.hubspot.burst_per_10s, 50);
    assert_eq!(p.store.url, "sqlite://one.db");
    assert!(p.portals.is_empty());
}

#[test]
fn each_portal_lays_its_own_sections_over_the_top_level_ones() {
    let (loaded, _dir) = load(
        "[hubspot]\nclient_id = \"app\"\nclient_secret = \"app-secret\"\nburst_per_10s = 50\n\
         [salesforce]\ndaily_share_percent = 10\n\
         [server]\nbind = \"127.0.0.1:9000\"\n\
         [[portals]]\n[portals.hubspot]\nportal_id = 42\nrefresh_token = \"r-42\"\n\
         [portals.store]\nurl = \"sqlite://p42.db\"\n\
         [[portals]]\n[portals.hubspot]\nportal_id = 43\nprivate_app_token = \"pat-43\"\nburst_per_10s = 20\n\
         [portals.salesforce]\ndaily_share_percent = 30\n[portals.store]\nurl = \"sqlite://p43.db\"\n\
         [portals.schedule]\nsync = \"0 */1 * * * *\"\n",
    );
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    let portals = loaded.portals();
    assert_eq!(portals.len(), 2);
    let (a, b) = (&portals[0].settings, &portals[1].settings);
    assert_eq!((a.hubspot.portal_id, b.hubspot.portal_id), (Some(42), Some(43)));
    assert_eq!(a.hubspot.burst_per_10s, 50, "inherited");
    assert_eq!(b.hubspot.burst_per_10s, 20, "its own");
    assert_eq!(
        a.hubspot.client_id.as_deref(),
        Some("app"),
        "the app's half of OAuth, inherited"
    );
    assert!(a.hubspot.refresh_token.is_some() && b.hubspot.refresh_token.is_none());
    assert_eq!(
        (a.salesforce.daily_share_percent, b.salesforce.daily_share_percent),
        (10, 30)
    );
    assert_eq!(
        (a.store.url.as_str(), b.store.url.as_str()),
        ("sqlite://p42.db", "sqlite://p43.db")
    );
    assert_eq!(a.schedule.sync, Settings::default().schedule.sync);
    assert_eq!(b.schedule.sync, "0 */1 * * * *");
    assert_eq!(a.server.bind, "127.0.0.1:9000", "the deployment's server");
}

#[test]
fn two_portals_with_one_id_are_refused_with_file_line_and_field() {
    let text = "[hubspot]\nprivate_app_token = \"pat-x\"\n\
                [[portals]]\n[portals.hubspot]\nportal_id = 42\n[portals.store]\nurl = \"sqlite://a.db\"\n\
                [[portals]]\n[portals.hubspot]\nportal_id = 42\n[portals.store]\nurl = \"sqlite://b.db\"\n";
    let (loaded, _dir) = load(text);
    let err = loaded.unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("leadsync.toml:10:1: portals[1].hubspot.portal_id: portal 42 is also portals[0]"),
        "{text}"
    );
}

#[test]
fn a_portal_without_credentials_id_or_store_of_its_own_and_deployment_sections_are_refused() {
    let text = "[[portals]]\n[portals.hubspot]\nportal_id = 42\nprivate_app_token = \"pat-42\"\n\
                [[portals]]\n[portals.hubspot]\nportal_id = 43\nburst_per_10s = \"many\"\n\
                [[portals]]\n[portals.hubspot]\nprivate_app_token = \"pat-x\"\n[portals.server]\nbind = \"0.0.0.0:1\"\n";
    let (loaded, _dir) = load(text);
    let err = loaded.unwrap_err();
    let text = err.to_string();
    for want in [
        // Line 8 is the second portal's `burst_per_10s`.
        "leadsync.toml:8:1: portals[1].hubspot.burst_per_10s:",
        "leadsync.toml:6:10: portals[1].hubspot: portal 43 has no HubSpot credentials",
        "portals[1].store.url: `sqlite://leadsync.db` is also portals[0]'s store",
        "portals[2].hubspot.portal_id: every portal needs its HubSpot portal id",
        "leadsync.toml:12:10: portals[2].server: `server` cannot be set per portal",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

/// The shipped rules, Salesforce mapping and SLA, copied into `to`.
fn copy_mappings(to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["lifecycle.toml", "salesforce.toml", "sla.toml"] {
        std::fs::copy(repo_root().join("mappings").join(f), to.join(f)).unwrap();
    }
}

/// The line (1-based) of the first line of `text` starting with `start`, after indentation.
fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start}"))
        + 1
}

// README (Many portals): "`leadsync check` checks every portal's rules, Salesforce mapping and
// SLA file, each problem at its file and line, naming the portals that read the file"
#[test]
fn check_reads_each_portal_s_rules_mapping_and_sla_and_names_the_portal_at_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    copy_mappings(&dir.path().join("mappings"));
    copy_mappings(&dir.path().join("p43"));
    let config = "[hubspot]\nprivate_app_token = \"pat-x\"\n\
                  [[portals]]\n[portals.hubspot]\nportal_id = 42\n[portals.store]\nurl = \"sqlite://a.db\"\n\
                  [[portals]]\n[portals.hubspot]\nportal_id = 43\n\
                  [portals.rules]\npath = \"p43/lifecycle.toml\"\nsla_path = \"p43/sla.toml\"\n\
                  [portals.salesforce]\nmapping_path = \"p43/mapping.toml\"\n\
                  [portals.store]\nurl = \"sqlite://b.db\"\n";
    std::fs::write(dir.path().join("leadsync.toml"), config).unwrap();
    std::fs::rename(
        dir.path().join("p43/salesforce.toml"),
        dir.path().join("p43/mapping.toml"),
    )
    .unwrap();
    let check = || run_bin(&["check", "--config", "leadsync.toml"], dir.path());

    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "2 portals",
        "== portal 42 ==\nrules: ok — mappings/lifecycle.toml",
        "salesforce mapping: ok — mappings/salesforce.toml\nsales SLA: ok — mappings/sla.toml",
        "== portal 43 ==\nrules: ok — p43/lifecycle.toml",
        "salesforce mapping: ok — p43/mapping.toml\nsales SLA: ok — p43/sla.toml",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }

    // Portal 43's files broken, each its own way; 42's, which the top level names, untouched.
    let rules = std::fs::read_to_string(dir.path().join("p43/lifecycle.toml")).unwrap();
    let stage = line_of(&rules, "id = \"sal\"");
    std::fs::write(
        dir.path().join("p43/lifecycle.toml"),
        rules.replacen(
            "id = \"sal\"\nhubspot = \"marketingqualifiedlead\"",
            "id = \"sal\"\nhubspot = 7",
            1,
        ),
    )
    .unwrap();
    let sla = std::fs::read_to_string(dir.path().join("p43/sla.toml")).unwrap();
    let touch = line_of(&sla, "first_touch");
    std::fs::write(
        dir.path().join("p43/sla.toml"),
        sla.replacen(
            &sla.lines().nth(touch - 1).unwrap().to_string(),
            "first_touch = \"soon\"",
            1,
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("p43/mapping.toml")).unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in [
        format!("p43/lifecycle.toml:{}:", stage + 1),
        format!("p43/sla.toml:{touch}:"),
        "p43/mapping.toml: portals[1].salesforce.mapping_path: no such file".to_string(),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("{want}\n{stderr}"));
        assert!(line.ends_with("(portal 43)"), "names the portal: {line}");
    }
    assert!(!stderr.contains("portal 42"), "42's files are fine:\n{stderr}");
    assert!(stderr.contains("3 problem(s) found"), "{stderr}");

    // One file read by both portals: its problem once, naming both.
    std::fs::write(dir.path().join("p43/lifecycle.toml"), &rules).unwrap();
    std::fs::write(dir.path().join("p43/sla.toml"), &sla).unwrap();
    std::fs::copy(
        repo_root().join("mappings/salesforce.toml"),
        dir.path().join("p43/mapping.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leadsync.toml"),
        config.replace("sla_path = \"p43/sla.toml\"\n", ""),
    )
    .unwrap();
    let shared = dir.path().join("mappings/sla.toml");
    std::fs::write(
        &shared,
        sla.replacen("first_touch = \"4h\"", "first_touch = \"soon\"", 1),
    )
    .unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = format!("mappings/sla.toml:{touch}:");
    assert_eq!(stderr.matches(&line).count(), 1, "once:\n{stderr}");
    assert!(stderr.contains("(portals 42, 43)"), "{stderr}");
}

// README (Many portals): "`check --online` compares each portal's rules with its own portal"
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_compares_each_portal_s_rules_with_its_own_portal() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let option = |(v, l): (&str, &str)| serde_json::json!({"value": v, "label": l, "displayOrder": 0, "hidden": false});
    let options: Vec<serde_json::Value> = [
        ("COMPUTER_SOFTWARE", "Computer Software"),
        (
            "INFORMATION_TECHNOLOGY_AND_SERVICES",
            "Information Technology and Services",
        ),
        ("INTERNET", "Internet"),
        ("FINANCIAL_SERVICES", "Financial Services"),
        ("MARKETING_AND_ADVERTISING", "Marketing and Advertising"),
        ("SOFTWARE_AS_A_SERVICE", "SaaS"),
        ("software", "Software (other)"),
    ]
    .map(option)
    .into();
    let industries = serde_json::json!({"results": [
        {"name": "industry", "label": "Industry", "type": "enumeration", "fieldType": "select",
         "groupName": "contactinformation", "options": options}
    ]});
    // Each portal's HubSpot is asked once, by that portal's own client.
    let mut hubspots = Vec::new();
    for _ in 0..2 {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/crm/v3/properties/contacts"))
            .respond_with(ResponseTemplate::new(200).set_body_json(industries.clone()))
            .expect(1)
            .mount(&server)
            .await;
        hubspots.push(server);
    }
    let dir = tempfile::tempdir().unwrap();
    copy_mappings(&dir.path().join("mappings"));
    copy_mappings(&dir.path().join("p43"));
    let rules = std::fs::read_to_string(dir.path().join("p43/lifecycle.toml"))
        .unwrap()
        .replacen(
            r#""FINANCIAL_SERVICES","#,
            r#""FINANCIAL_SERVICES", "COMPUTR_SOFTWARE","#,
            1,
        );
    std::fs::write(dir.path().join("p43/lifecycle.toml"), &rules).unwrap();
    let config = format!(
        "[hubspot]\nprivate_app_token = \"pat-x\"\n\
         [[portals]]\n[portals.hubspot]\nportal_id = 42\napi_base_url = \"{}\"\n[portals.store]\nurl = \"sqlite://a.db\"\n\
         [[portals]]\n[portals.hubspot]\nportal_id = 43\napi_base_url = \"{}\"\n\
         [portals.rules]\npath = \"p43/lifecycle.toml\"\n[portals.store]\nurl = \"sqlite://b.db\"\n",
        hubspots[0].uri(),
        hubspots[1].uri()
    );
    std::fs::write(dir.path().join("leadsync.toml"), config).unwrap();
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run_bin(&["check", "--online", "--config", "leadsync.toml"], &cwd))
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("== portal 42 ==") && stdout.contains("== portal 43 =="),
        "{stdout}"
    );
    let line = line_of(&rules, "target_industries");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("is not an option")).collect();
    assert_eq!(warnings.len(), 1, "portal 42's rules offer nothing amiss:\n{stderr}");
    assert!(
        warnings[0].contains(&format!("p43/lifecycle.toml:{line}:")) && warnings[0].contains("COMPUTR_SOFTWARE"),
        "{}",
        warnings[0]
    );
    for server in &hubspots {
        server.verify().await;
    }
}

// README (Many portals): "the example configuration shows a commented `[[portals]]` block"
#[test]
fn the_example_configuration_s_portals_block_uncommented_is_two_portals_that_check_passes() {
    let text = std::fs::read_to_string(repo_root().join("leadsync.example.toml")).unwrap();
    let at = text.find("# [[portals]]").expect("the example shows [[portals]]");
    let block: Vec<&str> = text[at..]
        .lines()
        .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    copy_mappings(&dir.path().join("mappings"));
    copy_mappings(&dir.path().join("mappings/eu"));
    let path = dir.path().join("leadsync.toml");
    std::fs::write(&path, format!("{}{}\n", &text[..at], block.join("\n"))).unwrap();
    // The OAuth app's half, for every portal, from the environment, as the example advises.
    let app = [
        ("LEADSYNC__HUBSPOT__CLIENT_ID".to_string(), "app".to_string()),
        ("LEADSYNC__HUBSPOT__CLIENT_SECRET".to_string(), "app-secret".to_string()),
    ];
    let loaded = load_with_env(Some(&path), app.clone()).unwrap_or_else(|e| panic!("{e}"));
    let portals = loaded.portals();
    assert_eq!(portals.len(), 2);
    let (a, b) = (&portals[0].settings, &portals[1].settings);
    assert_eq!(
        (a.hubspot.portal_id, b.hubspot.portal_id),
        (Some(12345678), Some(87654321))
    );
    assert_eq!((a.hubspot.burst_per_10s, b.hubspot.burst_per_10s), (80, 40));
    assert_eq!(b.schedule.sync, "0 */2 * * * *");
    assert_eq!(a.schedule.sync, "0 */5 * * * *", "the top level's");
    assert_eq!(b.rules.path, std::path::PathBuf::from("mappings/eu/lifecycle.toml"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["check", "--config", "leadsync.toml"])
        .current_dir(dir.path())
        .env_remove("LEADSYNC_CONFIG")
        .envs(app)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("== portal 87654321 ==\nrules: ok — mappings/eu/lifecycle.toml"),
        "{stdout}"
    );
}

/// One portal's settings over its own sandbox and store, as `[[portals]]` would compile them.
fn portal_settings(sb: &SandboxHandle, store_url: String, bind: &str) -> Settings {
    let c = sb.config();
    let root = repo_root();
    let mut s = Settings::default();
    s.rules.path = root.join("mappings/lifecycle.toml");
    s.rules.sla_path = root.join("mappings/sla.toml");
    s.hubspot.api_base_url = sb.hubspot_base_url();
    s.hubspot.token_url = sb.hubspot_token_url();
    s.hubspot.portal_id = Some(c.hubspot_portal_id);
    s.hubspot.client_id = Some(c.hubspot_client_id.clone());
    s.hubspot.client_secret = Some(SecretString::from(c.hubspot_client_secret.clone()));
    s.hubspot.refresh_token = Some(SecretString::from(c.hubspot_refresh_token.clone()));
    s.hubspot.burst_per_10s = 1_500;
    s.salesforce.login_url = sb.salesforce_login_url();
    s.salesforce.client_id = Some(c.salesforce_client_id.clone());
    s.salesforce.client_secret = Some(SecretString::from(c.salesforce_client_secret.clone()));
    s.salesforce.refresh_token = Some(SecretString::from(c.salesforce_refresh_token.clone()));
    s.salesforce.mapping_path = root.join("mappings/salesforce.toml");
    s.store.url = store_url;
    s.server.bind = bind.to_string();
    for cron in [
        &mut s.schedule.sync,
        &mut s.schedule.rescore,
        &mut s.schedule.sla,
        &mut s.schedule.opportunities,
    ] {
        *cron = NEVER.into();
    }
    s
}

/// Submits a demo request for `lead` (the sandbox delivers its webhook) and waits until the
/// contact is linked to Salesforce in `store`; the time that took.
async fn demo_request_to_salesforce(sb: &SandboxHandle, store: &Store, lead: &str) -> StdDuration {
    let id = HubSpotId::try_from(lead.to_string()).unwrap();
    let started = Instant::now();
    assert!(sb.submit_form(lead, "Request a demo").is_some());
    loop {
        let rows = store.contacts(std::slice::from_ref(&id)).await.unwrap();
        if rows.get(&id).is_some_and(|r| r.state.salesforce.is_some()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < StdDuration::from_secs(60),
            "contact {lead} not in Salesforce after 60 s"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

async fn open_outbox(store: &Store) -> usize {
    let mut open = 0;
    for kind in [OutboxKind::HubSpotWrite, OutboxKind::Promote] {
        for state in [OutboxState::Pending, OutboxState::Sending] {
            open += store.outbox_in(kind, state).await.unwrap().len();
        }
    }
    open
}

// README (Many portals): "one portal answering only 429s does not slow the other", on each store.
mod a_portal_answering_only_429s_does_not_slow_the_other_and_webhooks_go_to_their_portal {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::a_portal_answering_only_429s_does_not_slow_the_other(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::a_portal_answering_only_429s_does_not_slow_the_other(Backend::Postgres).await
    }
}

/// Two sandbox portals behind one listener, each on its own store of `backend`'s kind.
async fn a_portal_answering_only_429s_does_not_slow_the_other(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hook = format!("http://{addr}/webhooks/hubspot");
    let healthy = Sandbox::start(SandboxConfig {
        hubspot_portal_id: 42,
        webhook_url: Some(hook.clone()),
        ..TestApp::sandbox_config(200)
    })
    .await
    .unwrap();
    // Every API call inside a 429 burst, and the burst never ends; another app's secret.
    let refusing = Sandbox::start(SandboxConfig {
        hubspot_portal_id: 43,
        hubspot_client_secret: "another-app-secret".into(),
        rate_limit_burst_every: StdDuration::from_secs(1),
        rate_limit_burst_length: StdDuration::from_secs(1),
        webhook_url: Some(hook.clone()),
        ..TestApp::sandbox_config(50)
    })
    .await
    .unwrap();
    // Each portal its own store: another SQLite file, or another PostgreSQL database.
    let ((url_a, _dir_a), (url_b, _dir_b)) = (backend.fresh().await, backend.fresh().await);
    let a = Loaded {
        settings: portal_settings(&healthy, url_a, &addr.to_string()),
        file: None,
    };
    let b = Loaded {
        settings: portal_settings(&refusing, url_b, &addr.to_string()),
        file: None,
    };
    let mut both = a.settings.clone();
    both.portals = vec![a.settings.clone(), b.settings.clone()];
    let deployment = Loaded {
        settings: both,
        file: None,
    };
    assert_eq!(deployment.portals().len(), 2);

    let syncer_a = leadsync::daemon::syncer(&a).await.unwrap();
    leadsync::daemon::ensure_setup(&syncer_a, true).await.unwrap();
    syncer_a
        .backfill(
            &BackfillOptions::default(),
            healthy.now() + chrono::Duration::seconds(1),
            |_, _| {},
        )
        .await
        .unwrap();
    let leads = demo_ready_leads(&syncer_a.store).await;
    assert!(leads.len() >= 2, "two leads to promote: {leads:?}");

    // The baseline: portal 42 alone, as a single-portal file runs it.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let alone = tokio::spawn(Daemon::on(&a, syncer_a.clone(), listener).run(stopped));
    let waited_before = syncer_a.hubspot.limits().waited();
    let baseline = demo_request_to_salesforce(&healthy, &syncer_a.store, &leads[0]).await;
    let waited_alone = syncer_a.hubspot.limits().waited() - waited_before;
    stop.send(true).unwrap();
    alone.await.unwrap().unwrap();

    // Both portals behind one listener; each with fresh clients, as `leadsync run` builds them.
    let syncer_a = leadsync::daemon::syncer(&a).await.unwrap();
    let syncer_b: Syncer = leadsync::daemon::syncer(&b).await.unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let daemon = Daemon::on_portals(
        &deployment,
        vec![(a.clone(), syncer_a.clone()), (b.clone(), syncer_b.clone())],
        listener,
    );
    let running = tokio::spawn(daemon.run(stopped));

    // Portal 43's client keeps calling its HubSpot, refused every time, while 42's webhook goes
    // through: its own incremental cycles, back to back, as its sync job would run them.
    let refused_before = refusing.faults().get(fault_kind::BURST).copied().unwrap_or(0);
    let (b_stop, mut b_stopped) = tokio::sync::watch::channel(false);
    let hammer = {
        let (s, now) = (syncer_b.clone(), refusing.now());
        tokio::spawn(async move {
            while !*b_stopped.borrow() {
                tokio::select! {
                    _ = s.incremental(now, chrono::Duration::days(1)) => {},
                    _ = b_stopped.changed() => {},
                }
            }
        })
    };
    // A person on portal 43 asks for a demo too: its webhook comes to the same listener.
    let contact_43 = CONTACT_ID_BASE.to_string();
    assert!(refusing.submit_form(&contact_43, "Request a demo").is_some());
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let waited_before = syncer_a.hubspot.limits().waited();
    let beside = demo_request_to_salesforce(&healthy, &syncer_a.store, &leads[1]).await;
    let waited_beside = syncer_a.hubspot.limits().waited() - waited_before;
    let refused_beside = refusing.faults().get(fault_kind::BURST).copied().unwrap_or(0) - refused_before;
    b_stop.send(true).unwrap();
    hammer.await.unwrap();

    assert!(
        refused_beside > 0,
        "portal 43 was refused while 42's webhook went through"
    );
    assert_eq!(healthy.rate_limited("hubspot"), 0, "portal 42 was never refused");
    // Its own pacing (4 searches a second) only: a limiter shared with 43 would hold its calls
    // for the seconds 43's refusals ask for.
    assert!(
        waited_beside <= waited_alone + StdDuration::from_millis(500),
        "portal 42's limiter held its calls {waited_beside:?} beside the 429 portal, {waited_alone:?} alone"
    );
    assert!(
        beside <= baseline * 3 + StdDuration::from_secs(2),
        "webhook to Salesforce: {beside:?} beside the 429 portal, {baseline:?} alone"
    );
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while open_outbox(&syncer_a.store).await > 0 {
        assert!(Instant::now() < deadline, "portal 42's outbox drains");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }

    // Each delivery went to its portal's inbox: 43's into its own store, none into 42's.
    let http = reqwest::Client::new();
    let b_inbox = syncer_b.store.inbox_depth().await.unwrap().0;
    assert!(
        b_inbox > 0,
        "portal 43's webhook waits in its own inbox (its jobs wait for HubSpot)"
    );
    let event = |portal: u64, object: u64| {
        serde_json::json!({"eventId": object, "subscriptionId": 1, "portalId": portal, "appId": 1,
            "occurredAt": 1_764_000_000_000i64, "subscriptionType": "contact.creation", "attemptNumber": 0,
            "objectId": object, "changeSource": "CRM_UI"})
    };
    let post = async |body: String, secret: &str| {
        let r = post_signed(&http, &hook, secret, &body).await;
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // 43's event signed with 42's app secret: that app is not installed in 43.
    let body = serde_json::json!([event(43, 777_001)]).to_string();
    let (code, text) = post(body, "sandbox-client-secret").await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("portal(s) 43 not among"), "{text}");
    let body = serde_json::json!([event(43, 777_002)]).to_string();
    assert_eq!(post(body, "another-app-secret").await.0, 200);
    assert_eq!(syncer_b.store.inbox_depth().await.unwrap().0, b_inbox + 1);
    // A delivery that names an unknown portal beside a known one: the known one is kept.
    let body = serde_json::json!([event(99, 777_003), event(43, 777_004)]).to_string();
    let (code, text) = post(body, "another-app-secret").await;
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains("portal(s) 99 not among") && text.contains("1 event(s) refused, 1 kept"),
        "{text}"
    );
    assert_eq!(syncer_b.store.inbox_depth().await.unwrap().0, b_inbox + 2);
    // Without a portalId there is no telling whose it is.
    let mut no_portal = event(42, 777_005);
    no_portal.as_object_mut().unwrap().remove("portalId");
    let (code, text) = post(serde_json::json!([no_portal]).to_string(), "sandbox-client-secret").await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("has no portalId"), "{text}");

    // Metrics and the status page are per portal.
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for portal in ["42", "43"] {
        let want = format!("leadsync_api_calls_total{{portal=\"{portal}\",system=\"hubspot\"");
        assert!(metrics.contains(&want), "{want}\n{metrics}");
    }
    assert_eq!(
        metrics.matches("# TYPE leadsync_api_calls_total counter").count(),
        1,
        "one family"
    );
    // The pipeline's own counters too: portal 42's webhook was evaluated, moved to SQL and
    // promoted in 42's tasks (its inbox worker, the outbox worker its scheduler spawns), under
    // the lease 42 took. Other tests in this binary add unlabelled samples only.
    let counted = |name: &str, also: &str| {
        metrics.lines().any(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains("portal=\"42\"")
                && l.contains(also)
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
        })
    };
    for (name, also) in [
        ("leadsync_evaluations_total", ""),
        ("leadsync_transitions_total", "to=\"sql\""),
        ("leadsync_promotions_total", ""),
        ("leadsync_lease_takeovers_total", ""),
    ] {
        assert!(
            counted(name, also),
            "{name} with portal=\"42\" {also}: at least 1\n{metrics}"
        );
        assert_eq!(
            metrics.matches(&format!("# TYPE {name} counter")).count(),
            1,
            "one family: {name}"
        );
    }
    // 42's webhook waited in its inbox under its label; each portal's deliveries under its own.
    assert!(
        sample(
            &metrics,
            "leadsync_inbox_processing_lag_seconds_count",
            &[("portal", "42")]
        ) >= Some(1.0),
        "inbox lag of portal 42\n{metrics}"
    );
    for portal in ["42", "43"] {
        assert!(
            sample(&metrics, "leadsync_webhook_deliveries_total", &[("portal", portal)]) >= Some(1.0),
            "deliveries of portal {portal}\n{metrics}"
        );
    }
    let status = |q: &str| http.get(format!("http://{addr}/status.json{q}")).send();
    let s43: serde_json::Value = status("?portal=43").await.unwrap().json().await.unwrap();
    assert_eq!(s43["portal"], 43);
    assert_eq!(s43["portals"], serde_json::json!([42, 43]));
    assert_eq!(s43["inbox_depth"].as_u64(), Some(b_inbox as u64 + 2));
    let s42: serde_json::Value = status("").await.unwrap().json().await.unwrap();
    assert_eq!(s42["portal"], 42, "the first portal by default");
    assert_eq!(status("?portal=99").await.unwrap().status().as_u16(), 404);
    let ready = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "portal 43's 429s leave the listener ready"
    );

    // On PostgreSQL, a second replica of this two-portal file on the same databases: it
    // serves webhooks into the shared inboxes and stands by while the first holds 42's lease,
    // then takes the lease over when the first stops and does 42's work.
    let second = if backend == Backend::Postgres {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pair = vec![
            (a.clone(), leadsync::daemon::syncer(&a).await.unwrap()),
            (b.clone(), leadsync::daemon::syncer(&b).await.unwrap()),
        ];
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(Daemon::on_portals(&deployment, pair, listener).run(stopped));
        let first = syncer_a
            .store
            .lease("42")
            .await
            .unwrap()
            .expect("the first replica holds 42's lease");
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        let still = syncer_a.store.lease("42").await.unwrap().unwrap();
        assert_eq!(
            (still.holder.as_str(), still.generation),
            (first.holder.as_str(), first.generation),
            "the second replica stands by"
        );
        Some((addr, stop, running, first))
    } else {
        None
    };

    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    if let Some((addr, stop, running, first)) = second {
        let deadline = Instant::now() + StdDuration::from_secs(30);
        loop {
            let now = syncer_a.store.lease("42").await.unwrap().unwrap();
            if now.holder != first.holder && now.generation > first.generation && now.expires_at > chrono::Utc::now() {
                break;
            }
            assert!(Instant::now() < deadline, "the second replica takes 42's lease over");
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        // A webhook of 42's to the second replica: it is now the one that works it off.
        let hook = format!("http://{addr}/webhooks/hubspot");
        let calls_before = healthy.api_calls("hubspot");
        let mut change = event(42, leads[0].parse().unwrap());
        change["eventId"] = 778_001.into();
        let body = serde_json::json!([change]).to_string();
        let r = post_signed(&http, &hook, "sandbox-client-secret", &body).await;
        assert_eq!(r.status().as_u16(), 200);
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while syncer_a.store.inbox_depth().await.unwrap().0 > 0 {
            assert!(Instant::now() < deadline, "the second replica works 42's inbox off");
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        assert!(
            healthy.api_calls("hubspot") > calls_before,
            "the second replica read the contact from 42's HubSpot (the first has stopped)"
        );
        stop.send(true).unwrap();
        running.await.unwrap().unwrap();
    }
    healthy.shutdown().await;
    refusing.shutdown().await;
}

/// The value of the series `name` whose labels include every one of `labels` (`k="v"`),
/// summed over the series that do; `None` when there is none.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|l| l.rsplit_once("} "))
        .filter(|(series, _)| labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|(_, value)| value.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn scrape(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// README (Many portals): "the webhook-intake series … labelled `portal="ID"`, `unknown` for a
// portal not served". Portal ids no other test uses, so the process-wide counts are this
// test's own.
#[tokio::test]
async fn webhook_intake_series_are_counted_per_portal_and_portals_not_served_under_one_label() {
    use leadsync::server::{AppState, Application};
    use std::sync::Arc;
    let (a, b) = (7101u64, 7102u64);
    let (store_a, _dir_a) = crate::support::sqlite().await;
    let (store_b, _dir_b) = crate::support::sqlite().await;
    let state = |store: &Store| AppState {
        store: store.clone(),
        client_secret: Some(SecretString::from(crate::support::SECRET)),
        public_base_url: None,
        wake: Arc::new(tokio::sync::Notify::new()),
        ready: Arc::new(|| Box::pin(async { Ok(()) })),
        extra_metrics: Arc::new(String::new),
        status: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Application::on_portals(
        vec![(Some(a), state(&store_a)), (Some(b), state(&store_b))],
        listener,
        1 << 20,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let hook = format!("http://{addr}/webhooks/hubspot");
    let at = chrono::Utc::now().timestamp_millis();
    let event = |portal: u64, object: u64| {
        let mut e = crate::support::hubspot_event("contact.creation", object, None, at);
        e["portalId"] = portal.into();
        e
    };
    let post = async |events: Vec<serde_json::Value>| {
        let body = serde_json::Value::Array(events).to_string();
        post_signed(&http, &hook, crate::support::SECRET, &body)
            .await
            .status()
            .as_u16()
    };
    // One delivery: two events of a, one of b, one of a portal this deployment does not serve.
    let first = vec![event(a, 1), event(a, 2), event(b, 3), event(987_654_321, 4)];
    assert_eq!(post(first).await, 400);
    // a's two again: duplicates, a's own.
    assert_eq!(post(vec![event(a, 1), event(a, 2)]).await, 200);
    // Signed with a secret no portal has: refused before it is routed.
    let body = serde_json::json!([event(a, 6)]).to_string();
    assert_eq!(
        post_signed(&http, &hook, "not-the-secret", &body)
            .await
            .status()
            .as_u16(),
        401
    );
    // b's store gone: refused 503, and b's refusal.
    store_b.close().await;
    assert_eq!(post(vec![event(b, 5)]).await, 503);

    let metrics = scrape(&http, addr).await;
    let (pa, pb) = (a.to_string(), b.to_string());
    let of = |name: &str, portal: &str| sample(&metrics, name, &[("portal", portal)]);
    assert_eq!(of("leadsync_webhook_deliveries_total", &pa), Some(2.0), "{metrics}");
    assert_eq!(of("leadsync_webhook_events_total", &pa), Some(4.0), "{metrics}");
    assert_eq!(of("leadsync_webhook_ack_seconds_count", &pa), Some(2.0), "{metrics}");
    assert_eq!(of("leadsync_webhook_duplicates_total", &pa), Some(2.0), "{metrics}");
    assert_eq!(
        of("leadsync_webhook_deliveries_total", &pb),
        Some(1.0),
        "the 503 is not a delivery taken: {metrics}"
    );
    assert_eq!(of("leadsync_webhook_events_total", &pb), Some(1.0), "{metrics}");
    assert_eq!(of("leadsync_webhook_duplicates_total", &pb).unwrap_or(0.0), 0.0);
    let refused = |portal: &str, status: &str| {
        sample(
            &metrics,
            "leadsync_webhook_refused_total",
            &[("portal", portal), ("status", status)],
        )
    };
    assert_eq!(refused(&pb, "503"), Some(1.0), "{metrics}");
    assert_eq!(refused(&pa, "400"), None, "a's events were kept: {metrics}");
    assert!(refused("unknown", "400") >= Some(1.0), "{metrics}");
    assert!(refused("unknown", "401") >= Some(1.0), "{metrics}");
    assert_eq!(refused(&pa, "401"), None, "{metrics}");
    assert!(of("leadsync_webhook_events_total", "unknown") >= Some(1.0), "{metrics}");
    assert!(
        !metrics.contains("987654321"),
        "a portal not served is no series of its own: {metrics}"
    );
    for family in [
        "leadsync_webhook_deliveries_total counter",
        "leadsync_webhook_events_total counter",
        "leadsync_webhook_ack_seconds histogram",
    ] {
        assert_eq!(metrics.matches(&format!("# TYPE {family}")).count(), 1, "{family}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

// README (Many portals): "dead letters and fenced writes … labelled `portal="ID"`": counted
// under the portal whose work (`sync::portal::PortalScope`) made them.
#[tokio::test]
async fn dead_letters_and_fenced_writes_are_counted_under_the_portal_whose_work_made_them() {
    use leadsync::sync::portal::PortalScope;
    // A server first: it installs the process-wide recorder that `/metrics` renders.
    let server = crate::support::TestServer::start(None, 1 << 20).await;
    let store = server.store.clone();
    let scope = PortalScope::new(Some("7103"));
    let now = chrono::Utc::now();
    store
        .enqueue(OutboxKind::HubSpotWrite, "portals:dead:1", "1", "{}", now)
        .await
        .unwrap();
    let item = store.due(OutboxKind::HubSpotWrite, now, 10).await.unwrap().remove(0);
    scope
        .run(store.failed(&item, "refused for good", OutboxState::Dead, now))
        .await
        .unwrap();
    // A holder paused past its lease, which another replica took over: its write is fenced.
    let ttl = chrono::Duration::seconds(3);
    let old = store.take_lease("7103", "old", now, ttl).await.unwrap().unwrap();
    store.take_lease("7103", "new", now + ttl, ttl).await.unwrap().unwrap();
    let late = scope.run(store.fenced(&old).set_cursor("sync", "late")).await;
    assert!(late.is_err(), "fenced: {late:?}");

    let metrics = scrape(&server.http, server.addr).await;
    for name in ["leadsync_dead_letters_total", "leadsync_fenced_writes_total"] {
        assert_eq!(
            sample(&metrics, name, &[("portal", "7103")]),
            Some(1.0),
            "{name}\n{metrics}"
        );
    }
}

/// A `[[portals]]` block of one sandbox portal on the store at `store_url`.
fn portal_block(sb: &SandboxHandle, store_url: &str) -> String {
    let c = sb.config();
    format!(
        "[[portals]]\n[portals.hubspot]\nportal_id = {}\napi_base_url = {:?}\ntoken_url = {:?}\n\
         client_id = {:?}\nclient_secret = {:?}\nrefresh_token = {:?}\nburst_per_10s = 250\n\
         [portals.salesforce]\nlogin_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\nrefresh_token = {:?}\n\
         [portals.store]\nurl = {:?}\n",
        c.hubspot_portal_id,
        sb.hubspot_base_url(),
        sb.hubspot_token_url(),
        c.hubspot_client_id,
        c.hubspot_client_secret,
        c.hubspot_refresh_token,
        sb.salesforce_login_url(),
        c.salesforce_client_id,
        c.salesforce_client_secret,
        c.salesforce_refresh_token,
        store_url,
    )
}

/// Two sandbox portals (42 and 43) delivering webhooks to `front`, each backfilled into its
/// own PostgreSQL database, and a two-portal `leadsync.toml` in `dir` for `leadsync run`
/// (`replicas`: more keys of its `[replicas]`): the sandboxes, their stores, their URLs, the file.
async fn two_portals_run(
    dir: &tempfile::TempDir,
    front: u16,
    contacts: u32,
    lease: StdDuration,
    replicas: &str,
) -> (Vec<SandboxHandle>, Vec<Store>, Vec<String>, std::path::PathBuf) {
    let hook = format!("http://127.0.0.1:{front}/webhooks/hubspot");
    let started = Instant::now();
    let mut sandboxes = Vec::new();
    for (portal, seed, secret) in [(42, 7, "sandbox-client-secret"), (43, 8, "another-app-secret")] {
        let sb = Sandbox::start(SandboxConfig {
            seed,
            contacts,
            companies: 10,
            now: chrono::Utc::now(),
            hubspot_portal_id: portal,
            hubspot_client_secret: secret.into(),
            hubspot_burst_per_10s: 300,
            webhook_url: Some(hook.clone()),
            webhook_backoff: StdDuration::from_millis(300),
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        sandboxes.push(sb);
    }
    // Each portal its store, set up and backfilled as `setup --apply` and `backfill` would.
    let mut urls = Vec::new();
    let mut stores = Vec::new();
    let mut file = String::new();
    for sb in &sandboxes {
        let url = crate::support::postgres_url().await;
        let one = Loaded {
            settings: portal_settings(sb, url.clone(), "127.0.0.1:0"),
            file: None,
        };
        let syncer = leadsync::daemon::syncer(&one).await.unwrap();
        leadsync::daemon::ensure_setup(&syncer, true).await.unwrap();
        syncer
            .backfill(
                &BackfillOptions::default(),
                sb.now() + chrono::Duration::seconds(1),
                |_, _| {},
            )
            .await
            .unwrap();
        syncer.store.close().await;
        file.push_str(&portal_block(sb, &url));
        stores.push(Store::open_existing(&url).await.unwrap());
        urls.push(url);
    }
    eprintln!("both portals set up and backfilled in {:?}", started.elapsed());
    let root = repo_root();
    let config = dir.path().join("leadsync.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\npath = {:?}\nsla_path = {:?}\n[salesforce]\nmapping_path = {:?}\n\
             [replicas]\nlease_seconds = {}\n{replicas}\
             [schedule]\nsync = \"*/2 * * * * *\"\nsla = \"*/5 * * * * *\"\nopportunities = \"*/5 * * * * *\"\n{file}",
            root.join("mappings/lifecycle.toml"),
            root.join("mappings/sla.toml"),
            root.join("mappings/salesforce.toml"),
            lease.as_secs(),
        ),
    )
    .unwrap();
    (sandboxes, stores, urls, config)
}

/// `leadsync run --config FILE` listening on `port`, its log in `log`; killed when dropped.
fn run_replica(config: &std::path::Path, port: u16, log: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("LEADSYNC_CONFIG")
        .env("LEADSYNC__SERVER__BIND", format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

// README (Many portals): "a second replica of a two-portal file takes both portals' leases over
// within the lease time when the first is killed (`kill -9`) while it works".
/// Two `leadsync run` processes of one two-portal file, each portal on its own PostgreSQL
/// database, behind one load balancer both sandboxes deliver webhooks to. The first holds both
/// portals' leases and is `kill -9`'d once both portals' forms are coming in; the second takes
/// both leases over within the lease time, every acknowledged event of each portal is
/// processed, and neither Salesforce org has a record created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_replica_of_two_portals_takes_both_leases_over_when_the_first_is_killed() {
    use crate::support::replicas::{acknowledged_and_lost, balancer, created_twice, free_port, holder, settled};
    const LEASE: StdDuration = StdDuration::from_secs(3);
    const CONTACTS: u32 = 40;
    const FORMS: u32 = 30;
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let front = balancer(ports.to_vec()).await;
    let (sandboxes, stores, urls, config) = two_portals_run(&dir, front, CONTACTS, LEASE, "").await;
    let replica = |i: usize| run_replica(&config, ports[i], &dir.path().join(format!("replica{i}.log")));
    let log = |i: usize| std::fs::read_to_string(dir.path().join(format!("replica{i}.log"))).unwrap_or_default();
    let leases = async |stores: &[Store]| {
        let mut held = Vec::new();
        for (store, portal) in stores.iter().zip(["42", "43"]) {
            held.push(holder(store, portal).await);
        }
        held
    };

    // The first takes both portals' leases; then the second starts and stands by.
    let mut first = replica(0);
    let first_pid = first.id().unwrap();
    let up = Instant::now();
    let generations: Vec<i64> = loop {
        let held = leases(&stores).await;
        if held.iter().all(|h| h.is_some_and(|(pid, _)| pid == first_pid)) {
            break held.into_iter().map(|h| h.unwrap().1).collect();
        }
        assert!(
            up.elapsed() < StdDuration::from_secs(60),
            "the first replica never held both leases:\n{}",
            log(0)
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    eprintln!("the first replica held both leases {:?} after its start", up.elapsed());
    let mut second = replica(1);
    let second_pid = second.id().unwrap();
    assert!(
        crate::support::ready_on(ports[1]).await,
        "the second replica never got ready:\n{}",
        log(1)
    );
    let held = leases(&stores).await;
    assert!(
        held.iter().all(|h| h.is_some_and(|(pid, _)| pid == first_pid)),
        "the second stands by while the first holds both leases: {held:?}"
    );

    // Both portals' forms come in; the first dies while it works on them.
    let calls = |sbs: &[SandboxHandle]| -> Vec<u64> {
        sbs.iter()
            .map(|sb| sb.api_calls("hubspot") + sb.api_calls("salesforce"))
            .collect()
    };
    let before = calls(&sandboxes);
    let mut killed_at = None;
    for f in 0..FORMS {
        let id = (CONTACT_ID_BASE + u64::from(f * 7 % CONTACTS)).to_string();
        let form = if f % 2 == 0 { "Request a demo" } else { "Contact us" };
        for sb in &sandboxes {
            sb.submit_form(&id, form);
        }
        let now = calls(&sandboxes);
        if killed_at.is_none() && f >= FORMS / 3 && now.iter().zip(&before).all(|(n, b)| n > b) {
            first.start_kill().unwrap(); // SIGKILL
            let _ = first.wait().await;
            eprintln!("kill -9 the holder of both leases (pid {first_pid}) after form {f}, at portal calls {now:?}");
            killed_at = Some(Instant::now());
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let killed_at = killed_at.expect("the first replica must be killed while it works for both portals");
    let mut took = [None, None];
    while took.iter().any(Option::is_none) {
        for (i, h) in leases(&stores).await.into_iter().enumerate() {
            if took[i].is_none() && h.is_some_and(|(pid, _)| pid != first_pid) {
                let (pid, generation) = h.unwrap();
                assert_eq!(pid, second_pid, "the surviving replica holds the lease");
                assert!(generation > generations[i], "a takeover is a new generation");
                took[i] = Some(killed_at.elapsed());
            }
        }
        assert!(
            killed_at.elapsed() < StdDuration::from_secs(30),
            "the second replica did not take both leases over: {took:?}\n{}",
            log(1)
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    eprintln!("portals 42 and 43 taken over {took:?} after the kill (lease {LEASE:?})");
    // Expired at most LEASE after its last renewal, tried every LEASE/3: one more second for
    // this loaded machine's scheduling (as `replicas::processes`).
    for t in took.iter().flatten() {
        assert!(
            *t <= LEASE + LEASE / 3 + StdDuration::from_secs(1),
            "takeover took {t:?} with a lease of {LEASE:?}"
        );
    }

    let settle = Instant::now();
    for (sb, store) in sandboxes.iter().zip(&stores) {
        while !settled(sb, store).await {
            assert!(
                settle.elapsed() < StdDuration::from_secs(120),
                "portal {} did not settle: inbox {:?}, outbox {:?}\n{}",
                sb.config().hubspot_portal_id,
                store.inbox_depth().await,
                store.outbox_counts().await,
                log(1)
            );
            tokio::time::sleep(StdDuration::from_millis(250)).await;
        }
    }
    eprintln!("both portals settled {:?} after the takeovers", settle.elapsed());
    for (sb, url) in sandboxes.iter().zip(&urls) {
        let portal = sb.config().hubspot_portal_id;
        let (acknowledged, lost) = acknowledged_and_lost(sb, url).await;
        assert!(
            acknowledged >= FORMS as usize,
            "portal {portal}: {acknowledged} events acknowledged"
        );
        assert!(
            lost.is_empty(),
            "portal {portal}: acknowledged events not processed: {lost:?}"
        );
        let (contacts, twice) = created_twice(sb);
        assert!(
            contacts > 0,
            "portal {portal}: no lead was promoted: the test proves nothing"
        );
        assert!(
            twice.is_empty(),
            "portal {portal}: Salesforce records created twice: {twice:?}"
        );
        assert_eq!(sb.rate_limited("hubspot"), 0, "portal {portal}: HubSpot answered 429");
    }

    // The second did both portals' work: HubSpot calls of each past the start's properties check.
    let metrics = scrape(&reqwest::Client::new(), ([127, 0, 0, 1], ports[1]).into()).await;
    for portal in ["42", "43"] {
        let work: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("leadsync_api_calls_total{"))
            .filter(|l| l.contains(&format!("portal=\"{portal}\"")) && l.contains("system=\"hubspot\""))
            .filter(|l| !l.contains("endpoint=\"properties."))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            work > 0.0,
            "the second replica called portal {portal}'s HubSpot\n{metrics}"
        );
    }

    let _ = second.start_kill();
    let _ = second.wait().await;
    for store in &stores {
        store.close().await;
    }
    for sb in sandboxes {
        sb.shutdown().await;
    }
}

// README (Many portals): "`check --online` compares each portal's Salesforce mapping with its
// own org, each problem naming the portal".
/// Portal 42's org is a sandbox's, with every field the shipped mapping names; portal 43's is
/// a copy of it (wiremock) without one of leadsync's context fields. Both read the shipped
/// mapping: only 43's org is short of a field, and the problem names portal 43.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_compares_each_portal_s_salesforce_mapping_with_its_own_org() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const MISSING: &str = "LeadSync_Grade__c";
    let sb = Sandbox::start(SandboxConfig {
        contacts: 10,
        companies: 10,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let c = sb.config().clone();
    // The sandbox org's describe answers, as the copy serves them.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/services/oauth2/token", sb.salesforce_login_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", c.salesforce_client_id.as_str()),
            ("refresh_token", c.salesforce_refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org43 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "00D43!token", "instance_url": org43.uri(), "token_type": "Bearer"
        })))
        .mount(&org43)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/properties/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"results": []})))
        .mount(&org43)
        .await;
    for object in ["Account", "Contact", "Opportunity", "OpportunityContactRole", "Task"] {
        let at = format!("/services/data/v62.0/sobjects/{object}/describe");
        let mut describe: serde_json::Value = http
            .get(format!("{}{at}", token["instance_url"].as_str().unwrap()))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if object == "Contact" {
            let fields = describe["fields"].as_array_mut().unwrap();
            let before = fields.len();
            fields.retain(|f| f["name"] != MISSING);
            assert_eq!(fields.len(), before - 1, "the sandbox org has {MISSING}");
        }
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(describe))
            .expect(1)
            .mount(&org43)
            .await;
    }
    let described_before = sb.calls().get("salesforce describe").copied().unwrap_or(0);

    let dir = tempfile::tempdir().unwrap();
    copy_mappings(&dir.path().join("mappings"));
    // The shipped mapping matches the sandbox org whole
    // (`cli::check_online_lists_which_salesforce_fields_are_leadsync_s_and_which_are_sales`).
    let config = format!(
        "[[portals]]\n[portals.hubspot]\nportal_id = 42\napi_base_url = {:?}\ntoken_url = {:?}\n\
         client_id = {:?}\nclient_secret = {:?}\nrefresh_token = {:?}\n\
         [portals.salesforce]\nlogin_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\nrefresh_token = {:?}\n\
         [portals.store]\nurl = \"sqlite://a.db\"\n\
         [[portals]]\n[portals.hubspot]\nportal_id = 43\napi_base_url = {:?}\nprivate_app_token = \"pat-43\"\n\
         [portals.salesforce]\nlogin_url = {:?}\nclient_id = \"sf-43\"\nclient_secret = \"sf-43-secret\"\nrefresh_token = \"sf-43-refresh\"\n\
         [portals.store]\nurl = \"sqlite://b.db\"\n",
        sb.hubspot_base_url(),
        sb.hubspot_token_url(),
        c.hubspot_client_id,
        c.hubspot_client_secret,
        c.hubspot_refresh_token,
        sb.salesforce_login_url(),
        c.salesforce_client_id,
        c.salesforce_client_secret,
        c.salesforce_refresh_token,
        org43.uri(),
        org43.uri(),
    );
    std::fs::write(dir.path().join("leadsync.toml"), config).unwrap();
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run_bin(&["check", "--online", "--config", "leadsync.toml"], &cwd))
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "43's org is short of a field:\n{stdout}\n{stderr}"
    );
    let at_42 = stdout.find("== portal 42 ==").expect("portal 42");
    let at_43 = stdout.find("== portal 43 ==").expect("portal 43");
    assert!(
        stdout[at_42..at_43].contains("salesforce mapping: matches the org"),
        "42's org has every field:\n{stdout}"
    );
    assert!(!stdout[at_43..].contains("matches the org"), "{stdout}");
    let problems: Vec<&str> = stderr.lines().filter(|l| l.contains(MISSING)).collect();
    assert_eq!(problems.len(), 1, "one portal's org is short of it:\n{stderr}");
    assert!(
        problems[0].starts_with("mappings/salesforce.toml:") && problems[0].contains("(portal 43)"),
        "the mapping's line and the portal: {}",
        problems[0]
    );
    assert!(!stderr.contains("(portal 42)"), "{stderr}");
    assert!(
        stderr.contains("1 problem(s) found against the org of portal 43"),
        "{stderr}"
    );
    assert_eq!(
        sb.calls().get("salesforce describe").copied().unwrap_or(0) - described_before,
        5,
        "42's own org described each of the five objects once"
    );
    org43.verify().await;
    sb.shutdown().await;
}

// README (Many portals): "with `max_portals_per_replica = 1` the two portals of a file spread
// over two replicas, and a portal whose holder dies waits for a replica with room".
/// Three `leadsync run` processes of one two-portal file with `max_portals_per_replica = 1`,
/// each portal on its own PostgreSQL database. The first up takes one lease and stands by for
/// the other portal (its cap is reached); the second takes that one, and each replica's
/// `/status.json` says which portal it holds. Forms of both portals are then processed. When
/// the first is `kill -9`'d, the second (at its cap) does not take its portal; a third replica,
/// started with room, does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_portal_per_replica_two_portals_spread_over_two_replicas_and_a_dead_one_s_portal_waits_for_room() {
    use crate::support::replicas::{balancer, created_twice, free_port, settled};
    const LEASE: StdDuration = StdDuration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let front = balancer(ports[..2].to_vec()).await;
    let (sandboxes, stores, _urls, config) =
        two_portals_run(&dir, front, 30, LEASE, "max_portals_per_replica = 1\n").await;
    let log = |i: usize| std::fs::read_to_string(dir.path().join(format!("replica{i}.log"))).unwrap_or_default();
    let replica = |i: usize| run_replica(&config, ports[i], &dir.path().join(format!("replica{i}.log")));
    // Who holds each portal's lease now (an expired lease holds nothing).
    let holders = async || {
        let mut held = Vec::new();
        for (store, portal) in stores.iter().zip(["42", "43"]) {
            let row = store.lease(portal).await.unwrap();
            held.push(row.filter(|r| r.expires_at > chrono::Utc::now()).map(|r| r.holder));
        }
        held
    };
    let pid_of = |holder: &Option<String>| holder.as_deref().and_then(crate::support::replicas::pid_of);
    let role = async |port: u16, portal: &str| -> (String, Option<String>) {
        let url = format!("http://127.0.0.1:{port}/status.json?portal={portal}");
        let v: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        (
            v["lease"]["role"].as_str().unwrap_or("none").to_string(),
            v["lease"]["holder"].as_str().map(str::to_string),
        )
    };

    // The first takes one portal, and only one, even after several lease times.
    let mut first = replica(0);
    let first_pid = first.id().unwrap();
    assert!(
        crate::support::ready_on(ports[0]).await,
        "the first never got ready:\n{}",
        log(0)
    );
    let up = Instant::now();
    while !holders().await.iter().any(|h| pid_of(h) == Some(first_pid)) {
        assert!(
            up.elapsed() < StdDuration::from_secs(60),
            "the first took no lease:\n{}",
            log(0)
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    tokio::time::sleep(LEASE * 2).await;
    let held = holders().await;
    let mine = held.iter().position(|h| pid_of(h) == Some(first_pid)).unwrap();
    let other = 1 - mine;
    assert_eq!(
        held[other],
        None,
        "at its cap of one, the first holds one portal: {held:?}\n{}",
        log(0)
    );
    let portals = ["42", "43"];
    assert_eq!(role(ports[0], portals[mine]).await.0, "holds");
    assert_eq!(role(ports[0], portals[other]).await, ("stands_by".to_string(), None));
    let page = |port: u16, portal: &str| reqwest::get(format!("http://127.0.0.1:{port}/?portal={portal}"));
    let html = page(ports[0], portals[mine]).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("holds the portal's lease and runs its jobs and workers"),
        "{html}"
    );
    let html = page(ports[0], portals[other]).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("stands by (serving webhooks); no replica holds the lease"),
        "{html}"
    );

    // Until replica `i` (process `pid`) holds portal `p`'s lease.
    let takes = async |i: usize, pid: u32, p: usize| {
        let up = Instant::now();
        while pid_of(&holders().await[p]) != Some(pid) {
            assert!(
                up.elapsed() < StdDuration::from_secs(60),
                "replica {i} never took portal {}:\n{}",
                portals[p],
                log(i)
            );
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
    };

    // The second takes the other portal.
    let mut second = replica(1);
    let second_pid = second.id().unwrap();
    takes(1, second_pid, other).await;
    let held = holders().await;
    assert_eq!(pid_of(&held[mine]), Some(first_pid), "{held:?}");
    assert_eq!(role(ports[1], portals[other]).await.0, "holds");
    let (r, h) = role(ports[1], portals[mine]).await;
    assert_eq!((r.as_str(), pid_of(&h)), ("stands_by", Some(first_pid)));

    // Both portals' forms are processed, each by its own holder.
    for f in 0..6u32 {
        let id = (CONTACT_ID_BASE + u64::from(f * 5 % 30)).to_string();
        for sb in &sandboxes {
            sb.submit_form(&id, "Request a demo");
        }
    }
    let settle = Instant::now();
    for (sb, store) in sandboxes.iter().zip(&stores) {
        while !settled(sb, store).await {
            assert!(
                settle.elapsed() < StdDuration::from_secs(120),
                "portal {} did not settle:\n{}\n{}",
                sb.config().hubspot_portal_id,
                log(0),
                log(1)
            );
            tokio::time::sleep(StdDuration::from_millis(250)).await;
        }
        let (promoted, twice) = created_twice(sb);
        assert!(
            promoted > 0,
            "portal {}: nothing promoted",
            sb.config().hubspot_portal_id
        );
        assert!(twice.is_empty(), "{twice:?}");
    }

    // The first dies: the second, at its cap, leaves its portal alone past the lease time.
    first.start_kill().unwrap();
    let _ = first.wait().await;
    tokio::time::sleep(LEASE * 2 + LEASE / 3).await;
    let held = holders().await;
    assert_eq!(held[mine], None, "the second is at its cap: {held:?}\n{}", log(1));
    assert_eq!(pid_of(&held[other]), Some(second_pid), "{held:?}");
    // A third, with room, takes it within the lease time.
    let mut third = replica(2);
    let third_pid = third.id().unwrap();
    takes(2, third_pid, mine).await;
    for child in [&mut second, &mut third] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    for store in &stores {
        store.close().await;
    }
    for sb in sandboxes {
        sb.shutdown().await;
    }
}
