//! HubSpot owners, cached in memory: who `hubspot_owner_id` names, with their email and name, so
//! routing can give a lead to the Salesforce user its HubSpot owner is (and the follow-up names
//! the owner).
//!
//! The list (`GET /crm/v3/owners`, every page, active and archived) is read at most once an
//! hour, or sooner when a contact names an owner the cached list does not hold (someone added
//! since), though never more than once every [`UNKNOWN_RETRY`], so a stale or bogus id on many
//! contacts costs one read, not one per promotion. Emails are personal data: never logged.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex;

use crate::hubspot::client::{HubSpotClient, HubSpotError};
use crate::hubspot::limiter::Priority;
use crate::hubspot::properties::Owner;

/// How long a read of the owners list is trusted.
pub const OWNERS_TTL: Duration = Duration::hours(1);
/// Least time between two reads caused by an unknown owner id.
pub const UNKNOWN_RETRY: Duration = Duration::minutes(5);

/// The cached owners list.
#[derive(Debug, Default)]
pub struct OwnersCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Owner id → lower-cased email (`None` without one); archived owners included.
    emails: HashMap<String, Option<String>>,
    /// Owner id → "first last" (owners without a name left out).
    names: HashMap<String, String>,
    read_at: Option<DateTime<Utc>>,
}

/// Whether the list must be read again (pure): never read, older than the TTL, or an unknown id
/// and the last read older than [`UNKNOWN_RETRY`].
pub fn stale(read_at: Option<DateTime<Utc>>, unknown: bool, now: DateTime<Utc>) -> bool {
    match read_at {
        None => true,
        Some(at) => now - at >= OWNERS_TTL || (unknown && now - at >= UNKNOWN_RETRY),
    }
}

impl OwnersCache {
    /// The emails of the owners `ids` name (lower-cased), reading the list first when it is
    /// stale. Ids the list does not hold, or owners without an email, are left out. When the
    /// read fails and a list is cached, the cached one is used (a warning says why); without a
    /// cached list the error is returned.
    pub async fn emails(
        &self,
        hubspot: &HubSpotClient,
        ids: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, String>, HubSpotError> {
        let state = self.fresh(hubspot, ids, now).await?;
        Ok(ids
            .iter()
            .filter_map(|id| Some((id.clone(), state.emails.get(id)?.clone()?)))
            .collect())
    }

    /// The names ("first last") of the owners `ids` name, from the same list and reads as
    /// [`OwnersCache::emails`]; owners without a name are left out.
    pub async fn names(
        &self,
        hubspot: &HubSpotClient,
        ids: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, String>, HubSpotError> {
        let state = self.fresh(hubspot, ids, now).await?;
        Ok(ids
            .iter()
            .filter_map(|id| Some((id.clone(), state.names.get(id)?.clone())))
            .collect())
    }

    /// The cached list, read first when it is stale for `ids`.
    async fn fresh(
        &self,
        hubspot: &HubSpotClient,
        ids: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<tokio::sync::MutexGuard<'_, State>, HubSpotError> {
        let mut state = self.state.lock().await;
        let unknown = ids.iter().any(|id| !state.emails.contains_key(id));
        if !ids.is_empty() && stale(state.read_at, unknown, now) {
            match hubspot.owners(Priority::Background).await {
                Ok(owners) => state.replace(owners, now),
                Err(e) if state.read_at.is_some() => {
                    tracing::warn!(error = %e, "HubSpot owners: read failed; using the cached list");
                    // Not asked again until the retry gap has passed.
                    state.read_at = Some(now - OWNERS_TTL + UNKNOWN_RETRY);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(state)
    }
}

impl State {
    fn replace(&mut self, owners: Vec<Owner>, now: DateTime<Utc>) {
        self.names = owners
            .iter()
            .filter_map(|o| {
                let name = [&o.first_name, &o.last_name]
                    .iter()
                    .filter_map(|p| p.as_deref().map(str::trim).filter(|p| !p.is_empty()))
                    .collect::<Vec<_>>()
                    .join(" ");
                (!name.is_empty()).then(|| (o.id.clone(), name))
            })
            .collect();
        self.emails = owners
            .into_iter()
            .map(|o| {
                let email = o.email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty());
                (o.id, email)
            })
            .collect();
        self.read_at = Some(now);
        tracing::debug!(owners = self.emails.len(), "HubSpot owners read");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_hourly_or_for_an_unknown_owner_at_most_every_five_minutes() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z").unwrap().to_utc();
        let at = |m: i64| t0 + Duration::minutes(m);
        #[rustfmt::skip]
        let cases = [
            // (last read, unknown id seen, now) → read again
            (None, false, at(0), true),
            (Some(at(0)), false, at(59), false),
            (Some(at(0)), false, at(60), true),
            (Some(at(0)), true, at(4), false),
            (Some(at(0)), true, at(5), true),
        ];
        for (read_at, unknown, now, want) in cases {
            assert_eq!(stale(read_at, unknown, now), want, "{read_at:?} {unknown} {now}");
        }
    }
}
