-- Format v2 (issue 3): a finished recording is compacted into one object
-- with fixed-size segments; copies under other retention classes (archive,
-- KI) are rows of `recordings` with their own kind and data key.
ALTER TABLE recordings ADD COLUMN object_path TEXT;
ALTER TABLE recordings ADD COLUMN object_bytes BIGINT;
ALTER TABLE recordings ADD COLUMN compacted_at_us BIGINT;
CREATE INDEX recordings_to_compact ON recordings (complete, object_path);

CREATE INDEX key_shreddings_at ON key_shreddings (shredded_at_us);

-- The data key of the day for dead letters that name no known call (their
-- original bytes are sealed under it). Wrapped like every data key.
CREATE TABLE deadletter_keys (
    day               TEXT PRIMARY KEY,
    key_id            TEXT NOT NULL UNIQUE,
    class             TEXT NOT NULL,
    kek_id            TEXT NOT NULL,
    sealed            BYTEA NOT NULL,
    created_at_us     BIGINT NOT NULL,
    destroyed_at_us   BIGINT
);
