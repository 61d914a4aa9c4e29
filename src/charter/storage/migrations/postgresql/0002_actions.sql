-- Charter schema, version 2 (PostgreSQL): tool-call actions, the approval queue, circuit breakers.

-- One row per tool call Charter allowed or sent for review (denied calls hold nothing and are
-- not stored). JSON columns hold canonical JSON text.
CREATE TABLE actions (
    id                  text        PRIMARY KEY,
    approval_id         text        UNIQUE,
    tool                text        NOT NULL,
    arguments_json      text        NOT NULL,
    principal_id        text        NOT NULL,
    subject             text,
    conversation_id     text,
    excerpt             text        NOT NULL DEFAULT '',
    status              text        NOT NULL CHECK (status IN ('authorized', 'pending',
                                    'approved', 'rejected', 'expired', 'executed', 'abandoned',
                                    'failed', 'reverted')),
    claims_json         text        NOT NULL DEFAULT '[]',
    control_id          text,
    decision_ids_json   text        NOT NULL DEFAULT '[]',
    reason              text        NOT NULL DEFAULT '',
    approval_control_id text,
    reviewer_roles_json text        NOT NULL DEFAULT '[]',
    created_at          timestamptz NOT NULL,
    hold_until          timestamptz NOT NULL,
    deadline            timestamptz,
    reviewer            text,
    review_reason       text,
    reviewed_at         timestamptz,
    executed_at         timestamptz,
    outcome_json        text,
    settled_at          timestamptz,
    updated_at          timestamptz NOT NULL
);
-- list_actions() by status, newest first; due_actions() finds lapsed holds.
CREATE INDEX actions_status ON actions (status, created_at);
CREATE INDEX actions_hold ON actions (hold_until) WHERE settled_at IS NULL;
-- count_executed() for circuit breakers.
CREATE INDEX actions_executed ON actions (tool, executed_at) WHERE executed_at IS NOT NULL;

CREATE TABLE tool_breakers (
    tool         text        PRIMARY KEY,
    tripped      boolean     NOT NULL,
    reason       text        NOT NULL,
    by_principal text        NOT NULL,
    at           timestamptz NOT NULL
);
