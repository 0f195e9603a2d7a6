//! The webhook inbox: every accepted delivery is here before HubSpot gets its 200.
//!
//! Duplicates are dropped by a key built from what the event says (HubSpot's `eventId` is not
//! guaranteed unique), so a redelivery inserts nothing. The key holds no personal data (values
//! are hashed), and processed rows are pruned after the store's retention.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::write::{INTAKE_WAIT, PATIENT_WAIT};

/// The longest an intake write may take once it has its connection.
const INTAKE_WRITE: std::time::Duration = std::time::Duration::from_secs(5);
use super::{Backend, Store, StoreError, from_ms, ms};

/// How long an inbox pass's claim on its events lasts: longer than a pass (a batch read, a
/// commit), after which another pass takes them as cut off.
pub const INBOX_CLAIM: chrono::Duration = chrono::Duration::minutes(2);

const INBOX_COLUMNS: &str = "id, contact_id, subscription, payload, received_at, attempts";

/// Unprocessed, not dead, due at `$1` and claimed by no pass.
const INBOX_DUE: &str =
    "processed_at IS NULL AND dead_at IS NULL AND next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)";

fn inbox_row(r: &sqlx::any::AnyRow) -> InboxRow {
    InboxRow {
        id: r.get(0),
        contact_id: r.get(1),
        subscription: r.get(2),
        payload: r.get(3),
        received_at: from_ms(r.get(4)),
        attempts: r.get::<i64, _>(5).max(0) as u32,
    }
}

/// Rows per INSERT statement (5 parameters each, far below both databases' limits).
const INSERT_ROWS: usize = 100;

/// One event to keep.
#[derive(Debug, Clone)]
pub struct InboxEvent {
    /// Subscription type, object id, property, a hash of the value and `occurredAt`, joined:
    /// never a property value in clear (it would outlive a privacy deletion).
    pub dedupe_key: String,
    /// HubSpot contact id the event is about.
    pub contact_id: String,
    /// `contact.propertyChange`, `contact.creation`, …
    pub subscription: String,
    /// The event as received (JSON).
    pub payload: String,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// Row id.
    pub id: i64,
    /// HubSpot contact id.
    pub contact_id: String,
    /// Subscription type.
    pub subscription: String,
    /// The event as received.
    pub payload: String,
    /// When leadsync received it.
    pub received_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// An event set aside because it cannot be processed.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxDead {
    /// Row id (`leadsync retry --kind inbox --id N`).
    pub id: i64,
    /// HubSpot contact id, as received.
    pub contact_id: String,
    /// Subscription type.
    pub subscription: String,
    /// Why it could not be processed.
    pub reason: String,
    /// When it was set aside.
    pub dead_at: DateTime<Utc>,
}

fn dead_row(r: &sqlx::any::AnyRow) -> InboxDead {
    InboxDead {
        id: r.get(0),
        contact_id: r.get(1),
        subscription: r.get(2),
        reason: r.get::<Option<String>, _>(3).unwrap_or_default(),
        dead_at: from_ms(r.get(4)),
    }
}

/// The PostgreSQL channel new inbox events are announced on.
const INBOX_CHANNEL: &str = "leadsync_inbox";

/// The inbox's announcements being heard (see [`Store::listen_inbox`]); dropped, they are no
/// longer, whichever way its owner ends.
#[derive(Debug)]
pub struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wakes `wake` at each announcement on [`INBOX_CHANNEL`] until the connection fails (what
/// came in while it was not listening is found by the inbox's poll).
async fn announcements(url: &str, wake: &tokio::sync::Notify) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(INBOX_CHANNEL).await?;
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}

impl Store {
    /// On PostgreSQL, wakes `wake` whenever any replica commits new inbox events (a webhook
    /// taken by a standby replica is processed by the holder at once, not at its next poll),
    /// as long as the returned guard is kept; reconnects after a lost connection. `None` on
    /// SQLite, where the one replica's intake wakes its own workers.
    pub fn listen_inbox(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> Option<Listening> {
        let url = self.postgres_url.clone()?;
        Some(Listening(tokio::spawn(async move {
            loop {
                let Err(e) = announcements(&url, &wake).await;
                tracing::warn!(error = %e, "the inbox's announcements are not heard; the inbox is polled meanwhile, listening again in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })))
    }

    /// Keeps the events of several deliveries in one transaction; returns how many of each
    /// delivery's were new. Waits at most [`INTAKE_WAIT`] for a connection; a transaction that
    /// fails anywhere (COMMIT included) is rolled back and its connection closed.
    pub async fn inbox_put_many(
        &self,
        deliveries: &[&[InboxEvent]],
        now: DateTime<Utc>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.write_conn(INTAKE_WAIT).await?;
        let write = async {
            let mut tx = self.begin_write(&mut conn).await?;
            let mut new = Vec::with_capacity(deliveries.len());
            for events in deliveries {
                new.push(insert_events(&mut tx, events, now).await?);
            }
            if self.backend() == Backend::Postgres && new.iter().any(|n| *n > 0) {
                // Delivered at commit, to the replica holding the portal's lease wherever the
                // delivery came in (see `Store::listen_inbox`).
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(INBOX_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(new)
        };
        // A connection taken just before the database went away can hang on its first
        // statement: the delivery is answered 503 in seconds, not held past its request timeout.
        let result = match tokio::time::timeout(INTAKE_WRITE, write).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(INTAKE_WRITE)),
        };
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(e) => {
                self.health.failed(&e.to_string());
                conn.discard();
            }
        }
        result
    }

    /// Deletes processed events received before `before`; returns how many.
    pub async fn inbox_prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM inbox WHERE processed_at IS NOT NULL AND received_at < $1")
            .bind(ms(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// How long processed inbox rows are kept.
    pub fn inbox_retention(&self) -> chrono::Duration {
        self.inbox_retention
    }

    /// Unprocessed events due at `now` and claimed by no pass, oldest first (read only; the
    /// worker [claims](Store::inbox_claim) them).
    pub async fn inbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<InboxRow>, StoreError> {
        let sql = format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE {INBOX_DUE} ORDER BY id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(inbox_row).collect())
    }

    /// Claims up to `limit` events due at `now`, oldest first, for one pass: selected (on
    /// PostgreSQL `FOR UPDATE SKIP LOCKED`, so rows another pass is claiming are skipped) and
    /// claimed until `now` + [`INBOX_CLAIM`] in one write transaction, so no other pass takes them
    /// meanwhile. The pass ends each one done, waiting (`inbox_retry`) or dead.
    pub async fn inbox_claim(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<InboxRow>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // One statement that writes first (SQLite takes its write lock at once; PostgreSQL locks
        // the rows it selects and skips those another pass is claiming).
        let sql = format!(
            "UPDATE inbox SET claimed_until = $3 WHERE id IN (SELECT id FROM inbox WHERE {INBOX_DUE} ORDER BY id LIMIT $2{lock}) \
             RETURNING {INBOX_COLUMNS}"
        );
        self.in_write(PATIENT_WAIT, async |tx| {
            let rows = sqlx::query(&sql)
                .bind(ms(now))
                .bind(limit as i64)
                .bind(ms(now + INBOX_CLAIM))
                .fetch_all(&mut **tx)
                .await?;
            let mut rows: Vec<InboxRow> = rows.iter().map(inbox_row).collect();
            rows.sort_by_key(|r| r.id);
            Ok(rows)
        })
        .await
    }

    /// Frees every claim on unprocessed events (at an inbox worker's start: a stopped or killed
    /// pass's events are due again at once); returns how many.
    pub async fn inbox_free_claims(&self) -> Result<u64, StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            Ok(sqlx::query(
                "UPDATE inbox SET claimed_until = NULL WHERE claimed_until IS NOT NULL AND processed_at IS NULL",
            )
            .execute(&mut **tx)
            .await?
            .rows_affected())
        })
        .await
    }

    /// Records a failed attempt at these events: they wait until `retry_at`, then are tried
    /// again. Nothing is dropped; `leadsync status` shows what waits and why.
    pub async fn inbox_retry(&self, ids: &[i64], error: &str, retry_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for id in ids {
                sqlx::query(
                    "UPDATE inbox SET attempts = attempts + 1, last_error = $1, next_at = $2, claimed_until = NULL WHERE id = $3",
                )
                    .bind(error)
                    .bind(ms(retry_at))
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Unprocessed events that failed at least once: how many, and the latest error.
    pub async fn inbox_failing(&self) -> Result<(u64, Option<String>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*), MAX(last_error) FROM inbox WHERE processed_at IS NULL AND dead_at IS NULL AND attempts > 0")
                .fetch_one(&self.pool)
                .await?;
        Ok((row.get::<i64, _>(0).max(0) as u64, row.get(1)))
    }

    /// Sets aside events that cannot be processed (a payload that does not parse, an object id
    /// that is no HubSpot id), each with its reason: never marked done, never tried again on
    /// its own; `leadsync status` lists them and `leadsync retry --kind inbox` puts them back.
    pub async fn inbox_dead(&self, dead: &[(i64, String)], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for (id, reason) in dead {
                sqlx::query(
                    "UPDATE inbox SET dead_at = $1, last_error = $2, attempts = attempts + 1, claimed_until = NULL WHERE id = $3",
                )
                    .bind(ms(now))
                    .bind(reason)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Dead events, oldest first.
    pub async fn inbox_dead_list(&self) -> Result<Vec<InboxDead>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, contact_id, subscription, last_error, dead_at FROM inbox WHERE dead_at IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(dead_row).collect())
    }

    /// Puts dead events back in the queue (all of them, or only `only`), due at `now`; returns
    /// those requeued.
    pub async fn inbox_requeue(&self, only: Option<i64>, now: DateTime<Utc>) -> Result<Vec<InboxDead>, StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            let rows = sqlx::query(
                "SELECT id, contact_id, subscription, last_error, dead_at FROM inbox \
                 WHERE dead_at IS NOT NULL AND ($1 < 0 OR id = $1) ORDER BY id",
            )
            .bind(only.unwrap_or(-1))
            .fetch_all(&mut **tx)
            .await?;
            let dead: Vec<InboxDead> = rows.iter().map(dead_row).collect();
            for d in &dead {
                sqlx::query(
                    "UPDATE inbox SET dead_at = NULL, attempts = 0, next_at = $1, claimed_until = NULL WHERE id = $2",
                )
                .bind(ms(now))
                .bind(d.id)
                .execute(&mut **tx)
                .await?;
            }
            Ok(dead)
        })
        .await
    }

    /// Marks events processed.
    pub async fn inbox_done(&self, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for id in ids {
                sqlx::query("UPDATE inbox SET processed_at = $1 WHERE id = $2")
                    .bind(ms(now))
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Unprocessed events waiting (dead ones aside) and the oldest one's receipt time (for `/metrics`).
    pub async fn inbox_depth(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*), MIN(received_at) FROM inbox WHERE processed_at IS NULL AND dead_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok((
            row.get::<i64, _>(0).max(0) as u64,
            row.get::<Option<i64>, _>(1).map(from_ms),
        ))
    }

    /// Every event kept (processed ones until pruned), for `status`.
    pub async fn inbox_total(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM inbox").fetch_one(&self.pool).await?;
        Ok(row.get::<i64, _>(0).max(0) as u64)
    }
}

/// One delivery's events, many rows a statement: each statement is a round trip to the
/// database (or to SQLite's worker thread), and a delivery holds up to 100 events.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[InboxEvent],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in events.chunks(INSERT_ROWS) {
        let mut sql =
            String::from("INSERT INTO inbox (dedupe_key, contact_id, subscription, payload, received_at) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 5;
            if i > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5);
        }
        sql.push_str(" ON CONFLICT (dedupe_key) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.dedupe_key)
                .bind(&e.contact_id)
                .bind(&e.subscription)
                .bind(&e.payload)
                .bind(ms(now));
        }
        inserted += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

/// Group commit for the webhook intake: one task writes the events of every delivery waiting
/// at that moment in one transaction, and each delivery is answered once that transaction has
/// committed (so "written before the 200" holds for each of them).
///
/// Concurrent deliveries otherwise each open a transaction and queue for the database's write
/// lock (SQLite has one writer; its busy handler sleeps up to 100 ms between retries), and each
/// pays its own commit. Batching costs an idle delivery nothing: a lone delivery is written at
/// once, and only deliveries that arrive while a commit is running wait for the next one.
#[derive(Debug, Clone)]
pub struct InboxWriter {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

/// One delivery waiting for its batch's commit; answered with how many of its events were new,
/// or the store's error.
#[derive(Debug)]
struct Pending {
    events: Vec<InboxEvent>,
    done: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// How often the writer prunes processed rows past the retention.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Writes a batch in one transaction and answers each delivery. When the transaction fails
/// because the database refused a row (not because it is unreachable or full), each delivery
/// is written again on its own, so one bad delivery never takes the others down with it.
async fn write_batch(store: &Store, batch: Vec<Pending>) {
    let deliveries: Vec<&[InboxEvent]> = batch.iter().map(|p| p.events.as_slice()).collect();
    let result = store.inbox_put_many(&deliveries, Utc::now()).await;
    match result {
        Ok(new) => {
            for (p, n) in batch.into_iter().zip(new) {
                let _ = p.done.send(Ok(n));
            }
        }
        Err(StoreError::Database(sqlx::Error::Database(_))) if batch.len() > 1 => {
            for p in batch {
                let one = store
                    .inbox_put_many(&[p.events.as_slice()], Utc::now())
                    .await
                    .map(|n| n[0])
                    .map_err(|e| e.to_string());
                let _ = p.done.send(one);
            }
        }
        Err(e) => {
            let e = e.to_string();
            for p in batch {
                let _ = p.done.send(Err(e.clone()));
            }
        }
    }
}

async fn prune_inbox(store: &Store) {
    let pruned = tokio::time::timeout(PATIENT_WAIT, store.inbox_prune(Utc::now() - store.inbox_retention())).await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(rows = n, "pruned processed inbox rows past the retention"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not prune the inbox; tried again in an hour"),
        Err(_) => tracing::warn!("pruning the inbox timed out; tried again in an hour"),
    }
}

/// Deliveries waiting at most (past it, a delivery waits for room before its write).
const QUEUE: usize = 4096;
/// Events written in one transaction at most.
const BATCH_EVENTS: usize = 5_000;

impl InboxWriter {
    /// Starts the writer task on the current runtime; it ends when every clone is dropped,
    /// after writing what it was given. It also prunes processed rows past the store's
    /// retention, at start and every [`PRUNE_EVERY`].
    pub fn spawn(store: Store) -> InboxWriter {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Pending>(QUEUE);
        // Pruning runs beside the writer, never in its way: a prune stuck on a database that
        // went away must not hold deliveries past their request timeout.
        let pruner = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut prune = tokio::time::interval(PRUNE_EVERY);
                prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    prune.tick().await;
                    prune_inbox(&store).await;
                }
            })
        };
        tokio::spawn(async move {
            loop {
                let Some(first) = rx.recv().await else {
                    pruner.abort();
                    break;
                };
                let mut n = first.events.len();
                let mut batch = vec![first];
                while n < BATCH_EVENTS {
                    let Ok(p) = rx.try_recv() else { break };
                    n += p.events.len();
                    batch.push(p);
                }
                metrics::histogram!("leadsync_inbox_group_commit_deliveries").record(batch.len() as f64);
                write_batch(&store, batch).await;
            }
        });
        InboxWriter { queue }
    }

    /// Keeps a delivery's events; returns once they are committed, with how many were new.
    pub async fn put(&self, events: Vec<InboxEvent>) -> Result<u64, String> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.queue
            .send(Pending { events, done })
            .await
            .map_err(|_| "inbox writer stopped".to_string())?;
        answer.await.map_err(|_| "inbox writer stopped".to_string())?
    }
}
