//! `leadsync report --compare-rules NEW.toml` on a hand-built store: five contacts synced under
//! the shipped rules through the store's own functions (`Store::commit` of what
//! `sync::decide::decide_stored` decides at each event, as a cycle would), then compared with a
//! candidate whose MQL engagement threshold is 25 instead of 35. Every expected figure is worked
//! out by hand in the comments.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadsync::lifecycle::model::EventKind;
use leadsync::lifecycle::{ContactState, Event, HubSpotId, Rules, Stage, Status};
use leadsync::report::compare::Comparison;
use leadsync::report::figures::{Figure, Report};
use leadsync::store::{Evaluated, Store};
use leadsync::sync::decide::decide_stored;

use crate::common::{default_rules_text, rules};
use crate::support::Backend;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

/// The candidate: the shipped rules with the MQL engagement threshold lowered from 35 to 25.
fn lower_threshold_text() -> String {
    let text = default_rules_text();
    let from = "{ fit_at_least = 40, engagement_at_least = 35 },";
    assert_eq!(text.matches(from).count(), 1, "the shipped MQL condition moved");
    text.replace(from, "{ fit_at_least = 40, engagement_at_least = 25 },")
        .replace("version = \"2026.11.1\"", "version = \"2026.11.2-candidate\"")
}

fn candidate() -> Rules {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candidate.toml");
    std::fs::write(&path, lower_threshold_text()).unwrap();
    Rules::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn event(n: &str, kind: EventKind, at: &str, f: impl FnOnce(&mut Event)) -> Event {
    let mut e: Event = serde_json::from_value(serde_json::json!({"id": n, "kind": kind, "at": at})).expect("an event");
    f(&mut e);
    e
}

fn webinar(n: &str, campaign: &str, at: &str) -> Event {
    event(n, EventKind::WebinarAttended, at, |e| {
        e.campaign = Some(campaign.into())
    })
}

/// Fit 80 with the shipped rules (persona 25 + seniority 15 + size 20 + industry 15 + email 5).
fn icp(contact: &str) -> BTreeMap<String, String> {
    [
        ("email", format!("sam{contact}@northwind.io")),
        ("firstname", "Sam".into()),
        ("lastname", "Lee".into()),
        ("company", "Northwind".into()),
        ("jobtitle", "Head of Revenue Operations".into()),
        ("numemployees", "300".into()),
        ("industry", "COMPUTER_SOFTWARE".into()),
        ("country", "FR".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The period compared, and when the deploy would be made.
const FROM: &str = "2026-11-01T00:00:00Z";
const TO: &str = "2026-11-15T00:00:00Z";
const AT: &str = "2026-11-15T00:00:00Z";

/// Five contacts, all fit 80; webinars score 15 each (half-life 45 d, once per campaign), a
/// content download 10 (half-life 30 d):
/// - 101: webinars Nov 10 09:00 and 10:00: engagement 29.99 at 10:00. Current rules (35): lead.
///   Candidate (25): MQL at Nov 10 10:00. At the deploy (Nov 15, 5 days later) 29.99 × 0.926 =
///   27.8 ≥ 25: the candidate makes it an MQL now.
/// - 102: the same on Nov 12 (28.6 at the deploy): an MQL under the candidate.
/// - 103: webinars Nov 5 09:00 and 10:00, a guide downloaded at 11:00: 39.99 at 11:00, an MQL
///   under both (under the candidate already at 10:00). Stored as an MQL: no difference now.
/// - 104: one email open Nov 6: engagement 1, a lead under both.
/// - 105: one webinar Oct 15, before the period: a lead since October under both.
///
/// So, in November 1–15: lead entered 4 under both (101–104; 105 entered in October); MQL
/// entered 1 (103) under the current rules, 3 (101, 102, 103) under the candidate; lead → MQL
/// 1/4 against 3/4. Differences now: 101 and 102, lead → mql. Cost: 2 contacts with new
/// values in HubSpot, one batch call; no promotion, no Salesforce call.
async fn synced(store: &Store) {
    let contacts: Vec<(&str, Vec<Event>)> = vec![
        (
            "101",
            vec![
                webinar("e1", "w1", "2026-11-10T09:00:00Z"),
                webinar("e2", "w2", "2026-11-10T10:00:00Z"),
            ],
        ),
        (
            "102",
            vec![
                webinar("e3", "w1", "2026-11-12T09:00:00Z"),
                webinar("e4", "w2", "2026-11-12T10:00:00Z"),
            ],
        ),
        (
            "103",
            vec![
                webinar("e5", "w1", "2026-11-05T09:00:00Z"),
                webinar("e6", "w2", "2026-11-05T10:00:00Z"),
                event("e7", EventKind::FormSubmission, "2026-11-05T11:00:00Z", |e| {
                    e.form = Some("Guide: the RevOps checklist".into())
                }),
            ],
        ),
        (
            "104",
            vec![event("e8", EventKind::EmailOpen, "2026-11-06T08:00:00Z", |e| {
                e.campaign = Some("nl-11".into())
            })],
        ),
        ("105", vec![webinar("e9", "w0", "2026-10-15T09:00:00Z")]),
    ];
    let sla = leadsync::defaults::embedded_sla();
    for (c, events) in contacts {
        // First seen with its properties and its ledger, not yet evaluated.
        store
            .commit(
                &[Evaluated {
                    contact_id: id(c),
                    at: events[0].at,
                    properties: icp(c),
                    company_id: None,
                    company: BTreeMap::new(),
                    state: ContactState::default(),
                    fit: 0.0,
                    engagement: 0.0,
                    grade: String::new(),
                    rules: rules().stamp(),
                    transitions: Vec::new(),
                    new_events: events.clone(),
                    outbox: Vec::new(),
                    sla_timers: Vec::new(),
                }],
                None,
            )
            .await
            .unwrap();
        // Then evaluated at each event, from the store, as the cycles did.
        for e in &events {
            let rows = store.contacts(&[id(c)]).await.unwrap();
            let ledger = store.events(&[id(c)]).await.unwrap();
            let decided = decide_stored(rules(), &sla, &rows[&id(c)], &ledger[&id(c)], e.at);
            store.commit(&[decided], None).await.unwrap();
        }
    }
}

async fn compared(store: &Store, candidate: &Rules) -> Comparison {
    leadsync::report::compare_rules(
        store,
        rules(),
        candidate,
        &leadsync::defaults::embedded_sla(),
        t(FROM),
        t(TO),
        None,
        t(AT),
    )
    .await
    .unwrap()
}

fn entered(r: &Report, stage: Stage) -> u64 {
    r.groups[0].stages.iter().find(|s| s.stage == stage).unwrap().entered
}

fn to_next(r: &Report, stage: Stage) -> &Figure {
    &r.groups[0].stages.iter().find(|s| s.stage == stage).unwrap().to_next
}

fn kpi<'a>(r: &'a Report, name: &str) -> &'a Figure {
    &r.groups[0].kpis.iter().find(|k| k.name == name).unwrap().value
}

on_both_stores!(
    a_lower_mql_threshold_makes_two_named_contacts_mqls_in_the_funnel_and_in_the_cost,
    identical_rules_give_the_same_funnel_no_difference_and_no_cost,
);

// README (Reports, compare-rules): "a lower MQL threshold: 101 and 102 become MQLs, the funnel shows it, the cost counts them"
async fn a_lower_mql_threshold_makes_two_named_contacts_mqls_in_the_funnel_and_in_the_cost(backend: Backend) {
    let (store, _dir) = crate::report::store_of(backend).await;
    synced(&store).await;
    let c = compared(&store, &candidate()).await;
    assert_eq!(c.contacts, 5);
    let (now, new) = (&c.current.report, &c.candidate.report);
    assert_eq!((entered(now, Stage::Lead), entered(new, Stage::Lead)), (4, 4));
    assert_eq!((entered(now, Stage::Mql), entered(new, Stage::Mql)), (1, 3));
    assert_eq!(to_next(now, Stage::Lead), &Figure::Rate { num: 1, of: 4 });
    assert_eq!(to_next(new, Stage::Lead), &Figure::Rate { num: 3, of: 4 });
    assert_eq!(kpi(now, "MQLs entered"), &Figure::Count(1));
    assert_eq!(kpi(new, "MQLs entered"), &Figure::Count(3));
    assert!(
        c.candidate.rules.starts_with("2026.11.2-candidate ("),
        "{}",
        c.candidate.rules
    );

    let ids: Vec<&str> = c.differences.iter().map(|d| d.contact_id.as_str()).collect();
    assert_eq!(ids, ["101", "102"]);
    assert_eq!(c.differing, 2);
    for d in &c.differences {
        assert_eq!(d.stage, (Some(Stage::Lead), Some(Stage::Mql)));
        assert_eq!(d.status, (Status::Active, Status::Active));
        assert_eq!(d.explain, format!("leadsync explain --contact {}", d.contact_id));
    }
    assert_eq!(c.cost.hubspot_contacts, 2);
    assert_eq!(c.cost.hubspot_write_calls, 1);
    assert_eq!(c.cost.promotions, 0);
    assert_eq!(c.cost.salesforce_calls, 0);
}

// README (Reports, compare-rules): "identical rules: the same funnel, no difference, zero cost"
async fn identical_rules_give_the_same_funnel_no_difference_and_no_cost(backend: Backend) {
    let (store, _dir) = crate::report::store_of(backend).await;
    synced(&store).await;
    let c = compared(&store, rules()).await;
    assert_eq!(c.current.report, c.candidate.report);
    assert_eq!(entered(&c.current.report, Stage::Mql), 1);
    assert!(c.differences.is_empty(), "{:?}", c.differences);
    assert_eq!(c.differing, 0);
    assert_eq!(c.cost, leadsync::report::compare::Cost::default());
}

fn leadsync_cmd(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    crate::common::said(
        crate::common::leadsync_in(dir, args)
            .env_remove("LEADSYNC__HUBSPOT__CLIENT_ID")
            .env_remove("LEADSYNC__HUBSPOT__CLIENT_SECRET")
            .env_remove("LEADSYNC__HUBSPOT__REFRESH_TOKEN")
            .env_remove("LEADSYNC__HUBSPOT__ACCESS_TOKEN")
            // Nothing listens here: a call to either CRM would fail the command.
            .env("LEADSYNC__HUBSPOT__API_BASE_URL", "http://127.0.0.1:9")
            .env("LEADSYNC__SALESFORCE__LOGIN_URL", "http://127.0.0.1:9"),
    )
}

// README (Reports, compare-rules): "no HubSpot configured, no network: table, json, csv; a broken candidate names its file and line"
#[tokio::test]
async fn compare_rules_runs_on_the_store_alone_and_a_broken_candidate_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("leadsync.db").display()))
        .await
        .unwrap();
    synced(&store).await;
    store.close().await;
    std::fs::write(dir.path().join("candidate.toml"), lower_threshold_text()).unwrap();
    let period = ["--from", FROM, "--to", TO, "--at", AT];
    let run = |extra: &[&str]| {
        let mut args = vec!["report", "--compare-rules", "candidate.toml"];
        args.extend(period);
        args.extend(extra);
        leadsync_cmd(dir.path(), &args)
    };

    let (code, table, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains("5 contacts replayed from the store"), "{table}");
    assert!(table.contains("\nmql                1         3     +2  "), "{table}");
    assert!(
        table.contains("\nlead               4         4     +0  25.0 % (1/4)"),
        "{table}"
    );
    assert!(
        table.contains("== contacts whose stage or status would differ if deployed at 2026-11-15T00:00:00+00:00: 2")
    );
    assert!(
        table.contains("101          lead, active → mql, active               leadsync explain --contact 101"),
        "{table}"
    );
    assert!(table.contains("HubSpot: 2 contact(s) whose leadsync properties change: 1 batch update call(s)"));
    assert!(table.contains("Salesforce: 0 new promotion(s): 0 call(s)"), "{table}");

    let (code, json, err) = run(&["--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["differing"], 2);
    assert_eq!(v["differences"][1]["contact_id"], "102");
    assert_eq!(v["cost"]["hubspot_write_calls"], 1);
    assert_eq!(v["candidate"]["report"]["groups"][0]["stages"][2]["entered"], 3);

    let (code, csv, err) = run(&["--format", "csv"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "section,group,metric,current,candidate");
    assert!(lines.contains(&"funnel,all,mql entered,1,3"), "{csv}");
    assert!(lines.contains(&"kpi,all,MQLs entered,1,3"), "{csv}");
    assert!(lines.contains(&"difference,101,stage,lead,mql"), "{csv}");
    assert!(lines.contains(&"cost,all,HubSpot write calls,,1"), "{csv}");

    let (code, html, err) = run(&["--format", "html"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(html.contains("<h2>Funnel, candidate rules</h2>"), "{html}");
    assert!(html.contains("leadsync explain --contact 102"), "{html}");

    // A candidate with a mistake: the error names the file, its line and the field, exit 2.
    let broken = lower_threshold_text().replace(
        "blocked_by = [\"disqualified\", \"opted_out\", \"fan\", \"recycle\"]",
        "blocked_by = [\"disqualified\", \"opted_out\", \"fans\", \"recycle\"]",
    );
    std::fs::write(dir.path().join("broken.toml"), broken).unwrap();
    let mut args = vec!["report", "--compare-rules", "broken.toml"];
    args.extend(period);
    let (code, out, err) = leadsync_cmd(dir.path(), &args);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("broken.toml:152:44: stages[2].blocked_by[2]: `fans` cannot block"),
        "{err}"
    );
    assert!(err.contains("blocked_by"), "{err}");
    assert!(out.is_empty(), "{out}");
}
