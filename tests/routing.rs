//! Routing on the promotion path against the sandbox, on both stores: the SLA file's teams
//! (caps counted from the store, absences, the fallback) over the mapping's rules (the shipped
//! round robin: 005…003AAA weight 3, 005…004AAA weight 1); route once across recycles; one rep
//! per company; the trace stored with each assignment, audited and shown by `leadsync explain
//! --contact`; the rotation and the caps across a restart; reassignment away from given reps.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use leadsync::hubspot::limiter::Priority;
use leadsync::lifecycle::{HubSpotId, Stage, Status};
use leadsync::salesforce::routing::Strategy;
use leadsync::sandbox::portal::CONTACT_ID_BASE;
use leadsync::sla::{SlaFile, SlaRecord};
use leadsync::store::{Evaluated, OutboxKind, OutboxState, SlaTimer};
use leadsync::sync::Syncer;
use leadsync::sync::decide::PromotePayload;
use leadsync::sync::outbox::promotion::Promoter;
use leadsync::sync::owners::OwnersCache;

use crate::common::SlaText;
use crate::support::{Backend, TestApp, lead_at_company, stored_contact};

const JULES: &str = "005000000000003AAA";
const ALICE: &str = "005000000000004AAA";
const QUEUE: &str = "005000000000008AAA";

/// A test team working around the clock in UTC: Jules (`jules`: extra member lines) and Alice
/// (`alice`), the fallback `QUEUE`, a 4-hour first touch of each sales-qualified lead.
fn sla(jules: &str, alice: &str) -> SlaFile {
    desk(jules, alice)
        .fallback(QUEUE)
        .policy("sql_follow_up", "sql", SQL_FOLLOW_UP)
        .compiled("routing-test.toml")
}

/// The first touch of each sales-qualified lead: a call within 4 hours.
const SQL_FOLLOW_UP: &str = "first_touch = \"4h\"\ntouches = { kinds = [\"call\"] }";

/// The team alone: Jules and Alice, no fallback, no policy.
fn desk(jules: &str, alice: &str) -> SlaText {
    SlaText::round_the_clock("routing-test", "desk", "UTC")
        .member("jules@routing.test", &format!("salesforce_user = \"{JULES}\"\n{jules}"))
        .member("alice@routing.test", &format!("salesforce_user = \"{ALICE}\"\n{alice}"))
}

/// `syncer` with the SLA file `sla` for routing (the same store and clients).
fn with_sla(syncer: &Syncer, sla: SlaFile) -> Syncer {
    with_sla_keeping(syncer, sla, true)
}

/// The same, with the mapping's `routing.keep_owner` set to `keep`.
fn with_sla_keeping(syncer: &Syncer, sla: SlaFile, keep: bool) -> Syncer {
    let p = syncer.promoter.as_ref().expect("the sandbox configures Salesforce");
    let mut mapping = p.mapping.clone();
    mapping.routing.keep_owner = keep;
    let promoter = Promoter {
        client: p.client.clone(),
        mapping,
        owners: OwnersCache::default(),
    };
    Syncer::new(
        syncer.rules.clone(),
        syncer.hubspot.clone(),
        syncer.store.clone(),
        Some(Arc::new(promoter)),
    )
    .with_sla(sla)
}

fn contact(i: u64) -> HubSpotId {
    HubSpotId::try_from((CONTACT_ID_BASE + i).to_string()).unwrap()
}

/// Saves contact `i` as a sales-qualified lead of company `company` (US, 50 people: no
/// territory; new to Salesforce) at SQL cycle `cycle`, with its promotion queued, as a decision
/// does.
async fn qualify(s: &Syncer, i: u64, company: &str, cycle: u32, now: DateTime<Utc>) {
    let id = contact(i);
    let (props, company_props) =
        lead_at_company(id.as_str(), &format!("{company}.test"), &format!("Routing {company}"));
    let stored = s.store.contacts(std::slice::from_ref(&id)).await.unwrap();
    let mut state = stored.get(&id).map(|r| r.state.clone()).unwrap_or_default();
    state.stage = Some(Stage::Sql);
    state.status = Status::Active;
    state.promotion_pending = true;
    let payload = PromotePayload {
        cycle,
        contact: props.clone(),
        company_id: Some(company.to_string()),
        company: company_props.clone(),
    };
    let e = Evaluated {
        contact_id: id.clone(),
        at: now,
        properties: props,
        company_id: Some(company.to_string()),
        company: company_props,
        state,
        fit: 50.0,
        engagement: 50.0,
        grade: "A".into(),
        rules: "routing-test".into(),
        transitions: vec![],
        new_events: vec![],
        sla_timers: vec![],
        outbox: vec![(
            OutboxKind::Promote,
            format!("promote:{id}:{cycle}"),
            serde_json::to_string(&payload).unwrap(),
        )],
    };
    s.store.commit(&[e], None).await.unwrap();
}

/// Saves contact `i` recycled: back to lead, its Salesforce owner kept in the store.
async fn recycle(s: &Syncer, i: u64, now: DateTime<Utc>) {
    let id = contact(i);
    let row = stored_contact(&s.store, &id).await;
    let mut state = row.state.clone();
    state.stage = Some(Stage::Lead);
    state.status = Status::Recycle;
    state.recycle_count += 1;
    let e = Evaluated {
        contact_id: id,
        at: now,
        properties: row.properties,
        company_id: row.company_id,
        company: row.company,
        state,
        fit: row.fit,
        engagement: row.engagement,
        grade: row.grade,
        rules: "routing-test".into(),
        transitions: vec![],
        new_events: vec![],
        sla_timers: vec![],
        outbox: vec![],
    };
    s.store.commit(&[e], None).await.unwrap();
}

/// The Salesforce owner of the opportunity of contact `i`'s SQL cycle `cycle`.
fn opportunity_owner(app: &TestApp, i: u64, cycle: u32) -> String {
    let key = format!("hs-{}-{cycle}", contact(i));
    let opps = app.stack.sandbox.salesforce_records("Opportunity");
    let opp = opps
        .iter()
        .find(|o| o["LeadSync_Key__c"].as_str() == Some(key.as_str()))
        .unwrap_or_else(|| panic!("no opportunity {key}"));
    opp["OwnerId"].as_str().unwrap().to_string()
}

async fn start(backend: Backend) -> (TestApp, Option<tempfile::TempDir>, String) {
    let (url, dir) = backend.fresh().await;
    (TestApp::start_with(20, Some(url.clone())).await, dir, url)
}

// README: "a rep at capacity or out of office is never chosen"; "nobody available: the team's fallback"
async fn a_rep_at_capacity_or_absent_is_never_chosen_and_nobody_available_goes_to_the_fallback(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    // Jules (three turns in four) is absent today; Alice takes two open leads at most.
    let s = with_sla(
        &app.stack.syncer,
        sla(
            r#"absences = [{ from = "2026-11-20", to = "2026-11-30" }]"#,
            "capacity = 2",
        ),
    );
    for i in 0..4 {
        qualify(&s, i, &format!("cap-{i}"), 0, t).await;
    }
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 4);
    let owners: Vec<String> = (0..4).map(|i| opportunity_owner(&app, i, 0)).collect();
    assert_eq!(
        owners,
        [ALICE, ALICE, QUEUE, QUEUE],
        "Jules absent, Alice at two, then the fallback"
    );
    let open = s.store.open_leads().await.unwrap();
    assert_eq!(open.get(ALICE), Some(&2), "the caps count the store's open leads");
    assert_eq!(open.get(JULES), None);

    // A later batch reads Alice's two open leads from the store: still at capacity.
    qualify(&s, 4, "cap-4", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 4, 0), QUEUE);
    let trace = &s.store.assignments(&contact(4)).await.unwrap()[0].trace;
    assert_eq!(trace.won, Some(Strategy::Fallback));
    let text = trace.to_string();
    assert!(
        text.contains(&format!("round robin {JULES}: dropped, absent until 2026-11-30")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "round robin {ALICE}: dropped, at capacity (2 of 2 open leads)"
        )),
        "{text}"
    );

    // Without a fallback, the lead waits on the review list, with the trace as its reason.
    let absent = r#"absences = [{ from = "2026-11-20", to = "2026-11-30" }]"#;
    let no_fallback = desk(absent, "capacity = 2").policy("sql_follow_up", "sql", SQL_FOLLOW_UP);
    let s = with_sla(&app.stack.syncer, no_fallback.compiled("routing-test.toml"));
    qualify(&s, 5, "cap-5", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 0);
    let review = s
        .store
        .outbox_in(OutboxKind::Promote, leadsync::store::OutboxState::Review)
        .await
        .unwrap();
    let reason = review[0].last_error.clone().unwrap_or_default();
    assert!(reason.starts_with("no owner: nobody can take the lead"), "{reason}");
    assert!(reason.contains("at capacity (2 of 2 open leads)"), "{reason}");
}

// README: "contacts of one company go to the same rep"; "a recycled contact keeps its owner"
async fn one_company_one_rep_and_a_recycled_contact_keeps_its_owner(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    let s = with_sla(&app.stack.syncer, sla("", ""));
    // Two contacts of one company in one batch, a third in a later batch: one rep.
    qualify(&s, 0, "acme", 0, t).await;
    qualify(&s, 1, "acme", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 2);
    let rep = opportunity_owner(&app, 0, 0);
    assert_eq!(opportunity_owner(&app, 1, 0), rep);
    qualify(&s, 2, "acme", 0, t).await;
    qualify(&s, 3, "other", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 2);
    assert_eq!(opportunity_owner(&app, 2, 0), rep, "the company's rep");
    let known = s.store.company_owners(&["acme".into(), "nobody".into()]).await.unwrap();
    assert_eq!(known.get("acme"), Some(&rep), "the store knows the company's rep");
    assert_eq!(known.len(), 1);
    let mut rules = Vec::new();
    for i in [1, 2] {
        rules.push(s.store.assignments(&contact(i)).await.unwrap()[0].trace.won.clone());
    }
    // In the batch, the rep drawn for the company; later, the owner of the account made for it.
    assert_eq!(rules, [Some(Strategy::CompanyOwner), Some(Strategy::AccountOwner)]);

    // Contact 3 is recycled and qualifies again: its owner is kept, though the rotation has moved.
    let first = opportunity_owner(&app, 3, 0);
    recycle(&s, 3, t).await;
    qualify(&s, 3, "other", 1, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(
        opportunity_owner(&app, 3, 1),
        first,
        "route once: the recycled lead keeps its rep"
    );
    let again = s.store.assignments(&contact(3)).await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].trace.won, Some(Strategy::KeptOwner));
}

// README: "`routing.keep_owner = false` routes a recycled lead afresh"
async fn a_recycled_contact_is_routed_afresh_when_the_mapping_says_so(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    let s = with_sla(&app.stack.syncer, sla("", ""));
    qualify(&s, 0, "again", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 0, 0), JULES);
    recycle(&s, 0, t).await;
    qualify(&s, 0, "again", 1, t).await;
    // Jules is away when the lead qualifies again; the mapping does not keep owners.
    let absent = r#"absences = [{ from = "2026-11-20", to = "2026-11-30" }]"#;
    let afresh = with_sla_keeping(&app.stack.syncer, sla(absent, ""), false);
    assert_eq!(afresh.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 0, 1), ALICE);
    let trace = &afresh.store.assignments(&contact(0)).await.unwrap()[1].trace;
    assert_eq!(trace.won, Some(Strategy::RoundRobin), "{trace}");
    assert!(
        trace
            .to_string()
            .contains(&format!("account owner {JULES}: dropped, absent until 2026-11-30")),
        "{trace}"
    );
}

// README: "the round robin's position and the caps survive a restart"
async fn a_restart_keeps_the_rotation_and_the_caps(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    let team = || sla("capacity = 1", "");
    let s = with_sla(&app.stack.syncer, team());
    qualify(&s, 0, "r0", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 0, 0), JULES, "position 0 of 3:1 is Jules");
    assert_eq!(s.store.counter("salesforce.round_robin").await.unwrap(), 1);

    // A restart: fresh clients over the same store. Position 1 is Jules's turn again, but he
    // holds his one open lead (counted from the store): the turn passes to Alice.
    let restarted = with_sla(&app.restarted_syncer().await, team());
    qualify(&restarted, 1, "r1", 0, t).await;
    assert_eq!(
        restarted.drain_outbox(Priority::Background, t).await.unwrap().promoted,
        1
    );
    assert_eq!(opportunity_owner(&app, 1, 0), ALICE);
    let trace = &restarted.store.assignments(&contact(1)).await.unwrap()[0].trace;
    assert_eq!(trace.position, (1, 3), "{trace}");
    assert!(
        trace.to_string().contains(&format!(
            "round robin {JULES}: dropped, at capacity (1 of 1 open leads)"
        )),
        "{trace}"
    );
    assert_eq!(restarted.store.counter("salesforce.round_robin").await.unwrap(), 3);
}

// README: "`leadsync explain --contact` prints why this rep"; "the audit log records each assignment"
async fn the_trace_is_stored_audited_and_shown_by_explain(backend: Backend) {
    let (app, _dir, url) = start(backend).await;
    let t = app.now();
    let s = with_sla(
        &app.stack.syncer,
        sla(r#"absences = [{ from = "2026-11-20", to = "2026-11-30" }]"#, ""),
    );
    qualify(&s, 0, "shown", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    let audit = s.store.audit(&contact(0)).await.unwrap();
    let line = audit
        .iter()
        .find(|a| a.reason == "routing: round robin")
        .unwrap_or_else(|| panic!("no routing line in {audit:?}"));
    assert!(line.change.contains(ALICE), "{}", line.change);

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["explain", "--contact", contact(0).as_str()])
        .current_dir(dir.path())
        .env("LEADSYNC__STORE__URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("stage sql"), "{text}");
    assert!(text.contains(&format!("owner: {ALICE} since")), "{text}");
    assert!(text.contains(&format!("why this rep ({ALICE},")), "{text}");
    assert!(
        text.contains("routing: round robin (round-robin position 0 → 3)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("round robin {JULES}: dropped, absent until 2026-11-30")),
        "{text}"
    );
    assert!(text.contains(&format!("round robin {ALICE}: chosen")), "{text}");

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
        .args(["explain", "--contact", "999999"])
        .current_dir(dir.path())
        .env("LEADSYNC__STORE__URL", &url)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("contact 999999 is not in the store"));
}

// README: "reassignment routes away from the owner and the reps already tried, to a rep at work now"
async fn reassignment_routes_away_from_the_owner_and_the_excluded_reps(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    let s = with_sla(&app.stack.syncer, sla("", ""));
    qualify(&s, 0, "moved", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 0, 0), JULES);
    let routed = s.route_now(&contact(0), &[], t).await.unwrap().unwrap();
    let to = routed.assignment.clone().unwrap();
    assert_eq!(
        (to.owner.as_str(), to.strategy),
        (ALICE, Strategy::RoundRobin),
        "{}",
        routed.trace
    );
    assert!(routed.trace.to_string().contains(&format!(
        "round robin {JULES}: dropped, the rep the lead is moving away from"
    )));
    // Alice already tried too: nobody is left but the fallback.
    let routed = s
        .route_now(&contact(0), &[ALICE.to_string()], t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(routed.assignment.clone().unwrap().owner, QUEUE, "{}", routed.trace);
    s.store
        .record_assignment(&contact(0), QUEUE, &routed.trace, None, t)
        .await
        .unwrap();
    let all = s.store.assignments(&contact(0)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].trace, routed.trace);
    assert!(s.route_now(&contact(19), &[], t).await.unwrap().is_none(), "not stored");
}

// README (The sales SLA): the ladder's reassignment of a promoted contact moves its Salesforce
// Contact and open Opportunity to the new rep, through the Salesforce client; a retry of the
// step (taken again, as after a crash before it was marked done) routes nothing again and
// changes nothing more.
async fn an_sla_reassignment_moves_the_salesforce_owner_once(backend: Backend) {
    let (app, _dir, _) = start(backend).await;
    let t = app.now();
    let reassigning = desk("", "").fallback(QUEUE).wall_policy(
        "sql_follow_up",
        "sql",
        &format!("{SQL_FOLLOW_UP}\nladder = [{{ step = \"reassign\", after = \"0m\" }}]"),
    );
    let s = with_sla(&app.stack.syncer, reassigning.compiled("routing-test.toml"));
    qualify(&s, 0, "moved", 0, t).await;
    assert_eq!(s.drain_outbox(Priority::Background, t).await.unwrap().promoted, 1);
    assert_eq!(opportunity_owner(&app, 0, 0), JULES);
    // Its SQL timer, untouched past the first touch.
    let policy = s.sla.policy("sql_follow_up").unwrap();
    let team = s.sla.team_for(None);
    let timer = SlaTimer {
        record: SlaRecord::start(policy, team, contact(0).as_str(), t).unwrap(),
        owner: None,
        team: Some(team.id.clone()),
        next_check_at: Some(t),
    };
    s.store.save_sla_timer(&timer, &[], t).await.unwrap();
    let due = t + Duration::hours(4);
    s.sla_sweep(due).await.unwrap();
    s.drain_outbox(Priority::Background, due).await.unwrap();
    let id = contact(0);
    let rows = s.store.contacts(std::slice::from_ref(&id)).await.unwrap();
    let sf = rows[&id].state.salesforce.clone().unwrap().contact_id.unwrap();
    let contact_owner = || {
        let all = app.stack.sandbox.salesforce_records("Contact");
        let c = all.iter().find(|c| c["Id"].as_str() == Some(sf.as_str())).unwrap();
        c["OwnerId"].as_str().unwrap().to_string()
    };
    assert_eq!(opportunity_owner(&app, 0, 0), ALICE);
    assert_eq!(contact_owner(), ALICE);
    let assigned = s.store.assignments(&contact(0)).await.unwrap();
    assert_eq!(
        assigned.iter().map(|a| a.owner.as_str()).collect::<Vec<_>>(),
        [JULES, ALICE]
    );
    let updates = || {
        app.stack
            .sandbox
            .calls()
            .get("salesforce sobject.update")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(updates(), 2, "the Contact and the Opportunity");

    let again = s
        .store
        .requeue(OutboxKind::SlaStep, OutboxState::Done, None, due)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    s.drain_outbox(Priority::Background, due + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(s.store.assignments(&contact(0)).await.unwrap().len(), 2, "routed once");
    assert_eq!(updates(), 4, "the same owner sent again, nothing else");
    assert_eq!(
        (opportunity_owner(&app, 0, 0), contact_owner()),
        (ALICE.into(), ALICE.into())
    );
}

on_both_stores!(
    a_rep_at_capacity_or_absent_is_never_chosen_and_nobody_available_goes_to_the_fallback,
    one_company_one_rep_and_a_recycled_contact_keeps_its_owner,
    a_recycled_contact_is_routed_afresh_when_the_mapping_says_so,
    a_restart_keeps_the_rotation_and_the_caps,
    the_trace_is_stored_audited_and_shown_by_explain,
    reassignment_routes_away_from_the_owner_and_the_excluded_reps,
    an_sla_reassignment_moves_the_salesforce_owner_once,
);
