//! The webhook server: what it accepts into the inbox and what it refuses, with HTTP statuses.

use chrono::Utc;
use serde_json::json;

use crate::support::{TestServer, hubspot_event};

fn delivery(events: &[serde_json::Value]) -> String {
    serde_json::Value::Array(events.to_vec()).to_string()
}

#[tokio::test]
async fn a_signed_delivery_is_kept_in_the_inbox_before_the_200_and_redeliveries_add_nothing() {
    let app = TestServer::start(None, 1024 * 1024).await;
    let t = Utc::now().timestamp_millis();
    let body = delivery(&[
        hubspot_event("contact.creation", 501, None, t),
        hubspot_event(
            "contact.propertyChange",
            501,
            Some(("recent_conversion_event_name", "Request a demo")),
            t,
        ),
    ]);
    assert_eq!(app.post_signed_webhook(&body).await, 200);
    assert_eq!(
        app.store.inbox_depth().await.unwrap().0,
        2,
        "kept before the acknowledgement"
    );
    // HubSpot delivers again (a retry, or the same event under a new eventId): nothing new.
    let again = body.replace("\"eventId\":601", "\"eventId\":999");
    assert_eq!(app.post_signed_webhook(&body).await, 200);
    assert_eq!(app.post_signed_webhook(&again).await, 200);
    assert_eq!(app.store.inbox_total().await.unwrap(), 2);
}

#[tokio::test]
async fn forged_stale_oversized_and_malformed_deliveries_are_refused_and_leave_no_trace() {
    let app = TestServer::start(None, 4096).await;
    let uri = app.url("/webhooks/hubspot");
    let now = Utc::now().timestamp_millis();
    let body = delivery(&[hubspot_event("contact.creation", 7, None, now)]);

    // Forged: signed with another secret.
    let ts = now.to_string();
    let forged = leadsync::hubspot::signature::sign_v3(
        &secrecy::SecretString::from("not-the-secret"),
        "POST",
        &uri,
        body.as_bytes(),
        &ts,
    );
    let status = app
        .http
        .post(&uri)
        .header("x-hubspot-request-timestamp", &ts)
        .header("x-hubspot-signature-v3", forged)
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "forged");
    // Missing signature.
    let status = app.http.post(&uri).body(body.clone()).send().await.unwrap().status();
    assert_eq!(status, 401, "unsigned");
    // Stale: a correct signature, six minutes old.
    assert_eq!(app.post_signed_at(&body, &uri, now - 6 * 60 * 1000).await, 401, "stale");
    // Oversized: over the configured limit.
    let big = delivery(&vec![hubspot_event("contact.creation", 7, None, now); 200]);
    assert!(big.len() > 4096);
    assert_eq!(app.post_signed_webhook(&big).await, 413, "oversized");
    // Malformed: signed, but not HubSpot's JSON.
    assert_eq!(
        app.post_signed_webhook("{\"not\": \"an array\"}").await,
        400,
        "malformed"
    );

    assert_eq!(
        app.store.inbox_total().await.unwrap(),
        0,
        "nothing refused reaches the inbox"
    );
}

#[tokio::test]
async fn a_delivery_signed_for_the_public_url_behind_a_proxy_verifies() {
    let public = "https://leadsync.example.com";
    let app = TestServer::start(Some(public), 1024 * 1024).await;
    let body = delivery(&[hubspot_event(
        "contact.creation",
        9,
        None,
        Utc::now().timestamp_millis(),
    )]);
    let now = Utc::now().timestamp_millis();
    // HubSpot signed the URL it called, the proxy's, not ours.
    assert_eq!(
        app.post_signed_at(&body, "https://leadsync.example.com/webhooks/hubspot", now)
            .await,
        200
    );
    assert_eq!(app.post_signed_at(&body, &app.url("/webhooks/hubspot"), now).await, 401);
}

#[tokio::test]
async fn the_store_down_answers_503_so_hubspot_delivers_again() {
    let (store, dir) = crate::support::sqlite().await;
    let app = TestServer::start_with(store.clone(), dir, None, 1024 * 1024).await;
    store.close().await;
    let body = delivery(&[hubspot_event(
        "contact.creation",
        3,
        None,
        Utc::now().timestamp_millis(),
    )]);
    assert_eq!(app.post_signed_webhook(&body).await, 503);
}

#[tokio::test]
async fn workflow_webhooks_are_verified_with_the_v2_signature() {
    let app = TestServer::start(None, 1024 * 1024).await;
    let uri = app.url("/webhooks/hubspot/workflow");
    let body = json!({"objectId": 1201, "properties": {"email": {"value": "x@example.com"}}}).to_string();
    let sig = leadsync::hubspot::signature::sign_v2(
        &secrecy::SecretString::from(crate::support::SECRET),
        "POST",
        &uri,
        body.as_bytes(),
    );
    let send = |sig: String| {
        app.http
            .post(&uri)
            .header("x-hubspot-signature", sig)
            .header("x-hubspot-signature-version", "v2")
            .body(body.clone())
            .send()
    };
    assert_eq!(send("00".repeat(32)).await.unwrap().status(), 401);
    assert_eq!(send(sig).await.unwrap().status(), 200);
    let pending = app.store.inbox_pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].contact_id.as_str(), pending[0].subscription.as_str()),
        ("1201", "workflow")
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestServer::start(None, 1024 * 1024).await;
    let get = |p: &str| app.http.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let body = delivery(&[hubspot_event(
        "contact.creation",
        11,
        None,
        Utc::now().timestamp_millis(),
    )]);
    assert_eq!(app.post_signed_webhook(&body).await, 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("leadsync_inbox_depth 1"), "{metrics}");
}
