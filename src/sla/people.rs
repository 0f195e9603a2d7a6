//! A team as the router sees it: each member with a Salesforce user id becomes a
//! [`routing::Rep`] with their weight, open leads, cap and availability at `now`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::policy::{Availability, Team};
use crate::salesforce::routing::{self, Away};

impl Team {
    /// The team's reps for [`routing::route_traced`] at `now`; `open_leads` is keyed by
    /// Salesforce user id (a rep missing from it holds none).
    pub fn reps(&self, now: DateTime<Utc>, open_leads: &HashMap<String, u32>) -> Vec<routing::Rep> {
        self.members
            .iter()
            .filter_map(|m| {
                let id = m.salesforce_user.clone()?;
                Some(routing::Rep {
                    open_leads: open_leads.get(&id).copied().unwrap_or(0),
                    capacity: self.capacity_of(m),
                    weight: m.weight,
                    away: match self.availability(m, now) {
                        Availability::Available => None,
                        Availability::OffHours => Some(Away::OffHours),
                        Availability::Absent { until } => Some(Away::Absent { until }),
                    },
                    id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceText;
    use crate::salesforce::routing::{Context, Lead, Strategy, route_traced};
    use crate::sla::SlaFile;

    #[test]
    fn the_shipped_paris_team_routes_around_absence_and_capacity() {
        let f = SlaFile::from_source(&SourceText::new("sla.toml", crate::defaults::SLA)).unwrap();
        let paris = &f.teams[0];
        // Monday 21 December 2026, 10:00 Paris: Jules (weight 3) is on leave; Lucas holds his cap of 20.
        let now = DateTime::parse_from_rfc3339("2026-12-21T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let open: HashMap<String, u32> = [("005000000000001AAA".to_string(), 20)].into();
        let reps = paris.reps(now, &open);
        assert_eq!(reps.len(), 4);
        let ctx = Context {
            fallback: paris.fallback_owner.as_deref(),
            ..Context::default()
        };
        let chosen: Vec<String> = (0..6)
            .map(|p| {
                route_traced(&Lead::default(), &[], &reps, &ctx, p)
                    .assignment
                    .unwrap()
                    .owner
            })
            .collect();
        assert!(
            chosen
                .iter()
                .all(|o| o == "005000000000002AAA" || o == "005000000000004AAA"),
            "{chosen:?}"
        );
        // Saturday: everyone is off; the fallback queue takes the lead.
        let saturday = DateTime::parse_from_rfc3339("2026-12-26T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = route_traced(&Lead::default(), &[], &paris.reps(saturday, &open), &ctx, 0);
        assert_eq!(r.trace.won, Some(Strategy::Fallback));
        assert_eq!(r.assignment.unwrap().owner, "00G000000000001AAA");
    }
}
