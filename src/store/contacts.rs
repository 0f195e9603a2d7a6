//! Per-contact state, the engagement ledger, the audit log and the write ledger.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::outbox::{OutboxItem, OutboxKind, Queued, enqueue};
use super::write::PATIENT_WAIT;
use super::{Backend, Store, StoreError, corrupt, from_ms, ms, rows, set_cursor};
use crate::lifecycle::snapshot::SalesforceLink;
use crate::lifecycle::{ContactState, Event, HubSpotId, Transition};

/// One evaluated contact, ready to be saved with everything it asks for, in one transaction.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// HubSpot contact id.
    pub contact_id: HubSpotId,
    /// The `now` of the decision.
    pub at: DateTime<Utc>,
    /// HubSpot's property values the decision saw (kept so a rescore needs no HubSpot read).
    pub properties: BTreeMap<String, String>,
    /// The contact's company, when known.
    pub company_id: Option<String>,
    /// The company's property values.
    pub company: BTreeMap<String, String>,
    /// The engine's new state.
    pub state: ContactState,
    /// Fit score.
    pub fit: f64,
    /// Engagement score.
    pub engagement: f64,
    /// Grade.
    pub grade: String,
    /// `version (hash)` of the rules.
    pub rules: String,
    /// Changes, for the audit log.
    pub transitions: Vec<Transition>,
    /// Events first seen in this pull, for the ledger (already-known ids are ignored).
    pub new_events: Vec<Event>,
    /// Outbox items the decision asks for: (kind, idempotency key, JSON payload).
    pub outbox: Vec<(OutboxKind, String, String)>,
    /// SLA timers the decision started (the contact entered a policy's stage).
    pub sla_timers: Vec<super::SlaTimer>,
}

/// A contact as stored.
#[derive(Debug, Clone)]
pub struct ContactRow {
    /// HubSpot contact id.
    pub contact_id: HubSpotId,
    /// The engine's state after the last decision.
    pub state: ContactState,
    /// HubSpot values seen last.
    pub properties: BTreeMap<String, String>,
    /// Company id.
    pub company_id: Option<String>,
    /// Company values seen last.
    pub company: BTreeMap<String, String>,
    /// Set when HubSpot deleted or archived the contact (`deleted`, `archived`).
    pub removed: Option<String>,
    /// The surviving contact of a merge.
    pub merged_into: Option<String>,
    /// Fit score.
    pub fit: f64,
    /// Engagement score.
    pub engagement: f64,
    /// Grade.
    pub grade: String,
    /// When it was last evaluated.
    pub evaluated_at: DateTime<Utc>,
}

/// Count of contacts at one stage and status.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRow {
    /// Stage (`none` before any).
    pub stage: String,
    /// Side status.
    pub status: String,
    /// How many contacts.
    pub count: u64,
}

/// One line of the audit log.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// When.
    pub at: DateTime<Utc>,
    /// The change, as JSON.
    pub change: String,
    /// Why.
    pub reason: String,
    /// Rules that decided.
    pub rules: String,
}

impl Store {
    /// Saves evaluations, their audit lines, new ledger events and outbox items, and moves a
    /// checkpoint, all in one transaction: after a crash either all of it is there or none.
    pub async fn commit(&self, batch: &[Evaluated], checkpoint: Option<(&str, &str)>) -> Result<(), StoreError> {
        self.commit_all(&[], batch, checkpoint).await
    }

    /// Applies one pulled batch's [`Plan`] with the pass's checkpoint in one transaction: the
    /// removals, merges and restores first (a survivor's evaluation is saved over its merged
    /// state), then the evaluations as [`Store::commit`] saves them. A crash leaves neither the
    /// removals without the cursor nor the reverse.
    pub async fn commit_plan(&self, plan: &Plan, checkpoint: Option<(&str, &str)>) -> Result<(), StoreError> {
        self.commit_all(&plan.removals, &plan.evaluated, checkpoint).await
    }

    async fn commit_all(
        &self,
        removals: &[Removal],
        batch: &[Evaluated],
        checkpoint: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        // Each table in one statement over a JSON array of rows: one round trip to the database
        // (SQLite's worker thread) instead of one per row.
        let contacts: Vec<serde_json::Value> = last_per_contact(batch)
            .map(|e| {
                let link = e.state.salesforce.clone().unwrap_or_default();
                serde_json::json!([
                    e.contact_id.as_str(),
                    e.state.stage.map(|s| s.as_str()),
                    e.state.status.as_str(),
                    e.fit,
                    e.engagement,
                    e.grade,
                    e.rules,
                    e.state.recycle_count,
                    link.account_id,
                    link.contact_id,
                    link.opportunity_id,
                    e.company_id,
                    json(&e.properties),
                    json(&e.company),
                    json(&e.state),
                    ms(e.at)
                ])
            })
            .collect();
        self.in_write(PATIENT_WAIT, async |tx| {
            for r in removals {
                apply(tx, r).await?;
            }
            execute_rows(tx, &contact_rows(backend), &contacts).await?;
            save_decided(tx, backend, batch).await?;
            if let Some((name, value)) = checkpoint {
                set_cursor(&mut **tx, name, value).await?;
            }
            Ok(())
        })
        .await
    }

    /// Stored contacts among `ids`.
    pub async fn contacts(&self, ids: &[HubSpotId]) -> Result<HashMap<HubSpotId, ContactRow>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT contact_id, state, properties, company_id, company, removed, merged_into, fit, engagement, grade, evaluated_at, \
                 sf_account_id, sf_contact_id, sf_opportunity_id \
                 FROM contacts WHERE contact_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for row in q.fetch_all(&self.pool).await? {
                let c = contact_row(&row)?;
                out.insert(c.contact_id.clone(), c);
            }
        }
        Ok(out)
    }

    /// Up to `limit` stored contacts after `after` in id order (the rescore walks the store).
    pub async fn contact_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRow>, StoreError> {
        // Ids are decimal strings: order by length, then text, gives numeric order on both backends.
        let rows = sqlx::query(
            "SELECT contact_id, state, properties, company_id, company, removed, merged_into, fit, engagement, grade, evaluated_at, \
                 sf_account_id, sf_contact_id, sf_opportunity_id \
             FROM contacts WHERE (LENGTH(contact_id) > LENGTH($1) OR (LENGTH(contact_id) = LENGTH($1) AND contact_id > $1)) \
             ORDER BY LENGTH(contact_id), contact_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(contact_row).collect()
    }

    /// Every stored contact's id in numeric order (the rescore's walk): read from the primary
    /// key's index alone and sorted once, so the rescore then fetches rows by id instead of
    /// sorting the whole table for each page as [`Store::contact_page`] does.
    pub async fn contact_ids(&self) -> Result<Vec<HubSpotId>, StoreError> {
        let rows = sqlx::query("SELECT contact_id FROM contacts ORDER BY LENGTH(contact_id), contact_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| HubSpotId::try_from(r.get::<String, _>(0)).map_err(|e| corrupt("contacts.contact_id", e)))
            .collect()
    }

    /// Saves a rescore's page as [`Store::commit`] would, with less written: the HubSpot values
    /// and the company, which a rescore reads from the store and never changes, are not written
    /// back, and the contacts of `settled` (whose decision changed nothing stored but its time)
    /// get only their evaluation time, in one statement.
    pub async fn commit_rescored(
        &self,
        batch: &[Evaluated],
        settled: &[HubSpotId],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        let settled: Vec<serde_json::Value> = settled.iter().map(|id| serde_json::json!([id.as_str()])).collect();
        let rescored: Vec<serde_json::Value> = last_per_contact(batch)
            .map(|e| {
                let link = e.state.salesforce.clone().unwrap_or_default();
                serde_json::json!([
                    e.contact_id.as_str(),
                    e.state.stage.map(|s| s.as_str()),
                    e.state.status.as_str(),
                    e.fit,
                    e.engagement,
                    e.grade,
                    e.rules,
                    e.state.recycle_count,
                    link.account_id,
                    link.contact_id,
                    link.opportunity_id,
                    json(&e.state),
                    ms(e.at)
                ])
            })
            .collect();
        self.in_write(PATIENT_WAIT, async |tx| {
            if !settled.is_empty() {
                let sql = format!(
                    "UPDATE contacts SET evaluated_at = $2 WHERE contact_id IN (SELECT {} FROM {})",
                    rows::col(backend, 0, None),
                    rows::rows(backend, 1)
                );
                sqlx::query(&sql)
                    .bind(rows::bound(&settled)?)
                    .bind(ms(at))
                    .execute(&mut **tx)
                    .await?;
            }
            execute_rows(tx, &rescored_rows(backend), &rescored).await?;
            save_decided(tx, backend, batch).await
        })
        .await
    }

    /// Marks a contact deleted in HubSpot (a write HubSpot refused as `OBJECT_NOT_FOUND`): kept
    /// for the audit, never evaluated again.
    pub async fn mark_deleted(&self, id: &HubSpotId) -> Result<(), StoreError> {
        let deleted = Removal::Deleted(id.clone());
        self.in_write(PATIENT_WAIT, async |tx| apply(tx, &deleted).await).await
    }

    /// A GDPR deletion: the contact's personal data leaves the store (stored values, company,
    /// ledger, write ledger, pending payloads); only its id and audit of stages remain.
    pub async fn forget(&self, id: &HubSpotId) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for sql in [
                "UPDATE contacts SET properties = '{}', company = '{}', removed = 'privacy' WHERE contact_id = $1",
                "DELETE FROM events WHERE contact_id = $1",
                "DELETE FROM write_ledger WHERE contact_id = $1",
                "DELETE FROM write_marks WHERE contact_id = $1",
                "DELETE FROM outbox WHERE contact_id = $1 AND state <> 'done'",
                "UPDATE outbox SET payload = '{}' WHERE contact_id = $1",
                "UPDATE inbox SET payload = '{}', processed_at = COALESCE(processed_at, 0) WHERE contact_id = $1",
            ] {
                sqlx::query(sql).bind(id.as_str()).execute(&mut **tx).await?;
            }
            Ok(())
        })
        .await
    }

    /// Every ledger event of these contacts.
    pub async fn events(&self, ids: &[HubSpotId]) -> Result<HashMap<HubSpotId, Vec<Event>>, StoreError> {
        // One row per contact, its bodies joined into one JSON array in time order: a row costs
        // far more through sqlx than its bytes cost SQLite, and a contact holds some twenty.
        let join = match self.backend() {
            Backend::Sqlite => "group_concat",
            Backend::Postgres => "string_agg",
        };
        let mut out: HashMap<HubSpotId, Vec<Event>> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT contact_id, '[' || {join}(body, ',' ORDER BY at, event_id) || ']' FROM events \
                 WHERE contact_id IN ({}) GROUP BY contact_id",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for row in q.fetch_all(&self.pool).await? {
                let id: &str = row.get(0);
                let events: Vec<Event> =
                    serde_json::from_str(row.get::<&str, _>(1)).map_err(|e| corrupt(format!("events/{id}"), e))?;
                let id = HubSpotId::try_from(id.to_string()).map_err(|e| corrupt("events.contact_id", e))?;
                out.insert(id, events);
            }
        }
        Ok(out)
    }

    /// The audit log of one contact, oldest first.
    pub async fn audit(&self, id: &HubSpotId) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query("SELECT at, change, reason, rules FROM audit WHERE contact_id = $1 ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                at: from_ms(r.get(0)),
                change: r.get(1),
                reason: r.get(2),
                rules: r.get(3),
            })
            .collect())
    }

    /// Contacts per stage and status (removed contacts left out).
    pub async fn funnel(&self) -> Result<Vec<FunnelRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(stage, 'none'), status, COUNT(*) FROM contacts WHERE removed IS NULL GROUP BY stage, status ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| FunnelRow {
                stage: r.get(0),
                status: r.get(1),
                count: r.get::<i64, _>(2).max(0) as u64,
            })
            .collect())
    }

    /// Records values leadsync wrote to HubSpot, to recognise their echo later, and folds them
    /// into the stored HubSpot values (a rescore then sees what HubSpot holds, and writes nothing
    /// again).
    pub async fn record_writes(
        &self,
        writes: &[(HubSpotId, BTreeMap<String, String>)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record_writes_marked(writes, &BTreeMap::new(), at).await
    }

    /// [`Store::record_writes`], with the `updatedAt` HubSpot answered to each write (epoch ms,
    /// by contact id), in the same transaction: see [`Store::write_marks`].
    pub async fn record_writes_marked(
        &self,
        writes: &[(HubSpotId, BTreeMap<String, String>)],
        updated_at: &BTreeMap<String, i64>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Each table in one statement over the batch's rows; a key given twice keeps its last
        // value, as one statement per row in this order left it.
        let backend = self.backend();
        let mut marks: BTreeMap<&str, i64> = BTreeMap::new();
        let mut ledger: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for (id, props) in writes {
            if let Some(when) = updated_at.get(id.as_str()) {
                marks.insert(id.as_str(), *when);
            }
            for (k, v) in props {
                ledger.insert((id.as_str(), k.as_str()), v.as_str());
            }
        }
        let marks: Vec<serde_json::Value> = marks
            .into_iter()
            .map(|(id, when)| serde_json::json!([id, when]))
            .collect();
        let ledger: Vec<serde_json::Value> = ledger
            .into_iter()
            .map(|((id, k), v)| serde_json::json!([id, k, v, ms(at)]))
            .collect();
        self.in_write(PATIENT_WAIT, async |tx| {
            let sql = rows::insert(
                backend,
                "write_marks (contact_id, updated_at)",
                &[None, Some("BIGINT")],
                " ON CONFLICT (contact_id) DO UPDATE SET updated_at = excluded.updated_at",
            );
            execute_rows(tx, &sql, &marks).await?;
            let sql = rows::insert(
                backend,
                "write_ledger (contact_id, property, value, written_at)",
                &[None, None, None, Some("BIGINT")],
                " ON CONFLICT (contact_id, property) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
            );
            execute_rows(tx, &sql, &ledger).await?;
            fold_many(tx, backend, writes).await
        })
        .await
    }

    /// Folds values into the stored HubSpot values (opportunity feedback about to be written).
    pub async fn fold_properties(&self, writes: &[(HubSpotId, BTreeMap<String, String>)]) -> Result<(), StoreError> {
        let backend = self.backend();
        self.in_write(PATIENT_WAIT, async |tx| fold_many(tx, backend, writes).await)
            .await
    }

    /// Records a promotion's Salesforce ids and owner: the contact's link, and no promotion
    /// pending any more.
    pub async fn set_promoted(&self, id: &HubSpotId, link: &SalesforceLink, owner: &str) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| set_promoted(tx, id, link, owner).await)
            .await
    }

    /// Saves one promotion's outcome in one transaction: the contact's Salesforce link and
    /// owner, the assignment with its trace and audit line, the HubSpot write of its Salesforce
    /// ids (`write`: idempotency key and payload), and its outbox item done. A crash leaves all of it or none (then the promotion is tried
    /// again, by upsert: no second record).
    pub async fn save_promotion(
        &self,
        item: &OutboxItem,
        promoted: &Promoted<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = promoted.contact_id;
        self.in_write(PATIENT_WAIT, async |tx| {
            set_promoted(tx, id, promoted.link, promoted.owner).await?;
            super::routing::record_assignment(tx, id, promoted.owner, promoted.trace, now).await?;
            let (key, payload) = &promoted.write;
            enqueue(&mut **tx, OutboxKind::HubSpotWrite, key, id.as_str(), payload, now).await?;
            // The item is done only as it was taken: a newer payload saved meanwhile stays due.
            sqlx::query(
                "UPDATE outbox SET state = 'done', updated_at = $1, next_at = $1 WHERE id = $2 AND payload = $3",
            )
            .bind(ms(now))
            .bind(item.id)
            .bind(&item.payload)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// The `updatedAt` (epoch ms) HubSpot answered to leadsync's last write of each of these
    /// contacts that has one: a search result still showing it changed only by that write.
    pub async fn write_marks(&self, ids: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT contact_id, updated_at FROM write_marks WHERE contact_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.get::<String, _>(0), r.get::<i64, _>(1));
            }
        }
        Ok(out)
    }

    /// True when leadsync itself wrote `value` to `property` of this contact last.
    pub async fn wrote(&self, id: &HubSpotId, property: &str, value: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT value FROM write_ledger WHERE contact_id = $1 AND property = $2")
            .bind(id.as_str())
            .bind(property)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|r| r.get::<String, _>(0) == value))
    }
}

/// What one pulled batch saves, decided as a whole (`sync::decide::decide_batch`) and applied by
/// [`Store::commit_plan`] in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Contacts that left HubSpot or came back, applied first.
    pub removals: Vec<Removal>,
    /// Every evaluation to save.
    pub evaluated: Vec<Evaluated>,
}

/// A contact that left HubSpot or came back, as the webhooks and the incremental cycle see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Deleted (archived) in HubSpot: kept for the audit, never evaluated again.
    Deleted(HubSpotId),
    /// Merged into `survivor`: its ledger moves there (each event once) and the survivor keeps
    /// the furthest stage either had reached.
    Merged {
        /// The contact merged away (archived by HubSpot).
        loser: HubSpotId,
        /// The contact that remains.
        survivor: HubSpotId,
    },
    /// Listed as active again after a deletion: evaluated again from now on (a merge or a
    /// privacy deletion is never undone).
    Restored(HubSpotId),
}

/// The state a survivor continues from after a merge: the loser's when it had gone further.
pub fn merged_state<'a>(survivor: &'a ContactState, loser: &'a ContactState) -> &'a ContactState {
    if loser.stage > survivor.stage { loser } else { survivor }
}

/// A promotion Salesforce accepted, as [`Store::save_promotion`] saves it.
#[derive(Debug, Clone)]
pub struct Promoted<'a> {
    /// The promoted contact.
    pub contact_id: &'a HubSpotId,
    /// Its Salesforce records.
    pub link: &'a SalesforceLink,
    /// Its Salesforce owner.
    pub owner: &'a str,
    /// Why that owner (stored with the assignment, and audited).
    pub trace: &'a crate::salesforce::routing::Trace,
    /// The HubSpot write of the Salesforce ids: (idempotency key, JSON payload).
    pub write: (String, String),
}

async fn set_promoted(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &HubSpotId,
    link: &SalesforceLink,
    owner: &str,
) -> Result<(), StoreError> {
    lock_row(&mut *tx, id).await?;
    let row = sqlx::query("SELECT state FROM contacts WHERE contact_id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = row {
        let mut state: ContactState =
            serde_json::from_str(&row.get::<String, _>(0)).map_err(|e| corrupt(format!("contacts/{id}.state"), e))?;
        state.salesforce = Some(link.clone());
        state.promotion_pending = false;
        sqlx::query(
            "UPDATE contacts SET state = $1, sf_account_id = $2, sf_contact_id = $3, sf_opportunity_id = $4, owner_id = $5 \
             WHERE contact_id = $6",
        )
        .bind(json(&state))
        .bind(link.account_id.as_deref())
        .bind(link.contact_id.as_deref())
        .bind(link.opportunity_id.as_deref())
        .bind(owner)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn mark_removed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &HubSpotId,
    why: &str,
    merged_into: Option<&HubSpotId>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE contacts SET removed = $1, merged_into = $2 WHERE contact_id = $3")
        .bind(why)
        .bind(merged_into.map(|m| m.as_str()))
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Applies one removal inside a write transaction (of [`Store::commit_plan`]).
async fn apply(tx: &mut sqlx::Transaction<'_, sqlx::Any>, r: &Removal) -> Result<(), StoreError> {
    match r {
        Removal::Deleted(id) => mark_removed(tx, id, "deleted", None).await,
        Removal::Restored(id) => {
            sqlx::query(
                "UPDATE contacts SET removed = NULL, merged_into = NULL WHERE contact_id = $1 AND removed <> 'privacy'",
            )
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        Removal::Merged { loser, survivor } => {
            sqlx::query(
                "INSERT INTO events (contact_id, event_id, kind, at, body) SELECT $1, event_id, kind, at, body FROM events \
                 WHERE contact_id = $2 ON CONFLICT (contact_id, event_id) DO NOTHING",
            )
            .bind(survivor.as_str())
            .bind(loser.as_str())
            .execute(&mut **tx)
            .await?;
            mark_removed(tx, loser, "merged", Some(survivor)).await?;
            let states = sqlx::query("SELECT contact_id, state FROM contacts WHERE contact_id IN ($1, $2)")
                .bind(survivor.as_str())
                .bind(loser.as_str())
                .fetch_all(&mut **tx)
                .await?;
            let mut parsed: HashMap<String, ContactState> = HashMap::new();
            for r in &states {
                let cid: String = r.get(0);
                let st: ContactState = serde_json::from_str(&r.get::<String, _>(1))
                    .map_err(|e| corrupt(format!("contacts/{cid}.state"), e))?;
                parsed.insert(cid, st);
            }
            if let (Some(l), Some(s)) = (parsed.get(loser.as_str()), parsed.get(survivor.as_str()))
                && std::ptr::eq(merged_state(s, l), l)
            {
                sqlx::query("UPDATE contacts SET state = $1, stage = $2 WHERE contact_id = $3")
                    .bind(json(l))
                    .bind(l.stage.map(|st| st.as_str()))
                    .bind(survivor.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
    }
}

/// Folds written values into the stored HubSpot values of their contacts, in one statement
/// whatever their number: the database merges each contact's values (a JSON merge patch; an
/// empty value removes the property), so no stored row is read, parsed and written back here.
/// A contact written twice ends as the two folds in turn left it.
pub(super) async fn fold_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    writes: &[(HubSpotId, BTreeMap<String, String>)],
) -> Result<(), StoreError> {
    // One patch per contact, later values over earlier ones; `null` removes.
    let mut patches: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for (id, props) in writes {
        let patch = patches.entry(id.as_str()).or_default();
        for (k, v) in props {
            let v = if v.is_empty() {
                serde_json::Value::Null
            } else {
                v.clone().into()
            };
            patch.insert(k.clone(), v);
        }
    }
    let patches: Vec<serde_json::Value> = patches
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(id, p)| serde_json::json!([id, p]))
        .collect();
    if patches.is_empty() {
        return Ok(());
    }
    // Stored values are never `null`, so stripping nulls after the merge removes exactly the
    // properties the patch cleared.
    let merged = match backend {
        Backend::Sqlite => "json_patch(properties, r.value ->> 1)",
        Backend::Postgres => {
            "CAST(jsonb_strip_nulls(CAST(properties AS JSONB) || CAST(r.value -> 1 AS JSONB)) AS TEXT)"
        }
    };
    sqlx::query(&format!(
        "UPDATE contacts SET properties = {merged} FROM {} WHERE contacts.contact_id = {}",
        rows::rows(backend, 1),
        rows::col(backend, 0, None)
    ))
    .bind(rows::bound(&patches)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts a read-modify-write with a write: the row is locked on PostgreSQL, and SQLite takes its
/// write lock before the read (a read first could not be upgraded once another write landed).
async fn lock_row(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &HubSpotId) -> Result<(), StoreError> {
    sqlx::query("UPDATE contacts SET owner_id = owner_id WHERE contact_id = $1")
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn contact_row(row: &sqlx::any::AnyRow) -> Result<ContactRow, StoreError> {
    let id: String = row.get(0);
    // Each JSON column straight into its type (no `serde_json::Value` in between: the rescore
    // reads every stored row).
    fn parse<T: serde::de::DeserializeOwned>(
        row: &sqlx::any::AnyRow,
        col: usize,
        id: &str,
        what: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(row.get::<&str, _>(col)).map_err(|e| corrupt(format!("contacts/{id}.{what}"), e))
    }
    let mut state: ContactState = parse(row, 1, &id, "state")?;
    // The Salesforce columns are the record of a promotion: an evaluation that started before
    // the promotion finished may have saved a state without the link.
    let link = SalesforceLink {
        account_id: row.get(11),
        contact_id: row.get(12),
        opportunity_id: row.get(13),
    };
    if state.salesforce.is_none() && link.contact_id.is_some() {
        state.salesforce = Some(link);
        state.promotion_pending = false;
    }
    Ok(ContactRow {
        state,
        properties: parse(row, 2, &id, "properties")?,
        company_id: row.get(3),
        company: parse(row, 4, &id, "company")?,
        removed: row.get(5),
        merged_into: row.get(6),
        fit: row.get(7),
        engagement: row.get(8),
        grade: row.get(9),
        evaluated_at: from_ms(row.get(10)),
        contact_id: HubSpotId::try_from(id).map_err(|e| corrupt("contacts.contact_id", e))?,
    })
}

/// New ledger events; one already in the ledger is kept as it is.
fn event_rows(backend: Backend) -> String {
    rows::insert(
        backend,
        "events (contact_id, event_id, kind, at, body)",
        &[None, None, None, Some("BIGINT"), None],
        " ON CONFLICT (contact_id, event_id) DO NOTHING",
    )
}

/// Audit lines, in the batch's order (their ids order a contact's log).
fn audit_rows(backend: Backend) -> String {
    rows::insert(
        backend,
        "audit (contact_id, at, change, reason, rules)",
        &[None, Some("BIGINT"), None, None, None],
        "",
    )
}

/// Each contact's last evaluation in the batch, in the batch's order: a statement over many
/// rows may update a row only once (PostgreSQL refuses twice), and the last is what one
/// statement per evaluation would have left.
fn last_per_contact(batch: &[Evaluated]) -> impl Iterator<Item = &Evaluated> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        last.insert(e.contact_id.as_str(), i);
    }
    batch
        .iter()
        .enumerate()
        .filter(move |(i, e)| last[e.contact_id.as_str()] == *i)
        .map(|(_, e)| e)
}

/// A contact saved with its decision: inserted, or updated with the HubSpot values and company
/// it was decided on (a Salesforce id once known is never cleared).
fn contact_rows(backend: Backend) -> String {
    let (f, b) = (Some("DOUBLE PRECISION"), Some("BIGINT"));
    rows::insert(
        backend,
        "contacts (contact_id, stage, status, fit, engagement, grade, rules_version, recycle_count, \
         sf_account_id, sf_contact_id, sf_opportunity_id, company_id, properties, company, state, evaluated_at)",
        &[
            None, None, None, f, f, None, None, b, None, None, None, None, None, None, None, b,
        ],
        " ON CONFLICT (contact_id) DO UPDATE SET stage = excluded.stage, status = excluded.status, fit = excluded.fit, \
         engagement = excluded.engagement, grade = excluded.grade, rules_version = excluded.rules_version, \
         recycle_count = excluded.recycle_count, \
         sf_account_id = COALESCE(excluded.sf_account_id, contacts.sf_account_id), \
         sf_contact_id = COALESCE(excluded.sf_contact_id, contacts.sf_contact_id), \
         sf_opportunity_id = COALESCE(excluded.sf_opportunity_id, contacts.sf_opportunity_id), \
         company_id = excluded.company_id, properties = excluded.properties, company = excluded.company, \
         state = excluded.state, evaluated_at = excluded.evaluated_at",
    )
}

/// A rescored contact: its decision saved over the stored row, whose HubSpot values and company
/// the rescore read and does not change (a pull that saved newer ones meanwhile keeps them).
fn rescored_rows(backend: Backend) -> String {
    let c = |i, ty| rows::col(backend, i, ty);
    let (f, b) = (Some("DOUBLE PRECISION"), Some("BIGINT"));
    format!(
        "UPDATE contacts SET stage = {}, status = {}, fit = {}, engagement = {}, grade = {}, rules_version = {}, \
         recycle_count = {}, sf_account_id = COALESCE({}, sf_account_id), sf_contact_id = COALESCE({}, sf_contact_id), \
         sf_opportunity_id = COALESCE({}, sf_opportunity_id), state = {}, evaluated_at = {} \
         FROM {} WHERE contacts.contact_id = {}",
        c(1, None),
        c(2, None),
        c(3, f),
        c(4, f),
        c(5, None),
        c(6, None),
        c(7, b),
        c(8, None),
        c(9, None),
        c(10, None),
        c(11, None),
        c(12, b),
        rows::rows(backend, 1),
        c(0, None)
    )
}

/// What a batch of decisions saves beside its contacts, each table in one statement: the new
/// ledger events (a rescore's decisions have none), the audit lines, the outbox items and the
/// SLA timers started.
async fn save_decided(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    batch: &[Evaluated],
) -> Result<(), StoreError> {
    let mut ledger = Vec::new();
    let mut audit = Vec::new();
    let mut queued = Vec::new();
    let mut timers = Vec::new();
    for e in batch {
        let id = e.contact_id.as_str();
        for ev in &e.new_events {
            ledger.push(serde_json::json!([id, ev.id, ev.kind.as_str(), ms(ev.at), json(ev)]));
        }
        for t in &e.transitions {
            audit.push(serde_json::json!([id, ms(e.at), json(&t.change), t.reason, e.rules]));
        }
        for (kind, key, payload) in &e.outbox {
            queued.push(Queued {
                kind: *kind,
                key,
                contact_id: id,
                payload,
                at: e.at,
            });
        }
        timers.extend(e.sla_timers.iter().map(|t| (t, e.at)));
    }
    execute_rows(tx, &event_rows(backend), &ledger).await?;
    execute_rows(tx, &audit_rows(backend), &audit).await?;
    super::outbox::enqueue_many(tx, backend, &queued).await?;
    super::sla::start_timers(tx, backend, &timers).await
}

/// Runs `sql` over `rows` bound as its one parameter (nothing when there is no row).
async fn execute_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &str,
    rows: &[serde_json::Value],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(sql).bind(rows::bound(rows)?).execute(&mut **tx).await?;
    Ok(())
}

/// `$first, $first+1, …` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("leadsync's own types serialise")
}
