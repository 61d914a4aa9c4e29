-- Charter schema, version 1 (PostgreSQL).
-- Times are timestamptz; money is bigint micro-dollars.

CREATE TABLE charter_versions (
    hash           text        PRIMARY KEY,
    canonical_json text        NOT NULL,
    first_seen_at  timestamptz NOT NULL
);

CREATE TABLE virtual_keys (
    id            text        PRIMARY KEY,
    principal_id  text        NOT NULL,
    key_hash      text        NOT NULL UNIQUE,
    prefix        text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX virtual_keys_principal ON virtual_keys (principal_id, created_at);

CREATE TABLE spend (
    request_id     text        PRIMARY KEY,
    principal_id   text        NOT NULL,
    model          text        NOT NULL,
    input_tokens   bigint      NOT NULL CHECK (input_tokens >= 0),
    output_tokens  bigint      NOT NULL CHECK (output_tokens >= 0),
    cost_micro_usd bigint      NOT NULL CHECK (cost_micro_usd >= 0),
    at             timestamptz NOT NULL
);
-- spend_between() sums one principal over a time range.
CREATE INDEX spend_principal_at ON spend (principal_id, at);

CREATE TABLE counters (
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    total        bigint      NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- The audit log: seq is the leaf index of the Merkle tree (0-based, gap-free).
CREATE TABLE audit_leaves (
    seq         bigint      PRIMARY KEY CHECK (seq >= 0),
    leaf_hash   bytea       NOT NULL,
    record_json text        NOT NULL,
    at          timestamptz NOT NULL
);

-- The one sequencer of the audit log. Appenders lock this row for the length of their
-- transaction, so numbers are handed out in commit order and a rolled-back append returns its
-- numbers; a SEQUENCE would leave gaps on rollback and let a later number commit first.
CREATE TABLE audit_sequencer (
    id       smallint PRIMARY KEY CHECK (id = 1),
    next_seq bigint   NOT NULL CHECK (next_seq >= 0)
);
INSERT INTO audit_sequencer (id, next_seq) VALUES (1, 0);

-- Content a record refers to, kept outside the hashed leaf so it can be erased on request.
CREATE TABLE audit_content (
    ref     text PRIMARY KEY,
    content text NOT NULL
);

CREATE TABLE audit_checkpoints (
    size        bigint      PRIMARY KEY CHECK (size >= 0),
    root_hash   bytea       NOT NULL,
    signed_blob bytea       NOT NULL,
    at          timestamptz NOT NULL
);
