//! What people read: the funnel, the outbox, dead letters, dead inbox events and the review
//! list; what `leadsync retry` put back; the report of a period (`figures`, written by
//! `format`), the same period under candidate rules beside the current ones (`compare`, written
//! by `compare_format`) and the plan worked back from revenue (`plan`).

pub mod compare;
pub mod compare_format;
pub mod figures;
pub mod format;
pub mod html;
pub mod plan;
pub mod svg;

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::store::{OutboxKind, OutboxState, Store, StoreError};

/// Stages in funnel order, for display.
pub(crate) const ORDER: [&str; 8] = [
    "none",
    "subscriber",
    "lead",
    "mql",
    "sal",
    "sql",
    "opportunity",
    "customer",
];

/// The funnel as a table: contacts per stage, split by side status.
pub async fn funnel(store: &Store) -> Result<String, StoreError> {
    let rows = store.funnel().await?;
    let mut out = String::new();
    let _ = writeln!(out, "{:<12} {:>8}  by status", "stage", "contacts");
    for stage in ORDER {
        let at: Vec<_> = rows.iter().filter(|r| r.stage == stage).collect();
        if at.is_empty() {
            continue;
        }
        let total: u64 = at.iter().map(|r| r.count).sum();
        let split: Vec<String> = at.iter().map(|r| format!("{} {}", r.status, r.count)).collect();
        let _ = writeln!(out, "{:<12} {:>8}  {}", stage, total, split.join(", "));
    }
    Ok(out)
}

/// `leadsync status --contact ID`: the contact's stage and status, then every change leadsync
/// made to it (the audit log), oldest first, each with its reason and the rules that decided.
pub async fn contact_trail(store: &Store, id: &crate::lifecycle::HubSpotId) -> Result<String, StoreError> {
    let mut out = String::new();
    let rows = store.contacts(std::slice::from_ref(id)).await?;
    let Some(row) = rows.get(id) else {
        let _ = writeln!(out, "contact {id}: not in the store (never pulled from HubSpot)");
        return Ok(out);
    };
    let stage = row.state.stage.map_or("none", |s| s.as_str());
    let _ = write!(out, "contact {id}: {stage}, {}", row.state.status.as_str());
    if let Some(why) = &row.removed {
        let _ = write!(out, " (removed: {why})");
    }
    let _ = writeln!(out, "; evaluated {}", row.evaluated_at.to_rfc3339());
    let trail = store.audit(id).await?;
    let _ = writeln!(out, "{} change(s), oldest first:", trail.len());
    for a in trail {
        let _ = writeln!(
            out,
            "  {}  {}  {}  [{}]",
            a.at.to_rfc3339(),
            a.change,
            a.reason,
            a.rules
        );
    }
    Ok(out)
}

/// `leadsync status`.
pub async fn status(store: &Store) -> Result<String, StoreError> {
    let mut out = funnel(store).await?;
    let _ = writeln!(out, "\noutbox");
    for (kind, state, n) in store.outbox_counts().await? {
        let _ = writeln!(out, "  {kind:<14} {state:<8} {n}");
    }
    for (kind, state, title) in [
        (OutboxKind::Promote, OutboxState::Review, "review list (needs a person)"),
        (OutboxKind::Promote, OutboxState::Dead, "dead letters: promotions"),
        (
            OutboxKind::HubSpotWrite,
            OutboxState::Dead,
            "dead letters: HubSpot writes",
        ),
    ] {
        let items = store.outbox_in(kind, state).await?;
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for it in items {
            let _ = writeln!(
                out,
                "  item {} · contact {} · {} attempt(s) · {}",
                it.id,
                it.contact_id,
                it.attempts,
                it.last_error.as_deref().unwrap_or("")
            );
        }
    }
    let dead = store.inbox_dead_list().await?;
    if !dead.is_empty() {
        let _ = writeln!(
            out,
            "\ndead inbox events (cannot be processed; `leadsync retry --kind inbox` once fixed)"
        );
        for d in dead {
            let _ = writeln!(
                out,
                "  event {} · {} · contact {} · {}",
                d.id, d.subscription, d.contact_id, d.reason
            );
        }
    }
    if let Some(hold) = store.cursor(crate::sync::outbox::promotion::HOLD).await? {
        let _ = writeln!(out, "\npromotions wait: {hold}");
    }
    let (failing, error) = store.inbox_failing().await?;
    if failing > 0 {
        let _ = writeln!(
            out,
            "\ninbox: {failing} event(s) failed and wait for another try (last error: {})",
            error.as_deref().unwrap_or("")
        );
    }
    let (depth, oldest) = store.inbox_depth().await?;
    let total = store.inbox_total().await?;
    let _ = writeln!(
        out,
        "\ninbox: {depth} event(s) waiting{}; {total} kept in all (processed ones are pruned after {} days)",
        oldest.map_or(String::new(), |t| format!(", oldest received {}", t.to_rfc3339())),
        store.inbox_retention().num_days()
    );
    Ok(out)
}

/// `leadsync report`: the figures of `[from, to)` from the store, split by `by`, in `format`.
pub async fn report(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: Option<figures::GroupBy>,
    targets: &[crate::sla::policy::MarketingTarget],
    format: format::ReportFormat,
) -> Result<String, figures::ReportError> {
    let rows = store.report_rows(to).await?;
    let report = figures::compute(&rows, from, to, by, targets)?;
    Ok(format::render(&report, format))
}

/// `leadsync report --compare-rules NEW.toml`: the period replayed from the store under the
/// current rules and the candidate, side by side, with what deploying the candidate at `now`
/// would change and cost. Reads the store only: no HubSpot or Salesforce call.
#[allow(clippy::too_many_arguments)]
pub async fn compare_rules(
    store: &Store,
    current: &crate::lifecycle::Rules,
    candidate: &crate::lifecycle::Rules,
    sla: &crate::sla::SlaFile,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: Option<figures::GroupBy>,
    now: DateTime<Utc>,
) -> Result<compare::Comparison, figures::ReportError> {
    if from >= to {
        return Err(figures::ReportError::EmptyPeriod { from, to });
    }
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut deploy = compare::Deploy::default();
    let mut cursor: Option<String> = None;
    let empty = Vec::new();
    loop {
        let rows = store.contact_page(cursor.as_deref(), 1_000).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(last.contact_id.as_str().to_string());
        // Removed and merged contacts are not evaluated again (as `backfill --rescore`).
        let rows: Vec<_> = rows.into_iter().filter(|r| r.removed.is_none()).collect();
        let ids: Vec<_> = rows.iter().map(|r| r.contact_id.clone()).collect();
        let ledger = store.events(&ids).await?;
        for row in &rows {
            let events = ledger.get(&row.contact_id).unwrap_or(&empty);
            before.extend(compare::replay(current, row, events, from, to));
            after.extend(compare::replay(candidate, row, events, from, to));
            deploy.add(current, candidate, sla, row, events, now);
        }
    }
    let timers = store.report_timers(to).await?;
    let facts = store.all_contact_facts(&timers).await?;
    compare::compare(
        compare::Inputs {
            current,
            candidate,
            facts,
            timers,
            targets: &sla.marketing,
        },
        before,
        after,
        deploy,
        from,
        to,
        by,
        now,
    )
}

/// Rates measured from the store for `leadsync plan`: each consecutive stage pair over
/// `[from, to)` with its sample size; pairs measured on fewer than `min_sample` contacts are
/// refused, with the reason, and left out.
pub async fn measured_rates(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    min_sample: u64,
) -> Result<(Vec<plan::Rate>, Vec<String>), figures::ReportError> {
    let rows = store.report_rows(to).await?;
    let mut rates = Vec::new();
    let mut refused = Vec::new();
    // Worked back from customer: once a rate is refused, the ones below it cannot be used.
    for (a, b, num, of) in figures::measured_rates(&rows, from, to)?.into_iter().rev() {
        if !refused.is_empty() || of < min_sample || num == 0 {
            refused.push(format!(
                "{}-{} measured on {of} contact(s) ({num} converted); the minimum is {min_sample} contacts and one conversion",
                a.as_str(),
                b.as_str()
            ));
            continue;
        }
        rates.push(plan::Rate {
            from: a,
            to: b,
            rate: num as f64 / of as f64,
            sample: Some(of),
        });
    }
    Ok((rates, refused))
}

/// Entries per stage over `[from, to)`: what the last full period delivered, beside a plan.
pub async fn delivered(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(crate::lifecycle::Stage, u64)>, figures::ReportError> {
    figures::delivered(&store.report_rows(to).await?, from, to)
}

/// What `leadsync retry` puts back in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryKind {
    /// Dead Salesforce promotions.
    Promote,
    /// Dead HubSpot write-backs.
    Writeback,
    /// Dead inbox events.
    Inbox,
}

/// `leadsync retry`: puts dead letters and dead inbox events back in their queues (one kind or
/// all, one id or all), due at `now`, and says what it put back; with `dry_run`, what it would.
pub async fn retry(
    store: &Store,
    kind: Option<RetryKind>,
    id: Option<i64>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let kinds = match kind {
        Some(k) => vec![k],
        None => vec![RetryKind::Promote, RetryKind::Writeback, RetryKind::Inbox],
    };
    let verb = if dry_run { "would requeue" } else { "requeued" };
    let mut out = String::new();
    let mut n = 0;
    for k in kinds {
        let lines: Vec<String> = match k {
            RetryKind::Promote | RetryKind::Writeback => {
                let outbox = if k == RetryKind::Promote {
                    OutboxKind::Promote
                } else {
                    OutboxKind::HubSpotWrite
                };
                let items = if dry_run {
                    let mut all = store.outbox_in(outbox, OutboxState::Dead).await?;
                    all.retain(|it| id.is_none_or(|i| it.id == i));
                    all
                } else {
                    store.requeue(outbox, OutboxState::Dead, id, now).await?
                };
                items
                    .iter()
                    .map(|it| {
                        format!(
                            "{verb} {} item {} · contact {} · was: {}",
                            outbox.as_str(),
                            it.id,
                            it.contact_id,
                            it.last_error.as_deref().unwrap_or("")
                        )
                    })
                    .collect()
            }
            RetryKind::Inbox => {
                let events = if dry_run {
                    let mut all = store.inbox_dead_list().await?;
                    all.retain(|d| id.is_none_or(|i| d.id == i));
                    all
                } else {
                    store.inbox_requeue(id, now).await?
                };
                events
                    .iter()
                    .map(|d| {
                        format!(
                            "{verb} inbox event {} · {} · contact {} · was: {}",
                            d.id, d.subscription, d.contact_id, d.reason
                        )
                    })
                    .collect()
            }
        };
        n += lines.len();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    let _ = writeln!(out, "{n} {}", if dry_run { "would be requeued" } else { "requeued" });
    Ok(out)
}

/// A contact's SLA timers, oldest first, as `leadsync explain --contact` prints them: policy,
/// owner, started, due, first touch, attempts, state, the ladder's steps done and the next check.
pub async fn sla_timers(store: &Store, sla: &crate::sla::SlaFile, contact: &str) -> Result<String, StoreError> {
    let timers = store.sla_timers(contact).await?;
    let mut out = String::new();
    if timers.is_empty() {
        let _ = writeln!(out, "SLA timers of contact {contact}: none");
        return Ok(out);
    }
    let _ = writeln!(out, "SLA timers of contact {contact}:");
    let t = |d: DateTime<Utc>| d.format("%Y-%m-%d %H:%M UTC").to_string();
    for timer in &timers {
        let r = &timer.record;
        let state = match (r.met_at, r.breached_at, timer.next_check_at) {
            (Some(m), _, _) => format!("met {}", t(m)),
            (_, Some(b), _) => format!("breached {}", t(b)),
            (_, _, Some(_)) => "running".to_string(),
            _ => "stopped".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} (team {}, owner {}): started {}, first touch due {}, {state}",
            r.policy,
            timer.team.as_deref().unwrap_or("-"),
            timer.owner.as_deref().unwrap_or("none"),
            t(r.started_at),
            t(r.due_at)
        );
        let _ = writeln!(
            out,
            "    first touch: {}; attempts: {}",
            r.first_touch_at.map_or_else(|| "none yet".to_string(), t),
            r.attempts
        );
        let ladder = sla.policy(&r.policy).map(|p| &p.ladder);
        let steps: Vec<String> = r
            .steps_done
            .iter()
            .map(|i| match ladder.and_then(|l| l.get(*i)) {
                Some(step) => format!("{} ({})", i + 1, step.action),
                None => format!("{}", i + 1),
            })
            .collect();
        let _ = writeln!(
            out,
            "    ladder steps done: {}; next check: {}",
            if steps.is_empty() {
                "none".to_string()
            } else {
                steps.join(", ")
            },
            timer.next_check_at.map_or_else(|| "none".to_string(), t)
        );
    }
    Ok(out)
}

/// `leadsync explain --contact`: what the store holds of one contact, and why its owner ("why
/// this rep": each assignment's trace). `None` when the contact is not stored.
pub async fn contact(store: &Store, id: &crate::lifecycle::HubSpotId) -> Result<Option<String>, StoreError> {
    let rows = store.contacts(std::slice::from_ref(id)).await?;
    let Some(row) = rows.get(id) else {
        return Ok(None);
    };
    let mut out = String::new();
    let stage = row.state.stage.map_or("none", |s| s.as_str());
    let _ = writeln!(
        out,
        "contact {id}: stage {stage}, status {}, fit {:.0}, engagement {:.0}, grade {}{}",
        row.state.status.as_str(),
        row.fit,
        row.engagement,
        row.grade,
        row.removed
            .as_deref()
            .map_or_else(String::new, |r| format!(" ({r} in HubSpot)"))
    );
    let assignments = store.assignments(id).await?;
    match assignments.last() {
        None => {
            let _ = writeln!(out, "owner: none assigned by leadsync yet");
        }
        Some(a) => {
            let _ = writeln!(out, "owner: {} since {}", a.owner, a.at.to_rfc3339());
        }
    }
    for a in assignments.iter().rev() {
        let _ = writeln!(out, "\nwhy this rep ({}, {}):", a.owner, a.at.to_rfc3339());
        let _ = writeln!(out, "{}", a.trace);
    }
    Ok(Some(out))
}
