//! What people read: the funnel, the outbox, dead letters and the review list.

use std::fmt::Write;

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
                "  contact {} · {} attempt(s) · {}",
                it.contact_id,
                it.attempts,
                it.last_error.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(hold) = store.cursor(crate::sync::promote::HOLD).await? {
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
    let _ = writeln!(
        out,
        "\ninbox: {depth} event(s) waiting{}",
        oldest.map_or(String::new(), |t| format!(", oldest received {}", t.to_rfc3339()))
    );
    Ok(out)
}
