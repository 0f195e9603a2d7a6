//! leadsync keeps HubSpot (marketing's CRM) and Salesforce (sales' CRM) aligned by one lead
//! lifecycle: it reads contacts and their activity from HubSpot, decides each contact's stage,
//! status and scores with rules kept as data, writes the result back, and creates Salesforce
//! records once a lead is sales qualified.
//!
//! # Layout
//! - [`lifecycle`]: the pure rules engine: rules compiled from `mappings/lifecycle.toml`,
//!   `evaluate(rules, snapshot, now) -> Decision`, the buying signals a contact's new events fire
//!   (`signals`, and `evaluate_signalled`, which recycles a lost contact that shows one),
//!   explanations, rule authors' test cases.
//! - [`config`]: `leadsync.toml` layered with `LEADSYNC__SECTION__KEY` environment variables.
//! - [`diagnostics`]: errors that point at a file, line, column and field.
//! - [`defaults`]: the shipped rules and mapping compiled in, and the choice between them and files.
//! - [`logging`]: logs on stderr, text or JSON, other crates only from `warn` up.
//! - [`memory`]: glibc's allocator tuned at start (arenas capped, `mmap` threshold fixed), so a
//!   backfill's resident memory stays near what its heap holds.
//! - [`hubspot`]: HubSpot's API: OAuth, paced budgets, retry decisions, contacts, engagements,
//!   behaviour, windowed search, properties and `setup`, webhook signatures, tasks for reps.
//! - [`jitter`]: backoff jitter shared by both CRM clients.
//! - [`transport`]: transport failures (refused, reset, TLS, a cut-off body) as data, and `call`, the one
//!   call loop both CRM clients send through, each under its own `ApiPolicy` (budget, auth, judgement).
//! - [`report`]: the funnel, outbox, dead letters and review list, as text for people; the
//!   report of a period (`figures`, pure, over `Store::report_rows`) as table, JSON or CSV
//!   (`format`) or one HTML file (`html`) with inline SVG charts (`svg`, which the status page
//!   draws with too); `compare`, the period replayed under candidate rules beside the current
//!   ones, with what deploying them would change and cost (`compare_format` writes it); `plan`,
//!   the funnel worked back from revenue.
//! - [`salesforce`]: Salesforce's API: auth, the daily-allocation share, SOQL, error
//!   dispositions, owner routing (the mapping's rules over the SLA file's teams, traced), the
//!   mapping file, batched promotion, opportunity feedback, Tasks and Events as SLA touches,
//!   Tasks for a rep made once (`tasks`: buying-signal alerts).
//! - [`sandbox`]: a stateful fake HubSpot and Salesforce on loopback over a seeded synthetic
//!   portal, refusing what they refuse, counting every call (tests, benchmarks, `leadsync demo`).
//! - [`server`]: axum: webhook intake into the inbox, health, readiness, metrics, and the
//!   status page (`status`: `GET /`, `/status.json`, a bearer token off loopback).
//! - [`sla`]: the sales SLA's pure core: `mappings/sla.toml` (teams, calendars, policies, the
//!   breach ladder, marketing targets), business time, timers and their assessment.
//! - [`store`]: durable state (SQLite or PostgreSQL): cursors, contact state, engagement ledger,
//!   audit, outbox, dead letters, write ledger, webhook inbox, SLA timers, owner assignments
//!   with their routing traces, the jobs' last runs (`status`), the Salesforce context ledger.
//! - [`sync`]: the pipeline around the engine: pull (`cycle`, `backfill`, `inbox`, `behaviour`;
//!   IO only) → one pure batch decision (`decide::decide_batch`: removals, merges, restores and
//!   evaluations, with the SLA timers they start, as one `Plan`) → `Store::commit_plan` (one
//!   transaction) → the one outbox worker (`outbox`: `writeback`, `promotion`, `sla_step`: the SLA
//!   ladder's steps, `owner_alert`: a buying signal told to the owner as a Salesforce Task,
//!   `context`: the marketing context kept current on Salesforce records), run by the daemon and
//!   beside one-shot commands alike; `context` (which decisions queue the context, and its
//!   values, pure); `sla_sweep` (timers assessed with their touches, steps queued; `followup`,
//!   the sales follow-up they give, written to HubSpot); `schedule` runs the jobs; `portal`, the
//!   scope (span and metric label) each portal's work runs in, carried into the jobs' tasks.
//! - [`daemon`]: wiring: settings in, store, rules, clients out; `Daemon::run`, the server and
//!   workers that `leadsync run`, `leadsync demo` and the end-to-end tests all run.
//! - [`replica`]: several `leadsync run` on one PostgreSQL store: the portal's lease decides
//!   which one runs the jobs and workers (fenced writes); SQLite's lock file keeps it to one.
//! - [`demo`]: `leadsync demo`: the sandbox and the daemon in one process (`Stack`, also the
//!   tests' harness); `month`, a month of sales on the sandbox's clock (the sandbox's `desk`
//!   works, the daemon's jobs run once per step: `sync::schedule::run_jobs_at`).
//! - [`chaos`]: `leadsync bench --chaos`: the daemon under the sandbox's faults and `kill -9`,
//!   compared with a fault-free run.
//! - [`cli`]: the `leadsync` subcommands; `main.rs` only parses arguments and calls them.
//!
//! The data's path: webhook (`server`, into the inbox) or schedule (`sync::schedule`) → pull
//! from HubSpot (`hubspot`, `sync::cycle`, `sync::inbox`) → decide the batch
//! (`sync::decide::decide_batch`, calling `lifecycle::evaluate`) → `Store::commit_plan` with its
//! outbox (`store`) → the outbox worker (`sync::outbox`) writes back to HubSpot, promotes to
//! Salesforce and keeps promoted contacts' context current there (`salesforce`).

pub mod chaos;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod defaults;
pub mod demo;
pub mod diagnostics;
pub mod hubspot;
pub mod jitter;
pub mod lifecycle;
pub mod logging;
pub mod memory;
pub mod replica;
pub mod report;
pub mod salesforce;
pub mod sandbox;
pub mod server;
pub mod sla;
pub mod store;
pub mod sync;
pub mod transport;
