-- Issue 18: the auditor's filters on a large log, each an index ending in
-- `seq` so "newest first" of one actor, action, subject or outcome reads
-- the index backwards and stops after a page; dates by `at_us`.
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
CREATE INDEX audit_log_at ON audit_log (at_us);

-- The teams an admin may put a user in (picked from a list, never typed per
-- user: a typo would hide an advisor's calls from their team lead), seeded
-- from the teams users have today.
CREATE TABLE teams (
    team TEXT PRIMARY KEY,
    created_at_us BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
INSERT INTO teams (team, created_at_us, created_by)
    SELECT DISTINCT team, 0, '(existing users)' FROM users WHERE team <> '';

-- The admin whose change (a role or team change, a re-enabling) waits for a
-- second admin's approval; NULL: the creator's (the four-eyes rule of adding
-- a user applies to every later grant of content too).
ALTER TABLE users ADD COLUMN pending_by TEXT;
