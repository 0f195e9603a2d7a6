//! Contacts that leave HubSpot between two incremental cycles, with no webhook: deleted ones
//! and merged ones are seen by the next cycle; removals commit with the cursor or not at all;
//! a corrupt cursor stops the cycle with a named error.

use chrono::Duration;
use leadsync::lifecycle::HubSpotId;
use leadsync::sync::backfill::BackfillOptions;
use leadsync::sync::{SyncError, cycle};

use crate::support::{TestApp, postgres_url};

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

/// A backfilled app on each backend, its sandbox clock moved a minute on.
async fn backfilled() -> Vec<(&'static str, TestApp)> {
    let mut out = Vec::new();
    for store_url in [None, Some(postgres_url().await)] {
        let backend = if store_url.is_some() { "postgres" } else { "sqlite" };
        let app = TestApp::start_with(40, store_url).await;
        app.stack
            .syncer
            .backfill(&BackfillOptions::default(), app.now(), |_, _| {})
            .await
            .unwrap();
        app.stack.sandbox.advance(Duration::minutes(1));
        out.push((backend, app));
    }
    out
}

/// Two stored, not removed contacts.
/// The ids of the events in contact `contact`'s ledger, in the store's order.
async fn ledger_ids(store: &leadsync::store::Store, contact: &str) -> Vec<String> {
    let mut ledgers = store.events(&[id(contact)]).await.unwrap();
    let ledger = ledgers.remove(&id(contact)).unwrap_or_default();
    ledger.into_iter().map(|e| e.id).collect()
}

async fn two_stored(app: &TestApp) -> (String, String) {
    let page = app.stack.syncer.store.contact_page(None, 10).await.unwrap();
    let live: Vec<String> = page
        .iter()
        .filter(|r| r.removed.is_none())
        .map(|r| r.contact_id.as_str().to_string())
        .collect();
    (live[0].clone(), live[1].clone())
}

#[tokio::test]
async fn a_contact_deleted_between_two_cycles_is_marked_removed_by_the_next_cycle_without_a_webhook() {
    for (backend, app) in backfilled().await {
        let s = &app.stack.syncer;
        let (gone, kept) = two_stored(&app).await;
        assert!(app.stack.sandbox.delete_contact(&gone), "{backend}");
        s.incremental(app.now(), Duration::days(1)).await.unwrap();

        let rows = s.store.contacts(&[id(&gone), id(&kept)]).await.unwrap();
        assert_eq!(rows[&id(&gone)].removed.as_deref(), Some("deleted"), "{backend}");
        assert_eq!(rows[&id(&gone)].merged_into, None, "{backend}");
        assert_eq!(rows[&id(&kept)].removed, None, "{backend}: only the deleted one");
        assert!(
            app.stack.sandbox.webhook_deliveries().is_empty(),
            "{backend}: no webhook told it"
        );

        // The next cycle, with the deletion inside its overlap, changes nothing more.
        let before = s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)].evaluated_at;
        s.incremental(app.now(), Duration::days(1)).await.unwrap();
        let after = &s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)];
        assert_eq!(after.removed.as_deref(), Some("deleted"), "{backend}");
        assert_eq!(
            after.evaluated_at, before,
            "{backend}: a removed contact is not evaluated"
        );
        app.stack.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_merge_between_two_cycles_is_applied_by_the_next_cycle_as_the_merge_webhook_does() {
    for (backend, app) in backfilled().await {
        let s = &app.stack.syncer;
        let (survivor, loser) = two_stored(&app).await;
        let loser_events = ledger_ids(&s.store, &loser).await;
        let stages = s.store.contacts(&[id(&survivor), id(&loser)]).await.unwrap();
        let furthest = stages[&id(&survivor)].state.stage.max(stages[&id(&loser)].state.stage);
        assert!(app.stack.sandbox.merge_contacts(&survivor, &loser), "{backend}");
        s.incremental(app.now(), Duration::days(1)).await.unwrap();

        let rows = s.store.contacts(&[id(&survivor), id(&loser)]).await.unwrap();
        assert_eq!(rows[&id(&loser)].removed.as_deref(), Some("merged"), "{backend}");
        assert_eq!(
            rows[&id(&loser)].merged_into.as_deref(),
            Some(survivor.as_str()),
            "{backend}"
        );
        assert_eq!(rows[&id(&survivor)].removed, None, "{backend}");
        assert!(
            rows[&id(&survivor)].state.stage >= furthest,
            "{backend}: the furthest stage is kept"
        );
        let ledger = ledger_ids(&s.store, &survivor).await;
        for e in &loser_events {
            assert_eq!(
                ledger.iter().filter(|l| *l == e).count(),
                1,
                "{backend}: {e} moved once"
            );
        }
        // Not later marked plain "deleted" while its archiving is inside a cycle's overlap.
        s.incremental(app.now(), Duration::days(1)).await.unwrap();
        let again = &s.store.contacts(&[id(&loser)]).await.unwrap()[&id(&loser)];
        assert_eq!(again.removed.as_deref(), Some("merged"), "{backend}");
        assert_eq!(again.merged_into.as_deref(), Some(survivor.as_str()), "{backend}");
        app.stack.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_merge_seen_by_the_cycle_leaves_the_store_as_the_merge_webhook_path_does() {
    // The webhook path's removal (`Removal::Merged` committed alone) on one app, the cycle on another.
    let by_webhook = TestApp::start(40).await;
    let by_cycle = TestApp::start(40).await;
    for app in [&by_webhook, &by_cycle] {
        let s = &app.stack.syncer;
        s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
            .await
            .unwrap();
        app.stack.sandbox.advance(Duration::minutes(1));
    }
    let (survivor, loser) = two_stored(&by_cycle).await;
    by_webhook
        .stack
        .syncer
        .store
        .commit_plan(
            &leadsync::store::Plan {
                removals: vec![leadsync::store::Removal::Merged {
                    loser: id(&loser),
                    survivor: id(&survivor),
                }],
                evaluated: vec![],
            },
            None,
        )
        .await
        .unwrap();
    by_cycle.stack.sandbox.merge_contacts(&survivor, &loser);
    by_cycle
        .stack
        .syncer
        .incremental(by_cycle.now(), Duration::days(1))
        .await
        .unwrap();

    let seen = |app: &TestApp| {
        let store = app.stack.syncer.store.clone();
        let (survivor, loser) = (survivor.clone(), loser.clone());
        async move {
            let rows = store.contacts(&[id(&survivor), id(&loser)]).await.unwrap();
            let mut ledger = ledger_ids(&store, &survivor).await;
            ledger.sort();
            (
                rows[&id(&loser)].removed.clone(),
                rows[&id(&loser)].merged_into.clone(),
                rows[&id(&survivor)].state.stage,
                ledger,
            )
        }
    };
    assert_eq!(seen(&by_cycle).await, seen(&by_webhook).await);
    by_webhook.stack.shutdown().await.unwrap();
    by_cycle.stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deletion_and_the_cursor_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leadsync.db");
    let app = TestApp::start_with(40, Some(format!("sqlite://{}", file.display()))).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    app.stack.sandbox.advance(Duration::minutes(1));
    let (gone, _) = two_stored(&app).await;
    app.stack.sandbox.delete_contact(&gone);

    // The cursor's write fails (as a full disk would, at the end of the transaction).
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    for event in ["INSERT", "UPDATE"] {
        sqlx::query(&format!(
            "CREATE TRIGGER no_cursor_{event} BEFORE {event} ON cursors BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        ))
        .execute(&raw)
        .await
        .unwrap();
    }
    let cursor = s.store.cursor(cycle::CURSOR).await.unwrap();
    assert!(s.incremental(app.now(), Duration::days(1)).await.is_err());
    let row = &s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)];
    assert_eq!(row.removed, None, "the removal is not saved without its cursor");
    assert_eq!(s.store.cursor(cycle::CURSOR).await.unwrap(), cursor);

    // Once the disk has room again, the same cycle saves both.
    for event in ["INSERT", "UPDATE"] {
        sqlx::query(&format!("DROP TRIGGER no_cursor_{event}"))
            .execute(&raw)
            .await
            .unwrap();
    }
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    let row = &s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)];
    assert_eq!(row.removed.as_deref(), Some("deleted"));
    assert_ne!(s.store.cursor(cycle::CURSOR).await.unwrap(), cursor);
    app.stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_cursor_stops_the_cycle_with_a_named_error_and_reads_nothing() {
    let app = TestApp::start(20).await;
    let s = &app.stack.syncer;
    s.store.set_cursor(cycle::CURSOR, "17x0").await.unwrap();
    app.stack.sandbox.reset_calls();
    let err = s.incremental(app.now(), Duration::days(1)).await.unwrap_err();
    assert!(
        matches!(&err, SyncError::CorruptCursor { name, value } if name == cycle::CURSOR && value == "17x0"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("contacts.modified") && message.contains("leadsync backfill"),
        "{message}"
    );
    assert_eq!(
        app.stack.sandbox.api_calls("hubspot"),
        0,
        "no window guessed, nothing read"
    );
    assert_eq!(
        s.store.cursor(cycle::CURSOR).await.unwrap().as_deref(),
        Some("17x0"),
        "left for the admin"
    );
    app.stack.shutdown().await.unwrap();
}

// The dry run's cost is planned by the function the Salesforce client's budget check uses,
// plus the HubSpot write of the Salesforce ids each promotion makes: a real run spends it.
#[tokio::test]
async fn a_dry_run_backfill_estimates_the_calls_the_real_backfill_then_makes() {
    let app = TestApp::start(400).await;
    let s = &app.stack.syncer;
    let now = app.now();
    let dry = BackfillOptions {
        dry_run: true,
        ..BackfillOptions::default()
    };
    let (estimate, costs) = s.backfill(&dry, now, |_, _| {}).await.unwrap();
    assert!(estimate.promotions_queued > 0, "the portal has leads to promote");
    app.stack.sandbox.reset_calls();
    let (real, _) = s.backfill(&BackfillOptions::default(), now, |_, _| {}).await.unwrap();
    assert_eq!(real.promoted, estimate.promotions_queued);
    let calls = app.stack.sandbox.calls();
    eprintln!("estimate {costs:?}, promoted {}, calls {calls:?}", real.promoted);
    let salesforce: u64 = calls
        .iter()
        .filter(|(k, _)| k.starts_with("salesforce") && !k.contains("oauth"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(costs.salesforce_calls, salesforce, "{calls:?}");
    assert_eq!(
        costs.hubspot_writes,
        calls.get("hubspot contacts.batch_update").copied().unwrap_or(0),
        "{calls:?}"
    );
    app.stack.shutdown().await.unwrap();
}

// A promotion's outcome is one transaction: the contact's link, the write-back of its ids and
// the item done. A failure inside it (here the write-back's insert) leaves none of them.
#[tokio::test]
async fn a_failure_while_saving_a_promotion_leaves_none_of_its_outcome_and_the_retry_creates_nothing_twice() {
    use leadsync::hubspot::limiter::Priority;
    use leadsync::store::{OutboxKind, OutboxState};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leadsync.db");
    let app = TestApp::start_with(400, Some(format!("sqlite://{}", file.display()))).await;
    let s = &app.stack.syncer;
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER no_sf_ids BEFORE INSERT ON outbox WHEN NEW.key LIKE 'hubspot-sf:%' \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&raw)
    .await
    .unwrap();
    let now = app.now();
    assert!(s.backfill(&BackfillOptions::default(), now, |_, _| {}).await.is_err());
    let linked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE sf_contact_id IS NOT NULL")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(linked, 0, "no link saved without its write-back");
    let done = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    assert!(done.is_empty(), "no promotion done without its write-back");
    let keyed = |app: &TestApp| {
        let mut out = std::collections::BTreeMap::<String, usize>::new();
        for r in app.stack.sandbox.salesforce_records("Opportunity") {
            if let Some(k) = r["LeadSync_Key__c"].as_str() {
                *out.entry(k.to_string()).or_default() += 1;
            }
        }
        out
    };
    let first = keyed(&app);
    assert!(!first.is_empty(), "Salesforce was written");

    sqlx::query("DROP TRIGGER no_sf_ids").execute(&raw).await.unwrap();
    s.drain_outbox(Priority::Background, now).await.unwrap();
    let done = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    assert!(!done.is_empty());
    let linked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE sf_contact_id IS NOT NULL")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(linked as usize, done.len(), "each done promotion has its link");
    let after = keyed(&app);
    assert_eq!(after.len(), done.len(), "one opportunity per promotion");
    assert!(
        after.values().all(|n| *n == 1),
        "the retry upserted, created none twice: {after:?}"
    );
    assert_eq!(after.keys().collect::<Vec<_>>(), first.keys().collect::<Vec<_>>());
    let sf_writes = s
        .store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Done)
        .await
        .unwrap();
    assert_eq!(
        sf_writes.iter().filter(|w| w.key.starts_with("hubspot-sf:")).count(),
        done.len(),
        "each promotion's ids reached HubSpot once"
    );
    app.stack.shutdown().await.unwrap();
}

// Migration 6 moves a kept Salesforce refresh token out of `cursors` into `refresh_tokens`.
#[tokio::test]
async fn migration_six_moves_a_kept_refresh_token_out_of_the_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("old.db").display());
    for url in [sqlite, postgres_url().await] {
        leadsync::store::Store::connect(&url).await.unwrap().close().await;
        // The store as it was before migration 6, with a token kept the old way.
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        for sql in [
            "DROP TABLE refresh_tokens",
            "DELETE FROM leadsync_migrations WHERE version = 6",
            "INSERT INTO cursors (name, value, updated_at) VALUES ('salesforce.refresh_token', 'rt-9', 1)",
            "INSERT INTO cursors (name, value, updated_at) VALUES ('salesforce.refresh_token.configured', 'abc', 1)",
            "INSERT INTO cursors (name, value, updated_at) VALUES ('contacts.modified', '5', 1)",
        ] {
            sqlx::query(sql).execute(&raw).await.unwrap();
        }
        raw.close().await;
        let store = leadsync::store::Store::open_existing(&url).await.unwrap();
        let kept = store.refresh_token("salesforce").await.unwrap().expect("moved");
        assert_eq!(kept.token.as_deref(), Some("rt-9"), "{url}");
        assert_eq!(kept.configured_hash, "abc", "{url}");
        assert_eq!(store.cursor("salesforce.refresh_token").await.unwrap(), None, "{url}");
        assert_eq!(
            store.cursor("salesforce.refresh_token.configured").await.unwrap(),
            None,
            "{url}"
        );
        assert_eq!(
            store.cursor("contacts.modified").await.unwrap().as_deref(),
            Some("5"),
            "{url}: others stay"
        );
        assert!(!format!("{kept:?}").contains("rt-9"), "the token never prints");
        store.close().await;
    }
}

// README: "the archived listing … once an hour"
#[tokio::test]
async fn the_archived_listing_is_paged_once_an_hour_not_every_cycle() {
    for (backend, app) in backfilled().await {
        let s = &app.stack.syncer;
        let listed = || {
            app.stack
                .sandbox
                .calls()
                .get("hubspot contacts.list")
                .copied()
                .unwrap_or(0)
        };
        let (gone, _) = two_stored(&app).await;
        app.stack.sandbox.reset_calls();
        s.incremental(app.now(), Duration::days(1)).await.unwrap();
        assert_eq!(listed(), 1, "{backend}: the first cycle lists the archived contacts");
        // Deleted after that listing: the cycles of the next hour do not page the listing again.
        assert!(app.stack.sandbox.delete_contact(&gone), "{backend}");
        for _ in 0..3 {
            app.stack.sandbox.advance(Duration::minutes(5));
            s.incremental(app.now(), Duration::days(1)).await.unwrap();
        }
        assert_eq!(listed(), 1, "{backend}: no listing within the hour");
        let row = &s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)];
        assert_eq!(row.removed, None, "{backend}: not seen yet without a webhook");
        // An hour after the first listing, the next cycle lists again, from its watermark, and
        // the deletion of forty-five minutes ago is seen.
        app.stack.sandbox.advance(Duration::minutes(46));
        s.incremental(app.now(), Duration::days(1)).await.unwrap();
        assert_eq!(listed(), 2, "{backend}");
        let row = &s.store.contacts(&[id(&gone)]).await.unwrap()[&id(&gone)];
        assert_eq!(row.removed.as_deref(), Some("deleted"), "{backend}");
        app.stack.shutdown().await.unwrap();
    }
}
