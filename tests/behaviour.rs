//! Behaviour beyond the contact record reaches the engine through the product's own path: every
//! form submission in the backfill, in the incremental cycle and after a webhook, read only when
//! the contact's counters say the record cannot tell it all.

use chrono::Duration;
use leadsync::lifecycle::{EventKind, HubSpotId};
use leadsync::sandbox::portal::CONTACT_ID_BASE;
use leadsync::sync::backfill::BackfillOptions;

use crate::support::{TestApp, hubspot_event, postgres_url};

fn id(s: &str) -> HubSpotId {
    HubSpotId::try_from(s.to_string()).unwrap()
}

/// Form submissions in the ledger of one contact, as (time ms, form).
async fn forms_in_ledger(app: &TestApp, contact: &str) -> Vec<(i64, String)> {
    let ledger = app.stack.syncer.store.events(&[id(contact)]).await.unwrap();
    let mut out: Vec<(i64, String)> = ledger
        .get(&id(contact))
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.kind == EventKind::FormSubmission)
        .map(|e| (e.at.timestamp_millis(), e.form.clone().unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// The form submissions the sandbox's portal made for contact `i`, as (time ms, form), each once.
fn portal_submissions(portal: &leadsync::sandbox::portal::Portal, i: u32) -> Vec<(i64, String)> {
    let mut want: Vec<(i64, String)> = portal
        .activity(i)
        .submissions
        .iter()
        .map(|(f, at)| (*at, portal.forms[*f].name.to_string()))
        .collect();
    want.sort();
    want.dedup();
    want
}

fn calls(app: &TestApp, endpoint: &str) -> u64 {
    app.stack
        .sandbox
        .calls()
        .get(&format!("hubspot {endpoint}"))
        .copied()
        .unwrap_or(0)
}

// README: "Every form submission a contact made becomes one engine event … in the backfill"
// and the Figures line on the backfill's extra calls for forms.
#[tokio::test]
async fn a_backfill_reads_every_form_once_and_each_submission_becomes_one_event() {
    for store_url in [None, Some(postgres_url().await)] {
        let backend = if store_url.is_some() { "postgres" } else { "sqlite" };
        let app = TestApp::start_with(300, store_url).await;
        let now = app.now();
        let s = &app.stack.syncer;
        app.stack.sandbox.reset_calls();
        s.backfill(&BackfillOptions::default(), now, |_, _| {}).await.unwrap();

        let portal = app.stack.sandbox.portal();
        assert_eq!(calls(&app, "forms.list"), 1, "{backend}: the forms are listed once");
        assert_eq!(
            calls(&app, "events.list") + calls(&app, "email_events.list"),
            0,
            "{backend}: without the event APIs configured, the counters serve"
        );
        // Each form's submissions read once, 50 a page (the API's largest): the minimum.
        let mut per_form = vec![0u64; portal.forms.len()];
        for i in 0..portal.contacts {
            for (f, _) in portal.activity(i).submissions {
                per_form[f] += 1;
            }
        }
        let pages: u64 = per_form.iter().map(|n| n.div_ceil(50).max(1)).sum();
        let submissions: u64 = per_form.iter().sum();
        assert_eq!(calls(&app, "forms.submissions"), pages, "{backend}: {per_form:?}");
        eprintln!(
            "forms in a backfill of {} contacts ({submissions} submissions, {} forms): {} calls, {:.1} per 1,000 contacts",
            portal.contacts,
            portal.forms.len(),
            pages + 1,
            (pages + 1) as f64 * 1000.0 / f64::from(portal.contacts)
        );

        // Every contact has each of its submissions exactly once, with its form: two forms of
        // the same millisecond are two events, and the same form is never twice.
        let mut several = 0;
        for i in 0..portal.contacts {
            let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
            let got = forms_in_ledger(&app, &cid).await;
            let want = portal_submissions(portal, i);
            assert_eq!(got, want, "{backend}: contact {cid}: one event per submission");
            if want.len() >= 2 {
                several += 1;
            }
        }
        assert!(several > 0, "{backend}: the portal has contacts with several forms");
        // Staged submissions are gone once the backfill is done.
        assert!(s.store.cursor("backfill").await.unwrap().is_none(), "{backend}");
        app.stack.shutdown().await.unwrap();
    }
}

/// A contact stored by a backfill, with its email, and how many forms its ledger holds.
async fn a_backfilled_contact(app: &TestApp) -> (String, usize) {
    let portal = app.stack.sandbox.portal();
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let i = (0..portal.contacts)
        .find(|i| portal.contact(*i).properties.contains_key("email"))
        .expect("a contact with an email");
    let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
    let before = forms_in_ledger(app, &cid).await.len();
    assert_eq!(before, portal.activity(i).submissions.len());
    (cid, before)
}

// README: "a contact who submits two forms between two cycles has both in the engine; one new
// form costs no forms call".
#[tokio::test]
async fn a_cycle_reads_the_forms_listing_only_when_the_record_cannot_tell_every_new_submission() {
    let app = TestApp::start(200).await;
    let s = &app.stack.syncer;
    let (cid, before) = a_backfilled_contact(&app).await;

    // One new submission: the contact's conversion properties describe it; no listing read.
    app.stack.sandbox.advance(Duration::minutes(1));
    app.stack
        .sandbox
        .submit_form(&cid, "Ebook: The RevOps playbook")
        .unwrap();
    app.stack.sandbox.reset_calls();
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    assert_eq!(calls(&app, "forms.submissions"), 0, "{:?}", app.stack.sandbox.calls());
    let one = forms_in_ledger(&app, &cid).await;
    assert_eq!(one.len(), before + 1, "{one:?}");

    // Three more before the next cycle: only the latest is on the record; the listing brings the
    // other two, and the one already counted is not counted again.
    for form in [
        "Webinar replay: Funnel metrics",
        "Ebook: The RevOps playbook",
        "Request a demo",
    ] {
        app.stack.sandbox.advance(Duration::minutes(1));
        app.stack.sandbox.submit_form(&cid, form).unwrap();
    }
    app.stack.sandbox.reset_calls();
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    assert_eq!(
        calls(&app, "forms.list"),
        1,
        "the listing was read: {:?}",
        app.stack.sandbox.calls()
    );
    let forms_calls = calls(&app, "forms.list") + calls(&app, "forms.submissions");
    let forms = app.stack.sandbox.portal().forms.len() as u64;
    assert!(
        forms_calls <= 1 + forms + 1,
        "the forms list, then each form back to the earliest needed time: {forms_calls}"
    );
    let all = forms_in_ledger(&app, &cid).await;
    assert_eq!(all.len(), before + 4, "every submission once: {all:?}");
    let names: Vec<&str> = all[all.len() - 4..].iter().map(|(_, f)| f.as_str()).collect();
    assert!(
        names.iter().filter(|n| n.contains("Ebook")).count() == 2 && names.iter().any(|n| n.contains("Webinar")),
        "{names:?}"
    );
    app.stack.shutdown().await.unwrap();
}

// README: "… and after a webhook".
#[tokio::test]
async fn forms_submitted_between_two_webhook_passes_all_reach_the_engine() {
    let app = TestApp::start(200).await;
    let (cid, before) = a_backfilled_contact(&app).await;
    app.stack.sandbox.reset_calls();
    for form in ["Ebook: The RevOps playbook", "Webinar replay: Funnel metrics"] {
        app.stack.sandbox.advance(Duration::minutes(1));
        app.stack.sandbox.submit_form(&cid, form).unwrap();
    }
    // HubSpot's delivery: the conversion count changed (a property subscription).
    let t = app.stack.sandbox.now().timestamp_millis();
    let n = app.stack.sandbox.hubspot_contact(&cid).unwrap()["num_conversion_events"].clone();
    let event = hubspot_event(
        "contact.propertyChange",
        cid.parse().unwrap(),
        Some(("num_conversion_events", &n)),
        t,
    );
    let body = serde_json::to_string(&[event]).unwrap();
    assert_eq!(app.post_signed_webhook(&body).await, 200);
    assert_eq!(
        calls(&app, "contacts.search"),
        0,
        "no cycle ran: this is the webhook path"
    );
    app.run_inbox_until_idle().await;
    let got = forms_in_ledger(&app, &cid).await;
    assert_eq!(got.len(), before + 2, "both submissions, once each: {got:?}");
    app.stack.shutdown().await.unwrap();
}

// README Figures: "per 100 new submissions, a cycle spends …" on the forms listing.
#[tokio::test]
async fn a_hundred_new_submissions_cost_a_cycle_the_forms_list_and_a_page_per_fifty() {
    let app = TestApp::start(300).await;
    let s = &app.stack.syncer;
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let portal = app.stack.sandbox.portal();
    let people: Vec<String> = (0..portal.contacts)
        .filter(|i| portal.contact(*i).properties.contains_key("email"))
        .take(50)
        .map(|i| (u64::from(i) + CONTACT_ID_BASE).to_string())
        .collect();
    let mut before = 0;
    for p in &people {
        before += forms_in_ledger(&app, p).await.len();
    }
    for form in ["Ebook: The RevOps playbook", "Webinar replay: Funnel metrics"] {
        app.stack.sandbox.advance(Duration::minutes(1));
        for p in &people {
            app.stack.sandbox.submit_form(p, form).unwrap();
        }
    }
    app.stack.sandbox.reset_calls();
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    let mut after = 0;
    for p in &people {
        after += forms_in_ledger(&app, p).await.len();
    }
    assert_eq!(after, before + 100, "every new submission once");
    let spent = calls(&app, "forms.list") + calls(&app, "forms.submissions");
    let forms = portal.forms.len() as u64;
    eprintln!("forms for 100 new submissions in one cycle: {spent} calls ({forms} forms)");
    // The list, one page per form, and one more page per 50 new submissions of a form.
    assert!(spent <= 1 + forms + 2, "{spent}");
    app.stack.shutdown().await.unwrap();
}

fn events_of(ledger: &[leadsync::lifecycle::Event], kind: EventKind) -> Vec<&leadsync::lifecycle::Event> {
    ledger.iter().filter(|e| e.kind == kind).collect()
}

// README: "On a portal with the event analytics and email events APIs, page views and email
// opens and clicks are read event by event, per contact, only where the counter rose."
#[tokio::test]
async fn with_the_event_apis_page_views_and_email_events_are_read_event_by_event_where_the_counters_rose() {
    let app = TestApp::start(120).await;
    let s = app
        .stack
        .syncer
        .clone()
        .with_sources(leadsync::sync::behaviour::BehaviourSources {
            event_analytics: true,
            email_events: true,
        });
    app.stack.sandbox.reset_calls();
    s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap();
    let portal = app.stack.sandbox.portal();
    let viewed = (0..portal.contacts).filter(|i| portal.activity(*i).views > 0).count() as u64;
    assert!(viewed > 0);
    assert!(
        calls(&app, "events.list") >= viewed,
        "one read (at least) per contact with page views: {:?}",
        app.stack.sandbox.calls()
    );
    assert!(calls(&app, "email_events.list") > 0);

    // Each contact's page views are the API's events, one per counted view, none from the counter.
    let i = (0..portal.contacts)
        .find(|i| {
            let a = portal.activity(*i);
            a.views > 0 && a.views < 20 && a.opens > 0 && portal.contact(*i).properties.contains_key("email")
        })
        .expect("a contact with a few views and opens");
    let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
    let ledger = s.store.events(&[id(&cid)]).await.unwrap().remove(&id(&cid)).unwrap();
    let views = events_of(&ledger, EventKind::PageView);
    assert_eq!(views.len() as u64, portal.activity(i).views, "{views:?}");
    assert!(views.iter().all(|e| e.id.starts_with("hs-event-")), "{views:?}");
    let opens = events_of(&ledger, EventKind::EmailOpen);
    assert_eq!(opens.len() as u64, portal.activity(i).opens);
    assert!(opens.iter().all(|e| e.id.starts_with("hs-email-event-")), "{opens:?}");

    // A cycle: only the contact who behaved is read, and only its new events are added.
    app.stack.sandbox.advance(Duration::minutes(1));
    assert!(app.stack.sandbox.touch(&cid, 2));
    app.stack.sandbox.reset_calls();
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    assert_eq!(calls(&app, "events.list"), 1, "{:?}", app.stack.sandbox.calls());
    assert_eq!(calls(&app, "email_events.list"), 1, "{:?}", app.stack.sandbox.calls());
    let ledger = s.store.events(&[id(&cid)]).await.unwrap().remove(&id(&cid)).unwrap();
    assert_eq!(
        events_of(&ledger, EventKind::PageView).len(),
        views.len() + 2,
        "two new page views, the old ones once"
    );
    app.stack.shutdown().await.unwrap();
}

/// A contact of the portal with two different forms submitted in the same millisecond.
fn same_millisecond_contact(portal: &leadsync::sandbox::portal::Portal) -> Option<(u32, i64, Vec<usize>)> {
    (0..portal.contacts).find_map(|i| {
        let s = portal.activity(i).submissions;
        s.iter().find_map(|(f, at)| {
            let mut forms: Vec<usize> = s.iter().filter(|(_, t)| t == at).map(|(g, _)| *g).collect();
            forms.sort();
            forms.dedup();
            (forms.len() >= 2 && forms.contains(f)).then_some((i, *at, forms))
        })
    })
}

// README Reliability: "two forms submitted in the same millisecond are two events, whatever
// order they are read in" (issue 13: a backfill killed on PostgreSQL ended at other stages).
#[tokio::test]
async fn two_forms_of_the_same_millisecond_are_both_counted_whatever_order_the_store_returns() {
    for store_url in [None, Some(postgres_url().await)] {
        let backend = if store_url.is_some() { "postgres" } else { "sqlite" };
        let app = TestApp::start_with(300, store_url).await;
        let portal = app.stack.sandbox.portal();
        let (i, at, forms) = same_millisecond_contact(portal).expect("the portal has such a contact");
        let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
        let s = &app.stack.syncer;

        // The store hands staged rows back in one order, whatever order they were filed in.
        let ev = |f: usize| leadsync::lifecycle::Event {
            id: format!("hs-form-{}-{at}", portal.forms[f].guid),
            kind: EventKind::FormSubmission,
            at: chrono::DateTime::from_timestamp_millis(at).unwrap(),
            url: None,
            form: Some(portal.forms[f].name.to_string()),
            campaign: None,
            direction: None,
            outcome: None,
            owner: None,
        };
        let (a, b) = (ev(forms[0]), ev(forms[1]));
        let ids = |m: std::collections::HashMap<String, Vec<leadsync::lifecycle::Event>>, k: &str| -> Vec<String> {
            m[k].iter().map(|e| e.id.clone()).collect()
        };
        s.store
            .stage(&[("k1".into(), b.clone()), ("k1".into(), a.clone())])
            .await
            .unwrap();
        s.store
            .stage(&[("k2".into(), a.clone()), ("k2".into(), b.clone())])
            .await
            .unwrap();
        let got = s.store.staged(&["k1".into(), "k2".into()]).await.unwrap();
        assert_eq!(ids(got.clone(), "k1"), ids(got, "k2"), "{backend}: filing order shows");
        s.store.clear_staged().await.unwrap();

        // Both submissions reach the ledger and the engine.
        s.backfill(&BackfillOptions::default(), app.now(), |_, _| {})
            .await
            .unwrap();
        let got = forms_in_ledger(&app, &cid).await;
        for f in &forms {
            let want = (at, portal.forms[*f].name.to_string());
            assert!(got.contains(&want), "{backend}: contact {cid} lacks {want:?}: {got:?}");
        }
        app.stack.shutdown().await.unwrap();
    }
}

// README Reliability: "… and a submission read both from the forms API and from the contact's
// conversion properties counts once".
#[test]
fn the_conversion_properties_and_the_forms_api_name_one_submission_once_in_either_order() {
    use leadsync::hubspot::behaviour::same_submission;
    let at = chrono::DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
    let form = |id: &str, name: &str| leadsync::lifecycle::Event {
        id: id.to_string(),
        kind: EventKind::FormSubmission,
        at,
        url: None,
        form: Some(name.to_string()),
        campaign: None,
        direction: None,
        outcome: None,
        owner: None,
    };
    let demo = form("hs-form-g0-1764000000000", "Request a demo");
    let ebook = form("hs-form-g2-1764000000000", "Ebook: The RevOps playbook");
    let conversion = form("hs-conversion-1001-2", "Resources: Ebook: The RevOps playbook");
    assert!(same_submission(&conversion, &ebook) && same_submission(&ebook, &conversion));
    assert!(!same_submission(&conversion, &demo) && !same_submission(&demo, &conversion));
    assert!(
        !same_submission(&demo, &ebook),
        "two forms of one millisecond are two submissions"
    );
    let later = leadsync::lifecycle::Event {
        at: at + Duration::milliseconds(1),
        ..ebook.clone()
    };
    assert!(!same_submission(&conversion, &later));
}

// README Reliability: "the same form submitted twice is two events, read one cycle at a time or
// both at once; `leadsync_reason` tells the last stage change, so a second demo request that
// changes no stage leaves it as it was".
#[tokio::test]
async fn the_same_form_submitted_twice_is_two_events_in_the_ledger_whichever_way_it_is_read() {
    let app = TestApp::start(200).await;
    let s = &app.stack.syncer;
    let (cid, before) = a_backfilled_contact(&app).await;
    let demos = async |app: &TestApp| {
        forms_in_ledger(app, &cid)
            .await
            .into_iter()
            .filter(|(_, f)| f.contains("Request a demo"))
            .count()
    };
    let already = demos(&app).await;

    // One at a time: each cycle sees one new submission on the record (no listing read).
    for n in 1..=2 {
        app.stack.sandbox.advance(Duration::minutes(1));
        app.stack.sandbox.submit_form(&cid, "Request a demo").unwrap();
        s.incremental(app.now(), Duration::days(1)).await.unwrap();
        assert_eq!(demos(&app).await, already + n, "after submission {n}");
    }
    let reason = |app: &TestApp| {
        app.stack
            .sandbox
            .hubspot_contact(&cid)
            .unwrap()
            .get("leadsync_reason")
            .cloned()
    };
    let after_two = reason(&app);

    // Two more before one cycle: the listing brings both.
    for _ in 0..2 {
        app.stack.sandbox.advance(Duration::minutes(1));
        app.stack.sandbox.submit_form(&cid, "Request a demo").unwrap();
    }
    s.incremental(app.now(), Duration::days(1)).await.unwrap();
    assert_eq!(demos(&app).await, already + 4);
    assert_eq!(forms_in_ledger(&app, &cid).await.len(), before + 4);
    let stored = s.store.contacts(&[id(&cid)]).await.unwrap()[&id(&cid)].clone();
    assert!(
        stored.state.stage >= Some(leadsync::lifecycle::Stage::Sql),
        "{:?}",
        stored.state.stage
    );
    // No stage changed with the last two: the reason still tells the last change.
    assert_eq!(reason(&app), after_two);
    app.stack.shutdown().await.unwrap();
}

// README (Figures, backfill wall time): "the contacts' first blocks are listed and read while
// the last forms are filed, and none is committed before every form is".
#[tokio::test]
async fn a_backfill_lists_contacts_while_its_last_form_is_filed_and_commits_none_before() {
    let mut config = TestApp::sandbox_config(2_000);
    // Each call takes 30 ms: a form's pages follow one another, so its last ones take longer
    // than a block of 100 contacts takes to be listed and read.
    config.latency = std::time::Duration::from_millis(30);
    let app = TestApp::start_configured(config, None).await;
    let s = &app.stack.syncer;
    app.stack.sandbox.reset_calls();
    let opts = BackfillOptions {
        block: Some(100),
        ..BackfillOptions::default()
    };
    s.backfill(&opts, app.now(), |_, _| {}).await.unwrap();

    let arrivals = app.stack.sandbox.arrivals();
    let at = |endpoint: &str| -> Vec<usize> {
        let name = format!("hubspot {endpoint}");
        arrivals
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| *e == name)
            .map(|(i, _)| i)
            .collect()
    };
    let (lists, pages) = (at("contacts.list"), at("forms.submissions"));
    assert!(!lists.is_empty() && !pages.is_empty(), "{arrivals:?}");
    assert!(
        lists[0] < *pages.last().unwrap(),
        "the first contacts page is listed while a form is still filed: {arrivals:?}"
    );
    // While the forms are filed, six blocks (of one page each here) may be listed, not the
    // three in flight otherwise.
    let early = lists.iter().filter(|i| *i < pages.last().unwrap()).count();
    eprintln!(
        "contact pages listed before the last form page: {early}; form pages after the first contacts page: {}",
        pages.iter().filter(|i| **i > lists[0]).count()
    );
    assert!(early > 3, "{early} blocks listed while filing: {arrivals:?}");
    // No block was committed (its contacts written back) before every form was filed, and
    // every submission is in its contact's ledger.
    let writes = at("contacts.batch_update");
    assert!(
        writes[0] > *pages.last().unwrap(),
        "a contact was written back before the last form page: {arrivals:?}"
    );
    let portal = app.stack.sandbox.portal();
    for i in 0..portal.contacts {
        let cid = (u64::from(i) + CONTACT_ID_BASE).to_string();
        assert_eq!(
            forms_in_ledger(&app, &cid).await,
            portal_submissions(portal, i),
            "contact {cid}"
        );
    }
    app.stack.shutdown().await.unwrap();
}
