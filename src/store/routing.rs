//! What routing reads from the store and what it leaves there: each rep's open leads (for the
//! caps), the owners of contacts and of companies (route once, one rep per company), and every
//! assignment with its trace ("why this rep"), recorded with an audit line in the transaction
//! that saves the assignment.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::contacts::{json, placeholders};
use super::write::PATIENT_WAIT;
use super::{OutboxKind, Store, StoreError, corrupt, from_ms, ms};
use crate::lifecycle::HubSpotId;
use crate::salesforce::routing::Trace;

/// A HubSpot owner change saved with a reassignment: the properties folded into the stored
/// contact, and the outbox write (key and payload) that carries them to HubSpot.
#[derive(Debug, Clone, Copy)]
pub struct OwnerWrite<'a> {
    /// Property name → value.
    pub properties: &'a BTreeMap<String, String>,
    /// The outbox item's key.
    pub key: &'a str,
    /// Its payload.
    pub payload: &'a str,
}

/// One assignment as stored: when, to whom, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssignment {
    /// When the owner was chosen.
    pub at: DateTime<Utc>,
    /// The Salesforce user (or queue) chosen.
    pub owner: String,
    /// The candidates, why each was dropped, the rule that won.
    pub trace: Trace,
}

/// A contact is an open lead of its owner from SQL until the opportunity is won (customer) or
/// the lead leaves sales (lost, recycled, disqualified); removed contacts count for nobody.
const OPEN_LEAD: &str = "owner_id IS NOT NULL AND removed IS NULL AND stage IN ('sql', 'opportunity') \
                         AND status NOT IN ('lost', 'recycle', 'disqualified')";

impl Store {
    /// Open leads per owner (Salesforce user id), in one query: what the caps count.
    pub async fn open_leads(&self) -> Result<HashMap<String, u32>, StoreError> {
        let sql = format!("SELECT owner_id, COUNT(*) FROM contacts WHERE {OPEN_LEAD} GROUP BY owner_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    r.get::<i64, _>(1).clamp(0, i64::from(u32::MAX)) as u32,
                )
            })
            .collect())
    }

    /// The owner of each of these contacts that has one (set by its promotion).
    pub async fn owners(&self, ids: &[HubSpotId]) -> Result<HashMap<String, String>, StoreError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT contact_id, owner_id FROM contacts WHERE owner_id IS NOT NULL AND contact_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.get(0), r.get(1));
            }
        }
        Ok(out)
    }

    /// The rep of each of these companies (HubSpot company ids): the owner of most of its
    /// promoted contacts, the lowest id on a tie.
    pub async fn company_owners(&self, companies: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let mut counts: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for chunk in companies.chunks(500) {
            let sql = format!(
                "SELECT company_id, owner_id, COUNT(*) FROM contacts WHERE owner_id IS NOT NULL AND removed IS NULL \
                 AND company_id IN ({}) GROUP BY company_id, owner_id",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(c.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                counts.entry(r.get(0)).or_default().push((r.get(2), r.get(1)));
            }
        }
        Ok(counts
            .into_iter()
            .filter_map(|(company, owners)| {
                let best = owners
                    .into_iter()
                    .max_by(|(n, a), (m, b)| n.cmp(m).then_with(|| b.cmp(a)))?;
                Some((company, best.1))
            })
            .collect())
    }

    /// Records an owner chosen outside a promotion (the SLA's reassignment), in one
    /// transaction: the assignment with its trace and audit line; the contact's Salesforce
    /// owner when it has one (a promoted lead: the caps count it for its new rep, and the
    /// next routing starts from it); and, with `hubspot`, the new HubSpot owner folded into the
    /// stored contact (the SLA timer follows it) with its write to HubSpot queued. A crash
    /// leaves all of it or none.
    pub async fn record_assignment(
        &self,
        id: &HubSpotId,
        owner: &str,
        trace: &Trace,
        hubspot: Option<&OwnerWrite<'_>>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        self.in_write(PATIENT_WAIT, async |tx| {
            record_assignment(tx, id, owner, trace, at).await?;
            sqlx::query("UPDATE contacts SET owner_id = $1 WHERE contact_id = $2 AND owner_id IS NOT NULL")
                .bind(owner)
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
            if let Some(w) = hubspot {
                super::contacts::fold_many(tx, backend, &[(id.clone(), w.properties.clone())]).await?;
                super::outbox::enqueue(&mut **tx, OutboxKind::HubSpotWrite, w.key, id.as_str(), w.payload, at).await?;
            }
            Ok(())
        })
        .await
    }

    /// Every assignment of one contact, oldest first.
    pub async fn assignments(&self, id: &HubSpotId) -> Result<Vec<StoredAssignment>, StoreError> {
        let rows = sqlx::query("SELECT at, owner_id, trace FROM assignments WHERE contact_id = $1 ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let trace: String = r.get(2);
                Ok(StoredAssignment {
                    at: from_ms(r.get(0)),
                    owner: r.get(1),
                    trace: serde_json::from_str(&trace).map_err(|e| corrupt(format!("assignments/{id}.trace"), e))?,
                })
            })
            .collect()
    }
}

/// Records an assignment and its audit line inside the caller's write transaction.
pub(super) async fn record_assignment(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &HubSpotId,
    owner: &str,
    trace: &Trace,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rule = trace.won.as_ref().map_or_else(|| "none".to_string(), |w| w.to_string());
    sqlx::query("INSERT INTO assignments (contact_id, at, owner_id, rule, trace) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(ms(at))
        .bind(owner)
        .bind(&rule)
        .bind(json(trace))
        .execute(&mut **tx)
        .await?;
    let change = serde_json::json!({ "owner": { "to": owner, "rule": rule } });
    sqlx::query("INSERT INTO audit (contact_id, at, change, reason, rules) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(ms(at))
        .bind(change.to_string())
        .bind(format!("routing: {rule}"))
        .bind("routing")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
