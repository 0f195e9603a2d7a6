//! Replicas: several `leadsync run` processes on one PostgreSQL store. Every replica serves
//! webhook intake into the shared inbox and the status endpoints; only the holder of the
//! portal's lease (`store::lease`) runs the schedules, the inbox workers and the outbox worker,
//! so only it calls HubSpot and Salesforce for the portal and the portal's rate budget holds
//! across replicas. The holder's store is fenced by the lease's generation: once another
//! replica takes the lease over, every write the old holder still tries is refused.
//!
//! SQLite serves one replica: a second `run` on the same file is refused while the first holds
//! the lock file beside it (released by the kernel when the holder dies, `kill -9` included).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::store::{Lease, Store, StoreError};

/// This process among the replicas: its id, the portal it competes for and the lease time.
#[derive(Debug, Clone)]
pub struct Replica {
    /// `host-pid-random`: unique per process, so a restarted replica is a new holder.
    pub id: String,
    /// The lease's key: the HubSpot portal id, or `default`.
    pub portal: String,
    /// How long a lease lasts unless renewed; renewed every third of it.
    pub ttl: StdDuration,
    /// No other replica can run (this process holds the SQLite store's lock file): the lease
    /// is seized at once, not waited for.
    pub exclusive: bool,
    /// The slots this process's portals share (`replicas.max_portals_per_replica`): a lease is
    /// tried only with a slot free, and the slot is held as long as the lease. `None`: no cap.
    slots: Option<Arc<Semaphore>>,
}

/// `host-pid-random`: one per process, so a restarted replica is a new holder, and every
/// portal of one process names the same replica.
pub fn replica_id() -> String {
    format!("{}-{}-{:08x}", host(), std::process::id(), rand::random::<u32>())
}

impl Replica {
    /// A replica of this process for the portal (`hubspot.portal_id`, else `default`).
    pub fn new(portal_id: Option<u64>, ttl: StdDuration) -> Replica {
        Replica {
            id: replica_id(),
            portal: portal_id.map_or_else(|| "default".to_string(), |p| p.to_string()),
            ttl,
            exclusive: false,
            slots: None,
        }
    }

    /// This replica sharing `slots` (as many as the cap) with the other portals of its process.
    pub fn with_slots(mut self, slots: Arc<Semaphore>) -> Replica {
        self.slots = Some(slots);
        self
    }

    fn chrono_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(15))
    }

    /// Runs `work` with `store` [fenced](Store::fenced) by the lease each time this replica
    /// holds it, until `stop` turns true. `work` gets a stop signal of its own, turned true on
    /// `stop` or when the lease is lost; while it finishes (its last outbox drain) the lease is
    /// still renewed. A stopping holder gives the lease up, so another replica takes it at once.
    pub async fn lead<F, Fut>(&self, store: &Store, mut stop: watch::Receiver<bool>, work: F) -> anyhow::Result<()>
    where
        F: Fn(Store, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let store = store.clone();
        let mut standby_logged = false;
        let mut full_logged = false;
        while !*stop.borrow() {
            // With a cap, a slot first: without one this replica stands by for the portal.
            let slot = match &self.slots {
                None => None,
                Some(slots) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        if !full_logged {
                            info!(replica = %self.id, portal = %self.portal, "this replica holds as many portals' leases as its cap allows: serving this portal's webhooks, standing by");
                            full_logged = true;
                        }
                        // Queued for the next slot given back (the semaphore is first come, first
                        // served), up to a pause: a portal whose loop tried while another's held
                        // the slot for a moment would otherwise keep missing it in step with it.
                        let waited = tokio::select! {
                            w = tokio::time::timeout(self.ttl / 3, slots.clone().acquire_owned()) => w,
                            _ = stop.changed() => continue,
                        };
                        match waited {
                            Ok(Ok(slot)) => Some(slot),
                            _ => continue,
                        }
                    }
                },
            };
            let (now, ttl) = (Utc::now(), self.chrono_ttl());
            let taken = if self.exclusive {
                store.seize_lease(&self.portal, &self.id, now, ttl).await.map(Some)
            } else {
                store.take_lease(&self.portal, &self.id, now, ttl).await
            };
            let lease = match taken {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    // The slot goes back while waiting: another portal of this process may use it.
                    drop(slot);
                    if !standby_logged {
                        info!(replica = %self.id, portal = %self.portal, "another replica holds the portal's lease: serving webhooks, standing by");
                        standby_logged = true;
                    }
                    self.pause(&mut stop).await;
                    continue;
                }
                Err(e) => {
                    drop(slot);
                    warn!(error = %e, "could not try the portal's lease; trying again");
                    self.pause(&mut stop).await;
                    continue;
                }
            };
            standby_logged = false;
            full_logged = false;
            info!(replica = %self.id, portal = %self.portal, generation = lease.generation, "this replica holds the portal's lease: running its jobs and workers");
            metrics::counter!("leadsync_lease_takeovers_total", crate::sync::portal::metric_labels()).increment(1);
            self.hold(&store, lease, &mut stop, &work).await?;
            // The lease is given up or lost: its slot goes back to the process's portals.
            drop(slot);
        }
        Ok(())
    }

    /// Runs `work` under `lease`, renewing it, until the work ends.
    async fn hold<F, Fut>(
        &self,
        store: &Store,
        mut lease: Lease,
        stop: &mut watch::Receiver<bool>,
        work: &F,
    ) -> anyhow::Result<()>
    where
        F: Fn(Store, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let (work_stop, work_stopped) = watch::channel(false);
        let running = work(store.fenced(&lease), work_stopped);
        tokio::pin!(running);
        let mut renew = tokio::time::interval(self.ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        let mut lost = false;
        let result = loop {
            tokio::select! {
                r = &mut running => break r,
                _ = renew.tick(), if !lost => match store.renew_lease(&lease, Utc::now(), self.chrono_ttl()).await {
                    Ok(Some(renewed)) => lease = renewed,
                    Ok(None) => {
                        warn!(replica = %self.id, generation = lease.generation, "the portal's lease was taken over: stopping this replica's work for it");
                        lost = true;
                        let _ = work_stop.send(true);
                    }
                    Err(e) if Utc::now() >= lease.expires_at => {
                        warn!(error = %e, "the portal's lease could not be renewed and has expired: stopping this replica's work for it");
                        lost = true;
                        let _ = work_stop.send(true);
                    }
                    Err(e) => warn!(error = %e, "the portal's lease could not be renewed; trying again"),
                },
                _ = stop.changed() => if *stop.borrow() { let _ = work_stop.send(true); },
            }
        };
        if !lost {
            if let Err(e) = store.release_lease(&lease).await {
                warn!(error = %e, "could not give the portal's lease up; it expires on its own");
            }
        }
        match result {
            // Writes refused by the fence once the lease moved on: the new holder does them.
            Err(e) if lost || fenced_error(&e) => {
                warn!(error = %e, "this replica's work for the portal ended after losing the lease");
                Ok(())
            }
            r => r,
        }
    }

    async fn pause(&self, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.ttl / 3) => {},
            _ = stop.changed() => {},
        }
    }
}

fn fenced_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Fenced { .. })))
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// The lock file that keeps a second `leadsync run` off a SQLite store; held until dropped.
#[derive(Debug)]
pub struct SqliteLock {
    _file: std::fs::File,
}

/// Why a second replica is refused on SQLite.
#[derive(Debug, thiserror::Error)]
#[error(
    "store {db}: another `leadsync run` holds this SQLite store (lock file {lock}); SQLite serves one replica: \
     stop the other, or give several replicas one PostgreSQL store"
)]
pub struct SqliteTaken {
    /// The database file.
    pub db: String,
    /// The lock file beside it.
    pub lock: String,
}

impl SqliteLock {
    /// Locks `<database>.lock` beside the SQLite file, or says another run holds it.
    pub fn take(db: &Path) -> anyhow::Result<SqliteLock> {
        let lock = lock_path(db);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| anyhow::anyhow!("lock file {}: {e}", lock.display()))?;
        match try_lock(&file) {
            Ok(true) => Ok(SqliteLock { _file: file }),
            Ok(false) => Err(SqliteTaken {
                db: db.display().to_string(),
                lock: lock.display().to_string(),
            }
            .into()),
            Err(e) => Err(anyhow::anyhow!("lock file {}: {e}", lock.display())),
        }
    }
}

/// An exclusive `flock` without waiting: `false` when another open file holds it. The kernel
/// drops it with the last descriptor, so a killed holder leaves no stale lock.
#[cfg(unix)]
fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: `flock` on a descriptor this `File` owns and keeps open; no memory is shared.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

/// Elsewhere no lock is taken: one replica per SQLite store is then the operator's to keep.
#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// On SQLite, the lock of the store's file (`None` for PostgreSQL and `:memory:`).
pub fn lock_sqlite(store: &Store) -> anyhow::Result<Option<SqliteLock>> {
    store.sqlite_path().map(SqliteLock::take).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_sqlite_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let first = SqliteLock::take(&db).unwrap();
        let e = SqliteLock::take(&db).unwrap_err();
        assert!(
            e.to_string().contains("another `leadsync run` holds this SQLite store"),
            "{e}"
        );
        drop(first);
        SqliteLock::take(&db).unwrap();
    }

    #[test]
    fn the_portal_id_keys_the_lease() {
        let r = Replica::new(Some(123), StdDuration::from_secs(3));
        assert_eq!(r.portal, "123");
        assert_eq!(Replica::new(None, StdDuration::from_secs(3)).portal, "default");
        assert_ne!(r.id, Replica::new(Some(123), StdDuration::from_secs(3)).id);
    }
}
