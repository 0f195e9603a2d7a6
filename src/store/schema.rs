//! The schema, as ordered migrations written once for both backends.
//!
//! The DDL is shared; only the auto-increment column differs (`{serial}` below). Times are
//! epoch milliseconds (`BIGINT`), so both backends compare and sort them the same way.

/// One schema step: applied once, in order, recorded in `leadsync_migrations`.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: r#"
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE contacts (
    contact_id TEXT PRIMARY KEY,
    stage TEXT,
    status TEXT NOT NULL,
    fit DOUBLE PRECISION NOT NULL,
    engagement DOUBLE PRECISION NOT NULL,
    grade TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    recycle_count BIGINT NOT NULL,
    owner_id TEXT,
    sf_account_id TEXT,
    sf_contact_id TEXT,
    sf_opportunity_id TEXT,
    company_id TEXT,
    properties TEXT NOT NULL,
    company TEXT NOT NULL,
    state TEXT NOT NULL,
    removed TEXT,
    merged_into TEXT,
    evaluated_at BIGINT NOT NULL
);
CREATE INDEX contacts_stage ON contacts (stage, status);
CREATE TABLE events (
    contact_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (contact_id, event_id)
);
CREATE TABLE audit (
    id {serial},
    contact_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    change TEXT NOT NULL,
    reason TEXT NOT NULL,
    rules TEXT NOT NULL
);
CREATE INDEX audit_contact ON audit (contact_id, id);
CREATE TABLE outbox (
    id {serial},
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (kind, state, next_at);
CREATE TABLE write_ledger (
    contact_id TEXT NOT NULL,
    property TEXT NOT NULL,
    value TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (contact_id, property)
);
CREATE TABLE inbox (
    id {serial},
    dedupe_key TEXT NOT NULL UNIQUE,
    contact_id TEXT NOT NULL,
    subscription TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX inbox_pending ON inbox (processed_at, id);
"#,
    },
    Migration {
        version: 2,
        name: "inbox retries",
        // An event whose processing fails waits (`next_at`) and is tried again, never dropped.
        sql: r#"
ALTER TABLE inbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN next_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN last_error TEXT
"#,
    },
    Migration {
        version: 3,
        name: "write probe",
        // `/readyz` commits one row here to prove the store can write, not only read.
        sql: r#"
CREATE TABLE health (
    id BIGINT PRIMARY KEY,
    checked_at BIGINT NOT NULL
)
"#,
    },
    Migration {
        version: 4,
        name: "staged behaviour",
        // A backfill's form submissions read before their contacts.
        sql: r#"
CREATE TABLE staged (
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (key, event_id)
)
"#,
    },
    Migration {
        version: 5,
        name: "dead inbox events",
        // An acknowledged event that cannot be processed is kept here with its reason, shown by
        // `leadsync status`, until `leadsync retry --kind inbox` puts it back: never dropped.
        sql: r#"
ALTER TABLE inbox ADD COLUMN dead_at BIGINT
"#,
    },
    Migration {
        version: 6,
        name: "refresh tokens",
        // Rotated refresh tokens are credentials, not sync positions: their own table, with the
        // hash of the configured token each descends from. Rows kept in `cursors` move here.
        sql: r#"
CREATE TABLE refresh_tokens (
    system TEXT PRIMARY KEY,
    token TEXT,
    configured_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO refresh_tokens (system, token, configured_hash, updated_at)
SELECT 'salesforce', t.value, h.value, h.updated_at FROM cursors h
LEFT JOIN cursors t ON t.name = 'salesforce.refresh_token'
WHERE h.name = 'salesforce.refresh_token.configured';
DELETE FROM cursors WHERE name IN ('salesforce.refresh_token', 'salesforce.refresh_token.configured')
"#,
    },
    Migration {
        version: 7,
        name: "sla timers",
        // One row per SLA timer (contact, policy, start); the sweep reads the partial index of
        // the timers that still have a next check, so finished ones cost it nothing. Ladder
        // steps are outbox items (kind `sla_step`), keyed per timer and step.
        sql: r#"
CREATE TABLE sla_timers (
    policy_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    first_touch_at BIGINT,
    attempts BIGINT NOT NULL,
    met_at BIGINT,
    breached_at BIGINT,
    steps_done TEXT NOT NULL,
    owner_id TEXT,
    team_id TEXT,
    next_check_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (contact_id, policy_id, started_at)
);
CREATE INDEX sla_timers_next_check ON sla_timers (next_check_at) WHERE next_check_at IS NOT NULL
"#,
    },
    Migration {
        version: 8,
        name: "sla touches",
        // Touches read from Salesforce (Tasks and Events), one row per contact and activity:
        // the watermark moves past them, so they are kept here for every later assessment.
        // HubSpot's touches are the engagement ledger's events.
        sql: r#"
CREATE TABLE sla_touches (
    contact_id TEXT NOT NULL,
    touch_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (contact_id, touch_id)
)
"#,
    },
    Migration {
        version: 9,
        name: "routing assignments",
        // Every owner chosen, with its trace (candidates, why each was dropped, the rule that
        // won) as JSON: what `leadsync explain --contact` shows as "why this rep".
        sql: r#"
CREATE TABLE assignments (
    id {serial},
    contact_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    owner_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    trace TEXT NOT NULL
);
CREATE INDEX assignments_contact ON assignments (contact_id, id)
"#,
    },
    Migration {
        version: 10,
        name: "own writes",
        // Beside the write ledger: the `updatedAt` HubSpot answered to leadsync's last write of
        // each contact. A search result whose `lastmodifieddate` is still that one changed only
        // by our write, and the cycle does not read it again.
        sql: r#"
CREATE TABLE write_marks (
    contact_id TEXT PRIMARY KEY,
    updated_at BIGINT NOT NULL
)
"#,
    },
    Migration {
        version: 11,
        name: "open sla breaches",
        // The status page lists the breached timers still without a first touch, most overdue
        // first: a partial index keeps that a walk over the few breached ones, not a scan of
        // every timer.
        sql: r#"
CREATE INDEX sla_timers_open_breaches ON sla_timers (due_at, contact_id) WHERE breached_at IS NOT NULL AND first_touch_at IS NULL
"#,
    },
    Migration {
        version: 12,
        name: "salesforce context ledger",
        // What leadsync last wrote to each Salesforce record's context fields (the mapping's
        // `[[contact.context]]`, `[[opportunity.context]]`): only a value that differs goes out
        // again, and the opportunity feedback read knows which of a record's fields are ours.
        sql: r#"
CREATE TABLE salesforce_ledger (
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    value TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (record_id, field)
)
"#,
    },
    Migration {
        version: 15,
        name: "funnel counts",
        // The status page counts the contacts per stage and status on every load. Through
        // `contacts_stage` SQLite read every row to test `removed` (the rows carry the
        // properties); this index holds the three columns the count needs, so the count is read
        // from the index alone (EXPLAIN QUERY PLAN: `USING COVERING INDEX contacts_funnel`).
        sql: r#"
CREATE INDEX contacts_funnel ON contacts (stage, status, removed) WHERE removed IS NULL
"#,
    },
    Migration {
        version: 16,
        name: "leases",
        // Which replica does a portal's work: one row per portal, its holder, a generation that
        // grows at every takeover (the fence of the holder's writes) and its expiry.
        sql: r#"
CREATE TABLE leases (
    portal TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    generation BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL
)
"#,
    },
    Migration {
        version: 18,
        name: "inbox claims",
        // An inbox pass claims the events it takes (`claimed_until`), so two passes on one store,
        // in two replicas, never take the same event; a claim that runs out (its pass stopped)
        // makes the event due again, and a worker's start frees every claim a crash left.
        sql: r#"
ALTER TABLE inbox ADD COLUMN claimed_until BIGINT
"#,
    },
    Migration {
        version: 19,
        name: "outbox by contact",
        // A claim takes every due item of the contacts it picks: found by contact here, not by
        // walking every due item of `outbox_due` once more (see `Store::claim_where`).
        sql: r#"
CREATE INDEX outbox_contact ON outbox (contact_id, kind, state)
"#,
    },
];
