//! `cargo bench --bench status_page`: the status page (`server::status::gather` then `render`,
//! what `GET /` does) over a store of 100,000 contacts spread over the stages, 100,000 SLA
//! timers of which 2,000 are breached without a touch, and 10,000 outbox items (50 dead, 20 for
//! review). Prints the median of 101 renders on SQLite, then on PostgreSQL when
//! `LEADSYNC_BENCH_POSTGRES` (default the local `test` database) answers; on SQLite also the
//! median without the open-breaches index (migration 11), for the ratio. The target is 50 ms.

mod common;

use std::time::Instant;

use chrono::{DateTime, Utc};
use leadsync::server::status::{ApiBudget, gather, render};
use leadsync::store::Store;

const CONTACTS: usize = 100_000;
const BREACHED_EVERY: usize = 50;
const OUTBOX: usize = 10_000;
const RUNS: usize = 101;
const STAGES: [&str; 7] = ["subscriber", "lead", "mql", "sal", "sql", "opportunity", "customer"];

async fn seed(url: &str, at: DateTime<Utc>) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("seed connection");
    let at = at.timestamp_millis();
    let mut tx = pool.begin().await.expect("begin");
    for start in (0..CONTACTS).step_by(1_000) {
        let contacts: Vec<String> = (start..start + 1_000)
            .map(|i| {
                // Fewer at each later stage, as in a funnel.
                let stage = STAGES[(i * i % 97).min(96) * STAGES.len() / 97 % STAGES.len()];
                format!(
                    "('{}', '{stage}', 'active', 50, 20, 'B', 'bench', 0, 'o{}', NULL, NULL, NULL, NULL, '{{}}', '{{}}', '{{}}', NULL, NULL, {at})",
                    100_000 + i,
                    i % 40
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO contacts (contact_id, stage, status, fit, engagement, grade, rules_version, recycle_count, \
             owner_id, sf_account_id, sf_contact_id, sf_opportunity_id, company_id, properties, company, state, \
             removed, merged_into, evaluated_at) VALUES {}",
            contacts.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed contacts");
        let timers: Vec<String> = (start..start + 1_000)
            .map(|i| {
                let (touch, met, breached) = if i % BREACHED_EVERY == 0 {
                    ("NULL".to_string(), "NULL".to_string(), (at + 3_600_000).to_string())
                } else {
                    (
                        (at + 600_000).to_string(),
                        (at + 600_000).to_string(),
                        "NULL".to_string(),
                    )
                };
                format!(
                    "('mql', '{}', {at}, {due}, {touch}, 1, {met}, {breached}, '[]', 'o{}', 'paris', NULL, {at})",
                    100_000 + i,
                    i % 40,
                    due = at + 3_600_000 + i as i64
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO sla_timers (policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, \
             breached_at, steps_done, owner_id, team_id, next_check_at, updated_at) VALUES {}",
            timers.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed timers");
    }
    for start in (0..OUTBOX).step_by(1_000) {
        let items: Vec<String> = (start..start + 1_000)
            .map(|i| {
                let (kind, state) = match i {
                    i if i < 50 => ("hubspot_write", "dead"),
                    i if i < 70 => ("promote", "review"),
                    i if i % 2 == 0 => ("promote", "done"),
                    _ => ("hubspot_write", "done"),
                };
                format!(
                    "('k{i}', '{kind}', '{}', '{{}}', '{state}', 1, {at}, 'INVALID_FIELD: bad value', {at}, {at})",
                    100_000 + i
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO outbox (key, kind, contact_id, payload, state, attempts, next_at, last_error, created_at, \
             updated_at) VALUES {}",
            items.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed outbox");
    }
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    pool.close().await;
}

async fn median_ms(store: &Store, now: DateTime<Utc>) -> (f64, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let status = gather(store, ApiBudget::default(), now).await.expect("status");
        bytes = render(&status).len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], bytes)
}

async fn run(name: &str, url: &str, now: DateTime<Utc>) {
    let store = Store::connect(url).await.expect("store");
    seed(url, now).await;
    let status = gather(&store, ApiBudget::default(), now).await.expect("status");
    assert_eq!(status.open_breaches as usize, CONTACTS / BREACHED_EVERY);
    assert_eq!(status.funnel.iter().map(|f| f.contacts).sum::<u64>() as usize, CONTACTS);
    let (ms, bytes) = median_ms(&store, now).await;
    println!(
        "{name}: status page over {CONTACTS} contacts, {} open breaches, {OUTBOX} outbox items: median {ms:.2} ms ({bytes} bytes of HTML; target 50 ms)",
        status.open_breaches
    );
    if name == "sqlite" {
        sqlx::query("DROP INDEX sla_timers_open_breaches")
            .execute(
                &sqlx::any::AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .expect("pool"),
            )
            .await
            .expect("drop index");
        let (without, _) = median_ms(&store, now).await;
        println!(
            "{name}:   without the open-breaches index (migration 11): median {without:.2} ms ({:.1}× the indexed page)",
            without / ms
        );
    }
}

fn main() {
    let now: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().expect("time");
    common::on_both_stores("status", |name, url| async move { run(name, &url, now).await });
}
