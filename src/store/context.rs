//! The Salesforce context ledger: what leadsync last wrote to each Salesforce record's context
//! fields, so that only a value that changed goes out again, and the opportunity feedback read
//! can tell leadsync's own fields from sales'.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::write::PATIENT_WAIT;
use super::{OutboxItem, Store, StoreError, ms};

/// One record's fields as leadsync wrote them: (record id, HubSpot contact id, field → value).
pub type SalesforceWritten = (String, String, BTreeMap<String, String>);

impl Store {
    /// What leadsync last wrote to these Salesforce records: record id → field → value.
    pub async fn salesforce_written(
        &self,
        records: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for chunk in records.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT record_id, field, value FROM salesforce_ledger WHERE record_id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(r);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.entry(row.get(0)).or_default().insert(row.get(1), row.get(2));
            }
        }
        Ok(out)
    }

    /// Records what was written to Salesforce and marks the items done, in one transaction: a
    /// crash before it re-sends the same values (an update to what the record already holds),
    /// never loses the ledger of a write that landed.
    pub async fn save_salesforce_writes(
        &self,
        writes: &[SalesforceWritten],
        done: &[OutboxItem],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            for (record, contact, fields) in writes {
                for (field, value) in fields {
                    sqlx::query(
                        "INSERT INTO salesforce_ledger (record_id, field, contact_id, value, written_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id, field) \
                         DO UPDATE SET value = excluded.value, contact_id = excluded.contact_id, written_at = excluded.written_at",
                    )
                    .bind(record)
                    .bind(field)
                    .bind(contact)
                    .bind(value)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                }
            }
            for it in done {
                sqlx::query("UPDATE outbox SET state = 'done', updated_at = $1 WHERE id = $2 AND payload = $3")
                    .bind(ms(now))
                    .bind(it.id)
                    .bind(&it.payload)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }
}
