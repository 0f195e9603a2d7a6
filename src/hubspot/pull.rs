//! Engagements and companies of a block of contacts (up to 1,000, the associations batch size),
//! at the fewest calls the batch sizes allow: one association read per engagement type and one
//! for companies, plus one batch read per 100 engagements or companies not already cached.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::{HubSpotClient, HubSpotError};
use super::engagements::{ENGAGEMENT_TYPES, to_event};
use super::limiter::Priority;
use super::types::{BATCH_LIMIT, HubSpotObject};
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

/// What the association reads of one block found: for each engagement type (in
/// [`ENGAGEMENT_TYPES`]' order) and for companies, the linked ids of each contact; none for a
/// block without contacts new to leadsync (`BlockLinks::default()`).
#[derive(Debug)]
pub struct BlockLinks {
    engagements: Vec<BTreeMap<String, Vec<String>>>,
    companies: BTreeMap<String, Vec<String>>,
}

/// Engagements and companies of consecutive blocks, read 100 a call: the ids a block's
/// associations name queue behind the previous blocks' leftovers, and only full batches are read
/// until the last block (or until [`Carried::MAX_WAITING`] blocks wait), so that a backfill's
/// partial batches are carried into the next block's reads instead of costing a call per type
/// and block. A block comes out, in order, once every record it links is read; records are held
/// only while a waiting block needs them.
#[derive(Debug)]
pub struct Carried<T> {
    waiting: VecDeque<(T, BlockLinks)>,
    /// Ids to read, oldest first: one queue per engagement type, then companies.
    unread: Vec<VecDeque<String>>,
    queued: Vec<HashSet<String>>,
    /// Engagements read (`None`: no usable time, or HubSpot returned no record), by type.
    events: Vec<HashMap<String, Option<Event>>>,
    companies: HashMap<String, Option<HubSpotObject>>,
}

impl Default for BlockLinks {
    fn default() -> Self {
        BlockLinks {
            engagements: vec![BTreeMap::new(); ENGAGEMENT_TYPES.len()],
            companies: BTreeMap::new(),
        }
    }
}

impl<T> Default for Carried<T> {
    fn default() -> Self {
        let kinds = ENGAGEMENT_TYPES.len() + 1;
        Carried {
            waiting: VecDeque::new(),
            unread: vec![VecDeque::new(); kinds],
            queued: vec![HashSet::new(); kinds],
            events: vec![HashMap::new(); ENGAGEMENT_TYPES.len()],
            companies: HashMap::new(),
        }
    }
}

/// A block whose records are all read: its tag, events by contact and each contact's company.
pub type Complete<T> = (T, BTreeMap<String, Vec<Event>>, BTreeMap<String, HubSpotObject>);

impl<T> Carried<T> {
    /// Blocks waiting at most: once this many wait and full batches would not complete the
    /// oldest, every queue is read, partial batches too (a type with few records per block,
    /// tasks, would otherwise hold blocks back for long).
    pub const MAX_WAITING: usize = 2;

    /// Queues a block's links (the companies `cache` holds are not read again).
    pub fn push(&mut self, tag: T, links: BlockLinks, cache: &CompanyCache) {
        let companies = ENGAGEMENT_TYPES.len();
        for (k, by_contact) in links.engagements.iter().enumerate() {
            for id in by_contact.values().flatten() {
                if !self.events[k].contains_key(id) && self.queued[k].insert(id.clone()) {
                    self.unread[k].push_back(id.clone());
                }
            }
        }
        for id in links.companies.values().filter_map(|v| v.first()) {
            if self.companies.contains_key(id) || self.queued[companies].contains(id) {
                continue;
            }
            match cache.get(id) {
                Some(c) => {
                    self.companies.insert(id.clone(), Some(c));
                }
                None => {
                    self.queued[companies].insert(id.clone());
                    self.unread[companies].push_back(id.clone());
                }
            }
        }
        self.waiting.push_back((tag, links));
    }

    /// True when no block waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Reads the full batches of every queue (every id when `last`, or when too many blocks
    /// wait), all types at once (the limiter paces the calls), and returns the blocks now
    /// complete, in the order they were pushed.
    pub async fn read(
        &mut self,
        hubspot: &HubSpotClient,
        company_properties: &[String],
        priority: Priority,
        cache: &CompanyCache,
        last: bool,
    ) -> Result<Vec<Complete<T>>, HubSpotError> {
        // Full batches first; a queue's every id only at the end, or when the oldest block
        // would otherwise wait for more than `MAX_WAITING - 1` later blocks.
        let held = self.waiting.len() >= Self::MAX_WAITING;
        let front = self.front_needs();
        let batches: Vec<Vec<String>> = self
            .unread
            .iter_mut()
            .zip(front)
            .map(|(q, needed)| {
                let full = q.len() / BATCH_LIMIT * BATCH_LIMIT;
                let n = if last || (held && needed > full) { q.len() } else { full };
                q.drain(..n).collect()
            })
            .collect();
        let reads = batches.iter().enumerate().map(|(k, ids)| async move {
            if ids.is_empty() {
                return Ok::<_, HubSpotError>(Vec::new());
            }
            match ENGAGEMENT_TYPES.get(k) {
                Some(t) => {
                    let props: Vec<String> = t.properties.iter().map(|p| p.to_string()).collect();
                    hubspot.batch_read(t.object, ids, &props, None, priority).await
                }
                None => {
                    hubspot
                        .batch_read("companies", ids, company_properties, None, priority)
                        .await
                }
            }
        });
        let read = futures::future::try_join_all(reads).await?;
        for (k, (ids, records)) in batches.into_iter().zip(read).enumerate() {
            for id in &ids {
                self.queued[k].remove(id);
            }
            match ENGAGEMENT_TYPES.get(k) {
                Some(t) => {
                    let got = &mut self.events[k];
                    for id in ids {
                        got.insert(id, None);
                    }
                    for r in &records {
                        got.insert(r.id.clone(), to_event(t, r));
                    }
                }
                None => {
                    cache.put(records.iter().cloned());
                    for id in ids {
                        self.companies.insert(id, None);
                    }
                    for c in records {
                        self.companies.insert(c.id.clone(), Some(c));
                    }
                }
            }
        }
        let mut complete = Vec::new();
        while self.waiting.front().is_some_and(|(_, links)| self.is_read(links)) {
            let Some((tag, links)) = self.waiting.pop_front() else {
                break;
            };
            complete.push(self.take(tag, links));
        }
        Ok(complete)
    }

    /// How many ids of each queue the oldest block still needs (they are at its front).
    fn front_needs(&self) -> Vec<usize> {
        let companies = ENGAGEMENT_TYPES.len();
        let Some((_, links)) = self.waiting.front() else {
            return vec![0; companies + 1];
        };
        let mut needs: Vec<usize> = links
            .engagements
            .iter()
            .enumerate()
            .map(|(k, by)| {
                let ids: HashSet<&String> = by
                    .values()
                    .flatten()
                    .filter(|id| self.queued[k].contains(*id))
                    .collect();
                ids.len()
            })
            .collect();
        let ids: HashSet<&String> = links
            .companies
            .values()
            .filter_map(|v| v.first())
            .filter(|id| self.queued[companies].contains(*id))
            .collect();
        needs.push(ids.len());
        needs
    }

    fn is_read(&self, links: &BlockLinks) -> bool {
        let companies = ENGAGEMENT_TYPES.len();
        links
            .engagements
            .iter()
            .enumerate()
            .all(|(k, by)| by.values().flatten().all(|id| !self.queued[k].contains(id)))
            && links
                .companies
                .values()
                .filter_map(|v| v.first())
                .all(|id| !self.queued[companies].contains(id))
    }

    /// A read block's events (each contact's in the types' order, as one read after another
    /// would give them) and companies; then forgets the records no waiting block links.
    fn take(&mut self, tag: T, links: BlockLinks) -> Complete<T> {
        let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (k, by_contact) in links.engagements.iter().enumerate() {
            for (contact, linked) in by_contact {
                let list = events.entry(contact.clone()).or_default();
                list.extend(linked.iter().filter_map(|id| self.events[k].get(id).cloned().flatten()));
            }
        }
        let companies: BTreeMap<String, HubSpotObject> = links
            .companies
            .iter()
            .filter_map(|(contact, v)| {
                let c = self.companies.get(v.first()?)?.clone()?;
                Some((contact.clone(), c))
            })
            .collect();
        for (k, held) in self.events.iter_mut().enumerate() {
            let needed: HashSet<&String> = self
                .waiting
                .iter()
                .flat_map(|(_, l)| l.engagements.get(k).into_iter().flat_map(|by| by.values().flatten()))
                .collect();
            held.retain(|id, _| needed.contains(id));
        }
        let needed: HashSet<&String> = self
            .waiting
            .iter()
            .flat_map(|(_, l)| l.companies.values().filter_map(|v| v.first()))
            .collect();
        self.companies.retain(|id, _| needed.contains(id));
        (tag, events, companies)
    }
}

impl HubSpotClient {
    /// The association reads of a block of contacts (at most 1,000 for the fewest calls): one
    /// per engagement type and one for companies, all at once (the limiter paces them).
    pub async fn block_links(&self, contacts: &[String], priority: Priority) -> Result<BlockLinks, HubSpotError> {
        let types = ENGAGEMENT_TYPES
            .iter()
            .map(|t| self.associations("contacts", t.object, contacts, priority));
        let (engagements, companies) = futures::future::try_join(
            futures::future::try_join_all(types),
            self.associations("contacts", "companies", contacts, priority),
        )
        .await?;
        Ok(BlockLinks { engagements, companies })
    }

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
        let mut carried = Carried::default();
        carried.push((), self.block_links(&ids, priority).await?, cache);
        let complete = carried.read(self, company_properties, priority, cache, true).await?;
        let (events, companies) = complete.into_iter().next().map(|((), e, c)| (e, c)).unwrap_or_default();
        Ok(Pulled {
            contacts,
            events,
            companies,
        })
    }
}
