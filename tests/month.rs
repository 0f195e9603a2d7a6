//! A month of sales on the sandbox's clock (`Stack::simulate_month`): the sales desk touches,
//! accepts, rejects and qualifies MQLs and closes opportunities; the daemon's jobs read it all
//! back step by step. The same seed gives the same report, on SQLite and on PostgreSQL, and every
//! stage of the funnel is populated, with breached SLA timers.

use leadsync::demo::Stack;
use leadsync::demo::month::MonthRun;
use leadsync::lifecycle::Stage;
use leadsync::report::figures::{self, Figure, Report};

use crate::support::{month_options, month_stack_options, postgres_url};

async fn month(store_url: Option<String>) -> (MonthRun, Report, u64, u64) {
    let stack = Stack::build(month_stack_options(store_url)).await.unwrap();
    let run = stack.simulate_month(month_options()).await.unwrap();
    let rows = stack.syncer.store.report_rows(run.to).await.unwrap();
    let report = figures::compute(&rows, run.from, run.to, None, &stack.syncer.sla.marketing).unwrap();
    let (breaches, _) = stack.syncer.store.open_breaches(10).await.unwrap();
    let mut met = 0;
    for c in stack.syncer.store.contact_page(None, 10_000).await.unwrap() {
        let timers = stack.syncer.store.sla_timers(c.contact_id.as_str()).await.unwrap();
        met += timers.iter().filter(|t| t.record.met_at.is_some()).count() as u64;
    }
    stack.shutdown().await.unwrap();
    (run, report, breaches, met)
}

fn entered(report: &Report, stage: Stage) -> u64 {
    report.groups[0]
        .stages
        .iter()
        .find(|s| s.stage == stage)
        .map_or(0, |s| s.entered - s.skipped)
}

fn kpi<'a>(report: &'a Report, name: &str) -> &'a Figure {
    &report.groups[0]
        .kpis
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no KPI {name}"))
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// README (The sandbox): the simulated month is deterministic and populates every stage.
async fn a_simulated_month_is_the_same_on_both_stores_and_populates_every_stage() {
    let (run, report, breaches, met) = month(None).await;
    assert_eq!(run.steps, 60, "30 days of 12-hour steps");
    let d = run.desk;
    assert!(d.accepted > 0 && d.rejected > 0 && d.ignored > 0, "{d:?}");
    assert!(d.qualified > 0 && d.won > 0 && d.lost > 0, "{d:?}");
    assert!(d.hubspot_touches > 0 && d.salesforce_touches > 0, "{d:?}");

    // Every stage entered for real (not only jumped over), by what the daemon stored.
    for stage in [Stage::Mql, Stage::Sal, Stage::Sql, Stage::Opportunity, Stage::Customer] {
        assert!(entered(&report, stage) > 0, "{stage:?} never entered: {report:#?}");
    }
    // Sales accepted and rejected what the desk did: the store saw the decisions.
    match kpi(&report, "lead acceptance (MQL → SAL)") {
        Figure::Rate { num, .. } => assert!(*num > 0),
        other => panic!("{other:?}"),
    }
    match kpi(&report, "win rate (won of closed)") {
        Figure::Rate { num, of } => assert!(*num > 0 && of > num, "won and lost: {num} of {of}"),
        other => panic!("{other:?}"),
    }
    match kpi(&report, "average deal size (won)") {
        Figure::Amount { mean, n } => assert!(*mean > 0.0 && *n > 0),
        other => panic!("{other:?}"),
    }
    assert!(report.groups[0].kpis.iter().any(|k| k.name.starts_with("rejected: ")));
    // The reps' habits: some followed the cadence in time (met), some touched once, late or
    // never (breached), and some of those had no touch at all by the month's end (open
    // breaches on the status page).
    let team = |f: fn(&figures::SlaLine) -> u64| -> u64 { report.sla.iter().filter(|l| l.by == "team").map(f).sum() };
    let (met_in_report, breached) = (team(|l| l.met), team(|l| l.breached));
    assert!(met_in_report > 0, "met {met_in_report}: {:#?}", report.sla);
    assert!(breached > 0, "breached {breached}: {:#?}", report.sla);
    assert!(
        met >= met_in_report,
        "the store's met timers include the report's: {met} < {met_in_report}"
    );
    assert!(breaches > 0, "open breaches on the status page");

    // The same seed on the other store: the same month, figure for figure.
    let (run2, report2, breaches2, met2) = month(Some(postgres_url().await)).await;
    assert_eq!(met2, met);
    assert_eq!(run2.desk, run.desk);
    assert_eq!(report2, report);
    assert_eq!(breaches2, breaches);
}
