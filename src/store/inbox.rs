//! The webhook inbox: every accepted delivery is here before HubSpot gets its 200.
//!
//! Duplicates are dropped by a key built from what the event says (HubSpot's `eventId` is not
//! guaranteed unique), so a redelivery inserts nothing.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_ms, ms};

/// One event to keep.
#[derive(Debug, Clone)]
pub struct InboxEvent {
    /// Subscription type, object id, property, value and `occurredAt`, joined.
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

impl Store {
    /// Keeps a delivery's events in one transaction; returns how many were new.
    pub async fn inbox_put(&self, events: &[InboxEvent], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for e in events {
            let r = sqlx::query(
                "INSERT INTO inbox (dedupe_key, contact_id, subscription, payload, received_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(&e.dedupe_key)
            .bind(&e.contact_id)
            .bind(&e.subscription)
            .bind(&e.payload)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            inserted += r.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Unprocessed events due at `now` (not waiting after a failure), oldest first.
    pub async fn inbox_pending(&self, limit: usize) -> Result<Vec<InboxRow>, StoreError> {
        self.inbox_due(chrono::Utc::now(), limit).await
    }

    /// Unprocessed events due at `now`, oldest first.
    pub async fn inbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<InboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, contact_id, subscription, payload, received_at, attempts FROM inbox \
             WHERE processed_at IS NULL AND next_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(ms(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| InboxRow {
                id: r.get(0),
                contact_id: r.get(1),
                subscription: r.get(2),
                payload: r.get(3),
                received_at: from_ms(r.get(4)),
                attempts: r.get::<i64, _>(5).max(0) as u32,
            })
            .collect())
    }

    /// Records a failed attempt at these events: they wait until `retry_at`, then are tried
    /// again. Nothing is dropped; `leadsync status` shows what waits and why.
    pub async fn inbox_retry(&self, ids: &[i64], error: &str, retry_at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE inbox SET attempts = attempts + 1, last_error = $1, next_at = $2 WHERE id = $3")
                .bind(error)
                .bind(ms(retry_at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Unprocessed events that failed at least once: how many, and the latest error.
    pub async fn inbox_failing(&self) -> Result<(u64, Option<String>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*), MAX(last_error) FROM inbox WHERE processed_at IS NULL AND attempts > 0")
                .fetch_one(&self.pool)
                .await?;
        Ok((row.get::<i64, _>(0).max(0) as u64, row.get(1)))
    }

    /// Marks events processed.
    pub async fn inbox_done(&self, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE inbox SET processed_at = $1 WHERE id = $2")
                .bind(ms(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Unprocessed events and the oldest one's receipt time (for `/metrics`).
    pub async fn inbox_depth(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*), MIN(received_at) FROM inbox WHERE processed_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok((
            row.get::<i64, _>(0).max(0) as u64,
            row.get::<Option<i64>, _>(1).map(from_ms),
        ))
    }

    /// Every event ever kept (tests and `status`).
    pub async fn inbox_total(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM inbox").fetch_one(&self.pool).await?;
        Ok(row.get::<i64, _>(0).max(0) as u64)
    }
}
