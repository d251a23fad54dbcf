-- Issue 16, section 4: the per-call reporting rows (ki_calls, call_topics,
-- qa_samples, qa_reviews) are KI data and go with the call's `ki` key (the
-- 30-day expiry, an opt-out, an erasure). Before they go, a call whose KI
-- data simply expired is added to these per-day counts, so the topic
-- dashboard keeps its history as aggregates that name no call, advisor or
-- customer (shown k-suppressed, as before).
CREATE TABLE topic_counts (
    day   TEXT NOT NULL,
    desk  TEXT NOT NULL,
    topic TEXT NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (day, desk, topic)
);

-- Rows of calls whose KI key is already gone (an opt-out, an expiry before
-- this migration): opted-out calls were never counted; expired ones are
-- counted once, then their rows go.
INSERT INTO topic_counts (day, desk, topic, calls)
SELECT t.day, t.desk, t.topic, COUNT(*) FROM call_topics t
JOIN calls c ON c.call_id = t.call_id AND c.ki_opt_out_at_us IS NULL
WHERE t.call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL)
GROUP BY t.day, t.desk, t.topic;
DELETE FROM qa_screenings WHERE call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL);
DELETE FROM qa_reviews WHERE call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL);
DELETE FROM qa_samples WHERE call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL);
DELETE FROM call_topics WHERE call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL);
DELETE FROM ki_calls WHERE call_id IN (SELECT call_id FROM data_keys WHERE class = 'ki' AND destroyed_at_us IS NOT NULL);
