-- CallContext events applied to a call (issue 19: a CTI system sends or
-- corrects the desk, advisor, customer or service later in the call). The
-- calls row holds the context in force; the audit log (call.context) holds
-- each change before -> after. A row here makes a redelivered or resent
-- event (same digest: SHA-256 of its encoding) a no-op, and tells a
-- replayed CallStarted apart from a conflicting one. Deleted with the
-- call's personal data when its last artifact is deleted.
CREATE TABLE call_contexts (
    call_id        TEXT NOT NULL REFERENCES calls (call_id),
    digest         TEXT NOT NULL,
    by_actor       TEXT NOT NULL,
    at_us          BIGINT NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (call_id, digest)
);
