//! Promotion of sales-qualified leads to Account, Contact, Opportunity and the primary
//! OpportunityContactRole, in batches, exactly once.
//!
//! Calls for a batch of up to 200 fresh leads: one composite lookup, one upsert each for
//! Accounts, Contacts and Opportunities, one create for the contact roles: five. Existing records
//! (found by leadsync's external ids, the contact's email or the company's domain) are linked,
//! never written again, so a repeated batch costs the lookup and one contact-role query.
//!
//! Exactly once: Accounts, Contacts and Opportunities are written by upsert on external ids
//! (`HubSpot_Company_Id__c`, `HubSpot_Contact_Id__c`, `LeadSync_Key__c` = `hs-{contact}-{cycle}`),
//! so a write repeated after a crash, or racing a lookup that missed it, updates instead of
//! creating. OpportunityContactRole has no leadsync external id, so it is created without a
//! query only when the opportunity upsert answered `created: true` (nobody else can have a role
//! on an opportunity created a moment ago); for every opportunity that already existed, the roles
//! are queried first (one query) and only a missing one is created. That also repairs a crash
//! between the opportunity and its role.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::client::{Call, SalesforceClient, SalesforceError};
use super::mapping::{LeadProperties, SalesforceMapping};
pub use super::plan::refusal;
use super::plan::{Work, finish, lookup_request, prepare, resolve};
use super::rest::{COLLECTION_MAX, SalesforceSaveResult};
use super::retry::SalesforceRetryPolicy;
use super::routing::{self, Considered, Roster, Strategy, Trace};
use super::soql::literal;
use crate::lifecycle::snapshot::{HubSpotId, SalesforceLink};

/// Opportunity `Name` length.
const OPPORTUNITY_NAME_MAX: usize = 120;

/// One lead to promote.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionInput {
    /// HubSpot contact id.
    pub contact_id: HubSpotId,
    /// Its HubSpot properties.
    pub contact: BTreeMap<String, String>,
    /// Its primary company's HubSpot id, if any.
    pub company_id: Option<String>,
    /// The company's HubSpot properties (empty without a company).
    pub company: BTreeMap<String, String>,
    /// Which SQL cycle this is (a recycled lead that qualifies again gets a new opportunity).
    pub cycle: u32,
    /// Email of the contact's HubSpot owner (`hubspot_owner_id`), when it has one the owners
    /// list knows: routing gives the lead to the active Salesforce user with that email.
    pub owner_email: Option<String>,
    /// What leadsync's store knows of the lead's owners.
    pub owners: KnownOwners,
}

/// What leadsync's store knows of a lead's owners, for routing (Salesforce user ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownOwners {
    /// The contact's owner since an earlier promotion: kept across recycles (route once).
    pub current: Option<String>,
    /// The rep who owns the company's other promoted contacts.
    pub company: Option<String>,
    /// Who takes the lead when nobody can: its team's `fallback_owner` in `mappings/sla.toml`.
    pub fallback: Option<String>,
}

/// What happened to one lead.
#[derive(Debug, Clone, PartialEq)]
pub enum PromotionOutcome {
    /// In Salesforce, with its records and owner.
    Promoted {
        /// HubSpot contact id.
        contact_id: HubSpotId,
        /// Account, Contact and Opportunity ids.
        link: SalesforceLink,
        /// Owner of the opportunity.
        owner_id: String,
        /// How the owner was chosen.
        strategy: Strategy,
        /// Why this owner: the candidates, why each was dropped, the rule that won.
        trace: Trace,
    },
    /// A person must decide (ambiguous duplicates, no company, no owner).
    Review {
        /// HubSpot contact id.
        contact_id: HubSpotId,
        /// Why.
        reason: String,
    },
    /// Salesforce refused the data (validation, required field, picklist): fix the mapping or
    /// the record, then retry.
    DeadLetter {
        /// HubSpot contact id.
        contact_id: HubSpotId,
        /// Salesforce's error code, or `LEADSYNC_MAPPING`.
        code: String,
        /// Salesforce's message.
        message: String,
    },
    /// Transient (a locked row, a record deleted meanwhile): promote again later.
    Retry {
        /// HubSpot contact id.
        contact_id: HubSpotId,
        /// Why.
        reason: String,
    },
}

impl PromotionOutcome {
    /// The lead this is about.
    pub fn contact_id(&self) -> &HubSpotId {
        match self {
            Self::Promoted { contact_id, .. }
            | Self::Review { contact_id, .. }
            | Self::DeadLetter { contact_id, .. }
            | Self::Retry { contact_id, .. } => contact_id,
        }
    }
}

/// The opportunity key of a lead's SQL cycle: repeated promotions of the cycle update it.
pub fn opportunity_key(contact_id: &HubSpotId, cycle: u32) -> String {
    format!("hs-{contact_id}-{cycle}")
}

/// Calls [`SalesforceClient::promote`] makes for a batch of `n` leads none of which Salesforce
/// knows yet: one lookup, then per 200 one upsert each for Accounts, Contacts and Opportunities
/// and one contact-role create. The budget check before a batch and the dry run's estimate.
pub fn fresh_batch_calls(n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    1 + 4 * n.div_ceil(COLLECTION_MAX) as u64
}

impl SalesforceClient {
    /// Promotes `batch`: one outcome per input, in order. `roster` is who can take leads now and
    /// the stored rotation position, advanced for each owner drawn (the caller persists it);
    /// each lead assigned counts against its rep's cap for the next. `today` dates the close.
    /// An `Err` means nothing can be said per lead (a pause, a refused call): the whole batch is
    /// tried again later, which is safe because every write is keyed.
    pub async fn promote(
        &self,
        mapping: &SalesforceMapping,
        batch: &[PromotionInput],
        roster: &mut Roster,
        today: NaiveDate,
    ) -> Result<Vec<PromotionOutcome>, SalesforceError> {
        if batch.is_empty() {
            return Ok(vec![]);
        }
        self.check_budget(fresh_batch_calls(batch.len()))?;
        let mut work = prepare(mapping, batch);
        let existing = self.lookup(&lookup_request(mapping, &work)).await?;
        resolve(mapping, &mut work, &existing, roster);
        self.write_accounts(mapping, &mut work).await?;
        self.write_contacts(mapping, &mut work).await?;
        self.write_opportunities(mapping, &mut work, today).await?;
        self.write_roles(mapping, &mut work).await?;
        Ok(finish(batch, work))
    }

    async fn write_accounts(&self, mapping: &SalesforceMapping, work: &mut [Work<'_>]) -> Result<(), SalesforceError> {
        let mut keys: Vec<String> = Vec::new();
        let mut records = Vec::new();
        for w in work.iter().filter(|w| w.open()) {
            let Some(key) = &w.account_upsert else { continue };
            if keys.contains(key) {
                continue;
            }
            let mut r = w.records.as_ref().map(|r| r.0.clone()).unwrap_or_default();
            r.insert(mapping.account_external_id.clone(), json!(key));
            if let Some(o) = &w.owner {
                r.insert("OwnerId".into(), json!(o.owner));
            }
            keys.push(key.clone());
            records.push(Value::Object(r));
        }
        if records.is_empty() {
            return Ok(());
        }
        let results = self.upsert("Account", &mapping.account_external_id, &records).await?;
        let by_key: HashMap<&String, &SalesforceSaveResult> = keys.iter().zip(&results).collect();
        let mut linked = Vec::new();
        for (i, w) in work.iter_mut().enumerate().filter(|(_, w)| w.open()) {
            let Some(key) = w.account_upsert.clone() else { continue };
            let result = by_key[&key];
            match saved(w.id(), "Account", result) {
                Ok(id) => {
                    if !result.success {
                        // A duplicate rule named one existing account: the lead joins it.
                        linked.push((i, id.clone()));
                    }
                    w.account = Some(id);
                }
                Err(outcome) => w.done = Some(*outcome),
            }
        }
        self.adopt_account_owners(work, &linked).await
    }

    /// Leads that joined an existing account through a duplicate rule go to its owner, like any
    /// lead of a known company (one query, only when that happened).
    async fn adopt_account_owners(
        &self,
        work: &mut [Work<'_>],
        linked: &[(usize, String)],
    ) -> Result<(), SalesforceError> {
        if linked.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<&str> = linked.iter().map(|(_, id)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut owners: HashMap<String, String> = HashMap::new();
        for chunk in ids.chunks(COLLECTION_MAX) {
            let list: Vec<String> = chunk.iter().map(|id| literal(id)).collect();
            let soql = format!("SELECT Id, OwnerId FROM Account WHERE Id IN ({})", list.join(", "));
            for r in self.query::<Value>(&soql).await? {
                if let (Some(id), Some(owner)) = (r["Id"].as_str(), r["OwnerId"].as_str()) {
                    owners.insert(id.to_string(), owner.to_string());
                }
            }
        }
        for (i, id) in linked {
            let w = &mut work[*i];
            let kept = w.owner.as_ref().is_some_and(|o| o.strategy == Strategy::KeptOwner);
            if let (Some(owner), false) = (owners.get(id), kept) {
                w.account_owner = Some(owner.clone());
                w.owner = Some(routing::Assignment {
                    owner: owner.clone(),
                    strategy: Strategy::AccountOwner,
                });
                // The trace says so: the account a duplicate rule named decided, after routing.
                let trace = w.trace.get_or_insert_with(Trace::default);
                trace.considered.push(Considered {
                    rule: Strategy::AccountOwner,
                    candidate: Some(owner.clone()),
                    dropped: None,
                });
                trace.won = Some(Strategy::AccountOwner);
            }
        }
        Ok(())
    }

    async fn write_contacts(&self, mapping: &SalesforceMapping, work: &mut [Work<'_>]) -> Result<(), SalesforceError> {
        let mut idx = Vec::new();
        let mut records = Vec::new();
        for (i, w) in work.iter().enumerate().filter(|(_, w)| w.open() && w.contact_upsert) {
            let mut r = w.records.as_ref().map(|r| r.1.clone()).unwrap_or_default();
            r.insert(mapping.contact_external_id.clone(), json!(w.id().as_str()));
            r.insert("AccountId".into(), json!(w.account));
            if w.contact.is_none() {
                if let Some(o) = &w.owner {
                    r.insert("OwnerId".into(), json!(o.owner));
                }
            }
            idx.push(i);
            records.push(Value::Object(r));
        }
        if records.is_empty() {
            return Ok(());
        }
        let results = self.upsert("Contact", &mapping.contact_external_id, &records).await?;
        for (i, result) in idx.into_iter().zip(&results) {
            let w = &mut work[i];
            match saved(w.id(), "Contact", result) {
                Ok(id) => w.contact = Some(id),
                Err(outcome) => w.done = Some(*outcome),
            }
        }
        Ok(())
    }

    async fn write_opportunities(
        &self,
        mapping: &SalesforceMapping,
        work: &mut [Work<'_>],
        today: NaiveDate,
    ) -> Result<(), SalesforceError> {
        let close = today + chrono::Days::new(u64::from(mapping.close_in_days));
        let mut idx = Vec::new();
        let mut records = Vec::new();
        for (i, w) in work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.open() && w.opportunity.is_none())
        {
            let lead = LeadProperties {
                contact: &w.input.contact,
                company: &w.input.company,
            };
            let mut name: String = mapping.opportunity_name.render(&lead);
            if name.is_empty() {
                name = format!("HubSpot contact {}", w.id());
            }
            let mut r = w.records.as_ref().map(|r| r.2.clone()).unwrap_or_default();
            r.insert(
                "Name".into(),
                json!(name.chars().take(OPPORTUNITY_NAME_MAX).collect::<String>()),
            );
            r.insert("StageName".into(), json!(mapping.stage));
            r.insert("CloseDate".into(), json!(close.format("%Y-%m-%d").to_string()));
            r.insert("AccountId".into(), json!(w.account));
            if let Some(o) = &w.owner {
                r.insert("OwnerId".into(), json!(o.owner));
            }
            r.insert(mapping.opportunity_external_id.clone(), json!(w.key));
            idx.push(i);
            records.push(Value::Object(r));
        }
        if records.is_empty() {
            return Ok(());
        }
        let results = self
            .upsert("Opportunity", &mapping.opportunity_external_id, &records)
            .await?;
        for (i, result) in idx.into_iter().zip(&results) {
            let w = &mut work[i];
            match saved(w.id(), "Opportunity", result) {
                Ok(id) => {
                    w.opportunity = Some(id);
                    // Anything but a fresh creation may already have its role.
                    w.opportunity_existed = result.created != Some(true);
                }
                Err(outcome) => w.done = Some(*outcome),
            }
        }
        Ok(())
    }

    /// The primary contact role of each promoted opportunity, created once. OpportunityContactRole
    /// has no external id, so a create is never repeated blind: it is sent once (no transport
    /// retry), and when its answer is lost or refused as a whole (a 5xx, a reset, a timeout after
    /// Salesforce may have applied it) the roles are looked up again and only the missing ones
    /// are sent, up to the retry policy's attempts.
    async fn write_roles(&self, mapping: &SalesforceMapping, work: &mut [Work<'_>]) -> Result<(), SalesforceError> {
        let ready = |w: &Work<'_>| w.open() && w.opportunity.is_some() && w.contact.is_some();
        let policy = self.retry_policy().clone();
        let once = SalesforceRetryPolicy {
            max_attempts: 1,
            ..policy.clone()
        };
        let mut attempt = 0;
        loop {
            // First time: only opportunities that existed before this batch may have a role.
            // After a lost answer: any of them may.
            let to_check: Vec<String> = work
                .iter()
                .filter(|w| ready(w) && (attempt > 0 || w.opportunity_existed))
                .filter_map(|w| w.opportunity.clone())
                .collect();
            let have = self.roles_of(&to_check).await?;
            let mut idx = Vec::new();
            let mut records = Vec::new();
            for (i, w) in work.iter().enumerate() {
                if !ready(w) {
                    continue;
                }
                let (Some(o), Some(c)) = (w.opportunity.clone(), w.contact.clone()) else {
                    continue;
                };
                if have.contains(&(o.clone(), c.clone())) {
                    continue;
                }
                idx.push(i);
                records
                    .push(json!({"OpportunityId": o, "ContactId": c, "IsPrimary": true, "Role": mapping.contact_role}));
            }
            if records.is_empty() {
                return Ok(());
            }
            match self.create_once("OpportunityContactRole", &records, &once).await {
                Ok(results) => {
                    for (i, result) in idx.into_iter().zip(&results) {
                        let w = &mut work[i];
                        if result.success {
                            continue;
                        }
                        // A role that is already there is what was wanted.
                        if result.errors.iter().any(|e| e.error.code == "DUPLICATE_VALUE") {
                            continue;
                        }
                        if let Err(outcome) = refusal(w.id(), "OpportunityContactRole", &result.errors) {
                            w.done = Some(*outcome);
                        }
                    }
                    return Ok(());
                }
                Err(e @ SalesforceError::Api { .. }) if attempt + 1 < policy.max_attempts => {
                    let wait = policy.base.saturating_mul(1u32 << attempt.min(16)).min(policy.cap);
                    tracing::info!(error = %e, attempt, wait_ms = wait.as_millis() as u64,
                        "contact roles: answer lost or refused; looking up what was created before sending again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The (opportunity, contact) pairs that have a contact role, for these opportunities.
    async fn roles_of(&self, opportunities: &[String]) -> Result<HashSet<(String, String)>, SalesforceError> {
        let mut have = HashSet::new();
        for chunk in opportunities.chunks(COLLECTION_MAX) {
            let list: Vec<String> = chunk.iter().map(|id| literal(id)).collect();
            let soql = format!(
                "SELECT Id, OpportunityId, ContactId FROM OpportunityContactRole WHERE OpportunityId IN ({})",
                list.join(", ")
            );
            for r in self.query::<Value>(&soql).await? {
                if let (Some(o), Some(c)) = (r["OpportunityId"].as_str(), r["ContactId"].as_str()) {
                    have.insert((o.to_string(), c.to_string()));
                }
            }
        }
        Ok(have)
    }

    /// `POST /composite/sobjects` of `records`, 200 a call, each call sent once under `policy`.
    pub(crate) async fn create_once(
        &self,
        sobject: &str,
        records: &[Value],
        policy: &SalesforceRetryPolicy,
    ) -> Result<Vec<SalesforceSaveResult>, SalesforceError> {
        const ENDPOINT: &str = "composite/sobjects create";
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX) {
            let body = super::rest::collection_body(sobject, chunk);
            let call = Call {
                endpoint: ENDPOINT,
                method: reqwest::Method::POST,
                path: "composite/sobjects",
                query: &[],
                body: Some(&body),
            };
            let answer: Vec<Value> = self.call_with(call, policy).await?;
            if answer.len() != chunk.len() {
                return Err(SalesforceError::Decode {
                    endpoint: ENDPOINT,
                    message: format!("{} results for {} records", answer.len(), chunk.len()),
                });
            }
            out.extend(answer.iter().map(SalesforceSaveResult::read));
        }
        Ok(out)
    }
}

/// The record id of a save, or the lead's outcome.
fn saved(contact_id: &HubSpotId, what: &str, r: &SalesforceSaveResult) -> Result<String, Box<PromotionOutcome>> {
    match (&r.id, r.success) {
        (Some(id), true) => Ok(id.clone()),
        _ => refusal(contact_id, what, &r.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let id = HubSpotId::try_from("42".to_string()).unwrap();
        assert_eq!(opportunity_key(&id, 3), "hs-42-3");
        assert_eq!(crate::salesforce::feedback::parse_key("hs-42-3"), Some((id, 3)));
    }
}
