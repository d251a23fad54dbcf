-- Retention (issue 4). The policy's current decision for every stored
-- artifact, recomputed at call end and on every fact change.
CREATE TABLE retention (
    artifact_id       TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL REFERENCES calls (call_id),
    kind              TEXT NOT NULL,
    class             TEXT NOT NULL,
    tier              TEXT NOT NULL,
    -- The object in its tier's store ('' when only spool segments exist).
    location          TEXT NOT NULL,
    expires_at_us     BIGINT NOT NULL,
    held              BIGINT NOT NULL,
    rules             TEXT NOT NULL,
    decided_at_us     BIGINT NOT NULL,
    deleted_at_us     BIGINT
);
CREATE INDEX retention_due ON retention (deleted_at_us, held, expires_at_us);
CREATE INDEX retention_call ON retention (call_id);

-- Legal holds: placed by one compliance officer, released only when a
-- second one confirms another's release request.
CREATE TABLE holds (
    hold_id                  TEXT PRIMARY KEY,
    call_id                  TEXT NOT NULL REFERENCES calls (call_id),
    case_ref                 TEXT NOT NULL,
    reason                   TEXT NOT NULL,
    placed_by                TEXT NOT NULL,
    placed_at_us             BIGINT NOT NULL,
    release_requested_by     TEXT,
    release_requested_at_us  BIGINT,
    released_by              TEXT,
    released_at_us           BIGINT
);
CREATE INDEX holds_call ON holds (call_id);

-- An authority's extension of a call's retention (MiFID: up to 7 years).
CREATE TABLE extensions (
    call_id           TEXT PRIMARY KEY REFERENCES calls (call_id),
    years             BIGINT NOT NULL,
    authority         TEXT NOT NULL,
    case_ref          TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    at_us             BIGINT NOT NULL
);

-- A compliance officer's reclassification of a call's service category.
CREATE TABLE reclassifications (
    call_id           TEXT PRIMARY KEY REFERENCES calls (call_id),
    service_category  TEXT NOT NULL,
    by_officer        TEXT NOT NULL,
    reason            TEXT NOT NULL,
    at_us             BIGINT NOT NULL
);

-- Evidence of every deletion by the retention sweeper: what, which rule,
-- when, which key was shredded. No personal data.
CREATE TABLE deletions (
    artifact_id       TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    class             TEXT NOT NULL,
    tier              TEXT NOT NULL,
    rule              TEXT NOT NULL,
    expired_at_us     BIGINT NOT NULL,
    deleted_at_us     BIGINT NOT NULL,
    key_shredded      TEXT
);
CREATE INDEX deletions_call ON deletions (call_id);
