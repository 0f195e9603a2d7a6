//! Who owns a promoted lead, decided in order (pure): the owner of the account it joins (the
//! seeds' rule: a known company's lead goes to the rep already working it), then the contact's
//! HubSpot owner when their email is an active Salesforce user's (the rep marketing already
//! assigned keeps the lead), then the first territory rule that matches, then weighted round
//! robin across active users. The round-robin
//! position is an input and an output, so the caller stores it and a restart continues the
//! rotation; a retried promotion reuses the owner it stored, never draws again.
//!
//! [`route_traced`] adds what respects people, for first assignment and reassignment alike: a
//! contact keeps its owner unless the caller re-routes on purpose; contacts of one company go to
//! the same rep; a rep at capacity, outside working hours, absent, or the one a lead is moving
//! away from is never chosen by any rule; a fallback owner or queue takes the lead when nobody
//! is available; and every assignment carries a [`Trace`] (candidates, why each was dropped, the
//! rule that won). A [`Roster`] is who routing knows as of one moment (the SLA file's teams:
//! caps, open leads, absences, working hours) with the rotation's position; the mapping's round
//! robin users and weights run over it, and each lead it assigns counts against the rep's cap.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::sla::Team;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The existing account's owner.
    AccountOwner,
    /// The contact's HubSpot owner, who is an active Salesforce user with the same email.
    HubSpotOwner,
    /// A territory rule, by name.
    Territory(String),
    /// The round robin.
    RoundRobin,
    /// The contact's current owner, kept (route once).
    KeptOwner,
    /// The rep who owns the company's other contacts.
    CompanyOwner,
    /// The fallback owner or queue: nobody else was available.
    Fallback,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccountOwner => f.write_str("account owner"),
            Self::HubSpotOwner => f.write_str("hubspot owner"),
            Self::Territory(name) if name.is_empty() => f.write_str("territory"),
            Self::Territory(name) => write!(f, "territory {name}"),
            Self::RoundRobin => f.write_str("round robin"),
            Self::KeptOwner => f.write_str("kept owner"),
            Self::CompanyOwner => f.write_str("company owner"),
            Self::Fallback => f.write_str("fallback"),
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

/// Why a rep cannot take a lead now (the caller works it out from the team's calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Away {
    /// Outside the team's working hours or on a team holiday.
    OffHours,
    /// On a declared absence until this day (included).
    Absent { until: NaiveDate },
    /// Not an active user.
    Inactive,
}

/// A rep the routing knows about, as of now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rep {
    /// Salesforce user id.
    pub id: String,
    /// Round-robin weight; 0 keeps the rep out of the rotation (other rules may still pick them).
    pub weight: u32,
    /// Leads the rep holds open now.
    pub open_leads: u32,
    /// Most open leads the rep may hold; `None` for no cap.
    pub capacity: Option<u32>,
    /// Why the rep is unavailable; `None` when at work.
    pub away: Option<Away>,
}

/// What routing knows beyond the lead: its owner now, its company's rep, the fallback.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The contact's current owner (Salesforce user id), kept unless `reroute`.
    pub current_owner: Option<&'a str>,
    /// Re-route on purpose (a reassignment, or a policy that re-routes recycled leads): the
    /// current owner is the rep the lead moves away from and is never chosen.
    pub reroute: bool,
    /// The rep who owns other contacts of the same company.
    pub company_owner: Option<&'a str>,
    /// User or queue that takes the lead when nobody is available.
    pub fallback: Option<&'a str>,
    /// Reps no rule may choose (a reassignment's reps already tried), besides the one left.
    pub excluded: &'a [String],
}

/// Why a candidate was not chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dropped {
    /// Holds as many open leads as the cap allows.
    AtCapacity { open: u32, cap: u32 },
    /// Unavailable now.
    Away(Away),
    /// The rep the lead is being moved away from.
    Leaving,
    /// Left out by the caller (a reassignment's reps already tried).
    Excluded,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtCapacity { open, cap } => write!(f, "at capacity ({open} of {cap} open leads)"),
            Self::Away(Away::OffHours) => f.write_str("outside working hours"),
            Self::Away(Away::Absent { until }) => write!(f, "absent until {until}"),
            Self::Away(Away::Inactive) => f.write_str("not an active user"),
            Self::Leaving => f.write_str("the rep the lead is moving away from"),
            Self::Excluded => f.write_str("excluded from this reassignment"),
        }
    }
}

/// One line of the trace: a rule, the candidate it offered, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Considered {
    /// The rule.
    pub rule: Strategy,
    /// The rep it offered; `None` when the rule did not apply.
    pub candidate: Option<String>,
    /// `None` when chosen (or not applicable), else why dropped.
    pub dropped: Option<Dropped>,
}

/// Why this rep: every rule tried in order, every candidate and filter, the rule that won.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Trace {
    /// In the order tried.
    pub considered: Vec<Considered>,
    /// The rule that won; `None` when nobody could take the lead.
    pub won: Option<Strategy>,
    /// The round robin's position before and after.
    pub position: (u64, u64),
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.won {
            Some(s) => write!(f, "routing: {s}")?,
            None => f.write_str("routing: nobody available, no fallback: the lead waits")?,
        }
        let (from, to) = self.position;
        if from != to {
            write!(f, " (round-robin position {from} → {to})")?;
        }
        for c in &self.considered {
            match (&c.candidate, &c.dropped) {
                (None, _) => write!(f, "\n  {}: does not apply", c.rule)?,
                (Some(id), None) => write!(f, "\n  {} {id}: chosen", c.rule)?,
                (Some(id), Some(why)) => write!(f, "\n  {} {id}: dropped, {why}", c.rule)?,
            }
        }
        Ok(())
    }
}

/// The outcome of [`route_traced`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The owner, or `None` when nobody is available and there is no fallback (the lead waits).
    pub assignment: Option<Assignment>,
    /// The round robin's position to store.
    pub position: u64,
    /// Why.
    pub trace: Trace,
}

/// Picks the owner, in order: kept owner (unless re-routing), account owner, company owner,
/// HubSpot owner, territories, round robin over `reps` from `position`, then the fallback.
/// Every rule but the kept owner skips reps who are at capacity, away or being left; reps not
/// in `reps` are taken as available. The round robin skips unavailable reps without reordering
/// the rotation, so a skipped rep's turn passes and fairness holds across restarts.
pub fn route_traced(
    lead: &Lead<'_>,
    territories: &[Territory],
    reps: &[Rep],
    ctx: &Context<'_>,
    position: u64,
) -> Routed {
    let mut trace = Trace {
        position: (position, position),
        ..Trace::default()
    };
    let leaving = ctx.current_owner.filter(|_| ctx.reroute);
    let verdict = |id: &str| -> Option<Dropped> {
        if leaving == Some(id) {
            return Some(Dropped::Leaving);
        }
        if ctx.excluded.iter().any(|e| e == id) {
            return Some(Dropped::Excluded);
        }
        let rep = reps.iter().find(|r| r.id == id)?;
        if let Some(away) = rep.away {
            return Some(Dropped::Away(away));
        }
        rep.capacity
            .filter(|cap| rep.open_leads >= *cap)
            .map(|cap| Dropped::AtCapacity {
                open: rep.open_leads,
                cap,
            })
    };
    let done = |mut trace: Trace, owner: &str, strategy: Strategy, position: u64| {
        trace.won = Some(strategy.clone());
        trace.position.1 = position;
        Routed {
            assignment: Some(Assignment {
                owner: owner.to_string(),
                strategy,
            }),
            position,
            trace,
        }
    };

    if !ctx.reroute
        && let Some(owner) = nonempty(ctx.current_owner)
    {
        trace.considered.push(Considered {
            rule: Strategy::KeptOwner,
            candidate: Some(owner.to_string()),
            dropped: None,
        });
        return done(trace, owner, Strategy::KeptOwner, position);
    }
    let lower = |v: Option<&str>| v.map(|s| s.trim().to_lowercase());
    let (country, industry) = (lower(lead.country), lower(lead.industry));
    let matches = |t: &&Territory| {
        (t.countries.is_empty() || country.as_ref().is_some_and(|c| t.countries.contains(c)))
            && (t.industries.is_empty() || industry.as_ref().is_some_and(|i| t.industries.contains(i)))
            && t.min_employees.is_none_or(|m| lead.employees.is_some_and(|e| e >= m))
            && t.max_employees.is_none_or(|m| lead.employees.is_some_and(|e| e <= m))
    };
    let mut offers: Vec<(Strategy, Option<&str>)> = vec![
        (Strategy::AccountOwner, nonempty(lead.account_owner)),
        (Strategy::CompanyOwner, nonempty(ctx.company_owner)),
        (Strategy::HubSpotOwner, nonempty(lead.hubspot_owner)),
    ];
    let matched: Vec<&Territory> = territories.iter().filter(matches).collect();
    if matched.is_empty() {
        offers.push((Strategy::Territory(String::new()), None));
    }
    offers.extend(
        matched
            .iter()
            .map(|t| (Strategy::Territory(t.name.clone()), Some(t.owner.as_str()))),
    );
    for (rule, candidate) in offers {
        let dropped = candidate.and_then(verdict);
        trace.considered.push(Considered {
            rule: rule.clone(),
            candidate: candidate.map(str::to_string),
            dropped,
        });
        if let (Some(owner), None) = (candidate, dropped) {
            return done(trace, owner, rule, position);
        }
    }
    let pool: Vec<(String, u32)> = reps
        .iter()
        .filter(|r| r.weight > 0)
        .map(|r| (r.id.clone(), r.weight))
        .collect();
    let total: u64 = pool.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut seen: Vec<&str> = Vec::new();
    for k in 0..total {
        let Some(id) = weighted_pick(&pool, position + k) else {
            break;
        };
        let dropped = verdict(id);
        if dropped.is_none() || !seen.contains(&id) {
            trace.considered.push(Considered {
                rule: Strategy::RoundRobin,
                candidate: Some(id.to_string()),
                dropped,
            });
            seen.push(id);
        }
        if dropped.is_none() {
            let owner = id.to_string();
            return done(trace, &owner, Strategy::RoundRobin, position + k + 1);
        }
    }
    if total == 0 {
        trace.considered.push(Considered {
            rule: Strategy::RoundRobin,
            candidate: None,
            dropped: None,
        });
    }
    if let Some(fallback) = nonempty(ctx.fallback) {
        trace.considered.push(Considered {
            rule: Strategy::Fallback,
            candidate: Some(fallback.to_string()),
            dropped: None,
        });
        return done(trace, fallback, Strategy::Fallback, position);
    }
    Routed {
        assignment: None,
        position,
        trace,
    }
}

/// Whether working hours hold a rep back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    /// A rep outside working hours is passed over: a reassignment wants someone at work now.
    Now,
    /// Working hours hold nobody back: a lead qualified at night goes to a rep who is in the
    /// next morning (the SLA's business clock only starts then); absences and caps still do.
    Ignored,
}

/// Who routing knows as of one moment, and the round robin's position. A batch of promotions
/// routes through one roster, so each lead it assigns counts against its rep's cap for the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// The teams' reps: cap, open leads, availability, and their weight in the team.
    pub known: Vec<Rep>,
    /// The round robin's position (stored between batches and across restarts).
    pub position: u64,
}

impl Roster {
    /// Nobody known (no teams): every rep is available and uncapped; the rotation at `position`.
    pub fn at(position: u64) -> Roster {
        Roster {
            known: Vec::new(),
            position,
        }
    }

    /// The members of `teams` with a Salesforce user id, as of `now`; `open_leads` by Salesforce
    /// user id. A rep in two teams is taken from the first.
    pub fn of_teams(
        teams: &[Team],
        open_leads: &HashMap<String, u32>,
        now: DateTime<Utc>,
        hours: Hours,
        position: u64,
    ) -> Roster {
        let mut known: Vec<Rep> = Vec::new();
        for mut rep in teams.iter().flat_map(|t| t.reps(now, open_leads)) {
            if known.iter().any(|k| k.id == rep.id) {
                continue;
            }
            if hours == Hours::Ignored && rep.away == Some(Away::OffHours) {
                rep.away = None;
            }
            known.push(rep);
        }
        Roster { known, position }
    }

    /// The reps `route_traced` sees: with `round_robin` (the mapping's users and weights), those
    /// users in its order and weights, each with what the teams say of them (a user in no team
    /// is available and uncapped), then the other known reps out of the rotation (weight 0);
    /// with no round robin in the mapping, the known reps with their team weights.
    fn pool(&self, round_robin: &[(String, u32)]) -> Vec<Rep> {
        if round_robin.is_empty() {
            return self.known.clone();
        }
        let mut reps: Vec<Rep> = round_robin
            .iter()
            .map(|(id, weight)| {
                let known = self.known.iter().find(|k| &k.id == id);
                Rep {
                    weight: *weight,
                    ..known.cloned().unwrap_or(Rep {
                        id: id.clone(),
                        weight: *weight,
                        open_leads: 0,
                        capacity: None,
                        away: None,
                    })
                }
            })
            .collect();
        for k in &self.known {
            if !round_robin.iter().any(|(id, _)| id == &k.id) {
                reps.push(Rep { weight: 0, ..k.clone() });
            }
        }
        reps
    }

    /// Routes one lead (see [`route_traced`]), moves the rotation on, and counts the lead against
    /// its new owner's cap when the owner changes.
    pub fn route(
        &mut self,
        lead: &Lead<'_>,
        territories: &[Territory],
        round_robin: &[(String, u32)],
        ctx: &Context<'_>,
    ) -> Routed {
        let routed = route_traced(lead, territories, &self.pool(round_robin), ctx, self.position);
        self.position = routed.position;
        if let Some(a) = &routed.assignment
            && ctx.current_owner != Some(a.owner.as_str())
            && let Some(rep) = self.known.iter_mut().find(|r| r.id == a.owner)
        {
            rep.open_leads += 1;
        }
        routed
    }
}

fn nonempty(o: Option<&str>) -> Option<&str> {
    o.filter(|o| !o.is_empty())
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

    /// The rules with nobody unavailable: the owner and the next position, `None` when nobody.
    fn route(lead: &Lead<'_>, t: &[Territory], active: &[(String, u32)], position: u64) -> Option<(Assignment, u64)> {
        let mut roster = Roster::at(position);
        let r = roster.route(lead, t, active, &Context::default());
        Some((r.assignment?, roster.position))
    }

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

    fn rep(id: &str, weight: u32, open: u32, away: Option<Away>) -> Rep {
        Rep {
            id: id.into(),
            weight,
            open_leads: open,
            capacity: Some(10),
            away,
        }
    }

    fn absent() -> Option<Away> {
        Some(Away::Absent {
            until: NaiveDate::from_ymd_opt(2027, 1, 3).unwrap(),
        })
    }

    #[test]
    fn unavailable_reps_are_never_chosen_and_the_trace_says_why() {
        let t = territories();
        let us = Lead {
            country: Some("US"),
            ..Lead::default()
        };
        let fr = Lead {
            country: Some("fr"),
            ..Lead::default()
        };
        let team = |a: Option<Away>, a_open: u32| {
            vec![
                rep("005A", 3, a_open, a),
                rep("005B", 1, 0, None),
                rep("005FR", 0, 0, absent()),
            ]
        };
        let ctx = Context::default();
        // (why, lead, reps, position) → owner, rule, next position
        type Case<'a> = (&'a str, Lead<'a>, Vec<Rep>, u64, Option<&'a str>, Option<Strategy>, u64);
        #[rustfmt::skip]
        let cases: [Case<'_>; 7] = [
            ("everyone in: the rotation as before", us, team(None, 0), 0, Some("005A"), Some(Strategy::RoundRobin), 1),
            ("005A at capacity: its turn passes to 005B", us, team(None, 10), 0, Some("005B"), Some(Strategy::RoundRobin), 3),
            ("005A off hours", us, team(Some(Away::OffHours), 0), 1, Some("005B"), Some(Strategy::RoundRobin), 3),
            ("005A absent, position 2 is 005B's own turn", us, team(absent(), 0), 2, Some("005B"), Some(Strategy::RoundRobin), 3),
            ("the territory's owner is absent: round robin", fr, team(None, 0), 0, Some("005A"), Some(Strategy::RoundRobin), 1),
            ("nobody available, no fallback: wait", us, vec![rep("005A", 1, 10, None), rep("005B", 1, 0, absent())], 4, None, None, 4),
            ("no reps at all", us, vec![], 4, None, None, 4),
        ];
        for (why, lead, reps, position, owner, strategy, next) in cases {
            let r = route_traced(&lead, &t, &reps, &ctx, position);
            assert_eq!(r.assignment.as_ref().map(|a| a.owner.as_str()), owner, "{why}");
            assert_eq!((r.trace.won.clone(), r.position), (strategy, next), "{why}");
            assert_eq!(r.trace.position, (position, next), "{why}");
        }
        // The HubSpot owner's rep at capacity is passed over like any other.
        let owned = Lead {
            hubspot_owner: Some("005A"),
            ..us
        };
        let r = route_traced(&owned, &t, &team(None, 10), &ctx, 0);
        assert_eq!(r.assignment.map(|a| a.owner), Some("005B".into()));
        let r = route_traced(&fr, &t, &team(None, 10), &ctx, 0);
        assert_eq!(
            r.trace.to_string(),
            "routing: round robin (round-robin position 0 → 3)\n  \
             account owner: does not apply\n  \
             company owner: does not apply\n  \
             hubspot owner: does not apply\n  \
             territory emea_fr 005FR: dropped, absent until 2027-01-03\n  \
             round robin 005A: dropped, at capacity (10 of 10 open leads)\n  \
             round robin 005B: chosen"
        );
    }

    #[test]
    fn the_fallback_takes_the_lead_when_nobody_is_available() {
        let reps = vec![rep("005A", 1, 10, None), rep("005B", 1, 0, Some(Away::Inactive))];
        let ctx = Context {
            fallback: Some("00GQUEUE"),
            ..Context::default()
        };
        let r = route_traced(&Lead::default(), &[], &reps, &ctx, 5);
        assert_eq!(
            r.assignment,
            Some(Assignment {
                owner: "00GQUEUE".into(),
                strategy: Strategy::Fallback
            })
        );
        assert_eq!(r.position, 5, "the rotation did not serve: its position stays");
        assert!(
            r.trace
                .to_string()
                .contains("round robin 005B: dropped, not an active user"),
            "{}",
            r.trace
        );
    }

    #[test]
    fn route_once_company_stickiness_and_reassignment() {
        let t = territories();
        let reps = vec![
            rep("005A", 1, 10, None),
            rep("005B", 1, 0, None),
            rep("005C", 1, 0, None),
        ];
        let lead = Lead {
            country: Some("fr"),
            ..Lead::default()
        };
        let owner = |ctx: Context<'_>| {
            let r = route_traced(&lead, &t, &reps, &ctx, 0);
            r.assignment.map(|a| (a.owner, a.strategy))
        };
        // A recycled contact keeps its owner, even one now at capacity: route once.
        let kept = Context {
            current_owner: Some("005A"),
            company_owner: Some("005C"),
            ..Context::default()
        };
        assert_eq!(owner(kept), Some(("005A".into(), Strategy::KeptOwner)));
        // A new contact of a known company goes to the company's rep, before the territory.
        let company = Context {
            company_owner: Some("005C"),
            ..Context::default()
        };
        assert_eq!(owner(company), Some(("005C".into(), Strategy::CompanyOwner)));
        // A reassignment never hands the lead back to the rep it is leaving.
        let reassign = Context {
            current_owner: Some("005C"),
            company_owner: Some("005C"),
            reroute: true,
            ..Context::default()
        };
        let r = route_traced(&lead, &[], &reps, &reassign, 2);
        assert_eq!(r.assignment.map(|a| a.owner), Some("005B".into()), "{}", r.trace);
        assert!(
            r.trace
                .to_string()
                .contains("company owner 005C: dropped, the rep the lead is moving away from")
        );
        assert!(
            r.trace
                .to_string()
                .contains("round robin 005C: dropped, the rep the lead is moving away from")
        );
    }

    #[test]
    fn a_roster_counts_each_lead_against_the_cap_and_runs_the_mappings_rotation_over_the_teams() {
        let f =
            crate::sla::SlaFile::from_source(&crate::diagnostics::SourceText::new("sla.toml", crate::defaults::SLA))
                .unwrap();
        // Saturday 26 December 2026, 10:00 Paris: everyone off; Jules absent; Alice holds 39 of 40.
        let saturday = DateTime::parse_from_rfc3339("2026-12-26T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let open: HashMap<String, u32> = [("005000000000004AAA".to_string(), 39)].into();
        let rr: Vec<(String, u32)> = vec![
            ("005000000000003AAA".into(), 3),
            ("005000000000004AAA".into(), 1),
            ("005000000000009AAA".into(), 1),
        ];
        let paris = &f.teams[..1];
        let now_only = Roster::of_teams(paris, &open, saturday, Hours::Now, 0);
        assert!(now_only.known.iter().all(|r| r.away.is_some()), "{:?}", now_only.known);
        let mut roster = Roster::of_teams(paris, &open, saturday, Hours::Ignored, 0);
        assert_eq!(roster.known.len(), 4);
        let owners: Vec<String> = (0..3)
            .map(|_| {
                let r = roster.route(&Lead::default(), &[], &rr, &Context::default());
                r.assignment.unwrap().owner
            })
            .collect();
        // Jules (absent) passes; Alice takes her 40th lead, then is at capacity; 009 is in no
        // team: available and uncapped. Team members outside the mapping's rotation get no turn.
        assert_eq!(
            owners,
            ["005000000000004AAA", "005000000000009AAA", "005000000000009AAA"]
        );
        let alice = roster.known.iter().find(|r| r.id == "005000000000004AAA").unwrap();
        assert_eq!(alice.open_leads, 40);
        // With no rotation in the mapping, the teams' own weights run.
        let mut own = Roster::of_teams(paris, &HashMap::new(), saturday, Hours::Ignored, 0);
        let r = own.route(&Lead::default(), &[], &[], &Context::default());
        assert_eq!(r.assignment.unwrap().owner, "005000000000001AAA");
        // A kept owner is not counted twice.
        let before = own.clone();
        let kept = Context {
            current_owner: Some("005000000000002AAA"),
            ..Context::default()
        };
        own.route(&Lead::default(), &[], &[], &kept);
        assert_eq!(own.known, before.known);
    }
}
