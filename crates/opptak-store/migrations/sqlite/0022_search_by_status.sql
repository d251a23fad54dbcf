-- Issue 18: a call search by review status (waiting, approved, rejected)
-- walks the drafted calls, not all calls. The status lives in `ki_calls`
-- (one in ten calls here), so a search for "waiting" on a desk used to walk
-- `calls_search_desk` and look up the draft of every call on the way: about
-- sixty calls read per match. It now walks these indexes of `ki_calls`
-- newest first and reads the call of each draft (`src/search.rs`), which
-- needs the call's start time beside the draft. A call's start never
-- changes, so the copy cannot go stale.
ALTER TABLE ki_calls ADD COLUMN started_at_us BIGINT NOT NULL DEFAULT 0;
UPDATE ki_calls SET started_at_us = (SELECT c.started_at_us FROM calls c WHERE c.call_id = ki_calls.call_id);
CREATE INDEX ki_calls_search_waiting ON ki_calls (started_at_us) WHERE decision IS NULL AND recognition_failed = 0;
CREATE INDEX ki_calls_search_decided ON ki_calls (decision, started_at_us);

-- Indexes the search indexes of 0020 made redundant: each is the start of
-- another (or, `calls_search_started`, the same as `calls_medium_started`).
-- Every index costs each insert and the planner of each query.
DROP INDEX calls_search_started;
DROP INDEX calls_advisor;
DROP INDEX calls_customer;
