//! Corrupt state and lost input become named errors: transport failures, a body cut off on a
//! 2xx, inbox events that cannot be processed, corrupt checkpoints and `sending` payloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use leadsync::hubspot::auth::HubSpotAuth;
use leadsync::hubspot::client::{HubSpotClient, HubSpotClientConfig, HubSpotError};
use leadsync::hubspot::limiter::Priority;
use leadsync::hubspot::retry::RetryPolicy;
use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bare HTTP/1.1 server on loopback answering the n-th connection with `answers[n]` (the last
/// one again past the end), raw bytes, then closing: it can send what wiremock cannot, a body
/// shorter than its Content-Length. Returns its base URL and how many requests it took.
async fn raw_server(answers: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The request head, then its body by Content-Length.
                loop {
                    let Ok(k) = sock.read(&mut buf).await else { return };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = sock.write_all(&answer).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, served)
}

/// A 200 promising more body than it sends.
fn cut_off(json: &str) -> Vec<u8> {
    let half = &json[..json.len() / 2];
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{half}",
        json.len()
    )
    .into_bytes()
}

fn whole(json: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
}

fn hubspot(url: &str) -> HubSpotClient {
    crate::support::hubspot_client(url)
}

#[tokio::test(start_paused = true)]
async fn hubspot_a_2xx_body_cut_off_is_retried_never_read_as_empty() {
    let page = json!({"results": [{"id": "7", "properties": {"email": null}}]}).to_string();
    let (url, served) = raw_server(vec![cut_off(&page), whole(&page)]).await;
    let client = hubspot(&url);
    let page = client
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap();
    assert_eq!(page.results.len(), 1);
    assert_eq!(page.results[0].id, "7");
    assert_eq!((served.load(Ordering::SeqCst), client.stats().retries()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn hubspot_a_body_cut_off_every_time_fails_with_a_named_transport_error() {
    let page = json!({"results": []}).to_string();
    let (url, served) = raw_server(vec![cut_off(&page)]).await;
    let client = hubspot(&url);
    let err = client
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap_err();
    assert!(matches!(err, HubSpotError::Api { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("HTTP 200 body could not be read after 6 attempts"),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn hubspot_a_refused_connection_is_named_not_a_status_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = hubspot(&format!("http://127.0.0.1:{port}"));
    let err = client
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("connection failed after 6 attempts; is the base URL right"),
        "{text}"
    );
    assert_eq!(client.stats().retries(), 5);
}

#[tokio::test(start_paused = true)]
async fn salesforce_a_2xx_body_cut_off_is_retried_never_read_as_empty() {
    use leadsync::salesforce::auth::SalesforceAuth;
    use leadsync::salesforce::client::{SalesforceClient, SalesforceClientConfig};
    use leadsync::salesforce::limits::SalesforceShare;
    use leadsync::salesforce::retry::SalesforceRetryPolicy;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let rows = json!({"totalSize": 1, "done": true, "records": [{"Id": "001x"}]}).to_string();
    let (instance, served) = raw_server(vec![cut_off(&rows), whole(&rows)]).await;
    let login = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
            "issued_at": "1278448832702", "instance_url": instance, "signature": "s", "access_token": "access"
        })))
        .mount(&login)
        .await;
    let auth = SalesforceAuth::jwt(
        &login.uri(),
        "consumer-key",
        "integration@acme.test",
        include_bytes!("fixtures/salesforce_test_key.pem"),
    )
    .unwrap();
    let client = SalesforceClient::new(
        SalesforceClientConfig {
            api_version: "v62.0".into(),
            share: SalesforceShare { percent: 100 },
            timeout: None,
            retry: SalesforceRetryPolicy::default(),
        },
        auth,
    )
    .unwrap();
    let got: Vec<serde_json::Value> = client.query("SELECT Id FROM Account").await.unwrap();
    assert_eq!(got, vec![json!({"Id": "001x"})]);
    assert_eq!((served.load(Ordering::SeqCst), client.stats().retries()), (2, 1));
}

use leadsync::report::RetryKind;
use leadsync::store::{InboxEvent, OutboxKind, OutboxState};

use crate::support::{TestApp, stores};

fn raw_event(key: &str, contact: &str, payload: &str) -> InboxEvent {
    InboxEvent {
        dedupe_key: key.into(),
        contact_id: contact.into(),
        subscription: "contact.creation".into(),
        payload: payload.into(),
    }
}

#[tokio::test]
async fn inbox_events_that_cannot_be_processed_go_dead_with_their_reason_and_retry_puts_them_back() {
    let app = TestApp::start(20).await;
    let s = &app.stack.syncer;
    let now = app.now();
    let good = json!({"subscriptionType": "contact.creation", "objectId": 1, "occurredAt": 1}).to_string();
    s.store
        .inbox_put_many(
            &[&[
                raw_event("bad-json", "5", "{not json"),
                raw_event(
                    "bad-kind",
                    "6",
                    &json!({"subscriptionType": "contact.creation", "objectId": null}).to_string(),
                ),
                raw_event(
                    "bad-id",
                    "7",
                    &json!({"subscriptionType": "contact.creation", "objectId": "12ab"}).to_string(),
                ),
                raw_event("good", "1", &good),
            ]],
            now,
        )
        .await
        .unwrap();
    s.drain_inbox(now).await.unwrap();
    let dead = s.store.inbox_dead_list().await.unwrap();
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.contact_id.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].1.contains("payload does not parse (Syntax error"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("objectId is null, expected a number or a string"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].1.contains("objectId `12ab` is not a HubSpot id"),
        "{reasons:?}"
    );
    // Dead events are not waiting (nor tried again on their own); the good one was processed.
    assert_eq!(s.store.inbox_depth().await.unwrap().0, 0);
    assert!(
        s.store
            .inbox_due(now + chrono::Duration::days(1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let status = leadsync::report::status(&s.store).await.unwrap();
    assert!(status.contains("dead inbox events"), "{status}");
    assert!(
        status.contains(&format!(
            "event {} · contact.creation · contact 6 · inbox row",
            dead[1].id
        )),
        "{status}"
    );

    let dry = leadsync::report::retry(&s.store, Some(RetryKind::Inbox), None, true, now)
        .await
        .unwrap();
    assert!(dry.ends_with("3 would be requeued\n"), "{dry}");
    assert_eq!(
        s.store.inbox_dead_list().await.unwrap().len(),
        3,
        "a dry run changes nothing"
    );

    let one = leadsync::report::retry(&s.store, Some(RetryKind::Inbox), Some(dead[2].id), false, now)
        .await
        .unwrap();
    assert!(
        one.starts_with(&format!(
            "requeued inbox event {} · contact.creation · contact 7",
            dead[2].id
        )),
        "{one}"
    );
    assert!(one.ends_with("1 requeued\n"), "{one}");
    let due = s.store.inbox_due(now, 10).await.unwrap();
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), vec![dead[2].id]);
    assert_eq!(s.store.inbox_dead_list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_corrupt_backfill_checkpoint_is_refused_by_name_and_restart_discards_it() {
    use leadsync::sync::backfill::{BackfillOptions, CHECKPOINT};
    let app = TestApp::start(20).await;
    let s = &app.stack.syncer;
    s.store.set_cursor(CHECKPOINT, "{\"after\": 3").await.unwrap();
    let calls = s.hubspot.stats().total();
    let err = s
        .backfill(&BackfillOptions::default(), app.now(), |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cursors `backfill` (the backfill checkpoint)"), "{err}");
    assert!(err.contains("found `{\"after\": 3`"), "{err}");
    assert!(err.contains("`leadsync backfill --restart` discards it"), "{err}");
    assert_eq!(s.hubspot.stats().total(), calls, "nothing read from a wrong place");
    let (report, _) = s
        .backfill(
            &BackfillOptions {
                restart: true,
                ..BackfillOptions::default()
            },
            app.now(),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(report.pulled, 20);
    assert_eq!(s.store.cursor(CHECKPOINT).await.unwrap(), None);
}

#[tokio::test]
async fn a_corrupt_sending_write_becomes_a_dead_letter_never_done() {
    let app = TestApp::start(20).await;
    let s = &app.stack.syncer;
    let now = app.now();
    let page = s
        .hubspot
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap();
    let contact = page.results[0].id.clone();
    s.store
        .enqueue(
            OutboxKind::HubSpotWrite,
            &format!("hubspot:{contact}"),
            &contact,
            "{broken",
            now,
        )
        .await
        .unwrap();
    let item = s.store.due(OutboxKind::HubSpotWrite, now, 10).await.unwrap();
    s.store.sending(&item).await.unwrap();
    use leadsync::sync::outbox::writeback::{Writes, drain};
    drain(
        s,
        Priority::Background,
        now,
        Writes::All,
        leadsync::store::Lapsed::Expired,
    )
    .await
    .unwrap();
    let dead = s
        .store
        .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Dead)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let why = dead[0].last_error.as_deref().unwrap_or("");
    assert!(
        why.starts_with(&format!(
            "outbox row {} (hubspot_write, contact {contact}): payload does not parse",
            item[0].id
        )),
        "{why}"
    );
    assert!(why.contains("`leadsync retry --kind writeback --id"), "{why}");
    assert!(
        s.store
            .outbox_in(OutboxKind::HubSpotWrite, OutboxState::Done)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn retry_requeues_one_dead_letter_by_id_or_all_and_prints_each() {
    for (name, store) in stores().await {
        let now = chrono::Utc::now();
        for c in ["1", "2"] {
            store
                .enqueue(OutboxKind::Promote, &format!("promote:{c}:0"), c, "{}", now)
                .await
                .unwrap();
        }
        let due = store.due(OutboxKind::Promote, now, 10).await.unwrap();
        for it in &due {
            store
                .failed(it, "REQUIRED_FIELD_MISSING", OutboxState::Dead, now)
                .await
                .unwrap();
        }
        let out = leadsync::report::retry(&store, Some(RetryKind::Promote), Some(due[1].id), false, now)
            .await
            .unwrap();
        assert_eq!(
            out,
            format!(
                "requeued promote item {} · contact 2 · was: REQUIRED_FIELD_MISSING\n1 requeued\n",
                due[1].id
            ),
            "{name}"
        );
        let pending = store.due(OutboxKind::Promote, now, 10).await.unwrap();
        assert_eq!(
            pending.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![due[1].id],
            "{name}"
        );
        assert_eq!(pending[0].attempts, 0, "{name}");
        let rest = leadsync::report::retry(&store, None, None, false, now).await.unwrap();
        assert!(rest.ends_with("1 requeued\n"), "{name}: {rest}");
        assert!(
            store
                .outbox_in(OutboxKind::Promote, OutboxState::Dead)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_oauth_client_counts_its_own_calls_and_pauses_background_work_at_the_reserve() {
    let page = json!({"results": []}).to_string();
    let (url, served) = raw_server(vec![whole(&page)]).await;
    let mut config = HubSpotClientConfig {
        base_url: url.parse().unwrap(),
        burst: 10_000,
        interval: std::time::Duration::from_secs(10),
        search_per_second: 1_000,
        daily_reserve: 1,
        daily_allocation: Some(3),
        time_zone: chrono_tz::Tz::UTC,
        timeout: None,
        retry: RetryPolicy::default(),
    };
    config.time_zone = "Europe/Berlin".parse().unwrap();
    let client = HubSpotClient::new(
        config,
        HubSpotAuth::static_token(Some(42), SecretString::from("pat-test")),
    )
    .unwrap();
    for _ in 0..2 {
        client
            .list_contacts(None, &["email".into()], Priority::Background)
            .await
            .unwrap();
    }
    let err = client
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap_err();
    assert!(err.is_pause(), "{err:?}");
    assert!(
        err.to_string()
            .contains("background work resumes at the portal's daily reset"),
        "{err}"
    );
    client
        .list_contacts(None, &["email".into()], Priority::RealTime)
        .await
        .expect("real-time work goes on");
    assert_eq!(served.load(Ordering::SeqCst), 3);
    assert_eq!(client.limits().daily_remaining(chrono::Utc::now()), Some(0));
}

#[test]
fn the_retry_command_prints_what_it_would_put_back_then_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let store = leadsync::store::Store::create_or_open(&url).await.unwrap();
        let now = chrono::Utc::now();
        store
            .inbox_put_many(&[&[raw_event("k", "9", "{not json")]], now)
            .await
            .unwrap();
        let row = store.inbox_due(now, 1).await.unwrap()[0].id;
        store
            .inbox_dead(&[(row, "inbox row 1: payload does not parse".into())], now)
            .await
            .unwrap();
        row
    });
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_leadsync"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("LEADSYNC_CONFIG")
            .env("LEADSYNC__STORE__URL", &url)
            .output()
            .unwrap()
    };
    let status = run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!(
            "event {id} · contact.creation · contact 9 · inbox row 1: payload does not parse"
        )),
        "{text}"
    );
    let dry = run(&["retry", "--kind", "inbox", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(text.starts_with(&format!("would requeue inbox event {id} ")), "{text}");
    let done = run(&["retry", "--kind", "inbox", "--id", &id.to_string()]);
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.ends_with("1 requeued\n"), "{text}");
    let again = run(&["retry"]);
    assert!(String::from_utf8_lossy(&again.stdout).ends_with("0 requeued\n"));
    // An id names a row of one queue: without --kind it is refused.
    assert_eq!(run(&["retry", "--id", "1"]).status.code(), Some(2));
}
