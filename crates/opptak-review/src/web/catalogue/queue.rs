//! Catalogue entries of `web/queue` (Norwegian first, then English).

catalogue! {
    DRAFTS_TO_REVIEW = "Utkast til gjennomgang", "Drafts to review";
    NO_DRAFTS_ARE_WAITING = "Ingen utkast venter.", "No drafts are waiting.";
    CALL = "Samtale", "Call";
    ADVISOR = "Rådgiver", "Advisor";
    STARTED = "Startet", "Started";
    STATUS = "Status", "Status";
    ESCALATED = "eskalert", "escalated";
    WAITING = "venter", "waiting";
}
