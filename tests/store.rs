//! The store on both backends: the same scenario, the same result, on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use chrono::Duration;
use leadsync::lifecycle::decision::Change;
use leadsync::lifecycle::model::EventKind;
use leadsync::lifecycle::{ContactState, Event, HubSpotId, Stage, Transition};
use leadsync::store::{Evaluated, InboxEvent, OutboxKind, OutboxState, Store};

use crate::common::now;
use crate::support::stores;

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

fn event(n: u32) -> Event {
    Event {
        id: format!("e{n}"),
        kind: EventKind::PageView,
        at: now() - Duration::days(i64::from(n)),
        url: Some("/pricing".into()),
        form: None,
        campaign: None,
        direction: None,
        outcome: None,
        owner: None,
    }
}

fn evaluated(contact: &str, stage: Stage, events: Vec<Event>, outbox: Vec<(OutboxKind, String, String)>) -> Evaluated {
    let state = ContactState {
        stage: Some(stage),
        ..ContactState::default()
    };
    Evaluated {
        contact_id: id(contact),
        at: now(),
        properties: BTreeMap::from([("email".to_string(), format!("{contact}@example.com"))]),
        company_id: Some("77".into()),
        company: BTreeMap::from([("domain".to_string(), "example.com".to_string())]),
        state,
        fit: 40.0,
        engagement: 12.5,
        grade: "B3".into(),
        rules: "2026.11.1 (abc)".into(),
        transitions: vec![Transition {
            change: Change::Stage { from: None, to: stage },
            reason: "test".into(),
        }],
        new_events: events,
        outbox,
        sla_timers: vec![],
    }
}

// README: "the audit log of every transition with its reasons and rules version"
#[tokio::test]
async fn a_commit_saves_state_ledger_audit_outbox_and_checkpoint_together() {
    for (name, store) in stores().await {
        let e = evaluated(
            "101",
            Stage::Mql,
            vec![event(1), event(2)],
            vec![(OutboxKind::HubSpotWrite, "hs:101".into(), "{\"a\":1}".into())],
        );
        store
            .commit(std::slice::from_ref(&e), Some(("backfill", "page-3")))
            .await
            .unwrap();
        // The same commit again (the same evaluation saved twice): state, ledger, checkpoint and
        // outbox do not double; the audit log records each save.
        store.commit(&[e], Some(("backfill", "page-3"))).await.unwrap();

        let rows = store.contacts(&[id("101"), id("999")]).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        let row = &rows[&id("101")];
        assert_eq!(row.state.stage, Some(Stage::Mql), "{name}");
        assert_eq!(row.company_id.as_deref(), Some("77"), "{name}");
        assert_eq!(row.properties["email"], "101@example.com", "{name}");
        assert_eq!(store.events(&[id("101")]).await.unwrap()[&id("101")].len(), 2, "{name}");
        assert_eq!(
            store.cursor("backfill").await.unwrap().as_deref(),
            Some("page-3"),
            "{name}"
        );
        assert_eq!(
            store.audit(&id("101")).await.unwrap().len(),
            2,
            "{name}: one line per transition saved"
        );
        let due = store.due(OutboxKind::HubSpotWrite, now(), 10).await.unwrap();
        assert_eq!(due.len(), 1, "{name}: one pending write per contact");
        let funnel = store.funnel().await.unwrap();
        assert_eq!(funnel.len(), 1, "{name}");
        assert_eq!((funnel[0].stage.as_str(), funnel[0].count), ("mql", 1), "{name}");
    }
}

#[tokio::test]
async fn a_ledger_is_read_back_per_contact_oldest_first_and_ties_by_event_id_on_both_stores() {
    for (name, store) in stores().await {
        // 600 contacts (two chunks of the read), each with events committed newest first, two
        // of them at the same time; one contact with no event at all.
        let batch: Vec<Evaluated> = (1..=600)
            .map(|c| {
                let mut tie = event(3);
                tie.id = format!("c{c}-a");
                let mut events = vec![event(1), event(4), event(2), tie];
                for e in &mut events[..3] {
                    e.id = format!("c{c}-{}", e.id);
                }
                events[3].at = events[1].at; // the same time as `e4`, whose id sorts after
                evaluated(&c.to_string(), Stage::Lead, events, vec![])
            })
            .chain([evaluated("999", Stage::Lead, vec![], vec![])])
            .collect();
        store.commit(&batch, None).await.unwrap();
        let ids: Vec<HubSpotId> = (1..=600).map(|c| id(&c.to_string())).chain([id("999")]).collect();
        let ledger = store.events(&ids).await.unwrap();
        assert_eq!(ledger.len(), 600, "{name}: a contact without events has no entry");
        for c in [1, 300, 501, 600] {
            let got: Vec<String> = ledger[&id(&c.to_string())].iter().map(|e| e.id.clone()).collect();
            let want: Vec<String> = ["a", "e4", "e2", "e1"].iter().map(|e| format!("c{c}-{e}")).collect();
            assert_eq!(got, want, "{name}: contact {c}");
        }
        assert_eq!(
            ledger[&id("7")][0].url.as_deref(),
            Some("/pricing"),
            "{name}: bodies whole"
        );
    }
}

#[tokio::test]
async fn a_promotion_key_is_enqueued_once_and_a_write_is_replaced_by_newer_values() {
    for (name, store) in stores().await {
        let promote = (OutboxKind::Promote, "promote:5:0".to_string(), "{}".to_string());
        let write = |v: &str| (OutboxKind::HubSpotWrite, "hs:5".to_string(), v.to_string());
        store
            .commit(
                &[evaluated("5", Stage::Sql, vec![], vec![promote.clone(), write("1")])],
                None,
            )
            .await
            .unwrap();
        let p = store.due(OutboxKind::Promote, now(), 10).await.unwrap();
        assert_eq!(p.len(), 1, "{name}");
        store.done(&p, now()).await.unwrap();
        // A duplicated promotion event after the promotion was carried out adds nothing.
        store
            .commit(&[evaluated("5", Stage::Sql, vec![], vec![promote, write("2")])], None)
            .await
            .unwrap();
        assert!(
            store.due(OutboxKind::Promote, now(), 10).await.unwrap().is_empty(),
            "{name}"
        );
        let w = store.due(OutboxKind::HubSpotWrite, now(), 10).await.unwrap();
        assert_eq!(w.len(), 1, "{name}");
        assert_eq!(w[0].payload, "2", "{name}: the newer desired values win");
    }
}

// README: "a commit's contacts, ledger events, audit lines, outbox items and timers each go as
// one statement over a JSON array of rows"
#[tokio::test]
async fn a_batch_saved_in_one_statement_per_table_leaves_what_one_statement_per_row_did() {
    for (name, store) in stores().await {
        // Scores no decimal text rounds to exactly, one contact decided twice in the batch, and
        // keys given twice: the last decision and the last replacing payload win, a key that
        // happens once keeps its first, ids follow the batch.
        let scores = [
            0.1 + 0.2,
            33.333333333333336,
            1e-7 * 3.0,
            2.0f64.sqrt() * 1e6,
            99.99999999999999,
            1.0 / 3.0,
        ];
        let mut batch = Vec::new();
        for (i, pair) in scores.chunks(2).enumerate() {
            let mut e = evaluated(
                "7",
                Stage::Mql,
                vec![event(i as u32)],
                vec![
                    (OutboxKind::HubSpotWrite, "hs:7".into(), format!("w{i}")),
                    (OutboxKind::Promote, "promote:7:0".into(), format!("p{i}")),
                ],
            );
            (e.fit, e.engagement) = (pair[0], pair[1]);
            batch.push(e);
            batch.push(evaluated(
                "8",
                Stage::Lead,
                vec![],
                vec![(OutboxKind::HubSpotWrite, format!("hs:8:{i}"), "x".into())],
            ));
        }
        store.commit(&batch, None).await.unwrap();
        let row = &store.contacts(&[id("7")]).await.unwrap()[&id("7")];
        assert_eq!(
            (row.fit, row.engagement),
            (99.99999999999999, 1.0 / 3.0),
            "{name}: the last decision, exactly"
        );
        assert_eq!(store.events(&[id("7")]).await.unwrap()[&id("7")].len(), 3, "{name}");
        assert_eq!(
            store.audit(&id("7")).await.unwrap().len(),
            3,
            "{name}: one line per decision saved"
        );
        let writes = store.due(OutboxKind::HubSpotWrite, now(), 10).await.unwrap();
        let keys: Vec<(&str, &str)> = writes.iter().map(|w| (w.key.as_str(), w.payload.as_str())).collect();
        assert_eq!(
            keys,
            [("hs:7", "w2"), ("hs:8:0", "x"), ("hs:8:1", "x"), ("hs:8:2", "x")],
            "{name}: one write per key, first place, last payload"
        );
        let promote = store.due(OutboxKind::Promote, now(), 10).await.unwrap();
        assert_eq!(promote.len(), 1, "{name}");
        assert_eq!(
            promote[0].payload, "p0",
            "{name}: a promotion key keeps its first payload"
        );
        assert!(
            promote[0].id > writes[0].id && promote[0].id < writes[1].id,
            "{name}: ids follow the batch"
        );

        // The rescore's save: decisions over the stored rows, the stored HubSpot values kept.
        let mut again = evaluated("7", Stage::Sql, vec![], vec![]);
        again.properties = BTreeMap::from([("email".to_string(), "stale@example.com".to_string())]);
        let mut last = again.clone();
        (again.fit, last.fit, last.engagement) = (1.0, 0.1 + 0.2, 1e-7 * 3.0);
        store
            .commit_rescored(&[again, last], &[id("8")], now() + Duration::hours(1))
            .await
            .unwrap();
        let rows = store.contacts(&[id("7"), id("8")]).await.unwrap();
        let row = &rows[&id("7")];
        assert_eq!(
            (row.state.stage, row.fit, row.engagement),
            (Some(Stage::Sql), 0.1 + 0.2, 1e-7 * 3.0),
            "{name}"
        );
        assert_eq!(
            row.properties["email"], "7@example.com",
            "{name}: a rescore leaves the values it read"
        );
        assert_eq!(
            rows[&id("8")].evaluated_at,
            now() + Duration::hours(1),
            "{name}: a settled contact's time"
        );
        assert_eq!(store.audit(&id("7")).await.unwrap().len(), 5, "{name}");
    }
}

// README: "the outbox with dead letters and the review list"
#[tokio::test]
async fn failures_retry_later_or_become_dead_letters_that_can_be_requeued() {
    for (name, store) in stores().await {
        let item = (OutboxKind::Promote, "promote:9:0".to_string(), "{}".to_string());
        store
            .commit(&[evaluated("9", Stage::Sql, vec![], vec![item])], None)
            .await
            .unwrap();
        let due = store.due(OutboxKind::Promote, now(), 10).await.unwrap();
        store
            .failed(
                &due[0],
                "UNABLE_TO_LOCK_ROW",
                OutboxState::Pending,
                now() + Duration::minutes(5),
            )
            .await
            .unwrap();
        assert!(
            store.due(OutboxKind::Promote, now(), 10).await.unwrap().is_empty(),
            "{name}: not before its time"
        );
        let later = store
            .due(OutboxKind::Promote, now() + Duration::minutes(6), 10)
            .await
            .unwrap();
        assert_eq!(later[0].attempts, 1, "{name}");
        store
            .failed(&later[0], "REQUIRED_FIELD_MISSING: StageName", OutboxState::Dead, now())
            .await
            .unwrap();
        let dead = store.outbox_in(OutboxKind::Promote, OutboxState::Dead).await.unwrap();
        assert_eq!(dead.len(), 1, "{name}");
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("REQUIRED_FIELD_MISSING: StageName"),
            "{name}"
        );
        assert_eq!(
            store
                .requeue(OutboxKind::Promote, OutboxState::Dead, None, now())
                .await
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        assert_eq!(
            store.due(OutboxKind::Promote, now(), 10).await.unwrap().len(),
            1,
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_inbox_drops_redeliveries_and_tracks_depth() {
    for (name, store) in stores().await {
        let ev = |k: &str| InboxEvent {
            dedupe_key: k.into(),
            contact_id: "42".into(),
            subscription: "contact.propertyChange".into(),
            payload: "{}".into(),
        };
        assert_eq!(
            store.inbox_put_many(&[&[ev("a"), ev("b")]], now()).await.unwrap(),
            [2],
            "{name}"
        );
        assert_eq!(
            store
                .inbox_put_many(&[&[ev("a"), ev("b"), ev("c")]], now())
                .await
                .unwrap(),
            [1],
            "{name}"
        );
        let (depth, oldest) = store.inbox_depth().await.unwrap();
        assert_eq!((depth, oldest), (3, Some(now())), "{name}");
        let pending = store.inbox_due(chrono::Utc::now(), 2).await.unwrap();
        assert_eq!(pending.len(), 2, "{name}");
        store
            .inbox_done(&pending.iter().map(|p| p.id).collect::<Vec<_>>(), now())
            .await
            .unwrap();
        assert_eq!(store.inbox_depth().await.unwrap().0, 1, "{name}");
        assert_eq!(store.inbox_total().await.unwrap(), 3, "{name}");
    }
}

#[tokio::test]
async fn contacts_page_in_numeric_id_order_and_merges_combine_ledgers_once() {
    for (name, store) in stores().await {
        for c in ["9", "10", "100", "11"] {
            store
                .commit(&[evaluated(c, Stage::Lead, vec![event(1)], vec![])], None)
                .await
                .unwrap();
        }
        let page = store.contact_page(None, 3).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|c| c.contact_id.as_str()).collect();
        assert_eq!(ids, ["9", "10", "11"], "{name}");
        let rest = store.contact_page(Some("11"), 3).await.unwrap();
        assert_eq!(rest.len(), 1, "{name}");
        // 10 (already SQL) merged into 9 (a lead): both had event e1 (the same HubSpot
        // engagement): it counts once, and the survivor keeps the furthest stage.
        store
            .commit(&[evaluated("10", Stage::Sql, vec![event(2)], vec![])], None)
            .await
            .unwrap();
        let merge = leadsync::store::Plan {
            removals: vec![leadsync::store::Removal::Merged {
                loser: id("10"),
                survivor: id("9"),
            }],
            evaluated: vec![],
        };
        store.commit_plan(&merge, None).await.unwrap();
        assert_eq!(store.events(&[id("9")]).await.unwrap()[&id("9")].len(), 2, "{name}");
        let survivor = &store.contacts(&[id("9")]).await.unwrap()[&id("9")];
        assert_eq!(
            survivor.state.stage,
            Some(Stage::Sql),
            "{name}: the furthest stage is kept"
        );
        let merged = &store.contacts(&[id("10")]).await.unwrap()[&id("10")];
        assert_eq!(merged.merged_into.as_deref(), Some("9"), "{name}");
        let total: u64 = store.funnel().await.unwrap().iter().map(|r| r.count).sum();
        assert_eq!(total, 3, "{name}: merged contacts leave the funnel");
    }
}

#[tokio::test]
async fn cursors_counters_and_the_write_ledger_survive_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("reconnect.db").display());
    for url in [sqlite, crate::support::postgres_url().await] {
        let name = if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let store = Store::connect(&url).await.unwrap();
        store.set_cursor("contacts", "1700000000000").await.unwrap();
        store.set_counter("round_robin", 7).await.unwrap();
        store
            .commit(&[evaluated("3", Stage::Mql, vec![], vec![])], None)
            .await
            .unwrap();
        store
            .record_writes(
                &[(id("3"), BTreeMap::from([("leadsync_stage".into(), "mql".into())]))],
                now(),
            )
            .await
            .unwrap();
        store.close().await;

        let store = Store::connect(&url).await.unwrap();
        assert_eq!(
            store.cursor("contacts").await.unwrap().as_deref(),
            Some("1700000000000"),
            "{name}"
        );
        assert!(store.wrote(&id("3"), "leadsync_stage", "mql").await.unwrap(), "{name}");
        assert!(!store.wrote(&id("3"), "leadsync_stage", "sql").await.unwrap(), "{name}");
        assert_eq!(store.counter("round_robin").await.unwrap(), 7, "{name}");
        assert_eq!(store.counter("never").await.unwrap(), 0, "{name}");
        let row = &store.contacts(&[id("3")]).await.unwrap()[&id("3")];
        assert_eq!(
            row.properties.get("leadsync_stage").map(String::as_str),
            Some("mql"),
            "{name}: written values are folded into the stored HubSpot values"
        );
    }
}

#[tokio::test]
async fn a_claim_takes_the_first_due_contacts_with_all_their_items_oldest_first_on_both_stores() {
    for (name, store) in stores().await {
        let w = |key: &str| (OutboxKind::HubSpotWrite, key.to_string(), "{}".to_string());
        // Contact 30 has two writes (its values, its Salesforce ids); 10 and 20 one each, and
        // a promotion of 10 (another kind) that a claim of writes never takes.
        let batch = [
            evaluated("30", Stage::Sql, vec![], vec![w("hs:30"), w("hubspot-sf:30")]),
            evaluated(
                "10",
                Stage::Sql,
                vec![],
                vec![w("hs:10"), (OutboxKind::Promote, "promote:10:0".into(), "{}".into())],
            ),
            evaluated("20", Stage::Sql, vec![], vec![w("hs:20")]),
        ];
        store.commit(&batch, None).await.unwrap();
        let keys = |items: Vec<leadsync::store::OutboxItem>| items.into_iter().map(|i| i.key).collect::<Vec<_>>();
        let first = store.claim(OutboxKind::HubSpotWrite, now(), 2).await.unwrap();
        assert_eq!(
            keys(first),
            ["hs:30", "hubspot-sf:30", "hs:10"],
            "{name}: two contacts, all their items"
        );
        let second = store.claim(OutboxKind::HubSpotWrite, now(), 2).await.unwrap();
        assert_eq!(keys(second), ["hs:20"], "{name}: then the next one");
        assert!(
            store
                .claim(OutboxKind::HubSpotWrite, now(), 2)
                .await
                .unwrap()
                .is_empty(),
            "{name}: nothing claimed twice"
        );
        let promote = store.claim(OutboxKind::Promote, now(), 2).await.unwrap();
        assert_eq!(keys(promote), ["promote:10:0"], "{name}");
    }
}

#[tokio::test]
async fn written_values_fold_into_the_stored_ones_in_order_and_an_empty_one_removes_on_both_stores() {
    for (name, store) in stores().await {
        store
            .commit(&[evaluated("3", Stage::Mql, vec![], vec![])], None)
            .await
            .unwrap();
        let w = |pairs: &[(&str, &str)]| BTreeMap::from_iter(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // One batch: contact 3 written twice (the second clears one value, replaces another),
        // and a contact the store does not know.
        let writes = [
            (
                id("3"),
                w(&[("leadsync_stage", "mql"), ("leadsync_reason", "form \"demo\" – été")]),
            ),
            (id("404"), w(&[("leadsync_stage", "sql")])),
            (id("3"), w(&[("leadsync_stage", "sql"), ("email", "")])),
        ];
        store.record_writes(&writes, now()).await.unwrap();
        let rows = store.contacts(&[id("3"), id("404")]).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}: no row made for an unknown contact");
        assert_eq!(
            rows[&id("3")].properties,
            w(&[("leadsync_stage", "sql"), ("leadsync_reason", "form \"demo\" – été")]),
            "{name}: the later write wins, the empty value removes `email`, the text kept whole"
        );
        assert!(store.wrote(&id("3"), "leadsync_stage", "sql").await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn failed_inbox_events_wait_and_come_back_and_a_privacy_deletion_erases_personal_data() {
    for (name, store) in stores().await {
        let ev = InboxEvent {
            dedupe_key: "k1".into(),
            contact_id: "77".into(),
            subscription: "contact.creation".into(),
            payload: "{}".into(),
        };
        store.inbox_put_many(&[&[ev]], now()).await.unwrap();
        let due = store.inbox_due(now(), 10).await.unwrap();
        store
            .inbox_retry(&[due[0].id], "HubSpot 502", now() + Duration::minutes(1))
            .await
            .unwrap();
        assert!(store.inbox_due(now(), 10).await.unwrap().is_empty(), "{name}: it waits");
        let back = store.inbox_due(now() + Duration::minutes(2), 10).await.unwrap();
        assert_eq!((back.len(), back[0].attempts), (1, 1), "{name}: then comes back");
        assert_eq!(
            store.inbox_failing().await.unwrap(),
            (1, Some("HubSpot 502".into())),
            "{name}"
        );

        let write = (
            OutboxKind::HubSpotWrite,
            "hubspot:77".to_string(),
            "{\"a\":1}".to_string(),
        );
        store
            .commit(&[evaluated("77", Stage::Lead, vec![event(1)], vec![write])], None)
            .await
            .unwrap();
        store.forget(&id("77")).await.unwrap();
        let row = &store.contacts(&[id("77")]).await.unwrap()[&id("77")];
        assert!(row.properties.is_empty() && row.company.is_empty(), "{name}");
        assert_eq!(row.removed.as_deref(), Some("privacy"), "{name}");
        assert!(store.events(&[id("77")]).await.unwrap().is_empty(), "{name}");
        assert!(
            store.due(OutboxKind::HubSpotWrite, now(), 10).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.inbox_depth().await.unwrap().0, 0, "{name}");
    }
}

#[tokio::test]
async fn a_bad_url_says_what_is_expected() {
    let err = Store::connect("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite://FILE or postgres://"), "{err}");
}

#[tokio::test]
async fn open_existing_refuses_a_missing_file_or_an_empty_database_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leadsync.db");
    let url = format!("sqlite://{}", file.display());
    let err = Store::open_existing(&url).await.unwrap_err().to_string();
    assert!(err.contains("does not exist") && err.contains("--init-store"), "{err}");
    assert!(!file.exists(), "nothing created");
    Store::create_or_open(&url).await.unwrap().close().await;
    Store::open_existing(&url).await.unwrap().close().await;

    let pg = crate::support::postgres_url().await;
    let err = Store::open_existing(&pg).await.unwrap_err().to_string();
    assert!(err.contains("no leadsync schema"), "{err}");
    Store::create_or_open(&pg).await.unwrap().close().await;
    Store::open_existing(&pg).await.unwrap().close().await;
}

fn inbox_event(key: &str, contact: &str) -> InboxEvent {
    InboxEvent {
        dedupe_key: key.into(),
        contact_id: contact.into(),
        subscription: "contact.creation".into(),
        payload: "{}".into(),
    }
}

// README: "processed rows are pruned after 7 days"
#[tokio::test]
async fn the_inbox_writer_prunes_processed_rows_past_the_retention_and_keeps_the_rest() {
    for (name, store) in stores().await {
        let store = store.with_inbox_retention(Duration::hours(1));
        let now = chrono::Utc::now;
        let old = now() - Duration::hours(2);
        store
            .inbox_put_many(&[&[inbox_event("old-done", "1"), inbox_event("old-pending", "2")]], old)
            .await
            .unwrap();
        store
            .inbox_put_many(&[&[inbox_event("new-done", "3")]], now())
            .await
            .unwrap();
        let rows = store.inbox_due(now() + Duration::days(1), 10).await.unwrap();
        let done: Vec<i64> = rows.iter().filter(|r| r.contact_id != "2").map(|r| r.id).collect();
        store.inbox_done(&done, now()).await.unwrap();
        // The product's path: the intake's writer prunes when it starts, then every hour.
        let _writer = leadsync::store::InboxWriter::spawn(store.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.inbox_total().await.unwrap() != 2 {
            assert!(std::time::Instant::now() < deadline, "{name}: not pruned");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let left: Vec<String> = store
            .inbox_due(now() + Duration::days(1), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.contact_id)
            .collect();
        assert_eq!(left, vec!["2".to_string()], "{name}: the unprocessed old row stays");
    }
}

#[tokio::test]
async fn a_row_postgres_refuses_fails_only_its_own_delivery_in_a_group_commit() {
    let store = Store::connect(&crate::support::postgres_url().await).await.unwrap();
    let writer = leadsync::store::InboxWriter::spawn(store.clone());
    let mut puts = Vec::new();
    for i in 0..54 {
        let w = writer.clone();
        puts.push(tokio::spawn(async move {
            w.put(vec![inbox_event(&format!("clean-{i}"), "1")]).await
        }));
        if i == 10 {
            let w = writer.clone();
            puts.push(tokio::spawn(async move {
                w.put(vec![inbox_event("bad-\u{0}-key", "1")]).await.map(|_| u64::MAX)
            }));
        }
    }
    let mut failed = 0;
    for p in puts {
        match p.await.unwrap() {
            Ok(n) => assert_eq!(n, 1, "a clean delivery is written"),
            Err(e) => {
                assert!(e.contains("0x00") || e.to_lowercase().contains("invalid byte"), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1, "only the bad delivery fails");
    assert_eq!(store.inbox_total().await.unwrap(), 54);
}

#[tokio::test]
async fn after_a_privacy_deletion_no_table_holds_the_contacts_email_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("privacy.db").display());
    for url in [sqlite, crate::support::postgres_url().await] {
        let app = crate::support::TestApp::start_with(60, Some(url.clone())).await;
        let s = &app.stack.syncer;
        s.backfill(
            &leadsync::sync::backfill::BackfillOptions::default(),
            app.now(),
            |_, _| {},
        )
        .await
        .unwrap();
        // The sandbox's names are shared by many contacts: they are looked for in the rows
        // about this contact (and in tables about no contact); the email is unique.
        let rows = s.store.contact_page(None, 100_000).await.unwrap();
        let victim = rows[0].contact_id.as_str().to_string();
        let hs = app.stack.sandbox.hubspot_contact(&victim).unwrap();
        let (email, firstname, lastname) = (hs["email"].clone(), hs["firstname"].clone(), hs["lastname"].clone());
        let object: u64 = victim.parse().unwrap();
        let t = app.now().timestamp_millis();
        let changes = serde_json::Value::Array(vec![
            crate::support::hubspot_event("contact.propertyChange", object, Some(("email", &email)), t),
            crate::support::hubspot_event("contact.propertyChange", object, Some(("firstname", &firstname)), t),
            crate::support::hubspot_event("contact.propertyChange", object, Some(("lastname", &lastname)), t),
        ]);
        assert_eq!(app.post_signed_webhook(&changes.to_string()).await, 200);
        app.run_inbox_until_idle().await;
        assert!(
            !crate::support::grep_store(&url, &email, None).await.is_empty(),
            "the test sees the email before"
        );

        let deletion = serde_json::json!([crate::support::hubspot_event(
            "contact.privacyDeletion",
            object,
            None,
            t + 1
        )]);
        assert_eq!(app.post_signed_webhook(&deletion.to_string()).await, 200);
        app.run_inbox_until_idle().await;
        for (needle, only) in [
            (&email, None),
            (&firstname, Some(victim.as_str())),
            (&lastname, Some(victim.as_str())),
        ] {
            let hits = crate::support::grep_store(&url, needle, only).await;
            assert!(hits.is_empty(), "{url}: `{needle}` still in the store: {hits:#?}");
        }
    }
}
