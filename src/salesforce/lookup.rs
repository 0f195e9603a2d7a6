//! What already exists in Salesforce for a batch of leads, found in as few API calls as possible:
//! contacts by email or leadsync's contact id, accounts by website domain or leadsync's company
//! id, opportunities by leadsync's key, and the active users whose emails are the contacts'
//! HubSpot owners' (for routing); each object one SOQL query (split only past a size budget),
//! all of them in one composite call (up to five queries a call).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::client::{SalesforceClient, SalesforceError};
use super::errors::SalesforceRecordError;
use super::soql::{company_domain, literal};

/// Characters of `IN (...)` values per query: far below SOQL's 100,000-character limit.
const QUERY_BUDGET: usize = 40_000;

/// A record found, with the fields promotion reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SalesforceFound {
    /// Record id.
    pub id: String,
    /// `OwnerId`.
    pub owner: Option<String>,
    /// `AccountId` (contacts and opportunities).
    pub account: Option<String>,
    /// leadsync's external id on it, when set.
    pub external_id: Option<String>,
    /// Lower-cased email (contacts) or domain (accounts).
    pub key: Option<String>,
}

/// What the lookup wants to know.
#[derive(Debug, Default)]
pub struct SalesforceLookupRequest {
    /// Contact external-id field and values.
    pub contact_external_id: (String, Vec<String>),
    /// Contact email field (`Email`) and lower-cased values.
    pub contact_emails: (String, Vec<String>),
    /// Account external-id field and values.
    pub account_external_id: (String, Vec<String>),
    /// Account domain field (`Website`) and domains.
    pub account_domains: (String, Vec<String>),
    /// Opportunity external-id field and values.
    pub opportunity_keys: (String, Vec<String>),
    /// Domains that never identify a company.
    pub freemail: HashSet<String>,
    /// Emails of the leads' HubSpot owners: the active Salesforce users who have them are found.
    pub user_emails: Vec<String>,
}

/// What the lookup found, indexed for promotion.
#[derive(Debug, Default)]
pub struct SalesforceExisting {
    /// Contacts by leadsync's contact id.
    pub contacts_by_id: HashMap<String, SalesforceFound>,
    /// Contacts by lower-cased email (several when the org holds duplicates).
    pub contacts_by_email: HashMap<String, Vec<SalesforceFound>>,
    /// Accounts by leadsync's company id.
    pub accounts_by_id: HashMap<String, SalesforceFound>,
    /// Accounts by domain.
    pub accounts_by_domain: HashMap<String, Vec<SalesforceFound>>,
    /// Opportunities by leadsync's key.
    pub opportunities: HashMap<String, SalesforceFound>,
    /// Active users' ids by lower-cased email.
    pub users_by_email: HashMap<String, String>,
}

/// `Website` values an account of `domain` may hold (the field is free text).
fn website_variants(domain: &str) -> [String; 8] {
    [
        domain.to_string(),
        format!("www.{domain}"),
        format!("http://{domain}"),
        format!("https://{domain}"),
        format!("http://www.{domain}"),
        format!("https://www.{domain}"),
        format!("https://{domain}/"),
        format!("https://www.{domain}/"),
    ]
}

/// `SELECT … FROM object WHERE a IN (…) OR b IN (…)`, split into several queries only when the
/// value lists exceed [`QUERY_BUDGET`] characters.
pub fn queries(fields: &[&str], object: &str, conditions: &[(&str, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<(String, Vec<String>)> = Vec::new();
    let mut size = 0;
    let mut flush = |current: &mut Vec<(String, Vec<String>)>, size: &mut usize| {
        let clauses: Vec<String> = current
            .drain(..)
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, v)| format!("{f} IN ({})", v.join(", ")))
            .collect();
        if !clauses.is_empty() {
            out.push(format!(
                "SELECT {} FROM {object} WHERE {}",
                fields.join(", "),
                clauses.join(" OR ")
            ));
        }
        *size = 0;
    };
    for (field, values) in conditions {
        let mut seen = HashSet::new();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if !seen.insert(v.to_lowercase()) {
                continue;
            }
            let lit = literal(v);
            if size + lit.len() + 2 > QUERY_BUDGET {
                flush(&mut current, &mut size);
            }
            size += lit.len() + 2;
            match current.last_mut() {
                Some((f, list)) if f == field => list.push(lit),
                _ => current.push((field.to_string(), vec![lit])),
            }
        }
    }
    flush(&mut current, &mut size);
    out
}

fn text(record: &Value, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(str::to_string)
}

impl SalesforceClient {
    /// Finds what exists for `req`: one composite call for up to five queries.
    pub async fn lookup(&self, req: &SalesforceLookupRequest) -> Result<SalesforceExisting, SalesforceError> {
        let (cx, cx_values) = &req.contact_external_id;
        let (email, emails) = &req.contact_emails;
        let (ax, ax_values) = &req.account_external_id;
        let (domain_field, domains) = &req.account_domains;
        let (ox, keys) = &req.opportunity_keys;
        let websites: Vec<String> = domains.iter().flat_map(|d| website_variants(d)).collect();
        let contact_q = queries(
            &["Id", "OwnerId", "AccountId", email, cx],
            "Contact",
            &[(cx, cx_values.clone()), (email, emails.clone())],
        );
        let account_q = queries(
            &["Id", "OwnerId", domain_field, ax],
            "Account",
            &[(ax, ax_values.clone()), (domain_field, websites)],
        );
        let opp_q = queries(
            &["Id", "OwnerId", "AccountId", ox],
            "Opportunity",
            &[(ox, keys.clone())],
        );
        let user_q: Vec<String> = queries(&["Id", "Email"], "User", &[("Email", req.user_emails.clone())])
            .into_iter()
            .map(|q| q.replacen(" WHERE ", " WHERE IsActive = true AND ", 1))
            .collect();
        let kinds: Vec<u8> = std::iter::repeat_n(0u8, contact_q.len())
            .chain(std::iter::repeat_n(1, account_q.len()))
            .chain(std::iter::repeat_n(2, opp_q.len()))
            .chain(std::iter::repeat_n(3, user_q.len()))
            .collect();
        let all: Vec<String> = contact_q
            .into_iter()
            .chain(account_q)
            .chain(opp_q)
            .chain(user_q)
            .collect();
        let mut found = SalesforceExisting::default();
        if all.is_empty() {
            return Ok(found);
        }
        let answers = self.query_many(&all).await?;
        for (kind, answer) in kinds.into_iter().zip(answers) {
            let records = answer.map_err(|errors: Vec<SalesforceRecordError>| SalesforceError::Api {
                endpoint: "composite",
                errors,
            })?;
            for r in records {
                let Some(id) = text(&r, "Id") else { continue };
                let mut f = SalesforceFound {
                    id,
                    owner: text(&r, "OwnerId"),
                    account: text(&r, "AccountId"),
                    ..SalesforceFound::default()
                };
                match kind {
                    0 => {
                        f.external_id = text(&r, cx);
                        f.key = text(&r, email).map(|e| e.trim().to_lowercase());
                        if let Some(x) = &f.external_id {
                            found.contacts_by_id.insert(x.clone(), f.clone());
                        }
                        if let Some(e) = f.key.clone() {
                            let list = found.contacts_by_email.entry(e).or_default();
                            if !list.iter().any(|c| c.id == f.id) {
                                list.push(f);
                            }
                        }
                    }
                    1 => {
                        f.external_id = text(&r, ax);
                        f.key = text(&r, domain_field).and_then(|w| company_domain(&w, &req.freemail));
                        if let Some(x) = &f.external_id {
                            found.accounts_by_id.insert(x.clone(), f.clone());
                        }
                        if let Some(d) = f.key.clone() {
                            let list = found.accounts_by_domain.entry(d).or_default();
                            if !list.iter().any(|a| a.id == f.id) {
                                list.push(f);
                            }
                        }
                    }
                    3 => {
                        if let Some(e) = text(&r, "Email").map(|e| e.trim().to_lowercase()) {
                            found.users_by_email.insert(e, f.id);
                        }
                    }
                    _ => {
                        f.external_id = text(&r, ox);
                        if let Some(x) = f.external_id.clone() {
                            found.opportunities.insert(x, f);
                        }
                    }
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_object_until_the_budget() {
        let emails: Vec<String> = (0..200).map(|i| format!("person{i}@example.com")).collect();
        let ids: Vec<String> = (0..200).map(|i| format!("{}", 1000 + i)).collect();
        let q = queries(&["Id"], "Contact", &[("HubSpot_Contact_Id__c", ids), ("Email", emails)]);
        assert_eq!(q.len(), 1);
        assert!(
            q[0].contains("HubSpot_Contact_Id__c IN ('1000', ") && q[0].contains(" OR Email IN ('person0@example.com'")
        );
        let many: Vec<String> = (0..5000).map(|i| format!("person{i}@example.com")).collect();
        let q = queries(&["Id"], "Contact", &[("Email", many)]);
        assert!(
            q.len() > 1 && q.iter().all(|s| s.len() < QUERY_BUDGET + 200),
            "{}",
            q.len()
        );
        assert_eq!(q.iter().map(|s| s.matches("@example.com").count()).sum::<usize>(), 5000);
    }

    #[test]
    fn values_are_escaped_and_deduplicated_ignoring_case() {
        let q = queries(
            &["Id"],
            "Contact",
            &[(
                "Email",
                vec!["o'brien@example.com".into(), "O'Brien@example.com".into()],
            )],
        );
        assert_eq!(q, [r"SELECT Id FROM Contact WHERE Email IN ('o\'brien@example.com')"]);
        assert!(queries(&["Id"], "Contact", &[("Email", vec![])]).is_empty());
    }
}
