-- Flags are BIGINT 0/1: sqlx's Any driver cannot decode SQLite BOOLEAN.
-- Calls, their data keys, recordings, segments and gaps. Times are µs since the epoch.
CREATE TABLE calls (
    call_id            TEXT PRIMARY KEY,
    started_at_us      BIGINT NOT NULL,
    direction          TEXT NOT NULL,
    customer_ref       TEXT NOT NULL,
    advisor_id         TEXT NOT NULL,
    desk               TEXT NOT NULL,
    service_category   TEXT NOT NULL,
    ki_enabled         BIGINT NOT NULL,
    customer_informed  BIGINT NOT NULL,
    codec              TEXT NOT NULL,
    sample_rate_hz     BIGINT NOT NULL,
    channel_roles      TEXT NOT NULL,
    state              TEXT NOT NULL,
    next_sequence      BIGINT NOT NULL DEFAULT 0,
    frames             BIGINT NOT NULL DEFAULT 0,
    last_chunk_frames  BIGINT NOT NULL DEFAULT 0,
    duplicate_chunks   BIGINT NOT NULL DEFAULT 0,
    ended_at_us        BIGINT,
    end_reason         TEXT,
    last_sequence      BIGINT,
    ki_opt_out_at_us   BIGINT,
    ki_opt_out_by      TEXT,
    -- Position on the audio timeline (µs) from which no audio may reach KI.
    ki_opt_out_offset_us BIGINT,
    created_at_us      BIGINT NOT NULL,
    updated_at_us      BIGINT NOT NULL
);
CREATE INDEX calls_started ON calls (started_at_us);

-- Data keys exist here only wrapped by a key-encryption key.
CREATE TABLE data_keys (
    key_id            TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL REFERENCES calls (call_id),
    class             TEXT NOT NULL,
    kek_id            TEXT NOT NULL,
    sealed            BLOB NOT NULL,
    created_at_us     BIGINT NOT NULL,
    destroyed_at_us   BIGINT,
    UNIQUE (call_id, class)
);

-- Evidence of crypto-shredding: what was destroyed, when, why, by whom.
-- Never the key (the wrapped key in data_keys is overwritten with nothing).
CREATE TABLE key_shreddings (
    key_id            TEXT PRIMARY KEY REFERENCES data_keys (key_id),
    call_id           TEXT NOT NULL,
    class             TEXT NOT NULL,
    kek_id            TEXT NOT NULL,
    shredded_at_us    BIGINT NOT NULL,
    reason            TEXT NOT NULL,
    requested_by      TEXT NOT NULL
);

CREATE TABLE recordings (
    recording_id      TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL REFERENCES calls (call_id),
    kind              TEXT NOT NULL,
    key_id            TEXT NOT NULL REFERENCES data_keys (key_id),
    blob_prefix       TEXT NOT NULL,
    segments          BIGINT NOT NULL DEFAULT 0,
    complete          BIGINT NOT NULL DEFAULT 0,
    created_at_us     BIGINT NOT NULL,
    completed_at_us   BIGINT,
    UNIQUE (call_id, kind)
);

CREATE TABLE segments (
    recording_id      TEXT NOT NULL REFERENCES recordings (recording_id),
    idx               BIGINT NOT NULL,
    blob_path         TEXT NOT NULL,
    blob_offset       BIGINT NOT NULL,
    first_frame       BIGINT NOT NULL,
    frames            BIGINT NOT NULL,
    sealed_bytes      BIGINT NOT NULL,
    final_segment     BIGINT NOT NULL,
    PRIMARY KEY (recording_id, idx)
);

CREATE TABLE gaps (
    recording_id      TEXT NOT NULL REFERENCES recordings (recording_id),
    first_missing     BIGINT NOT NULL,
    missing           BIGINT NOT NULL,
    at_frame          BIGINT NOT NULL,
    frames            BIGINT NOT NULL,
    PRIMARY KEY (recording_id, first_missing)
);
