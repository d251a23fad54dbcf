-- Separation of duties (issue 15, finding 5): a local user of a role that
-- reads call content signs in only once a second administrator, other than
-- the one who created it, has approved it. `created_by` is the creating
-- admin's actor (`cli:<name>` from the command line). Users that existed
-- before are kept as they were: approved by "(before approvals)".
ALTER TABLE users ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN approved_by TEXT;
ALTER TABLE users ADD COLUMN approved_at_us BIGINT;
UPDATE users SET approved_by = '(before approvals)', approved_at_us = created_at_us;
CREATE INDEX calls_advisor ON calls (advisor_id);
