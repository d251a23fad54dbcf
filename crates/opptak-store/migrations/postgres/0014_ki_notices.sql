-- When and how the customer was told that KI is used (the telephony
-- system's KiNotice event; issue 16, section 6). The evidence lives on the
-- call's row, with its recording: it is cleared when the call's last
-- artifact is deleted. KI hears no audio before ki_notice_offset_us.
ALTER TABLE calls ADD COLUMN ki_notice_at_us BIGINT;
ALTER TABLE calls ADD COLUMN ki_notice_offset_us BIGINT;
ALTER TABLE calls ADD COLUMN ki_notice_method TEXT;
ALTER TABLE calls ADD COLUMN ki_notice_announcement_id TEXT;
ALTER TABLE calls ADD COLUMN ki_notice_by TEXT;

-- A KiNotice that arrives before its call's CallStarted (producers race):
-- kept here and applied when the call starts (then removed, in the same
-- transaction that stores the call).
CREATE TABLE early_ki_notices (
    call_id         TEXT PRIMARY KEY,
    at_us           BIGINT NOT NULL,
    offset_us       BIGINT NOT NULL,
    method          TEXT NOT NULL,
    announcement_id TEXT NOT NULL,
    by_advisor      TEXT NOT NULL,
    received_at_us  BIGINT NOT NULL
);
