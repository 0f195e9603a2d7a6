//! Behaviour read ahead of its contacts: a backfill lists every form submission (and, where the
//! portal has the APIs, page views and email events) once, before it lists the contacts, and
//! each block of contacts then takes its own from here. Rows are keyed by the contact id, or by a
//! SHA-256 of the submitter's lower-cased email (the forms API gives no contact id), never by the
//! email itself. They live only while a backfill runs: it clears them when it is done.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::contacts::placeholders;
use super::write::PATIENT_WAIT;
use super::{Store, StoreError, corrupt, ms};
use crate::lifecycle::Event;

/// The key staged behaviour of an email is filed under: no personal data in clear.
pub fn email_key(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    format!("email:{}", hex::encode(digest))
}

/// The key staged behaviour of a contact id is filed under.
pub fn contact_key(id: &str) -> String {
    format!("contact:{id}")
}

impl Store {
    /// Files events under their keys; an event already filed under its key is kept once.
    pub async fn stage(&self, rows: &[(String, Event)]) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            // Many rows per INSERT: a backfill stages a portal's whole history.
            for chunk in rows.chunks(200) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| format!("({})", placeholders(4 * i + 1, 4)))
                    .collect();
                let sql = format!(
                    "INSERT INTO staged (key, event_id, at, body) VALUES {} ON CONFLICT (key, event_id) DO NOTHING",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (key, ev) in chunk {
                    let body = serde_json::to_string(ev).map_err(|e| corrupt("staged event", e))?;
                    q = q.bind(key.as_str()).bind(ev.id.as_str()).bind(ms(ev.at)).bind(body);
                }
                q.execute(&mut **tx).await?;
            }
            Ok(())
        })
        .await
    }

    /// The events filed under these keys, by key, in (time, id) order: a total order, so what
    /// a block reads does not depend on how the database lays out or sorts equal times.
    pub async fn staged(&self, keys: &[String]) -> Result<HashMap<String, Vec<Event>>, StoreError> {
        let mut out: HashMap<String, Vec<Event>> = HashMap::new();
        for chunk in keys.chunks(500) {
            let sql = format!(
                "SELECT key, body FROM staged WHERE key IN ({}) ORDER BY at, event_id",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k.as_str());
            }
            for row in q.fetch_all(&self.pool).await? {
                let key: String = row.get(0);
                let body: String = row.get(1);
                let ev: Event = serde_json::from_str(&body).map_err(|e| corrupt(format!("staged/{key}"), e))?;
                out.entry(key).or_default().push(ev);
            }
        }
        Ok(out)
    }

    /// Drops every staged event (a backfill is done with them).
    pub async fn clear_staged(&self) -> Result<(), StoreError> {
        self.in_write(PATIENT_WAIT, async |tx| {
            sqlx::query("DELETE FROM staged").execute(&mut **tx).await?;
            Ok(())
        })
        .await
    }
}
