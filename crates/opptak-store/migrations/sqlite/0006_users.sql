-- Local users of the embedded mode (issue 6): Argon2id password hashes (PHC
-- strings), one role each, and web sessions stored by the SHA-256 of their
-- token (a stolen database yields no usable session).
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    team TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    disabled_at_us BIGINT
);

CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
