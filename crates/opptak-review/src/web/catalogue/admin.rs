//! Catalogue entries of `web/admin` (Norwegian first, then English).

catalogue! {
    EACH_ENTRY_COMMITS_TO_THE_ONE = "Hver oppføring binder seg til den forrige med SHA-256, og jevnlige sjekkpunkter er signert (Ed25519). Oppføringene har aldri lyd eller tekst fra samtaler.", "Each entry commits to the one before with SHA-256, and periodic checkpoints are signed (Ed25519). Entries never hold call audio or text.";
    VERIFY_THE_WHOLE_CHAIN = "Verifiser hele kjeden", "Verify the whole chain";
    TIME_UTC = "Tid (UTC)", "Time (UTC)";
    WHO = "Hvem", "Who";
    ROLE = "Rolle", "Role";
    ACTION = "Handling", "Action";
    SUBJECT = "Gjelder", "Subject";
    REASON = "Grunn", "Reason";
    OUTCOME = "Utfall", "Outcome";
    OLDER = "← Eldre", "← Older";
    NEWER = "Nyere →", "Newer →";
    THE_CHAIN_IS_INTACT = "Kjeden er intakt.", "The chain is intact.";
    THE_CHAIN_IS_BROKEN = "Kjeden er brutt:", "The chain is broken:";
    ENTRIES = " oppføringer, ", " entries, ";
    SIGNED_CHECKPOINTS = " signerte sjekkpunkter", " signed checkpoints";
    NEWEST_CHECKPOINT = "Nyeste sjekkpunkt: #", "Newest checkpoint: #";
    SIGNED_BY = "Signert av ", "Signed by ";
    BACK_TO_THE_LOG = "Tilbake til loggen", "Back to the log";
    USER = "Bruker", "User";
    NAME = "Navn", "Name";
    TEAM = "Team", "Team";
    STATUS = "Status", "Status";
    CREATED_BY = "Opprettet av", "Created by";
    DISABLED = "deaktivert", "disabled";
    AWAITING_APPROVAL_BY_ANOTHER_ADMINISTRATOR = "venter på godkjenning fra en annen administrator", "awaiting approval by another administrator";
    APPROVE_ACCESS_TO_CONTENT = "Godkjenn tilgang til innhold", "Approve access to content";
    DISABLE = "Deaktiver", "Disable";
    APPROVED_BY = ", godkjent av ", ", approved by ";
    USERS_OF_ROLES_THAT_SEE_CALL = "Brukere med roller som ser samtaleinnhold (rådgiver, teamleder, kvalitet, etterlevelse) kan logge inn først når en annen administrator enn den som opprettet dem, har godkjent dem.", "Users of roles that see call content (advisor, team lead, QA, compliance) can sign in only once an administrator other than their creator has approved them.";
    NEW_USER = "Ny bruker", "New user";
    USER_NAME = "Brukernavn ", "User name ";
    NAME_2 = "Navn ", "Name ";
    ROLE_2 = "Rolle ", "Role ";
    TEAM_2 = "Team ", "Team ";
    INITIAL_PASSWORD_AT_LEAST_12_CHARACTERS = "Startpassord (minst 12 tegn) ", "Initial password (at least 12 characters) ";
    ADD = "Legg til", "Add";
    YOUR_ROLE_HAS_NO_ACCESS_TO = "Rollen din gir ikke tilgang til denne siden.", "Your role has no access to this page.";
    AUDIT_LOG = "Revisjonslogg", "Audit log";
    AUDIT_LOG_VERIFICATION = "Verifisering av revisjonsloggen", "Audit log verification";
    USERS = "Brukere", "Users";
}
