//! HubSpot: everything leadsync knows about HubSpot's API lives here.
//!
//! The path of one call: an endpoint function (`contacts`, `engagements`, `properties`) builds
//! the request; `client` admits it against the daily reserve and waits for a slot (`limiter`),
//! adds a token (`auth`), sends it, and acts on `retry::decide`.

/// Analytics counters on the contact turned into dated events.
pub mod analytics;
/// Static tokens and OAuth refresh (single flight, refresh ahead, fatal BAD_REFRESH_TOKEN).
pub mod auth;
/// Form submissions, event analytics and email events, where the portal has them.
pub mod behaviour;
/// `HubSpotClient::call`: budgets, token, send, retry decision, statistics.
pub mod client;
/// Contacts: list, batch read and update, windowed search, lifecycle writes.
pub mod contacts;
/// Calls, emails, meetings, notes and tasks through associations v4 and batch reads.
pub mod engagements;
/// Paced general and search budgets, daily reserve.
pub mod limiter;
/// Owners, property definitions, and the properties leadsync writes (`leadsync setup`).
pub mod properties;
/// A full pull: contacts, engagements and companies at the fewest calls.
pub mod pull;
/// Retry decisions as data.
pub mod retry;
/// Windowed search past the 10,000-result cap.
pub mod search;
/// Webhook signatures v1, v2, v3.
pub mod signature;
/// Tasks for reps on contacts (the SLA ladder's first step), made once per key.
pub mod tasks;
/// HubSpot's JSON shapes and batch limits.
pub mod types;
