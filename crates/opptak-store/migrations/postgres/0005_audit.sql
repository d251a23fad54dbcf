-- The audit log (R3, R9): every read of personal data, every decision and
-- every admin action, hash-chained (each entry commits to the one before)
-- with signed checkpoints. Entries hold no audio or transcript content.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_us BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);

-- Ed25519 keys that sign checkpoints: the seed only wrapped under a KEK.
CREATE TABLE audit_signing_keys (
    key_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    public_key BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL
);

-- A checkpoint signs (seq, hash of entry seq, at_us).
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    at_us BIGINT NOT NULL,
    key_id TEXT NOT NULL REFERENCES audit_signing_keys (key_id),
    signature BYTEA NOT NULL
);
