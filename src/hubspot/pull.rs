//! Engagements and companies of a block of contacts (up to 1,000, the associations batch size),
//! at the fewest calls the batch sizes allow: one association read per engagement type and one
//! for companies, plus one batch read per 100 engagements or companies not already cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::{HubSpotClient, HubSpotError};
use super::limiter::Priority;
use super::types::HubSpotObject;
use crate::lifecycle::Event;

/// Contacts with what the rules need about them.
#[derive(Debug, Default)]
pub struct Pulled {
    /// The contacts, as listed or read.
    pub contacts: Vec<HubSpotObject>,
    /// Engagement events by contact id.
    pub events: BTreeMap<String, Vec<Event>>,
    /// Each contact's first associated company.
    pub companies: BTreeMap<String, HubSpotObject>,
}

/// Companies read in the last minutes: a backfill's blocks share companies (contacts of one
/// company are spread over the whole portal), so each is read once rather than once per block.
/// Bounded in age and size, so it neither serves stale companies for long nor grows with the
/// portal.
#[derive(Debug, Default)]
pub struct CompanyCache {
    entries: Mutex<HashMap<String, (Instant, HubSpotObject)>>,
}

impl CompanyCache {
    /// How long a company read stays good.
    pub const TTL: Duration = Duration::from_secs(15 * 60);
    /// Most companies kept (a few MB).
    pub const MAX: usize = 20_000;

    fn get(&self, id: &str) -> Option<HubSpotObject> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, companies: impl IntoIterator<Item = HubSpotObject>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX {
            entries.retain(|_, (at, _)| at.elapsed() < Self::TTL / 4);
            if entries.len() >= Self::MAX {
                entries.clear();
            }
        }
        let now = Instant::now();
        for c in companies {
            entries.insert(c.id.clone(), (now, c));
        }
    }
}

impl HubSpotClient {
    /// Engagements and companies of a block of contacts (at most 1,000 for the fewest calls),
    /// reading only the companies `cache` does not hold.
    pub async fn pull_block_cached(
        &self,
        contacts: Vec<HubSpotObject>,
        company_properties: &[String],
        priority: Priority,
        cache: &CompanyCache,
    ) -> Result<Pulled, HubSpotError> {
        let ids: Vec<String> = contacts.iter().map(|c| c.id.clone()).collect();
        // Engagements and company links at once: the limiter paces the calls, so a block costs
        // the budget's time rather than one round trip after another.
        let (events, links) = futures::future::try_join(
            self.contact_engagements(&ids, priority),
            self.associations("contacts", "companies", &ids, priority),
        )
        .await?;
        let mut company_ids: Vec<String> = links.values().filter_map(|v| v.first().cloned()).collect();
        company_ids.sort();
        company_ids.dedup();
        let mut companies: BTreeMap<String, HubSpotObject> = BTreeMap::new();
        let mut missing = Vec::new();
        for id in company_ids {
            match cache.get(&id) {
                Some(c) => {
                    companies.insert(id, c);
                }
                None => missing.push(id),
            }
        }
        let read = self
            .batch_read("companies", &missing, company_properties, None, priority)
            .await?;
        cache.put(read.iter().cloned());
        companies.extend(read.into_iter().map(|c| (c.id.clone(), c)));
        let by_contact = links
            .into_iter()
            .filter_map(|(contact, v)| v.first().and_then(|c| companies.get(c)).cloned().map(|c| (contact, c)))
            .collect();
        Ok(Pulled {
            contacts,
            events,
            companies: by_contact,
        })
    }
}
