//! `evaluate`: one contact, one moment, one decision. Pure: no IO, no clock, no randomness.
//!
//! Order, for each pass: events are deduplicated and sorted; derived values; fit; engagement
//! (damped for a fan); recycles (a lost opportunity past its delay, a sales rejection with a
//! reason); gates; side statuses; the highest stage whose criteria hold and that no status
//! blocks, or a shortcut; forward-only move with skipped stages stamped; writes.
//! A recycle resets the state and runs the pass once more, so the decision shows the contact
//! as it stands after the recycle.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::decision::{Action, Change, Decision, Score, Transition};
use super::model::{EventKind, Stage, Status};
use super::predicate::{Ctx, Prepared, fmt_num};
use super::rules::Rules;
use super::scoring;
use super::signals::Signal;
use super::snapshot::{ContactState, Event, Snapshot, StageEntry};

/// Decides stage, status, scores and actions for one contact at `now`.
pub fn evaluate<'a>(rules: &'a Rules, snapshot: &'a Snapshot, now: DateTime<Utc>) -> Decision<'a> {
    evaluate_signalled(rules, snapshot, &[], now)
}

/// [`evaluate`], knowing the buying signals this evaluation's new events fired
/// ([`super::signals::signals`]): a lost contact showing one of `[lost] recycle_on` is recycled
/// now, as the rules say, before `recycle_after`.
pub fn evaluate_signalled<'a>(
    rules: &'a Rules,
    snapshot: &'a Snapshot,
    fired: &[Signal],
    now: DateTime<Utc>,
) -> Decision<'a> {
    let mut st = snapshot.state.clone();
    let previous_stage = st.stage;
    let mut transitions = Vec::new();
    let mut notes = Vec::new();

    // A value a recycle consumed counts again once HubSpot shows anything else.
    st.consumed
        .retain(|p, v| snapshot.properties.get(p).map(|x| x.trim()) == Some(v.as_str()));
    observe_hubspot_stage(rules, snapshot, &mut st, now, &mut transitions, &mut notes);

    let mut pass = 0;
    'pass: loop {
        pass += 1;
        let owned;
        let props: &HashMap<String, String> = if st.consumed.is_empty() {
            &snapshot.properties
        } else {
            owned = without(&snapshot.properties, &st.consumed);
            &owned
        };
        let (events, future) = prepare_events(rules, &snapshot.events, now, st.engagement_reset_at);
        if future > 0 && pass == 1 {
            notes.push(format!("{future} event(s) dated after {now} ignored (clock skew?)"));
        }
        let derived = derive(rules, props);
        let memo: Vec<Cell<u8>> = vec![Cell::new(0); events.len() * rules.memo_slots];
        known_urls(rules, &events, &memo);
        let prop_cache: Vec<Cell<Option<Option<&str>>>> = vec![Cell::new(None); rules.prop_slots];
        let mut ctx = Ctx {
            properties: props,
            derived: &derived,
            fit: 0.0,
            engagement: 0.0,
            events: &events,
            now,
            event: Cell::new(None),
            memo: &memo,
            memo_stride: rules.memo_slots,
            props: &prop_cache,
        };
        let fit = scoring::fit(rules, &ctx);
        ctx.fit = fit.value;
        let undamped = scoring::engagement(rules, &ctx, &events, now);
        ctx.engagement = undamped.value;

        // ---- rounds: side statuses, then the stage they allow ------------------------------
        // Every side status is judged at the stage the contact is at when the decision ends: a
        // round moves the stage, and the next round judges again from there, until nothing
        // moves. So a contact seen for the first time gets its status in this same decision,
        // and evaluating the decision's own state again changes nothing.
        let mut damped = None;
        let mut via_shortcut = false;
        let mut stage_reason = None;
        // What the conditions answered in an earlier round of this pass: a round asks again
        // from a higher stage in the same context, which differs only by a fan's damping.
        let (mut kept_gate, mut kept_opt_out, mut kept_shortcut) = (Kept::new(), Kept::new(), Kept::new());
        let mut kept_stage: [Kept<bool>; Stage::ALL.len()] = std::array::from_fn(|_| Kept::new());
        let (gate, opted_out, lost_since, recycling, fan) = loop {
            let current = st.stage;

            // ---- recycles: the only backward moves ----------------------------------------
            let mut lost_since = None;
            if pass == 1 {
                match recycle_due(rules, &st, props, &ctx, fired, now, current, &mut notes) {
                    Recycling::Due(reason) => {
                        recycle(rules, &mut st, props, now, rules.recycle.to, reason, &mut transitions);
                        continue 'pass;
                    }
                    Recycling::Lost(since) => lost_since = Some(since),
                    Recycling::No => {}
                }
            }

            // ---- side statuses that gate automatic moves --------------------------------
            let below = |b: Option<Stage>| b.is_none_or(|b| current.is_none_or(|c| c < b));
            let gate = if below(rules.gates.apply_below) {
                kept_gate.get(ctx.engagement, || rules.gates.rules.iter().find(|g| g.when.eval(&ctx)))
            } else {
                None
            };
            let opted_out = if below(rules.opt_out.apply_below) {
                kept_opt_out.get(ctx.engagement, || {
                    rules.opt_out.rules.iter().find(|g| g.when.eval(&ctx))
                })
            } else {
                None
            };
            let cooling = st.cooldown_until.is_some_and(|c| now < c);
            let nurture_only = st.recycle_count >= rules.recycle.max_cycles;
            let fan = rules
                .fan
                .as_ref()
                .filter(|f| current < Some(Stage::Sql) && is_fan(f, &ctx));
            ctx.engagement = match fan {
                Some(f) => {
                    damped
                        .get_or_insert_with(|| scoring::damp(rules, undamped.clone(), f.multiplier))
                        .value
                }
                None => undamped.value,
            };
            // The side statuses that hold, one bit each.
            let bit = |s: Status| 1u8 << (s as u8);
            let mut active = 0u8;
            for (holds, s) in [
                (gate.is_some(), Status::Disqualified),
                (lost_since.is_some(), Status::Lost),
                (cooling || nurture_only, Status::Recycle),
                (opted_out.is_some(), Status::OptedOut),
                (fan.is_some(), Status::Fan),
            ] {
                if holds {
                    active |= bit(s);
                }
            }
            if dormant(rules, &st, &events, now, current) {
                active |= bit(Status::Dormant);
            }

            // ---- the stage: highest that holds and is not blocked, or a shortcut --------
            let blocked = |by: &[Status]| by.iter().any(|s| active & bit(*s) != 0);
            let by_criteria = rules
                .stages
                .iter()
                .rev()
                .filter(|r| Some(r.stage) > current && !blocked(&r.blocked_by))
                .find(|r| kept_stage[r.stage.index()].get(ctx.engagement, || r.when.eval(&ctx)))
                .and_then(|r| r.when.why(&ctx).map(|why| (r.stage, why)));
            let sc = &rules.shortcuts;
            let by_shortcut = if Some(sc.to) > current && !blocked(&sc.blocked_by) {
                // A note it adds is the same each time, and `note` keeps one.
                kept_shortcut.get(ctx.engagement, || sc.rules.iter().filter(|s| s.when.eval(&ctx)).find_map(|s| {
                    let why = s.when.why(&ctx)?;
                    if let Some(req) = &sc.requires {
                        if !req.eval(&ctx) {
                            note(
                                &mut notes,
                                format!(
                                    "shortcut `{}` not taken: {} not met (nobody goes straight to sales known only by an email)",
                                    s.id,
                                    req.describe()
                                ),
                            );
                            return None;
                        }
                    }
                    Some((sc.to, format!("{}: {why}", s.reason)))
                }))
            } else {
                None
            };
            let shortcut = by_shortcut
                .as_ref()
                .is_some_and(|(s, _)| by_criteria.as_ref().is_none_or(|(c, _)| s > c));
            let target = if shortcut { by_shortcut } else { by_criteria };

            let Some((to, why)) = target else {
                if stage_reason.is_none() {
                    if let Some(cur) = current {
                        stage_reason = rules.stages[cur.index()].when.why(&ctx);
                    }
                }
                break (gate, opted_out, lost_since, cooling || nurture_only, fan);
            };
            via_shortcut |= shortcut;
            for r in rules.stages.iter().filter(|r| Some(r.stage) > current && r.stage < to) {
                let skipped = !kept_stage[r.stage.index()].get(ctx.engagement, || r.when.eval(&ctx));
                st.stages.insert(r.stage, StageEntry { at: now, skipped });
                if skipped {
                    transitions.push(Transition {
                        change: Change::Skipped { stage: r.stage },
                        reason: format!("jumped over on the way to {to}"),
                    });
                }
            }
            st.stages.insert(
                to,
                StageEntry {
                    at: now,
                    skipped: false,
                },
            );
            let reason = [&to.as_str().to_uppercase(), " because ", &why].concat();
            transitions.push(Transition {
                change: Change::Stage { from: current, to },
                reason: reason.clone(),
            });
            stage_reason = Some(reason);
            st.stage = Some(to);
            if to >= Stage::Sql && current < Some(Stage::Sql) {
                st.promotion_pending = true;
            }
        };
        let stage = st.stage;
        let engagement = match (fan, damped) {
            (Some(_), Some(d)) => d,
            _ => undamped,
        };

        // ---- the status at the stage the decision ends at ---------------------------------
        let (status, status_reason) = if let Some(g) = gate {
            (Status::Disqualified, Some(format!("{} ({})", g.reason, g.id)))
        } else if let Some(since) = lost_since {
            (
                Status::Lost,
                Some(format!("opportunity lost on {}", since.format("%Y-%m-%d"))),
            )
        } else if recycling {
            let nurture_only = st.recycle_count >= rules.recycle.max_cycles;
            let why = if nurture_only {
                format!("recycled {} times: nurture only, no automatic MQL", st.recycle_count)
            } else {
                let until = st
                    .cooldown_until
                    .map_or_else(String::new, |c| c.format("%Y-%m-%d").to_string());
                let last = st.status_reason.clone().filter(|_| st.status == Status::Recycle);
                match last {
                    Some(r) => r,
                    None => format!("recycled; no automatic MQL before {until}"),
                }
            };
            (Status::Recycle, Some(why))
        } else if let Some(o) = opted_out {
            (Status::OptedOut, Some(format!("{} ({})", o.reason, o.id)))
        } else if fan.is_some() {
            let f = fan.map_or(0, |f| f.more_than);
            (
                Status::Fan,
                Some(format!("more than {f} events with no buying signal; engagement damped")),
            )
        } else if stage.is_some() && dormant(rules, &st, &events, now, stage) {
            let after = rules.dormant.as_ref().map_or_else(String::new, |d| d.after.to_string());
            (Status::Dormant, Some(format!("no activity for {after}")))
        } else {
            (Status::Active, None)
        };
        if status != st.status {
            let reason = status_reason.clone().unwrap_or_else(|| match st.status {
                Status::Disqualified => "no gate holds any more".to_string(),
                Status::Dormant => "new activity".to_string(),
                Status::Recycle => "cooldown over".to_string(),
                Status::Fan => "activity back to normal, or a buying signal".to_string(),
                Status::Lost => "opportunity no longer lost".to_string(),
                Status::OptedOut => "no opt-out holds any more".to_string(),
                Status::Active => String::new(),
            });
            transitions.push(Transition {
                change: Change::Status {
                    from: st.status,
                    to: status,
                },
                reason,
            });
            st.status_since = Some(if status == Status::Lost {
                lost_since.unwrap_or(now)
            } else {
                now
            });
        }
        st.status = status;
        st.status_reason = status_reason;

        let mut actions = Vec::new();

        let grade = scoring::grade(&rules.grades, fit.value, engagement.value);
        if st.rules_version.as_deref() != Some(rules.stamp.as_str()) {
            st.rules_version = Some(rules.stamp.clone());
        }
        if !transitions.is_empty() {
            st.last_reason = Some(reason_text(&transitions));
        }
        let (written, engagement_written) = writes(rules, snapshot, &st, &fit, &engagement, &grade, now, &mut notes);
        actions.splice(0..0, written);
        if engagement_written {
            st.engagement_written_at = Some(now);
        }
        if st.promotion_pending {
            actions.push(Action::PromoteToSalesforce);
        }

        return Decision {
            contact_id: snapshot.contact_id.clone(),
            at: now,
            rules_version: rules.version.clone(),
            rules_hash: rules.hash.clone(),
            previous_stage,
            stage,
            stage_reason,
            via_shortcut,
            status,
            status_reason: st.status_reason.clone(),
            fit,
            engagement,
            grade,
            derived: rules
                .derives
                .iter()
                .zip(&derived)
                .filter_map(|(d, v)| v.map(|v| (Cow::Borrowed(&*d.name), Cow::Owned(v.to_string()))))
                .collect(),
            transitions,
            actions,
            notes,
            state: st,
        };
    }
}

/// A condition's answer within one pass of [`evaluate_signalled`], with the engagement score it
/// saw: every other input of a condition (properties, derived values, fit, events, `now`) is the
/// same for the whole pass, so the same score gives the same answer.
struct Kept<T>(Option<(u64, T)>);

impl<T: Clone> Kept<T> {
    fn new() -> Self {
        Kept(None)
    }

    /// The answer kept for `engagement`, or `compute`d now (and kept).
    fn get(&mut self, engagement: f64, compute: impl FnOnce() -> T) -> T {
        let key = engagement.to_bits();
        if let Some((k, v)) = &self.0 {
            if *k == key {
                return v.clone();
            }
        }
        let v = compute();
        self.0 = Some((key, v.clone()));
        v
    }
}

/// Notices a lifecycle stage that someone other than leadsync set in HubSpot, and honours it.
fn observe_hubspot_stage(
    rules: &Rules,
    snapshot: &Snapshot,
    st: &mut ContactState,
    now: DateTime<Utc>,
    transitions: &mut Vec<Transition>,
    notes: &mut Vec<String>,
) {
    let value = snapshot
        .properties
        .get(&rules.output().lifecycle_property)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    // Seen as it was last time (the usual case): kept, not copied again.
    let seen_before = value.is_some() && st.hubspot_stage_seen.as_deref() == value;
    if !seen_before {
        st.hubspot_stage_seen = value.map(str::to_string);
    }
    let Some(v) = value else { return };
    let Some(theirs) = rules.stage_for_hubspot(v) else {
        notes.push(format!(
            "HubSpot lifecycle stage `{v}` is not one leadsync maps; left as it is"
        ));
        return;
    };
    let ours = st.stage.map(|s| rules.hubspot_value(s));
    if ours.is_some_and(|o| o.eq_ignore_ascii_case(v)) || seen_before {
        return; // in sync, or our own write not visible yet
    }
    let ours_rank = ours.and_then(|o| rules.stage_for_hubspot(o));
    match st.stage {
        None => {
            st.stage = Some(theirs);
            st.stages.insert(
                theirs,
                StageEntry {
                    at: now,
                    skipped: false,
                },
            );
            transitions.push(Transition {
                change: Change::Stage { from: None, to: theirs },
                reason: format!("already `{v}` in HubSpot when first seen"),
            });
        }
        Some(cur) if Some(theirs) > ours_rank => {
            for s in Stage::ALL.iter().filter(|s| **s > cur && **s < theirs) {
                st.stages.entry(*s).or_insert(StageEntry { at: now, skipped: true });
            }
            st.stages.insert(
                theirs,
                StageEntry {
                    at: now,
                    skipped: false,
                },
            );
            st.stage = Some(theirs);
            if theirs >= Stage::Sql && cur < Stage::Sql {
                st.promotion_pending = true;
            }
            transitions.push(Transition {
                change: Change::Stage {
                    from: Some(cur),
                    to: theirs,
                },
                reason: format!("set to `{v}` in HubSpot by a person or another app"),
            });
        }
        Some(_) => {
            let reason = format!("moved back to `{v}` in HubSpot by a person");
            let props = snapshot.properties.clone();
            recycle(rules, st, &props, now, theirs, reason, transitions);
        }
    }
}

/// The one backward move: stage down, engagement reset, fit kept, cooldown, consumed decisions.
fn recycle(
    rules: &Rules,
    st: &mut ContactState,
    props: &HashMap<String, String>,
    now: DateTime<Utc>,
    to: Stage,
    reason: String,
    transitions: &mut Vec<Transition>,
) {
    st.recycle_count += 1;
    transitions.push(Transition {
        change: Change::Recycle {
            from: st.stage,
            to,
            cycle: st.recycle_count,
        },
        reason: reason.clone(),
    });
    st.stage = Some(to);
    st.stages.retain(|s, _| *s < to);
    st.stages.insert(
        to,
        StageEntry {
            at: now,
            skipped: false,
        },
    );
    st.engagement_reset_at = Some(now);
    st.cooldown_until = rules
        .recycle
        .cooldown
        .to_chrono()
        .and_then(|d| now.checked_add_signed(d));
    st.promotion_pending = false;
    if let Some(link) = st.salesforce.as_mut() {
        link.opportunity_id = None; // a later qualification gets a new opportunity
    }
    for p in &rules.recycle.clear {
        if let Some(v) = props.get(p).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            st.consumed.insert(p.clone(), v.to_string());
        }
    }
    st.status = Status::Recycle;
    st.status_since = Some(now);
    st.status_reason = Some(reason);
}

/// Distinct URLs and form names remembered per evaluation (beyond, values are classified per event).
const DISTINCT_MAX: usize = 32;

/// Deduplicated (by id), not in the future, after the last reset, oldest first; and how many were in the future.
pub(super) fn prepare_events<'a>(
    rules: &'a Rules,
    events: &'a [Event],
    now: DateTime<Utc>,
    reset_at: Option<DateTime<Utc>>,
) -> (Vec<Prepared<'a>>, usize) {
    let mut future = 0;
    let mut kept: Vec<&Event> = Vec::with_capacity(events.len());
    for e in events {
        if e.at > now {
            future += 1;
        } else if reset_at.is_none_or(|r| e.at > r) {
            kept.push(e);
        }
    }
    kept.sort_unstable_by(|a, b| {
        a.at.cmp(&b.at)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| content_cmp(a, b))
    });
    if has_repeated_id(&kept) {
        // Same id twice: keep one, chosen by content so arrival order never matters.
        kept.sort_unstable_by(|a, b| a.id.cmp(&b.id).then_with(|| content_cmp(a, b)));
        kept.dedup_by(|b, a| a.id == b.id);
        kept.sort_unstable_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    }
    // The same page or form comes back often: classify each distinct value once.
    let mut urls: Vec<(&str, usize)> = Vec::with_capacity(8);
    let mut forms: Vec<(&str, Option<&'a str>)> = Vec::with_capacity(8);
    let prepared = kept
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let url_row = match event.url.as_deref() {
                Some(u) => match urls.iter().find(|(seen, _)| *seen == u) {
                    Some(&(_, row)) => row,
                    None => {
                        if urls.len() < DISTINCT_MAX {
                            urls.push((u, index));
                        }
                        index
                    }
                },
                None => index,
            };
            let form_kind = (event.kind == EventKind::FormSubmission)
                .then(|| {
                    let form = event.form.as_deref()?;
                    if let Some(&(_, kind)) = forms.iter().find(|(seen, _)| *seen == form) {
                        return kind;
                    }
                    let kind = rules.forms.first(form);
                    if forms.len() < DISTINCT_MAX {
                        forms.push((form, kind));
                    }
                    kind
                })
                .flatten();
            Prepared {
                event,
                index,
                url_row,
                form_kind,
            }
        })
        .collect();
    (prepared, future)
}

/// Fills the memo rows of the evaluation's distinct URLs from [`Rules::urls`], matching a URL
/// the rules have not met yet against every URL pattern once.
fn known_urls(rules: &Rules, events: &[Prepared<'_>], memo: &[Cell<u8>]) {
    let stride = rules.memo_slots;
    if rules.url_patterns.is_empty() {
        return;
    }
    for p in events.iter().filter(|p| p.url_row == p.index) {
        let Some(url) = p.event.url.as_deref() else {
            continue;
        };
        let row = &memo[p.index * stride..(p.index + 1) * stride];
        let matched = || {
            // As `Predicate::eval` tests an attribute: trimmed, and a blank one matches nothing.
            let v = url.trim();
            let mut known = vec![0u8; stride];
            for (slot, re) in &rules.url_patterns {
                known[*slot] = 1 + u8::from(!v.is_empty() && re.is_match(v));
            }
            known.into_boxed_slice()
        };
        rules.urls.with(url, matched, |known| {
            for (cell, k) in row.iter().zip(known.iter()) {
                cell.set(*k);
            }
        });
    }
}

/// Cheap check first (hashes), so the usual case, all ids distinct, needs no string sort.
fn has_repeated_id(events: &[&Event]) -> bool {
    let hash = |e: &&Event| {
        e.id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let repeated = |hashes: &mut [u64]| {
        hashes.sort_unstable();
        hashes.windows(2).any(|w| w[0] == w[1])
    };
    // A contact's usual few dozen events are hashed on the stack.
    let mut stack = [0u64; 64];
    if events.len() <= stack.len() {
        let hashes = &mut stack[..events.len()];
        for (h, e) in hashes.iter_mut().zip(events) {
            *h = hash(e);
        }
        return repeated(hashes);
    }
    repeated(&mut events.iter().map(hash).collect::<Vec<u64>>())
}

fn content_cmp(a: &Event, b: &Event) -> std::cmp::Ordering {
    a.at.cmp(&b.at)
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.url.cmp(&b.url))
        .then_with(|| a.form.cmp(&b.form))
        .then_with(|| a.campaign.cmp(&b.campaign))
        .then_with(|| a.direction.map(|d| d.as_str()).cmp(&b.direction.map(|d| d.as_str())))
        .then_with(|| a.outcome.cmp(&b.outcome))
}

pub(super) fn derive<'p>(rules: &'p Rules, props: &'p HashMap<String, String>) -> Vec<Option<&'p str>> {
    rules
        .derives
        .iter()
        .map(|d| {
            let from = props.get(&d.from).map(|v| v.trim()).filter(|v| !v.is_empty());
            from.and_then(|v| d.values.first(v)).or_else(|| {
                d.fallback
                    .as_ref()
                    .and_then(|f| props.get(f))
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
            })
        })
        .collect()
}

fn is_fan(f: &super::rules::Fan, ctx: &Ctx<'_>) -> bool {
    let from = f.window.to_chrono().and_then(|w| ctx.now.checked_sub_signed(w));
    let start = from.map_or(0, |from| ctx.events.partition_point(|p| p.event.at < from));
    let count = ctx.events[start..]
        .iter()
        .filter(|p| f.counts.contains(&p.event.kind))
        .count();
    count > f.more_than && !f.buying_signal.eval(ctx)
}

/// No activity for `dormant.after` at `stage` (below `dormant.below`): counted from the last
/// event, or from the entry into `stage` when there is none. A contact with no stage yet (seen
/// for the first time) is judged on its events alone.
fn dormant(
    rules: &Rules,
    st: &ContactState,
    events: &[Prepared<'_>],
    now: DateTime<Utc>,
    stage: Option<Stage>,
) -> bool {
    let Some(d) = rules.dormant.as_ref() else {
        return false;
    };
    if stage.is_some_and(|s| s >= d.below) {
        return false;
    }
    let last = events
        .last()
        .map(|p| p.event.at)
        .or_else(|| stage.and_then(|s| st.stages.get(&s)).map(|e| e.at));
    match (last, d.after.to_chrono()) {
        (Some(last), Some(after)) => now - last >= after,
        _ => false,
    }
}

/// What the recycle rules say at `stage`: recycle now, a lost opportunity still waiting, or nothing.
enum Recycling {
    Due(String),
    Lost(DateTime<Utc>),
    No,
}

/// The recycles' checks (a lost opportunity past its delay or brought back by a signal of
/// `recycle_on`, a sales rejection with a reason) at `stage`.
#[allow(clippy::too_many_arguments)]
fn recycle_due(
    rules: &Rules,
    st: &ContactState,
    props: &HashMap<String, String>,
    ctx: &Ctx<'_>,
    fired: &[Signal],
    now: DateTime<Utc>,
    stage: Option<Stage>,
    notes: &mut Vec<String>,
) -> Recycling {
    let mut lost_since = None;
    if let Some(lost) = rules.lost.as_ref().filter(|_| stage >= Some(Stage::Sql)) {
        if lost.when.eval(ctx) {
            let since = lost
                .since
                .as_ref()
                .and_then(|p| props.get(p))
                .and_then(|v| parse_date(v))
                .or(st.status_since.filter(|_| st.status == Status::Lost))
                .unwrap_or(now);
            // `since` is a HubSpot value: one near the calendar's end is never due, not a panic.
            let due = lost.recycle_after.to_chrono().and_then(|d| since.checked_add_signed(d));
            if due.is_some_and(|d| now >= d) {
                return Recycling::Due(format!(
                    "opportunity lost on {}, recycled after {}",
                    since.format("%Y-%m-%d"),
                    lost.recycle_after
                ));
            }
            if let Some(back) = fired.iter().find(|f| lost.recycle_on.iter().any(|r| **r == *f.signal)) {
                return Recycling::Due(format!(
                    "opportunity lost on {}, came back: {} on {}",
                    since.format("%Y-%m-%d"),
                    back.signal,
                    back.at.format("%Y-%m-%d")
                ));
            }
            lost_since = Some(since);
        }
    }
    if let Some(rej) = rules.sales_rejection.as_ref() {
        let rejected = stage.is_some_and(|c| rej.applies_at.contains(&c))
            && props
                .get(&rej.property)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(&rej.value));
        if rejected {
            let reason = props
                .get(&rej.reason_property)
                .map(|r| r.trim())
                .filter(|r| !r.is_empty());
            match reason {
                Some(r) if rej.reasons.iter().any(|x| x.eq_ignore_ascii_case(r)) => {
                    return Recycling::Due(format!("sales rejected: {r}"));
                }
                Some(r) => note(
                    notes,
                    format!(
                        "sales rejection ignored: `{r}` is not a known reason ({})",
                        rej.reasons.join(", ")
                    ),
                ),
                None => note(
                    notes,
                    format!(
                        "sales rejection ignored: {} is empty; a rejection needs a reason",
                        rej.reason_property
                    ),
                ),
            }
        }
    }
    lost_since.map_or(Recycling::No, Recycling::Lost)
}

/// Adds a note once (a later round may find the same thing again).
fn note(notes: &mut Vec<String>, n: String) {
    if !notes.contains(&n) {
        notes.push(n);
    }
}

fn without(props: &HashMap<String, String>, consumed: &BTreeMap<String, String>) -> HashMap<String, String> {
    props
        .iter()
        .filter(|(k, _)| !consumed.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// HubSpot date properties: epoch milliseconds, RFC 3339, or a bare date (midnight UTC).
pub(crate) fn parse_date(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The reason written to HubSpot for these transitions: one clause per fact (the stages a
/// shortcut jumped over share one reason), at most 500 characters.
fn reason_text(transitions: &[Transition]) -> String {
    let mut clauses: Vec<&str> = Vec::with_capacity(transitions.len());
    for t in transitions {
        if !clauses.contains(&t.reason.as_str()) {
            clauses.push(&t.reason);
        }
    }
    let mut reason = clauses.join("; ");
    if reason.len() > 500 {
        let cut = (0..=497).rev().find(|i| reason.is_char_boundary(*i)).unwrap_or(0);
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// Property writes and the lifecycle move, limited to what differs from HubSpot's current values,
/// and whether the engagement score is among them. The engagement score is written in whole
/// points, and only when [`engagement_write_due`]: decay moves it every minute, and each write
/// would bump `lastmodifieddate`, fill the property's history and fire the portal's workflows.
#[allow(clippy::too_many_arguments)]
fn writes(
    rules: &Rules,
    snapshot: &Snapshot,
    st: &ContactState,
    fit: &Score,
    engagement: &Score,
    grade: &str,
    now: DateTime<Utc>,
    notes: &mut Vec<String>,
) -> (Vec<Action>, bool) {
    let out = rules.output();
    let current = |name: &str| snapshot.properties.get(name).map(|v| v.trim()).unwrap_or("");
    let mut props = BTreeMap::new();
    let mut want = |name: &str, value: &str| {
        if current(name) != value {
            props.insert(name.to_string(), value.to_string());
        }
    };
    want(&out.stage, st.stage.map_or("", |s| s.as_str()));
    want(&out.status, st.status.as_str());
    want(&out.fit_score, &fmt_num(fit.value));
    want(&out.grade, grade);
    if let Some(reason) = &st.last_reason {
        want(&out.reason, reason);
    }
    for p in st.consumed.keys() {
        want(p, "");
    }
    let score = fmt_num(engagement.value.round());
    let theirs = current(&out.engagement_score);
    let engagement_written = theirs != score
        && engagement_write_due(
            &rules.engagement_thresholds,
            theirs.parse().ok(),
            engagement.value,
            !props.is_empty(),
            st.engagement_written_at,
            now,
        );
    if engagement_written {
        props.insert(out.engagement_score.clone(), score);
    }
    if !props.is_empty() && current(&out.rules_version) != rules.stamp {
        props.insert(out.rules_version.clone(), rules.stamp.clone());
    }

    let mut actions = Vec::new();
    if !props.is_empty() {
        actions.push(Action::WriteHubSpot { properties: props });
    }
    if let Some(stage) = st.stage {
        let desired = rules.hubspot_value(stage);
        let theirs = current(&out.lifecycle_property);
        if !theirs.eq_ignore_ascii_case(desired) {
            match (theirs.is_empty(), rules.stage_for_hubspot(theirs)) {
                (true, _) => actions.push(Action::SetLifecycleStage { value: desired.to_string(), backward: false }),
                (false, Some(t)) => actions.push(Action::SetLifecycleStage {
                    value: desired.to_string(),
                    backward: Some(t) > rules.stage_for_hubspot(desired),
                }),
                (false, None) => notes.push(format!(
                    "HubSpot lifecycle stage left at `{theirs}` (not a stage leadsync maps); leadsync's stage is {stage}"
                )),
            }
        }
    }
    (actions, engagement_written)
}

/// Whether an engagement score that differs from HubSpot's (`theirs`, `None` when empty or not a
/// number) is written now: when HubSpot has none, when other properties are written anyway (a
/// stage, status, grade, fit or reason change: same call), when it crosses a threshold the rules
/// name (`ours` and `theirs` on either side), or when no decision wrote it yet this UTC day (so
/// the nightly rescore brings every decayed score up to date once a day).
fn engagement_write_due(
    thresholds: &[f64],
    theirs: Option<f64>,
    ours: f64,
    others_written: bool,
    last_written: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(theirs) = theirs else { return true };
    others_written
        || thresholds.iter().any(|t| (theirs >= *t) != (ours >= *t))
        || last_written.is_none_or(|at| at.date_naive() < now.date_naive())
}

/// A short line for people: the stage and the three biggest engagement contributions.
pub fn headline(d: &Decision) -> String {
    let mut top: Vec<_> = d.engagement.contributions.iter().filter(|c| c.counted > 0.0).collect();
    top.sort_by(|a, b| b.counted.total_cmp(&a.counted));
    let parts: Vec<_> = top
        .iter()
        .take(3)
        .map(|c| format!("{} +{}", c.rule, fmt_num(c.counted)))
        .collect();
    format!(
        "{} / {} · fit {} · engagement {} · {}{}",
        d.stage.map_or("none", |s| s.as_str()),
        d.status,
        fmt_num(d.fit.value),
        fmt_num(d.engagement.value),
        d.grade,
        if parts.is_empty() {
            String::new()
        } else {
            format!(" · {}", parts.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_repeated_event_id_is_found_on_the_stack_and_past_it() {
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 14, 0, 0).unwrap();
        let event = |id: String| Event {
            id,
            kind: EventKind::PageView,
            at,
            url: None,
            form: None,
            campaign: None,
            direction: None,
            outcome: None,
            owner: None,
        };
        for n in [2usize, 64, 65, 200] {
            let mut events: Vec<Event> = (0..n).map(|i| event(format!("ev-{i}"))).collect();
            let refs: Vec<&Event> = events.iter().collect();
            assert!(!has_repeated_id(&refs), "{n} distinct ids");
            events[n - 1].id = "ev-0".into();
            let refs: Vec<&Event> = events.iter().collect();
            assert!(has_repeated_id(&refs), "{n} ids, the last one repeated");
        }
    }

    #[test]
    fn a_kept_answer_is_computed_once_per_engagement_score() {
        let mut kept = Kept::new();
        let mut asked = 0;
        let mut ask = |kept: &mut Kept<bool>, engagement: f64| {
            kept.get(engagement, || {
                asked += 1;
                engagement >= 35.0
            })
        };
        assert!(ask(&mut kept, 40.0));
        assert!(ask(&mut kept, 40.0));
        assert!(!ask(&mut kept, 10.0), "a fan's damped score is asked again");
        assert!(ask(&mut kept, 40.0));
        assert_eq!(asked, 3);
    }

    #[test]
    fn a_decayed_engagement_score_is_written_only_when_it_matters() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 14, 0, 0).unwrap();
        let earlier_today = Some(Utc.with_ymd_and_hms(2026, 3, 10, 0, 5, 0).unwrap());
        let yesterday = Some(Utc.with_ymd_and_hms(2026, 3, 9, 23, 55, 0).unwrap());
        let thresholds = [20.0, 35.0];
        // (why, HubSpot's value, ours, other properties written, last written, due)
        let table = [
            (
                "decay alone, written earlier today",
                Some(40.0),
                39.4,
                false,
                earlier_today,
                false,
            ),
            (
                "decay alone, last written yesterday (nightly rescore)",
                Some(40.0),
                39.4,
                false,
                yesterday,
                true,
            ),
            (
                "decay alone, never written by this version",
                Some(40.0),
                39.4,
                false,
                None,
                true,
            ),
            ("HubSpot has no score", None, 39.4, false, earlier_today, true),
            (
                "a stage, status, grade or fit write goes anyway",
                Some(40.0),
                39.4,
                true,
                earlier_today,
                true,
            ),
            ("decays below a threshold", Some(35.0), 34.6, false, earlier_today, true),
            ("rises to a threshold", Some(34.0), 35.0, false, earlier_today, true),
            (
                "stays above every threshold",
                Some(50.0),
                36.0,
                false,
                earlier_today,
                false,
            ),
            (
                "stays between two thresholds",
                Some(30.0),
                21.0,
                false,
                earlier_today,
                false,
            ),
        ];
        for (why, theirs, ours, others, last, due) in table {
            assert_eq!(
                engagement_write_due(&thresholds, theirs, ours, others, last, now),
                due,
                "{why}"
            );
        }
    }
}
