//! The pure half of promotion: each lead's keys and mapped records, then, from what the lookup
//! found, what it links to, what must be written and who owns it; and what a refused record
//! means for its lead. No IO here: `promote.rs` sends what this decides.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::errors::{Disposition, classify};
use super::lookup::{SalesforceExisting, SalesforceFound, SalesforceLookupRequest};
use super::mapping::{LeadProperties, SalesforceMapping};
use super::promote::{PromotionInput, PromotionOutcome, opportunity_key};
use super::rest::SalesforceSaveError;
use super::routing::{self, Context, Lead, Roster, Trace};
use super::soql::company_domain;
use crate::lifecycle::snapshot::{HubSpotId, SalesforceLink};

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
pub(super) type Records = (Map<String, Value>, Map<String, Value>, Map<String, Value>);

/// One lead's progress through the batch.
pub(super) struct Work<'a> {
    pub(super) input: &'a PromotionInput,
    pub(super) key: String,
    pub(super) email: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) account: Option<String>,
    pub(super) account_owner: Option<String>,
    pub(super) account_upsert: Option<String>,
    pub(super) contact: Option<String>,
    pub(super) contact_upsert: bool,
    pub(super) opportunity: Option<String>,
    pub(super) opportunity_existed: bool,
    pub(super) owner: Option<routing::Assignment>,
    pub(super) trace: Option<Trace>,
    pub(super) records: Option<Records>,
    pub(super) done: Option<PromotionOutcome>,
}

impl Work<'_> {
    pub(super) fn open(&self) -> bool {
        self.done.is_none()
    }

    pub(super) fn id(&self) -> &HubSpotId {
        &self.input.contact_id
    }
}

/// Keys, mapped records and lookup values; repeated leads (same contact and cycle) are promoted once.
pub(super) fn prepare<'a>(mapping: &SalesforceMapping, batch: &'a [PromotionInput]) -> Vec<Work<'a>> {
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
            trace: None,
            records,
            done,
        });
    }
    out
}

pub(super) fn lookup_request(mapping: &SalesforceMapping, work: &[Work<'_>]) -> SalesforceLookupRequest {
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
        user_emails: match mapping.routing.hubspot_owner {
            Some(_) => open().filter_map(|w| w.input.owner_email.clone()).collect(),
            None => vec![],
        },
    }
}

/// Links each lead to what exists and picks owners through `roster` (pure: the roster is the
/// batch's rotation and caps).
pub(super) fn resolve(
    mapping: &SalesforceMapping,
    work: &mut [Work<'_>],
    existing: &SalesforceExisting,
    roster: &mut Roster,
) {
    // Owners given to a company's leads in this batch, so its other leads go to the same rep.
    let mut company_owner: HashMap<String, String> = HashMap::new();
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
        // The owner (see `routing::route_traced`): kept from an earlier cycle, else the account's,
        // the company's rep (from the store, or drawn earlier in this batch), the HubSpot
        // owner's Salesforce user, a territory, the round robin, the team's fallback.
        let lead = LeadProperties {
            contact: &w.input.contact,
            company: &w.input.company,
        };
        let known = &w.input.owners;
        let company = w.input.company_id.as_ref();
        let company_rep = known
            .company
            .clone()
            .or_else(|| company.and_then(|c| company_owner.get(c).cloned()));
        let ctx = Context {
            // Route once: a recycled lead keeps its owner, unless `routing.keep_owner = false`.
            current_owner: known.current.as_deref().filter(|_| mapping.routing.keep_owner),
            company_owner: company_rep.as_deref(),
            fallback: known.fallback.as_deref(),
            ..Context::default()
        };
        let routed =
            roster.route(
                &Lead {
                    account_owner: w.account_owner.as_deref(),
                    hubspot_owner: mapping.routing.hubspot_owner.as_ref().and_then(|_| {
                        routing::user_for_email(w.input.owner_email.as_deref(), &existing.users_by_email)
                    }),
                    ..mapping.routing.lead(&lead)
                },
                &mapping.territories,
                &mapping.round_robin,
                &ctx,
            );
        match routed.assignment {
            Some(assignment) => {
                if let Some(c) = company {
                    company_owner
                        .entry(c.clone())
                        .or_insert_with(|| assignment.owner.clone());
                }
                w.owner = Some(assignment);
                w.trace = Some(routed.trace);
            }
            None => {
                w.done = Some(PromotionOutcome::Review {
                    contact_id: cid,
                    reason: format!(
                        "no owner: nobody can take the lead and its team has no fallback_owner ({})",
                        routed.trace.to_string().replace("\n  ", "; ")
                    ),
                });
            }
        }
    }
}

/// One outcome per input, in order (a repeated input gets its first occurrence's outcome).
pub(super) fn finish(batch: &[PromotionInput], work: Vec<Work<'_>>) -> Vec<PromotionOutcome> {
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
                    trace: w.trace.clone().unwrap_or_default(),
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
}
