//! The sales SLA's pure core: the policy file (`mappings/sla.toml`), business time in each
//! team's calendar, one timer per policy and contact with its assessment, and the breach
//! ladder's next steps as data. No IO: time and every input are passed in, decisions come out.
//!
//! Layout:
//! - `raw` → `compile` → `policy`: the file as written, its checks (file:line:column), the checked form:
//!   teams, policies per entry stage and path, what counts as a touch, the ladder, marketing targets.
//! - `calendar`: business-time arithmetic in an IANA zone, exact over daylight saving.
//! - `people`: a team as the router sees it (reps with caps and availability now).
//! - `timer`: the stored record and `assess(policy, team, record, touches, owner, now)`.

pub mod calendar;
mod compile;
pub mod people;
pub mod policy;
mod raw;
#[cfg(test)]
mod tests;
pub mod timer;

pub use calendar::{Calendar, Clock};
pub use policy::{Availability, Policy, SlaFile, StepAction, Team};
pub use timer::{Assessment, Breach, SlaRecord, State, Touch, assess};
