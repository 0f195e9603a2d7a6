//! Durable state behind one `Store`: SQLite by default (one file, WAL), PostgreSQL with a
//! `postgres://` URL, the same queries and behaviour on both.
//!
//! What it holds: sync cursors and backfill checkpoints (`cursors`), rotated refresh tokens
//! (`refresh_tokens`), per-contact state and the
//! last HubSpot values seen (`contacts`), the engagement ledger (`events`), the audit log of
//! every transition (`audit`), the outbox of HubSpot writes and Salesforce promotions with its
//! dead letters and review list (`outbox`), what leadsync itself wrote (`write_ledger`), the
//! webhook inbox (`inbox`), a running backfill's behaviour read ahead of its contacts (`staged`),
//! the row `/readyz` writes to prove the store can write (`health`), the sales SLA's
//! timers (`sla_timers`, their ladder steps in the outbox), every owner assignment with its
//! routing trace (`assignments`), and what leadsync last wrote to Salesforce records' context
//! fields (`salesforce_ledger`).
//!
//! Opening: [`Store::create_or_open`] (first start: creates a missing SQLite file and the schema)
//! or [`Store::open_existing`] (refuses a missing file or a database without the schema). A
//! failed write transaction closes its connection (see `write`), and a SQLite file deleted or
//! replaced while open makes every write fail with [`StoreError::FileGone`].
//!
//! Placeholders are written `$1, $2, …` in order of first appearance: PostgreSQL numbers them,
//! SQLite binds them in that order.

mod contacts;
mod context;
mod inbox;
mod lease;
mod outbox;
pub mod report;
mod routing;
mod rows;
mod schema;
mod sla;
mod staged;
pub mod status;
mod write;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

pub use contacts::{AuditRow, ContactRow, Evaluated, FunnelRow, Plan, Promoted, Removal, merged_state};
pub use inbox::{InboxDead, InboxEvent, InboxRow, InboxWriter, Listening};
pub use lease::{Lease, LeaseRow};
pub use outbox::{CLAIM, Lapsed, OutboxItem, OutboxKind, OutboxState};
pub use routing::{OwnerWrite, StoredAssignment};
pub use sla::{SlaPromoted, SlaTimer, step_key};
pub use staged::{contact_key, email_key};
pub use write::redact_url;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend leadsync supports.
    #[error("store url `{0}`: expected sqlite://FILE or postgres://…")]
    Url(String),
    /// The database refused or is unreachable.
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// Opening the store failed at this step (connecting, the journal mode, a migration).
    #[error("store: {step}: {source}")]
    Opening {
        /// What the opening was doing.
        step: String,
        /// The database's answer.
        source: sqlx::Error,
    },
    /// The configuration names a store that should exist and does not (a deleted SQLite file,
    /// an empty database): leadsync refuses to start afresh on it.
    #[error("store {store}: {why}")]
    Missing {
        /// The file or database (no password).
        store: String,
        /// What is missing and what to do.
        why: String,
    },
    /// The SQLite file was deleted or replaced while leadsync had it open: nothing written now
    /// would survive a restart.
    #[error("store {0}: the database file was deleted or replaced while open; restore it or restart with --init-store")]
    FileGone(String),
    /// No connection within the intake's short wait (the database is down or saturated).
    #[error("store: no database connection within {0:?} (is the database up?)")]
    Unavailable(std::time::Duration),
    /// This replica's lease of the portal was taken over by another: the write was refused and
    /// rolled back, and the replica stops its work for the portal.
    #[error(
        "store: the lease of portal {portal} moved past generation {generation} (another replica took it over); nothing was written"
    )]
    Fenced {
        /// The portal.
        portal: String,
        /// The generation this replica held.
        generation: i64,
    },
    /// A stored JSON column does not parse (a bug, or a hand-edited row).
    #[error("store: row {what} is not valid: {message}")]
    Corrupt {
        /// Which row.
        what: String,
        /// The parse error.
        message: String,
    },
}

/// A refresh token kept in the store (see [`Store::refresh_token`]).
#[derive(Clone, PartialEq, Eq)]
pub struct KeptToken {
    /// The latest token a refresh answered, when one was kept.
    pub token: Option<String>,
    /// SHA-256 (hex) of the configured token it descends from.
    pub configured_hash: String,
}

impl std::fmt::Debug for KeptToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptToken")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("configured_hash", &self.configured_hash)
            .finish()
    }
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
    /// The SQLite file and its identity when opened (`None` for PostgreSQL and `:memory:`).
    file: Option<Arc<write::SqliteFile>>,
    /// The last write failure of the intake, for `/readyz`.
    health: Arc<write::WriteHealth>,
    /// How long processed inbox rows are kept.
    inbox_retention: chrono::Duration,
    /// The lease every write transaction is checked against (see [`Store::fenced`]).
    fence: Option<Arc<lease::Fence>>,
    /// PostgreSQL's URL, for the inbox's announcements (`Store::listen_inbox`); never shown.
    postgres_url: Option<Arc<str>>,
}

/// Processed inbox rows are kept this long by default (HubSpot redelivers for up to a day;
/// a week leaves room to investigate).
pub const DEFAULT_INBOX_RETENTION_DAYS: u32 = 7;

/// The PostgreSQL advisory lock the migrations are applied under (any number, the same in every
/// leadsync: "leadsync" in ASCII).
const MIGRATIONS_LOCK: i64 = 0x6c65_6164_7379_6e63;

/// Names the step of [`Store::open`] a database error came from.
fn opening(step: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Opening {
        step: step.to_string(),
        source,
    }
}

impl Store {
    /// Connects and runs pending migrations, creating a SQLite file if there is none: the entry
    /// point of a first start (`run --init-store`, `demo`, tests). Same as [`Store::create_or_open`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::create_or_open(url).await
    }

    /// Opens the store, creating the SQLite file and the schema when they do not exist yet.
    pub async fn create_or_open(url: &str) -> Result<Store, StoreError> {
        Self::open(url, true).await
    }

    /// Opens a store that must already exist: a missing SQLite file, or a database without
    /// leadsync's schema, is refused with [`StoreError::Missing`] instead of starting an empty
    /// store (a deleted file, a wrong path, `status` run in the wrong folder). Pending
    /// migrations of an existing schema are applied.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let (backend, url, file) = if let Some(rest) = url.strip_prefix("sqlite://") {
            let path = rest.split('?').next().unwrap_or(rest);
            let memory = path.starts_with(":memory:");
            let file = (!memory && !path.is_empty()).then(|| PathBuf::from(path));
            if let (Some(path), false) = (&file, create) {
                if !path.exists() {
                    return Err(StoreError::Missing {
                        store: shown,
                        why: format!(
                            "the SQLite file {} does not exist; check store.url, or start once with --init-store to create it",
                            path.display()
                        ),
                    });
                }
            }
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") || memory {
                url.to_string()
            } else if create {
                format!("{url}{sep}mode=rwc")
            } else {
                format!("{url}{sep}mode=rw")
            };
            (Backend::Sqlite, url, file)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), None)
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
            // The sync and the workers wait for a connection as long as it takes; the intake
            // and `/readyz` wait `write::INTAKE_WAIT` at most (see `write_conn`).
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
            .await
            .map_err(opening("connecting"))?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(opening("setting journal_mode = WAL"))?;
        }
        if !create {
            let schema = sqlx::query("SELECT COUNT(*) FROM leadsync_migrations")
                .fetch_one(&pool)
                .await;
            if schema.is_err() {
                pool.close().await;
                return Err(StoreError::Missing {
                    store: shown,
                    why: "the database has no leadsync schema (no leadsync_migrations table); \
                          check store.url, or start once with --init-store to create it"
                        .into(),
                });
            }
        }
        let store = Store {
            pool,
            backend,
            file: file.map(|p| Arc::new(write::SqliteFile::new(p))),
            health: Arc::default(),
            inbox_retention: chrono::Duration::days(i64::from(DEFAULT_INBOX_RETENTION_DAYS)),
            fence: None,
            postgres_url: (backend == Backend::Postgres).then(|| Arc::from(url.as_str())),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Keeps processed inbox rows this long (default [`DEFAULT_INBOX_RETENTION_DAYS`]); the
    /// inbox writer prunes older ones.
    pub fn with_inbox_retention(mut self, retention: chrono::Duration) -> Store {
        self.inbox_retention = retention;
        self
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction for one step of the migrations, which processes opening one store at
    /// once take in turns instead of one failing (two `CREATE TABLE`s of one name collide on
    /// PostgreSQL even with `IF NOT EXISTS`): on SQLite the write lock first (see
    /// `Store::begin_write`), on PostgreSQL a transaction-scoped advisory lock, given back at
    /// commit or rollback, so a failed migration leaves no lock on a pooled connection.
    async fn migration_step(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATIONS_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let asked = std::time::Instant::now();
        let mut tx = self.migration_step().await.map_err(|source| StoreError::Opening {
            step: format!(
                "taking the migrations' lock (refused after {:.1} s)",
                asked.elapsed().as_secs_f64()
            ),
            source,
        })?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS leadsync_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(opening("creating leadsync_migrations"))?;
        tx.commit().await.map_err(opening("creating leadsync_migrations"))?;
        let serial = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        for m in schema::MIGRATIONS {
            // Read, then write, in turns with any other process migrating the same store.
            let mut tx = self.migration_step().await.map_err(|source| StoreError::Opening {
                step: format!("migration {} ({}): taking the migrations' lock", m.version, m.name),
                source,
            })?;
            let applied = async {
                let done = sqlx::query("SELECT version FROM leadsync_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_optional(&mut *tx)
                    .await?;
                if done.is_some() {
                    return Ok(());
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
                Ok::<(), sqlx::Error>(())
            }
            .await;
            match applied {
                Ok(()) => tx.commit().await,
                Err(e) => Err(e),
            }
            .map_err(|source| StoreError::Opening {
                step: format!("migration {} ({})", m.version, m.name),
                source,
            })?;
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
        self.in_write(write::PATIENT_WAIT, async |tx| set_cursor(&mut **tx, name, value).await)
            .await
    }

    /// Removes a named cursor (a finished backfill's checkpoint).
    pub async fn clear_cursor(&self, name: &str) -> Result<(), StoreError> {
        self.in_write(write::PATIENT_WAIT, async |tx| {
            sqlx::query("DELETE FROM cursors WHERE name = $1")
                .bind(name)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
        .await
    }

    /// The refresh token kept for `system` (`salesforce`), and the hash of the configured token
    /// it descends from; `None` before the first start with a configured token.
    pub async fn refresh_token(&self, system: &str) -> Result<Option<KeptToken>, StoreError> {
        let row = sqlx::query("SELECT token, configured_hash FROM refresh_tokens WHERE system = $1")
            .bind(system)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| KeptToken {
            token: r.get(0),
            configured_hash: r.get(1),
        }))
    }

    /// Starts over from a newly configured token (its hash): any kept token is dropped.
    pub async fn set_configured_token(&self, system: &str, configured_hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (system, token, configured_hash, updated_at) VALUES ($1, NULL, $2, $3) \
             ON CONFLICT (system) DO UPDATE SET token = NULL, configured_hash = excluded.configured_hash, \
             updated_at = excluded.updated_at",
        )
        .bind(system)
        .bind(configured_hash)
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps the token a refresh rotated to, for the configured token it descends from.
    pub async fn keep_refresh_token(&self, system: &str, token: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET token = $1, updated_at = $2 WHERE system = $3")
            .bind(token)
            .bind(ms(Utc::now()))
            .bind(system)
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
        self.in_write(write::PATIENT_WAIT, async |tx| {
            sqlx::query(
                "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value as i64)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await
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
