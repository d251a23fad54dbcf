-- The review service's list of recent conversations (issue 17): newest
-- first among conversations only, without scanning the calls of the window.
CREATE INDEX calls_medium_started ON calls (medium, started_at_us);
