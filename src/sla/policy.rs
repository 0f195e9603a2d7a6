//! The SLA file checked and compiled: teams (members, calendar, capacity, fallback), sales SLA
//! policies per entry stage and path (first touch, attempts, what counts as a touch, the breach
//! ladder) and marketing targets. The checks live in `compile.rs`.

use std::path::Path;

use chrono::{Duration, NaiveDate};

use super::calendar::{Calendar, Clock};
use crate::diagnostics::{Diagnostics, SourceText};
use crate::lifecycle::{EventKind, Stage};

/// The event kinds that can count as a touch.
pub const TOUCH_KINDS: [EventKind; 4] = [
    EventKind::Call,
    EventKind::SalesEmail,
    EventKind::Meeting,
    EventKind::Chat,
];

/// The whole SLA file, checked.
#[derive(Debug, Clone)]
pub struct SlaFile {
    /// `[sla] version`.
    pub version: String,
    /// `[sla] description`.
    pub description: Option<String>,
    /// The teams, in file order.
    pub teams: Vec<Team>,
    /// Index in `teams` of the team whose calendar applies to owners in no team.
    pub default_team: usize,
    /// The sales SLA policies, in file order.
    pub policies: Vec<Policy>,
    /// The marketing SLA's targets (data for the reports; nothing enforces them).
    pub marketing: Vec<MarketingTarget>,
}

/// A sales team: who is in it, when they work, how much they can take.
#[derive(Debug, Clone)]
pub struct Team {
    /// Id used by policies and targets.
    pub id: String,
    /// Working hours and holidays in the team's zone.
    pub calendar: Calendar,
    /// Most open leads a rep holds unless the member says otherwise; `None` for no cap.
    pub capacity: Option<u32>,
    /// HubSpot owner id of the manager the ladder's manager task goes to.
    pub manager: Option<String>,
    /// Salesforce user or queue id that takes a lead when nobody in the team is available.
    pub fallback_owner: Option<String>,
    /// The reps.
    pub members: Vec<Member>,
}

/// One rep, known in both CRMs and linked by email.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Lower-cased email: the link between the HubSpot owner and the Salesforce user.
    pub email: String,
    /// HubSpot owner id.
    pub hubspot_owner: Option<String>,
    /// Salesforce user id.
    pub salesforce_user: Option<String>,
    /// Most open leads this rep holds (the team's cap when not set).
    pub capacity: Option<u32>,
    /// Round-robin weight (default 1).
    pub weight: u32,
    /// Days off, first and last day included, in the team's zone.
    pub absences: Vec<(NaiveDate, NaiveDate)>,
}

/// Whether a rep can take a lead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// At work.
    Available,
    /// Outside the team's working hours (or on a team holiday).
    OffHours,
    /// On a declared absence that ends on `until` (included).
    Absent { until: NaiveDate },
}

impl Member {
    /// True when `id` is this rep's HubSpot owner id or Salesforce user id.
    pub fn is(&self, id: &str) -> bool {
        self.hubspot_owner.as_deref() == Some(id) || self.salesforce_user.as_deref() == Some(id)
    }
}

impl Team {
    /// The member known by a HubSpot owner id or a Salesforce user id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.is(id))
    }

    /// Whether `member` can take a lead at `now`: absences first, then working hours.
    pub fn availability(&self, member: &Member, now: chrono::DateTime<chrono::Utc>) -> Availability {
        let today = self.calendar.date_of(now);
        if let Some((_, until)) = member.absences.iter().find(|(from, to)| *from <= today && today <= *to) {
            return Availability::Absent { until: *until };
        }
        if self.calendar.is_open(now) {
            Availability::Available
        } else {
            Availability::OffHours
        }
    }

    /// The cap that applies to `member`.
    pub fn capacity_of(&self, member: &Member) -> Option<u32> {
        member.capacity.or(self.capacity)
    }
}

/// Which way into the stage a policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPath {
    /// Either way.
    Any,
    /// Scores and the normal climb.
    Standard,
    /// A shortcut such as a demo request or a self-booked meeting (`via_shortcut`).
    Shortcut,
}

/// Which clock a policy's durations run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    /// The owner's team's working hours.
    Business,
    /// Every minute.
    Wall,
}

/// Whose touches count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchBy {
    /// Only the contact's current owner.
    Owner,
    /// The owner or anyone in the owner's team.
    OwnerOrTeam,
    /// Anyone.
    Anyone,
}

/// What counts as a touch.
#[derive(Debug, Clone, PartialEq)]
pub struct TouchRule {
    /// Event kinds (calls, sales emails, meetings, chats); always outbound.
    pub kinds: Vec<EventKind>,
    /// Whose.
    pub by: TouchBy,
    /// Calls count only when connected.
    pub connected_calls_only: bool,
    /// The same touch logged in HubSpot and Salesforce: same kind, same rep, this close in time.
    pub same_touch_within: Duration,
}

/// At least `count` attempts within `within` of the start, `min_interval` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// How many.
    pub count: u32,
    /// Counted from the timer's start, on the policy's clock.
    pub within: Duration,
    /// An attempt sooner than this after the previous counted one does not count.
    pub min_interval: Duration,
}

/// What a ladder step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// A HubSpot task for the owner, associated with the contact.
    OwnerTask,
    /// A HubSpot task for the team's manager.
    ManagerTask,
    /// A POST to a notification webhook (a chat channel) for the manager.
    ManagerWebhook(url::Url),
    /// The lead goes to another available rep of the team.
    Reassign,
    /// Sales-rejected with this reason, which recycles the lead.
    SalesRejected(String),
}

impl std::fmt::Display for StepAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OwnerTask => f.write_str("owner task"),
            Self::ManagerTask => f.write_str("manager task"),
            Self::ManagerWebhook(_) => f.write_str("manager webhook"),
            Self::Reassign => f.write_str("reassignment"),
            Self::SalesRejected(r) => write!(f, "sales-rejected ({r})"),
        }
    }
}

/// One rung of the breach ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Delay after the breach, on the policy's clock.
    pub after: Duration,
    /// What it does.
    pub action: StepAction,
    /// Where it is written (file, line, column, field; no message): what a check against
    /// another file (the rules) points at.
    pub written_at: crate::diagnostics::Diagnostic,
}

/// One sales SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Id, stored on each timer.
    pub id: String,
    /// The stage whose entry starts the clock.
    pub stage: Stage,
    /// Which way in.
    pub path: EntryPath,
    /// Business or wall-clock time.
    pub clock: ClockKind,
    /// The first touch is due this long after the start.
    pub first_touch: Duration,
    /// The follow-up cadence, when the policy asks for one.
    pub attempts: Option<Attempts>,
    /// What counts as a touch.
    pub touches: TouchRule,
    /// Escalation after a missed first touch, in order.
    pub ladder: Vec<Step>,
}

impl Policy {
    /// The clock to measure with, given the owner's team calendar.
    pub fn clock<'a>(&self, calendar: &'a Calendar) -> Clock<'a> {
        match self.clock {
            ClockKind::Business => Clock::Business(calendar),
            ClockKind::Wall => Clock::Wall,
        }
    }
}

/// A period for the marketing SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A calendar week.
    Week,
    /// A calendar month.
    Month,
    /// A calendar quarter.
    Quarter,
}

/// Marketing's side: this many MQLs per period, for a team or a source or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketingTarget {
    /// Id, for the reports.
    pub id: String,
    /// MQLs promised per period.
    pub mqls: u32,
    /// The period.
    pub per: Period,
    /// Team id, when the target is a team's.
    pub team: Option<String>,
    /// Original source (`hs_analytics_source` value), when the target is a source's.
    pub source: Option<String>,
}

impl SlaFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<SlaFile, Diagnostics> {
        Self::from_source(&SourceText::read(path)?)
    }

    /// Checks a file already read into memory.
    pub fn from_source(src: &SourceText) -> Result<SlaFile, Diagnostics> {
        super::compile::compile(src, src.parse_toml()?)
    }

    /// The policies whose clock starts when a contact enters `stage` (by a shortcut or not).
    /// The `sales_rejected` steps of policies at a stage the rules cannot reject at (their
    /// `[sales_rejection] applies_at`, or none when the rules have no `[sales_rejection]`): such a
    /// step could never recycle its lead, so `leadsync check` refuses it where it is written.
    pub fn rejections_outside(&self, applies_at: &[Stage]) -> crate::diagnostics::Diagnostics {
        let allowed = if applies_at.is_empty() {
            "the rules have no [sales_rejection]".to_string()
        } else {
            let names: Vec<&str> = applies_at.iter().map(|s| s.as_str()).collect();
            format!("the rules' [sales_rejection] applies_at is {}", names.join(", "))
        };
        let found = self.policies.iter().flat_map(|p| {
            p.ladder
                .iter()
                .filter(|step| matches!(step.action, StepAction::SalesRejected(_)) && !applies_at.contains(&p.stage))
                .map(|step| crate::diagnostics::Diagnostic {
                    message: format!(
                        "a sales rejection at stage {} ({allowed}): the step could never recycle the lead; \
                         move it to a policy at one of those stages, or add {} to applies_at",
                        p.stage.as_str(),
                        p.stage.as_str()
                    ),
                    ..step.written_at.clone()
                })
                .collect::<Vec<_>>()
        });
        crate::diagnostics::Diagnostics(found.collect())
    }

    pub fn policies_for(&self, stage: Stage, via_shortcut: bool) -> impl Iterator<Item = &Policy> {
        let path = if via_shortcut {
            EntryPath::Shortcut
        } else {
            EntryPath::Standard
        };
        self.policies
            .iter()
            .filter(move |p| p.stage == stage && (p.path == EntryPath::Any || p.path == path))
    }

    /// The policy with this id.
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// The team of the rep known by `owner` (HubSpot owner or Salesforce user id), else the
    /// default team: its calendar is the one the owner's clock runs on.
    pub fn team_for(&self, owner: Option<&str>) -> &Team {
        owner
            .and_then(|o| self.teams.iter().find(|t| t.member(o).is_some()))
            .unwrap_or(&self.teams[self.default_team])
    }
}
