//! SLA timers and their breach ladder's steps, on both backends.
//!
//! One row per timer in `sla_timers`, keyed by contact, policy and start (several timers may run
//! on one contact, and a recycled lead's next timer is a new row). Saving is idempotent: the same
//! record saved twice is one row, and the steps already done are the union of what was stored
//! and what is saved, so a stale copy never undoes a step.
//!
//! A ladder step is carried out the way a promotion is: it becomes an outbox item (kind
//! [`OutboxKind::SlaStep`]) whose key is the timer's key and the step's index, inserted with
//! `ON CONFLICT DO NOTHING` in the same transaction that records it done on the timer, with an
//! audit row only when the item is new. A sweep that runs twice, a restart between the decision
//! and the commit, or two replicas deciding at once all queue it once; the outbox worker then
//! carries it out once (pending → sending → done, its remote side idempotent).
//!
//! The sweep reads "timers whose next check is due" through the partial index
//! `sla_timers_next_check` on `next_check_at` (finished timers have none and are not indexed):
//! [`Store::sla_due`], one index range on SQLite and PostgreSQL alike ([`Store::sla_due_plan`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::write::PATIENT_WAIT;
use super::{Backend, OutboxKind, Store, StoreError, corrupt, from_ms, ms};
use crate::sla::StepAction;
use crate::sla::timer::{DueStep, SlaRecord, Touch};

/// One stored timer: the record [`crate::sla::assess`] reads and returns, who it runs for, and
/// when the sweep must look at it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaTimer {
    /// The record (policy, contact, times, attempts, steps done).
    pub record: SlaRecord,
    /// The contact's owner when last assessed (HubSpot owner or Salesforce user id).
    pub owner: Option<String>,
    /// The owner's team id when last assessed.
    pub team: Option<String>,
    /// When the sweep must assess it again; `None` once nothing is left to time.
    pub next_check_at: Option<DateTime<Utc>>,
}

/// The outbox key of ladder step `index` of a timer: the same step of the same timer is always
/// the same key, whoever decides it.
pub fn step_key(record: &SlaRecord, index: usize) -> String {
    format!(
        "sla:{}:{}:{}:{index}",
        record.contact,
        record.policy,
        ms(record.started_at)
    )
}

/// The stored name of a step's action (payload and audit).
fn action_name(action: &StepAction) -> String {
    match action {
        StepAction::OwnerTask => "owner_task".into(),
        StepAction::ManagerTask => "manager_task".into(),
        StepAction::ManagerWebhook(_) => "manager_webhook".into(),
        StepAction::Reassign => "reassign".into(),
        StepAction::SalesRejected(reason) => format!("sales_rejected:{reason}"),
    }
}

const COLUMNS: &str = "policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, breached_at, \
                       steps_done, owner_id, team_id, next_check_at";

fn timer(r: &sqlx::any::AnyRow) -> Result<SlaTimer, StoreError> {
    let contact: String = r.get(1);
    let policy: String = r.get(0);
    let steps: String = r.get(8);
    let steps_done: BTreeSet<usize> =
        serde_json::from_str(&steps).map_err(|e| corrupt(format!("sla_timers {contact}/{policy} steps_done"), e))?;
    Ok(SlaTimer {
        record: SlaRecord {
            policy,
            contact,
            started_at: from_ms(r.get(2)),
            due_at: from_ms(r.get(3)),
            first_touch_at: r.get::<Option<i64>, _>(4).map(from_ms),
            attempts: r.get::<i64, _>(5).max(0) as u32,
            met_at: r.get::<Option<i64>, _>(6).map(from_ms),
            breached_at: r.get::<Option<i64>, _>(7).map(from_ms),
            steps_done,
        },
        owner: r.get(9),
        team: r.get(10),
        next_check_at: r.get::<Option<i64>, _>(11).map(from_ms),
    })
}

/// Inserts the timers decisions started (each saved at its `at`), in the commit's transaction
/// and one statement over a JSON array of rows; one already stored (the same contact, policy and
/// start) is kept as it is.
pub(super) async fn start_timers(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    timers: &[(&SlaTimer, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if timers.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = timers
        .iter()
        .map(|(t, at)| {
            let r = &t.record;
            serde_json::json!([
                r.policy,
                r.contact,
                ms(r.started_at),
                ms(r.due_at),
                None::<i64>,
                0,
                None::<i64>,
                None::<i64>,
                "[]",
                t.owner,
                t.team,
                t.next_check_at.map(ms),
                ms(*at)
            ])
        })
        .collect();
    let big = Some("BIGINT");
    let sql = super::rows::insert(
        backend,
        "sla_timers (policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, breached_at, \
         steps_done, owner_id, team_id, next_check_at, updated_at)",
        &[None, None, big, big, big, big, big, big, None, None, None, big, big],
        " ON CONFLICT (contact_id, policy_id, started_at) DO NOTHING",
    );
    sqlx::query(&sql)
        .bind(super::rows::bound(&rows)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A running timer's contact with its Salesforce records, where activities are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPromoted {
    /// HubSpot contact id.
    pub contact_id: String,
    /// Its Salesforce Contact, Account and Opportunity ids (those it has).
    pub records: Vec<String>,
}

/// The sweep's query: one range of the partial index, soonest first.
const DUE_SQL: &str = "FROM sla_timers WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2";

impl Store {
    /// Saves a timer after an assessment, with the ladder steps `due` now, in one transaction:
    /// the timer's row (inserted or updated), each step marked done on it, queued once in the
    /// outbox and written once to the audit log. Returns the keys of the steps queued by this
    /// call (empty when another call queued them already).
    pub async fn save_sla_timer(
        &self,
        timer: &SlaTimer,
        due: &[DueStep],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            let r = &timer.record;
            // The write comes first, so the transaction holds the write lock before it reads
            // (a SQLite transaction that reads, then writes, fails when another wrote between).
            sqlx::query(
                "INSERT INTO sla_timers (policy_id, contact_id, started_at, due_at, first_touch_at, attempts, met_at, \
                 breached_at, steps_done, owner_id, team_id, next_check_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]', $9, $10, $11, $12) \
                 ON CONFLICT (contact_id, policy_id, started_at) DO UPDATE SET due_at = excluded.due_at, \
                 first_touch_at = excluded.first_touch_at, attempts = excluded.attempts, met_at = excluded.met_at, \
                 breached_at = excluded.breached_at, owner_id = excluded.owner_id, team_id = excluded.team_id, \
                 next_check_at = excluded.next_check_at, updated_at = excluded.updated_at",
            )
            .bind(&r.policy)
            .bind(&r.contact)
            .bind(ms(r.started_at))
            .bind(ms(r.due_at))
            .bind(r.first_touch_at.map(ms))
            .bind(i64::from(r.attempts))
            .bind(r.met_at.map(ms))
            .bind(r.breached_at.map(ms))
            .bind(timer.owner.as_deref())
            .bind(timer.team.as_deref())
            .bind(timer.next_check_at.map(ms))
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
            // Steps done: what was stored, what this copy knew, and the steps due now.
            let stored: String = sqlx::query(
                "SELECT steps_done FROM sla_timers WHERE contact_id = $1 AND policy_id = $2 AND started_at = $3",
            )
            .bind(&r.contact)
            .bind(&r.policy)
            .bind(ms(r.started_at))
            .fetch_one(&mut **tx)
            .await?
            .get(0);
            let mut steps: BTreeSet<usize> = serde_json::from_str(&stored)
                .map_err(|e| corrupt(format!("sla_timers {}/{} steps_done", r.contact, r.policy), e))?;
            steps.extend(r.steps_done.iter().copied());
            steps.extend(due.iter().map(|s| s.index));
            sqlx::query(
                "UPDATE sla_timers SET steps_done = $1 WHERE contact_id = $2 AND policy_id = $3 AND started_at = $4",
            )
            .bind(super::contacts::json(&steps))
            .bind(&r.contact)
            .bind(&r.policy)
            .bind(ms(r.started_at))
            .execute(&mut **tx)
            .await?;

            let mut queued = Vec::new();
            for step in due {
                let key = step_key(r, step.index);
                let action = action_name(&step.action);
                let payload = serde_json::json!({
                    "policy": r.policy,
                    "contact": r.contact,
                    "started_at": ms(r.started_at),
                    "step": step.index,
                    "action": action,
                    "due_at": ms(step.at),
                    "owner": timer.owner,
                    "team": timer.team,
                })
                .to_string();
                let inserted = sqlx::query(
                    "INSERT INTO outbox (key, kind, contact_id, payload, state, attempts, next_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
                )
                .bind(&key)
                .bind(OutboxKind::SlaStep.as_str())
                .bind(&r.contact)
                .bind(&payload)
                .bind(ms(now))
                .bind(ms(now))
                .bind(ms(now))
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    continue;
                }
                sqlx::query("INSERT INTO audit (contact_id, at, change, reason, rules) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&r.contact)
                    .bind(ms(now))
                    .bind(
                        serde_json::json!({"SlaStep": {"policy": r.policy, "step": step.index, "action": action}})
                            .to_string(),
                    )
                    .bind(format!(
                        "SLA {}: first touch due {} missed; ladder step {} ({}) due {}",
                        r.policy,
                        r.due_at.to_rfc3339(),
                        step.index,
                        step.action,
                        step.at.to_rfc3339()
                    ))
                    .bind(format!("sla:{}", r.policy))
                    .execute(&mut **tx)
                    .await?;
                queued.push(key);
            }
            Ok(queued)
        })
        .await
    }

    /// Timers whose next check is at or before `now`, soonest first, at most `limit`: the
    /// sweep's one indexed query.
    pub async fn sla_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SlaTimer>, StoreError> {
        let sql = format!("SELECT {COLUMNS} {DUE_SQL}");
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(timer).collect()
    }

    /// The promoted contacts with a running timer (one with a next check), with their
    /// Salesforce records: whose Tasks and Events the sweep reads.
    pub async fn sla_promoted(&self) -> Result<Vec<SlaPromoted>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.contact_id, c.sf_contact_id, c.sf_account_id, c.sf_opportunity_id FROM sla_timers t \
             JOIN contacts c ON c.contact_id = t.contact_id WHERE t.next_check_at IS NOT NULL \
             AND (c.sf_contact_id IS NOT NULL OR c.sf_opportunity_id IS NOT NULL) ORDER BY c.contact_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SlaPromoted {
                contact_id: r.get(0),
                records: (1..4).filter_map(|i| r.get::<Option<String>, _>(i)).collect(),
            })
            .collect())
    }

    /// Keeps touches read from Salesforce, each once per contact.
    pub async fn add_sla_touches(&self, touches: &[(String, Touch)]) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for (contact, t) in touches {
                sqlx::query(
                    "INSERT INTO sla_touches (contact_id, touch_id, body) VALUES ($1, $2, $3) \
                     ON CONFLICT (contact_id, touch_id) DO UPDATE SET body = excluded.body",
                )
                .bind(contact)
                .bind(&t.id)
                .bind(super::contacts::json(t))
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// The Salesforce touches kept for a contact.
    pub async fn sla_touches(&self, contact_id: &str) -> Result<Vec<Touch>, StoreError> {
        let rows = sqlx::query("SELECT touch_id, body FROM sla_touches WHERE contact_id = $1 ORDER BY touch_id")
            .bind(contact_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                serde_json::from_str(&r.get::<String, _>(1))
                    .map_err(|e| corrupt(format!("sla_touches {contact_id}/{id} body"), e))
            })
            .collect()
    }

    /// Every timer of a contact, oldest first (`leadsync explain`).
    pub async fn sla_timers(&self, contact_id: &str) -> Result<Vec<SlaTimer>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sla_timers WHERE contact_id = $1 ORDER BY started_at, policy_id");
        let rows = sqlx::query(&sql).bind(contact_id).fetch_all(&self.pool).await?;
        rows.iter().map(timer).collect()
    }

    /// The database's plan for [`Store::sla_due`], one line per plan row (`EXPLAIN QUERY PLAN`
    /// on SQLite, `EXPLAIN` on PostgreSQL), to show the sweep reads the index, not the table.
    pub async fn sla_due_plan(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<String>, StoreError> {
        let (sql, column) = match self.backend {
            Backend::Sqlite => (format!("EXPLAIN QUERY PLAN SELECT {COLUMNS} {DUE_SQL}"), 3),
            Backend::Postgres => (format!("EXPLAIN SELECT {COLUMNS} {DUE_SQL}"), 0),
        };
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(column)).collect())
    }
}
