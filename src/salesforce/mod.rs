//! Salesforce: everything leadsync knows about Salesforce's API lives here.

/// Tasks and Events on promoted records since a watermark, as SLA touches.
pub mod activities;
/// Credentials: JWT bearer, refresh token with rotation, client credentials; single flight.
pub mod auth;
/// The one call path: token, share of the daily allocation, `Sforce-Limit-Info`, retries, stats.
pub mod client;
/// `check --online`: the mapping compared with the org's describe results.
pub mod describe;
/// Per-record outcomes of sObject Collections calls, classified.
pub mod errors;
/// The way back: opportunities changed since a watermark, as typed changes.
pub mod feedback;
/// `Sforce-Limit-Info` and leadsync's share of the org's daily allocation.
pub mod limits;
/// What already exists for a batch: contacts, accounts, opportunities in one composite call.
pub mod lookup;
/// `mappings/salesforce.toml`: raw file, compiled mapping, transforms, templates.
pub mod mapping;
/// The mapping file as written, and its compiler (all problems at once).
mod mapping_file;
/// Promotion's pure half: links, writes and owners decided from the lookup; refusals.
mod plan;
/// Batched promotion to Account, Contact, Opportunity and contact role, exactly once.
pub mod promote;
/// The REST endpoints used: query, composite queries, collections upsert and create, describe.
pub mod rest;
/// Retry decisions as data: reauthenticate, pause, back off, fail.
pub mod retry;
/// Owner assignment: kept owner, account, company, HubSpot owner, territory, weighted round
/// robin, fallback; caps and absences from the SLA teams; a trace of why.
pub mod routing;
/// SOQL literals, batched lookups, company domains.
pub mod soql;
/// Tasks for a rep (buying-signal alerts), each made once: looked up by key, then created.
pub mod tasks;
