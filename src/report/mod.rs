//! What people read: the funnel, the outbox, dead letters, dead inbox events and the review
//! list; and what `leadsync retry` put back.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::store::{OutboxKind, OutboxState, Store, StoreError};

/// Stages in funnel order, for display.
const ORDER: [&str; 8] = [
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
