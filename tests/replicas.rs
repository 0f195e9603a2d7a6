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
);

async fn open(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, dir) = backend.fresh().await;
    (Store::connect(&url).await.unwrap(), dir)
}

async fn a_free_lease_is_taken_renewed_and_refused_to_another_until_it_expires(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let t0 = Utc::now();
    let ttl = Duration::seconds(15);
    let a = store.take_lease("42", "a", t0, ttl).await.unwrap().expect("a free lease is taken");
    assert_eq!(a.generation, 1);
    assert_eq!(store.take_lease("42", "b", t0 + Duration::seconds(5), ttl).await.unwrap(), None);
    // Another portal's lease is another row.
    assert!(store.take_lease("43", "b", t0, ttl).await.unwrap().is_some());
    let a = store
        .renew_lease(&a, t0 + Duration::seconds(10), ttl)
        .await
        .unwrap()
        .expect("the holder renews");
    assert_eq!(a.expires_at, t0 + Duration::seconds(25));
    // Past the first expiry, the renewal keeps it.
    assert_eq!(store.take_lease("42", "b", t0 + Duration::seconds(20), ttl).await.unwrap(), None);
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
    old_store.set_cursor("sync", "from-old").await.expect("the holder writes");
    // The old holder pauses past its lease; another replica takes over.
    let new = store.take_lease("default", "new", t0 + ttl, ttl).await.unwrap().unwrap();
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
    assert_eq!(store.cursor("backfill").await.unwrap(), None, "a fenced commit writes nothing");
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
    let c = store.seize_lease("default", "c", t0 + Duration::seconds(2), ttl).await.unwrap();
    assert_eq!(c.generation, b.generation + 1);
    assert_eq!(store.renew_lease(&b, t0 + Duration::seconds(3), ttl).await.unwrap(), None);
}
