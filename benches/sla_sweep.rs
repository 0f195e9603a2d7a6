//! `cargo bench --bench sla_sweep`: the SLA sweep's query (`Store::sla_due`) over 100,000
//! timers, one per contact, of which 5,000 are running (next checks spread over the next 24
//! hours) and 95,000 finished. Prints the plan and the median of 201 queries for a sweep an hour
//! in (about 208 due) and one after a day's outage (all 5,000 due), on SQLite, then on
//! PostgreSQL when `LEADSYNC_BENCH_POSTGRES` (default the local `test` database) answers. On
//! SQLite it also times the same query made to read the table (`NOT INDEXED`), for the ratio.

mod common;

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use leadsync::store::Store;

const CONTACTS: usize = 100_000;
const RUNNING: usize = 5_000;
const RUNS: usize = 201;

async fn seed(url: &str, at: DateTime<Utc>) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("seed connection");
    let at = at.timestamp_millis();
    let every = CONTACTS / RUNNING;
    let mut tx = pool.begin().await.expect("begin");
    for start in (0..CONTACTS).step_by(1_000) {
        let values: Vec<String> = (start..start + 1_000)
            .map(|i| {
                let next = if i % every == 0 {
                    (at + (i as i64) * 86_400_000 / CONTACTS as i64 + 1).to_string()
                } else {
                    "NULL".to_string()
                };
                format!(
                    "('mql', '{}', {at}, {at}, NULL, 0, NULL, NULL, '[]', 'o{}', 'paris', {next}, {at})",
                    100_000 + i,
                    i % 40
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO sla_timers (policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, \
             breached_at, steps_done, owner_id, team_id, next_check_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("seed");
    }
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    pool.close().await;
}

async fn median_ms<F: AsyncFn() -> usize>(f: F) -> (f64, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut n = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        n = f().await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], n)
}

async fn run(name: &str, url: &str, start: DateTime<Utc>) {
    let store = Store::connect(url).await.expect("store");
    seed(url, start).await;
    for (label, at) in [
        ("a sweep an hour in", start + Duration::hours(1)),
        ("after a day's outage", start + Duration::days(1)),
    ] {
        let plan = store.sla_due_plan(at, RUNNING).await.expect("plan").join(" / ");
        let (ms, due) = median_ms(async || store.sla_due(at, RUNNING).await.expect("sweep").len()).await;
        println!("{name}: {label}: {due} due of {RUNNING} running, {CONTACTS} timers: median {ms:.3} ms");
        println!("{name}:   plan: {plan}");
        if name == "sqlite" {
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("scan connection");
            let sql = "SELECT policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, breached_at, \
                       steps_done, owner_id, team_id, next_check_at FROM sla_timers NOT INDEXED \
                       WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2";
            let (scan, n) = median_ms(async || {
                sqlx::query(sql)
                    .bind(at.timestamp_millis())
                    .bind(RUNNING as i64)
                    .fetch_all(&pool)
                    .await
                    .expect("scan")
                    .len()
            })
            .await;
            assert_eq!(n, due, "the scan finds the same timers");
            println!(
                "{name}:   the same query reading the table: median {scan:.3} ms ({:.1}× the indexed query)",
                scan / ms
            );
        }
    }
}

fn main() {
    let start: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().expect("time");
    common::on_both_stores("sla", |name, url| async move { run(name, &url, start).await });
}
