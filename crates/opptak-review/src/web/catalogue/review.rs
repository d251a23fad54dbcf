//! Catalogue entries of `web/review` (Norwegian first, then English): the
//! advisor's queue, the call page, its player, decisions and their errors.

catalogue! {
    NO_DRAFTS_ARE_WAITING = "Ingen utkast venter.", "No drafts are waiting.";
    CALL = "Samtale", "Call";
    ADVISOR = "Rådgiver", "Advisor";
    STARTED_UTC = "Startet (UTC)", "Started (UTC)";
    STATUS = "Status", "Status";
    ESCALATED = "eskalert", "escalated";
    WAITING = "venter", "waiting";
    DRAFTS_TO_REVIEW = "Utkast til gjennomgang", "Drafts to review";

    // The call's facts.
    CALL_OF = "Samtale {when}", "Call of {when}";
    CALL_FACTS = "Om samtalen", "About the call";
    WHEN = "Tidspunkt", "Time";
    DESK = "Avdeling", "Desk";
    SERVICE = "Tjeneste", "Service";
    LENGTH = "Lengde", "Length";
    DIRECTION = "Retning", "Direction";
    DIRECTION_INBOUND = "innkommende", "inbound";
    DIRECTION_OUTBOUND = "utgående", "outbound";
    DIRECTION_INTERNAL = "intern", "internal";
    KI_LABEL = "KI", "AI";
    KI_INFORMED_AT_START = "Kunden ble informert om KI ved samtalestart.", "The customer was told about AI when the call started.";
    KI_INFORMED_BY_IVR = "Kunden ble informert om KI i talemeldingen (ferdig etter {at}).", "The customer was told about AI by the announcement (done after {at}).";
    KI_INFORMED_BY_ADVISOR = "Rådgiveren informerte kunden om KI (ferdig etter {at}).", "The advisor told the customer about AI (done after {at}).";
    KI_INFORMED_AFTER = "Kunden ble informert om KI (ferdig etter {at}).", "The customer was told about AI (done after {at}).";
    KI_NOT_REQUESTED = "KI ble ikke brukt i denne samtalen.", "AI was not used on this call.";
    KI_NOT_INFORMED = "Kunden ble ikke informert om KI, så KI ble ikke brukt.", "The customer was not told about AI, so AI was not used.";
    KI_OPTED_OUT_AT = "Kunden reserverte seg mot KI {when}; KI-dataene er slettet.", "The customer opted out of AI at {when}; the AI data is deleted.";

    // The status badge and why.
    BADGE_WAITING = "venter", "waiting";
    BADGE_APPROVED = "godkjent", "approved";
    BADGE_REJECTED = "avvist", "rejected";
    BADGE_KI_OFF = "KI av", "AI off";
    BADGE_PENDING = "under arbeid", "in progress";
    WHY_WAITING = "utkastet venter på rådgiverens vurdering", "the draft waits for the advisor's decision";
    WHY_APPROVED = "godkjent av {who} {when}", "approved by {who} at {when}";
    WHY_REJECTED = "avvist av {who} {when}", "rejected by {who} at {when}";
    WHY_OPTED_OUT = "kunden reserverte seg", "the customer opted out";
    WHY_NOT_KI = "KI ble ikke bestilt for samtalen", "AI was not requested for the call";
    WHY_NOT_INFORMED = "kunden ble ikke informert om KI", "the customer was not told about AI";
    WHY_EXPIRED = "KI-dataene er slettet etter 30 dager", "the AI data was deleted after 30 days";
    WHY_IN_PROGRESS = "samtalen pågår", "the call is in progress";
    WHY_TRANSCRIPTION_PENDING = "venter på transkripsjon", "waiting for the transcript";
    WHY_DRAFT_PENDING = "venter på KI-utkast", "waiting for the AI draft";

    // Summary and draft.
    APPROVED_SUMMARY = "Godkjent sammendrag", "Approved summary";
    APPROVED_BY_AT = "Godkjent av {who} {when}.", "Approved by {who} at {when}.";
    AMENDED_BY_AT = "Sist rettet av {who} {when}.", "Last amended by {who} at {when}.";
    AI_DRAFT = "KI-utkast", "AI draft";
    AI_DRAFT_BELOW_APPROVED = "Utkastet KI laget, før rådgiverens vurdering. Det godkjente sammendraget står over.", "The draft the AI made, before the advisor's decision. The approved summary is above.";
    DRAFT_BY_EMBEDDED = "Utkast laget av KI (innebygd modell).", "Draft made by AI (built-in model).";
    DRAFT_BY_MODEL = "Utkast laget av KI (språkmodell {model}).", "Draft made by AI (language model {model}).";
    PROMPT_VERSION = "Instruksversjon {v}", "Prompt version {v}";
    TOPICS = "Emner: ", "Topics: ";
    CUSTOMER_REQUESTS = "Kunden ba om", "Customer requests";
    FOLLOW_UPS = "Oppfølging", "Follow-ups";
    NO_DRAFT_KI_OFF = "Det finnes ikke noe KI-utkast: KI ble ikke brukt i samtalen.", "There is no AI draft: AI was not used on this call.";
    NO_DRAFT_OPTED_OUT = "Det finnes ikke noe KI-utkast: kunden reserverte seg mot KI.", "There is no AI draft: the customer opted out of AI.";
    NO_DRAFT_EXPIRED = "KI-utkastet er slettet (KI-data lagres i 30 dager).", "The AI draft is deleted (AI data is kept for 30 days).";
    NO_DRAFT_YET = "KI har ikke laget et utkast ennå.", "The AI has not made a draft yet.";
    NO_DRAFT_UNREADABLE = "Utkastet kunne ikke leses. Forsøk igjen, eller meld fra om feilen vedvarer.", "The draft could not be read. Try again, or report it if it persists.";
    NO_TRANSCRIPT_KI_OFF = "Det finnes ingen transkripsjon: KI ble ikke brukt i samtalen.", "There is no transcript: AI was not used on this call.";
    NO_TRANSCRIPT_OPTED_OUT = "Det finnes ingen transkripsjon: kunden reserverte seg mot KI.", "There is no transcript: the customer opted out of AI.";
    NO_TRANSCRIPT_EXPIRED = "Transkripsjonen er slettet (KI-data lagres i 30 dager).", "The transcript is deleted (AI data is kept for 30 days).";
    NO_TRANSCRIPT_YET = "Samtalen er ikke transkribert ennå.", "The call is not transcribed yet.";
    NO_TRANSCRIPT_UNREADABLE = "Transkripsjonen kunne ikke leses. Forsøk igjen, eller meld fra om feilen vedvarer.", "The transcript could not be read. Try again, or report it if it persists.";

    // Versions.
    VERSIONS = "Versjoner", "Versions";
    KIND = "Type", "Kind";
    BY = "Av", "By";
    TIME = "Tid", "Time";
    TEXT = "Tekst", "Text";
    CHANGES = "Endringer", "Changes";
    KI_DATA_ERASED = "(KI-data slettet)", "(AI data erased)";
    REASON = "Begrunnelse: ", "Reason: ";
    EDITED = "redigert", "edited";
    APPROVED = "godkjent", "approved";
    REJECTED = "avvist", "rejected";
    AMENDED = "rettet", "amended";

    // Decision form and confirmation.
    YOUR_DECISION = "Din vurdering", "Your decision";
    SUMMARY = "Sammendrag", "Summary";
    SAVE = "Lagre", "Save";
    APPROVE = "Godkjenn", "Approve";
    REJECT = "Avvis", "Reject";
    REJECT_THE_DRAFT = "Avvis utkastet", "Reject the draft";
    REJECT_HINT = "Avvis når utkastet ikke kan brukes. Begrunnelsen lagres i historikken.", "Reject when the draft cannot be used. The reason is kept in the history.";
    REJECT_REASON = "Hvorfor avvises utkastet? (minst 10 tegn)", "Why is the draft rejected? (at least 10 characters)";
    CONFIRM_APPROVAL = "Bekreft godkjenning", "Confirm the approval";
    CONFIRM_APPROVAL_TEXT = "Dette sammendraget blir samtalens kundeservicenotat og lagres i 5 år. Det kan senere rettes, med begrunnelse.", "This summary becomes the call's customer-service record and is kept for 5 years. It can be amended later, with a reason.";
    CONFIRM_REJECTION = "Bekreft avvisning", "Confirm the rejection";
    CONFIRM_REJECTION_TEXT = "Utkastet avvises med denne begrunnelsen. En avvisning kan ikke angres.", "The draft is rejected with this reason. A rejection cannot be undone.";
    CONFIRM = "Bekreft", "Confirm";
    CANCEL = "Avbryt", "Cancel";
    DONE_APPROVED = "Sammendraget er godkjent.", "The summary is approved.";
    DONE_REJECTED = "Utkastet er avvist.", "The draft is rejected.";
    DONE_SAVED = "Endringen er lagret.", "The edit is saved.";
    DONE_AMENDED = "Rettingen er lagret.", "The amendment is saved.";
    DONE_RECLASSIFIED = "Kategorien er endret.", "The category is changed.";
    NEXT_DRAFT = "Neste utkast: samtale {when}", "Next draft: call of {when}";
    NO_MORE_DRAFTS = "Ingen flere utkast venter.", "No more drafts are waiting.";
    FORM_HAS_ERRORS = "Skjemaet har en feil:", "The form has an error:";

    // Amendment and reclassification.
    AMEND_THE_APPROVED_SUMMARY = "Rett det godkjente sammendraget", "Amend the approved summary";
    AN_AMENDMENT_IS_A_NEW_VERSION = "En retting blir en ny versjon med begrunnelse; den godkjente teksten blir stående i historikken.", "An amendment is a new version with its reason; the approved text stays in the history.";
    AMENDED_SUMMARY = "Rettet sammendrag", "Amended summary";
    REASON_AT_LEAST_10_CHARACTERS = "Begrunnelse (minst 10 tegn)", "Reason (at least 10 characters)";
    SAVE_THE_AMENDMENT = "Lagre rettingen", "Save the amendment";
    SERVICE_CATEGORY = "Tjenestekategori", "Service category";
    NOW = "Nå: ", "Now: ";
    NEW_CATEGORY = "Ny kategori", "New category";
    IF_THE_CATEGORY_NEEDS_THE_5 = "Krever kategorien et 5-årsarkiv, lages arkivkopien fra opptaket; etter 24 timer er opptaket slettet og endringen avvises.", "If the category needs the 5-year archive, the archive copy is made from the recording; after 24 hours the recording is gone and the change is refused.";
    RECLASSIFY = "Endre kategori", "Reclassify";
    RECLASSIFY_FAILED = "Kategorien kunne ikke endres. Er opptaket slettet (24 timer etter samtalen), kan arkivkopien ikke lages.", "The category could not be changed. If the recording is deleted (24 hours after the call), the archive copy cannot be made.";

    // Transcript and player.
    TRANSCRIPT = "Transkripsjon", "Transcript";
    SPEAKER = "Taler", "Speaker";
    ADVISOR_2 = "rådgiver", "advisor";
    CUSTOMER = "kunde", "customer";
    BOTH_SPEAKERS = "begge", "both";
    PLAY_FROM = "Spill av fra {t}", "Play from {t}";
    TOPICS_2 = "Emner", "Topics";
    RECORDING = "Opptak", "Recording";
    PLAYER_LABEL = "Opptaket av samtalen", "The call's recording";
    YOUR_BROWSER_CANNOT_PLAY_AUDIO = "Nettleseren kan ikke spille av lyd.", "Your browser cannot play audio.";
    ENVELOPE_ALT = "Lydstyrken gjennom samtalen: rådgiverens kanal øverst, kundens nederst.", "The loudness through the call: the advisor's channel on top, the customer's below.";
    ENVELOPE_ALT_MONO = "Lydstyrken gjennom samtalen (én kanal med begge talere).", "The loudness through the call (one channel with both speakers).";
    ENVELOPE_LEGEND = "Øverst rådgiveren, nederst kunden.", "Advisor on top, customer below.";
    BACK_5 = "5 s tilbake", "Back 5 s";
    FORWARD_5 = "5 s fram", "Forward 5 s";
    SPEED = "Hastighet", "Speed";
    SHORTCUTS = "Hurtigtaster", "Keyboard shortcuts";
    KEY_PLAY = "spill av eller pause", "play or pause";
    KEY_BACK = "5 sekunder tilbake", "back 5 seconds";
    KEY_FORWARD = "5 sekunder fram", "forward 5 seconds";
    KEY_SLOWER = "lavere hastighet", "slower";
    KEY_FASTER = "høyere hastighet", "faster";
    KEYS_NOT_IN_FIELDS = "Tastene virker ikke mens du skriver i et felt.", "The keys do nothing while you type in a field.";
    KEY_SPACE = "mellomrom", "Space";

    // Refusals and errors.
    UNKNOWN_CALL = "Ukjent samtale.", "Unknown call.";
    NOT_AVAILABLE = "Ikke tilgjengelig.", "Not available.";
    ONLY_COMPLIANCE_RECLASSIFIES_A_CALL = "Bare compliance kan endre en samtales kategori.", "Only compliance reclassifies a call.";
    UNKNOWN_CATEGORY = "Ukjent kategori.", "Unknown category.";
    STATE_A_REASON_OF_AT_LEAST = "Oppgi en begrunnelse på minst 10 tegn.", "State a reason of at least 10 characters.";
    UNKNOWN_CALL_2 = "Ukjent samtale.", "unknown call";
    ONLY_THE_CALL_S_ADVISOR_OR = "Bare samtalens rådgiver eller compliance kan rette sammendraget.", "only the call's advisor or compliance amends its summary";
    ACTION_MUST_BE_EDIT_APPROVE_OR = "Handlingen må være edit, approve eller reject.", "action must be edit, approve or reject";
    ONLY_THE_CALL_S_ADVISOR_DECIDES = "Bare samtalens rådgiver kan avgjøre utkastet.", "only the call's advisor decides on its draft";
    THE_RECORDING_IS_DELETED_24_HOURS = "Lydopptaket er slettet (24 timer etter samtalen), og det finnes ingen kopi rollen din kan høre.", "The recording is deleted (24 hours after the call), and there is no copy your role may hear.";
    ERR_NO_DRAFT = "Samtalen har ikke noe utkast å vurdere (KI ble ikke brukt, kunden reserverte seg, KI-dataene er slettet, eller utkastet er ikke laget ennå).", "The call has no draft to decide on (AI not used, the customer opted out, the AI data is deleted, or the draft is not made yet).";
    ERR_REJECTION_REASON = "Skriv hvorfor utkastet avvises, med minst 10 tegn.", "Say why the draft is rejected, in at least 10 characters.";
    ERR_EMPTY_SUMMARY = "Sammendraget kan ikke være tomt.", "The summary cannot be empty.";
    ERR_TOO_LONG = "Teksten er for lang (over 20 000 byte).", "The text is too long (over 20,000 bytes).";
    ERR_TOPICS = "Velg minst ett emne fra listen.", "Choose at least one topic from the list.";
    ERR_CLOSED_APPROVED = "Utkastet er allerede godkjent.", "The draft is already approved.";
    ERR_CLOSED_REJECTED = "Utkastet er allerede avvist.", "The draft is already rejected.";
    ERR_CONFLICT = "Noen andre lagret en endring samtidig. Last siden på nytt og forsøk igjen.", "Someone else saved a change at the same time. Reload the page and try again.";
    ERR_KI_GONE = "KI-dataene for samtalen er slettet; utkastet kan ikke lenger vurderes.", "The call's AI data is deleted; the draft can no longer be decided on.";
    ERR_NOT_APPROVED = "Samtalen har ikke noe godkjent sammendrag å rette.", "The call has no approved summary to amend.";
    ERR_NO_CHANGE = "Rettingen endrer ingenting.", "The amendment changes nothing.";
    ERR_RECORD_GONE = "Det godkjente sammendraget er slettet; det er ikke noe å rette.", "The approved summary is deleted; there is nothing to amend.";
}
