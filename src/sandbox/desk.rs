//! The sales side over sandbox time, as `leadsync demo`'s month simulates it: reps who touch
//! the MQLs and SALs leadsync hands them (calls, emails and meetings in HubSpot), accept or
//! reject them with a reason, follow the accepted up, qualify some with a deal size, meet on the
//! opportunity in Salesforce and close it won or lost at an amount. On each lead at each stage a
//! rep has a habit: the SLA's cadence in time (the timer is met), one touch in time and no more,
//! the first touch a day to three weeks late, or none (breached; those still untouched are the
//! status page's open breaches). A lead nobody owns is claimed by the rep who first works it
//! (`hubspot_owner_id`), since the SLA counts the touches of the owner and their team.
//!
//! The desk reads only what a person would see: the stage leadsync wrote on the HubSpot contact
//! (`leadsync_stage`) and the opportunities in Salesforce; it acts through the sandbox as a
//! person would (properties edited in HubSpot's UI, activities logged, opportunities closed).
//! Every choice (who is touched, how late, accepted or rejected, won or lost, the amount) is a
//! hash of the seed and the contact, so the same seed gives the same month whatever the speed
//! of the machine; a touch is dated when the rep made it, even when the desk logs it at the
//! next step.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, Utc};

use super::{SalesActivity, SalesActivityKind, SandboxHandle};

/// HubSpot owners of the sandbox's sales team (`mappings/sla.toml`), for contacts without one.
const REPS: [&str; 6] = ["70001", "70002", "70003", "70004", "70005", "70006"];
/// Rejection reasons of the shipped rules, `no_follow_up` left to the SLA ladder.
const REASONS: [&str; 4] = ["false_hot", "not_ready", "no_budget", "wrong_contact"];

/// One thing a rep does at a planned time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    /// A touch logged on the HubSpot contact.
    HubSpotTouch {
        contact: String,
        kind: Kind,
        connected: bool,
    },
    /// Accepted (`leadsync_sal_decision = accepted`).
    Accept { contact: String },
    /// Rejected with a reason.
    Reject { contact: String, reason: &'static str },
    /// Sales qualified, with the deal size the rep expects (`hs_expected_amount`).
    Qualify { contact: String, amount: u64 },
    /// A meeting on the opportunity, logged in Salesforce by its owner.
    OpportunityMeeting { opportunity: String, owner: String },
    /// The opportunity closed.
    Close {
        opportunity: String,
        won: bool,
        amount: u64,
    },
}

/// How a rep works one lead at one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Habit {
    /// The first touch in time, then the policy's attempts.
    Cadence,
    /// One touch in time, nothing more.
    Once,
    /// The first touch a day to three weeks late.
    Late,
    /// No touch.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Call,
    Email,
    Meeting,
}

impl Kind {
    fn activity(self) -> SalesActivityKind {
        match self {
            Kind::Call => SalesActivityKind::Call,
            Kind::Email => SalesActivityKind::Email,
            Kind::Meeting => SalesActivityKind::Meeting,
        }
    }
}

/// What the desk did, in all, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeskTally {
    /// Calls, emails and meetings logged in HubSpot.
    pub hubspot_touches: u64,
    /// Meetings logged in Salesforce on opportunities.
    pub salesforce_touches: u64,
    /// MQLs accepted.
    pub accepted: u64,
    /// MQLs rejected, with a reason.
    pub rejected: u64,
    /// MQLs nobody touched (left to the SLA).
    pub ignored: u64,
    /// SALs qualified to SQL.
    pub qualified: u64,
    /// Opportunities won.
    pub won: u64,
    /// Opportunities lost.
    pub lost: u64,
}

/// The reps of the sandbox's org, with their plans.
#[derive(Debug)]
pub struct SalesDesk {
    seed: u64,
    /// What was already planned for: (contact or opportunity, stage).
    seen: BTreeSet<(String, &'static str)>,
    /// Planned acts by time (epoch ms), then in a stable order.
    plan: BTreeMap<(i64, u64), Act>,
    next: u64,
    tally: DeskTally,
}

impl SalesDesk {
    /// A desk whose choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        SalesDesk {
            seed,
            seen: BTreeSet::new(),
            plan: BTreeMap::new(),
            next: 0,
            tally: DeskTally::default(),
        }
    }

    /// What the desk did so far.
    pub fn tally(&self) -> DeskTally {
        self.tally
    }

    /// A number in `0..n` for `what` of `key`, fixed by the seed.
    fn pick(&self, key: &str, what: &str, n: u64) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in key.bytes().chain([0]).chain(what.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        // splitmix64's finalizer, so close keys spread.
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        h % n.max(1)
    }

    fn at(&mut self, when: DateTime<Utc>, act: Act) {
        self.next += 1;
        self.plan.insert((when.timestamp_millis(), self.next), act);
    }

    /// Plans for what appeared since the last call, then does what is due at the sandbox's now.
    pub fn work(&mut self, sandbox: &SandboxHandle) {
        let now = sandbox.now();
        for (contact, stage) in sandbox.contacts_written("leadsync_stage") {
            match stage.as_str() {
                "mql" => self.plan_mql(&contact, now),
                "sal" => self.plan_sal(&contact, now),
                _ => {}
            }
        }
        for o in sandbox.salesforce_records("Opportunity") {
            let (Some(id), Some(_key)) = (o["Id"].as_str(), o["LeadSync_Key__c"].as_str()) else {
                continue;
            };
            if o["IsClosed"].as_bool() != Some(true) {
                let owner = o["OwnerId"].as_str().unwrap_or_default().to_string();
                let amount = o["Amount"].as_f64().unwrap_or(0.0) as u64;
                self.plan_opportunity(id, &owner, amount, now);
            }
        }
        let due: Vec<(i64, u64)> = self
            .plan
            .range(..=(now.timestamp_millis(), u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(act) = self.plan.remove(&key) {
                let at = DateTime::from_timestamp_millis(key.0).unwrap_or(now);
                self.act(sandbox, act, at);
            }
        }
    }

    /// How the rep works this lead at `stage`, fixed by the seed: a share follow the SLA's
    /// cadence in time, some make one touch in time and stop, some are late (by a day to three
    /// weeks, so some are still untouched at the month's end), some never touch it.
    fn habit(&self, contact: &str, stage: &str) -> Habit {
        match self.pick(contact, &format!("{stage}-habit"), 100) {
            0..40 => Habit::Cadence,
            40..60 => Habit::Once,
            60..82 => Habit::Late,
            _ => Habit::Never,
        }
    }

    /// The first touch's time: within `soon` minutes (after 20), or a day to three weeks late.
    fn first_touch(&self, contact: &str, stage: &str, habit: Habit, soon: u64, now: DateTime<Utc>) -> DateTime<Utc> {
        let minutes = match habit {
            Habit::Late => 24 * 60 + self.pick(contact, &format!("{stage}-late"), 20 * 24 * 60),
            _ => 20 + self.pick(contact, &format!("{stage}-delay"), soon),
        };
        now + Duration::minutes(minutes as i64)
    }

    /// A rep who follows the cadence calls again at the working slots of the next `days`
    /// weekdays after `after` (07:45 and 13:30 UTC: morning and afternoon in Paris, the New
    /// York morning for the second), so the attempts the policies ask for fall in their window.
    fn plan_cadence(&mut self, contact: &str, stage: &str, after: DateTime<Utc>, days: u32, slots: &[(u32, u32)]) {
        let mut day = after.date_naive();
        let mut left = days;
        let mut n = 0u32;
        while left > 0 {
            if day.weekday().number_from_monday() <= 5 {
                for &(h, m) in slots {
                    let at = day.and_hms_opt(h, m, 0).map(|t| t.and_utc());
                    if let Some(at) = at.filter(|t| *t > after) {
                        n += 1;
                        let connected = self.pick(contact, &format!("{stage}-cadence-{n}"), 3) == 0;
                        self.at(
                            at,
                            Act::HubSpotTouch {
                                contact: contact.to_string(),
                                kind: Kind::Call,
                                connected,
                            },
                        );
                    }
                }
                left -= 1;
            }
            day = day.succ_opt().unwrap_or(day);
        }
    }

    /// An MQL: touched in time (and some then follow the cadence), late, or never, then accepted
    /// or rejected a while after the first touch.
    fn plan_mql(&mut self, contact: &str, now: DateTime<Utc>) {
        if !self.seen.insert((contact.to_string(), "mql")) {
            return;
        }
        let habit = self.habit(contact, "mql");
        if habit == Habit::Never {
            self.tally.ignored += 1;
            return;
        }
        // In time: within the first 2 hours (an MQL handed over at 08:00 UTC is due by 10:00).
        let touched = self.first_touch(contact, "mql", habit, 90, now);
        let kind = if self.pick(contact, "kind", 5) < 3 {
            Kind::Call
        } else {
            Kind::Email
        };
        let connected = self.pick(contact, "connected", 4) != 0;
        let c = contact.to_string();
        self.at(
            touched,
            Act::HubSpotTouch {
                contact: c.clone(),
                kind,
                connected,
            },
        );
        if habit == Habit::Cadence {
            // `mql_follow_up`: 6 attempts, 4 working hours apart, within 50 working hours.
            self.plan_cadence(contact, "mql", touched, 6, &[(7, 45), (13, 30)]);
        }
        let decided = touched + Duration::hours(2 + self.pick(contact, "decide", 46) as i64);
        if self.pick(contact, "accept", 100) < 65 {
            self.at(decided, Act::Accept { contact: c });
        } else {
            let reason = REASONS[self.pick(contact, "reason", REASONS.len() as u64) as usize];
            self.at(decided, Act::Reject { contact: c, reason });
        }
    }

    /// A SAL: a meeting or an email (in time, late, or never), some then the cadence's calls;
    /// most of those followed up are qualified with a deal size.
    fn plan_sal(&mut self, contact: &str, now: DateTime<Utc>) {
        if !self.seen.insert((contact.to_string(), "sal")) {
            return;
        }
        let habit = self.habit(contact, "sal");
        if habit == Habit::Never {
            return;
        }
        let c = contact.to_string();
        // The desk sees a SAL up to a step after it was accepted; in time is within 2 hours.
        let touched = self.first_touch(contact, "sal", habit, 100, now);
        let kind = if self.pick(contact, "sal-kind", 2) == 0 {
            Kind::Meeting
        } else {
            Kind::Email
        };
        self.at(
            touched,
            Act::HubSpotTouch {
                contact: c.clone(),
                kind,
                connected: true,
            },
        );
        if habit == Habit::Cadence {
            // `sal_follow_up`: 4 attempts, 8 working hours apart, within 50 working hours: one
            // call a weekday (New York's 7-hour days count every other one).
            self.plan_cadence(contact, "sal", touched, 7, &[(13, 30)]);
        }
        if self.pick(contact, "qualify", 100) < 70 {
            let amount = 500 * (6 + self.pick(contact, "amount", 90));
            let when = touched + Duration::hours(12 + self.pick(contact, "qualify-at", 4 * 24) as i64);
            self.at(when, Act::Qualify { contact: c, amount });
        }
    }

    /// An opportunity leadsync created: a meeting in Salesforce within days, then closed won or
    /// lost within weeks (one in five still open at the month's end).
    fn plan_opportunity(&mut self, id: &str, owner: &str, amount: u64, now: DateTime<Utc>) {
        if !self.seen.insert((id.to_string(), "opportunity")) {
            return;
        }
        let o = id.to_string();
        let met = now + Duration::hours(6 + self.pick(id, "meet", 72) as i64);
        self.at(
            met,
            Act::OpportunityMeeting {
                opportunity: o.clone(),
                owner: owner.to_string(),
            },
        );
        let fate = self.pick(id, "fate", 100);
        if fate < 80 {
            let closed = met + Duration::hours(24 + self.pick(id, "close-at", 14 * 24) as i64);
            // The final amount: the estimate, give or take a fifth.
            let base = if amount == 0 { 10_000 } else { amount };
            let amount = base * (80 + self.pick(id, "final", 41)) / 100;
            self.at(
                closed,
                Act::Close {
                    opportunity: o,
                    won: fate < 45,
                    amount,
                },
            );
        }
    }

    fn act(&mut self, sandbox: &SandboxHandle, act: Act, at: DateTime<Utc>) {
        match act {
            Act::HubSpotTouch {
                contact,
                kind,
                connected,
            } => {
                let current = sandbox
                    .hubspot_contact(&contact)
                    .and_then(|p| p.get("hubspot_owner_id").filter(|o| !o.is_empty()).cloned());
                // A lead nobody owns is claimed by the rep who works it, as a desk does: the
                // SLA follows the current owner, so an unowned lead's touches would count for
                // nobody.
                let owner = match current {
                    Some(owner) => owner,
                    None => {
                        let rep = REPS[self.pick(&contact, "rep", REPS.len() as u64) as usize].to_string();
                        sandbox.set_contact_properties(&contact, &[("hubspot_owner_id", rep.clone())]);
                        rep
                    }
                };
                let activity = SalesActivity {
                    kind: kind.activity(),
                    rep: Some(owner),
                    at: Some(at),
                    inbound: false,
                    connected,
                };
                if sandbox.log_hubspot_activity(&contact, &activity).is_ok() {
                    self.tally.hubspot_touches += 1;
                }
            }
            Act::Accept { contact } => {
                if self.still_at(sandbox, &contact, "mql")
                    && sandbox.set_contact_properties(&contact, &[("leadsync_sal_decision", "accepted".into())])
                {
                    self.tally.accepted += 1;
                }
            }
            Act::Reject { contact, reason } => {
                if self.still_at(sandbox, &contact, "mql")
                    && sandbox.set_contact_properties(
                        &contact,
                        &[
                            ("leadsync_sal_decision", "rejected".into()),
                            ("leadsync_rejection_reason", reason.into()),
                        ],
                    )
                {
                    self.tally.rejected += 1;
                }
            }
            Act::Qualify { contact, amount } => {
                if self.still_at(sandbox, &contact, "sal")
                    && sandbox.set_contact_properties(
                        &contact,
                        &[
                            ("leadsync_sql_qualified", "true".into()),
                            ("hs_expected_amount", amount.to_string()),
                        ],
                    )
                {
                    self.tally.qualified += 1;
                }
            }
            Act::OpportunityMeeting { opportunity, owner } => {
                let activity = SalesActivity {
                    kind: SalesActivityKind::Meeting,
                    rep: Some(owner).filter(|o| !o.is_empty()),
                    at: Some(at),
                    inbound: false,
                    connected: true,
                };
                if sandbox.log_salesforce_activity(&opportunity, &activity).is_ok() {
                    self.tally.salesforce_touches += 1;
                }
            }
            Act::Close {
                opportunity,
                won,
                amount,
            } => {
                if sandbox.close_opportunity_at(&opportunity, won, amount as f64) {
                    if won {
                        self.tally.won += 1;
                    } else {
                        self.tally.lost += 1;
                    }
                }
            }
        }
    }

    /// Whether leadsync still shows the contact at `stage` (a person decides on what they see).
    fn still_at(&self, sandbox: &SandboxHandle, contact: &str, stage: &str) -> bool {
        sandbox
            .hubspot_contact(contact)
            .is_some_and(|p| p.get("leadsync_stage").map(String::as_str) == Some(stage))
    }
}
