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
            let mut tx = self.begin_write(&mut conn).await?;
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

    /// A write transaction on `conn`. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock
    /// first, waiting its turn under `busy_timeout`. A deferred `BEGIN` that reads and then writes
    /// cannot wait: if another connection committed since its read, SQLite refuses the upgrade at
    /// once with `database is locked` (SQLITE_BUSY_SNAPSHOT in WAL mode), and the work fails.
    pub(crate) async fn begin_write<'c>(
        &self,
        conn: &'c mut WriteConn,
    ) -> Result<sqlx::Transaction<'c, Any>, StoreError> {
        Ok(match self.backend {
            super::Backend::Sqlite => sqlx::Connection::begin_with(&mut *conn.0, "BEGIN IMMEDIATE").await?,
            super::Backend::Postgres => sqlx::Connection::begin(&mut *conn.0).await?,
        })
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
                let mut tx = self.begin_write(&mut conn).await?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{PATIENT_WAIT, Store};

    /// A store that cannot be opened says at which step, and after how long a wait for the lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_held_locked_past_the_busy_timeout_is_refused_naming_the_step_and_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let holder = Store::connect(&url).await.unwrap();
        let mut conn = holder.write_conn(PATIENT_WAIT).await.unwrap();
        let tx = holder.begin_write(&mut conn).await.unwrap();
        let Err(e) = Store::open_existing(&url).await else {
            panic!("opened though the write lock is held");
        };
        let text = e.to_string();
        assert!(
            text.starts_with("store: taking the migrations' lock (refused after 1"),
            "{text}"
        );
        assert!(text.contains("database is locked"), "{text}");
        tx.rollback().await.unwrap();
        Store::open_existing(&url).await.unwrap();
    }

    /// Two handles on one SQLite file (two pools, as the sync and a worker, or two commands):
    /// a write transaction that reads first, then writes after the other committed, must wait
    /// its turn, not fail with `database is locked` as a deferred `BEGIN` does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_reads_first_waits_for_another_writer_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let one = Store::connect(&url).await.unwrap();
        let two = Store::connect(&url).await.unwrap();
        one.set_cursor("a", "0").await.unwrap();
        let (read, read_done) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let one = one.clone();
            async move {
                one.in_write(PATIENT_WAIT, async |tx| {
                    sqlx::query("SELECT value FROM cursors WHERE name = 'a'")
                        .fetch_optional(&mut **tx)
                        .await?;
                    let _ = read.send(());
                    // The other handle tries to write meanwhile.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    super::super::set_cursor(&mut **tx, "a", "1").await
                })
                .await
            }
        });
        read_done.await.unwrap();
        let second = two.set_cursor("b", "2").await;
        let first = first.await.unwrap();
        assert!(first.is_ok(), "the first writer: {first:?}");
        assert!(second.is_ok(), "the second writer: {second:?}");
        assert_eq!(one.cursor("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(one.cursor("b").await.unwrap().as_deref(), Some("2"));
    }
}
