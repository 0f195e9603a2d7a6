//! The outbox: side effects decided and saved, carried out later, each exactly once per key.
//!
//! A HubSpot write is keyed by contact (a newer desired state replaces a pending one); a
//! promotion is keyed by contact and recycle cycle (a second request for the same cycle adds
//! nothing, even once the first is done). Items that fail for good become dead letters, items
//! that need a person go to the review list; both can be put back in the queue.
//!
//! The outbox worker *claims* the HubSpot writes and promotions it carries out
//! ([`Store::claim`]): in one write transaction it selects due items (on PostgreSQL `FOR UPDATE
//! SKIP LOCKED`: rows another transaction is claiming are skipped, not waited for) and marks them
//! `sending` until [`CLAIM`] from now, so two drains on one store, in one process or in two
//! replicas, never take the same item. A claim whose drain stopped before saving its outcome runs
//! out and is taken again ([`Store::reclaim`]); at a worker's start, every claim is (what a crash
//! left).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::write::PATIENT_WAIT;
use super::{Backend, Store, StoreError, from_ms, ms};

/// How long a claimed item stays its drain's: longer than one call with its retries, after which
/// another drain takes it as cut off.
pub const CLAIM: chrono::Duration = chrono::Duration::minutes(10);

/// Which claims [`Store::reclaim`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapsed {
    /// Claims that ran out: what a drain of a running process left when it failed.
    Expired,
    /// Every claim: at a worker's start, what a stopped or killed process left.
    Every,
}

/// What an outbox item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// Write properties (and the lifecycle stage) to a HubSpot contact.
    HubSpotWrite,
    /// Create or link the Salesforce records of a sales-qualified lead.
    Promote,
    /// Carry out one step of an SLA's breach ladder (keyed per timer and step: once, ever).
    SlaStep,
    /// Tell a contact's owner of a buying signal: a Salesforce Task (keyed per contact, signal
    /// and day: once, ever).
    OwnerAlert,
    /// Keep a promoted contact's marketing context current on its Salesforce records (one
    /// pending item per contact: the latest values win, like a HubSpot write).
    SalesforceContext,
}

impl OutboxKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::HubSpotWrite => "hubspot_write",
            OutboxKind::Promote => "promote",
            OutboxKind::SlaStep => "sla_step",
            OutboxKind::OwnerAlert => "owner_alert",
            OutboxKind::SalesforceContext => "salesforce_context",
        }
    }
}

/// Where an outbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting to be carried out (possibly after a retry delay).
    Pending,
    /// Handed to the remote system; if leadsync stops now, the next run checks whether it landed.
    Sending,
    /// Carried out.
    Done,
    /// Failed for good; kept with the error until someone fixes the cause and requeues it.
    Dead,
    /// Needs a person (an ambiguous duplicate in Salesforce).
    Review,
}

impl OutboxState {
    fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Done => "done",
            OutboxState::Dead => "dead",
            OutboxState::Review => "review",
        }
    }

    fn parse(s: &str) -> OutboxState {
        match s {
            "done" => OutboxState::Done,
            "sending" => OutboxState::Sending,
            "dead" => OutboxState::Dead,
            "review" => OutboxState::Review,
            _ => OutboxState::Pending,
        }
    }
}

/// One outbox item.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// HubSpot contact id.
    pub contact_id: String,
    /// JSON payload.
    pub payload: String,
    /// Where it is.
    pub state: OutboxState,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When it was first enqueued.
    pub created_at: DateTime<Utc>,
}

pub(super) async fn enqueue<'e, E>(
    executor: E,
    kind: OutboxKind,
    key: &str,
    contact_id: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let on_conflict = if kind.replaces() { REPLACE } else { "DO NOTHING" };
    let sql = format!(
        "INSERT INTO outbox (key, kind, contact_id, payload, state, attempts, next_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7) ON CONFLICT (key) {on_conflict}"
    );
    sqlx::query(&sql)
        .bind(key)
        .bind(kind.as_str())
        .bind(contact_id)
        .bind(payload)
        .bind(ms(now))
        .bind(ms(now))
        .bind(ms(now))
        .execute(executor)
        .await?;
    Ok(())
}

/// One item for [`enqueue_many`]: what [`enqueue`] takes.
pub(super) struct Queued<'a> {
    pub kind: OutboxKind,
    pub key: &'a str,
    pub contact_id: &'a str,
    pub payload: &'a str,
    pub at: DateTime<Utc>,
}

/// The kinds whose later item of a key replaces the queued one (the latest desired values win;
/// a done write becomes pending again with them). An item of any other kind happens once per
/// key, whatever comes after (a promotion, a ladder step, an alert).
const REPLACING: [OutboxKind; 2] = [OutboxKind::HubSpotWrite, OutboxKind::SalesforceContext];

/// What a replacing item does to the queued one of its key.
const REPLACE: &str = "DO UPDATE SET payload = excluded.payload, state = 'pending', attempts = 0, \
                       next_at = excluded.next_at, last_error = NULL, updated_at = excluded.updated_at";

impl OutboxKind {
    fn replaces(self) -> bool {
        REPLACING.contains(&self)
    }
}

/// [`enqueue`] of each item in order, as one statement over a JSON array of rows: the same rows
/// and ids as one call per item would leave (an item given twice keeps its first place, and
/// the last payload where a later item replaces, the first where a key happens once).
pub(super) async fn enqueue_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    items: &[Queued<'_>],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    // PostgreSQL refuses to update one row twice in a statement: one row per key.
    let mut place: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(items.len());
    let mut kept: Vec<&Queued<'_>> = Vec::with_capacity(items.len());
    for item in items {
        match place.get(item.key) {
            Some(&i) if item.kind.replaces() => kept[i] = item,
            Some(_) => {}
            None => {
                place.insert(item.key, kept.len());
                kept.push(item);
            }
        }
    }
    let rows: Vec<serde_json::Value> = kept
        .iter()
        .map(|q| {
            serde_json::json!([
                q.key,
                q.kind.as_str(),
                q.contact_id,
                q.payload,
                "pending",
                0,
                ms(q.at),
                ms(q.at),
                ms(q.at)
            ])
        })
        .collect();
    let replacing: Vec<String> = REPLACING.iter().map(|k| format!("'{}'", k.as_str())).collect();
    // The update applies only to the kinds that replace; for the others the conflict leaves the
    // row as it is, as `DO NOTHING` does.
    let tail = format!(
        " ON CONFLICT (key) {REPLACE} WHERE excluded.kind IN ({})",
        replacing.join(", ")
    );
    let sql = super::rows::insert(
        backend,
        "outbox (key, kind, contact_id, payload, state, attempts, next_at, created_at, updated_at)",
        &[
            None,
            None,
            None,
            None,
            None,
            Some("BIGINT"),
            Some("BIGINT"),
            Some("BIGINT"),
            Some("BIGINT"),
        ],
        &tail,
    );
    sqlx::query(&sql)
        .bind(super::rows::bound(&rows)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const COLUMNS: &str = "id, key, contact_id, payload, state, attempts, last_error, created_at";

/// Due items a claim reads per contact it wants: a contact has few items of one kind (a write
/// of its values, one of its Salesforce ids), so a claim of `limit` contacts reads at most
/// this many times `limit` items to find them; fewer contacts found are claimed the next time.
const CANDIDATES_PER_CONTACT: usize = 4;

/// What keeps a contact's HubSpot writes back while its promotion is due or under way: the
/// contacts promoting, listed once per claim (a correlated `NOT EXISTS` read every promotion
/// ever queued for each candidate: about a second a claim with 10,000 writes pending, so a
/// backfill's CPU grew with the square of its size).
const PROMOTING: &str = " AND i.contact_id NOT IN (SELECT p.contact_id FROM outbox p WHERE p.kind = 'promote' \
                         AND p.state IN ('sending', 'pending') AND (p.state = 'sending' OR p.next_at <= $2))";

/// Claimed items oldest first (`RETURNING` keeps no order).
fn in_order(mut items: Vec<OutboxItem>) -> Vec<OutboxItem> {
    items.sort_by_key(|i| i.id);
    items
}

fn item(r: &sqlx::any::AnyRow) -> OutboxItem {
    OutboxItem {
        id: r.get(0),
        key: r.get(1),
        contact_id: r.get(2),
        payload: r.get(3),
        state: OutboxState::parse(&r.get::<String, _>(4)),
        attempts: r.get::<i64, _>(5).max(0) as u32,
        last_error: r.get(6),
        created_at: from_ms(r.get(7)),
    }
}

impl Store {
    /// Adds one item outside an evaluation (a write-back of Salesforce ids, say).
    pub async fn enqueue(
        &self,
        kind: OutboxKind,
        key: &str,
        contact_id: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            enqueue(&mut **tx, kind, key, contact_id, payload, now).await
        })
        .await
    }

    /// Pending items of a kind that are due at `now`, oldest first.
    pub async fn due(&self, kind: OutboxKind, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE kind = $1 AND state = 'pending' AND next_at <= $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(item).collect())
    }

    /// The lock a claim's select takes: on PostgreSQL, rows another transaction holds are skipped;
    /// SQLite has one writer at a time, so its write transaction alone makes the claim exclusive.
    fn skip_locked(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Claims the pending items of a kind due at `now` of up to `limit` contacts, oldest first
    /// (every due item of each contact): selected and marked `sending` (claimed until `now` + [`CLAIM`]) in one write transaction, so no other
    /// drain takes them. Each ends done, failed, or [`released`](Store::release).
    pub async fn claim(
        &self,
        kind: OutboxKind,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.claim_where(kind, "", now, limit).await
    }

    /// Claims HubSpot writes like [`Store::claim`], except those of contacts whose promotion is
    /// due or under way: their values wait to go out with the Salesforce ids the promotion
    /// writes back, in one update.
    pub async fn claim_writes_beside_promotions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.claim_where(OutboxKind::HubSpotWrite, PROMOTING, now, limit).await
    }

    async fn claim_where(
        &self,
        kind: OutboxKind,
        also: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        // `limit` contacts, with every due item of each: several items of one contact (its
        // values, the Salesforce ids its promotion wrote back) go out in one update. One
        // statement that writes first: SQLite takes its write lock at once (a read transaction
        // upgraded later can be refused as busy), PostgreSQL locks the rows it selects and
        // skips those another claim holds.
        let sql = self.claim_sql(also);
        self.in_write(PATIENT_WAIT, async |tx| {
            let rows = sqlx::query(&sql)
                .bind(kind.as_str())
                .bind(ms(now))
                .bind(limit as i64)
                .bind(ms(now + CLAIM))
                .bind((limit * CANDIDATES_PER_CONTACT) as i64)
                .fetch_all(&mut **tx)
                .await?;
            Ok(in_order(rows.iter().map(item).collect()))
        })
        .await
    }

    /// The claim's statement: `also` narrows the contacts taken. The contacts are those of the
    /// first due items in `outbox_due`'s order (due time, then id), read from the index as far
    /// as `$5` items and no further; their items are then found by contact (`outbox_contact`,
    /// named on SQLite, whose planner otherwise walks every due item again). Grouping and
    /// sorting every due item instead cost each claim time in proportion to the backlog: 34 ms
    /// a claim with 22,000 writes due, 1.1 ms this way (Python's `sqlite3` on a copy of the
    /// bench's store).
    fn claim_sql(&self, also: &str) -> String {
        let by_contact = match self.backend() {
            super::Backend::Sqlite => " INDEXED BY outbox_contact",
            super::Backend::Postgres => "",
        };
        format!(
            "UPDATE outbox SET state = 'sending', next_at = $4 WHERE id IN (SELECT id FROM outbox{by_contact} \
             WHERE kind = $1 AND state = 'pending' AND next_at <= $2 AND contact_id IN \
             (SELECT d.contact_id FROM (SELECT i.contact_id, i.next_at, i.id FROM outbox i \
             WHERE i.kind = $1 AND i.state = 'pending' AND i.next_at <= $2{also} ORDER BY i.next_at, i.id LIMIT $5) d \
             GROUP BY d.contact_id ORDER BY MIN(d.next_at), MIN(d.id) LIMIT $3){}) RETURNING {COLUMNS}",
            self.skip_locked()
        )
    }

    /// SQLite's plan (`EXPLAIN QUERY PLAN`, one line per row) for the claim of HubSpot writes
    /// beside promotions, to show the contacts promoting are listed once, not looked up again
    /// for each candidate.
    pub async fn claim_writes_plan(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!("EXPLAIN QUERY PLAN {}", self.claim_sql(PROMOTING));
        let rows = sqlx::query(&sql)
            .bind(OutboxKind::HubSpotWrite.as_str())
            .bind(0_i64)
            .bind(100_i64)
            .bind(0_i64)
            .bind(100_i64 * CANDIDATES_PER_CONTACT as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(3)).collect())
    }

    /// Claims again the `sending` items of a kind whose claim `lapsed` by `now` (their drain
    /// stopped between its call and its outcome), oldest first, for the caller to check or redo.
    pub async fn reclaim(
        &self,
        kind: OutboxKind,
        lapsed: Lapsed,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let expired = match lapsed {
            Lapsed::Expired => " AND next_at <= $2",
            // Bound all the same, so both statements take the same parameters.
            Lapsed::Every => " AND $2 = $2",
        };
        let sql = format!(
            "UPDATE outbox SET next_at = $3 WHERE id IN (SELECT id FROM outbox WHERE kind = $1 AND state = 'sending'{expired}{}) \
             RETURNING {COLUMNS}",
            self.skip_locked()
        );
        self.in_write(PATIENT_WAIT, async |tx| {
            let rows = sqlx::query(&sql)
                .bind(kind.as_str())
                .bind(ms(now))
                .bind(ms(now + CLAIM))
                .fetch_all(&mut **tx)
                .await?;
            Ok(in_order(rows.iter().map(item).collect()))
        })
        .await
    }

    /// Gives claimed items back to the queue as they were, due at `now` (a pause: nothing was
    /// attempted).
    pub async fn release(&self, items: &[OutboxItem], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_each(
            items,
            "state = 'pending', next_at = $1",
            " AND outbox.state = 'sending'",
            now,
        )
        .await
    }

    /// Sets `set` (`$1` the time `at`) on each item still holding the payload it was taken with
    /// (an item replaced by newer values meanwhile is left alone) and meeting `also`, in one
    /// statement over the items' ids and payloads.
    async fn update_each(
        &self,
        items: &[OutboxItem],
        set: &str,
        also: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let b = self.backend();
        let sql = format!(
            "UPDATE outbox SET {set} FROM {} WHERE outbox.id = {} AND outbox.payload = {}{also}",
            super::rows::rows(b, 2),
            super::rows::col(b, 0, Some("BIGINT")),
            super::rows::col(b, 1, None),
        );
        let rows: Vec<serde_json::Value> = items.iter().map(|it| serde_json::json!([it.id, it.payload])).collect();
        let rows = super::rows::bound(&rows)?;
        self.in_write(PATIENT_WAIT, async |tx| {
            sqlx::query(&sql).bind(ms(at)).bind(&rows).execute(&mut **tx).await?;
            Ok(())
        })
        .await
    }

    /// Items of a kind in a state (dead letters, the review list), oldest first.
    pub async fn outbox_in(&self, kind: OutboxKind, state: OutboxState) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE kind = $1 AND state = $2 ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(item).collect())
    }

    /// Number of items per kind and state.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state ORDER BY 1, 2")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2).max(0) as u64))
            .collect())
    }

    /// Marks items done, unless they were replaced by newer desired values meanwhile.
    pub async fn done(&self, items: &[OutboxItem], now: DateTime<Utc>) -> Result<(), StoreError> {
        // `next_at` back from the claim's expiry to the moment it was done.
        self.update_each(items, "state = 'done', updated_at = $1, next_at = $1", "", now)
            .await
    }

    /// Marks items as handed to the remote system (see [`OutboxState::Sending`]).
    pub async fn sending(&self, items: &[OutboxItem]) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for it in items {
                sqlx::query("UPDATE outbox SET state = 'sending' WHERE id = $1 AND payload = $2 AND state = 'pending'")
                    .bind(it.id)
                    .bind(&it.payload)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: pending again at `retry_at`, or `Dead`/`Review` for good.
    pub async fn failed(
        &self,
        item: &OutboxItem,
        error: &str,
        next: OutboxState,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Only the attempt at these values: newer desired values queued meanwhile stay pending.
        let changed = self
            .in_write(PATIENT_WAIT, async |tx| {
                Ok(sqlx::query(
                    "UPDATE outbox SET state = $1, attempts = attempts + 1, last_error = $2, next_at = $3, updated_at = $4 \
                     WHERE id = $5 AND payload = $6",
                )
                .bind(next.as_str())
                .bind(error)
                .bind(ms(retry_at))
                .bind(ms(Utc::now()))
                .bind(item.id)
                .bind(&item.payload)
                .execute(&mut **tx)
                .await?
                .rows_affected())
            })
            .await?;
        // Every dead letter is counted here, whichever worker set it aside (promotions and
        // HubSpot writes alike), under the portal whose worker it is (`sync::portal`).
        if next == OutboxState::Dead && changed > 0 {
            metrics::counter!("leadsync_dead_letters_total", crate::sync::portal::metric_labels()).increment(changed);
        }
        Ok(())
    }

    /// Puts dead letters (or review items) of a kind back in the queue, after the cause is
    /// fixed: all of them, or only the item `only`. Returns the items requeued (`leadsync retry`).
    pub async fn requeue(
        &self,
        kind: OutboxKind,
        from: OutboxState,
        only: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            let sql = format!(
                "SELECT {COLUMNS} FROM outbox WHERE kind = $1 AND state = $2 AND ($3 < 0 OR id = $3) ORDER BY id"
            );
            let rows = sqlx::query(&sql)
                .bind(kind.as_str())
                .bind(from.as_str())
                .bind(only.unwrap_or(-1))
                .fetch_all(&mut **tx)
                .await?;
            let items: Vec<OutboxItem> = rows.iter().map(item).collect();
            for it in &items {
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_at = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(ms(now))
                .bind(ms(now))
                .bind(it.id)
                .execute(&mut **tx)
                .await?;
            }
            Ok(items)
        })
        .await
    }
}
