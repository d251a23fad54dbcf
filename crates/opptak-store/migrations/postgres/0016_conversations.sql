-- Electronic communication (issue 17): chat with Aino or an advisor, secure
-- messages, e-mail. A conversation is a row of `calls` with medium
-- 'conversation', so its data keys, artifacts, retention rows, holds,
-- extensions and deletions are those of a call; this table holds what only
-- a conversation has. No text and no IP address in clear.
ALTER TABLE calls ADD COLUMN medium TEXT NOT NULL DEFAULT 'call';
CREATE INDEX calls_medium ON calls (medium, customer_ref);

CREATE TABLE conversations (
    call_id           TEXT PRIMARY KEY REFERENCES calls (call_id),
    channel           TEXT NOT NULL,
    -- Anonymous conversations: the client's IP address, sealed under the
    -- conversation's chat-open key (format v2); emptied when it is written.
    sealed_origin     BYTEA,
    handover_at_us    BIGINT,
    messages          BIGINT NOT NULL DEFAULT 0,
    last_event_at_us  BIGINT NOT NULL,
    -- The conversation's copies were written (and its open messages gone).
    written_at_us     BIGINT
);
CREATE INDEX conversations_open ON conversations (written_at_us, last_event_at_us);

-- The messages of an open conversation, each sealed (format v2) under the
-- conversation's chat-open key. Deleted, and the key shredded, when the
-- conversation's copies are written at its end.
CREATE TABLE conversation_messages (
    call_id           TEXT NOT NULL REFERENCES calls (call_id),
    sequence          BIGINT NOT NULL,
    message_id        TEXT NOT NULL,
    at_us             BIGINT NOT NULL,
    sender            TEXT NOT NULL,
    sealed            BYTEA NOT NULL,
    PRIMARY KEY (call_id, sequence),
    UNIQUE (call_id, message_id)
);
