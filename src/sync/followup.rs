//! Sales follow-up made visible in HubSpot: how many attempts sales made, the last sales touch
//! (when, what kind) and the owner's name, as `leadsync_*` contact properties (`setup` creates
//! them), so marketing's lists and reports can use them.
//!
//! Computed by the SLA sweep from each timer's assessment ([`crate::sla::assess`]): the same
//! touches, from both CRMs, de-duplicated and counted the same way, so HubSpot shows the count
//! the SLA judges. Queued as an ordinary HubSpot write (merged and batched with the others by
//! `outbox::writeback`), only when a value differs from what leadsync last wrote.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use tracing::warn;

use super::decide::WritePayload;
use super::{SyncError, Syncer};
use crate::hubspot::limiter::Priority;
use crate::lifecycle::HubSpotId;
use crate::sla::timer::Assessment;
use crate::store::OutboxKind;

/// Sales attempts counted by the SLA (its minimum interval applied).
pub const ATTEMPTS: &str = "leadsync_sales_attempts";
/// When the last counted sales touch started (ISO 8601).
pub const LAST_TOUCH_AT: &str = "leadsync_last_sales_touch_at";
/// Its kind (`call`, `email`, `meeting`, ...).
pub const LAST_TOUCH_KIND: &str = "leadsync_last_sales_touch_kind";
/// The owner's name, from HubSpot's owners list.
pub const OWNER_NAME: &str = "leadsync_sales_owner_name";

/// One contact's follow-up as the SLA sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// Attempts counted.
    pub attempts: u32,
    /// The last counted touch: when, and its kind.
    pub last_touch: Option<(DateTime<Utc>, &'static str)>,
    /// The HubSpot owner id the timer follows.
    pub owner: Option<String>,
}

impl FollowUp {
    /// From one timer's assessment, for the owner the timer follows.
    pub fn from_assessment(a: &Assessment, owner: Option<&str>) -> FollowUp {
        FollowUp {
            attempts: a.record.attempts,
            last_touch: a.counted.last().map(|t| (t.at, t.kind.as_str())),
            owner: owner.map(str::to_string),
        }
    }

    /// The HubSpot properties, with the owner's name when `name` knows it.
    pub fn properties(&self, name: Option<&str>) -> BTreeMap<String, String> {
        let mut p = BTreeMap::from([(ATTEMPTS.to_string(), self.attempts.to_string())]);
        if let Some((at, kind)) = self.last_touch {
            p.insert(LAST_TOUCH_AT.into(), at.to_rfc3339_opts(SecondsFormat::Millis, true));
            p.insert(LAST_TOUCH_KIND.into(), kind.into());
        }
        if let Some(n) = name {
            p.insert(OWNER_NAME.into(), n.into());
        }
        p
    }
}

/// The follow-ups of one sweep's batch: per contact, its most recently started timer's.
#[derive(Debug, Default)]
pub(super) struct FollowUps(BTreeMap<String, (DateTime<Utc>, FollowUp)>);

impl FollowUps {
    /// Keeps `f` for `contact` unless a later-started timer's is already kept.
    pub(super) fn add(&mut self, contact: &str, started_at: DateTime<Utc>, f: FollowUp) {
        let kept = self.0.get(contact).is_some_and(|(at, _)| *at > started_at);
        if !kept {
            self.0.insert(contact.to_string(), (started_at, f));
        }
    }

    /// Queues one HubSpot write per contact whose values differ from what leadsync last wrote
    /// (a contact sales never touched gets none); returns how many were queued and wakes the
    /// outbox worker when one was.
    pub(super) async fn queue(self, s: &Syncer, now: DateTime<Utc>) -> Result<u64, SyncError> {
        let owners: BTreeSet<String> = self
            .0
            .values()
            .filter(|(_, f)| f.attempts > 0)
            .filter_map(|(_, f)| f.owner.clone())
            .collect();
        // Names come from the owners list the promotion's routing caches; without it (no
        // Salesforce configured) or when it cannot be read, the other values still go.
        let names = match &s.promoter {
            Some(p) if !owners.is_empty() => p.owners.names(&s.hubspot, &owners, now).await.unwrap_or_else(|e| {
                warn!(error = %e, "HubSpot owners unreadable; follow-up written without the owner's name");
                Default::default()
            }),
            _ => Default::default(),
        };
        let mut queued = 0;
        for (contact, (_, f)) in self.0 {
            let Ok(id) = HubSpotId::try_from(contact.clone()) else {
                continue;
            };
            if f.attempts == 0 {
                continue;
            }
            let props = f.properties(f.owner.as_ref().and_then(|o| names.get(o)).map(String::as_str));
            let mut changed = false;
            for (k, v) in &props {
                if !s.store.wrote(&id, k, v).await? {
                    changed = true;
                    break;
                }
            }
            if !changed {
                continue;
            }
            let payload = WritePayload {
                properties: props,
                lifecycle: None,
            };
            let payload = serde_json::to_string(&payload).expect("a write payload serializes");
            s.store
                .enqueue(
                    OutboxKind::HubSpotWrite,
                    &format!("followup:{contact}"),
                    &contact,
                    &payload,
                    now,
                )
                .await?;
            queued += 1;
        }
        if queued > 0 {
            s.outbox.wake(Priority::Background);
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_carry_the_count_the_last_touch_and_the_name_when_known() {
        let at = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().to_utc();
        let f = FollowUp {
            attempts: 2,
            last_touch: Some((at, "call")),
            owner: Some("7".into()),
        };
        let p = f.properties(Some("Ada Lovelace"));
        assert_eq!(p[ATTEMPTS], "2");
        assert_eq!(p[LAST_TOUCH_AT], "2026-03-02T10:00:00.000Z");
        assert_eq!(p[LAST_TOUCH_KIND], "call");
        assert_eq!(p[OWNER_NAME], "Ada Lovelace");
        assert!(!f.properties(None).contains_key(OWNER_NAME));
    }

    #[test]
    fn the_latest_started_timer_gives_the_follow_up() {
        let t = |h: i64| DateTime::from_timestamp(h * 3600, 0).unwrap();
        let f = |n| FollowUp {
            attempts: n,
            last_touch: None,
            owner: None,
        };
        let mut fs = FollowUps::default();
        fs.add("1", t(2), f(2));
        fs.add("1", t(1), f(1));
        assert_eq!(fs.0["1"].1.attempts, 2);
        fs.add("1", t(3), f(3));
        assert_eq!(fs.0["1"].1.attempts, 3);
    }
}
