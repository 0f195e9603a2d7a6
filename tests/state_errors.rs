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
    HubSpotClient::new(
        HubSpotClientConfig {
            base_url: url.parse().unwrap(),
            burst: 10_000,
            interval: std::time::Duration::from_secs(10),
            search_per_second: 1_000,
            daily_reserve: 0,
            timeout: None,
            retry: RetryPolicy::default(),
        },
        HubSpotAuth::static_token(Some(42), SecretString::from("pat-test")),
    )
    .unwrap()
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
        err.to_string().contains("HTTP 200 body could not be read after 6 attempts"),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn hubspot_a_refused_connection_is_named_not_a_status_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = hubspot(&format!("http://127.0.0.1:{port}"));
    let err = client
        .list_contacts(None, &["email".into()], Priority::Background)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("connection failed after 6 attempts; is the base URL right"), "{text}");
    assert_eq!(client.stats().retries(), 5);
}
