-- Charter schema, version 1 (SQLite).
-- Times are INTEGER microseconds since the Unix epoch, UTC (columns end in _us): they sort and
-- compare as numbers, and round-trip a Python datetime exactly.
-- Money is INTEGER micro-dollars.

CREATE TABLE charter_versions (
    hash           TEXT    PRIMARY KEY,
    canonical_json TEXT    NOT NULL,
    first_seen_us  INTEGER NOT NULL
);

CREATE TABLE virtual_keys (
    id            TEXT    PRIMARY KEY,
    principal_id  TEXT    NOT NULL,
    key_hash      TEXT    NOT NULL UNIQUE,
    prefix        TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    created_us    INTEGER NOT NULL,
    revoked_us    INTEGER
);
CREATE INDEX virtual_keys_principal ON virtual_keys (principal_id, created_us);

CREATE TABLE spend (
    request_id     TEXT    PRIMARY KEY,
    principal_id   TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    input_tokens   INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens  INTEGER NOT NULL CHECK (output_tokens >= 0),
    cost_micro_usd INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
    at_us          INTEGER NOT NULL
);
-- spend_between() sums one principal over a time range.
CREATE INDEX spend_principal_at ON spend (principal_id, at_us);

CREATE TABLE counters (
    key             TEXT    NOT NULL,
    window_start_us INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    PRIMARY KEY (key, window_start_us)
) WITHOUT ROWID;

-- The audit log: seq is the leaf index of the Merkle tree (0-based, gap-free).
CREATE TABLE audit_leaves (
    seq         INTEGER PRIMARY KEY CHECK (seq >= 0),
    leaf_hash   BLOB    NOT NULL,
    record_json TEXT    NOT NULL,
    at_us       INTEGER NOT NULL
);

-- Content a record refers to, kept outside the hashed leaf so it can be erased on request.
CREATE TABLE audit_content (
    ref     TEXT PRIMARY KEY,
    content TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    size        INTEGER PRIMARY KEY CHECK (size >= 0),
    root_hash   BLOB    NOT NULL,
    signed_blob BLOB    NOT NULL,
    at_us       INTEGER NOT NULL
);
