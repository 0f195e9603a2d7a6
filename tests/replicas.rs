//! Replicas on one store: the portal's lease (take, renew, lose, take over after expiry), the
//! generation fence on every write of the holder, both stores; then `leadsync run` processes:
//! three on one PostgreSQL store with one killed (`kill -9`) mid-batch, and a second one
//! refused on a SQLite store.

use chrono::{Duration, Utc};
use leadsync::store::{InboxEvent, OutboxKind, Plan, Store, StoreError};

use crate::support::Backend;

on_both_stores!(
    a_free_lease_is_taken_renewed_and_refused_to_another_until_it_expires,
    a_paused_old_holder_cannot_write_after_its_lease_was_taken_over,
    a_released_lease_is_taken_at_once,
    replicas_started_at_once_on_an_empty_store_all_open_it_and_apply_each_migration_once,
);

// README (Replicas): "replicas started at once on an empty database take turns at its migrations".
/// Six stores opened at once on one empty database, as replicas started together by a compose
/// file or a rollout would: every one opens it, and the schema is whole (a lease is taken and a
/// write fenced by it passes).
async fn replicas_started_at_once_on_an_empty_store_all_open_it_and_apply_each_migration_once(backend: Backend) {
    let (url, _dir) = backend.fresh().await;
    let opened = futures::future::join_all((0..6).map(|_| Store::create_or_open(&url))).await;
    let stores: Vec<Store> = opened
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("store {i} of 6 opened at once: {e}")))
        .collect();
    let now = Utc::now();
    let lease = stores[5]
        .take_lease("42", "r", now, Duration::seconds(15))
        .await
        .unwrap()
        .unwrap();
    stores[0].fenced(&lease).set_cursor("c", "1").await.unwrap();
    assert_eq!(stores[3].cursor("c").await.unwrap().as_deref(), Some("1"));
    for s in stores {
        s.close().await;
    }
}

// README (Replicas): "a webhook taken by a standby replica is announced to the holder through
// PostgreSQL (`NOTIFY`) and processed at once".
/// New inbox events kept through one store handle (a standby replica's intake) wake the
/// workers listening through another (the holder's) within a second, well before the 2 s poll;
/// a delivery of nothing new announces nothing; SQLite has no announcements.
#[tokio::test]
async fn new_inbox_events_kept_by_one_replica_wake_the_holder_s_workers_through_postgres() {
    use std::sync::Arc;
    use std::time::Duration as StdDuration;
    let url = crate::support::postgres_url().await;
    let holder = Store::create_or_open(&url).await.unwrap();
    let standby = Store::open_existing(&url).await.unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let listening = holder.listen_inbox(wake.clone()).expect("PostgreSQL announces");
    // Listening once its connection is up: wait for the session in PostgreSQL's own view.
    let started = std::time::Instant::now();
    let pool = crate::support::sql_pool(&url).await;
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            started.elapsed() < StdDuration::from_secs(10),
            "the listener never connected"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let ev = InboxEvent {
        dedupe_key: "k1".into(),
        contact_id: "1".into(),
        subscription: "contact.creation".into(),
        payload: "{}".into(),
    };
    assert_eq!(
        standby
            .inbox_put_many(&[std::slice::from_ref(&ev)], Utc::now())
            .await
            .unwrap(),
        vec![1]
    );
    tokio::time::timeout(StdDuration::from_secs(1), wake.notified())
        .await
        .expect("the holder's workers are woken within a second of the standby's commit");
    assert_eq!(standby.inbox_put_many(&[&[ev]], Utc::now()).await.unwrap(), vec![0]);
    assert!(
        tokio::time::timeout(StdDuration::from_millis(500), wake.notified())
            .await
            .is_err(),
        "a repeated delivery adds nothing and announces nothing"
    );
    drop(listening);
    pool.close().await;
    let (sqlite, _dir) = Backend::Sqlite.fresh().await;
    assert!(Store::connect(&sqlite).await.unwrap().listen_inbox(wake).is_none());
    holder.close().await;
    standby.close().await;
}

async fn open(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, dir) = backend.fresh().await;
    (Store::connect(&url).await.unwrap(), dir)
}

async fn a_free_lease_is_taken_renewed_and_refused_to_another_until_it_expires(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let t0 = Utc::now();
    let ttl = Duration::seconds(15);
    let a = store
        .take_lease("42", "a", t0, ttl)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(a.generation, 1);
    assert_eq!(
        store
            .take_lease("42", "b", t0 + Duration::seconds(5), ttl)
            .await
            .unwrap(),
        None
    );
    // Another portal's lease is another row.
    assert!(store.take_lease("43", "b", t0, ttl).await.unwrap().is_some());
    let a = store
        .renew_lease(&a, t0 + Duration::seconds(10), ttl)
        .await
        .unwrap()
        .expect("the holder renews");
    assert_eq!(a.expires_at, t0 + Duration::seconds(25));
    // Past the first expiry, the renewal keeps it.
    assert_eq!(
        store
            .take_lease("42", "b", t0 + Duration::seconds(20), ttl)
            .await
            .unwrap(),
        None
    );
    let b = store
        .take_lease("42", "b", t0 + Duration::seconds(25), ttl)
        .await
        .unwrap()
        .expect("taken over once expired");
    assert_eq!(b.generation, 2, "a takeover is a new generation");
    assert_eq!(
        store.renew_lease(&a, t0 + Duration::seconds(26), ttl).await.unwrap(),
        None,
        "the old holder learns at its next renewal that it lost the lease"
    );
    let row = store.lease("42").await.unwrap().unwrap();
    assert_eq!((row.holder.as_str(), row.generation), ("b", 2));
}

async fn a_paused_old_holder_cannot_write_after_its_lease_was_taken_over(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let t0 = Utc::now();
    let ttl = Duration::seconds(3);
    let old = store.take_lease("default", "old", t0, ttl).await.unwrap().unwrap();
    let old_store = store.fenced(&old);
    old_store
        .set_cursor("sync", "from-old")
        .await
        .expect("the holder writes");
    // The old holder pauses past its lease; another replica takes over.
    let new = store
        .take_lease("default", "new", t0 + ttl, ttl)
        .await
        .unwrap()
        .unwrap();
    let new_store = store.fenced(&new);
    let fenced = |r: Result<(), StoreError>| match r {
        Err(StoreError::Fenced { generation, .. }) => assert_eq!(generation, old.generation),
        other => panic!("{backend:?}: the old holder's write must be fenced, got {other:?}"),
    };
    fenced(old_store.set_cursor("sync", "late-old").await);
    fenced(
        old_store
            .commit_plan(&Plan::default(), Some(("backfill", "late-old")))
            .await,
    );
    fenced(
        old_store
            .enqueue(OutboxKind::Promote, "promote:1:0", "1", "{}", t0)
            .await,
    );
    assert_eq!(store.cursor("sync").await.unwrap().as_deref(), Some("from-old"));
    assert_eq!(
        store.cursor("backfill").await.unwrap(),
        None,
        "a fenced commit writes nothing"
    );
    assert!(store.due(OutboxKind::Promote, t0, 10).await.unwrap().is_empty());
    // The new holder writes; the intake (every replica's, unfenced) keeps taking webhooks.
    new_store.set_cursor("sync", "from-new").await.unwrap();
    let ev = InboxEvent {
        dedupe_key: "k1".into(),
        contact_id: "1".into(),
        subscription: "contact.creation".into(),
        payload: "{}".into(),
    };
    assert_eq!(store.inbox_put_many(&[&[ev]], t0).await.unwrap(), vec![1]);
    let due = new_store.inbox_due(t0, 10).await.unwrap();
    fenced(old_store.inbox_done(&[due[0].id], t0).await);
    new_store.inbox_done(&[due[0].id], t0).await.unwrap();
    assert_eq!(store.cursor("sync").await.unwrap().as_deref(), Some("from-new"));
    assert!(store.inbox_due(t0, 10).await.unwrap().is_empty());
}

async fn a_released_lease_is_taken_at_once(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let t0 = Utc::now();
    let ttl = Duration::seconds(15);
    let a = store.take_lease("default", "a", t0, ttl).await.unwrap().unwrap();
    store.release_lease(&a).await.unwrap();
    let b = store
        .take_lease("default", "b", t0 + Duration::seconds(1), ttl)
        .await
        .unwrap()
        .expect("a stopping holder gives the lease up");
    assert_eq!(b.generation, a.generation + 1);
    // Seizing (a replica that holds SQLite's lock file) takes it whoever holds it.
    let c = store
        .seize_lease("default", "c", t0 + Duration::seconds(2), ttl)
        .await
        .unwrap();
    assert_eq!(c.generation, b.generation + 1);
    assert_eq!(
        store.renew_lease(&b, t0 + Duration::seconds(3), ttl).await.unwrap(),
        None
    );
}

mod processes {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use leadsync::chaos::sandbox_command;
    use leadsync::sandbox::portal::CONTACT_ID_BASE;
    use leadsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
    use leadsync::store::Store;
    use tokio::process::{Child, Command};

    use crate::support::replicas::{acknowledged_and_lost, balancer, created_twice, free_port, settled};

    /// The lease time of the replicas under test (renewed every second).
    const LEASE: Duration = Duration::from_secs(3);
    const REPLICAS: usize = 3;
    const CONTACTS: u32 = 60;
    const FORMS: u32 = 40;

    fn leadsync(sb: &SandboxHandle, store: &str, port: u16, log: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = sandbox_command(
            std::path::Path::new(env!("CARGO_BIN_EXE_leadsync")),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            sb,
            store,
            port,
            log,
            args,
        )
        .unwrap();
        cmd.env("LEADSYNC__REPLICAS__LEASE_SECONDS", LEASE.as_secs().to_string())
            .env("LEADSYNC__HUBSPOT__BURST_PER_10S", "250")
            .env("LEADSYNC__SCHEDULE__SYNC", "*/2 * * * * *")
            .env("LEADSYNC__SCHEDULE__SLA", "*/5 * * * * *")
            .env("LEADSYNC__SCHEDULE__OPPORTUNITIES", "*/5 * * * * *");
        cmd
    }

    async fn once(sb: &SandboxHandle, store: &str, log: &std::path::Path, args: &[&str]) {
        let status = leadsync(sb, store, free_port(), log, args).status().await.unwrap();
        assert!(
            status.success(),
            "leadsync {args:?}: {status}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    async fn holder(store: &Store) -> Option<(u32, i64)> {
        crate::support::replicas::holder(store, "default").await
    }

    /// A replica's API calls to `system` (its `/metrics`), the properties check at start aside.
    async fn api_calls(port: u16, system: &str) -> u64 {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("leadsync_api_calls_total{{system=\"{system}\",endpoint=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter(|l| !l.starts_with("properties."))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Three `leadsync run` on one PostgreSQL store behind one load balancer, webhooks coming in
    /// and the sync running; the lease holder is `kill -9`'d while it works. Another replica
    /// takes the lease over within the lease time (and its renewal period), every delivery
    /// answered 2xx is processed, no Salesforce record is created twice, and the sandbox never
    /// answered 429: only the holder calls the portal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_on_postgres_survive_the_holder_killed_mid_batch() {
        let url = crate::support::postgres_url().await;
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
        let front = balancer(ports.clone()).await;
        let sb = Sandbox::start(SandboxConfig {
            seed: 7,
            contacts: CONTACTS,
            companies: 12,
            now: chrono::Utc::now(),
            hubspot_burst_per_10s: 300,
            webhook_url: Some(format!("http://127.0.0.1:{front}/webhooks/hubspot")),
            webhook_backoff: Duration::from_millis(300),
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let log = |name: &str| dir.path().join(format!("{name}.log"));
        once(&sb, &url, &log("setup"), &["setup", "--apply"]).await;
        once(&sb, &url, &log("backfill"), &["backfill"]).await;
        let store = Store::open_existing(&url).await.unwrap();

        let mut children: BTreeMap<u32, (usize, Child)> = BTreeMap::new();
        for (i, port) in ports.iter().enumerate() {
            let child = leadsync(&sb, &url, *port, &log(&format!("replica{i}")), &["run"])
                .spawn()
                .unwrap();
            children.insert(child.id().unwrap(), (i, child));
        }
        // One of them takes the lease.
        let up = Instant::now();
        let (first, generation) = loop {
            if let Some(h) = holder(&store).await.filter(|(pid, _)| children.contains_key(pid)) {
                break h;
            }
            assert!(up.elapsed() < Duration::from_secs(60), "no replica took the lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for port in &ports {
            let http = reqwest::Client::new();
            while http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_err()
            {
                assert!(
                    up.elapsed() < Duration::from_secs(60),
                    "replica on {port} never answered"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        // Forms come in (each a webhook delivery through the balancer); the holder dies while
        // it works on them: once the portal saw its calls for the first forms.
        let calls_before = sb.api_calls("hubspot") + sb.api_calls("salesforce");
        let mut killed_at = None;
        for f in 0..FORMS {
            let id = (CONTACT_ID_BASE + u64::from(f * 7 % CONTACTS)).to_string();
            let form = if f % 2 == 0 { "Request a demo" } else { "Contact us" };
            sb.submit_form(&id, form);
            let calls = sb.api_calls("hubspot") + sb.api_calls("salesforce");
            if killed_at.is_none() && f >= FORMS / 3 && calls > calls_before {
                let (_, child) = children.get_mut(&first).unwrap();
                child.start_kill().unwrap(); // SIGKILL
                let _ = child.wait().await;
                eprintln!("kill -9 the holder (pid {first}) after form {f}, at portal call {calls}");
                killed_at = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let killed_at = killed_at.expect("the holder must be killed while it works");
        let (next, next_generation) = loop {
            if let Some(h) = holder(&store).await.filter(|(pid, _)| *pid != first) {
                break h;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(30), "no replica took over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let took = killed_at.elapsed();
        eprintln!("pid {next} took the lease over {took:?} after the kill (lease {LEASE:?})");
        assert!(children.contains_key(&next), "a surviving replica holds the lease");
        assert!(next_generation > generation);
        // The lease expires at most LEASE after its last renewal, a standby tries every LEASE/3:
        // one more second for this loaded machine's scheduling.
        assert!(
            took <= LEASE + LEASE / 3 + Duration::from_secs(1),
            "takeover took {took:?} with a lease of {LEASE:?}"
        );

        let settle = Instant::now();
        while !settled(&sb, &store).await {
            assert!(
                settle.elapsed() < Duration::from_secs(120),
                "did not settle: inbox {:?}, outbox {:?}",
                store.inbox_depth().await,
                store.outbox_counts().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // No acknowledged event lost: each event of each delivery answered 2xx is processed.
        let (acknowledged, lost) = acknowledged_and_lost(&sb, &url).await;
        assert!(acknowledged >= FORMS as usize, "{acknowledged} events acknowledged");
        assert!(lost.is_empty(), "acknowledged events not processed: {lost:?}");

        // No Salesforce record created twice, and the demo requests did reach Salesforce.
        let (contacts, twice) = created_twice(&sb);
        assert!(contacts > 0, "no lead was promoted: the test proves nothing");
        assert!(twice.is_empty(), "Salesforce records created twice: {twice:?}");

        // Only the holders called the portal: a replica that never held the lease made no API
        // call but the start's check of leadsync's properties (each replica's own /metrics).
        let mut work_calls = BTreeMap::new();
        for (pid, (i, _)) in &children {
            if *pid == first {
                continue;
            }
            work_calls.insert(
                *pid,
                (
                    api_calls(ports[*i], "hubspot").await,
                    api_calls(ports[*i], "salesforce").await,
                ),
            );
        }
        eprintln!("API calls past the start's check, by surviving replica: {work_calls:?} (holder {next})");
        let (hs, _) = work_calls[&next];
        assert!(hs > 0, "the new holder did the portal's work: {work_calls:?}");
        for (pid, calls) in &work_calls {
            if *pid != next {
                assert_eq!(
                    *calls,
                    (0, 0),
                    "replica {pid} never held the lease, yet called the CRMs"
                );
            }
        }

        // One portal budget across the replicas: the sandbox never had to refuse a call.
        assert_eq!(sb.rate_limited("hubspot"), 0, "HubSpot answered 429");
        assert_eq!(sb.rate_limited("salesforce"), 0, "Salesforce answered 429");

        for (_, (_, mut child)) in children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        store.close().await;
        sb.shutdown().await;
    }

    /// A second `leadsync run` on the SQLite store a first one runs on is refused, with the
    /// reason and what to do, and exits without touching the store.
    #[tokio::test]
    async fn a_second_run_on_one_sqlite_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("leadsync.db").display());
        let sb = Sandbox::start(SandboxConfig {
            contacts: 20,
            companies: 4,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let log = |name: &str| dir.path().join(format!("{name}.log"));
        once(&sb, &url, &log("setup"), &["setup", "--apply"]).await;
        let mut first = leadsync(&sb, &url, free_port(), &log("first"), &["run", "--init-store"])
            .spawn()
            .unwrap();
        let up = Instant::now();
        // The first holds the lease once it runs.
        loop {
            if let Ok(s) = Store::open_existing(&url).await {
                let held = s.lease("default").await.ok().flatten().is_some();
                s.close().await;
                if held {
                    break;
                }
            }
            assert!(up.elapsed() < Duration::from_secs(60), "the first run never started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let second = leadsync(&sb, &url, free_port(), &log("second"), &["run"])
            .output()
            .await
            .unwrap();
        let stderr =
            std::fs::read_to_string(log("second")).unwrap_or_default() + &String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "the second run must be refused");
        assert!(
            stderr.contains("another `leadsync run` holds this SQLite store")
                && stderr.contains("leadsync.db.lock")
                && stderr.contains("PostgreSQL"),
            "{stderr}"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first run goes on");
        let _ = first.start_kill();
        let _ = first.wait().await;
        // Killed (`kill -9`), the first leaves the lock to the kernel: a new run starts at once.
        let mut again = leadsync(&sb, &url, free_port(), &log("again"), &["run"])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            again.try_wait().unwrap().is_none(),
            "a run after the holder died is not refused"
        );
        let _ = again.start_kill();
        let _ = again.wait().await;
        sb.shutdown().await;
    }
}

/// A holder whose lease another replica took over (it was paused past it) is told to stop its
/// work at its next renewal, and its late writes are refused; a stop gives the lease up.
#[tokio::test]
async fn a_holder_that_lost_its_lease_stops_its_work_and_a_stopping_holder_gives_it_up() {
    use leadsync::replica::Replica;
    let (store, _dir) = open(Backend::Postgres).await;
    let replica = Replica::new(None, std::time::Duration::from_secs(3));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<&'static str>(4);
    let lead = {
        let (store, replica) = (store.clone(), replica.clone());
        tokio::spawn(async move {
            replica
                .lead(&store, stop, |fenced, mut work_stop| {
                    let seen = seen_tx.clone();
                    async move {
                        fenced.set_cursor("work", "started").await?;
                        let _ = seen.send("started").await;
                        let _ = work_stop.wait_for(|s| *s).await;
                        let late = fenced.set_cursor("work", "late").await;
                        let _ = seen
                            .send(if late.is_err() {
                                "stopped, fenced"
                            } else {
                                "stopped, wrote"
                            })
                            .await;
                        Ok(())
                    }
                })
                .await
        })
    };
    assert_eq!(next(&mut seen).await, Some("started"));
    let first = store.lease("default").await.unwrap().unwrap();
    assert_eq!(first.holder, replica.id);
    // Another replica takes the lease over (as after a pause past its expiry).
    store
        .seize_lease("default", "other", Utc::now(), Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        next(&mut seen).await,
        Some("stopped, fenced"),
        "lost at its next renewal"
    );
    assert_eq!(store.cursor("work").await.unwrap().as_deref(), Some("started"));
    // It stands by; the other gives the lease up, and it takes it again, with a new generation.
    let other = store.lease("default").await.unwrap().unwrap();
    store
        .release_lease(&leadsync::store::Lease {
            portal: "default".into(),
            holder: other.holder,
            generation: other.generation,
            expires_at: other.expires_at,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, Some("started"));
    let again = store.lease("default").await.unwrap().unwrap();
    assert_eq!(
        (again.holder.as_str(), again.generation),
        (replica.id.as_str(), first.generation + 2)
    );
    // A stop ends the work and gives the lease up.
    stop_tx.send(true).unwrap();
    assert_eq!(
        next(&mut seen).await,
        Some("stopped, wrote"),
        "a stopping holder still holds its lease"
    );
    lead.await.unwrap().unwrap();
    let released = store.lease("default").await.unwrap().unwrap();
    assert!(released.expires_at <= Utc::now(), "given up at stop");
}

async fn next(seen: &mut tokio::sync::mpsc::Receiver<&'static str>) -> Option<&'static str> {
    tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .expect("the replica's work answers within 10 s")
}
