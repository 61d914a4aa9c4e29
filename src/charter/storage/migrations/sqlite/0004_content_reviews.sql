-- Charter schema, version 4 (SQLite): escalated content in the approval queue.

-- A guard's `escalate` verdict on content (input, untrusted or output) is queued as an action
-- row whose `content_key` is a SHA-256 over principal, stage, escalating controls and the
-- content's digest (never the content itself). At most one live review per key: the same
-- principal re-sending the same content finds the item already queued.
ALTER TABLE actions ADD COLUMN content_key TEXT;
CREATE UNIQUE INDEX actions_content_live ON actions (content_key)
    WHERE content_key IS NOT NULL AND status IN ('pending', 'approved');
CREATE INDEX actions_content ON actions (content_key, created_us) WHERE content_key IS NOT NULL;
