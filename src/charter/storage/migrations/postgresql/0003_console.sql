-- Charter schema, version 3 (PostgreSQL): sign-in tokens of the web console.

-- One row per token issued by `charter users token` or the console's users page. Only the token's
-- SHA-256 is stored; a console token is not a virtual key (it cannot call the model API, and a
-- virtual key cannot sign in to the console), so the two live in separate tables.
CREATE TABLE console_tokens (
    id            text        PRIMARY KEY,
    principal_id  text        NOT NULL,
    token_hash    text        NOT NULL UNIQUE,
    prefix        text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX console_tokens_principal ON console_tokens (principal_id, created_at);
