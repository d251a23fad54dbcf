//! Catalogue entries of `web/mod.rs` (Norwegian first, then English).

catalogue! {
    ERROR = "Feil", "Error";
    DRAFTS = "Utkast", "Drafts";
    QA = "Kvalitetskontroll", "QA";
    QA_REPORT = "QA-rapport", "QA report";
    TOPICS = "Emner", "Topics";
    CHATS_AND_MESSAGES = "Chat og meldinger", "Chats and messages";
    AUDIT_LOG = "Revisjonslogg", "Audit log";
    USERS = "Brukere", "Users";
    SKIP_TO_CONTENT = "Hopp til innhold", "Skip to content";
    MAIN_MENU = "Hovedmeny", "Main menu";
    SIGN_OUT = "Logg ut", "Sign out";
    ENGLISH = "Norsk", "English";
    ADVISOR = "rådgiver", "advisor";
    TEAM_LEAD = "teamleder", "team lead";
    QA_REVIEWER = "kvalitetskontroll", "QA reviewer";
    COMPLIANCE_OFFICER = "compliance", "compliance officer";
    AUDITOR = "revisor", "auditor";
    ADMIN = "administrator", "admin";
    SIGN_IN = "Logg inn", "Sign in";
    USER_NAME = "Brukernavn", "User name";
    PASSWORD = "Passord", "Password";
    SIGN_IN_FIRST = "Logg inn først.", "Sign in first.";
    SOMETHING_WENT_WRONG_TRY_AGAIN_OR = "Noe gikk galt. Forsøk igjen, eller meld fra om feilen vedvarer.", "Something went wrong. Try again, or report it if it persists.";
    THE_FORM_LACKS_A_VALID_CSRF = "Skjemaet mangler gyldig CSRF-token.", "The form lacks a valid CSRF token.";
    UNKNOWN_CALL = "Ukjent samtale.", "Unknown call.";
    NOT_YOUR_TEAM_S_CALL = "Samtalen hører ikke til teamet ditt.", "Not your team's call.";
    STATE_A_REASON_REASON_TO_READ = "Oppgi en grunn (?reason=…) for å lese eller lytte.", "State a reason (?reason=…) to read or listen.";
    NOT_YOUR_CALL = "Dette er ikke din samtale.", "Not your call.";
    THIS_CALL_IS_NOT_SAMPLED_FOR = "Samtalen er ikke trukket ut til kvalitetskontroll.", "This call is not sampled for QA.";
    THE_CALL_S_KI_DATA_IS = "KI-dataene for samtalen er slettet; kvalitetskontrollens tilgang endte med dem.", "The call's KI data is deleted; QA's access ended with it.";
    YOUR_ROLE_NEVER_READS_CALL_CONTENT = "Rollen din gir aldri tilgang til innhold.", "Your role never reads call content.";
    UNKNOWN_LANGUAGE = "Ukjent språk.", "Unknown language.";
    THE_FORM_HAS_EXPIRED_RELOAD_THE = "Skjemaet er utløpt. Last inn siden på nytt og logg inn igjen.", "The form has expired. Reload the page and sign in again.";
    TOO_MANY_FAILED_SIGN_INS_WAIT = "For mange mislykkede innlogginger. Vent en stund og forsøk igjen.", "Too many failed sign-ins. Wait a while and try again.";
    WRONG_USER_NAME_OR_PASSWORD = "Feil brukernavn eller passord.", "Wrong user name or password.";
}
