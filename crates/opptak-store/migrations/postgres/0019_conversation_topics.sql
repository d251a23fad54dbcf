-- Issue 17, section 4: KI on conversations. A conversation's redacted
-- analysis copy is categorised into the same taxonomy as KI calls and
-- indexed in the same tables (`src/reporting.rs`), so there is one topic
-- dashboard and one QA queue, with the channel as a dimension: `phone` for
-- a call, else the conversation's channel (`aino_chatbot`, `advisor_chat`,
-- `secure_message`, `email`). A conversation's rows go with its
-- `chat-analysis-1y` key as a call's go with its `ki` key: an expired one
-- is first added to the per-day counts, an objected one is counted nowhere.
ALTER TABLE ki_calls ADD COLUMN channel TEXT NOT NULL DEFAULT 'phone';
ALTER TABLE call_topics ADD COLUMN channel TEXT NOT NULL DEFAULT 'phone';

-- The per-day counts get the channel too (in the key: rebuilt, as SQLite
-- cannot change a primary key). `calls` counts calls and conversations.
CREATE TABLE topic_counts_by_channel (
    day     TEXT NOT NULL,
    desk    TEXT NOT NULL,
    channel TEXT NOT NULL,
    topic   TEXT NOT NULL,
    calls   BIGINT NOT NULL,
    PRIMARY KEY (day, desk, channel, topic)
);
INSERT INTO topic_counts_by_channel (day, desk, channel, topic, calls)
SELECT day, desk, 'phone', topic, calls FROM topic_counts;
DROP TABLE topic_counts;
ALTER TABLE topic_counts_by_channel RENAME TO topic_counts;
