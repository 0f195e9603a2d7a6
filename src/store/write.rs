//! Writes that must never leave a connection behind in a half-done transaction, and the checks
//! that tell `/readyz` and the intake whether the store can write at all.
//!
//! A failed statement or a failed `COMMIT` (a full disk, a lost server) can leave the connection
//! inside an open transaction that still holds SQLite's write lock: returned to the pool, it
//! makes every later write fail with `database is locked` while reads still work. So a write
//! connection whose transaction failed is closed, never given back, and the pool opens a fresh
//! one when space (or the server) is back.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Any;
use sqlx::pool::PoolConnection;

use super::{Store, StoreError, ms};

/// How long the intake and `/readyz` wait for a connection: HubSpot gives up after 5 s, so a
/// database that is down answers 503 well before that.
pub(crate) const INTAKE_WAIT: Duration = Duration::from_secs(2);

/// How long the sync, the workers and the outbox wait for a connection: as long as the pool's
/// own limit; they retry later rather than refuse anyone.
pub(crate) const PATIENT_WAIT: Duration = Duration::from_secs(30);

/// After an intake write failed, `/readyz` fails this long even if its own probe succeeds
/// (a one-row probe can fit where a delivery does not, on a full disk).
const FAILURE_HOLD: Duration = Duration::from_secs(10);

/// The SQLite file a store was opened on, and its identity then.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SqliteFile {
    pub(crate) fn new(path: PathBuf) -> SqliteFile {
        let identity = identity(&path);
        SqliteFile { path, identity }
    }

    /// `Err` when the file is gone or is another file now (deleted, replaced): the open handles
    /// still work, but on an unlinked inode whose writes a restart would never see.
    fn check(&self) -> Result<(), StoreError> {
        match identity(&self.path) {
            Some(now) if self.identity.is_none_or(|then| then == now) => Ok(()),
            _ => Err(StoreError::FileGone(self.path.display().to_string())),
        }
    }
}

#[cfg(unix)]
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// The intake's last write failure, cleared by the next success.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl WriteHealth {
    pub(crate) fn failed(&self, why: &str) {
        if let Ok(mut f) = self.last_failure.lock() {
            *f = Some((Instant::now(), why.to_string()));
        }
    }

    pub(crate) fn succeeded(&self) {
        if let Ok(mut f) = self.last_failure.lock() {
            *f = None;
        }
    }

    fn recent_failure(&self) -> Option<String> {
        let f = self.last_failure.lock().ok()?;
        f.as_ref()
            .filter(|(at, _)| at.elapsed() < FAILURE_HOLD)
            .map(|(_, why)| why.clone())
    }
}

/// A pooled connection for one write transaction. [`WriteConn::discard`] it when anything in
/// the transaction failed.
pub(crate) struct WriteConn(pub(crate) PoolConnection<Any>);

impl WriteConn {
    /// Closes the connection instead of returning it to the pool: after a failed statement or
    /// COMMIT it may still be inside a transaction, holding the write lock.
    pub(crate) fn discard(mut self) {
        self.0.close_on_drop();
    }

    /// Discards the connection if the transaction's `result` is an error.
    pub(crate) fn settle<T>(self, result: &Result<T, StoreError>) {
        if result.is_err() {
            self.discard();
        }
    }
}

impl Store {
    /// Runs `work` in one write transaction on a connection had within `wait`: committed when
    /// it succeeds; on any failure (COMMIT included) rolled back and the connection closed.
    ///
    /// This is the one place the sync, the workers and the jobs commit through: a store
    /// [fenced](Store::fenced) by a lease checks its generation here first (see `lease`).
    pub(crate) async fn in_write<T>(
        &self,
        wait: Duration,
        work: impl AsyncFnOnce(&mut sqlx::Transaction<'_, Any>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_tx(wait, true, work).await
    }

    /// [`Store::in_write`] without the lease's fence: the lease's own statements.
    pub(crate) async fn in_write_unfenced<T>(
        &self,
        wait: Duration,
        work: impl AsyncFnOnce(&mut sqlx::Transaction<'_, Any>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_tx(wait, false, work).await
    }

    async fn write_tx<T>(
        &self,
        wait: Duration,
        fenced: bool,
        work: impl AsyncFnOnce(&mut sqlx::Transaction<'_, Any>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.write_conn(wait).await?;
        let result = async {
            let mut tx = sqlx::Connection::begin(&mut *conn.0).await?;
            if let (true, Some(fence)) = (fenced, &self.fence) {
                self.check_fence(&mut tx, fence).await?;
            }
            let out = work(&mut tx).await?;
            tx.commit().await?;
            Ok(out)
        }
        .await;
        conn.settle(&result);
        result
    }

    /// The SQLite file (`None` for PostgreSQL and `:memory:`).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.file.as_deref().map(|f| f.path.as_path())
    }

    /// A connection to write with, within `wait`, after checking the SQLite file is still the
    /// one opened.
    pub(crate) async fn write_conn(&self, wait: Duration) -> Result<WriteConn, StoreError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        match tokio::time::timeout(wait, self.pool.acquire()).await {
            Ok(conn) => Ok(WriteConn(conn?)),
            Err(_) => Err(StoreError::Unavailable(wait)),
        }
    }

    /// `Ok` when the store can write now (for `/readyz`): the SQLite file is still there, no
    /// intake write failed in the last seconds, and a one-row write commits within
    /// [`INTAKE_WAIT`].
    pub async fn can_write(&self) -> Result<(), String> {
        if let Some(why) = self.health.recent_failure() {
            return Err(format!("store cannot write: {why}"));
        }
        let probe = async {
            let mut conn = self.write_conn(INTAKE_WAIT).await?;
            let result = async {
                let mut tx = sqlx::Connection::begin(&mut *conn.0).await?;
                sqlx::query(
                    "INSERT INTO health (id, checked_at) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                )
                .bind(ms(chrono::Utc::now()))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<(), StoreError>(())
            }
            .await;
            if result.is_err() {
                conn.discard();
            }
            result
        };
        match tokio::time::timeout(INTAKE_WAIT * 2, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("store cannot write: {e}")),
            Err(_) => Err(format!("store cannot write: no answer within {:?}", INTAKE_WAIT * 2)),
        }
    }
}

/// A store URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
