-- The KI reporting index (R5) and QA sampling (R6), issue 6. One row per
-- drafted KI call, written by the summarizer once the draft is stored
-- (`src/qa.rs`); content-free: no summary, transcript or customer text,
-- only routing facts, taxonomy topic ids and counts. A QA reviewer's note
-- is the one text here, and it is sealed (format v2) under the call's ki
-- key, so it goes with the KI data (opt-out, 30-day expiry, erasure).
--
-- Every reader joins `calls` and leaves out calls whose customer opted out
-- of KI (`calls.ki_opt_out_at_us IS NOT NULL`): whichever of the opt-out
-- and the draft arrives first, the call never shows in a report, a queue
-- or the dashboard.

-- A drafted KI call. `day` is the UTC day (YYYY-MM-DD) of the call's
-- start; `topic` the draft's primary (first) topic, `topics` all of them,
-- comma-separated, primary first. `draft_words` counts the draft summary's
-- words (to normalise edit distances). The advisor's outcome, once decided:
-- `decision` approved/rejected and, for an approval, `edit_distance`, the
-- word-level Levenshtein distance from the draft summary to the approved text.
CREATE TABLE ki_calls (
    call_id TEXT PRIMARY KEY REFERENCES calls (call_id),
    day TEXT NOT NULL,
    desk TEXT NOT NULL,
    language TEXT NOT NULL,
    topic TEXT NOT NULL,
    topics TEXT NOT NULL,
    advisor_id TEXT NOT NULL,
    drafted_at_us BIGINT NOT NULL,
    draft_words BIGINT NOT NULL,
    edit_distance BIGINT,
    decision TEXT CHECK (decision IN ('approved', 'rejected')),
    decided_at_us BIGINT
);
CREATE INDEX ki_calls_day ON ki_calls (day);
-- The review queues: an advisor's (or a team's) undecided drafts.
CREATE INDEX ki_calls_advisor ON ki_calls (advisor_id, decision);

-- One row per call and topic, for the dashboard's GROUP BY day, desk, topic.
CREATE TABLE call_topics (
    call_id TEXT NOT NULL REFERENCES ki_calls (call_id),
    topic TEXT NOT NULL,
    day TEXT NOT NULL,
    desk TEXT NOT NULL,
    PRIMARY KEY (call_id, topic)
);
CREATE INDEX call_topics_day ON call_topics (day);

-- Systematic sampling per stratum (`topic|desk|language`): how many drafted
-- calls the stratum has seen and how many of them were sampled. The row is
-- locked (UPDATE) while one call's decision is made, so concurrent
-- summarizers number the stratum's calls without gaps or repeats.
CREATE TABLE qa_strata (
    stratum TEXT PRIMARY KEY,
    seen BIGINT NOT NULL,
    sampled BIGINT NOT NULL
);

-- The QA sample: calls that landed in the QA queue.
CREATE TABLE qa_samples (
    call_id TEXT PRIMARY KEY REFERENCES ki_calls (call_id),
    stratum TEXT NOT NULL,
    sampled_at_us BIGINT NOT NULL
);

-- A QA reviewer's scores (1..=5) of one sampled call, a flag ('' none,
-- 'discriminatory', 'unexpected') and the note, sealed under the key
-- `key_id` (the call's ki key). One row per call and reviewer: scoring again
-- replaces it.
CREATE TABLE qa_reviews (
    call_id TEXT NOT NULL REFERENCES qa_samples (call_id),
    reviewer TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    correctness BIGINT NOT NULL CHECK (correctness BETWEEN 1 AND 5),
    relevance BIGINT NOT NULL CHECK (relevance BETWEEN 1 AND 5),
    quality BIGINT NOT NULL CHECK (quality BETWEEN 1 AND 5),
    flag TEXT NOT NULL CHECK (flag IN ('', 'discriminatory', 'unexpected')),
    key_id TEXT NOT NULL,
    note_sealed BYTEA NOT NULL,
    PRIMARY KEY (call_id, reviewer)
);
