//! The report's rows, read the same way from SQLite and PostgreSQL: the audit log up to the end
//! of a period, the facts about each contact the report groups by, and the SLA timers. The
//! figures are computed from these rows by the pure `report::figures`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, corrupt, from_ms, ms};

/// One audit line as the report reads it: who, when, the change as stored (JSON) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    /// HubSpot contact id.
    pub contact_id: String,
    /// When the decision was made.
    pub at: DateTime<Utc>,
    /// The change, as `Store::commit` wrote it (`{"kind": "stage", ...}`).
    pub change: String,
    /// Why, in words (a sales rejection's reason, say).
    pub reason: String,
}

/// What the store knows about a contact that a report groups or sums by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContactFacts {
    /// HubSpot contact id.
    pub contact_id: String,
    /// Its owner (the Salesforce owner a promotion gave it), when any.
    pub owner: Option<String>,
    /// The team of its latest SLA timer, when any.
    pub team: Option<String>,
    /// HubSpot's `hs_analytics_source`, when known.
    pub source: Option<String>,
    /// HubSpot's `hs_persona`, when known.
    pub persona: Option<String>,
    /// The opportunity's amount from the feedback (`leadsync_opportunity_amount`), when any.
    pub amount: Option<f64>,
}

/// One SLA timer as the report reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerLine {
    /// HubSpot contact id.
    pub contact_id: String,
    /// Policy id.
    pub policy: String,
    /// When the clock started.
    pub started_at: DateTime<Utc>,
    /// The first sales touch, when there was one.
    pub first_touch_at: Option<DateTime<Utc>>,
    /// When the policy was met.
    pub met_at: Option<DateTime<Utc>>,
    /// When it was breached.
    pub breached_at: Option<DateTime<Utc>>,
    /// The rep the timer was for.
    pub owner: Option<String>,
    /// The team.
    pub team: Option<String>,
}

/// Everything a report over a period needs, read in three queries.
#[derive(Debug, Clone, Default)]
pub struct ReportRows {
    /// The audit log before `to`, oldest first (entries before the period give time in stage).
    pub audit: Vec<AuditLine>,
    /// Facts of every contact that has an audit line.
    pub contacts: BTreeMap<String, ContactFacts>,
    /// Timers started before `to`.
    pub timers: Vec<TimerLine>,
}

impl Store {
    /// The rows a report up to `to` (exclusive) reads: audit, contact facts and SLA timers.
    pub async fn report_rows(&self, to: DateTime<Utc>) -> Result<ReportRows, StoreError> {
        let audit = sqlx::query("SELECT contact_id, at, change, reason FROM audit WHERE at < $1 ORDER BY at, id")
            .bind(ms(to))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| AuditLine {
                contact_id: r.get(0),
                at: from_ms(r.get(1)),
                change: r.get(2),
                reason: r.get(3),
            })
            .collect();
        let timers = self.report_timers(to).await?;
        let mut contacts = self
            .contact_facts(
                "WHERE contact_id IN (SELECT DISTINCT contact_id FROM audit WHERE at < $1)",
                Some(to),
            )
            .await?;
        with_teams(&mut contacts, &timers);
        Ok(ReportRows {
            audit,
            contacts,
            timers,
        })
    }

    /// The SLA timers started before `to`, oldest first.
    pub async fn report_timers(&self, to: DateTime<Utc>) -> Result<Vec<TimerLine>, StoreError> {
        Ok(sqlx::query(
            "SELECT contact_id, policy_id, started_at, first_touch_at, met_at, breached_at, owner_id, team_id \
             FROM sla_timers WHERE started_at < $1 ORDER BY started_at, contact_id, policy_id",
        )
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| TimerLine {
            contact_id: r.get(0),
            policy: r.get(1),
            started_at: from_ms(r.get(2)),
            first_touch_at: r.get::<Option<i64>, _>(3).map(from_ms),
            met_at: r.get::<Option<i64>, _>(4).map(from_ms),
            breached_at: r.get::<Option<i64>, _>(5).map(from_ms),
            owner: r.get(6),
            team: r.get(7),
        })
        .collect())
    }

    /// The facts of every stored contact (not only those with an audit line), their teams from
    /// `timers`: what `report --compare-rules` groups by, since the candidate rules may move
    /// contacts the audit log never mentions.
    pub async fn all_contact_facts(&self, timers: &[TimerLine]) -> Result<BTreeMap<String, ContactFacts>, StoreError> {
        let mut contacts = self.contact_facts("", None).await?;
        with_teams(&mut contacts, timers);
        Ok(contacts)
    }

    /// Owner, source, persona and amount of the contacts `filter` selects (`$1` bound to `to`).
    async fn contact_facts(
        &self,
        filter: &str,
        to: Option<DateTime<Utc>>,
    ) -> Result<BTreeMap<String, ContactFacts>, StoreError> {
        let sql = format!("SELECT contact_id, owner_id, properties FROM contacts {filter}");
        let mut query = sqlx::query(&sql);
        if let Some(to) = to {
            query = query.bind(ms(to));
        }
        let mut contacts = BTreeMap::new();
        for r in &query.fetch_all(&self.pool).await? {
            let id: String = r.get(0);
            let props: BTreeMap<String, String> = serde_json::from_str(&r.get::<String, _>(2))
                .map_err(|e| corrupt(format!("contacts/{id}.properties"), e))?;
            let amount = match props.get("leadsync_opportunity_amount") {
                Some(a) => Some(
                    a.parse::<f64>()
                        .map_err(|e| corrupt(format!("contacts/{id}.properties.leadsync_opportunity_amount"), e))?,
                ),
                None => None,
            };
            contacts.insert(
                id.clone(),
                ContactFacts {
                    owner: r.get(1),
                    team: None,
                    source: props.get("hs_analytics_source").cloned(),
                    persona: props.get("hs_persona").cloned(),
                    amount,
                    contact_id: id,
                },
            );
        }
        Ok(contacts)
    }
}

/// A contact's team is its latest timer's (timers are read oldest first).
fn with_teams(contacts: &mut BTreeMap<String, ContactFacts>, timers: &[TimerLine]) {
    for t in timers {
        if let (Some(c), Some(team)) = (contacts.get_mut(&t.contact_id), &t.team) {
            c.team = Some(team.clone());
        }
    }
}
