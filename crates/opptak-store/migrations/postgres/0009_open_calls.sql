-- Calls still open (no CallEnded stored), by when their last input was
-- stored: the sweeper closes those idle past `recorder.idle_timeout_s`
-- (`MetadataStore::idle_calls`). Partial: ended calls are most of the table.
CREATE INDEX calls_open ON calls (updated_at_us) WHERE ended_at_us IS NULL;
