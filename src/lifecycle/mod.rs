//! The lifecycle and scoring engine: rules compiled from `mappings/lifecycle.toml`, and a pure
//! `evaluate(rules, snapshot, now) -> Decision`.
//!
//! Layout:
//! - `model`: stages, side statuses, event kinds, rule durations.
//! - `snapshot`: the engine's input (properties, events, stored state), parsed at the edge.
//! - `raw` → `compile` → `rules`: the rules file as written, its checks, the checked form.
//! - `predicate`: compiled conditions and their evaluation.
//! - `scoring`: fit, engagement (decay, caps), grade.
//! - `engine`: `evaluate`, the one entry point (`evaluate_signalled` when signals fired).
//! - `signals`: which buying signals (`[[signals]]`) a contact's new events fire, pure.
//! - `decision`: what `evaluate` returns.
//! - `explain`: decisions in words for revops people.
//! - `cases`: rule authors' own test cases (`leadsync test-rules`).

pub mod cases;
mod compile;
pub mod decision;
mod engine;
pub mod explain;
#[cfg(test)]
mod identity;
pub mod model;
mod predicate;
mod raw;
pub mod rules;
mod scoring;
pub mod signals;
pub mod snapshot;

pub use decision::{Action, Change, Decision, Transition};
pub use engine::{evaluate, evaluate_signalled, headline};
pub use model::{EventKind, Stage, Status};
pub use rules::Rules;
pub use signals::{Signal, signals};
pub use snapshot::{ContactState, Event, HubSpotId, Snapshot};
