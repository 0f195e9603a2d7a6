//! One SLA timer and its assessment (pure): given the policy, the owner's team, the stored
//! record, the touches seen from both CRMs, the current owner and the time, [`assess`] says
//! whether the SLA is running, met or breached, how long the first touch took (even when late),
//! which ladder steps are now due (each exactly once: the record lists those done), and when to
//! look again. The caller stores the record and performs the steps.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::policy::{Policy, StepAction, Team, TouchBy};
use crate::lifecycle::snapshot::Direction;
use crate::lifecycle::{Event, EventKind};

/// The CRM a touch was logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum System {
    /// A HubSpot engagement.
    HubSpot,
    /// A Salesforce Task or Event.
    Salesforce,
}

/// A sales activity on the contact, from either CRM, parsed at the edge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Touch {
    /// Where it was logged.
    pub system: System,
    /// Its id in that system (a repeated id counts once).
    pub id: String,
    /// Call, sales email, meeting or chat (other kinds never count).
    pub kind: EventKind,
    /// When it started.
    pub at: DateTime<Utc>,
    /// Started by the rep (inbound replies are not touches).
    pub outbound: bool,
    /// For calls: the call connected.
    pub connected: bool,
    /// HubSpot owner id or Salesforce user id of the rep who logged it.
    pub by: Option<String>,
}

impl Touch {
    /// A HubSpot engagement from the ledger as a touch: outbound unless HubSpot says the
    /// contact started it, connected when its outcome says so, by the rep who logged it.
    pub fn from_hubspot(e: &Event) -> Touch {
        Touch {
            system: System::HubSpot,
            id: e.id.clone(),
            kind: e.kind,
            at: e.at,
            outbound: e.direction != Some(Direction::Inbound),
            connected: e
                .outcome
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case("connected")),
            by: e.owner.clone(),
        }
    }
}

/// One timer, as stored: one per policy and contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRecord {
    /// Policy id.
    pub policy: String,
    /// HubSpot contact id.
    pub contact: String,
    /// When the clock started (the stage entry).
    pub started_at: DateTime<Utc>,
    /// When the first touch is due (fixed at the start, on the policy's clock).
    pub due_at: DateTime<Utc>,
    /// The first counted touch, even after the deadline.
    pub first_touch_at: Option<DateTime<Utc>>,
    /// Attempts counted so far (the minimum interval applied).
    pub attempts: u32,
    /// When the SLA was met: first touch in time and, when asked, enough attempts in the window.
    pub met_at: Option<DateTime<Utc>>,
    /// When it was breached: the due time with no touch, or the window's end short of attempts.
    pub breached_at: Option<DateTime<Utc>>,
    /// Ladder steps already performed, by index in the policy's ladder.
    pub steps_done: BTreeSet<usize>,
}

impl SlaRecord {
    /// A timer started at `now`, due after the policy's first-touch time on its clock in the
    /// owner's team's calendar; `None` when that calendar has no working time ahead.
    pub fn start(policy: &Policy, team: &Team, contact: &str, now: DateTime<Utc>) -> Option<SlaRecord> {
        Some(SlaRecord {
            policy: policy.id.clone(),
            contact: contact.to_string(),
            started_at: now,
            due_at: policy.clock(&team.calendar).add(now, policy.first_touch)?,
            first_touch_at: None,
            attempts: 0,
            met_at: None,
            breached_at: None,
            steps_done: BTreeSet::new(),
        })
    }

    /// Records that ladder step `index` was performed, so it is never due again.
    pub fn mark_done(&mut self, index: usize) {
        self.steps_done.insert(index);
    }
}

/// Where the SLA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Still within its times.
    Running,
    /// Met.
    Met,
    /// Breached, and how.
    Breached(Breach),
}

/// How an SLA was breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// No touch by the due time (a later touch does not undo it).
    NoFirstTouch,
    /// First touch in time, but fewer attempts than asked within the window.
    TooFewAttempts,
}

/// A ladder step whose time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueStep {
    /// Index in the policy's ladder: pass it to [`SlaRecord::mark_done`] once performed.
    pub index: usize,
    /// What to do.
    pub action: StepAction,
    /// When it became due.
    pub at: DateTime<Utc>,
}

/// What [`assess`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The record, brought up to date (store it).
    pub record: SlaRecord,
    /// Running, met or breached.
    pub state: State,
    /// From the start to the first touch, on the policy's clock (also when late).
    pub time_to_first_touch: Option<Duration>,
    /// The touches that counted, de-duplicated, oldest first.
    pub counted: Vec<Touch>,
    /// Ladder steps due now and not yet done, in ladder order.
    pub due_steps: Vec<DueStep>,
    /// When the state can next change with no new touch; `None` when nothing is left to time.
    pub next_check: Option<DateTime<Utc>>,
}

/// Assesses one timer at `now`. `team` is the current owner's team (its calendar and members);
/// `owner` is the contact's current owner (HubSpot owner or Salesforce user id), so the timer
/// follows an owner change. Touches may come in any order and twice.
pub fn assess(
    policy: &Policy,
    team: &Team,
    record: &SlaRecord,
    touches: &[Touch],
    owner: Option<&str>,
    now: DateTime<Utc>,
) -> Assessment {
    let clock = policy.clock(&team.calendar);
    let counted = counted_touches(policy, team, record.started_at, touches, owner);
    let first_touch_at = counted.first().map(|t| t.at);

    // Attempts: greedily, each at least `min_interval` after the previous counted one.
    let mut attempt_times: Vec<DateTime<Utc>> = Vec::new();
    let min_interval = policy.attempts.map_or(Duration::zero(), |a| a.min_interval);
    for t in &counted {
        if attempt_times
            .last()
            .is_none_or(|last| clock.elapsed(*last, t.at) >= min_interval)
        {
            attempt_times.push(t.at);
        }
    }
    let window_end = policy.attempts.and_then(|a| clock.add(record.started_at, a.within));
    let on_time = first_touch_at.is_some_and(|t| t <= record.due_at);
    let cadence_done_at = match (policy.attempts, window_end) {
        (None, _) => first_touch_at,
        (Some(a), end) => attempt_times
            .get(a.count as usize - 1)
            .copied()
            .filter(|t| end.is_none_or(|e| *t <= e)),
    };

    let (state, met_at, breached_at) = if !on_time && now >= record.due_at {
        (State::Breached(Breach::NoFirstTouch), None, Some(record.due_at))
    } else if on_time && let Some(done) = cadence_done_at {
        (State::Met, Some(done), None)
    } else if on_time && window_end.is_some_and(|e| now >= e) {
        (State::Breached(Breach::TooFewAttempts), None, window_end)
    } else {
        (State::Running, None, None)
    };

    // The ladder climbs from a missed first touch until someone touches the lead.
    let climbing = state == State::Breached(Breach::NoFirstTouch) && first_touch_at.is_none();
    let step_times: Vec<Option<DateTime<Utc>>> = policy
        .ladder
        .iter()
        .map(|s| clock.add(record.due_at, s.after))
        .collect();
    let due_steps = if climbing {
        policy
            .ladder
            .iter()
            .zip(&step_times)
            .enumerate()
            .filter_map(|(index, (step, at))| {
                let at = (*at)?;
                (at <= now && !record.steps_done.contains(&index)).then(|| DueStep {
                    index,
                    action: step.action.clone(),
                    at,
                })
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut next: Vec<DateTime<Utc>> = Vec::new();
    if state == State::Running {
        if !on_time {
            next.push(record.due_at);
        } else if let Some(e) = window_end {
            next.push(e);
        }
    }
    if climbing || (first_touch_at.is_none() && state == State::Running) {
        next.extend(
            step_times
                .iter()
                .enumerate()
                .filter(|(i, _)| !record.steps_done.contains(i))
                .filter_map(|(_, at)| *at)
                .filter(|at| *at > now),
        );
    }

    Assessment {
        record: SlaRecord {
            first_touch_at,
            attempts: attempt_times.len() as u32,
            met_at,
            breached_at,
            ..record.clone()
        },
        state,
        time_to_first_touch: first_touch_at.map(|t| clock.elapsed(record.started_at, t)),
        counted,
        due_steps,
        next_check: next.into_iter().filter(|t| *t > now).min(),
    }
}

/// The touches that count for this timer, de-duplicated across the two CRMs, oldest first.
fn counted_touches(
    policy: &Policy,
    team: &Team,
    started_at: DateTime<Utc>,
    touches: &[Touch],
    owner: Option<&str>,
) -> Vec<Touch> {
    let rule = &policy.touches;
    // One key per person: a team member's email links their HubSpot and Salesforce ids.
    let person = |id: &str| team.member(id).map_or_else(|| id.to_string(), |m| m.email.clone());
    let owner_key = owner.map(person);
    let by_ok = |t: &Touch| {
        let by = t.by.as_deref().map(person);
        let is_owner = by.is_some() && by == owner_key;
        match rule.by {
            TouchBy::Anyone => true,
            TouchBy::Owner => is_owner,
            TouchBy::OwnerOrTeam => is_owner || t.by.as_deref().is_some_and(|b| team.member(b).is_some()),
        }
    };
    let mut candidates: Vec<&Touch> = touches
        .iter()
        .filter(|t| t.at >= started_at && t.outbound && rule.kinds.contains(&t.kind))
        .filter(|t| !(rule.connected_calls_only && t.kind == EventKind::Call && !t.connected))
        .filter(|t| by_ok(t))
        .collect();
    candidates.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let mut kept: Vec<Touch> = Vec::new();
    for t in candidates {
        let key = t.by.as_deref().map(person);
        let duplicate = kept.iter().any(|k| {
            (k.system == t.system && k.id == t.id)
                || (k.system != t.system
                    && k.kind == t.kind
                    && k.by.as_deref().map(person) == key
                    && (t.at - k.at).abs() <= rule.same_touch_within)
        });
        if !duplicate {
            kept.push(t.clone());
        }
    }
    kept
}
