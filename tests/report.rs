//! `leadsync report` and `leadsync plan` on a hand-built audit log, written through the store's
//! own write functions (`Store::commit`, `set_promoted`, `fold_properties`, `save_sla_timer`),
//! on both stores; every expected figure is worked out by hand in the comments.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leadsync::lifecycle::decision::Change;
use leadsync::lifecycle::snapshot::SalesforceLink;
use leadsync::lifecycle::{ContactState, HubSpotId, Stage, Status, Transition};
use leadsync::report::figures::{Figure, GroupBy, Report, ReportError, compute};
use leadsync::sla::policy::{MarketingTarget, Period};
use leadsync::sla::timer::SlaRecord;
use leadsync::store::{Evaluated, SlaTimer, Store};

use crate::support::Backend;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

/// One decision about `contact` at `at`, with these changes, as the sync commits it.
fn decided(contact: &str, at: &str, stage: Stage, source: Option<&str>, changes: Vec<(Change, &str)>) -> Evaluated {
    let mut properties = BTreeMap::new();
    if let Some(s) = source {
        properties.insert("hs_analytics_source".to_string(), s.to_string());
    }
    Evaluated {
        contact_id: id(contact),
        at: t(at),
        properties,
        company_id: None,
        company: BTreeMap::new(),
        state: ContactState {
            stage: Some(stage),
            ..ContactState::default()
        },
        fit: 0.0,
        engagement: 0.0,
        grade: "B".into(),
        rules: "test (0)".into(),
        transitions: changes
            .into_iter()
            .map(|(change, reason)| Transition {
                change,
                reason: reason.into(),
            })
            .collect(),
        new_events: Vec::new(),
        outbox: Vec::new(),
        sla_timers: Vec::new(),
    }
}

fn to(from: Option<Stage>, to: Stage) -> (Change, &'static str) {
    (Change::Stage { from, to }, "criteria met")
}

fn status(from: Status, to: Status) -> (Change, &'static str) {
    (Change::Status { from, to }, "status")
}

fn timer(
    contact: &str,
    team: &str,
    owner: &str,
    started: &str,
    touch: Option<&str>,
    met: bool,
    breached: Option<&str>,
) -> SlaTimer {
    let started = t(started);
    SlaTimer {
        record: SlaRecord {
            policy: "mql-standard".into(),
            contact: contact.into(),
            started_at: started,
            due_at: started + Duration::hours(4),
            first_touch_at: touch.map(t),
            attempts: u32::from(touch.is_some()),
            met_at: if met { touch.map(t) } else { None },
            breached_at: breached.map(t),
            steps_done: BTreeSet::new(),
        },
        owner: Some(owner.into()),
        team: Some(team.into()),
        next_check_at: None,
    }
}

/// The hand-built month (November 2026), five contacts:
/// - 1 (organic, rep-a): lead Oct 20; MQL Nov 2 09:00; SAL 13:00 (4 h in MQL); SQL Nov 4 13:00
///   (48 h in SAL); opportunity Nov 6 13:00 (48 h in SQL); won Nov 10 13:00 (96 h), amount 1000.
/// - 2 (organic, rep-b): lead Nov 1 10:00; MQL Nov 3 10:00 (48 h in lead); rejected by sales
///   Nov 3 12:00 (2 h in MQL), reason "not a buyer", recycled to lead.
/// - 3 (ads, rep-a): lead Nov 5 00:00; a demo request Nov 6 00:00 jumps MQL and SAL to SQL (24 h
///   in lead); opportunity Nov 8 00:00 (48 h in SQL); lost Nov 20, amount 3000.
/// - 4 (ads): lead Nov 7; dormant Nov 25.
/// - 5: subscriber Nov 8; disqualified Nov 9.
///
/// SLA timers: 1 (paris, rep-a) started Nov 2 09:00, touched 11:00 (2 h), met; 2 (paris, rep-b)
/// started Nov 3 10:00, never touched, breached 14:00; 3 (lyon, rep-a) started Nov 6 00:00,
/// touched 06:00 (6 h), still open.
pub(crate) async fn november(store: &Store) {
    use Stage::*;
    let (o, a) = (Some("organic"), Some("ads"));
    let rejected = (
        Change::Recycle {
            from: Some(Mql),
            to: Lead,
            cycle: 1,
        },
        "sales rejected: not a buyer",
    );
    let steps = vec![
        decided("1", "2026-10-20T09:00:00Z", Lead, o, vec![to(None, Lead)]),
        decided("2", "2026-11-01T10:00:00Z", Lead, o, vec![to(None, Lead)]),
        decided("1", "2026-11-02T09:00:00Z", Mql, o, vec![to(Some(Lead), Mql)]),
        decided("1", "2026-11-02T13:00:00Z", Sal, o, vec![to(Some(Mql), Sal)]),
        decided("2", "2026-11-03T10:00:00Z", Mql, o, vec![to(Some(Lead), Mql)]),
        decided("2", "2026-11-03T12:00:00Z", Lead, o, vec![rejected]),
        decided("1", "2026-11-04T13:00:00Z", Sql, o, vec![to(Some(Sal), Sql)]),
        decided("3", "2026-11-05T00:00:00Z", Lead, a, vec![to(None, Lead)]),
        decided(
            "3",
            "2026-11-06T00:00:00Z",
            Sql,
            a,
            vec![
                (Change::Skipped { stage: Mql }, "shortcut"),
                (Change::Skipped { stage: Sal }, "shortcut"),
                to(Some(Lead), Sql),
            ],
        ),
        decided(
            "1",
            "2026-11-06T13:00:00Z",
            Opportunity,
            o,
            vec![to(Some(Sql), Opportunity)],
        ),
        decided("4", "2026-11-07T00:00:00Z", Lead, a, vec![to(None, Lead)]),
        decided(
            "3",
            "2026-11-08T00:00:00Z",
            Opportunity,
            a,
            vec![to(Some(Sql), Opportunity)],
        ),
        decided(
            "5",
            "2026-11-08T00:00:00Z",
            Subscriber,
            None,
            vec![to(None, Subscriber)],
        ),
        decided(
            "5",
            "2026-11-09T00:00:00Z",
            Subscriber,
            None,
            vec![status(Status::Active, Status::Disqualified)],
        ),
        decided(
            "1",
            "2026-11-10T13:00:00Z",
            Customer,
            o,
            vec![to(Some(Opportunity), Customer)],
        ),
        decided(
            "3",
            "2026-11-20T00:00:00Z",
            Opportunity,
            a,
            vec![status(Status::Active, Status::Lost)],
        ),
        decided(
            "4",
            "2026-11-25T00:00:00Z",
            Lead,
            a,
            vec![status(Status::Active, Status::Dormant)],
        ),
        // December: outside the period, must not count.
        decided("4", "2026-12-02T00:00:00Z", Mql, a, vec![to(Some(Lead), Mql)]),
    ];
    for e in &steps {
        store.commit(std::slice::from_ref(e), None).await.unwrap();
    }
    for (c, owner) in [("1", "rep-a"), ("2", "rep-b"), ("3", "rep-a")] {
        store
            .set_promoted(&id(c), &SalesforceLink::default(), owner)
            .await
            .unwrap();
    }
    let amount = |c: &str, a: &str| {
        (
            id(c),
            BTreeMap::from([("leadsync_opportunity_amount".to_string(), a.to_string())]),
        )
    };
    store
        .fold_properties(&[amount("1", "1000"), amount("3", "3000")])
        .await
        .unwrap();
    let now = t("2026-12-01T00:00:00Z");
    for tm in [
        timer(
            "1",
            "paris",
            "rep-a",
            "2026-11-02T09:00:00Z",
            Some("2026-11-02T11:00:00Z"),
            true,
            None,
        ),
        timer(
            "2",
            "paris",
            "rep-b",
            "2026-11-03T10:00:00Z",
            None,
            false,
            Some("2026-11-03T14:00:00Z"),
        ),
        timer(
            "3",
            "lyon",
            "rep-a",
            "2026-11-06T00:00:00Z",
            Some("2026-11-06T06:00:00Z"),
            false,
            None,
        ),
    ] {
        store.save_sla_timer(&tm, &[], now).await.unwrap();
    }
}

pub(crate) async fn store_of(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, dir) = backend.fresh().await;
    (Store::connect(&url).await.unwrap(), dir)
}

fn kpi<'a>(r: &'a Report, group: &str, name: &str) -> &'a Figure {
    let g = r
        .groups
        .iter()
        .find(|g| g.group == group)
        .unwrap_or_else(|| panic!("group {group}"));
    &g.kpis
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("kpi {name}"))
        .value
}

fn hours(median: f64, p90: f64, n: u64) -> Figure {
    Figure::Hours { median, p90, n }
}

on_both_stores!(
    the_report_of_a_hand_built_month_adds_up_to_the_figures_worked_out_by_hand,
    grouping_by_team_splits_the_figures_and_a_grouping_the_store_lacks_is_an_error,
);

// README (Reports): "entries with jumps counted, cohort conversion, time in stage, acceptance, SLA per team and rep, deals, n/a never 0"
async fn the_report_of_a_hand_built_month_adds_up_to_the_figures_worked_out_by_hand(backend: Backend) {
    let (store, _dir) = store_of(backend).await;
    november(&store).await;
    let (from, to) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
    let rows = store.report_rows(to).await.unwrap();
    let targets = [MarketingTarget {
        id: "all-mqls".into(),
        mqls: 10,
        per: Period::Month,
        team: None,
        source: None,
    }];
    let r = compute(&rows, from, to, None, &targets).unwrap();
    let all = &r.groups[0];
    assert_eq!(all.group, "all");
    let line = |s: Stage| all.stages.iter().find(|l| l.stage == s).unwrap();
    let rate = |num, of| Figure::Rate { num, of };
    // Subscriber: 5 entered, nobody went on, nobody left.
    assert_eq!(
        (line(Stage::Subscriber).entered, &line(Stage::Subscriber).to_next),
        (1, &rate(0, 1))
    );
    // Lead: 2, 3 and 4 (1 entered in October); 2 reached MQL, 3 jumped it: 2 of 3. Time in
    // lead: 3 left after 24 h, 2 after 48 h (4 has not left): median 24, p90 48.
    let lead = line(Stage::Lead);
    assert_eq!((lead.entered, lead.skipped, &lead.to_next), (3, 0, &rate(2, 3)));
    assert_eq!(lead.time_in_stage, hours(24.0, 48.0, 2));
    // MQL: 1, 2 and 3 (jumped): 3, of which 1 skipped; 1 and 3 reached SAL: 2 of 3; time: 2 h
    // (2, rejected) and 4 h (1), the jump left out.
    let mql = line(Stage::Mql);
    assert_eq!((mql.entered, mql.skipped, &mql.to_next), (3, 1, &rate(2, 3)));
    assert_eq!(mql.time_in_stage, hours(2.0, 4.0, 2));
    // SAL: 1 and 3 (jumped), both to SQL; 1 stayed 48 h.
    let sal = line(Stage::Sal);
    assert_eq!((sal.entered, sal.skipped, &sal.to_next), (2, 1, &rate(2, 2)));
    assert_eq!(sal.time_in_stage, hours(48.0, 48.0, 1));
    // SQL: 1 and 3, both to opportunity after 48 h each.
    let sql = line(Stage::Sql);
    assert_eq!(
        (sql.entered, &sql.to_next, &sql.time_in_stage),
        (2, &rate(2, 2), &hours(48.0, 48.0, 2))
    );
    // Opportunity: 1 (won after 96 h) and 3 (lost, still at the stage): 1 of 2.
    let opp = line(Stage::Opportunity);
    assert_eq!(
        (opp.entered, &opp.to_next, &opp.time_in_stage),
        (2, &rate(1, 2), &hours(96.0, 96.0, 1))
    );
    assert_eq!(line(Stage::Customer).entered, 1);
    // Contact 4's December MQL is not in November.
    assert_eq!(*kpi(&r, "all", "MQLs entered"), Figure::Count(2));
    // Of the MQLs 1 and 2 (3 jumped the stage): 1 accepted, 2 rejected with its reason.
    assert_eq!(*kpi(&r, "all", "lead acceptance (MQL → SAL)"), rate(1, 2));
    assert_eq!(
        *kpi(&r, "all", "lead rejection (MQL or SAL recycled by sales)"),
        rate(1, 2)
    );
    assert_eq!(
        *kpi(&r, "all", "rejected: sales rejected: not a buyer"),
        Figure::Count(1)
    );
    assert_eq!(*kpi(&r, "all", "SQL → opportunity"), rate(2, 2));
    // Won 1, lost 3: 1 of 2; the average deal is the won one's 1000 (3's 3000 was lost); the
    // cycle from SQL (Nov 4 13:00) to won (Nov 10 13:00) is 144 h.
    assert_eq!(*kpi(&r, "all", "win rate (won of closed)"), rate(1, 2));
    assert_eq!(
        *kpi(&r, "all", "average deal size (won)"),
        Figure::Amount { mean: 1000.0, n: 1 }
    );
    assert_eq!(*kpi(&r, "all", "sales cycle (SQL → won)"), hours(144.0, 144.0, 1));
    for (name, n) in [("recycled", 1), ("dormant", 1), ("disqualified", 1)] {
        assert_eq!(*kpi(&r, "all", name), Figure::Count(n), "{name}");
    }
    // SLA per team: lyon 1 open (6 h to touch); paris 1 met (2 h), 1 breached. Per rep: rep-a
    // met 1 and open 1 (2 h and 6 h: median 2, p90 6); rep-b breached 1, never touched.
    let sla: Vec<_> = r
        .sla
        .iter()
        .map(|l| (l.by, l.who.as_str(), l.met, l.breached, l.open, l.first_touch.clone()))
        .collect();
    assert_eq!(
        sla,
        [
            ("team", "lyon", 0, 0, 1, hours(6.0, 6.0, 1)),
            ("team", "paris", 1, 1, 0, hours(2.0, 2.0, 1)),
            ("rep", "rep-a", 1, 0, 1, hours(2.0, 6.0, 2)),
            (
                "rep",
                "rep-b",
                0,
                1,
                0,
                Figure::NotAvailable("no first touch yet".into())
            ),
        ]
    );
    assert_eq!(r.sla_note, None);
    // 10 MQLs a month, prorated to November's 30 days of a 365.25/12-day month; 2 delivered.
    assert_eq!(r.targets[0].delivered, 2);
    assert!((r.targets[0].expected - 10.0 * 30.0 / (365.25 / 12.0)).abs() < 1e-9);

    // October: only 1's lead; no SLA record, no MQL, no deal: each says so, none is a 0.
    let oct = compute(&rows, t("2026-10-01T00:00:00Z"), from, None, &[]).unwrap();
    assert_eq!(oct.sla_note.as_deref(), Some("n/a (no SLA records in the period)"));
    assert!(oct.sla.is_empty());
    assert_eq!(
        *kpi(&oct, "all", "lead acceptance (MQL → SAL)"),
        Figure::NotAvailable("no MQL entered in the period".into())
    );
    assert_eq!(
        *kpi(&oct, "all", "average deal size (won)"),
        Figure::NotAvailable("no won deal with an amount in the period".into())
    );
}

// README (Reports): "--by splits every figure; a grouping no contact has is an error"
async fn grouping_by_team_splits_the_figures_and_a_grouping_the_store_lacks_is_an_error(backend: Backend) {
    let (store, _dir) = store_of(backend).await;
    november(&store).await;
    let (from, to) = (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
    let rows = store.report_rows(to).await.unwrap();
    // Teams from the timers: 1 and 2 paris, 3 lyon, 4 and 5 none.
    let r = compute(&rows, from, to, Some(GroupBy::Team), &[]).unwrap();
    let names: Vec<_> = r.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["all", "(none)", "lyon", "paris"]);
    assert_eq!(*kpi(&r, "paris", "MQLs entered"), Figure::Count(2));
    assert_eq!(*kpi(&r, "lyon", "SQL → opportunity"), Figure::Rate { num: 1, of: 1 });
    // By rep: 1 and 3 are rep-a's, won one of two.
    let r = compute(&rows, from, to, Some(GroupBy::Rep), &[]).unwrap();
    assert_eq!(
        *kpi(&r, "rep-a", "win rate (won of closed)"),
        Figure::Rate { num: 1, of: 2 }
    );
    // By source: ads brought 3 leads' worth of... 3 and 4: 2 leads.
    let r = compute(&rows, from, to, Some(GroupBy::Source), &[]).unwrap();
    let ads = r.groups.iter().find(|g| g.group == "ads").unwrap();
    assert_eq!(ads.stages.iter().find(|l| l.stage == Stage::Lead).unwrap().entered, 2);
    // Nobody has a persona.
    let e = compute(&rows, from, to, Some(GroupBy::Persona), &[]).unwrap_err();
    assert!(matches!(e, ReportError::CannotGroup { by: "persona", .. }), "{e}");
    assert!(e.to_string().contains("hs_persona"), "{e}");
}

fn leadsync(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    crate::common::said(&mut crate::common::leadsync_in(dir, args))
}

// README (Reports): "--format json and csv; an unknown --by and an empty period exit 2"
#[tokio::test]
async fn report_writes_table_json_and_csv_and_names_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("leadsync.db").display()))
        .await
        .unwrap();
    november(&store).await;
    store.close().await;
    // The default period is the calendar month before --at: November.
    let (code, table, err) = leadsync(dir.path(), &["report", "--at", "2026-12-15"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.starts_with("report 2026-11-01T00:00:00+00:00 → 2026-12-01T00:00:00+00:00"),
        "{table}"
    );
    assert!(table.contains("mql                3       1  66.7 % (2/3)"), "{table}");
    assert!(table.contains("50.0 % (1/2)"), "{table}");

    let (code, json, err) = leadsync(
        dir.path(),
        &[
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["groups"][0]["stages"][2]["stage"], "mql");
    assert_eq!(v["groups"][0]["stages"][2]["to_next"]["rate"]["num"], 2);

    let (code, csv, err) = leadsync(
        dir.path(),
        &[
            "report",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(lines[0], "group,metric,value,of,median_h,p90_h,note");
    assert!(lines.contains(&"all,lead entered,1,,,,"), "{csv}");
    assert!(
        lines.contains(&"sla,sales SLA,,,,,n/a (no SLA records in the period)"),
        "{csv}"
    );
    assert!(
        lines.contains(&"all,lead acceptance (MQL → SAL),,,,,n/a (no MQL entered in the period)"),
        "{csv}"
    );

    let (code, _, err) = leadsync(dir.path(), &["report", "--by", "persona", "--at", "2026-12-15"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot group by persona"), "{err}");
    let (code, _, err) = leadsync(dir.path(), &["report", "--by", "weather"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid value 'weather'"), "{err}");
    let (code, _, err) = leadsync(dir.path(), &["report", "--from", "2026-12-01", "--to", "2026-11-01"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the period is empty"), "{err}");
}

// README (Reports): "plan prints 10 customers and 500 leads; measured rates show n= and are refused under --min-sample"
#[tokio::test]
async fn plan_works_back_from_revenue_and_refuses_a_rate_measured_on_too_few_contacts() {
    let dir = tempfile::tempdir().unwrap();
    // No store: given rates only.
    let (code, out, err) = leadsync(
        dir.path(),
        &[
            "plan",
            "--revenue",
            "10000",
            "--avg-deal",
            "1000",
            "--rate",
            "lead-customer=0.02",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("customer             10"), "{out}");
    assert!(out.contains("lead                500"), "{out}");
    let (code, _, err) = leadsync(
        dir.path(),
        &[
            "plan",
            "--revenue",
            "10000",
            "--avg-deal",
            "1000",
            "--rate",
            "lead-mql=0.2",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("does not connect to customer"), "{err}");

    let store = Store::connect(&format!("sqlite://{}", dir.path().join("leadsync.db").display()))
        .await
        .unwrap();
    november(&store).await;
    store.close().await;
    // Measured over the 30 days to Dec 1: opportunity → customer is 1 of 2. With a minimum of
    // 2 contacts it is used (10 customers need 20 opportunities); SQL → opportunity, 2 of 2, too
    // (20 SQLs); SAL → SQL rests on 2 as well (20 SALs); MQL → SAL is 2 of 3 (30 MQLs); lead →
    // MQL 2 of 3 (45 leads). November delivered 1 customer, 2 opportunities, 3 leads.
    let (code, out, err) = leadsync(
        dir.path(),
        &[
            "plan",
            "--revenue",
            "10000",
            "--avg-deal",
            "1000",
            "--measured-over",
            "30d",
            "--min-sample",
            "2",
            "--at",
            "2026-12-01",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "customer             10  revenue / average deal       1",
        "opportunity          20  opportunity-customer = 0.5 (n=2) 2",
        "sql                  20  sql-opportunity = 1 (n=2)    2",
        "mql                  30",
        "lead                 45",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    // At the default minimum of 30 every rate is refused, and says on how many it rests.
    let (code, out, err) = leadsync(
        dir.path(),
        &[
            "plan",
            "--revenue",
            "10000",
            "--avg-deal",
            "1000",
            "--measured-over",
            "30d",
            "--at",
            "2026-12-01",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("refused: opportunity-customer measured on 2 contact(s) (1 converted); the minimum is 30"),
        "{out}"
    );
    assert!(!out.contains("\nlead "), "{out}");
}
