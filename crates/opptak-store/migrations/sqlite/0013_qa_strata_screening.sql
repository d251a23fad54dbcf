-- QA sampling by detected language and recognition failure, and screening
-- of drafts (R6, issue 16 section 6; `src/reporting.rs`).
--
-- `ki_calls.language` is now the language detected from the transcript's
-- words (`und` when undetermined), not the configured one. A call whose
-- speech recognition failed is indexed too (`recognition_failed` = 1,
-- topic `none`, no draft) so it can be sampled and listened to; the
-- stratum is `topic|desk|language|asr-ok` or `...|asr-failed`.
-- Flags are BIGINT 0/1 (sqlx's Any driver cannot decode SQLite BOOLEAN).
ALTER TABLE ki_calls ADD COLUMN recognition_failed BIGINT NOT NULL DEFAULT 0;

-- Why a call is in the QA queue: `sample` (the stratified systematic
-- sample) or `screening` (a screening hit the sample did not pick). A
-- sampled call that screening flagged too stays `sample`; its screening
-- row says the rest.
ALTER TABLE qa_samples ADD COLUMN reason TEXT NOT NULL DEFAULT 'sample';

-- The screening of a call's draft: how many lexicon terms it holds, the
-- language model's verdict (`off`, `clear`, `flagged`, `unavailable`)
-- and the prompt version asked; the terms found and the model's detail
-- sealed (format v2) under the call's ki key `key_id`, since which words a
-- summary holds is content: they go with the KI data.
CREATE TABLE qa_screenings (
    call_id TEXT PRIMARY KEY REFERENCES ki_calls (call_id) ON DELETE CASCADE,
    at_us BIGINT NOT NULL,
    lexicon_version BIGINT NOT NULL,
    lexicon_hits BIGINT NOT NULL,
    model_verdict TEXT NOT NULL CHECK (model_verdict IN ('off', 'clear', 'flagged', 'unavailable')),
    prompt_version TEXT NOT NULL,
    flagged BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    detail_sealed BLOB NOT NULL
);
