//! Catalogue entries of `web/dashboard` (Norwegian first, then English).

catalogue! {
    ALL_OF_THEM = "alle", "all";
    FROM = "Fra", "From";
    TO = "Til", "To";
    PERIOD = "Periode", "Period";
    WEEK = "uke", "week";
    DAY = "dag", "day";
    DESK = "Desk", "Desk";
    CHANNEL = "Kanal", "Channel";
    BROKEN_DOWN_BY = "Fordelt på", "Broken down by";
    BY_DESK = "desk", "desk";
    BY_CHANNEL = "kanal", "channel";
    SHOW = "Vis", "Show";
    CAPTION = "Samtaler per emne, {from}–{to}, desk: {desk}, kanal: {channel}", "Calls per topic, {from} to {to}, desk: {desk}, channel: {channel}";
    PER_PERIOD = "Per periode", "Per period";
    TOPIC = "Emne", "Topic";
    TREND_OVER_THE_LAST_COMPLETE_PERIOD = "Utvikling siste hele periode", "Trend over the last complete period";
    PREVIOUS = "Forrige", "Previous";
    LAST = "Siste", "Last";
    CHANGE = "Endring", "Change";
    PER_CHANNEL_WHOLE_RANGE = "Per kanal, hele perioden", "Per channel, whole range";
    PER_DESK_WHOLE_RANGE = "Per desk, hele perioden", "Per desk, whole range";
    DOWNLOAD_AS_CSV = "Last ned som CSV", "Download as CSV";
    SUPPRESSED = "skjult", "suppressed";
    SUPPRESSION_NOTE = "{marker} = vises ikke: færre enn {k} samtaler, eller skjult for at et lite tall ikke skal kunne regnes ut av summene", "{marker} = not shown: fewer than {k} calls, or hidden so that a small number cannot be worked out from the totals";
    TOTAL = "Sum", "Total";
    WEEK_LABEL = "uke {week} {year}", "week {week} {year}";
    YOUR_ROLE_HAS_NO_ACCESS_TO = "Rollen din gir ikke tilgang til rapportene.", "Your role has no access to the reports.";
    CALL_TOPICS = "Emner i samtalene", "Call topics";
    NOT_SHOWN = "Oversikten ble ikke vist. Rett det som er merket:", "The dashboard was not shown. Correct what is marked:";
    BAD_DAY = "Skriv en dato (dd.mm.åååå).", "Enter a date (yyyy-mm-dd).";
    EMPTY_RANGE = "Tomt tidsrom: fra-datoen er etter til-datoen.", "Empty range: the from date is after the to date.";
    TOO_MANY_PERIODS = "Tidsrommet har for mange perioder: velg et kortere tidsrom, eller uke i stedet for dag.", "The range has too many periods: choose a shorter range, or week instead of day.";
    BAD_PERIOD = "Velg dag eller uke.", "Choose day or week.";
    BAD_BREAKDOWN = "Velg desk eller kanal.", "Choose desk or channel.";
    BAD_DESK = "Velg en desk fra listen.", "Choose a desk from the list.";
    BAD_CHANNEL = "Velg en kanal fra listen.", "Choose a channel from the list.";
}
