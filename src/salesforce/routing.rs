//! Who owns a promoted lead, decided in order (pure): the owner of the account it joins (the
//! seeds' rule: a known company's lead goes to the rep already working it), then the contact's
//! HubSpot owner when their email is an active Salesforce user's (the rep marketing already
//! assigned keeps the lead), then the first territory rule that matches, then weighted round
//! robin across active users. The round-robin
//! position is an input and an output, so the caller stores it and a restart continues the
//! rotation; a retried promotion reuses the owner it stored, never draws again.

use std::collections::HashMap;

/// A territory rule from the mapping file: every condition written must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Territory {
    /// Name, for the explanation.
    pub name: String,
    /// Countries (lower-case); empty matches any.
    pub countries: Vec<String>,
    /// Fewest employees; `None` for no floor.
    pub min_employees: Option<f64>,
    /// Most employees; `None` for no ceiling.
    pub max_employees: Option<f64>,
    /// Industries (lower-case); empty matches any.
    pub industries: Vec<String>,
    /// Salesforce user id that owns it.
    pub owner: String,
}

/// What the routing knows about the lead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lead<'a> {
    /// Owner of the existing account the lead joins.
    pub account_owner: Option<&'a str>,
    /// The Salesforce user the contact's HubSpot owner is (matched by email, see [`user_for_email`]).
    pub hubspot_owner: Option<&'a str>,
    /// Company country.
    pub country: Option<&'a str>,
    /// Company size.
    pub employees: Option<f64>,
    /// Company industry.
    pub industry: Option<&'a str>,
}

/// How the owner was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// The existing account's owner.
    AccountOwner,
    /// The contact's HubSpot owner, who is an active Salesforce user with the same email.
    HubSpotOwner,
    /// A territory rule, by name.
    Territory(String),
    /// The round robin.
    RoundRobin,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccountOwner => f.write_str("account owner"),
            Self::HubSpotOwner => f.write_str("hubspot owner"),
            Self::Territory(name) => write!(f, "territory {name}"),
            Self::RoundRobin => f.write_str("round robin"),
        }
    }
}

/// The active Salesforce user whose email is `email`, compared ignoring case and surrounding
/// spaces; `users` is keyed by lower-cased email (what the lookup returns).
pub fn user_for_email<'a>(email: Option<&str>, users: &'a HashMap<String, String>) -> Option<&'a str> {
    let email = email?.trim().to_lowercase();
    if email.is_empty() {
        return None;
    }
    users.get(&email).map(String::as_str)
}

/// The chosen owner and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Salesforce user id.
    pub owner: String,
    /// How.
    pub strategy: Strategy,
}

/// Picks the owner; `position` is the round robin's stored position, returned advanced when used.
/// `None` when nothing matches and nobody is active (the promotion waits, and says so).
pub fn route(
    lead: &Lead<'_>,
    territories: &[Territory],
    active: &[(String, u32)],
    position: u64,
) -> Option<(Assignment, u64)> {
    if let Some(owner) = lead.account_owner.filter(|o| !o.is_empty()) {
        return Some((
            Assignment {
                owner: owner.to_string(),
                strategy: Strategy::AccountOwner,
            },
            position,
        ));
    }
    if let Some(owner) = lead.hubspot_owner.filter(|o| !o.is_empty()) {
        return Some((
            Assignment {
                owner: owner.to_string(),
                strategy: Strategy::HubSpotOwner,
            },
            position,
        ));
    }
    let lower = |v: Option<&str>| v.map(|s| s.trim().to_lowercase());
    let (country, industry) = (lower(lead.country), lower(lead.industry));
    let matches = |t: &&Territory| {
        (t.countries.is_empty() || country.as_ref().is_some_and(|c| t.countries.contains(c)))
            && (t.industries.is_empty() || industry.as_ref().is_some_and(|i| t.industries.contains(i)))
            && t.min_employees.is_none_or(|m| lead.employees.is_some_and(|e| e >= m))
            && t.max_employees.is_none_or(|m| lead.employees.is_some_and(|e| e <= m))
    };
    if let Some(t) = territories.iter().find(matches) {
        return Some((
            Assignment {
                owner: t.owner.clone(),
                strategy: Strategy::Territory(t.name.clone()),
            },
            position,
        ));
    }
    let owner = weighted_pick(active, position)?;
    Some((
        Assignment {
            owner: owner.to_string(),
            strategy: Strategy::RoundRobin,
        },
        position + 1,
    ))
}

/// The owner at `position` of the smooth weighted rotation (weights 3:1 give a, a, b, a, … evenly
/// spread, not a, a, a, b).
fn weighted_pick(active: &[(String, u32)], position: u64) -> Option<&str> {
    let total: u64 = active.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let step = position % total;
    // Smooth weighted round robin, replayed `step + 1` times from a fresh state: deterministic.
    let mut current: Vec<i64> = vec![0; active.len()];
    let mut chosen = 0;
    for _ in 0..=step {
        for (c, (_, w)) in current.iter_mut().zip(active) {
            *c += i64::from(*w);
        }
        chosen = (0..active.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i)))?;
        current[chosen] -= total as i64;
    }
    Some(active[chosen].0.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn territories() -> Vec<Territory> {
        vec![
            Territory {
                name: "emea_fr".into(),
                countries: vec!["fr".into(), "france".into(), "be".into()],
                min_employees: None,
                max_employees: None,
                industries: vec![],
                owner: "005FR".into(),
            },
            Territory {
                name: "enterprise".into(),
                countries: vec![],
                min_employees: Some(1000.0),
                max_employees: None,
                industries: vec![],
                owner: "005ENT".into(),
            },
        ]
    }

    fn users() -> Vec<(String, u32)> {
        vec![("005A".into(), 3), ("005B".into(), 1)]
    }

    #[test]
    fn account_owner_then_territory_then_round_robin() {
        let t = territories();
        let known = Lead {
            account_owner: Some("005OWN"),
            country: Some("FR"),
            ..Lead::default()
        };
        assert_eq!(
            route(&known, &t, &users(), 7).unwrap(),
            (
                Assignment {
                    owner: "005OWN".into(),
                    strategy: Strategy::AccountOwner
                },
                7
            )
        );
        let fr = Lead {
            country: Some("France"),
            ..Lead::default()
        };
        assert_eq!(
            route(&fr, &t, &users(), 7).unwrap().0.strategy,
            Strategy::Territory("emea_fr".into())
        );
        let big = Lead {
            country: Some("US"),
            employees: Some(5000.0),
            ..Lead::default()
        };
        assert_eq!(route(&big, &t, &users(), 7).unwrap().0.owner, "005ENT");
        let small = Lead {
            country: Some("US"),
            employees: Some(50.0),
            ..Lead::default()
        };
        let (a, next) = route(&small, &t, &users(), 7).unwrap();
        assert_eq!((a.strategy, next), (Strategy::RoundRobin, 8));
        assert!(route(&small, &t, &[], 0).is_none(), "nobody active: wait, do not guess");
    }

    #[test]
    fn hubspot_owner_between_account_owner_and_territory() {
        let t = territories();
        let users_by_email: HashMap<String, String> = [
            ("ana.ruiz@acme.test".to_string(), "005ANA".to_string()),
            ("bo.li@acme.test".to_string(), "005BO".to_string()),
        ]
        .into();
        let mapped = |email: &str| user_for_email(Some(email), &users_by_email);
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str, Strategy);
        #[rustfmt::skip]
        let cases: [Case<'_>; 6] = [
            // (account owner, HubSpot owner's email, country) → owner, strategy
            (None, Some("ana.ruiz@acme.test"), Some("FR"), "005ANA", Strategy::HubSpotOwner),
            (None, Some("  Bo.Li@ACME.test "), Some("US"), "005BO", Strategy::HubSpotOwner),
            (Some("005OWN"), Some("ana.ruiz@acme.test"), Some("FR"), "005OWN", Strategy::AccountOwner),
            (None, Some("marketing@acme.test"), Some("FR"), "005FR", Strategy::Territory("emea_fr".into())),
            (None, Some(""), Some("FR"), "005FR", Strategy::Territory("emea_fr".into())),
            (None, None, Some("US"), "005A", Strategy::RoundRobin),
        ];
        for (account_owner, email, country, owner, strategy) in cases {
            let lead = Lead {
                account_owner,
                hubspot_owner: email.and_then(mapped),
                country,
                ..Lead::default()
            };
            let (a, _) = route(&lead, &t, &users(), 0).unwrap();
            assert_eq!(
                (a.owner.as_str(), a.strategy),
                (owner, strategy),
                "{account_owner:?} {email:?}"
            );
        }
        // the HubSpot owner does not move the rotation
        let lead = Lead {
            hubspot_owner: mapped("bo.li@acme.test"),
            ..Lead::default()
        };
        assert_eq!(route(&lead, &t, &users(), 7).unwrap().1, 7);
        assert_eq!(user_for_email(None, &users_by_email), None);
    }

    #[test]
    fn weights_are_honoured_evenly_and_the_position_makes_it_deterministic() {
        let u = users();
        let picks: Vec<&str> = (0..8).map(|p| weighted_pick(&u, p).unwrap()).collect();
        assert_eq!(picks, ["005A", "005A", "005B", "005A", "005A", "005A", "005B", "005A"]);
        let hundred: Vec<&str> = (0..100).map(|p| weighted_pick(&u, p).unwrap()).collect();
        assert_eq!(hundred.iter().filter(|o| **o == "005B").count(), 25);
        // a restart that resumes at a stored position continues the same rotation
        assert_eq!(weighted_pick(&u, 5), weighted_pick(&u, 5));
    }
}
