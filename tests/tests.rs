//! All integration tests, in one binary (one link, one run).

/// Test fixtures shared by the daemon-level modules: stores on both backends.
#[macro_use]
mod support;
/// The daemon at rest: idle cycles after a backfill read and write nothing; own writes not re-read.
mod at_rest;
/// Form submissions (and event streams) reach the engine in the backfill, the cycle and webhooks.
mod behaviour;
/// The status page and the HTML report in headless chromium, over a simulated month.
mod browser;
/// The chaos suite: each injected fault, then the daemon under all of them and `kill -9`, on both stores.
mod chaos;
/// README sentences that had no test: recovery, restore, feedback, overlap, status, locks, metrics.
mod claims;
/// The `leadsync` binary: check, explain, test-rules, exit codes.
mod cli;
/// Snapshot builders and the shipped rules, shared by the modules below.
mod common;
/// `leadsync report --compare-rules`: a candidate rules file replayed over a hand-built store beside the current rules.
mod compare_rules;
/// Marketing context kept current in Salesforce, through the running daemon on both stores:
/// one cycle, sales' fields untouched, idle cycles silent, no feedback loop.
mod context;
/// The daemon against wiremock CRMs: webhook to SQL to Salesforce, refresh-token rotation kept.
mod daemon;
/// The daemon run whole (`Daemon::run`) against the sandbox on both stores: cycles, backfill killed and resumed, webhooks, crashes, the stop.
mod e2e;
/// The lifecycle engine against the shipped default rules: one test per rule of DOMAIN.md.
mod engine;
/// The HubSpot client against wiremock: one test per failure mode, budgets under load.
mod hubspot;
/// A month of sales on the sandbox's clock, read back by the daemon's jobs: deterministic, every stage.
mod month;
/// HubSpot owners on the promotion path against the sandbox: routing by owner, read once an hour.
mod owners;
/// Many portals in one deployment (`[[portals]]`): the configuration, webhooks routed by `portalId`, one portal's 429s not slowing another.
mod portals;
/// Every parser at the edge under arbitrary and mutated input: no panic, every error located.
mod properties;
/// Deletions and merges between two incremental cycles, without webhooks; a corrupt cursor.
mod removals;
/// Several replicas on one store: the lease, its fence, three `leadsync run` on PostgreSQL with one `kill -9`'d, SQLite's refusal.
mod replicas;
/// `leadsync report` and `leadsync plan` on a hand-built audit log, on both stores, and their CLI.
mod report;
/// Routing on the promotion path against the sandbox: caps, absences, fallback, one rep per
/// company, route once, the stored trace and `explain --contact`, the rotation across a restart.
mod routing;
/// Rules files with mistakes: every problem reported with its line and column.
mod rules_file;
/// The Salesforce client against wiremock: auth flows, share, retries, promotion, feedback.
mod salesforce;
/// The sandbox: each refusal HubSpot and Salesforce make, determinism, the client against it.
mod sandbox;
/// The webhook server: signatures, refusals with their statuses, the inbox, health and metrics.
mod server;
/// Both teams see what the other knows: the sales follow-up in HubSpot.
mod signals;
/// The SLA ladder under `leadsync run`'s own schedule against the sandbox, across a restart.
mod sla_ladder;
/// SLA timers in the store on both backends: one row per timer, ladder steps once, the sweep's index.
mod sla_store;
/// The sales SLA wired in: timers started by decisions, the sweep, the ladder's steps carried out once.
mod sla_wire;
/// Corrupt state and lost input as named errors: transport, inbox, checkpoint, outbox, `retry`.
mod state_errors;
/// The status page (`GET /`, `/status.json`) and the HTML report: figures equal to the store's, escaping, the bearer token.
mod status_page;
/// The store on SQLite and PostgreSQL: commits, outbox, inbox, ledger, cursors.
mod store;
