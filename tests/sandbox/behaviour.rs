//! The behaviour APIs as HubSpot serves them: forms, per-form submissions, page views (event
//! analytics) and email events, with their paging, limits and per-tier availability.

use chrono::{DateTime, Utc};
use leadsync::sandbox::{HubSpotTier, SandboxConfig};
use serde_json::Value;

use super::{BG, client, hs, sandbox};

/// Index of a contact with at least `min` page views.
fn busy_contact(sb: &leadsync::sandbox::SandboxHandle, min: u64) -> u32 {
    (0..sb.portal().contacts)
        .find(|&i| sb.portal().activity(i).views >= min)
        .expect("a contact that browsed a lot")
}

/// Every page of `GET p` by the `after` cursor: (results, pages).
async fn all_pages(sb: &leadsync::sandbox::SandboxHandle, p: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &after {
            Some(a) => format!("{p}&after={a}"),
            None => p.to_string(),
        };
        let (status, _, body) = hs(sb, "GET", &url, None).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages += 1;
        out.extend(body["results"].as_array().unwrap().iter().cloned());
        after = body["paging"]["next"]["after"].as_str().map(str::to_string);
        if after.is_none() {
            return (out, pages);
        }
    }
}

fn at(v: &Value) -> DateTime<Utc> {
    v["occurredAt"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn page_views_are_one_event_per_counted_view_newest_first_paged_and_deterministic() {
    let sb = sandbox(SandboxConfig::default()).await;
    let index = busy_contact(&sb, 30);
    let id = 1001 + u64::from(index);
    let views: usize = sb.hubspot_contact(&id.to_string()).unwrap()["hs_analytics_num_page_views"]
        .parse()
        .unwrap();
    let p = format!("/events/v3/events?objectType=contact&objectId={id}&eventType=e_visited_page&limit=10");
    let (events, pages) = all_pages(&sb, &p).await;
    assert_eq!(events.len(), views, "one event per view the counter shows");
    assert_eq!(pages, views.div_ceil(10));
    assert!(events.windows(2).all(|w| at(&w[0]) >= at(&w[1])), "newest first");
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), views, "ids are unique");
    let last = sb.hubspot_contact(&id.to_string()).unwrap()["hs_analytics_last_visit_timestamp"].clone();
    assert_eq!(
        at(&events[0]),
        last.parse::<DateTime<Utc>>().unwrap(),
        "the newest is the last visit"
    );
    assert!(events.iter().all(|e| e["eventType"] == "e_visited_page"
        && e["objectId"] == id.to_string().as_str()
        && e["properties"]["hs_url"].as_str().unwrap().starts_with("https://")));

    // occurredAfter bounds it; another sandbox of the same seed serves the same events.
    let cut = at(&events[views / 2]);
    let after = format!(
        "{p}&occurredAfter={}",
        cut.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let (later, _) = all_pages(&sb, &after).await;
    assert!(!later.is_empty() && later.iter().all(|e| at(e) > cut));
    let twin = sandbox(SandboxConfig::default()).await;
    assert_eq!(all_pages(&twin, &p).await.0, events);
    assert_eq!(
        sb.calls()["hubspot events.list"],
        (pages + later.len().div_ceil(10)) as u64
    );

    // A simulated visit adds its views.
    assert!(sb.touch(&id.to_string(), 3));
    assert_eq!(all_pages(&sb, &p).await.0.len(), views + 3);

    // Limits are HubSpot's.
    let (status, _, body) = hs(
        &sb,
        "GET",
        &format!("/events/v3/events?objectType=contact&objectId={id}&limit=1001"),
        None,
    )
    .await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, _, body) = hs(
        &sb,
        "GET",
        "/events/v3/events?objectType=contact&occurredAfter=yesterday",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("occurredAfter"), "{body}");
}

#[tokio::test]
async fn email_events_are_the_counted_opens_and_clicks_paged_by_offset() {
    let sb = sandbox(SandboxConfig::default()).await;
    let index = (0..sb.portal().contacts)
        .find(|&i| sb.portal().activity(i).opens >= 8 && sb.portal().activity(i).clicks >= 2)
        .unwrap();
    let props = sb.hubspot_contact(&(1001 + u64::from(index)).to_string()).unwrap();
    let (opens, clicks): (usize, usize) = (
        props["hs_email_open"].parse().unwrap(),
        props["hs_email_click"].parse().unwrap(),
    );
    let email = url::form_urlencoded::byte_serialize(props["email"].as_bytes()).collect::<String>();
    let mut events = Vec::new();
    let mut offset: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut p = format!("/email/public/v1/events?recipient={email}&startTimestamp=0&limit=3");
        if let Some(o) = &offset {
            p.push_str(&format!("&offset={o}"));
        }
        let (status, _, body) = hs(&sb, "GET", &p, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        events.extend(body["events"].as_array().unwrap().iter().cloned());
        if body["hasMore"] != true {
            assert!(body["offset"].is_null());
            break;
        }
        offset = body["offset"].as_str().map(str::to_string);
    }
    assert_eq!(pages, (opens + clicks).div_ceil(3));
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!((count("OPEN"), count("CLICK")), (opens, clicks));
    let created: Vec<i64> = events.iter().map(|e| e["created"].as_i64().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        events
            .iter()
            .all(|e| e["recipient"] == props["email"].as_str() && e["id"].is_string())
    );
    assert!(
        events
            .iter()
            .filter(|e| e["type"] == "CLICK")
            .all(|e| e["url"].is_string())
    );
    assert_eq!(sb.calls()["hubspot email_events.list"], pages as u64);
}

#[tokio::test]
async fn below_enterprise_the_event_apis_answer_403_missing_scopes_and_forms_still_work() {
    for tier in [HubSpotTier::Starter, HubSpotTier::Professional] {
        let sb = sandbox(SandboxConfig {
            hubspot_tier: tier,
            ..SandboxConfig::default()
        })
        .await;
        for p in [
            "/events/v3/events?objectType=contact&objectId=1001&eventType=e_visited_page",
            "/email/public/v1/events?recipient=a%40b.example",
        ] {
            let (status, _, body) = hs(&sb, "GET", p, None).await;
            assert_eq!(
                (status, body["category"].as_str()),
                (403, Some("MISSING_SCOPES")),
                "{tier:?} {p}"
            );
            assert!(body["errors"][0]["context"]["requiredScopes"][0].is_string());
            assert!(body["message"].as_str().unwrap().contains(tier.as_str()));
        }
        assert_eq!(sb.calls()["hubspot events.list"], 1, "refused calls are counted");
        assert_eq!(sb.calls()["hubspot email_events.list"], 1);
        let client = client(&sb, false);
        assert_eq!(client.forms(BG).await.unwrap().len(), sb.portal().forms.len());
    }
}

#[tokio::test]
async fn leadsyncs_behaviour_client_reads_page_views_and_email_events_from_the_sandbox() {
    let sb = sandbox(SandboxConfig::default()).await;
    let client = client(&sb, false);
    let index = busy_contact(&sb, 120); // more than one page of the client's 100
    let id = (1001 + u64::from(index)).to_string();
    let props = sb.hubspot_contact(&id).unwrap();
    let since = DateTime::<Utc>::from_timestamp_millis(0).unwrap();
    let views = client.page_views(&id, since, BG).await.unwrap();
    assert_eq!(views.len().to_string(), props["hs_analytics_num_page_views"]);
    assert!(views.iter().all(|e| e.url.is_some()));
    let email = client.email_events(&props["email"], since, BG).await.unwrap();
    let opens: usize = props["hs_email_open"].parse().unwrap();
    let clicks: usize = props["hs_email_click"].parse().unwrap();
    assert_eq!(email.len(), opens + clicks);
    assert!(sb.calls()["hubspot events.list"] >= 2, "paged");
}

#[tokio::test]
async fn forms_page_by_after_and_submissions_newest_first_at_most_50_a_page() {
    let sb = sandbox(SandboxConfig {
        contacts: 600,
        ..SandboxConfig::default()
    })
    .await;
    let (forms, pages) = all_pages(&sb, "/marketing/v3/forms?limit=3").await;
    assert_eq!(
        (forms.len(), pages),
        (sb.portal().forms.len(), sb.portal().forms.len().div_ceil(3))
    );
    let (status, _, _) = hs(&sb, "GET", "/marketing/v3/forms?limit=101", None).await;
    assert_eq!(status, 400);
    let ebook = forms
        .iter()
        .find(|f| f["name"].as_str().unwrap().starts_with("Ebook"))
        .unwrap();
    let guid = ebook["id"].as_str().unwrap();
    let p = format!("/form-integrations/v1/submissions/forms/{guid}?limit=80");
    let (status, _, body) = hs(&sb, "GET", &p, None).await;
    assert_eq!(status, 200);
    let page = body["results"].as_array().unwrap();
    assert_eq!(page.len(), 50, "limit is at most 50");
    let times: Vec<i64> = page.iter().map(|s| s["submittedAt"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        page.iter()
            .all(|s| s["values"].as_array().unwrap().iter().any(|v| v["name"] == "email") && s["pageUrl"].is_string())
    );
    assert!(body["paging"]["next"]["after"].is_string());
}
