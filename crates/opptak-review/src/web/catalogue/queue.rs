//! Catalogue entries of `web/queue` (Norwegian first, then English).

catalogue! {
    DRAFTS_TO_REVIEW = "Utkast til gjennomgang", "Drafts to review";
    YOUR_OPEN_DRAFTS = "KI-utkastene til samtalene dine som venter på din vurdering, de som har ventet lengst først.", "The KI drafts of your calls waiting for your decision, the longest waiting first.";
    ESCALATIONS = "Eskaleringer", "Escalations";
    ESCALATIONS_HEADING = "Eskaleringer: utkast som har ventet mer enn {h} timer", "Escalations: drafts that have waited more than {h} hours";
    ESCALATIONS_EXPLAINED = "Utkast fra rådgiverne i teamet ditt som ingen har godkjent eller avvist {h} timer etter at samtalen sluttet. Følg opp med rådgiveren; KI-dataene slettes etter 30 dager.", "Drafts of your team's advisors that nobody approved or rejected {h} hours after the call ended. Follow up with the advisor; the KI data is deleted after 30 days.";
    TEAM_DRAFTS = "Teamets åpne utkast", "The team's open drafts";
    TEAM_DRAFTS_EXPLAINED = "Alle åpne utkast fra rådgiverne i teamet ditt; de som har ventet mer enn {h} timer er merket eskalert.", "Every open draft of your team's advisors; those waiting more than {h} hours are marked escalated.";
    SHOW_ALL_TEAM_DRAFTS = "Vis alle teamets åpne utkast", "Show all the team's open drafts";
    SHOW_ONLY_ESCALATIONS = "Vis bare eskaleringer", "Show escalations only";
    NO_DRAFTS_ARE_WAITING = "Ingen utkast venter.", "No drafts are waiting.";
    FIND_AND_FILTER = "Finn og filtrer", "Find and filter";
    CALL_ID = "Samtale-ID", "Call id";
    DESK = "Avdeling", "Desk";
    TOPIC = "Emne", "Topic";
    TOPICS = "Emner", "Topics";
    ANY = "alle", "all";
    FILTER = "Filtrer", "Filter";
    CALL = "Samtale", "Call";
    ADVISOR = "Rådgiver", "Advisor";
    STARTED = "Startet", "Started";
    LENGTH = "Lengde", "Length";
    WAITED = "Ventet", "Waited";
    ESCALATED = "eskalert", "escalated";
    SHOWING_RANGE = "{first}–{last} av {total}", "{first}–{last} of {total}";
    PAGES = "Sider", "Pages";
    PREVIOUS = "Forrige", "Previous";
    NEXT = "Neste", "Next";
    YOUR_ROLE_HAS_NO_DRAFTS = "Rollen din har ingen utkast å vurdere.", "Your role has no drafts to review.";
    ONLY_TEAM_LEADS = "Siden er for teamledere.", "This page is for team leads.";
}
