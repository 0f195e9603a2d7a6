//! Durable state behind one `Store`: SQLite by default (one file, WAL), PostgreSQL with a
//! `postgres://` URL, the same queries and behaviour on both.
//!
//! What it holds: sync cursors and backfill checkpoints (`cursors`), per-contact state and the
//! last HubSpot values seen (`contacts`), the engagement ledger (`events`), the audit log of
//! every transition (`audit`), the outbox of HubSpot writes and Salesforce promotions with its
//! dead letters and review list (`outbox`), what leadsync itself wrote (`write_ledger`), the
//! webhook inbox (`inbox`), and a running backfill's behaviour read ahead of its contacts (`staged`).
//!
//! Placeholders are written `$1, $2, …` in order of first appearance: PostgreSQL numbers them,
//! SQLite binds them in that order.

mod contacts;
mod inbox;
mod outbox;
mod schema;
mod staged;

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use contacts::{ContactRow, Evaluated, FunnelRow};
pub use inbox::{InboxEvent, InboxRow, InboxWriter};
pub use outbox::{OutboxItem, OutboxKind, OutboxState};
pub use staged::{contact_key, email_key};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend leadsync supports.
    #[error("store url `{0}`: expected sqlite://FILE or postgres://…")]
    Url(String),
    /// The database refused or is unreachable.
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored JSON column does not parse (a bug, or a hand-edited row).
    #[error("store: row {what} is not valid: {message}")]
    Corrupt {
        /// Which row.
        what: String,
        /// The parse error.
        message: String,
    },
}

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, WAL journal.
    Sqlite,
    /// A server.
    Postgres,
}

/// leadsync's state.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating a SQLite file if needed) and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") || rest.starts_with(":memory:") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            // Every connection to `:memory:` is a database of its own: one connection then.
            .max_connections(match backend {
                Backend::Sqlite if url.contains(":memory:") => 1,
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Writers wait for each other instead of failing with SQLITE_BUSY.
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS leadsync_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        let serial = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        for m in schema::MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query("SELECT version FROM leadsync_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            for statement in m.sql.replace("{serial}", serial).split(';') {
                if !statement.trim().is_empty() {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
            }
            sqlx::query("INSERT INTO leadsync_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(ms(Utc::now()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A named cursor or checkpoint.
    pub async fn cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Sets a named cursor or checkpoint.
    pub async fn set_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        set_cursor(&self.pool, name, value).await
    }

    /// Removes a named cursor (a finished backfill's checkpoint).
    pub async fn clear_cursor(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cursors WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A named counter (the round-robin position), 0 when never set.
    pub async fn counter(&self, name: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0).max(0) as u64).unwrap_or(0))
    }

    /// Sets a named counter.
    pub async fn set_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn set_cursor<'e, E>(executor: E, name: &str, value: &str) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(value)
    .bind(ms(Utc::now()))
    .execute(executor)
    .await?;
    Ok(())
}

/// Epoch milliseconds, the store's time format.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Back from epoch milliseconds.
pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        message: e.to_string(),
    }
}

impl Store {
    /// Closes every connection (shutdown; tests simulate a database that went away).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
