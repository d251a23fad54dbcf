//! Data-subject requests (R11): access/portability ([`export`]) and erasure
//! ([`erase`]) for one pseudonymous customer reference.
//!
//! **Export** writes, for each of the customer's calls, a directory with
//! `metadata.json` ([`crate::disclose::call_metadata`]: this call only) and
//! every audio artifact that can still be decrypted as a WAV, the KI
//! transcript (`transcript.json`) and draft (`draft.json`) while they exist,
//! and for each of the customer's conversations (chat, secure messages,
//! e-mail) a directory with `metadata.json`
//! ([`crate::disclose::conversation_metadata`]), every copy that can still
//! be read as `<kind>.json` (the redacted analysis copy only when no other
//! is left), `conversation.txt` (the readable rendering, with what is kept
//! until when) and `recipients.json`; plus a
//! top-level `index.json` naming every file with its SHA-256. Directories
//! are created 0700, files 0600.
//!
//! **Erasure** crypto-shreds what the law lets go and reports what stays and
//! why. Per artifact (or copy of a conversation), in this order:
//! 1. the call or conversation is under a legal hold → stays (the hold id
//!    and case);
//! 2. the call is still being recorded, the conversation still open →
//!    stays (ask again after it ends);
//! 3. class `ki` → erased: KI artifacts are not exempt (R11); so is a
//!    conversation's analysis copy (`chat-analysis-1y`) and the customer's
//!    online-bank copy (`chat-customer-3y`);
//! 4. class `archive-5y` (a call's archive copy, a conversation's securities
//!    archive) and `chat-advisor-5y` (a conversation with an advisor) → stay
//!    while the policy keeps them, with the date, erased once it no longer
//!    does;
//! 5. class `audio-24h` → stays for an investment-advice call within its
//!    retention (the legally required record), erased otherwise; the
//!    telephony system's chunk key of the call follows the recording;
//! 6. any other class → stays, for a compliance officer to decide.
//!
//! Erasing is shredding the class's data key (with evidence naming the
//! officer and the reason), then deleting the now-unreadable object, marking
//! the artifact deleted with its own deletion evidence, and re-routing the
//! call's retention.

use crate::disclose::{
    call_metadata, conversation_metadata, read_audio, read_conversation, render_conversation, sha256_hex, utc,
    wav_bytes, write_new_private, FileEntry,
};
use crate::ComplianceEdges;
use anyhow::{bail, Context, Result};
use opptak_domain::model::{CallId, KeyClass};
use opptak_domain::retention::{ArtifactKind, Decision, Policy, RetentionFacts};
use opptak_store::meta::HoldRow;
use opptak_store::StoreError;
use opptak_vault::Which;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The `format` of an export's `index.json`.
pub const EXPORT_FORMAT: &str = "opptak-subject-export/1";

/// The class of the telephony system's chunk key (input topic only).
const TELEPHONY_CLASS: &str = "telephony";

/// One exported call.
#[derive(Clone, Debug)]
pub struct ExportedCall {
    pub call_id: CallId,
    /// Paths relative to the export directory.
    pub files: Vec<FileEntry>,
    /// Audio artifacts that exist no longer or never did: `(kind, why)`.
    pub unreadable: Vec<(String, String)>,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub customer_ref: String,
    pub dir: PathBuf,
    pub calls: Vec<ExportedCall>,
    /// The customer's conversations (`call_id` is the conversation id;
    /// `unreadable` the copies not exported, and why).
    pub conversations: Vec<ExportedCall>,
    pub index: FileEntry,
}

fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// The export directory: created 0700, or an existing empty one made 0700.
fn prepare_out(out: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if out.exists() {
        if !out.is_dir() {
            bail!("{} exists and is not a directory", out.display());
        }
        if std::fs::read_dir(out)?.next().is_some() {
            bail!(
                "{} is not empty: refusing to mix exports; choose a new --out",
                out.display()
            );
        }
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700))?;
        return Ok(());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    private_dir(out)
}

fn require_ref(customer_ref: &str) -> Result<()> {
    if customer_ref.trim().is_empty() {
        bail!("the customer reference must not be empty");
    }
    Ok(())
}

/// One call's or conversation's directory of an export, and the files
/// written into it.
struct ExportDir {
    dir: PathBuf,
    id: CallId,
    files: Vec<FileEntry>,
}

impl ExportDir {
    fn create(out: &Path, id: &CallId) -> Result<Self> {
        // Call and conversation ids are restricted to [A-Za-z0-9._:-] and
        // never "." or "..".
        let dir = out.join(id.as_str());
        private_dir(&dir)?;
        Ok(Self {
            dir,
            id: id.clone(),
            files: Vec::new(),
        })
    }

    fn put(&mut self, name: &str, data: &[u8]) -> Result<()> {
        write_new_private(&self.dir.join(name), data)?;
        self.files.push(FileEntry::of(&format!("{}/{name}", self.id), data));
        Ok(())
    }
}

/// Every disclosure of a call or conversation (GDPR art. 15(1)(c): the
/// recipients), from the audit log.
fn disclosed_to(entries: &[opptak_store::audit::AuditEntry]) -> Vec<serde_json::Value> {
    entries
        .iter()
        .map(|e| {
            json!({
                "at": utc(e.at_us),
                "by": e.event.actor,
                "case_and_recipient": e.event.reason,
            })
        })
        .collect()
}

/// Exports everything held about one customer to `out` (see the module docs).
pub async fn export(
    edges: &ComplianceEdges,
    by: &str,
    customer_ref: &str,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportReport> {
    require_ref(customer_ref)?;
    if by.trim().is_empty() {
        bail!("say who handles the request (kept in the audit log)");
    }
    // Audited before anything is decrypted (R3, R9).
    edges
        .audit()
        .await?
        .record_allowed(
            by,
            "compliance",
            "subject.export",
            &format!("customer:{customer_ref}"),
            "data-subject access request (GDPR art. 15, 20)",
        )
        .await?;
    let ids = edges.vault.meta().calls_of_customer(customer_ref).await?;
    prepare_out(out)?;
    let now = edges.vault.clock().now_us();
    let reporting = opptak_store::reporting::SqlReporting::open(&edges.metadata_url).await?;
    let audit_log = opptak_store::audit::SqlAudit::open(&edges.metadata_url).await?;
    let reviews = opptak_store::review::SqlReview::open(&edges.metadata_url).await?;
    let mut calls = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        progress(&format!("call {}/{}: {id}", i + 1, ids.len()));
        let mut dir = ExportDir::create(out, id)?;
        let mut put = |name: &str, data: &[u8]| dir.put(name, data);
        put(
            "metadata.json",
            &serde_json::to_vec_pretty(&call_metadata(edges, id).await?)?,
        )?;
        let mut unreadable = Vec::new();
        for which in [Which::Recording, Which::Archive, Which::Ki] {
            match read_audio(edges, id, which).await? {
                Ok(rec) => put(&format!("{}.wav", which.store_kind()), &wav_bytes(&rec)?)?,
                Err(opptak_vault::VaultError::NoArtifact { .. }) => {}
                Err(why) => unreadable.push((which.store_kind().to_owned(), why.to_string())),
            }
        }
        // KI text: the transcript and the draft (as stored, unredacted: it is
        // the customer's own data).
        use opptak_ki::transcribe::TranscribeError;
        use opptak_vault::VaultError;
        match opptak_ki::transcribe::read_transcript(&edges.vault, id).await {
            Ok(t) => put("transcript.json", &serde_json::to_vec_pretty(&t)?)?,
            Err(TranscribeError::Vault(VaultError::NoArtifact { .. })) => {}
            Err(why) => unreadable.push(("transcript".to_owned(), why.to_string())),
        }
        match opptak_ki::summarize::read_draft(&edges.vault, id).await {
            Ok(d) => put("draft.json", &serde_json::to_vec_pretty(&d)?)?,
            Err(TranscribeError::Vault(VaultError::NoArtifact { .. })) => {}
            Err(why) => unreadable.push(("draft".to_owned(), why.to_string())),
        }
        // The approved summary (the customer-service record) with its
        // versions, and what was derived and who received the call
        // (GDPR art. 15(1)(c): the recipients).
        let (summary, _) = crate::disclose::approved_summary(edges, &reviews, id).await?;
        if let Some(body) = summary {
            put("approved-summary.json", &body)?;
        }
        let indexed = reporting.call(id.as_str()).await?;
        let reviews = reporting.reviews(id.as_str()).await?;
        let disclosed = audit_log.about(&format!("call:{id}"), "disclosure").await?;
        let about = json!({
            "topics": indexed.as_ref().map(|c| json!({
                "topics": c.row.topics,
                "language": c.row.language,
                "desk": c.row.desk,
                "day": c.row.day,
                "review_decision": c.decision,
                "sampled_for_quality_control": c.sampled,
            })),
            "quality_control": reviews.iter().map(|r| json!({
                "reviewer": r.reviewer,
                "at": utc(r.at_us),
                "correctness": r.correctness,
                "relevance": r.relevance,
                "quality": r.quality,
                "flag": r.flag,
            })).collect::<Vec<_>>(),
            "disclosed_to": disclosed_to(&disclosed),
        });
        put("derived-and-recipients.json", &serde_json::to_vec_pretty(&about)?)?;
        calls.push(ExportedCall {
            call_id: id.clone(),
            files: dir.files,
            unreadable,
        });
    }
    let records = edges.vault.meta().conversations_of_customer(customer_ref, 0).await?;
    let mut conversations = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let id = &rec.facts.conversation_id;
        progress(&format!("conversation {}/{}: {id}", i + 1, records.len()));
        conversations.push(export_conversation(edges, &audit_log, id, out).await?);
    }
    let index = json!({
        "format": EXPORT_FORMAT,
        "opptak_version": env!("CARGO_PKG_VERSION"),
        "customer_ref": customer_ref,
        "created_at": utc(now),
        "calls": calls.iter().map(|c| json!({
            "call_id": c.call_id.as_str(),
            "files": c.files.iter().map(|f| json!({ "name": f.name, "bytes": f.bytes, "sha256": f.sha256 })).collect::<Vec<_>>(),
            "unreadable": c.unreadable.iter().map(|(k, why)| json!({ "artifact": k, "why": why })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "conversations": conversations.iter().map(|c| json!({
            "conversation_id": c.call_id.as_str(),
            "files": c.files.iter().map(|f| json!({ "name": f.name, "bytes": f.bytes, "sha256": f.sha256 })).collect::<Vec<_>>(),
            "not_exported": c.unreadable.iter().map(|(k, why)| json!({ "copy": k, "why": why })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let index = serde_json::to_vec_pretty(&index)?;
    write_new_private(&out.join("index.json"), &index)?;
    let files: usize = calls.iter().chain(&conversations).map(|c| c.files.len()).sum();
    tracing::info!(customer_ref, calls = calls.len(), conversations = conversations.len(), files,
        index_sha256 = %sha256_hex(&index), "data-subject export written");
    Ok(ExportReport {
        customer_ref: customer_ref.to_owned(),
        dir: out.to_path_buf(),
        calls,
        conversations,
        index: FileEntry::of("index.json", &index),
    })
}

/// Exports one conversation of the customer into `<out>/<id>/`:
/// `metadata.json` ([`conversation_metadata`]), every copy that can still be
/// read as `<kind>.json` (the redacted analysis copy only when no other is
/// left), `conversation.txt` (the best copy as a person reads it, with what
/// is kept until when) and `recipients.json` (its disclosures).
async fn export_conversation(
    edges: &ComplianceEdges,
    audit_log: &opptak_store::audit::SqlAudit,
    id: &CallId,
    out: &Path,
) -> Result<ExportedCall> {
    let mut dir = ExportDir::create(out, id)?;
    let mut put = |name: &str, data: &[u8]| dir.put(name, data);
    put(
        "metadata.json",
        &serde_json::to_vec_pretty(&conversation_metadata(edges, id).await?)?,
    )?;
    let (copies, missing) = read_conversation(edges, id).await?;
    for c in &copies {
        put(&format!("{}.json", c.kind), &serde_json::to_vec_pretty(&c.log)?)?;
    }
    if let Some(best) = copies.first() {
        let (_, facts) = edges.retention.conversation_facts(id).await?;
        let decisions = edges.retention.policy.explain(&facts);
        put("conversation.txt", render_conversation(best, &decisions).as_bytes())?;
    }
    let disclosed = audit_log.about(&format!("conversation:{id}"), "disclosure").await?;
    let recipients = json!({ "disclosed_to": disclosed_to(&disclosed) });
    put("recipients.json", &serde_json::to_vec_pretty(&recipients)?)?;
    Ok(ExportedCall {
        call_id: id.clone(),
        files: dir.files,
        unreadable: missing
            .into_iter()
            .map(|(k, why)| (k.as_str().to_owned(), why))
            .collect(),
    })
}

/// What happens to one artifact (or key) of an erasure request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its key was shredded now.
    Erased,
    /// Dry run: it would be erased.
    WouldErase,
    /// It stays, under the stated legal basis.
    Stays,
    /// Its key was destroyed before this request.
    AlreadyErased,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Erased => "ERASED",
            Self::WouldErase => "would erase",
            Self::Stays => "STAYS",
            Self::AlreadyErased => "already erased",
        }
    }
}

/// One line of an erasure report.
#[derive(Clone, Debug)]
pub struct EraseItem {
    pub call_id: CallId,
    /// The artifact id, or `<call>/telephony` for the telephony chunk key.
    pub artifact: String,
    /// `recording`, `archive-copy`, `ki-audio`, or `telephony-chunks`.
    pub kind: String,
    pub class: String,
    pub outcome: Outcome,
    /// Why it stays or goes: the policy rule's legal basis, a hold, ...
    pub basis: String,
    /// Anything an operator should know (an object the archive kept, ...).
    pub notes: Vec<String>,
}

/// What an erasure request did (or, dry run, would do).
#[derive(Clone, Debug)]
pub struct EraseReport {
    pub customer_ref: String,
    pub dry_run: bool,
    pub calls: Vec<CallId>,
    /// The customer's conversations (their items carry the conversation id
    /// as `call_id`).
    pub conversations: Vec<CallId>,
    pub items: Vec<EraseItem>,
    pub at_us: i64,
}

impl EraseReport {
    pub fn count(&self, o: Outcome) -> usize {
        self.items.iter().filter(|i| i.outcome == o).count()
    }

    /// The report printed for the officer: per call and artifact, the outcome and its basis.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "erasure request for customer {} at {}{}: {} call(s), {} conversation(s); {} {}, {} stay(s), {} already erased",
            self.customer_ref,
            utc(self.at_us),
            if self.dry_run {
                " (DRY RUN: nothing changed)"
            } else {
                ""
            },
            self.calls.len(),
            self.conversations.len(),
            self.count(Outcome::Erased) + self.count(Outcome::WouldErase),
            if self.dry_run { "would be erased" } else { "erased" },
            self.count(Outcome::Stays),
            self.count(Outcome::AlreadyErased),
        );
        let owners =
            (self.calls.iter().map(|c| ("call", c))).chain(self.conversations.iter().map(|c| ("conversation", c)));
        for (what, call) in owners {
            let _ = writeln!(s, "\n{what} {call}");
            for i in self.items.iter().filter(|i| &i.call_id == call) {
                let _ = writeln!(
                    s,
                    "  {:<17} {:<16} {:<15} {}",
                    i.kind,
                    i.class,
                    i.outcome.as_str(),
                    i.basis
                );
                for n in &i.notes {
                    let _ = writeln!(s, "  {:<17} {:<16} {:<15}   note: {n}", "", "", "");
                }
            }
        }
        s
    }
}

enum Verdict {
    Erase(String),
    Stay(String),
}

/// The rule of the policy that made a decision (its chain names it).
fn basis_of(policy: &Policy, d: &Decision) -> String {
    policy
        .rules
        .iter()
        .find(|r| d.chain.iter().any(|c| *c == format!("{} ({})", r.id, r.basis)))
        .map(|r| format!("rule {} ({})", r.id, r.basis))
        .unwrap_or_else(|| d.chain.join("; "))
}

/// What the law says about one class of a call's data (module docs, steps 1–6).
fn judge(
    policy: &Policy,
    facts: &RetentionFacts,
    holds: &[HoldRow],
    complete: bool,
    class: &str,
    now_us: i64,
) -> Verdict {
    if !holds.is_empty() {
        let held: Vec<String> = holds
            .iter()
            .map(|h| format!("{} (case {})", h.hold_id, h.case_ref))
            .collect();
        return Verdict::Stay(format!(
            "legal hold {}: kept until released (GDPR art. 17(3)(e): legal claims)",
            held.join(", ")
        ));
    }
    let conversation = facts.conversation.is_some();
    if !complete {
        return Verdict::Stay(if conversation {
            "the conversation is still open: repeat the request after it ends".into()
        } else {
            "the call is still being recorded: repeat the request after it ends".into()
        });
    }
    let category = facts.reclassified.as_ref().map_or(facts.service_category, |(c, _)| *c);
    let keeps = |d: &Decision| d.kept && !d.expired(now_us);
    match KeyClass::parse(class) {
        Some(KeyClass::Ki) => Verdict::Erase(
            "KI artifacts are not exempt from erasure (R11; GDPR art. 17(1)); the recording keeps its own rule".into(),
        ),
        Some(KeyClass::ChatAnalysis1y) => Verdict::Erase(
            "the analysis copy is not exempt from erasure (GDPR art. 17(1)); the other copies keep their own rules"
                .into(),
        ),
        Some(KeyClass::ChatCustomer3y) => Verdict::Erase(format!(
            "the customer's own online-bank copy: no legal obligation keeps it (GDPR art. 17(1)); it was kept under {}",
            basis_of(policy, &policy.decide(facts, ArtifactKind::ChatCustomer))
        )),
        // Written into the copies and shredded at the conversation's end;
        // an open conversation stays (above).
        Some(KeyClass::ChatOpen) => {
            Verdict::Erase("the messages of an ended conversation: its copies keep their own rules".into())
        }
        Some(c @ (KeyClass::Archive5y | KeyClass::ChatAdvisor5y)) => {
            let (kind, obligation) = match c {
                // What an advisor told the customer: the bank's record of
                // its advice, kept for its 5 years.
                KeyClass::ChatAdvisor5y => (
                    ArtifactKind::ChatAdvisor,
                    "the bank's record of a conversation with an advisor (GDPR art. 17(3)(b), (e))",
                ),
                _ if conversation => (ArtifactKind::ChatArchive, "legal obligation (GDPR art. 17(3)(b))"),
                _ => (ArtifactKind::ArchiveCopy, "legal obligation (GDPR art. 17(3)(b))"),
            };
            let d = policy.decide(facts, kind);
            if keeps(&d) {
                Verdict::Stay(format!(
                    "{obligation} until {}: {}",
                    utc(d.expires_at_us),
                    basis_of(policy, &d)
                ))
            } else {
                Verdict::Erase(format!(
                    "the policy no longer keeps it: {}",
                    d.chain.last().cloned().unwrap_or_default()
                ))
            }
        }
        Some(KeyClass::Audio24h) => {
            // The recording is the legal record for as long as it is kept when
            // the policy archives the call (by service category or by desk).
            let d = policy.decide(facts, ArtifactKind::Recording);
            let archive = policy.decide(facts, ArtifactKind::ArchiveCopy);
            if archive.kept && keeps(&d) {
                Verdict::Stay(format!(
                    "legal obligation (GDPR art. 17(3)(b)) until {}: the call is archived under {}; the recording under {}",
                    utc(d.expires_at_us),
                    basis_of(policy, &archive),
                    basis_of(policy, &d)
                ))
            } else if archive.kept {
                Verdict::Erase(format!(
                    "its retention ended {} (the archive copy is the legal record)",
                    utc(d.expires_at_us)
                ))
            } else {
                Verdict::Erase(format!(
                    "no legal obligation keeps the recording ({category}, {}; GDPR art. 17(1)): {}",
                    facts.desk,
                    basis_of(policy, &archive)
                ))
            }
        }
        _ if class == TELEPHONY_CLASS => {
            match judge(policy, facts, holds, complete, KeyClass::Audio24h.as_str(), now_us) {
                Verdict::Erase(_) => Verdict::Erase("follows the recording: the same audio on the input topic".into()),
                Verdict::Stay(_) => Verdict::Stay("follows the recording, which stays".into()),
            }
        }
        _ => Verdict::Stay(format!(
            "class {class} is not covered by the erasure rules of this version: a compliance officer decides"
        )),
    }
}

/// Why the law keeps `class` of a call now — a legal hold, or a legal
/// obligation of the policy (the erasure rules above) — or `None` when it may
/// be destroyed. `opptak keys shred` refuses what this protects unless two
/// signed-in compliance officers take the emergency path.
pub async fn protected(edges: &ComplianceEdges, call_id: &CallId, class: &str) -> Result<Option<String>> {
    let (facts, _) = edges.retention.any_facts(call_id).await?;
    let holds = edges.vault.meta().holds(Some(call_id), true).await?;
    let now = edges.vault.clock().now_us();
    Ok(match judge(&edges.retention.policy, &facts, &holds, true, class, now) {
        Verdict::Stay(why) => Some(why),
        Verdict::Erase(_) => None,
    })
}

/// A customer's objection (GDPR art. 21): to `ki` processing or to
/// `analysis`. Recorded per customer (audited first): every later call of
/// the customer starts with KI off unless the advisor records new consent in
/// the call (`CallStarted.ki_consent_renewed`), and the KI artifacts of the
/// customer's calls so far — the analysis copies — are shredded now. The
/// recordings and archive copies keep their own rules. An objection to
/// `analysis` also ends the analysis copies of the customer's conversations
/// at once (their key shredded, their objects deleted); the advisor record,
/// the customer's online-bank copy and the securities archive keep their own
/// rules, and later conversations get no analysis copy. Returns what it
/// shredded.
pub async fn object(
    edges: &ComplianceEdges,
    customer_ref: &str,
    kind: &str,
    by: &str,
    reason: &str,
) -> Result<Objected> {
    require_ref(customer_ref)?;
    if !matches!(kind, "ki" | "analysis") {
        bail!("--to {kind:?}: the customer objects to \"ki\" (KI processing) or \"analysis\"");
    }
    for (what, v) in [("--by", by), ("--reason", reason)] {
        if v.trim().is_empty() {
            bail!("{what} must not be empty (it is kept with the objection)");
        }
    }
    let subject = format!("customer:{customer_ref}");
    edges
        .audit()
        .await?
        .record_allowed(
            by,
            "compliance",
            "subject.object",
            &subject,
            &format!("{kind}: {reason}"),
        )
        .await?;
    let meta = edges.vault.meta();
    let now = edges.vault.clock().now_us();
    meta.record_objection(&opptak_store::meta::Objection {
        customer_ref: customer_ref.to_owned(),
        kind: kind.to_owned(),
        at_us: now,
        recorded_by: by.to_owned(),
        reason: reason.to_owned(),
    })
    .await?;
    let requested = format!("the customer's objection ({kind}) recorded by {by}");
    let mut shredded = Objected::default();
    for id in meta.calls_of_customer(customer_ref).await? {
        if edges.vault.purge_ki(&id, &requested, now).await? {
            shredded.calls += 1;
        }
        edges.retention.route(&id).await?;
    }
    if kind == "analysis" {
        for rec in meta.conversations_of_customer(customer_ref, 0).await? {
            let id = &rec.facts.conversation_id;
            // Its analysis copy ends: the key shredded (or, before the
            // conversation is written, created shredded so none is ever
            // made), the objects deleted; re-routing records why.
            let class = KeyClass::ChatAnalysis1y.as_str();
            if edges.vault.purge_class(id, class, &requested, by, now).await? {
                shredded.conversations += 1;
            }
            edges.retention.route(id).await?;
        }
    }
    tracing::info!(
        customer = customer_ref,
        kind,
        calls = shredded.calls,
        conversations = shredded.conversations,
        "objection recorded; KI data of earlier calls and analysis copies of conversations shredded"
    );
    Ok(shredded)
}

/// What an objection shredded at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Objected {
    /// Calls whose KI data this shredded.
    pub calls: u64,
    /// Conversations whose analysis copy this shredded.
    pub conversations: u64,
}

/// Something of a call an erasure judges: an artifact, or the telephony chunk key.
struct Target {
    artifact: String,
    kind: String,
    class: String,
    destroyed_at: Option<i64>,
    /// The object in the blob store, if any.
    path: Option<String>,
}

/// One erasure request: whose data, on whose authority, why.
#[derive(Clone, Debug)]
pub struct EraseRequest {
    pub customer_ref: String,
    pub by: String,
    pub reason: String,
    pub dry_run: bool,
}

/// Erases what the law lets go of one customer's calls (see the module docs)
/// and reports every artifact's outcome with its basis. A dry run changes nothing.
pub async fn erase(edges: &ComplianceEdges, req: &EraseRequest, progress: &mut dyn FnMut(&str)) -> Result<EraseReport> {
    require_ref(&req.customer_ref)?;
    for (what, v) in [("--by", &req.by), ("--reason", &req.reason)] {
        if v.trim().is_empty() {
            bail!("{what} must not be empty (it is kept as evidence of the erasure)");
        }
    }
    edges
        .audit()
        .await?
        .record_allowed(
            &req.by,
            "compliance",
            if req.dry_run {
                "subject.erase.dry-run"
            } else {
                "subject.erase"
            },
            &format!("customer:{}", req.customer_ref),
            &req.reason,
        )
        .await?;
    let meta = edges.vault.meta();
    let retention = &edges.retention;
    let now = edges.vault.clock().now_us();
    let calls = meta.calls_of_customer(&req.customer_ref).await?;
    let conversations: Vec<CallId> = meta
        .conversations_of_customer(&req.customer_ref, 0)
        .await?
        .into_iter()
        .map(|c| c.facts.conversation_id)
        .collect();
    let ids: Vec<CallId> = calls.iter().chain(&conversations).cloned().collect();
    let shred_reason = format!("data-subject erasure: {}", req.reason);
    let reporting = opptak_store::reporting::SqlReporting::open(&edges.metadata_url).await?;
    let mut items = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        progress(&format!("{}/{}: {id}", i + 1, ids.len()));
        let (facts, complete) = retention
            .any_facts(id)
            .await
            .with_context(|| format!("reading call or conversation {id}"))?;
        let holds = meta.holds(Some(id), true).await?;
        let rows = meta.retention_of(id).await?;
        let mut targets: Vec<Target> = meta
            .artifacts(id)
            .await?
            .into_iter()
            .map(|a| Target {
                path: a.object.map(|o| o.path),
                artifact: a.artifact_id,
                kind: a.kind,
                class: a.key.key.class,
                destroyed_at: a.key.destroyed_at_us,
            })
            .collect();
        // Keys that seal no artifact: the telephony system's chunk key of a
        // call; the messages of a conversation while it is open.
        for (class, kind) in [
            (TELEPHONY_CLASS, "telephony-chunks"),
            (KeyClass::ChatOpen.as_str(), "open-messages"),
        ] {
            if let Some(k) = meta.class_key(id, class).await? {
                targets.push(Target {
                    artifact: format!("{id}/{class}"),
                    kind: kind.into(),
                    class: class.into(),
                    destroyed_at: k.destroyed_at_us,
                    path: None,
                });
            }
        }
        let mut changed = false;
        for Target {
            artifact,
            kind,
            class,
            destroyed_at,
            path,
        } in targets
        {
            let mut item = EraseItem {
                call_id: id.clone(),
                artifact: artifact.clone(),
                kind,
                class: class.clone(),
                outcome: Outcome::Stays,
                basis: String::new(),
                notes: Vec::new(),
            };
            if let Some(at) = destroyed_at {
                item.outcome = Outcome::AlreadyErased;
                item.basis = format!("unreadable since {} (key destroyed)", utc(at));
                items.push(item);
                continue;
            }
            match judge(&edges.retention.policy, &facts, &holds, complete, &class, now) {
                Verdict::Stay(basis) => item.basis = basis,
                Verdict::Erase(basis) if req.dry_run => {
                    item.outcome = Outcome::WouldErase;
                    item.basis = basis;
                }
                Verdict::Erase(basis) => {
                    item.basis = basis;
                    item.outcome = match meta.shred_key(id, &class, &shred_reason, &req.by, now).await {
                        Ok(ev) => {
                            tracing::info!(call_id = %id, artifact = %artifact, %class, key_id = %ev.key_id,
                                by = %req.by, reason = %req.reason, "erased on a data-subject request");
                            changed = true;
                            Outcome::Erased
                        }
                        // Shredded meanwhile (another artifact of the class, the sweeper).
                        Err(StoreError::NotFound(_)) => Outcome::AlreadyErased,
                        Err(e) => return Err(e).with_context(|| format!("shredding the {class} key of call {id}")),
                    };
                    let mut object_gone = true;
                    if let Some(path) = &path {
                        match edges.vault.blobs().delete(path).await {
                            Ok(()) | Err(StoreError::NotFound(_)) => {}
                            Err(e) => {
                                // E.g. the WORM archive before its retain-until: the
                                // retention row stays live, so the sweeper retries.
                                object_gone = false;
                                item.notes.push(format!(
                                    "object {path} not deleted ({e}); it is unreadable, and the sweeper deletes it when the store allows"
                                ));
                            }
                        }
                    }
                    if let Some(row) = rows
                        .iter()
                        .find(|r| object_gone && r.artifact_id == artifact && r.deleted_at_us.is_none())
                    {
                        let mut row = row.clone();
                        row.rules = format!("subject-erasure (data-subject erasure by {}: {})", req.by, req.reason);
                        row.expires_at_us = now;
                        meta.record_deletion(&row, now).await?;
                    }
                }
            }
            items.push(item);
        }
        if changed {
            retention
                .route(id)
                .await
                .with_context(|| format!("re-routing call {id}"))?;
        }
        // With the KI data (a conversation's analysis copy) gone, the
        // content-free reporting rows (topics, QA sample and scores) go too:
        // they still link the customer's call to what it was about.
        let mut ki_gone = false;
        for class in [KeyClass::Ki, KeyClass::ChatAnalysis1y] {
            ki_gone |= meta
                .class_key(id, class.as_str())
                .await?
                .is_some_and(|k| k.destroyed_at_us.is_some());
        }
        if !req.dry_run && ki_gone {
            reporting.forget(id.as_str()).await?;
        }
    }
    let report = EraseReport {
        customer_ref: req.customer_ref.clone(),
        dry_run: req.dry_run,
        calls,
        conversations,
        items,
        at_us: now,
    };
    tracing::info!(
        customer_ref = %req.customer_ref,
        by = %req.by,
        reason = %req.reason,
        dry_run = req.dry_run,
        calls = report.calls.len(),
        conversations = report.conversations.len(),
        erased = report.count(Outcome::Erased),
        stays = report.count(Outcome::Stays),
        "data-subject erasure request handled"
    );
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opptak_domain::model::{Desk, ServiceCategory};

    const END: i64 = 1_795_824_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn facts(category: ServiceCategory, desk: Desk) -> RetentionFacts {
        RetentionFacts {
            service_category: category,
            desk,
            ki_active: true,
            ended_at_us: END,
            opt_out_at_us: None,
            reclassified: None,
            holds: Vec::new(),
            extension: None,
            conversation: None,
        }
    }

    fn stays(v: Verdict) -> String {
        match v {
            Verdict::Stay(b) => b,
            Verdict::Erase(b) => panic!("erased: {b}"),
        }
    }

    fn erased(v: Verdict) -> String {
        match v {
            Verdict::Erase(b) => b,
            Verdict::Stay(b) => panic!("stays: {b}"),
        }
    }

    #[test]
    fn what_the_law_keeps() {
        let p = Policy::default_policy();
        let inv = facts(ServiceCategory::InvestmentAdvice, Desk::Markets);
        let gen = facts(ServiceCategory::General, Desk::CustomerCenter);
        let j = |f: &RetentionFacts, class: &str, now: i64| judge(&p, f, &[], true, class, now);
        assert!(stays(j(&inv, "archive-5y", END + HOUR)).contains("Verdipapirhandelloven"));
        assert!(stays(j(&inv, "audio-24h", END + HOUR)).contains("archived"));
        // A Private Banking call about a fund savings plan (issue 16: it got
        // no archive copy and its recording "would erase"): archived by desk.
        let pb = facts(ServiceCategory::Savings, Desk::PrivateBanking);
        assert!(stays(j(&pb, "archive-5y", END + HOUR)).contains("advisory-desk-archive-5y"));
        assert!(stays(j(&pb, "audio-24h", END + HOUR)).contains("Private Banking"));
        assert!(erased(j(&inv, "audio-24h", END + 25 * HOUR)).contains("retention ended"));
        assert!(stays(j(&inv, "telephony", END + HOUR)).contains("follows the recording"));
        erased(j(&inv, "ki", END + HOUR));
        assert!(erased(j(&gen, "audio-24h", END + HOUR)).contains("no legal obligation"));
        erased(j(&gen, "telephony", END + HOUR));
        erased(j(&gen, "ki", END + HOUR));
        stays(j(&gen, "record-5y", END + HOUR));
        // Reclassified away from investment advice at a desk that is not
        // advisory: the archive is no longer required.
        let mut re = facts(ServiceCategory::InvestmentAdvice, Desk::CustomerCenter);
        re.reclassified = Some((ServiceCategory::Loan, "co-1".into()));
        erased(j(&re, "archive-5y", END + HOUR));
        // A hold keeps everything, KI included; so does a call still running.
        let hold = HoldRow {
            hold_id: "hold-1".into(),
            call_id: "c".into(),
            case_ref: "FKN-1".into(),
            reason: "complaint".into(),
            placed_by: "co-1".into(),
            placed_at_us: END,
            release_requested_by: None,
            release_requested_at_us: None,
            released_by: None,
            released_at_us: None,
        };
        assert!(stays(judge(&p, &gen, &[hold], true, "ki", END)).contains("hold-1 (case FKN-1)"));
        assert!(stays(judge(&p, &gen, &[], false, "ki", END)).contains("still being recorded"));
    }

    fn conversation(category: ServiceCategory, desk: Desk, logged_in: bool, advisor: bool) -> RetentionFacts {
        RetentionFacts {
            ki_active: false,
            conversation: Some(opptak_domain::retention::ConversationRetention {
                channel: opptak_domain::model::Channel::AinoChatbot,
                logged_in,
                advisor,
                objected_at_us: None,
            }),
            ..facts(category, desk)
        }
    }

    #[test]
    fn what_the_law_keeps_of_conversations() {
        let p = Policy::default_policy();
        let j = |f: &RetentionFacts, class: &str, now: i64| judge(&p, f, &[], true, class, now);
        const YEAR: i64 = 365 * 24 * HOUR;
        let inv = conversation(ServiceCategory::InvestmentAdvice, Desk::Markets, true, true);
        // Analysis and the customer's own copy go; the advisor record and
        // the securities archive stay for their 5 years, dated.
        erased(j(&inv, "chat-analysis-1y", END + HOUR));
        assert!(erased(j(&inv, "chat-customer-3y", END + HOUR)).contains("chat-customer-3y"));
        let advisor = stays(j(&inv, "chat-advisor-5y", END + HOUR));
        assert!(
            advisor.contains("chat-advisor-5y") && advisor.contains("2031-"),
            "{advisor}"
        );
        let archive = stays(j(&inv, "archive-5y", END + HOUR));
        assert!(
            archive.contains("chat-investment-archive-5y") && archive.contains("Verdipapirhandelloven"),
            "{archive}"
        );
        // After their 5 years (plus a day for leap years) they go too.
        let later = END + 5 * YEAR + 48 * HOUR;
        erased(j(&inv, "chat-advisor-5y", later));
        erased(j(&inv, "archive-5y", later));
        // A bot conversation at the customer center is not archived.
        let bot = conversation(ServiceCategory::General, Desk::CustomerCenter, true, false);
        erased(j(&bot, "archive-5y", END + HOUR));
        erased(j(&bot, "chat-advisor-5y", END + HOUR));
        // An open conversation's messages stay until it ends.
        assert!(stays(judge(&p, &inv, &[], false, "chat-open", END)).contains("still open"));
        erased(j(&inv, "chat-open", END));
    }
}
