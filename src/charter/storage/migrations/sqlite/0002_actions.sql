-- Charter schema, version 2 (SQLite): tool-call actions, the approval queue, circuit breakers.

-- One row per tool call Charter allowed or sent for review (denied calls hold nothing and are
-- not stored). JSON columns hold canonical JSON text.
CREATE TABLE actions (
    id                  TEXT    PRIMARY KEY,
    approval_id         TEXT    UNIQUE,
    tool                TEXT    NOT NULL,
    arguments_json      TEXT    NOT NULL,
    principal_id        TEXT    NOT NULL,
    subject             TEXT,
    conversation_id     TEXT,
    excerpt             TEXT    NOT NULL DEFAULT '',
    status              TEXT    NOT NULL CHECK (status IN ('authorized', 'pending', 'approved',
                                'rejected', 'expired', 'executed', 'abandoned', 'failed',
                                'reverted')),
    claims_json         TEXT    NOT NULL DEFAULT '[]',
    control_id          TEXT,
    decision_ids_json   TEXT    NOT NULL DEFAULT '[]',
    reason              TEXT    NOT NULL DEFAULT '',
    approval_control_id TEXT,
    reviewer_roles_json TEXT    NOT NULL DEFAULT '[]',
    created_us          INTEGER NOT NULL,
    hold_until_us       INTEGER NOT NULL,
    deadline_us         INTEGER,
    reviewer            TEXT,
    review_reason       TEXT,
    reviewed_us         INTEGER,
    executed_us         INTEGER,
    outcome_json        TEXT,
    settled_us          INTEGER,
    updated_us          INTEGER NOT NULL
);
-- list_actions() by status, newest first; due_actions() finds lapsed holds.
CREATE INDEX actions_status ON actions (status, created_us);
CREATE INDEX actions_hold ON actions (hold_until_us) WHERE settled_us IS NULL;
-- count_executed() for circuit breakers.
CREATE INDEX actions_executed ON actions (tool, executed_us) WHERE executed_us IS NOT NULL;

CREATE TABLE tool_breakers (
    tool         TEXT    PRIMARY KEY,
    tripped      INTEGER NOT NULL CHECK (tripped IN (0, 1)),
    reason       TEXT    NOT NULL,
    by_principal TEXT    NOT NULL,
    at_us        INTEGER NOT NULL
);
