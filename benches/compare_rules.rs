//! `cargo bench --bench compare_rules`: `leadsync report --compare-rules` (what
//! `report::compare_rules` does: read every stored contact and its ledger, replay November under
//! the shipped rules and under a candidate with the MQL engagement threshold at 20 instead of 35,
//! re-evaluate each contact now under both, compute both reports) over a SQLite store of
//! 100,000 contacts with 550,000 events over October and November (a third of them busy for three
//! days in mid-November). Prints the median of 3 runs
//! and the ratio to the one-minute target. `COMPARE_BENCH_CONTACTS` sets another size.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use leadsync::lifecycle::model::EventKind;
use leadsync::lifecycle::{ContactState, Event, HubSpotId, Rules, Snapshot, evaluate};
use leadsync::store::Store;

const RUNS: usize = 3;

fn contacts() -> usize {
    std::env::var("COMPARE_BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn shipped() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/lifecycle.toml")).expect("rules")
}

fn load(text: &str, dir: &std::path::Path, name: &str) -> Rules {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write rules");
    Rules::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Contact `i`'s properties: a mix of personas, sizes and countries (so fits spread out).
fn properties(i: usize) -> BTreeMap<String, String> {
    let titles = [
        "Head of Revenue Operations",
        "Marketing Manager",
        "VP Sales",
        "CTO",
        "Student",
        "Office assistant",
    ];
    let mut p = BTreeMap::new();
    p.insert("email".to_string(), format!("c{i}@company{}.io", i % 5_000));
    p.insert("firstname".into(), "Sam".into());
    p.insert("lastname".into(), "Lee".into());
    p.insert("company".into(), format!("Company {}", i % 5_000));
    p.insert("jobtitle".into(), titles[i % titles.len()].into());
    p.insert("numemployees".into(), ["5", "60", "300", "3000"][i % 4].into());
    p.insert("industry".into(), ["COMPUTER_SOFTWARE", "RETAIL"][i % 2].into());
    p.insert("country".into(), ["FR", "DE", "US", "BR"][i % 4].into());
    p.insert(
        "hs_analytics_source".into(),
        ["ORGANIC_SEARCH", "PAID_SEARCH", "EMAIL"][i % 3].into(),
    );
    p
}

/// Contact `i`'s ledger: 3 to 8 events (5.5 on average) spread over October and November.
fn events(i: usize, start: DateTime<Utc>) -> Vec<Event> {
    let n = 3 + i % 6;
    (0..n)
        .map(|k| {
            // A third of the contacts are busy for three days in mid-November (their scores
            // reach the MQL thresholds); the others spread their events over both months.
            let at = if i % 3 == 0 {
                start + Duration::days(45) + Duration::minutes(((i * 7_919 + k * 104_729) % (3 * 24 * 60)) as i64)
            } else {
                start + Duration::minutes(((i * 7_919 + k * 104_729) % (61 * 24 * 60)) as i64)
            };
            let (kind, url, form, campaign) = match (i + k) % 6 {
                0 => (EventKind::PageView, Some("/pricing"), None, None),
                1 => (EventKind::PageView, Some("/product/sync"), None, None),
                2 => (EventKind::EmailOpen, None, None, Some(format!("nl-{}", k % 3))),
                3 => (EventKind::WebinarAttended, None, None, Some(format!("w-{k}"))),
                4 => (
                    EventKind::FormSubmission,
                    None,
                    Some("Guide: the RevOps checklist"),
                    None,
                ),
                _ => (EventKind::EmailClick, None, None, Some(format!("nl-{}", k % 3))),
            };
            let mut e: Event = serde_json::from_value(serde_json::json!({
                "id": format!("{i}-{k}"),
                "kind": kind,
                "at": at.to_rfc3339(),
            }))
            .expect("event");
            e.url = url.map(str::to_string);
            e.form = form.map(str::to_string);
            e.campaign = campaign;
            e
        })
        .collect()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Seeds the store in one transaction; each contact's state is the shipped rules' verdict at
/// each of its events in turn, then at `now`, as the cycles would have left it.
async fn seed(url: &str, rules: &Rules, now: DateTime<Utc>) -> usize {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("seed connection");
    let start: DateTime<Utc> = "2026-10-01T00:00:00Z".parse().expect("time");
    let mut tx = pool.begin().await.expect("begin");
    let mut total = 0;
    let n = contacts();
    for block in (0..n).step_by(500) {
        let (mut rows, mut evs) = (Vec::new(), Vec::new());
        for i in block..(block + 500).min(n) {
            let id = (1_000_000 + i).to_string();
            let props = properties(i);
            let ledger = events(i, start);
            let mut snapshot = Snapshot {
                contact_id: HubSpotId::try_from(id.clone()).expect("id"),
                properties: props.clone().into_iter().collect::<HashMap<_, _>>(),
                events: ledger.clone(),
                state: ContactState::default(),
            };
            // Evaluated at each event, as the cycles would have, then at `now`.
            let mut times: Vec<DateTime<Utc>> = ledger.iter().map(|e| e.at).collect();
            times.sort();
            for at in times {
                let state = evaluate(rules, &snapshot, at).state;
                snapshot.state = state;
            }
            let d = evaluate(rules, &snapshot, now);
            let stage = d.state.stage.map_or("none", |s| s.as_str());
            rows.push(format!(
                "({}, '{stage}', '{}', {}, {}, '{}', 'bench', 0, NULL, NULL, NULL, NULL, NULL, {}, '{{}}', {}, NULL, NULL, {})",
                quote(&id),
                d.state.status.as_str(),
                d.fit.value,
                d.engagement.value,
                d.grade,
                quote(&serde_json::to_string(&props).expect("json")),
                quote(&serde_json::to_string(&d.state).expect("json")),
                now.timestamp_millis()
            ));
            for e in &ledger {
                evs.push(format!(
                    "({}, {}, '{}', {}, {})",
                    quote(&id),
                    quote(&e.id),
                    e.kind.as_str(),
                    e.at.timestamp_millis(),
                    quote(&serde_json::to_string(e).expect("json"))
                ));
            }
            total += ledger.len();
        }
        sqlx::query(&format!(
            "INSERT INTO contacts (contact_id, stage, status, fit, engagement, grade, rules_version, recycle_count, \
             owner_id, sf_account_id, sf_contact_id, sf_opportunity_id, company_id, properties, company, state, \
             removed, merged_into, evaluated_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed contacts");
        sqlx::query(&format!(
            "INSERT INTO events (contact_id, event_id, kind, at, body) VALUES {}",
            evs.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed events");
    }
    tx.commit().await.expect("commit");
    pool.close().await;
    total
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().expect("time");
    let (from, to) = leadsync::report::figures::last_month(now);
    let dir = tempfile::tempdir().expect("tempdir");
    let current = load(&shipped(), dir.path(), "current.toml");
    let candidate = load(
        &shipped().replace("engagement_at_least = 35 },", "engagement_at_least = 20 },"),
        dir.path(),
        "candidate.toml",
    );
    let sla = leadsync::defaults::embedded_sla();
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("compare.db").display());
        let store = Store::connect(&url).await.expect("store");
        let t = Instant::now();
        let events = seed(&url, &current, now).await;
        println!(
            "seeded {} contacts, {events} events in {:.1} s",
            contacts(),
            t.elapsed().as_secs_f64()
        );
        let mut times = Vec::new();
        for run in 0..RUNS {
            let t = Instant::now();
            let c = leadsync::report::compare_rules(&store, &current, &candidate, &sla, from, to, None, now)
                .await
                .expect("compare");
            let secs = t.elapsed().as_secs_f64();
            times.push(secs);
            let mql = |r: &leadsync::report::figures::Report| {
                r.groups[0]
                    .stages
                    .iter()
                    .find(|s| s.stage == leadsync::lifecycle::Stage::Mql)
                    .map_or(0, |s| s.entered)
            };
            println!(
                "run {run}: {:.2} s; {} contacts, MQLs entered {} → {}, {} differ, {} HubSpot write calls, {} Salesforce calls",
                secs,
                c.contacts,
                mql(&c.current.report),
                mql(&c.candidate.report),
                c.differing,
                c.cost.hubspot_write_calls,
                c.cost.salesforce_calls
            );
        }
        times.sort_by(f64::total_cmp);
        let median = times[RUNS / 2];
        println!(
            "sqlite: compare-rules over {} contacts ({events} events): median {median:.2} s of {RUNS} runs ({:.2}× the 60 s target)",
            contacts(),
            median / 60.0
        );
    });
}
