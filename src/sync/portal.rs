//! The portal a task works for, in a deployment of several (`[[portals]]`): its jobs' log lines
//! carry it in a `portal` span, and the pipeline's own counters (evaluations, transitions,
//! promotions, lease takeovers, dead letters, fenced writes, inbox lag) are labelled
//! `portal="ID"` with it, as the inbox, outbox, API and webhook-intake series are. A
//! single-portal file has no such label, as before.
//!
//! The daemon runs each portal's work inside [`PortalScope::run`]; the scheduler carries the
//! scope into the tasks it spawns (each cron job's run, the outbox worker), which neither a
//! span entered by the portal's task nor a task-local reaches on its own.

use std::future::Future;
use std::sync::Arc;

use tracing::{Instrument, Span};

tokio::task_local! {
    static CURRENT: PortalScope;
}

/// One portal's label and span, or none (a single portal).
#[derive(Clone, Debug)]
pub struct PortalScope {
    label: Option<Arc<str>>,
    span: Span,
}

impl PortalScope {
    /// The scope of the portal labelled `label` (its HubSpot portal id), with a new `portal`
    /// span; `None` for a deployment of one portal: no label, no span.
    pub fn new(label: Option<&str>) -> PortalScope {
        match label {
            Some(l) => PortalScope {
                label: Some(l.into()),
                span: tracing::info_span!("portal", portal = %l),
            },
            None => PortalScope {
                label: None,
                span: Span::none(),
            },
        }
    }

    /// The scope the current task runs in; none outside a portal's work.
    pub fn current() -> PortalScope {
        CURRENT
            .try_with(Clone::clone)
            .unwrap_or_else(|_| PortalScope::new(None))
    }

    /// The portal's label, when there is one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// `work` inside this scope: its log lines in the portal's span, its counters labelled.
    /// A task `work` spawns is outside it unless spawned through `run` again.
    pub fn run<F: Future>(&self, work: F) -> impl Future<Output = F::Output> + use<F> {
        CURRENT.scope(self.clone(), work.instrument(self.span.clone()))
    }
}

/// The labels of a pipeline counter recorded by the current task: `portal="ID"` inside a
/// portal's scope, nothing otherwise.
pub fn metric_labels() -> Vec<metrics::Label> {
    CURRENT
        .try_with(|s| s.label.clone())
        .ok()
        .flatten()
        .map(|l| metrics::Label::new("portal", l.to_string()))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_portal_s_scope_labels_its_counters_and_reaches_only_what_runs_in_it() {
        assert!(metric_labels().is_empty(), "outside every portal");
        let scope = PortalScope::new(Some("42"));
        let (inside, carried, spawned) = scope
            .run(async {
                let carried = tokio::spawn(PortalScope::current().run(async { metric_labels() }));
                let spawned = tokio::spawn(async { metric_labels() });
                (metric_labels(), carried.await.unwrap(), spawned.await.unwrap())
            })
            .await;
        let want = vec![metrics::Label::new("portal", "42")];
        assert_eq!(inside, want);
        assert_eq!(carried, want, "a task spawned through the scope keeps it");
        assert!(
            spawned.is_empty(),
            "a bare spawn leaves it: the scheduler must carry it"
        );
        assert!(
            PortalScope::new(None).run(async { metric_labels() }).await.is_empty(),
            "one portal: no label"
        );
        assert_eq!(
            scope
                .run(async { PortalScope::current().label().map(str::to_string) })
                .await,
            Some("42".into())
        );
    }
}
