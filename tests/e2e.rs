//! The daemon end to end against the sandbox: backfill, incremental cycles, webhooks, crashes.
//! Each test runs the daemon whole (`Daemon::run`, what `leadsync run` runs: the webhook server,
//! the schedules, the inbox and outbox workers) on SQLite and PostgreSQL; a test runs a cycle or
//! a backfill itself, with the same functions the schedules and the CLI call.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use leadsync::lifecycle::{HubSpotId, Stage, Status};
use leadsync::sandbox::portal::{CONTACT_ID_BASE, ContactKind, ENGAGEMENT_OBJECTS};
use leadsync::store::{OutboxKind, OutboxState, Store};
use leadsync::sync::backfill::BackfillOptions;
use serde_json::Value;

use crate::support::{Backend, TestApp};

on_both_stores!(
    one_cycle_places_every_kind_of_contact_writes_hubspot_and_promotes_sqls_and_a_second_writes_nothing,
    a_backfill_killed_ten_times_ends_like_an_uninterrupted_one_without_writing_twice,
    a_demo_request_through_a_signed_webhook_ends_at_sql_with_salesforce_records_and_repeats_change_nothing,
    an_event_acknowledged_before_a_crash_is_processed_after_the_restart,
    a_crash_between_salesforce_and_the_hubspot_write_back_creates_nothing_twice,
    leadsync_run_becomes_ready_and_on_sigterm_flushes_the_outbox_and_exits_cleanly,
    a_merge_through_the_webhook_moves_the_ledger_to_the_survivor_and_retires_the_other,
    the_demo_check_names_each_lead_that_did_not_reach_salesforce_and_why,
    webhook_echoes_of_leadsync_s_own_writes_cost_no_hubspot_call,
    a_rescore_reads_nothing_from_hubspot,
    a_rescore_saves_each_decision_and_leaves_the_values_it_read,
    the_outbox_worker_carries_out_what_a_webhook_committed,
    a_stop_during_an_inbox_pass_lets_it_commit_and_flushes_what_it_queued,
);

/// The daemon running whole over a portal of `contacts` on a fresh store of `backend`, with the
/// store's URL and the folder a SQLite file lives in.
async fn app_on(backend: Backend, contacts: u32) -> (TestApp, String, Option<tempfile::TempDir>) {
    let (url, dir) = backend.fresh().await;
    (TestApp::running(contacts, Some(url.clone())).await, url, dir)
}

fn id(n: u64) -> HubSpotId {
    HubSpotId::try_from(n.to_string()).unwrap()
}

/// Stage and status of every stored contact.
async fn outcome(store: &Store) -> BTreeMap<String, (Option<Stage>, Status)> {
    store
        .contact_page(None, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.contact_id.as_str().to_string(), (r.state.stage, r.state.status)))
        .collect()
}

/// Salesforce records leadsync made, by external key, with how many carry each key.
fn keyed(app: &TestApp, object: &str, field: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in app.stack.sandbox.salesforce_records(object) {
        if let Some(k) = r[field].as_str() {
            *out.entry(k.to_string()).or_default() += 1;
        }
    }
    out
}

fn assert_no_duplicates(app: &TestApp) {
    for (object, field) in [
        ("Account", "HubSpot_Company_Id__c"),
        ("Contact", "HubSpot_Contact_Id__c"),
        ("Opportunity", "LeadSync_Key__c"),
    ] {
        let dups: Vec<_> = keyed(app, object, field).into_iter().filter(|(_, n)| *n > 1).collect();
        assert!(dups.is_empty(), "duplicate {object} records: {dups:?}");
    }
    let mut emails = BTreeMap::new();
    for c in app.stack.sandbox.salesforce_records("Contact") {
        if let Some(e) = c["Email"].as_str() {
            *emails.entry(e.to_lowercase()).or_insert(0) += 1;
        }
    }
    let dups: Vec<_> = emails.into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(dups.is_empty(), "two Salesforce contacts share an email: {dups:?}");
}

// README: "leadsync's own writes come back as modified contacts, are recognised and not read again"
async fn one_cycle_places_every_kind_of_contact_writes_hubspot_and_promotes_sqls_and_a_second_writes_nothing(
    on: Backend,
) {
    {
        let backend = format!("{on:?}");
        let (app, _, _dir) = app_on(on, 300).await;
        let now = app.now();
        let s = &app.stack.syncer;
        let (report, _) = s.backfill(&BackfillOptions::default(), now, |_, _| {}).await.unwrap();
        assert_eq!(report.pulled, 300, "{backend}");
        let stored = outcome(&s.store).await;
        assert_eq!(stored.len(), 300, "{backend}: every contact evaluated");

        // Each kind of contact of DOMAIN.md ends where the rules put it, in the store and in HubSpot.
        let portal = app.stack.sandbox.portal();
        let mut seen_kinds = BTreeSet::new();
        let mut icp: BTreeMap<Option<Stage>, u32> = BTreeMap::new();
        for i in 0..portal.contacts {
            let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
            let (stage, status) = stored[&cid];
            let kind = portal.kind(i);
            seen_kinds.insert(format!("{kind:?}"));
            match kind {
                ContactKind::Competitor | ContactKind::Student => {
                    assert_eq!(status, Status::Disqualified, "{backend}: {kind:?} {cid}")
                }
                ContactKind::Fan => assert_eq!(status, Status::Fan, "{backend}: {kind:?} {cid}"),
                ContactKind::Dormant => assert_eq!(status, Status::Dormant, "{backend}: {kind:?} {cid}"),
                ContactKind::DemoRequester => {
                    assert!(stage >= Some(Stage::Sql), "{backend}: {kind:?} {cid} at {stage:?}")
                }
                ContactKind::Customer => assert_eq!(stage, Some(Stage::Customer), "{backend}: {kind:?} {cid}"),
                ContactKind::FreemailSubscriber => {
                    assert!(
                        stage < Some(Stage::Sql),
                        "{backend}: a free-mail subscriber never goes straight to sales"
                    )
                }
                ContactKind::InSalesforce => {
                    assert!(stage >= Some(Stage::Sql), "{backend}: {kind:?} {cid} at {stage:?}")
                }
                ContactKind::IcpRevops | ContactKind::IcpMarketing | ContactKind::IcpSales | ContactKind::IcpIt => {
                    *icp.entry(stage).or_insert(0u32) += 1
                }
                _ => {}
            }
            let hs = app.stack.sandbox.hubspot_contact(&cid).unwrap();
            assert_eq!(
                hs.get("leadsync_stage").map(String::as_str),
                stage.map(|s| s.as_str()),
                "{backend}: HubSpot holds the stage of {cid}"
            );
            assert_eq!(
                hs.get("leadsync_status").map(String::as_str),
                Some(status.as_str()),
                "{backend}: {cid}"
            );
        }
        // ICP fits spread over the funnel: more leads than MQLs, more MQLs than SQLs.
        let at = |st: Stage| icp.get(&Some(st)).copied().unwrap_or(0);
        assert!(at(Stage::Lead) > at(Stage::Mql), "{backend}: {icp:?}");
        assert!(at(Stage::Mql) > at(Stage::Sql), "{backend}: {icp:?}");
        assert!(
            seen_kinds.len() >= 10,
            "{backend}: the portal has every kind: {seen_kinds:?}"
        );

        // Every contact that became SQL under leadsync's watch has its Salesforce records, once.
        let opportunities = keyed(&app, "Opportunity", "LeadSync_Key__c");
        let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
        assert!(!promoted.is_empty(), "{backend}: some leads were promoted");
        for p in &promoted {
            let row = &s.store.contacts(&[id(p.contact_id.parse().unwrap())]).await.unwrap()
                [&id(p.contact_id.parse().unwrap())];
            let link = row.state.salesforce.clone().expect("link recorded");
            let key = format!("hs-{}-{}", p.contact_id, row.state.recycle_count);
            assert_eq!(
                opportunities.get(&key),
                Some(&1),
                "{backend}: one opportunity for {key}"
            );
            let hs = app.stack.sandbox.hubspot_contact(&p.contact_id).unwrap();
            assert_eq!(
                hs.get("leadsync_sf_opportunity_id"),
                link.opportunity_id.as_ref(),
                "{backend}"
            );
            assert!(
                hs.contains_key("leadsync_sf_owner_id"),
                "{backend}: the owner reached HubSpot"
            );
        }
        assert_no_duplicates(&app);
        assert!(
            s.store
                .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Dead)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: no write refused"
        );

        // A second cycle at the same moment: leadsync's own writes come back as modified
        // contacts, recognised by their `updatedAt`: not read again, and no write.
        app.stack.sandbox.reset_calls();
        let second = s.incremental(now, Duration::days(1)).await.unwrap();
        // What the cycle queued, carried out by the daemon's outbox worker.
        app.settle().await;
        let calls = app.stack.sandbox.calls();
        assert_eq!(
            second.pulled, 0,
            "{backend}: the echo of leadsync's writes was not read"
        );
        assert_eq!(calls.get("hubspot contacts.batch_update"), None, "{backend}: {calls:?}");
        assert_eq!(app.stack.sandbox.api_calls("salesforce"), 0, "{backend}: {calls:?}");
        assert_eq!(outcome(&s.store).await, stored, "{backend}: nothing moved");
        app.stack.shutdown().await.unwrap();
    }
}

// README (Reliability): a killed backfill resumes from its checkpoint and writes nothing twice
async fn a_backfill_killed_ten_times_ends_like_an_uninterrupted_one_without_writing_twice(on: Backend) {
    // The reference: the same portal, uninterrupted.
    // Blocks of 100 contacts, each saved with its checkpoint: kills land between and inside them.
    let opts = BackfillOptions {
        block: Some(100),
        ..BackfillOptions::default()
    };
    let (reference, _, _ref_dir) = app_on(on, 1000).await;
    let now = reference.now();
    reference.stack.syncer.backfill(&opts, now, |_, _| {}).await.unwrap();
    let expected = outcome(&reference.stack.syncer.store).await;
    let expected_opps = keyed(&reference, "Opportunity", "LeadSync_Key__c");

    let (app, _, _dir) = app_on(on, 1000).await;
    assert_eq!(app.now(), now, "same frozen clock, same portal");
    // Kill after a pseudo-random number of HubSpot calls (an aborted task is a killed process:
    // only what was committed remains), then resume with fresh clients on the same store.
    // Counting calls, not milliseconds, puts the kills at the same points on a busy machine.
    let mut partial = 0;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The backfill reads ahead of its commits (the next pages and blocks while one is
        // committed): up to 63 calls, so that kills land while filing forms, between block
        // commits and inside them.
        let calls = 4 + seed % 60;
        let syncer = app.restarted_syncer().await;
        let start = app.stack.sandbox.api_calls("hubspot");
        let (o, s2) = (opts.clone(), syncer.clone());
        let run = tokio::spawn(async move { s2.backfill(&o, now, |_, _| {}).await.map(|_| ()) });
        while !run.is_finished() && app.stack.sandbox.api_calls("hubspot") < start + calls {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        if run.is_finished() {
            eprintln!("round {round}: finished before the kill");
            break;
        }
        run.abort();
        let _ = run.await;
        let checkpoint = syncer.store.cursor("backfill").await.unwrap().unwrap_or_default();
        eprintln!("round {round}: killed after {calls} calls, checkpoint {checkpoint}");
        // A killed process's connections close with it, and with them any transaction it had
        // begun (sqlx can leave one begun on a pooled connection when the task is aborted
        // between the BEGIN's answer and its guard); closing the pool is that part of the kill.
        syncer.store.close().await;
        // Killed after some blocks were committed, before the last.
        let saved: Value = serde_json::from_str(&checkpoint).unwrap_or_default();
        partial += usize::from(saved["done"].as_u64().is_some_and(|d| d > 0) && saved["listed"] != true);
    }
    assert!(
        partial >= 3,
        "the kills must land between committed blocks to mean anything ({partial} did)"
    );
    let syncer = app.restarted_syncer().await;
    syncer.backfill(&opts, now, |_, _| {}).await.unwrap();

    let got = outcome(&syncer.store).await;
    let moved: Vec<_> = expected
        .iter()
        .filter(|(c, want)| got.get(*c) != Some(*want))
        .map(|(c, want)| (c, want, got.get(c)))
        .collect();
    if !moved.is_empty() {
        // The events only one run's ledger holds for the contacts that differ (id, kind, time,
        // form: two forms of one millisecond differ only by id and form), and their scores.
        let ids: Vec<HubSpotId> = moved.iter().map(|(c, _, _)| id(c.parse().unwrap())).collect();
        let ledger = |m: std::collections::HashMap<HubSpotId, Vec<leadsync::lifecycle::Event>>| {
            m.into_iter()
                .map(|(k, v)| {
                    let events: BTreeSet<String> = v
                        .iter()
                        .map(|e| format!("{} {:?}@{} {:?}", e.id, e.kind, e.at, e.form))
                        .collect();
                    (k.as_str().to_string(), events)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let want = ledger(reference.stack.syncer.store.events(&ids).await.unwrap());
        let have = ledger(syncer.store.events(&ids).await.unwrap());
        let empty = BTreeSet::new();
        let mut diff = Vec::new();
        for c in &ids {
            let (w, h) = (
                want.get(c.as_str()).unwrap_or(&empty),
                have.get(c.as_str()).unwrap_or(&empty),
            );
            let scores = async |s: &Store| {
                let r = s.contacts(std::slice::from_ref(c)).await.unwrap().remove(c);
                r.map(|r| (r.fit, r.engagement))
            };
            diff.push(format!(
                "{c}: (fit, engagement) {:?} against {:?}; only uninterrupted {:?}; only after the kills {:?}",
                scores(&reference.stack.syncer.store).await,
                scores(&syncer.store).await,
                w.difference(h).collect::<Vec<_>>(),
                h.difference(w).collect::<Vec<_>>()
            ));
        }
        panic!(
            "(contact, uninterrupted, after the kills): {moved:?}\n{}",
            diff.join("\n")
        );
    }
    assert_eq!(got.len(), expected.len(), "same contacts");
    assert_eq!(
        keyed(&app, "Opportunity", "LeadSync_Key__c"),
        expected_opps,
        "same opportunities"
    );
    assert_no_duplicates(&app);
    // Nothing written twice: no write after the kills re-sent values HubSpot already held (a
    // write applied before a kill and sent again after the restart would be one), and the same
    // contacts were written. How many writes a contact took may differ by one either way: the
    // outbox worker runs beside the backfill, so a contact's stage write and the write of its
    // Salesforce ids are one call or two depending on which comes first.
    let repeated = app.stack.sandbox.hubspot_repeated_writes();
    assert!(
        repeated.is_empty(),
        "(contact, writes that changed nothing): {repeated:?}"
    );
    assert!(
        reference.stack.sandbox.hubspot_repeated_writes().is_empty(),
        "the uninterrupted run sent a write that changed nothing"
    );
    let reference_writes = reference.stack.sandbox.hubspot_writes();
    let writes = app.stack.sandbox.hubspot_writes();
    assert_eq!(
        writes.keys().collect::<Vec<_>>(),
        reference_writes.keys().collect::<Vec<_>>(),
        "the same contacts written"
    );
}

/// A Webhooks API delivery of a form submission, as the sandbox and HubSpot send it.
fn form_delivery(contact: u64, occurred_at: i64) -> Vec<Value> {
    vec![
        serde_json::json!({"eventId": 1, "subscriptionId": 3, "portalId": 42, "appId": 7, "occurredAt": occurred_at,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": contact,
            "propertyName": "num_conversion_events", "propertyValue": "9", "changeSource": "FORM"}),
        serde_json::json!({"eventId": 2, "subscriptionId": 3, "portalId": 42, "appId": 7, "occurredAt": occurred_at,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": contact,
            "propertyName": "recent_conversion_event_name", "propertyValue": "Pricing: Request a demo", "changeSource": "FORM"}),
    ]
}

/// A lead the backfill left at `lead`, active, fit for a demo request.
async fn a_lead(app: &TestApp) -> String {
    let leads = crate::support::demo_ready_leads(&app.stack.syncer.store).await;
    leads.into_iter().next().expect("the portal has active leads")
}

// README: "evaluate from that current snapshot (so order does not matter), write back and promote"
async fn a_demo_request_through_a_signed_webhook_ends_at_sql_with_salesforce_records_and_repeats_change_nothing(
    on: Backend,
) {
    let (app, _, _dir) = app_on(on, 200).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let lead = a_lead(&app).await;
    let opps_before = app.stack.sandbox.salesforce_records("Opportunity").len();

    // The person submits the form in HubSpot (the sandbox records it); HubSpot's delivery comes
    // three times, once with its events in reverse order.
    assert!(app.stack.sandbox.submit_form(&lead, "Request a demo").is_some());
    let t = app.stack.sandbox.now().timestamp_millis();
    let events = form_delivery(lead.parse().unwrap(), t);
    let body = serde_json::to_string(&events).unwrap();
    let reversed = serde_json::to_string(&events.iter().rev().collect::<Vec<_>>()).unwrap();
    for b in [&body, &body, &reversed] {
        assert_eq!(app.post_signed_webhook(b).await, 200);
    }
    // The sandbox also delivers the submission itself: wait until it has finished.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !app.stack.sandbox.webhook_deliveries().iter().all(|d| d.finished) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox's deliveries finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.run_inbox_until_idle().await;

    let row = &s.store.contacts(&[id(lead.parse().unwrap())]).await.unwrap()[&id(lead.parse().unwrap())];
    assert_eq!(
        row.state.stage,
        Some(Stage::Sql),
        "the demo request is a shortcut to SQL"
    );
    let hs = app.stack.sandbox.hubspot_contact(&lead).unwrap();
    assert_eq!(hs.get("leadsync_stage").map(String::as_str), Some("sql"));
    assert_eq!(hs.get("lifecyclestage").map(String::as_str), Some("salesqualifiedlead"));
    let link = row.state.salesforce.clone().expect("promoted");
    let opps = app.stack.sandbox.salesforce_records("Opportunity");
    assert_eq!(opps.len(), opps_before + 1, "exactly one new opportunity");
    let opp = opps
        .iter()
        .find(|o| o["Id"].as_str() == link.opportunity_id.as_deref())
        .unwrap();
    assert_eq!(opp["LeadSync_Key__c"], format!("hs-{lead}-0"));
    let contacts = app.stack.sandbox.salesforce_records("Contact");
    assert!(contacts.iter().any(|c| c["Id"].as_str() == link.contact_id.as_deref()));
    assert_eq!(
        app.stack.syncer.store.inbox_depth().await.unwrap().0,
        0,
        "every delivery processed"
    );
    assert_no_duplicates(&app);

    // The same deliveries once more after processing: nothing new anywhere.
    let writes_before = app.stack.sandbox.hubspot_writes();
    for b in [&body, &reversed] {
        assert_eq!(app.post_signed_webhook(b).await, 200);
    }
    app.run_inbox_until_idle().await;
    assert_eq!(
        app.stack.sandbox.salesforce_records("Opportunity").len(),
        opps_before + 1
    );
    assert_eq!(app.stack.sandbox.hubspot_writes(), writes_before);
}

// README: "An event acknowledged before a crash is processed after the restart."
async fn an_event_acknowledged_before_a_crash_is_processed_after_the_restart(on: Backend) {
    // The process that dies: its webhook server acknowledges, no worker ever takes the event.
    let (url, _dir) = on.fresh().await;
    let mut app = TestApp::start_with(150, Some(url.clone())).await;
    app.stack
        .syncer
        .backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let lead = a_lead(&app).await;
    assert!(app.stack.sandbox.submit_form(&lead, "Request a demo").is_some());
    let body = serde_json::to_string(&form_delivery(lead.parse().unwrap(), app.now().timestamp_millis())).unwrap();
    assert_eq!(app.post_signed_webhook(&body).await, 200, "acknowledged");
    // The process dies here. A new one runs the daemon whole (`leadsync run`) on the same store.
    let store = Store::connect(&url).await.unwrap();
    assert!(store.inbox_depth().await.unwrap().0 >= 2, "kept before the 200");
    let restarted = app.restarted_syncer().await;
    app.stack.loaded.settings.schedule = leadsync::config::ScheduleSettings {
        sync: crate::support::NEVER.into(),
        rescore: crate::support::NEVER.into(),
        sla: crate::support::NEVER.into(),
        opportunities: crate::support::NEVER.into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let daemon = leadsync::daemon::Daemon::on(&app.stack.loaded, restarted, listener);
    let running = tokio::spawn(daemon.run(stopped));
    let lead = id(lead.parse().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let row = &store.contacts(std::slice::from_ref(&lead)).await.unwrap()[&lead];
        if row.state.stage == Some(Stage::Sql) && row.state.salesforce.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{on:?}: not promoted after the restart (stage {:?})",
            row.state.stage
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    assert_eq!(store.inbox_depth().await.unwrap().0, 0, "{on:?}: every event taken");
}

// README: "A crash after Salesforce accepted the records and before leadsync recorded them re-runs the promotion"
async fn a_crash_between_salesforce_and_the_hubspot_write_back_creates_nothing_twice(on: Backend) {
    let (mut app, url, _dir) = app_on(on, 200).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    // The crash: the in-process daemon is gone before the promotions are forgotten, so its
    // outbox worker cannot carry them out ahead of the restarted one (CI saw that race).
    app.stack.stop_daemon().await.unwrap();
    let counts = |app: &TestApp| {
        ["Account", "Contact", "Opportunity", "OpportunityContactRole"]
            .map(|o| app.stack.sandbox.salesforce_records(o).len())
    };
    // Read after the stop: its flush may have carried out promotions the backfill queued last.
    let before = counts(&app);
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    assert!(!promoted.is_empty());

    // As if leadsync died after Salesforce accepted the records and before it recorded them or
    // wrote their ids to HubSpot: the promotions are pending again and no link is stored.
    forget_promotions(on, &url).await;
    let restarted = app.restarted_syncer().await;
    let report = restarted
        .drain_outbox(leadsync::hubspot::limiter::Priority::Background, app.now())
        .await
        .unwrap();
    assert_eq!(report.promoted, promoted.len() as u64, "the promotions ran again");
    assert_eq!(counts(&app), before, "and created no record");
    assert_no_duplicates(&app);
    for p in &promoted {
        let row = &restarted
            .store
            .contacts(&[id(p.contact_id.parse().unwrap())])
            .await
            .unwrap()[&id(p.contact_id.parse().unwrap())];
        assert!(
            row.state.salesforce.is_some(),
            "the link is recorded again for {}",
            p.contact_id
        );
    }
}

/// As if leadsync died after Salesforce accepted its records and before it recorded them or
/// wrote their ids to HubSpot: every promotion pending again, no link stored.
async fn forget_promotions(on: Backend, url: &str) {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(url).await.unwrap();
    let contacts = match on {
        Backend::Sqlite => {
            "UPDATE contacts SET sf_account_id = NULL, sf_contact_id = NULL, sf_opportunity_id = NULL, \
             state = json_set(json_remove(state, '$.salesforce'), '$.promotion_pending', json('true')) \
             WHERE sf_contact_id IS NOT NULL"
        }
        Backend::Postgres => {
            "UPDATE contacts SET sf_account_id = NULL, sf_contact_id = NULL, sf_opportunity_id = NULL, \
             state = ((state::jsonb - 'salesforce') || '{\"promotion_pending\": true}'::jsonb)::text \
             WHERE sf_contact_id IS NOT NULL"
        }
    };
    // Due again at once: `next_at` is the moment the promotion was done, on the clock of the
    // drain that did it (the daemon's wall clock is ahead of the sandbox's frozen one).
    for sql in [
        "UPDATE outbox SET state = 'pending', next_at = 0 WHERE kind = 'promote'",
        contacts,
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
}

// README: "until Ctrl-C or SIGTERM, which let the work in flight finish and flush the outbox" (the flush)
async fn leadsync_run_becomes_ready_and_on_sigterm_flushes_the_outbox_and_exits_cleanly(on: Backend) {
    let (mut app, url, _store_dir) = app_on(on, 120).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    assert!(!promoted.is_empty(), "the backfill promoted some leads");
    // The in-process daemon stops first: `leadsync run` below is the one daemon on the store
    // (a second on SQLite is refused; on PostgreSQL it would stand by while this one works).
    app.stack.stop_daemon().await.unwrap();
    // Promotions left pending, as a crash leaves them: the daemon's outbox worker carries them
    // out (it drains at start and once more at the stop; no schedule fires during the test).
    forget_promotions(on, &url).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let never = "0 0 0 1 1 *";
    let mut child = app
        .run_command_on(dir.path(), port, &url)
        .env("LEADSYNC__SCHEDULE__SYNC", never)
        .env("LEADSYNC__SCHEDULE__RESCORE", never)
        .env("LEADSYNC__SCHEDULE__SLA", never)
        .env("LEADSYNC__SCHEDULE__OPPORTUNITIES", never)
        .spawn()
        .unwrap();
    let up = crate::support::ready_on(port).await;
    assert!(up, "leadsync run became ready (store and both tokens)");
    crate::support::sigterm(&child).await;
    let exit = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("stopped within 20 s")
        .unwrap();
    assert!(exit.success(), "a stop on SIGTERM is a clean exit: {exit:?}");
    let store = Store::connect(&url).await.unwrap();
    assert!(
        store
            .outbox_in(OutboxKind::Promote, OutboxState::Pending)
            .await
            .unwrap()
            .is_empty(),
        "the stop flushed the outbox"
    );
    let rows = store
        .contacts(
            &promoted
                .iter()
                .map(|p| id(p.contact_id.parse().unwrap()))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    for p in &promoted {
        assert!(
            rows[&id(p.contact_id.parse().unwrap())].state.salesforce.is_some(),
            "the link of {} is recorded again before the exit",
            p.contact_id
        );
    }
}

// README: "`contact.merge` moves the ledger to the survivor"
async fn a_merge_through_the_webhook_moves_the_ledger_to_the_survivor_and_retires_the_other(on: Backend) {
    let (app, _, _dir) = app_on(on, 120).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let (survivor, merged) = (id(1001), id(1002));
    let before = s.store.events(&[survivor.clone(), merged.clone()]).await.unwrap();
    let count = |m: &std::collections::HashMap<HubSpotId, Vec<leadsync::lifecycle::Event>>, k: &HubSpotId| {
        m.get(k).map_or(0, Vec::len)
    };
    assert!(count(&before, &merged) > 0, "the merged contact had activity");

    let body = serde_json::json!([{"eventId": 9, "subscriptionId": 3, "portalId": 42, "appId": 7,
        "occurredAt": app.now().timestamp_millis(), "subscriptionType": "contact.merge", "attemptNumber": 0,
        "objectId": 1001, "primaryObjectId": 1001, "mergedObjectIds": [1002], "changeSource": "CRM_UI"}])
    .to_string();
    assert_eq!(app.post_signed_webhook(&body).await, 200);
    app.run_inbox_until_idle().await;

    let after = s.store.events(std::slice::from_ref(&survivor)).await.unwrap();
    assert_eq!(
        count(&after, &survivor),
        count(&before, &survivor) + count(&before, &merged)
    );
    let rows = s.store.contacts(&[survivor.clone(), merged.clone()]).await.unwrap();
    assert_eq!(rows[&merged].merged_into.as_deref(), Some("1001"));
    assert!(rows[&survivor].removed.is_none());
    // The retired contact is not evaluated again, even when HubSpot still lists it.
    let evaluated = s.rescore(app.now(), true).await.unwrap().evaluated;
    assert_eq!(evaluated, 119, "every contact but the merged one");
}

// The demo (and CI through it) fails when a demo request did not reach Salesforce.
async fn the_demo_check_names_each_lead_that_did_not_reach_salesforce_and_why(on: Backend) {
    let (app, _, _dir) = app_on(on, 150).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    let linked = id(promoted[0].contact_id.parse().unwrap());
    let lead = id(a_lead(&app).await.parse().unwrap());
    let missing = leadsync::demo::not_in_salesforce(&s.store, &[linked.clone(), lead.clone()])
        .await
        .unwrap();
    assert_eq!(missing, vec![(lead.clone(), "no promotion".to_string())]);
    // Settled with nothing set aside, after the daemon's workers ran.
    let settled = app.settle().await;
    assert_eq!(settled, leadsync::demo::Settled::default());
    app.stack.shutdown().await.unwrap();
}

/// A `contact.propertyChange` delivery of one property.
fn property_delivery(contact: &str, property: &str, value: &str, event_id: u64, occurred_at: i64) -> String {
    serde_json::json!([{"eventId": event_id, "subscriptionId": 4, "portalId": 42, "appId": 7,
        "occurredAt": occurred_at, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": contact.parse::<u64>().unwrap(), "propertyName": property, "propertyValue": value,
        "changeSource": "INTEGRATION"}])
    .to_string()
}

// README: "the write ledger recognises webhook echoes"
async fn webhook_echoes_of_leadsync_s_own_writes_cost_no_hubspot_call(on: Backend) {
    let (app, _, _dir) = app_on(on, 200).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    // A contact whose HubSpot lifecycle stage leadsync wrote (a promoted lead).
    let promoted = s.store.outbox_in(OutboxKind::Promote, OutboxState::Done).await.unwrap();
    let contact = promoted[0].contact_id.clone();
    let hs = app.stack.sandbox.hubspot_contact(&contact).unwrap();
    let t = app.now().timestamp_millis();
    let mut bodies = vec![property_delivery(
        &contact,
        "lifecyclestage",
        &hs["lifecyclestage"],
        501,
        t,
    )];
    for (n, property) in ["leadsync_stage", "leadsync_status"].into_iter().enumerate() {
        bodies.push(property_delivery(&contact, property, &hs[property], 502 + n as u64, t));
    }
    app.stack.sandbox.reset_calls();
    for b in &bodies {
        assert_eq!(app.post_signed_webhook(b).await, 200);
    }
    app.run_inbox_until_idle().await;
    assert_eq!(s.store.inbox_depth().await.unwrap().0, 0, "every echo processed");
    assert_eq!(
        app.stack.sandbox.api_calls("hubspot"),
        0,
        "leadsync's own values coming back cost nothing: {:?}",
        app.stack.sandbox.calls()
    );

    // The control: someone else changes the same property to another value; that is read.
    let other = property_delivery(&contact, "lifecyclestage", "opportunity", 510, t + 1);
    assert_eq!(app.post_signed_webhook(&other).await, 200);
    app.run_inbox_until_idle().await;
    assert!(
        app.stack.sandbox.api_calls("hubspot") > 0,
        "a change leadsync did not write is read: {:?}",
        app.stack.sandbox.calls()
    );
}

// README (Figures): "only the very last batch read of each engagement type is partial"
#[tokio::test]
async fn a_backfill_carries_partial_batches_across_blocks_so_only_the_last_read_of_each_type_is_partial() {
    // Three blocks of 1,000 (the last one half full): each block's engagements and companies
    // do not fill their last batch of 100.
    let contacts = 2_500;
    let app = TestApp::running(contacts, None).await;
    app.stack.sandbox.reset_calls();
    let report = app
        .stack
        .syncer
        .backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.0.evaluated, u64::from(contacts));
    let calls = app.stack.sandbox.calls();
    let count = |endpoint: &str| calls.get(&format!("hubspot {endpoint}")).copied().unwrap_or(0);
    let portal = app.stack.sandbox.portal();
    let mut partial_blocks = 0;
    let mut saved = 0;
    for (t, (object, _)) in ENGAGEMENT_OBJECTS.iter().enumerate() {
        let per_block: Vec<u64> = (0..contacts)
            .step_by(1_000)
            .map(|start| {
                (start..(start + 1_000).min(contacts))
                    .map(|i| portal.engagement_count(i, t))
                    .sum()
            })
            .collect();
        partial_blocks += per_block.iter().filter(|n| *n % 100 != 0).count();
        let total: u64 = per_block.iter().sum();
        let reads = count(&format!("{object}.batch_read"));
        if per_block.iter().all(|n| *n >= 100) {
            assert_eq!(
                reads,
                total.div_ceil(100),
                "{object}: {total} records in blocks of {per_block:?}, 100 a read: {calls:?}"
            );
        } else {
            // A block waits for one later block at most (`Carried::MAX_WAITING`): a type with
            // fewer than 100 records in a block may be read partially before the end, never
            // more often than block by block.
            let by_block: u64 = per_block.iter().map(|n| n.div_ceil(100)).sum();
            assert!(
                (total.div_ceil(100)..=by_block).contains(&reads),
                "{object}: {reads} reads of {total} records in blocks of {per_block:?}: {calls:?}"
            );
        }
        saved += per_block.iter().map(|n| n.div_ceil(100)).sum::<u64>() - reads;
    }
    assert!(saved >= 5, "carrying saves calls: {saved}");
    assert!(
        partial_blocks > 5,
        "blocks ending in a partial batch, or the test means nothing"
    );
    let companies: BTreeSet<u32> = (0..contacts).filter_map(|i| portal.contact_company(i)).collect();
    assert_eq!(
        count("companies.batch_read"),
        companies.len().div_ceil(100) as u64,
        "{} companies: {calls:?}",
        companies.len()
    );
    let associations: u64 = calls
        .iter()
        .filter(|(k, _)| k.starts_with("hubspot associations.contacts."))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        associations,
        3 * 6,
        "per block one per type and one for companies: {calls:?}"
    );
}

// README: "so a rescore needs no HubSpot read"
async fn a_rescore_reads_nothing_from_hubspot(on: Backend) {
    let (app, _, _dir) = app_on(on, 200).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    app.stack.sandbox.reset_calls();
    // Two months on, as the schedule runs it: scores decay, some contacts go dormant.
    let later = app.now() + Duration::days(60);
    let report = s.rescore(later, false).await.unwrap();
    assert_eq!(report.evaluated, 200, "every contact re-decided");
    let reads: Vec<_> = app
        .stack
        .sandbox
        .calls()
        .into_iter()
        .filter(|(k, _)| k.starts_with("hubspot") && !k.contains("update"))
        .collect();
    assert!(reads.is_empty(), "no HubSpot read: {reads:?}");
}

// README (Figures, rescore): "saved without writing back the HubSpot values and company it read"
async fn a_rescore_saves_each_decision_and_leaves_the_values_it_read(on: Backend) {
    let (app, _, _dir) = app_on(on, 200).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    // Twice: two months on (scores decay, contacts go dormant), then a minute later (most
    // decisions change nothing stored but their time).
    let later = app.now() + Duration::days(60);
    for (pass, at) in [(1, later), (2, later + Duration::minutes(1))] {
        let before = s.store.contact_page(None, 1_000).await.unwrap();
        let ids: Vec<HubSpotId> = before.iter().map(|r| r.contact_id.clone()).collect();
        let ledger = s.store.events(&ids).await.unwrap();
        let expected: Vec<_> = before
            .iter()
            .map(|r| {
                let events = ledger.get(&r.contact_id).cloned().unwrap_or_default();
                leadsync::sync::decide::decide_stored(&s.rules, &s.sla, r, &events, at)
            })
            .collect();
        let settled = before
            .iter()
            .zip(&expected)
            .filter(|(r, e)| e.state == r.state && e.engagement == r.engagement && e.transitions.is_empty())
            .count();
        assert!(settled > 0, "pass {pass}: some contacts settled");
        assert!(
            pass == 2 || settled < before.len(),
            "pass {pass}: some contacts change ({settled} of {} settled)",
            before.len()
        );
        s.rescore(at, false).await.unwrap();
        let after = s.store.contacts(&ids).await.unwrap();
        for (r, e) in before.iter().zip(&expected) {
            let a = &after[&r.contact_id];
            let who = r.contact_id.as_str();
            assert_eq!(a.state, e.state, "pass {pass}, {who}: the decided state saved");
            assert_eq!(
                (a.fit, a.engagement, &a.grade),
                (e.fit, e.engagement, &e.grade),
                "pass {pass}, {who}"
            );
            assert_eq!(a.properties, r.properties, "pass {pass}, {who}: the values read kept");
            assert_eq!(
                (&a.company_id, &a.company),
                (&r.company_id, &r.company),
                "pass {pass}, {who}"
            );
            assert_eq!(
                a.evaluated_at.timestamp_millis(),
                at.timestamp_millis(),
                "pass {pass}, {who}: evaluated now"
            );
        }
    }
}

// README: "`run` refuses to start without them"
#[tokio::test]
async fn leadsync_run_refuses_to_start_without_its_hubspot_properties() {
    let app = TestApp::start_unset(20, None).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.run_command(dir.path(), port).output(),
    )
    .await
    .expect("run stops by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("leadsync setup --apply"), "{stderr}");
    assert!(stderr.contains("leadsync_stage"), "names what is missing: {stderr}");
}

/// `/readyz` of the webhook server `leadsync run` builds for `loaded`: (status, body).
async fn readiness(loaded: &leadsync::config::Loaded) -> (u16, String) {
    let syncer = leadsync::daemon::syncer(loaded).await.unwrap();
    let state = leadsync::daemon::app_state(loaded, &syncer, std::sync::Arc::new(tokio::sync::Notify::new()));
    let app = leadsync::server::Application::build(state, "127.0.0.1:0", 1 << 20)
        .await
        .unwrap();
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let resp = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    let out = (resp.status().as_u16(), resp.text().await.unwrap());
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    out
}

// README: "`GET /readyz` (the store commits a write, both CRMs' tokens)"
#[tokio::test]
async fn readiness_fails_when_either_crm_token_cannot_be_had() {
    let mut app = TestApp::start(20).await;
    assert_eq!(readiness(&app.stack.loaded).await, (200, "ready".to_string()));
    let revoked = || Some(secrecy::SecretString::from("revoked-refresh-token"));
    let kept = app.stack.loaded.settings.hubspot.refresh_token.take();

    app.stack.loaded.settings.hubspot.refresh_token = revoked();
    let (status, why) = readiness(&app.stack.loaded).await;
    assert_eq!(status, 503, "{why}");
    assert!(why.starts_with("hubspot token"), "{why}");

    app.stack.loaded.settings.hubspot.refresh_token = kept;
    app.stack.loaded.settings.salesforce.refresh_token = revoked();
    let (status, why) = readiness(&app.stack.loaded).await;
    assert_eq!(status, 503, "{why}");
    assert!(why.starts_with("salesforce token"), "{why}");
}

// README (The data's path): one outbox worker carries out what every commit queued
async fn the_outbox_worker_carries_out_what_a_webhook_committed(on: Backend) {
    let (app, _, _dir) = app_on(on, 150).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let lead = id(a_lead(&app).await.parse().unwrap());
    // The daemon's workers: the inbox pass only commits; the promotion and the write-back of
    // its Salesforce ids are the outbox worker's.
    assert!(app.stack.sandbox.submit_form(lead.as_str(), "Request a demo").is_some());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let link = loop {
        let row = &s.store.contacts(std::slice::from_ref(&lead)).await.unwrap()[&lead];
        if let Some(link) = row.state.salesforce.clone() {
            break link;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{on:?}: not promoted within 60 s (stage {:?})",
            row.state.stage
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while app
        .stack
        .sandbox
        .hubspot_contact(lead.as_str())
        .unwrap()
        .get("leadsync_sf_opportunity_id")
        != link.opportunity_id.as_ref()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{on:?}: the Salesforce ids reached HubSpot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stack.shutdown().await.unwrap();
}

// README: "until Ctrl-C or SIGTERM, which let the work in flight finish and flush the outbox" (the work in flight)
async fn a_stop_during_an_inbox_pass_lets_it_commit_and_flushes_what_it_queued(on: Backend) {
    let (url, _dir) = on.fresh().await;
    // Every answer 100 ms late, so that a pass is still going when the stop comes.
    let sandbox = leadsync::sandbox::SandboxConfig {
        latency: std::time::Duration::from_millis(100),
        ..TestApp::sandbox_config(40)
    };
    let mut app = TestApp::running_configured(sandbox, Some(url.clone())).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let lead = id(a_lead(&app).await.parse().unwrap());
    let reads = |app: &TestApp| {
        app.stack
            .sandbox
            .calls()
            .get("hubspot contacts.batch_read")
            .copied()
            .unwrap_or(0)
    };
    let before = reads(&app);
    assert!(app.stack.sandbox.submit_form(lead.as_str(), "Request a demo").is_some());
    // The daemon's inbox pass has started reading the contact: stop now, as SIGTERM does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while reads(&app) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "{on:?}: the inbox pass never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(
        s.store.inbox_depth().await.unwrap().0 > 0,
        "{on:?}: the pass is in flight"
    );
    app.stack.stop_daemon().await.unwrap();

    // The pass committed, and what it queued was carried out before the daemon returned.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.inbox_depth().await.unwrap().0,
        0,
        "{on:?}: the events taken are done"
    );
    let row = &store.contacts(std::slice::from_ref(&lead)).await.unwrap()[&lead];
    assert_eq!(row.state.stage, Some(Stage::Sql), "{on:?}");
    let link = row.state.salesforce.clone().expect("promoted before the exit");
    for kind in [OutboxKind::Promote, OutboxKind::HubSpotWrite] {
        for state in [OutboxState::Pending, OutboxState::Sending] {
            let open = store.outbox_in(kind, state).await.unwrap();
            assert!(open.is_empty(), "{on:?}: {kind:?} left {state:?}: {open:?}");
        }
    }
    assert_eq!(
        app.stack
            .sandbox
            .hubspot_contact(lead.as_str())
            .unwrap()
            .get("leadsync_sf_opportunity_id"),
        link.opportunity_id.as_ref(),
        "{on:?}: the Salesforce ids reached HubSpot before the exit"
    );
}

/// The sequential round trips among these arrivals (ms, in order) at `latency_ms` an answer: a
/// call arriving once the last counted one has been answered starts a new one (as
/// `benches/webhooks.rs` counts them).
fn round_trips(arrivals: &[(u64, String)], latency_ms: u64) -> Vec<&(u64, String)> {
    let mut trips: Vec<&(u64, String)> = Vec::new();
    for a in arrivals {
        if trips.last().is_none_or(|last| a.0 >= last.0 + latency_ms) {
            trips.push(a);
        }
    }
    trips
}

// README (Figures): "webhook received → Salesforce Opportunity created ... sequential round trips"
#[tokio::test]
async fn a_demo_request_reaches_the_salesforce_opportunity_in_pinned_sequential_round_trips() {
    // Every answer 150 ms late, and leadsync's default HubSpot budget (80 per 10 s), whose
    // background pacing (one call per 127 ms) would spread the webhook's reads.
    let latency_ms = 150;
    let sandbox = leadsync::sandbox::SandboxConfig {
        latency: std::time::Duration::from_millis(latency_ms),
        ..TestApp::sandbox_config(40)
    };
    let app = TestApp::running_at_budget(sandbox, None, 80).await;
    let s = app.stack.syncer.clone();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let lead = a_lead(&app).await;
    // The backfill's calls out of the window, so the form's reads find it empty.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    app.stack.sandbox.reset_calls();
    assert!(app.stack.sandbox.submit_form(&lead, "Request a demo").is_some());
    let prefix = format!("hs-{lead}-");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !app
        .stack
        .sandbox
        .salesforce_records("Opportunity")
        .iter()
        .any(|o| o["LeadSync_Key__c"].as_str().is_some_and(|k| k.starts_with(&prefix)))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "lead {lead}: no Opportunity after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut arrivals = app.stack.sandbox.arrivals();
    // Up to the Opportunity's upsert (the last of the three); the contact role and the write
    // to HubSpot that follow it are off the path.
    let upsert = "salesforce sobjects.upsert";
    let last = arrivals.iter().rposition(|(_, n)| n == upsert).expect("upserts");
    arrivals.truncate(last + 1);
    let trips = round_trips(&arrivals, latency_ms);
    let names: Vec<&str> = trips.iter().map(|(_, n)| n.as_str()).collect();
    println!("arrivals: {arrivals:?}\nround trips: {names:?}");
    // HubSpot: the contact and its five association reads in one round trip (the limiter lets
    // a webhook's calls leave together); no engagement batch read, since the backfill put
    // every engagement of the lead in its ledger. Salesforce: the composite lookup, then the
    // Account, Contact and Opportunity upserts.
    let hubspot: Vec<&(u64, String)> = arrivals.iter().filter(|(_, n)| n.starts_with("hubspot ")).collect();
    let mut reads: Vec<&str> = hubspot.iter().map(|(_, n)| n.as_str()).collect();
    reads.sort_unstable();
    assert_eq!(
        reads,
        [
            "hubspot associations.contacts.calls",
            "hubspot associations.contacts.emails",
            "hubspot associations.contacts.meetings",
            "hubspot associations.contacts.notes",
            "hubspot associations.contacts.tasks",
            "hubspot contacts.batch_read",
        ],
        "{arrivals:?}"
    );
    assert!(
        hubspot.iter().all(|(at, _)| *at < hubspot[0].0 + latency_ms),
        "the six HubSpot reads leave together: {arrivals:?}"
    );
    assert_eq!(
        names.len(),
        5,
        "webhook → Opportunity: 1 HubSpot and 4 Salesforce round trips: {names:?}"
    );
    assert_eq!(
        &names[1..],
        ["salesforce composite", upsert, upsert, upsert],
        "{arrivals:?}"
    );

    // A call logged since the backfill is not in the ledger: the next form reads it (only it).
    let (object, call) = app
        .stack
        .sandbox
        .log_hubspot_activity(
            &lead,
            &leadsync::sandbox::SalesActivity::new(leadsync::sandbox::SalesActivityKind::Call),
        )
        .unwrap();
    assert_eq!(object, "calls");
    let event = format!("hs-calls-{call}");
    app.stack.sandbox.reset_calls();
    assert!(app.stack.sandbox.submit_form(&lead, "Request a demo").is_some());
    let hs = id(lead.parse().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s
        .store
        .events(std::slice::from_ref(&hs))
        .await
        .unwrap()
        .get(&hs)
        .is_some_and(|l| l.iter().any(|e| e.id == event))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new call never reached the ledger"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls = app.stack.sandbox.calls();
    let reads: Vec<(&str, u64)> = ENGAGEMENT_OBJECTS
        .iter()
        .map(|(o, _)| (*o, calls.get(&format!("hubspot {o}.batch_read")).copied().unwrap_or(0)))
        .collect();
    assert_eq!(
        reads,
        [("calls", 1), ("emails", 0), ("meetings", 0), ("notes", 0), ("tasks", 0)],
        "{calls:?}"
    );
    app.shutdown().await;
}
