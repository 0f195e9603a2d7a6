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
use serde_json::{Map, Value, json};

use super::client::{SalesforceClient, SalesforceError};
use super::errors::{Disposition, classify};
use super::lookup::{SalesforceExisting, SalesforceFound, SalesforceLookupRequest};
use super::mapping::{LeadProperties, SalesforceMapping};
use super::rest::{COLLECTION_MAX, SalesforceSaveError, SalesforceSaveResult};
use super::routing::{self, Lead, Strategy};
use super::soql::{company_domain, literal};
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

/// Why a record could not be written, decided from its errors (pure): link to the single record
/// a duplicate rule named, or the lead's outcome.
pub fn refusal(
    contact_id: &HubSpotId,
    what: &str,
    errors: &[SalesforceSaveError],
) -> Result<String, Box<PromotionOutcome>> {
    let cid = contact_id.clone();
    let Some(first) = errors.first() else {
        return Err(Box::new(PromotionOutcome::Retry {
            contact_id: cid,
            reason: format!("{what}: refused without an error"),
        }));
    };
    let (code, message) = (first.error.code.clone(), first.error.message.clone());
    let outcome = match classify(&code) {
        Disposition::Review => {
            let mut matches: Vec<&str> = errors.iter().flat_map(|e| &e.matches).map(String::as_str).collect();
            matches.sort_unstable();
            matches.dedup();
            if let [one] = matches.as_slice() {
                return Ok(one.to_string());
            }
            let named = if matches.is_empty() {
                String::new()
            } else {
                format!(" (matches {})", matches.join(", "))
            };
            PromotionOutcome::Review {
                contact_id: cid,
                reason: format!("{what}: {code}: {message}{named}"),
            }
        }
        Disposition::DeadLetter => PromotionOutcome::DeadLetter {
            contact_id: cid,
            code,
            message: format!("{what}: {message}"),
        },
        Disposition::Gone => PromotionOutcome::Retry {
            contact_id: cid,
            reason: format!("{what}: {code}: a record it refers to was deleted or merged; looked up afresh next time"),
        },
        Disposition::Converted => PromotionOutcome::Review {
            contact_id: cid,
            reason: format!("{what}: {code}: {message}"),
        },
        Disposition::Retry | Disposition::StopForToday | Disposition::Reauthenticate => PromotionOutcome::Retry {
            contact_id: cid,
            reason: format!("{what}: {code}: {message}"),
        },
    };
    Err(Box::new(outcome))
}

/// A lead's mapped Account, Contact and Opportunity fields.
type Records = (Map<String, Value>, Map<String, Value>, Map<String, Value>);

/// One lead's progress through the batch.
struct Work<'a> {
    input: &'a PromotionInput,
    key: String,
    email: Option<String>,
    domain: Option<String>,
    account: Option<String>,
    account_owner: Option<String>,
    account_upsert: Option<String>,
    contact: Option<String>,
    contact_upsert: bool,
    opportunity: Option<String>,
    opportunity_existed: bool,
    owner: Option<routing::Assignment>,
    records: Option<Records>,
    done: Option<PromotionOutcome>,
}

impl Work<'_> {
    fn open(&self) -> bool {
        self.done.is_none()
    }

    fn id(&self) -> &HubSpotId {
        &self.input.contact_id
    }
}

/// The opportunity key of a lead's SQL cycle: repeated promotions of the cycle update it.
pub fn opportunity_key(contact_id: &HubSpotId, cycle: u32) -> String {
    format!("hs-{contact_id}-{cycle}")
}

impl SalesforceClient {
    /// Promotes `batch`: one outcome per input, in order. `round_robin` is the stored rotation
    /// position, advanced for each owner drawn; the caller persists it. `today` dates the close.
    /// An `Err` means nothing can be said per lead (a pause, a refused call): the whole batch is
    /// tried again later, which is safe because every write is keyed.
    pub async fn promote(
        &self,
        mapping: &SalesforceMapping,
        batch: &[PromotionInput],
        round_robin: &mut u64,
        today: NaiveDate,
    ) -> Result<Vec<PromotionOutcome>, SalesforceError> {
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let chunks = batch.len().div_ceil(COLLECTION_MAX) as u64;
        self.check_budget(1 + 4 * chunks)?;
        let mut work = prepare(mapping, batch);
        let existing = self.lookup(&lookup_request(mapping, &work)).await?;
        resolve(mapping, &mut work, &existing, round_robin);
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
            if let Some(owner) = owners.get(id) {
                work[*i].account_owner = Some(owner.clone());
                work[*i].owner = Some(routing::Assignment {
                    owner: owner.clone(),
                    strategy: Strategy::AccountOwner,
                });
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

    async fn write_roles(&self, mapping: &SalesforceMapping, work: &mut [Work<'_>]) -> Result<(), SalesforceError> {
        let ready = |w: &&mut Work<'_>| w.open() && w.opportunity.is_some() && w.contact.is_some();
        let to_check: Vec<String> = work
            .iter_mut()
            .filter(ready)
            .filter(|w| w.opportunity_existed)
            .filter_map(|w| w.opportunity.clone())
            .collect();
        let mut have: HashSet<(String, String)> = HashSet::new();
        for chunk in to_check.chunks(COLLECTION_MAX) {
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
        let mut idx = Vec::new();
        let mut records = Vec::new();
        for (i, w) in work.iter_mut().enumerate() {
            if !ready(&w) {
                continue;
            }
            let (Some(o), Some(c)) = (w.opportunity.clone(), w.contact.clone()) else {
                continue;
            };
            if have.contains(&(o.clone(), c.clone())) {
                continue;
            }
            idx.push(i);
            records.push(json!({"OpportunityId": o, "ContactId": c, "IsPrimary": true, "Role": mapping.contact_role}));
        }
        if records.is_empty() {
            return Ok(());
        }
        let results = self.create("OpportunityContactRole", &records).await?;
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
        Ok(())
    }
}

/// The record id of a save, or the lead's outcome.
fn saved(contact_id: &HubSpotId, what: &str, r: &SalesforceSaveResult) -> Result<String, Box<PromotionOutcome>> {
    match (&r.id, r.success) {
        (Some(id), true) => Ok(id.clone()),
        _ => refusal(contact_id, what, &r.errors),
    }
}

/// Keys, mapped records and lookup values; repeated leads (same contact and cycle) are promoted once.
fn prepare<'a>(mapping: &SalesforceMapping, batch: &'a [PromotionInput]) -> Vec<Work<'a>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for input in batch {
        let key = opportunity_key(&input.contact_id, input.cycle);
        if !seen.insert(key.clone()) {
            continue;
        }
        let lead = LeadProperties {
            contact: &input.contact,
            company: &input.company,
        };
        let email = mapping.contact_email.get(&lead).map(|e| e.trim().to_lowercase());
        let domain = mapping
            .company_domain
            .get(&lead)
            .and_then(|d| company_domain(d, &mapping.freemail))
            .or_else(|| email.as_deref().and_then(|e| company_domain(e, &mapping.freemail)));
        let mapped = (
            SalesforceMapping::record(&mapping.account, &lead),
            SalesforceMapping::record(&mapping.contact, &lead),
            SalesforceMapping::record(&mapping.opportunity, &lead),
        );
        let (records, done) = match mapped {
            (Ok(a), Ok(c), Ok(o)) => (Some((a, c, o)), None),
            (a, c, o) => {
                let errors: Vec<String> = [a.err(), c.err(), o.err()].into_iter().flatten().flatten().collect();
                let outcome = PromotionOutcome::DeadLetter {
                    contact_id: input.contact_id.clone(),
                    code: "LEADSYNC_MAPPING".into(),
                    message: errors.join("; "),
                };
                (None, Some(outcome))
            }
        };
        out.push(Work {
            input,
            key,
            email,
            domain,
            account: None,
            account_owner: None,
            account_upsert: None,
            contact: None,
            contact_upsert: false,
            opportunity: None,
            opportunity_existed: false,
            owner: None,
            records,
            done,
        });
    }
    out
}

fn lookup_request(mapping: &SalesforceMapping, work: &[Work<'_>]) -> SalesforceLookupRequest {
    let open = || work.iter().filter(|w| w.open());
    SalesforceLookupRequest {
        contact_external_id: (
            mapping.contact_external_id.clone(),
            open().map(|w| w.id().to_string()).collect(),
        ),
        contact_emails: ("Email".into(), open().filter_map(|w| w.email.clone()).collect()),
        account_external_id: (
            mapping.account_external_id.clone(),
            open().filter_map(|w| w.input.company_id.clone()).collect(),
        ),
        account_domains: (
            mapping.account_domain_field.clone(),
            open().filter_map(|w| w.domain.clone()).collect(),
        ),
        opportunity_keys: (
            mapping.opportunity_external_id.clone(),
            open().map(|w| w.key.clone()).collect(),
        ),
        freemail: mapping.freemail.clone(),
    }
}

/// Links each lead to what exists and picks owners (pure apart from the round-robin counter).
fn resolve(mapping: &SalesforceMapping, work: &mut [Work<'_>], existing: &SalesforceExisting, round_robin: &mut u64) {
    // Owners drawn for a company new to Salesforce, so its leads in this batch share one.
    let mut new_company_owner: HashMap<String, routing::Assignment> = HashMap::new();
    for w in work.iter_mut().filter(|w| w.open()) {
        let cid = w.id().clone();
        // The person: leadsync's own contact first, then one contact with the email.
        let by_email: &[SalesforceFound] = w
            .email
            .as_ref()
            .and_then(|e| existing.contacts_by_email.get(e))
            .map_or(&[], Vec::as_slice);
        let contact = match existing.contacts_by_id.get(cid.as_str()) {
            Some(c) => Some((c, true)),
            None => match by_email {
                [] => None,
                [one] => Some((one, false)),
                many => {
                    let ids: Vec<&str> = many.iter().map(|c| c.id.as_str()).collect();
                    w.done = Some(PromotionOutcome::Review {
                        contact_id: cid,
                        reason: format!(
                            "{} Salesforce contacts share this email ({}): merge them or pick one",
                            many.len(),
                            ids.join(", ")
                        ),
                    });
                    continue;
                }
            },
        };
        // The company: leadsync's own account, then one account with the domain, then the
        // existing contact's account.
        let by_domain: &[SalesforceFound] = w
            .domain
            .as_ref()
            .and_then(|d| existing.accounts_by_domain.get(d))
            .map_or(&[], Vec::as_slice);
        let own = w.input.company_id.as_ref().and_then(|c| existing.accounts_by_id.get(c));
        let account = match (own, by_domain) {
            (Some(a), _) => Some(a.clone()),
            (None, [one]) => Some(one.clone()),
            (None, []) => None,
            (None, many) => {
                let ids: Vec<&str> = many.iter().map(|a| a.id.as_str()).collect();
                w.done = Some(PromotionOutcome::Review {
                    contact_id: cid,
                    reason: format!(
                        "{} Salesforce accounts match the domain {} ({}): merge them or pick one",
                        many.len(),
                        w.domain.as_deref().unwrap_or(""),
                        ids.join(", ")
                    ),
                });
                continue;
            }
        };
        let account = account.or_else(|| {
            contact.and_then(|(c, _)| {
                c.account.clone().map(|id| SalesforceFound {
                    id,
                    owner: c.owner.clone(),
                    ..SalesforceFound::default()
                })
            })
        });
        match &account {
            Some(a) => {
                w.account = Some(a.id.clone());
                w.account_owner = a.owner.clone();
            }
            None => match &w.input.company_id {
                Some(company) => w.account_upsert = Some(company.clone()),
                None => {
                    w.done = Some(PromotionOutcome::Review {
                        contact_id: cid,
                        reason: "no HubSpot company and no Salesforce account matches the email's domain: \
                                 associate a company in HubSpot"
                            .into(),
                    });
                    continue;
                }
            },
        }
        match contact {
            // leadsync's own contact: nothing to write. Another one: linked, not written.
            Some((c, _)) => w.contact = Some(c.id.clone()),
            None => w.contact_upsert = true,
        }
        if let Some(o) = existing.opportunities.get(&w.key) {
            w.opportunity = Some(o.id.clone());
            w.opportunity_existed = true;
        }
        // The owner: the account's, else the one already drawn for this new company, else routing.
        let lead = LeadProperties {
            contact: &w.input.contact,
            company: &w.input.company,
        };
        let routed = match (&w.account_owner, &w.account_upsert) {
            (None, Some(company)) if new_company_owner.contains_key(company) => {
                Some((new_company_owner[company].clone(), *round_robin))
            }
            _ => routing::route(
                &Lead {
                    account_owner: w.account_owner.as_deref(),
                    country: mapping.routing.country.get(&lead),
                    employees: mapping
                        .routing
                        .employees
                        .get(&lead)
                        .and_then(|e| e.replace(',', "").parse().ok()),
                    industry: mapping.routing.industry.get(&lead),
                },
                &mapping.territories,
                &mapping.round_robin,
                *round_robin,
            ),
        };
        match routed {
            Some((assignment, next)) => {
                *round_robin = next;
                if let Some(company) = &w.account_upsert {
                    new_company_owner.insert(company.clone(), assignment.clone());
                }
                w.owner = Some(assignment);
            }
            None => {
                w.done = Some(PromotionOutcome::Review {
                    contact_id: cid,
                    reason: "no owner: no territory matches and routing.round_robin lists nobody".into(),
                });
            }
        }
    }
}

/// One outcome per input, in order (a repeated input gets its first occurrence's outcome).
fn finish(batch: &[PromotionInput], work: Vec<Work<'_>>) -> Vec<PromotionOutcome> {
    let mut by_key: HashMap<String, PromotionOutcome> = HashMap::new();
    for w in work {
        let outcome = match w.done {
            Some(o) => o,
            None => match (&w.owner, &w.opportunity, &w.contact) {
                (Some(owner), Some(_), Some(_)) => PromotionOutcome::Promoted {
                    contact_id: w.input.contact_id.clone(),
                    link: SalesforceLink {
                        account_id: w.account.clone(),
                        contact_id: w.contact.clone(),
                        opportunity_id: w.opportunity.clone(),
                    },
                    owner_id: owner.owner.clone(),
                    strategy: owner.strategy.clone(),
                },
                _ => PromotionOutcome::Retry {
                    contact_id: w.input.contact_id.clone(),
                    reason: "incomplete promotion".into(),
                },
            },
        };
        by_key.insert(w.key, outcome);
    }
    batch
        .iter()
        .map(|i| by_key[&opportunity_key(&i.contact_id, i.cycle)].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::errors::SalesforceRecordError;

    fn err(code: &str, matches: &[&str]) -> SalesforceSaveError {
        SalesforceSaveError {
            error: SalesforceRecordError {
                code: code.into(),
                message: "msg".into(),
                fields: vec![],
            },
            matches: matches.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn kind(r: Result<String, Box<PromotionOutcome>>) -> String {
        match r {
            Ok(id) => format!("link {id}"),
            Err(o) => match *o {
                PromotionOutcome::Review { .. } => "review".into(),
                PromotionOutcome::DeadLetter { code, .. } => format!("dead {code}"),
                PromotionOutcome::Retry { .. } => "retry".into(),
                PromotionOutcome::Promoted { .. } => "promoted".into(),
            },
        }
    }

    #[test]
    fn refusals() {
        let id = HubSpotId::try_from("1".to_string()).unwrap();
        let r = |errors: &[SalesforceSaveError]| kind(refusal(&id, "Contact", errors));
        #[rustfmt::skip]
        let cases: [(&[SalesforceSaveError], &str); 9] = [
            (&[err("DUPLICATES_DETECTED", &["003A"])], "link 003A"),
            (&[err("DUPLICATES_DETECTED", &["003A"]), err("DUPLICATES_DETECTED", &["003A"])], "link 003A"),
            (&[err("DUPLICATES_DETECTED", &["003A", "003B"])], "review"),
            (&[err("DUPLICATE_EXTERNAL_ID", &[])], "review"),
            (&[err("UNABLE_TO_LOCK_ROW", &[])], "retry"),
            (&[err("REQUIRED_FIELD_MISSING", &[])], "dead REQUIRED_FIELD_MISSING"),
            (&[err("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", &[])], "dead INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
            (&[err("ENTITY_IS_DELETED", &[])], "retry"),
            (&[], "retry"),
        ];
        for (errors, want) in cases {
            assert_eq!(r(errors), want, "{errors:?}");
        }
    }

    #[test]
    fn keys() {
        let id = HubSpotId::try_from("42".to_string()).unwrap();
        assert_eq!(opportunity_key(&id, 3), "hs-42-3");
        assert_eq!(crate::salesforce::feedback::parse_key("hs-42-3"), Some((id, 3)));
    }
}
