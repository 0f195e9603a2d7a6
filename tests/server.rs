//! The webhook server: what it accepts into the inbox and what it refuses, with HTTP statuses.

use chrono::Utc;
use serde_json::json;

use crate::support::{TestServer, hubspot_event, post_signed};

fn delivery(events: &[serde_json::Value]) -> String {
    serde_json::Value::Array(events.to_vec()).to_string()
}

// README: "events go into the inbox, deduplicated … in one transaction before the 200"
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

// README: "Refusals: bad, missing or stale signature 401, body over `server.max_body_bytes` 413, malformed JSON 400"
#[tokio::test]
async fn forged_stale_oversized_and_malformed_deliveries_are_refused_and_leave_no_trace() {
    let app = TestServer::start(None, 4096).await;
    let uri = app.url("/webhooks/hubspot");
    let now = Utc::now().timestamp_millis();
    let body = delivery(&[hubspot_event("contact.creation", 7, None, now)]);

    // Forged: signed with another secret.
    let status = post_signed(&app.http, &uri, "not-the-secret", &body).await.status();
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

// README: "checked against `server.public_base_url` when a proxy sits in front"
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

// README: "store down or full 503"
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

// README: "`POST /webhooks/hubspot/workflow`, v2"
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
    let pending = app.store.inbox_due(chrono::Utc::now(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].contact_id.as_str(), pending[0].subscription.as_str()),
        ("1201", "workflow")
    );
}

// README: "`GET /healthz`, `GET /readyz` … `GET /metrics`"
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

/// `count` deliveries of one event each, for contacts `first..first + count`, each with a value
/// of `value_bytes` bytes (so a delivery needs room on disk).
fn numbered(first: u64, value_bytes: usize) -> String {
    let value = "x".repeat(value_bytes);
    delivery(&[hubspot_event(
        "contact.propertyChange",
        first,
        Some(("message", &value)),
        Utc::now().timestamp_millis(),
    )])
}

/// Unmounts the test's tmpfs however the test ends.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `path` until it refuses a write.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    while f.write_all(&block).and_then(|_| f.flush()).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_disk_gets_503_and_a_failing_readyz_and_once_space_is_back_intake_recovers_and_every_200_survives_a_restart()
 {
    // The real fault: SQLite on a 4 MiB tmpfs, filled, then freed (needs root for `mount`).
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mount -t tmpfs failed (no CAP_SYS_ADMIN?)");
        return;
    }
    let _unmount = Tmpfs(dir.path().to_path_buf());
    let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
    let store = leadsync::store::Store::create_or_open(&url).await.unwrap();
    let app = TestServer::start_with(store.clone(), tempfile::tempdir().unwrap(), None, 4 << 20).await;
    let ready = || async { app.http.get(app.url("/readyz")).send().await.unwrap().status() };

    let mut acknowledged: Vec<u64> = Vec::new();
    let mut next = 1u64;
    for _ in 0..5 {
        assert_eq!(
            app.post_signed_webhook(&numbered(next, 100)).await,
            200,
            "before the fault"
        );
        acknowledged.push(next);
        next += 1;
    }
    assert_eq!(ready().await, 200);

    fill(&dir.path().join("filler"));
    let mut refused = 0;
    for _ in 0..20 {
        // 200 KiB a delivery: more than the WAL can hold in space it already has.
        match app.post_signed_webhook(&numbered(next, 200 * 1024)).await.as_u16() {
            200 => acknowledged.push(next),
            // 408: the request outlived its timeout waiting for the store; not acknowledged.
            503 | 408 => refused += 1,
            other => panic!("during the fault: {other}"),
        }
        next += 1;
    }
    assert!(refused > 0, "a full disk must refuse deliveries");
    assert_eq!(ready().await, 503, "/readyz fails while the store cannot write");

    std::fs::remove_file(dir.path().join("filler")).unwrap();
    // leadsync recovers by itself: no restart, no operator.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = app.post_signed_webhook(&numbered(next, 100)).await;
        if status == 200 {
            acknowledged.push(next);
            next += 1;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} after space came back"
        );
        next += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for _ in 0..10 {
        assert_eq!(
            app.post_signed_webhook(&numbered(next, 100)).await,
            200,
            "after the fault"
        );
        acknowledged.push(next);
        next += 1;
    }
    assert_eq!(ready().await, 200, "/readyz recovers with the store");

    // A restart: every acknowledged delivery is there.
    drop(app);
    store.close().await;
    let reopened = leadsync::store::Store::open_existing(&url).await.unwrap();
    let kept: std::collections::BTreeSet<String> = reopened
        .inbox_due(chrono::Utc::now(), 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.contact_id)
        .collect();
    let lost: Vec<&u64> = acknowledged
        .iter()
        .filter(|id| !kept.contains(&id.to_string()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    reopened.close().await;
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_after_the_header_timeout_and_only_a_bounded_number_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (store, dir) = crate::support::sqlite().await;
    let limits = leadsync::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_secs(1),
        request_timeout: std::time::Duration::from_secs(1),
        max_connections: 4,
    };
    let app = TestServer::start_limited(store, dir, None, 1 << 20, limits).await;
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    // A socket the server closed reads end-of-file at once; one it never accepted, nothing.
    async fn closed(s: &mut tokio::net::TcpStream) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(std::time::Duration::from_millis(20), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut first_wave = 0;
    for s in &mut idle {
        if closed(s).await {
            first_wave += 1;
        }
    }
    assert!(
        (1..=4).contains(&first_wave),
        "after {:?}: {first_wave} closed; at most 4 are served at once",
        started.elapsed()
    );
    // The others are accepted in turn and closed the same way: nobody holds the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut open: Vec<tokio::net::TcpStream> = idle;
    while !open.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} idle sockets still open",
            open.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut still = Vec::new();
        for mut s in open {
            if !closed(&mut s).await {
                still.push(s);
            }
        }
        open = still;
    }

    // A body that trickles in gets 408 once the request timeout passes.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /webhooks/hubspot HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n[")
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    let mut answer = Vec::new();
    loop {
        let _ = slow.write_all(b" ").await;
        let mut b = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_millis(300), slow.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&b[..n]);
                break;
            }
            Err(_) => assert!(
                sent.elapsed() < std::time::Duration::from_secs(5),
                "no answer to a trickling body"
            ),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // And the server still serves.
    let body = delivery(&[hubspot_event(
        "contact.creation",
        5,
        None,
        Utc::now().timestamp_millis(),
    )]);
    assert_eq!(app.post_signed_webhook(&body).await, 200);
}

#[tokio::test]
async fn postgres_down_gets_503_and_a_failing_readyz_within_seconds_not_thirty() {
    let (url, proxy) = crate::support::postgres_behind_proxy().await;
    let store = leadsync::store::Store::connect(&url).await.unwrap();
    let app = TestServer::start_with(store, tempfile::tempdir().unwrap(), None, 1 << 20).await;
    let body = |id| {
        delivery(&[hubspot_event(
            "contact.creation",
            id,
            None,
            Utc::now().timestamp_millis(),
        )])
    };
    assert_eq!(app.post_signed_webhook(&body(1)).await, 200);
    proxy.cut();
    let t = std::time::Instant::now();
    assert_eq!(app.post_signed_webhook(&body(2)).await, 503);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "503 after {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "readyz after {:?}",
        t.elapsed()
    );
    let why = ready.text().await.unwrap();
    assert!(why.contains("store cannot write"), "{why}");
}

#[tokio::test]
async fn a_deleted_sqlite_file_is_noticed_by_readyz_and_intake_and_never_silently_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leadsync.db");
    let url = format!("sqlite://{}", file.display());
    let store = leadsync::store::Store::create_or_open(&url).await.unwrap();
    let app = TestServer::start_with(store.clone(), tempfile::tempdir().unwrap(), None, 1 << 20).await;
    let body = |id| {
        delivery(&[hubspot_event(
            "contact.creation",
            id,
            None,
            Utc::now().timestamp_millis(),
        )])
    };
    assert_eq!(app.post_signed_webhook(&body(1)).await, 200);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("deleted or replaced"), "{why}");
    assert_eq!(
        app.post_signed_webhook(&body(2)).await,
        503,
        "nothing acknowledged into a deleted file"
    );
    // A restart that expects the store refuses to start an empty one in its place.
    let err = leadsync::store::Store::open_existing(&url)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist") && err.contains("--init-store"), "{err}");
    assert!(!file.exists(), "open_existing created a file");
}

#[tokio::test]
async fn a_nul_byte_in_a_value_is_kept_safely_on_postgres_and_never_fails_the_deliveries_sent_with_it() {
    let store = leadsync::store::Store::connect(&crate::support::postgres_url().await)
        .await
        .unwrap();
    let app =
        std::sync::Arc::new(TestServer::start_with(store.clone(), tempfile::tempdir().unwrap(), None, 1 << 20).await);
    let t = Utc::now().timestamp_millis();
    let poisoned = delivery(&[hubspot_event(
        "contact.propertyChange",
        1007,
        Some(("firstname", "Ada\u{0}Lovelace")),
        t,
    )]);
    let mut sends = Vec::new();
    for i in 0..54u64 {
        let one = app.clone();
        let clean = delivery(&[hubspot_event("contact.creation", 2000 + i, None, t)]);
        sends.push(tokio::spawn(async move { one.post_signed_webhook(&clean).await }));
        if i == 20 {
            let (app, poisoned) = (app.clone(), poisoned.clone());
            sends.push(tokio::spawn(async move { app.post_signed_webhook(&poisoned).await }));
        }
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(
        store.inbox_total().await.unwrap(),
        55,
        "every delivery kept, the NUL one too"
    );
    // A NUL where HubSpot names things is not HubSpot's: refused, naming the field.
    let bad = delivery(&[hubspot_event(
        "contact.propertyChange",
        1008,
        Some(("first\u{0}name", "Ada")),
        t,
    )]);
    let answer = post_signed(&app.http, &app.url("/webhooks/hubspot"), crate::support::SECRET, &bad).await;
    assert_eq!(answer.status(), 400);
    let why = answer.text().await.unwrap();
    assert!(why.contains("event 0: propertyName contains a NUL byte"), "{why}");
}
