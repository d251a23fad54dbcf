-- Every version of a call's summary in review (issue 6): the advisor's
-- edits, the approval and a rejection, with author and time. The text is
-- never in clear: sealed (format v2) under the call's ki key, so it goes
-- with the KI data; the approved summary itself is also kept as the
-- customer-service record under the record-5y key (an artifact).
CREATE TABLE review_versions (
    call_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (call_id, version)
);
