//! SLA timers in the store, on SQLite and PostgreSQL: one row per timer, each ladder step queued
//! and audited once, the sweep's query and its plan.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use leadsync::sla::StepAction;
use leadsync::sla::timer::{DueStep, SlaRecord};
use leadsync::store::{OutboxKind, OutboxState, SlaTimer, Store, step_key};

use crate::common::now;
use crate::support::{Backend, stores};

fn timer(contact: &str, policy: &str, started: DateTime<Utc>, next: Option<DateTime<Utc>>) -> SlaTimer {
    SlaTimer {
        record: SlaRecord {
            policy: policy.into(),
            contact: contact.into(),
            started_at: started,
            due_at: started + Duration::hours(4),
            first_touch_at: None,
            attempts: 0,
            met_at: None,
            breached_at: None,
            steps_done: BTreeSet::new(),
        },
        owner: Some("owner-1".into()),
        team: Some("paris".into()),
        next_check_at: next,
    }
}

fn step(index: usize, action: StepAction, at: DateTime<Utc>) -> DueStep {
    DueStep { index, action, at }
}

#[tokio::test]
async fn a_timer_saved_twice_is_one_row_with_the_latest_values_and_timers_of_one_contact_stay_apart() {
    for (name, store) in stores().await {
        let t0 = now() - Duration::hours(6);
        let mut t = timer("101", "mql-standard", t0, Some(t0 + Duration::hours(4)));
        assert!(store.save_sla_timer(&t, &[], now()).await.unwrap().is_empty(), "{name}");
        // A late first touch: measured, recorded, breached, nothing left to time.
        t.record.first_touch_at = Some(t0 + Duration::hours(5));
        t.record.attempts = 1;
        t.record.breached_at = Some(t0 + Duration::hours(4));
        t.next_check_at = None;
        store.save_sla_timer(&t, &[], now()).await.unwrap();
        store.save_sla_timer(&t, &[], now()).await.unwrap();
        // A second policy on the same contact, and the next cycle's timer of the first.
        let other = timer("101", "demo-request", t0, Some(now()));
        store.save_sla_timer(&other, &[], now()).await.unwrap();
        let next_cycle = timer("101", "mql-standard", t0 + Duration::hours(1), Some(now()));
        store.save_sla_timer(&next_cycle, &[], now()).await.unwrap();

        let rows = store.sla_timers("101").await.unwrap();
        assert_eq!(rows.len(), 3, "{name}: {rows:?}");
        assert_eq!(rows[0].record.policy, "demo-request", "{name}");
        let saved = rows.iter().find(|r| r.record == t.record).expect("the updated timer");
        assert_eq!(saved, &t, "{name}: every column reads back");
        assert!(store.sla_timers("999").await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_ladder_step_is_queued_and_audited_once_whoever_decides_it_and_a_stale_copy_never_undoes_it() {
    for (name, store) in stores().await {
        let t0 = now() - Duration::hours(8);
        let t = timer("202", "demo-request", t0, Some(now() + Duration::hours(1)));
        let first = [step(0, StepAction::OwnerTask, t0 + Duration::hours(4))];
        let queued = store.save_sla_timer(&t, &first, now()).await.unwrap();
        assert_eq!(queued, vec![step_key(&t.record, 0)], "{name}");

        // The same sweep again (a restart before the worker ran), and two replicas at once.
        assert!(
            store.save_sla_timer(&t, &first, now()).await.unwrap().is_empty(),
            "{name}"
        );
        let (a, b) = tokio::join!(
            store.save_sla_timer(&t, &first, now()),
            store.save_sla_timer(&t, &first, now())
        );
        assert!(a.unwrap().is_empty() && b.unwrap().is_empty(), "{name}");
        // A copy read before the step was recorded, saved with no step: the step stays done.
        store.save_sla_timer(&t, &[], now()).await.unwrap();
        assert_eq!(
            store.sla_timers("202").await.unwrap()[0].record.steps_done,
            BTreeSet::from([0]),
            "{name}"
        );

        // The next step, later: queued once too, and both are done on the timer.
        let second = [step(1, StepAction::Reassign, t0 + Duration::hours(6))];
        let queued = store.save_sla_timer(&t, &second, now()).await.unwrap();
        assert_eq!(queued, vec![step_key(&t.record, 1)], "{name}");
        assert_eq!(
            store.sla_timers("202").await.unwrap()[0].record.steps_done,
            BTreeSet::from([0, 1]),
            "{name}"
        );

        let items = store.due(OutboxKind::SlaStep, now(), 10).await.unwrap();
        assert_eq!(items.len(), 2, "{name}: {items:?}");
        let payload: serde_json::Value = serde_json::from_str(&items[0].payload).unwrap();
        assert_eq!(payload["action"], "owner_task", "{name}");
        assert_eq!(payload["step"], 0, "{name}");
        assert_eq!(payload["owner"], "owner-1", "{name}");
        assert_eq!(items[0].contact_id, "202", "{name}");

        // Once carried out, deciding the step again queues nothing (the promotion's rule).
        store.done(&items[..1], now()).await.unwrap();
        assert!(
            store.save_sla_timer(&t, &first, now()).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(
            store
                .outbox_in(OutboxKind::SlaStep, OutboxState::Done)
                .await
                .unwrap()
                .len(),
            1
        );

        let audit = store
            .audit(&leadsync::lifecycle::HubSpotId::try_from("202".to_string()).unwrap())
            .await
            .unwrap();
        assert_eq!(audit.len(), 2, "{name}: one audit row per step: {audit:?}");
        assert!(
            audit[0].change.contains("SlaStep") && audit[0].change.contains("owner_task"),
            "{name}"
        );
        assert!(
            audit[0].reason.contains("demo-request") && audit[0].reason.contains("step 0"),
            "{name}"
        );
        assert!(audit[1].change.contains("reassign"), "{name}");
    }
}

#[tokio::test]
async fn the_sweep_returns_the_timers_whose_next_check_is_due_soonest_first_and_no_finished_one() {
    for (name, store) in stores().await {
        let t0 = now() - Duration::days(1);
        let cases = [
            ("1", Some(now() - Duration::minutes(5))),
            ("2", None),
            ("3", Some(now() - Duration::hours(2))),
            ("4", Some(now() + Duration::minutes(1))),
            ("5", Some(now())),
        ];
        for (contact, next) in cases {
            store
                .save_sla_timer(&timer(contact, "p", t0, next), &[], now())
                .await
                .unwrap();
        }
        let due: Vec<String> = store
            .sla_due(now(), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.record.contact)
            .collect();
        assert_eq!(due, ["3", "1", "5"], "{name}");
        let first: Vec<String> = store
            .sla_due(now(), 2)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.record.contact)
            .collect();
        assert_eq!(first, ["3", "1"], "{name}: the limit keeps the most overdue");
    }
}

/// `rows` timers, one per contact, of which `running` still have a next check (spread over a
/// day around `at`), written in a few statements with the database's own connection.
async fn seed(url: &str, rows: usize, running: usize, at: DateTime<Utc>) {
    let pool = crate::support::sql_pool(url).await;
    let at = at.timestamp_millis();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                let next = if i % (rows / running) == 0 {
                    (at - 43_200_000 + (*i as i64 * 86_400_000 / rows as i64) + 1).to_string()
                } else {
                    "NULL".into()
                };
                format!("('p', 'c{i}', {at}, {at}, NULL, 0, NULL, NULL, '[]', 'o', 't', {next}, {at})")
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO sla_timers (policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, \
             breached_at, steps_done, owner_id, team_id, next_check_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn the_sweep_query_reads_the_next_check_index_not_the_table_on_both_stores() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (url, _dir) = backend.fresh().await;
        let store = Store::connect(&url).await.unwrap();
        seed(&url, 20_000, 1_000, now()).await;
        let plan = store.sla_due_plan(now(), 500).await.unwrap().join("\n");
        assert!(plan.contains("sla_timers_next_check"), "{backend:?} plan: {plan}");
        assert!(
            !plan.contains("SCAN sla_timers\n") && !plan.ends_with("SCAN sla_timers"),
            "{backend:?}: {plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{backend:?}: {plan}");
        // And the query answers what the seed made due: half the running timers.
        let due = store.sla_due(now(), 5_000).await.unwrap();
        assert_eq!(due.len(), 500, "{backend:?}");
        assert!(due.windows(2).all(|w| w[0].next_check_at <= w[1].next_check_at));
    }
}
