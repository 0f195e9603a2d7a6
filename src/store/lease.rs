//! Leases: which replica does a portal's work (pulls, rescores, the SLA sweep, the inbox and
//! outbox workers) while every replica serves webhook intake.
//!
//! One row per portal in `leases`: its holder (a replica id), a generation that grows by one at
//! every takeover, and when the lease expires unless renewed. Taking is one atomic statement
//! (an `INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <= now`), so two replicas racing for
//! a free lease cannot both win. Times are passed in (the daemon's clock; replicas' clocks must
//! agree to well within the lease time, which NTP gives).
//!
//! Fencing: a [`Store::fenced`] store checks, first thing in every write transaction
//! ([`Store::in_write`]), that the lease still has its generation, and holds that row against a
//! takeover until it commits (PostgreSQL `FOR KEY SHARE`, which a takeover's `FOR UPDATE` waits
//! for and the holder's own renewal, an update of no key column, does not; SQLite's one writer).
//! A paused old holder that lost the lease gets [`StoreError::Fenced`] and writes nothing.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::write::PATIENT_WAIT;
use super::{Backend, Store, StoreError, ms};

/// A lease held: the portal, who holds it and the generation its writes are fenced by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The portal the lease is for (its HubSpot portal id, or `default`).
    pub portal: String,
    /// The replica holding it.
    pub holder: String,
    /// Grows by one at every takeover; the fence of the holder's writes.
    pub generation: i64,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// The lease row as stored, whoever holds it (`leadsync status`, tests, refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The replica that holds (or last held) it.
    pub holder: String,
    /// Its generation.
    pub generation: i64,
    /// When it expires (or expired).
    pub expires_at: DateTime<Utc>,
}

/// The generation a fenced store's writes must find in the lease row.
#[derive(Debug)]
pub(crate) struct Fence {
    portal: String,
    generation: i64,
}

impl Store {
    /// Takes the portal's lease for `holder` when it is free or expired at `now`, for `ttl`;
    /// `None` when another replica holds it. A takeover increments the generation.
    pub async fn take_lease(
        &self,
        portal: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.acquire(portal, holder, now, ttl, false).await
    }

    /// Takes the portal's lease for `holder` whoever holds it, with a new generation: only for a
    /// replica that knows no other can be running (the SQLite lock file is its own), so a
    /// restart after `kill -9` does not wait for the dead holder's lease to expire.
    pub async fn seize_lease(
        &self,
        portal: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let taken = self.acquire(portal, holder, now, ttl, true).await?;
        taken.ok_or_else(|| StoreError::Corrupt {
            what: format!("leases/{portal}"),
            message: "a seized lease was not taken".into(),
        })
    }

    async fn acquire(
        &self,
        portal: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        seize: bool,
    ) -> Result<Option<Lease>, StoreError> {
        let expires_at = now + ttl;
        let postgres = self.backend == Backend::Postgres;
        self.in_write_unfenced(PATIENT_WAIT, async |tx| {
            if postgres {
                // A takeover waits for the holder's open write transactions (their fence check
                // holds the row `FOR KEY SHARE`), so none of them commits after it.
                sqlx::query("SELECT generation FROM leases WHERE portal = $1 FOR UPDATE")
                    .bind(portal)
                    .fetch_optional(&mut **tx)
                    .await?;
            }
            let row = sqlx::query(
                "INSERT INTO leases (portal, holder, generation, expires_at, renewed_at) VALUES ($1, $2, 1, $3, $4) \
                 ON CONFLICT (portal) DO UPDATE SET holder = excluded.holder, generation = leases.generation + 1, \
                 expires_at = excluded.expires_at, renewed_at = excluded.renewed_at \
                 WHERE leases.expires_at <= $4 OR $5 = 1 RETURNING generation",
            )
            .bind(portal)
            .bind(holder)
            .bind(ms(expires_at))
            .bind(ms(now))
            .bind(i64::from(seize))
            .fetch_optional(&mut **tx)
            .await?;
            Ok(row.map(|r| Lease {
                portal: portal.to_string(),
                holder: holder.to_string(),
                generation: r.get(0),
                expires_at,
            }))
        })
        .await
    }

    /// Renews a lease held until `now + ttl`; `None` when it was lost (another replica took it
    /// over), and the holder must stop its work for the portal.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let expires_at = now + ttl;
        let changed = self
            .in_write_unfenced(PATIENT_WAIT, async |tx| {
                Ok(sqlx::query(
                    "UPDATE leases SET expires_at = $1, renewed_at = $2 WHERE portal = $3 AND holder = $4 AND generation = $5",
                )
                .bind(ms(expires_at))
                .bind(ms(now))
                .bind(&lease.portal)
                .bind(&lease.holder)
                .bind(lease.generation)
                .execute(&mut **tx)
                .await?
                .rows_affected())
            })
            .await?;
        Ok((changed == 1).then(|| Lease {
            expires_at,
            ..lease.clone()
        }))
    }

    /// Gives a lease up (a replica stopping): another replica can take it at once.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.in_write_unfenced(PATIENT_WAIT, async |tx| {
            sqlx::query("UPDATE leases SET expires_at = 0 WHERE portal = $1 AND holder = $2 AND generation = $3")
                .bind(&lease.portal)
                .bind(&lease.holder)
                .bind(lease.generation)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
        .await
    }

    /// The portal's lease row, held or not.
    pub async fn lease(&self, portal: &str) -> Result<Option<LeaseRow>, StoreError> {
        let row = sqlx::query("SELECT holder, generation, expires_at FROM leases WHERE portal = $1")
            .bind(portal)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| LeaseRow {
            holder: r.get(0),
            generation: r.get(1),
            expires_at: super::from_ms(r.get(2)),
        }))
    }

    /// This store with its write transactions fenced by `lease`: each fails with
    /// [`StoreError::Fenced`], writing nothing, once the lease has another generation.
    pub fn fenced(&self, lease: &Lease) -> Store {
        Store {
            fence: Some(std::sync::Arc::new(Fence {
                portal: lease.portal.clone(),
                generation: lease.generation,
            })),
            ..self.clone()
        }
    }

    /// The first statement of a fenced write transaction: the lease still has the fence's
    /// generation, and no takeover can commit before this transaction does.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let held = match self.backend {
            // A shared row lock: the holder's transactions run side by side, a takeover's
            // `FOR UPDATE` waits for them. Not `FOR SHARE`: the holder's renewal (an UPDATE)
            // would wait for every open transaction, and the holder's next fence checks would
            // queue behind that waiting renewal (the suspected cause of a chaos run on
            // PostgreSQL in which every write of the new holder hung).
            Backend::Postgres => {
                sqlx::query("SELECT generation FROM leases WHERE portal = $1 AND generation = $2 FOR KEY SHARE")
                    .bind(&fence.portal)
                    .bind(fence.generation)
                    .fetch_optional(&mut **tx)
                    .await?
                    .is_some()
            }
            // Takes SQLite's one write lock now, so nothing is written between check and commit.
            Backend::Sqlite => {
                sqlx::query("UPDATE leases SET generation = generation WHERE portal = $1 AND generation = $2")
                    .bind(&fence.portal)
                    .bind(fence.generation)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                    == 1
            }
        };
        if held {
            Ok(())
        } else {
            // Under the portal whose work wrote (`sync::portal`), as its other counters.
            metrics::counter!("leadsync_fenced_writes_total", crate::sync::portal::metric_labels()).increment(1);
            Err(StoreError::Fenced {
                portal: fence.portal.clone(),
                generation: fence.generation,
            })
        }
    }
}
