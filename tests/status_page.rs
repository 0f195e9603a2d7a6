//! The status page (`GET /`, `GET /status.json`) and `leadsync report --format html`: the
//! figures shown equal the store's, every value escaped, the bearer token off loopback.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadsync::report::figures::{GroupBy, compute};
use leadsync::report::format::{ReportFormat, render};
use leadsync::server::status::{ApiBudget, HubSpotBudget, StatusAccess, StatusSources, gather};
use leadsync::store::report::{AuditLine, ContactFacts, ReportRows, TimerLine};
use leadsync::store::status::{JobOutcome, JobRun};
use secrecy::SecretString;

use crate::report::{november, store_of};
use crate::support::{Backend, TestServer, hubspot_event};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const HOSTILE: &str = "<script>alert('x')</script>";

/// One contact whose source and team are markup, through lead and MQL in November.
fn hostile_rows() -> ReportRows {
    let line = |at: &str, to: &str| AuditLine {
        contact_id: "7".into(),
        at: t(at),
        change: format!(r#"{{"kind":"stage","to":"{to}"}}"#),
        reason: HOSTILE.into(),
    };
    let facts = ContactFacts {
        contact_id: "7".into(),
        owner: Some("<b>rep</b>".into()),
        team: Some(HOSTILE.into()),
        source: Some(HOSTILE.into()),
        ..ContactFacts::default()
    };
    ReportRows {
        audit: vec![
            line("2026-11-02T09:00:00Z", "lead"),
            line("2026-11-03T09:00:00Z", "mql"),
        ],
        contacts: BTreeMap::from([("7".to_string(), facts)]),
        timers: vec![TimerLine {
            contact_id: "7".into(),
            policy: "mql-standard".into(),
            started_at: t("2026-11-03T09:00:00Z"),
            first_touch_at: Some(t("2026-11-03T11:00:00Z")),
            met_at: Some(t("2026-11-03T11:00:00Z")),
            breached_at: None,
            owner: Some("<b>rep</b>".into()),
            team: Some(HOSTILE.into()),
        }],
    }
}

// README (Reports): "--format html: one self-contained file, inline SVG charts, print CSS, every value escaped"
#[test]
fn the_html_report_is_self_contained_escapes_every_value_and_charts_the_same_figures() {
    let rows = hostile_rows();
    let r = compute(
        &rows,
        t("2026-11-01T00:00:00Z"),
        t("2026-12-01T00:00:00Z"),
        Some(GroupBy::Source),
        &[],
    )
    .unwrap();
    let html = render(&r, ReportFormat::Html);
    // Escaped, never markup: the source (a group), the team (SLA chart and table), the owner.
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>rep"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    // Self-contained and static: no script, no external asset, a print style.
    for external in ["src=", "href=", "<link", "@import", "url("] {
        assert!(!html.contains(external), "{external} in the report");
    }
    assert!(html.contains("@media print") && html.contains("@page"));
    // The three charts, drawn from the report's own figures.
    for chart in ["chart funnel", "chart first-touch", "chart sla"] {
        assert!(html.contains(&format!("<svg class=\"{chart}\"")), "{chart}");
    }
    let all = &r.groups[0];
    let lead = all.stages.iter().find(|s| s.stage.as_str() == "lead").unwrap();
    assert_eq!(lead.entered, 1);
    assert!(html.contains(">lead</text><rect class=\"bar\""));
    assert!(html.contains("1 · 100.0 % to next"), "lead → mql for the cohort");
    assert!(html.contains("median 2.0 h, p90 2.0 h (n=1)"), "the week's first touch");
    assert!(html.contains("1 met · 0 breached · 0 open"));
}

fn budget() -> ApiBudget {
    ApiBudget {
        hubspot: HubSpotBudget {
            leadsync_calls_today: 42,
            remaining_today: Some(249_958),
        },
        salesforce: None,
    }
}

on_both_stores!(the_status_shows_the_stores_figures,);

// README (Status page): "the funnel, open breaches with owner and lateness, jobs' last runs, inbox, outbox: the store's figures"
async fn the_status_shows_the_stores_figures(backend: Backend) {
    let (store, _dir) = store_of(backend).await;
    november(&store).await;
    let run = JobRun {
        at: t("2026-12-01T08:00:00Z"),
        ms: 1200,
        outcome: JobOutcome::Failed,
        error: Some("hubspot: 503".into()),
    };
    store.record_job_run("sync", &run).await.unwrap();
    let now = t("2026-12-01T10:00:00Z");
    let s = gather(&store, budget(), now).await.unwrap();
    // The funnel equals the store's counts per stage.
    let funnel = store.funnel().await.unwrap();
    for f in &s.funnel {
        let want: u64 = funnel.iter().filter(|r| r.stage == f.stage).map(|r| r.count).sum();
        assert_eq!(f.contacts, want, "{}", f.stage);
    }
    assert_eq!(
        s.funnel.iter().map(|f| f.contacts).sum::<u64>() + s.no_stage,
        funnel.iter().map(|r| r.count).sum::<u64>()
    );
    // Contact 2's timer: due Nov 3 14:00, breached, never touched: the one open breach.
    assert_eq!(s.open_breaches, 1);
    let b = &s.breaches[0];
    assert_eq!(
        (b.breach.contact_id.as_str(), b.breach.owner.as_deref()),
        ("2", Some("rep-b"))
    );
    assert_eq!(b.late_minutes, (now - t("2026-11-03T14:00:00Z")).num_minutes());
    assert_eq!(s.jobs[0].last_run.as_ref(), Some(&run));
    assert!(s.jobs[1..].iter().all(|j| j.last_run.is_none()), "never ran");
    assert_eq!(s.outbox, store.outbox_counts().await.unwrap());
    assert_eq!((s.inbox_depth, s.inbox_oldest_secs), (0, None));
    assert_eq!(s.budget, budget());
}

fn open() -> StatusSources {
    StatusSources {
        access: StatusAccess::Open,
        budget: std::sync::Arc::new(|_| budget()),
        replica: None,
    }
}

// README (Status page): "GET / is plain HTML with the funnel as inline SVG; /status.json the same data"
#[tokio::test]
async fn the_page_and_the_json_show_the_same_figures_as_the_store() {
    let (store, dir) = crate::support::sqlite().await;
    november(&store).await;
    let app = TestServer::start_status(store.clone(), dir, open()).await;
    let json: serde_json::Value = app
        .http
        .get(app.url("/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(html.contains("<svg class=\"chart funnel\""));
    for f in json["funnel"].as_array().unwrap() {
        let (stage, n) = (f["stage"].as_str().unwrap(), f["contacts"].as_u64().unwrap());
        let want: u64 = store
            .funnel()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.stage == stage)
            .map(|r| r.count)
            .sum();
        assert_eq!(n, want, "{stage}");
        assert!(
            html.contains(&format!(">{stage}</text><rect class=\"bar\"")),
            "{stage} drawn"
        );
        assert!(html.contains(&format!("data-value=\"{n}\"")), "{stage} = {n}");
    }
    assert_eq!(json["open_breaches"], 1);
    assert_eq!(json["breaches"][0]["owner"], "rep-b");
    assert!(html.contains("<td>2</td><td>rep-b</td><td>paris</td>"), "{html}");
    assert_eq!(json["budget"]["hubspot"]["leadsync_calls_today"], 42);
    assert!(html.contains("leadsync 42 calls · 249958 left"));
}

const TOKEN: &str = "status-token-0123456789abcdef";

// README (Status page): "off loopback, the bearer token or 401; the webhook intake is not concerned; the token never printed"
#[tokio::test]
async fn without_the_token_the_page_is_refused_while_the_webhooks_still_work() {
    let (store, dir) = crate::support::sqlite().await;
    let access = StatusAccess::for_bind("0.0.0.0:8080", Some(SecretString::from(TOKEN)));
    let app = TestServer::start_status(store, dir, StatusSources { access, ..open() }).await;
    for path in ["/", "/status.json"] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some(&format!("Bearer {TOKEN}x")[..]),
            Some(TOKEN),
        ] {
            let mut req = app.http.get(app.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{path} with {auth:?}");
            let headers = format!("{:?}", res.headers());
            let body = res.text().await.unwrap();
            assert!(
                !body.contains(TOKEN) && !headers.contains(TOKEN),
                "the token is never sent back"
            );
        }
        let ok = app.http.get(app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{path} with the token");
    }
    let now = Utc::now().timestamp_millis();
    let body = serde_json::Value::Array(vec![hubspot_event("contact.creation", 501, None, now)]).to_string();
    assert_eq!(
        app.post_signed_webhook(&body).await,
        200,
        "the intake needs no status token"
    );
    assert_eq!(app.store.inbox_depth().await.unwrap().0, 1);
    // Closed when no token is configured off loopback.
    let (store, dir) = crate::support::sqlite().await;
    let access = StatusAccess::for_bind("0.0.0.0:8080", None);
    let closed = TestServer::start_status(store, dir, StatusSources { access, ..open() }).await;
    assert_eq!(closed.http.get(closed.url("/")).send().await.unwrap().status(), 401);
}

// README (Status page): "the scheduler records each job's last run in the store; the daemon's own page shows it"
#[tokio::test]
async fn the_daemon_records_a_scheduled_jobs_run_and_its_page_shows_it() {
    use crate::support::{NEVER, TestApp, repo_root};
    let schedule = leadsync::config::ScheduleSettings {
        sync: NEVER.into(),
        rescore: NEVER.into(),
        sla: "* * * * * *".into(),
        opportunities: NEVER.into(),
    };
    let mut stack = leadsync::demo::Stack::build(leadsync::demo::StackOptions {
        sandbox: TestApp::sandbox_config(20),
        store_url: None,
        burst_per_10s: 1_500,
        search_per_second: 4,
        root: repo_root(),
        schedule: Some(schedule),
        sla: None,
        event_analytics: false,
    })
    .await
    .unwrap();
    leadsync::daemon::ensure_setup(&stack.syncer, true).await.unwrap();
    stack.run_daemon();
    let store = stack.syncer.store.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let run = loop {
        if let Some(run) = store.job_run("sla").await.unwrap() {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the SLA sweep never recorded a run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(run.outcome, JobOutcome::Ok, "{run:?}");
    // The daemon's own server, bound to loopback with no token: open.
    let json: serde_json::Value = reqwest::get(format!("http://{}/status.json", stack.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sla = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "sla")
        .unwrap();
    assert_eq!(sla["last_run"]["outcome"], "ok");
    assert!(
        json["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job"] == "sync" && j["last_run"].is_null())
    );
    stack.shutdown().await.unwrap();
}
