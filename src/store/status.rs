//! What the status page reads that no other part of the store reads: the open SLA breaches
//! (through their partial index, migration 11) and each job's last run (kept as a cursor,
//! `job:NAME`, so a restart still shows it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError, corrupt, from_ms};

/// An SLA timer breached and still without a first touch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenBreach {
    /// HubSpot contact id.
    pub contact_id: String,
    /// The policy breached.
    pub policy: String,
    /// The rep the timer is for.
    pub owner: Option<String>,
    /// Their team.
    pub team: Option<String>,
    /// When the first touch was due.
    pub due_at: DateTime<Utc>,
    /// When the sweep found it breached.
    pub breached_at: DateTime<Utc>,
}

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// It did its work.
    Ok,
    /// It stopped at a checkpoint (a budget or a pause) and resumes from there.
    Paused,
    /// It failed; the next tick retries.
    Failed,
}

/// A job's last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// How long it ran, milliseconds.
    pub ms: u64,
    /// How it ended.
    pub outcome: JobOutcome,
    /// The error, when it did not end well (as logged: no personal data).
    pub error: Option<String>,
}

fn job_cursor(job: &str) -> String {
    format!("job:{job}")
}

impl Store {
    /// How many SLA timers are breached without a first touch, and the `limit` most overdue.
    pub async fn open_breaches(&self, limit: usize) -> Result<(u64, Vec<OpenBreach>), StoreError> {
        const OPEN: &str = "breached_at IS NOT NULL AND first_touch_at IS NULL";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM sla_timers WHERE {OPEN}"))
            .fetch_one(&self.pool)
            .await?
            .get(0);
        let rows = sqlx::query(&format!(
            "SELECT contact_id, policy_id, owner_id, team_id, due_at, breached_at FROM sla_timers \
             WHERE {OPEN} ORDER BY due_at, contact_id LIMIT $1"
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let breaches = rows
            .iter()
            .map(|r| OpenBreach {
                contact_id: r.get(0),
                policy: r.get(1),
                owner: r.get(2),
                team: r.get(3),
                due_at: from_ms(r.get(4)),
                breached_at: from_ms(r.get(5)),
            })
            .collect();
        Ok((total.max(0) as u64, breaches))
    }

    /// Records how `job`'s last run ended.
    pub async fn record_job_run(&self, job: &str, run: &JobRun) -> Result<(), StoreError> {
        let value = serde_json::to_string(run).map_err(|e| corrupt("job run", e))?;
        self.set_cursor(&job_cursor(job), &value).await
    }

    /// `job`'s last run, if it ever ran.
    pub async fn job_run(&self, job: &str) -> Result<Option<JobRun>, StoreError> {
        match self.cursor(&job_cursor(job)).await? {
            None => Ok(None),
            Some(v) => serde_json::from_str(&v)
                .map(Some)
                .map_err(|e| corrupt(format!("cursor {}", job_cursor(job)), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_job_run_round_trips_through_json() {
        let run = super::JobRun {
            at: super::from_ms(1_764_000_000_000),
            ms: 12,
            outcome: super::JobOutcome::Failed,
            error: Some("hubspot: 503".into()),
        };
        let back: super::JobRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back, run);
    }
}
