-- A KiOptOut that arrives before its call's CallStarted (the telephony
-- system's producers race; issue 16, section 8): kept here, and applied when
-- the call starts, so an opt-out is never lost (it was dead-lettered as
-- UNKNOWN_CALL, and KI then ran on the whole call).
CREATE TABLE early_opt_outs (
    call_id        TEXT PRIMARY KEY,
    at_us          BIGINT NOT NULL,
    requested_by   TEXT NOT NULL,
    received_at_us BIGINT NOT NULL
);
