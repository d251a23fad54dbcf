//! Catalogue entries of `web/dashboard` (Norwegian first, then English).

catalogue! {
    ALL_OF_THEM = "alle", "all";
    FROM = "Fra ", "From ";
    TO = "Til ", "To ";
    PERIOD = "Periode ", "Period ";
    WEEK = "uke", "week";
    DAY = "dag", "day";
    CHANNEL = "Kanal ", "Channel ";
    BROKEN_DOWN_BY = "Fordelt på ", "Broken down by ";
    CHANNEL_2 = "kanal", "channel";
    SHOW = "Vis", "Show";
    CALLS_PER_TOPIC = "Samtaler per emne, ", "Calls per topic, ";
    CHANNEL_3 = ", kanal: ", ", channel: ";
    PER_PERIOD = "Per periode", "Per period";
    TOPIC = "Emne", "Topic";
    TREND_OVER_THE_LAST_COMPLETE_PERIOD = "Utvikling siste hele periode", "Trend over the last complete period";
    PREVIOUS = "Forrige", "Previous";
    LAST = "Siste", "Last";
    CHANGE = "Endring", "Change";
    PER_CHANNEL_WHOLE_RANGE = "Per kanal, hele perioden", "Per channel, whole range";
    CHANNEL_4 = "Kanal", "Channel";
    PER_DESK_WHOLE_RANGE = "Per desk, hele perioden", "Per desk, whole range";
    DOWNLOAD_AS_CSV = "Last ned som CSV", "Download as CSV";
    SUPPRESSED = "skjult", "suppressed";
    TOTAL = "Sum", "Total";
    YOUR_ROLE_HAS_NO_ACCESS_TO = "Rollen din gir ikke tilgang til rapportene.", "Your role has no access to the reports.";
    CALL_TOPICS = "Emner i samtalene", "Call topics";
}
