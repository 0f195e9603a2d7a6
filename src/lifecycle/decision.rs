//! What the engine returns: the new stage, status and scores, why, and what the rest of the system must do.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{Stage, Status};
use super::snapshot::{ContactState, HubSpotId};

/// The engine's verdict for one contact at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Decision<'a> {
    /// HubSpot contact id.
    pub contact_id: HubSpotId,
    /// The `now` the decision was made for.
    pub at: DateTime<Utc>,
    /// Rules version the decision was made with.
    pub rules_version: String,
    /// Content hash of that rules file.
    pub rules_hash: String,
    /// Stage before this decision.
    pub previous_stage: Option<Stage>,
    /// Stage after it.
    pub stage: Option<Stage>,
    /// Why the contact is at `stage` now (the condition that holds, when one does).
    pub stage_reason: Option<String>,
    /// True when this decision moved the contact by a shortcut (a demo request, a self-booked
    /// meeting): the sales SLA's shortcut policies start their clocks on it.
    pub via_shortcut: bool,
    /// Side status after the decision.
    pub status: Status,
    /// Why the status holds.
    pub status_reason: Option<String>,
    /// Fit score and its parts.
    pub fit: Score<'a>,
    /// Engagement score and its parts.
    pub engagement: Score<'a>,
    /// Fit letter and engagement digit, such as `A1`.
    pub grade: String,
    /// Values derived from properties (`persona`, `seniority`), for explanations.
    pub derived: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Every change this decision makes, with its reason.
    pub transitions: Vec<Transition>,
    /// What the rest of the system must carry out.
    pub actions: Vec<Action>,
    /// Things a person should know: ignored events, refused rejections.
    pub notes: Vec<String>,
    /// The state to store for next time.
    pub state: ContactState,
}

/// A score with every contribution that made it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Score<'a> {
    /// Final value, after caps, rounded to 2 decimals.
    pub value: f64,
    /// Sum of contributions before group and total caps.
    pub uncapped: f64,
    /// Per-rule contributions, oldest event first.
    pub contributions: Vec<Contribution<'a>>,
    /// Per-group totals before and after the group's cap.
    pub groups: Vec<GroupTotal<'a>>,
    /// Multiplier applied to every contribution (a fan's damping), when not 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

/// One rule's points for one event (or, for fit, one property rule).
#[derive(Debug, Clone, Serialize)]
pub struct Contribution<'a> {
    /// Rule id.
    pub rule: Cow<'a, str>,
    /// Group the points count in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'a, str>>,
    /// Event that earned the points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Cow<'a, str>>,
    /// Age of the event at `now`, in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_days: Option<f64>,
    /// The rule's half-life, in days (absent: no decay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_life_days: Option<f64>,
    /// Points the rule gives.
    pub points: f64,
    /// After decay.
    pub decayed: f64,
    /// What counts after frequency caps and multipliers, before group caps.
    pub counted: f64,
    /// Why `counted` differs from `decayed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'a, str>>,
}

/// A group's sum before and after its cap.
#[derive(Debug, Clone, Serialize)]
pub struct GroupTotal<'a> {
    /// Group name.
    pub group: Cow<'a, str>,
    /// Sum of its contributions.
    pub raw: f64,
    /// After the group's min and max.
    pub capped: f64,
}

/// One change, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transition {
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
    /// Why, in words.
    pub reason: String,
}

/// The kinds of change a decision makes.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Moved forward (or, first time seen, placed).
    Stage {
        /// Stage before.
        from: Option<Stage>,
        /// Stage after.
        to: Stage,
    },
    /// Jumped over without meeting its criteria (stamped so funnel counts add up).
    Skipped {
        /// The stage jumped over.
        stage: Stage,
    },
    /// The one backward move: engagement reset, fit kept, cooldown started.
    Recycle {
        /// Stage before.
        from: Option<Stage>,
        /// Stage after.
        to: Stage,
        /// Which recycle this is for the contact (1 for the first).
        cycle: u32,
    },
    /// Side status changed.
    Status {
        /// Status before.
        from: Status,
        /// Status after.
        to: Status,
    },
}

/// Work for the rest of the system. Every action is idempotent: repeating it changes nothing.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Write these HubSpot contact properties (only values that differ from HubSpot's).
    WriteHubSpot {
        /// Property name → new value (empty clears).
        properties: BTreeMap<String, String>,
    },
    /// Set HubSpot's lifecycle stage; `backward` needs clear-then-set in two requests.
    SetLifecycleStage {
        /// HubSpot's internal value.
        value: String,
        /// True when HubSpot would refuse it without clearing first.
        backward: bool,
    },
    /// Create or link the Salesforce Account, Contact and Opportunity.
    PromoteToSalesforce,
}

impl Decision<'_> {
    /// The HubSpot properties this decision writes, if any.
    pub fn hubspot_writes(&self) -> Option<&BTreeMap<String, String>> {
        self.actions.iter().find_map(|a| match a {
            Action::WriteHubSpot { properties } => Some(properties),
            _ => None,
        })
    }

    /// True when the decision asks for a Salesforce promotion.
    pub fn promotes(&self) -> bool {
        self.actions.contains(&Action::PromoteToSalesforce)
    }

    /// A copy that no longer borrows the rules or the snapshot.
    pub fn into_owned(self) -> Decision<'static> {
        Decision {
            contact_id: self.contact_id,
            at: self.at,
            rules_version: self.rules_version,
            rules_hash: self.rules_hash,
            previous_stage: self.previous_stage,
            stage: self.stage,
            stage_reason: self.stage_reason,
            via_shortcut: self.via_shortcut,
            status: self.status,
            status_reason: self.status_reason,
            fit: self.fit.into_owned(),
            engagement: self.engagement.into_owned(),
            grade: self.grade,
            derived: self
                .derived
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            transitions: self.transitions,
            actions: self.actions,
            notes: self.notes,
            state: self.state,
        }
    }
}

impl Score<'_> {
    /// A copy that no longer borrows the rules or the snapshot.
    pub fn into_owned(self) -> Score<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Score {
            value: self.value,
            uncapped: self.uncapped,
            contributions: self
                .contributions
                .into_iter()
                .map(|c| Contribution {
                    rule: own(c.rule),
                    group: c.group.map(own),
                    event_id: c.event_id.map(own),
                    age_days: c.age_days,
                    half_life_days: c.half_life_days,
                    points: c.points,
                    decayed: c.decayed,
                    counted: c.counted,
                    note: c.note.map(own),
                })
                .collect(),
            groups: self
                .groups
                .into_iter()
                .map(|g| GroupTotal {
                    group: own(g.group),
                    raw: g.raw,
                    capped: g.capped,
                })
                .collect(),
            multiplier: self.multiplier,
        }
    }
}
