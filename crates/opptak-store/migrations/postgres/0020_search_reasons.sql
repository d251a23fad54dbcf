-- Issue 18: compliance's call search, and the reasons for reading a call
-- or conversation, kept on the server instead of in the URL.
--
-- The search filters calls by start time, advisor, desk, service category
-- and customer reference, newest first; each index ends in the start time
-- so a filter and the order come from one index (`src/search.rs`).
CREATE INDEX calls_search_started ON calls (medium, started_at_us);
CREATE INDEX calls_search_advisor ON calls (advisor_id, started_at_us);
CREATE INDEX calls_search_desk ON calls (desk, started_at_us);
CREATE INDEX calls_search_service ON calls (service_category, started_at_us);
CREATE INDEX calls_search_customer ON calls (customer_ref, started_at_us);

-- A search as submitted (the filters as JSON, the customer reference among
-- them): the results' address names only its id, so no customer reference
-- reaches a URL, browser history or a proxy log. It belongs to one session
-- and goes with it. `total` is the count when it was submitted (at most
-- 10,000, `capped` 1 past it): counted once, not on every page.
CREATE TABLE saved_searches (
    search_id TEXT PRIMARY KEY,
    session_sha256 TEXT NOT NULL REFERENCES sessions (token_sha256) ON DELETE CASCADE,
    filters TEXT NOT NULL,
    total BIGINT NOT NULL,
    capped BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX saved_searches_session ON saved_searches (session_sha256);

-- Why compliance reads a call or a conversation (`subject`: `call:<id>`,
-- `conversation:<id>`), stated once per session in a form: a category
-- from a fixed list, a case number and a text. Written to the audit log
-- with every read; it goes with the session.
CREATE TABLE read_reasons (
    session_sha256 TEXT NOT NULL REFERENCES sessions (token_sha256) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    category TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    text TEXT NOT NULL,
    stated_at_us BIGINT NOT NULL,
    PRIMARY KEY (session_sha256, subject)
);
