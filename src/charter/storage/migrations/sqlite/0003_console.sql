-- Charter schema, version 3 (SQLite): sign-in tokens of the web console.

-- One row per token issued by `charter users token` or the console's users page. Only the token's
-- SHA-256 is stored; a console token is not a virtual key (it cannot call the model API, and a
-- virtual key cannot sign in to the console), so the two live in separate tables.
CREATE TABLE console_tokens (
    id            TEXT    PRIMARY KEY,
    principal_id  TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    prefix        TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    created_us    INTEGER NOT NULL,
    revoked_us    INTEGER
);
CREATE INDEX console_tokens_principal ON console_tokens (principal_id, created_us);
