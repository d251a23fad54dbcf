//! Disclosure packages for public authorities and Finansklagenemnda (R10):
//! one call's recording (or one conversation's log), its facts and its
//! retention history, packed as a tar archive and encrypted to the recipient's age X25519 public key
//! (`docs/disclosure-and-subject-requests.md` has the format).
//!
//! Package contents, in this order:
//! - `manifest.json`: every other file's name, size and SHA-256, who
//!   disclosed what to whom and why, and the policy rules that kept the audio;
//! - `metadata.json`: [`call_metadata`] plus the disclosure itself;
//! - `recording.wav`: the decrypted audio (the archive copy when there is one,
//!   else the 24-hour recording, else the 30-day KI copy); left out, with the
//!   reason in the manifest, when none can be read any more (expired, shredded);
//! - `approved-summary.json`: the approved summary (the customer-service
//!   record) with its approver and every review version, when there is one;
//! - `transcript.json`: the transcript while the call's KI data is kept.
//!
//! A conversation (chat, secure message, e-mail) is disclosed by its id as a
//! call is: `manifest.json`, `metadata.json` ([`conversation_metadata`]),
//! and its best copy — the securities archive, else the advisor record, else
//! the customer's online-bank copy — as `conversation.json` and, readable,
//! `conversation.txt` with what is kept until when.
//!
//! [`call_metadata`] and [`conversation_metadata`] are shared with the
//! data-subject export (`subject.rs`): each describes one call or
//! conversation only, so it never carries another customer's data.

use crate::ComplianceEdges;
use anyhow::{bail, Context, Result};
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::CallId;
use opptak_domain::retention::{ArtifactKind, Decision, RetentionFacts};
use opptak_domain::time::utc_time;
use opptak_vault::{reader, Recording, VaultError, Which};
use serde_json::{json, Value};
use std::path::Path;

/// The `format` of a package's manifest.
pub const PACKAGE_FORMAT: &str = "opptak-disclosure/1";

/// What the manifest says when the call has no approved summary.
pub const NO_SUMMARY: &str = "no approved summary";

/// One disclosure: which call, to whom, on whose authority and why.
#[derive(Clone, Debug)]
pub struct Request {
    pub call_id: CallId,
    /// The receiving authority or board, as named in the case.
    pub recipient: String,
    /// The recipient's age X25519 public key (`age1…`).
    pub recipient_key: String,
    pub case_ref: String,
    pub disclosed_by: String,
    pub reason: String,
}

/// One file inside a package (or an export): name, size, SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl FileEntry {
    pub fn of(name: &str, data: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            bytes: data.len() as u64,
            sha256: sha256_hex(data),
        }
    }

    fn json(&self) -> Value {
        json!({ "name": self.name, "bytes": self.bytes, "sha256": self.sha256 })
    }
}

/// An encrypted package, ready to be written.
pub struct Package {
    pub call_id: CallId,
    /// The age file: what goes to the recipient.
    pub encrypted: Vec<u8>,
    /// SHA-256 of `encrypted`.
    pub sha256: String,
    /// The files inside, in archive order (the manifest first).
    pub files: Vec<FileEntry>,
    /// Which artifact the audio came from, or `None` when none could be read.
    pub audio_source: Option<String>,
    /// Why each candidate audio artifact was not used.
    pub audio_missing: Vec<String>,
    /// A conversation's package (not a call's).
    pub conversation: bool,
    /// A conversation's package: which copy it holds (`chat-archive`,
    /// `chat-advisor`, `chat-customer`, or the redacted `chat-analysis`),
    /// or `None` when none can be read any more (the manifest says why).
    pub conversation_source: Option<String>,
    pub created_at_us: i64,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("call_id", &self.call_id)
            .field("sha256", &self.sha256)
            .field("files", &self.files)
            .field("audio_source", &self.audio_source)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A time as the packages show it.
pub(crate) fn utc(us: i64) -> String {
    format!("{} UTC", utc_time(us))
}

/// Parses the recipient's public key, explaining what one looks like.
pub fn parse_recipient(key: &str) -> Result<age::x25519::Recipient> {
    let key = key.trim();
    if key.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        bail!(
            "--recipient-key is an age *secret* key: it must never leave the recipient; ask them for their \
             public key instead (`age-keygen -y key.txt` prints it: age1…)"
        );
    }
    key.parse::<age::x25519::Recipient>().map_err(|e| {
        anyhow::anyhow!(
            "--recipient-key {key:?} is not an age X25519 recipient ({e}): expected the recipient's public key, \
             62 characters starting with age1 (e.g. age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p), \
             as printed by `age-keygen` or `rage-keygen`"
        )
    })
}

fn require(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        bail!("{what} must not be empty (it is recorded with the disclosure)");
    }
    Ok(())
}

/// Checks a request before any work: fields present, key well-formed.
pub fn validate(req: &Request) -> Result<age::x25519::Recipient> {
    require("--to", &req.recipient)?;
    require("--case", &req.case_ref)?;
    require("--by", &req.disclosed_by)?;
    require("--reason", &req.reason)?;
    parse_recipient(&req.recipient_key)
}

fn decision_json(d: &Decision) -> Value {
    json!({
        "kind": d.kind.as_str(),
        "kept": d.kept,
        "class": d.class.map(|c| c.as_str()),
        "tier": d.tier.as_str(),
        "expires_at": d.kept.then(|| utc(d.expires_at_us)),
        "held": d.held,
        "rules": d.chain,
    })
}

fn facts_json(f: &RetentionFacts) -> Value {
    json!({
        "service_category": f.service_category.as_str(),
        "desk": f.desk.as_str(),
        "ki_active": f.ki_active,
        "ended_at": utc(f.ended_at_us),
        "ki_opt_out_at": f.opt_out_at_us.map(utc),
        "reclassified": f.reclassified.as_ref().map(|(c, by)| json!({ "service_category": c.as_str(), "by": by })),
        "holds": f.holds,
        "extension": f.extension.as_ref().map(|e| json!({ "years": e.years, "authority": e.authority, "case": e.case })),
    })
}

/// When and how the customer was told that KI is used (issue 16, section
/// 6): the `KiNotice` evidence kept with the recording, or the bare
/// `customer_informed` of the call's start (a notice at 0 s); `null` when
/// KI was not requested.
pub fn ki_notice_json(f: &opptak_domain::CallFacts) -> Value {
    if !f.ki_enabled {
        return Value::Null;
    }
    let summary = f.ki_notice_summary();
    match (&f.ki_notice, f.customer_informed) {
        (None, true) => json!({
            "told": true,
            "method": "unspecified",
            "recorded_as": "at call start (customer_informed)",
            "at": utc(f.started_at_us),
            "from_audio_second": 0.0,
            "summary": summary,
        }),
        // With customer_informed as well, KI heard the call from 0 s; the
        // notice is the evidence of how the customer was told.
        (Some(n), informed) => json!({
            "told": true,
            "method": n.method.as_str(),
            "at": utc(n.at_us),
            "notice_at_audio_second": n.offset_us as f64 / 1e6,
            "from_audio_second": if informed { 0.0 } else { n.offset_us as f64 / 1e6 },
            "customer_informed_at_start": informed,
            "announcement_id": n.announcement_id,
            "by": n.by,
            "summary": summary,
        }),
        (None, false) => json!({ "told": false, "summary": summary }),
    }
}

/// Everything stored about one call, without audio: its facts, the
/// retention decisions with their rule chains, holds, each artifact and its
/// state, and the shredding and deletion evidence. Only this call's data.
pub async fn call_metadata(edges: &ComplianceEdges, call_id: &CallId) -> Result<Value> {
    let retention = &edges.retention;
    let (rec, facts) = retention
        .facts(call_id)
        .await
        .with_context(|| format!("reading call {call_id}"))?;
    let gaps = edges.vault.meta().gaps(&rec.recording_id).await?;
    let f = &rec.facts;
    let rate = f.format.sample_rate_hz() as f64;
    let seconds = |frames: u64| (frames as f64 / rate * 1000.0).round() / 1000.0;
    let call = json!({
        "call_id": f.call_id.as_str(),
        "customer_ref": f.customer_ref,
        "advisor_id": f.advisor_id,
        "desk": f.desk.as_str(),
        "service_category": f.service_category.as_str(),
        "direction": f.direction.as_str(),
        "started_at": utc(f.started_at_us),
        "started_at_us": f.started_at_us,
        "ended_at": rec.end.as_ref().map(|e| utc(e.ended_at_us)),
        "ended_at_us": rec.end.as_ref().map(|e| e.ended_at_us),
        "end_reason": rec.end.as_ref().map(|e| e.reason.as_str()),
        "complete": rec.complete,
        "codec": f.format.codec().as_str(),
        "sample_rate_hz": f.format.sample_rate_hz(),
        "channels": f.format.channels(),
        "channel_roles": f.format.channel_roles().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "duration_seconds": seconds(rec.progress.frames),
        "frames": rec.progress.frames,
        "gaps": gaps.iter().map(|g| json!({
            "at_seconds": seconds(g.at_frame),
            "seconds": seconds(g.frames),
            "first_missing_chunk": g.first_missing,
            "missing_chunks": g.missing,
        })).collect::<Vec<_>>(),
        "ki_enabled": f.ki_enabled,
        "customer_informed": f.customer_informed,
        "ki_notice": ki_notice_json(f),
        "ki_opt_out": rec.opt_out.as_ref().map(|o| json!({
            "at": utc(o.at_us),
            "requested_by": o.requested_by,
            "from_audio_second": (o.offset_us as f64 / 1e6),
        })),
    });
    let mut out = stored_metadata(edges, call_id, &facts).await?;
    out["call"] = call;
    Ok(out)
}

/// Everything stored about one conversation (chat, secure message, e-mail),
/// without its texts: its facts, and as for a call the retention decisions,
/// holds, each copy and its state, and the shredding and deletion evidence.
/// Only this conversation's data.
pub async fn conversation_metadata(edges: &ComplianceEdges, id: &CallId) -> Result<Value> {
    let (rec, facts) = edges
        .retention
        .conversation_facts(id)
        .await
        .with_context(|| format!("reading conversation {id}"))?;
    let f = &rec.facts;
    let conversation = json!({
        "conversation_id": f.conversation_id.as_str(),
        "channel": f.channel.as_str(),
        "customer_ref": f.customer_ref,
        "logged_in": f.logged_in(),
        "advisor_id": f.advisor_id,
        "handover_at": f.handover_at_us.map(utc),
        "desk": f.desk.as_str(),
        "service_category": f.service_category.as_str(),
        "started_at": utc(f.started_at_us),
        "started_at_us": f.started_at_us,
        "ended_at": rec.ended_at_us.map(utc),
        "ended_at_us": rec.ended_at_us,
        "end_reason": rec.end_reason,
        "messages": rec.messages,
        "written_at": rec.written_at_us.map(utc),
    });
    let mut out = stored_metadata(edges, id, &facts).await?;
    out["conversation"] = conversation;
    Ok(out)
}

/// What a call and a conversation share in their metadata: `retention`,
/// `holds`, `artifacts`, `shreddings`, `deletions`.
async fn stored_metadata(edges: &ComplianceEdges, id: &CallId, facts: &RetentionFacts) -> Result<Value> {
    let decisions = edges.retention.policy.explain(facts);
    let meta = edges.vault.meta();
    let stored = meta.retention_of(id).await?;
    let holds = meta.holds(Some(id), false).await?;
    let artifacts = meta.artifacts(id).await?;
    let shreddings = meta.shreddings(Some(id)).await?;
    let deletions = meta.deletions(Some(id)).await?;
    let artifacts: Vec<Value> = artifacts
        .iter()
        .map(|a| {
            let row = stored.iter().find(|r| r.artifact_id == a.artifact_id);
            let deleted = row.and_then(|r| r.deleted_at_us);
            let state = match (deleted, a.key.destroyed_at_us) {
                (Some(_), _) => "deleted",
                (None, Some(_)) => "unreadable (key destroyed)",
                (None, None) => "stored",
            };
            json!({
                "artifact_id": a.artifact_id,
                "kind": a.kind,
                "class": a.key.key.class,
                "key_id": a.key.key.key_id,
                "state": state,
                "complete": a.complete,
                "bytes": a.object.as_ref().map(|o| o.bytes),
                "deleted_at": deleted.map(utc),
                "key_destroyed_at": a.key.destroyed_at_us.map(utc),
                "retention": row.map(|r| json!({
                    "class": r.class,
                    "tier": r.tier,
                    "expires_at": utc(r.expires_at_us),
                    "held": r.held,
                    "rules": r.rules.lines().collect::<Vec<_>>(),
                    "decided_at": utc(r.decided_at_us),
                })),
            })
        })
        .collect();
    Ok(json!({
        "retention": {
            "facts": facts_json(facts),
            "decisions": decisions.iter().map(decision_json).collect::<Vec<_>>(),
            "explanation": opptak_domain::retention::render_explanation(facts, &decisions),
        },
        "holds": holds.iter().map(|h| json!({
            "hold_id": h.hold_id,
            "case": h.case_ref,
            "reason": h.reason,
            "placed_by": h.placed_by,
            "placed_at": utc(h.placed_at_us),
            "release_requested_by": h.release_requested_by,
            "released_by": h.released_by,
            "released_at": h.released_at_us.map(utc),
        })).collect::<Vec<_>>(),
        "artifacts": artifacts,
        "shreddings": shreddings.iter().map(|s| json!({
            "key_id": s.key_id,
            "class": s.class,
            "kek_id": s.kek_id,
            "at": utc(s.shredded_at_us),
            "reason": s.reason,
            "requested_by": s.requested_by,
        })).collect::<Vec<_>>(),
        "deletions": deletions.iter().map(|d| json!({
            "artifact_id": d.artifact_id,
            "kind": d.kind,
            "class": d.class,
            "tier": d.tier,
            "rule": d.rule,
            "expired_at": utc(d.expired_at_us),
            "deleted_at": utc(d.deleted_at_us),
            "key_shredded": d.key_shredded,
        })).collect::<Vec<_>>(),
    }))
}

/// The copies of a conversation a person may be given, best first: the
/// securities archive, the advisor record, the customer's online-bank copy.
/// The redacted analysis copy is not among them: it stands in only when
/// none of these is left ([`read_conversation`]).
pub const CONVERSATION_COPIES: [ArtifactKind; 3] = [
    ArtifactKind::ChatArchive,
    ArtifactKind::ChatAdvisor,
    ArtifactKind::ChatCustomer,
];

/// One readable copy of a conversation and which kind it is.
pub struct ConversationCopy {
    pub kind: ArtifactKind,
    pub log: ConversationLog,
}

/// Reads one copy of a conversation; `Ok(Err(why))` when it is legitimately
/// gone (never written, its key destroyed). Anything else is an error, as
/// for audio ([`read_audio`]).
pub(crate) async fn read_copy(
    edges: &ComplianceEdges,
    id: &CallId,
    kind: ArtifactKind,
) -> Result<std::result::Result<ConversationLog, VaultError>> {
    let sealed = opptak_crypto::segment::ArtifactKind::Conversation;
    match edges
        .vault
        .read_json::<ConversationLog>(id, kind.as_str(), sealed)
        .await
    {
        Ok(log) => Ok(Ok(log)),
        Err(e @ (VaultError::KeyDestroyed { .. } | VaultError::NoArtifact { .. })) => Ok(Err(e)),
        Err(e) => Err(e).with_context(|| format!("reading the {kind} copy of conversation {id}")),
    }
}

/// Every copy of a conversation that can still be read, best first
/// ([`CONVERSATION_COPIES`]); the redacted analysis copy only when none of
/// those is left. Also why each other copy was not read.
pub async fn read_conversation(
    edges: &ComplianceEdges,
    id: &CallId,
) -> Result<(Vec<ConversationCopy>, Vec<(ArtifactKind, String)>)> {
    let mut copies = Vec::new();
    let mut missing = Vec::new();
    for kind in CONVERSATION_COPIES {
        match read_copy(edges, id, kind).await? {
            Ok(log) => copies.push(ConversationCopy { kind, log }),
            Err(why) => missing.push((kind, why.to_string())),
        }
    }
    let analysis = ArtifactKind::ChatAnalysis;
    if copies.is_empty() {
        match read_copy(edges, id, analysis).await? {
            Ok(log) => copies.push(ConversationCopy { kind: analysis, log }),
            Err(why) => missing.push((analysis, why.to_string())),
        }
    } else {
        missing.push((
            analysis,
            "not used: the redacted analysis copy of a conversation whose full copy is given".into(),
        ));
    }
    Ok((copies, missing))
}

/// A conversation as a person reads it: who, where, when, every message with
/// its attachments (references), and what is kept of it until when.
pub fn render_conversation(copy: &ConversationCopy, decisions: &[Decision]) -> String {
    use std::fmt::Write;
    let log = &copy.log;
    let mut s = String::new();
    let _ = writeln!(s, "conversation {} ({})", log.conversation_id, log.channel);
    if log.redacted {
        let _ = writeln!(
            s,
            "REDACTED: this is the analysis copy, the only one left: who wrote and every identifier in the \
             texts are replaced by tokens ([FNR], [PHONE], ...), attachment references are blanked"
        );
    } else {
        let _ = writeln!(s, "copy: {}", copy.kind);
    }
    if !log.customer_ref.is_empty() {
        let _ = writeln!(s, "customer: {}", log.customer_ref);
    }
    if let Some(ip) = &log.ip_address {
        let _ = writeln!(s, "ip address: {ip}");
    }
    if !log.advisor_id.is_empty() {
        let _ = writeln!(s, "advisor: {}", log.advisor_id);
    }
    let _ = writeln!(s, "desk: {}, service: {}", log.desk, log.service_category);
    let _ = writeln!(s, "started: {}", utc(log.started_at_us));
    if let Some(at) = log.handover_at_us {
        let _ = writeln!(s, "handed over to an advisor: {}", utc(at));
    }
    let _ = writeln!(s, "ended: {} ({})", utc(log.ended_at_us), log.end_reason);
    let _ = writeln!(s);
    for m in &log.messages {
        let who = if m.sender_id.is_empty() {
            m.sender.as_str().to_owned()
        } else {
            format!("{} {}", m.sender, m.sender_id)
        };
        let _ = writeln!(s, "[{}] {who}:", utc(m.at_us));
        for line in m.text.lines() {
            let _ = writeln!(s, "    {line}");
        }
        for a in &m.attachments {
            let _ = writeln!(
                s,
                "    attachment: {} ({}, {} bytes)",
                if a.reference.is_empty() {
                    "[reference removed]"
                } else {
                    &a.reference
                },
                a.media_type,
                a.size_bytes
            );
        }
    }
    if !log.missing.is_empty() {
        let _ = writeln!(s, "\nmessages announced but never received: {:?}", log.missing);
    }
    let _ = writeln!(s, "\nwhat is kept:");
    for d in decisions {
        let _ = writeln!(
            s,
            "  {:<14} {}",
            d.kind.as_str(),
            match (d.kept, d.held) {
                (true, true) => "kept until a legal hold is released".to_owned(),
                (true, false) => format!("kept until {}", utc(d.expires_at_us)),
                (false, _) => "not kept".to_owned(),
            }
        );
        for why in &d.chain {
            let _ = writeln!(s, "  {:<14}   {why}", "");
        }
    }
    s
}

/// Reads one audio artifact; `Ok(Err(why))` when it is legitimately gone
/// (never written for this call, or its key destroyed). Anything else —
/// tampering, a missing object, an unreachable store — is an error: a
/// package must not silently lack audio that exists.
pub(crate) async fn read_audio(
    edges: &ComplianceEdges,
    call_id: &CallId,
    which: Which,
) -> Result<std::result::Result<Recording, VaultError>> {
    match edges.vault.read_artifact(call_id, which).await {
        Ok(r) => Ok(Ok(r)),
        Err(e @ (VaultError::KeyDestroyed { .. } | VaultError::NoArtifact { .. })) => Ok(Err(e)),
        Err(e) => Err(e).with_context(|| format!("reading the {} of call {call_id}", which.store_kind())),
    }
}

/// PCM16 WAV bytes of a decrypted artifact.
pub(crate) fn wav_bytes(rec: &Recording) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::with_capacity(rec.pcm.len() + 64));
    reader::write_wav(rec, &mut out).context("writing the WAV")?;
    Ok(out.into_inner())
}

fn tar(files: &[(&str, &[u8])], mtime_s: u64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime_s);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, *data)
            .with_context(|| format!("packing {name}"))?;
    }
    b.into_inner().context("finishing the tar archive")
}

/// Builds and encrypts the package (in memory; nothing is written).
/// `progress` sees each step.
pub async fn build(edges: &ComplianceEdges, req: &Request, progress: &mut dyn FnMut(&str)) -> Result<Package> {
    let recipient = validate(req)?;
    let call_id = &req.call_id;
    let now = edges.vault.clock().now_us();
    if edges.vault.meta().load_call(call_id).await?.is_none() {
        if edges.vault.meta().load_conversation(call_id).await?.is_some() {
            return build_conversation(edges, req, &recipient, progress).await;
        }
        bail!("no call {call_id}, nor a conversation of that id: check the id (`opptak recordings list`)");
    }
    progress(&format!("call {call_id}: reading facts and retention"));
    let mut metadata = call_metadata(edges, call_id).await?;
    let (_, facts) = edges.retention.facts(call_id).await?;

    // The audio: the 5-year archive copy, else the 24-hour recording, else
    // the 30-day KI copy — the first that can still be read.
    let mut audio = None;
    let mut missing = Vec::new();
    for which in [Which::Archive, Which::Recording, Which::Ki] {
        progress(&format!("call {call_id}: decrypting the {}", which.store_kind()));
        match read_audio(edges, call_id, which).await? {
            Ok(rec) => {
                audio = Some((which, rec));
                break;
            }
            Err(why) => missing.push(format!("{}: {why}", which.store_kind())),
        }
    }

    metadata["disclosure"] = disclosure_json(req, now);
    let ki_notice = metadata["call"]["ki_notice"].clone();
    let metadata = serde_json::to_vec_pretty(&metadata)?;
    let wav = audio.as_ref().map(|(_, rec)| wav_bytes(rec)).transpose()?;
    progress(&format!(
        "call {call_id}: the approved summary, its versions and the transcript"
    ));
    let reviews = opptak_store::review::SqlReview::open(&edges.metadata_url).await?;
    let (summary, summary_json) = approved_summary(edges, &reviews, call_id).await?;
    let (transcript, transcript_json) = transcript(edges, call_id).await?;

    let mut contents: Vec<(&str, &[u8])> = vec![("metadata.json", &metadata)];
    if let Some(wav) = &wav {
        contents.push(("recording.wav", wav));
    }
    if let Some(body) = &summary {
        contents.push(("approved-summary.json", body));
    }
    if let Some(body) = &transcript {
        contents.push(("transcript.json", body));
    }
    let rules = |kind| edges.retention.policy.decide(&facts, kind).chain;
    let audio_json = match &audio {
        Some((which, rec)) => json!({
            "included": true,
            "file": "recording.wav",
            "source": which.store_kind(),
            "artifact_id": rec.recording_id,
            "format": format!("PCM16 WAV, {} Hz, {} channel(s)", rec.facts.format.sample_rate_hz(), rec.facts.format.channels()),
            "seconds": rec.frames as f64 / rec.facts.format.sample_rate_hz() as f64,
            "gaps": rec.gaps.len(),
            "not_used": missing,
        }),
        None => json!({
            "included": false,
            "why": missing,
        }),
    };
    let manifest = json!({
        "call_id": call_id.as_str(),
        "audio": audio_json,
        "approved_summary": summary_json,
        "transcript": transcript_json,
        "ki_notice": ki_notice,
        "policy_rules": {
            "recording": rules(ArtifactKind::Recording),
            "archive-copy": rules(ArtifactKind::ArchiveCopy),
            "ki-audio": rules(ArtifactKind::KiAudio),
            "transcript": rules(ArtifactKind::Transcript),
            "approved-summary": rules(ArtifactKind::ApprovedSummary),
        },
    });
    progress(&format!("call {call_id}: packing and encrypting to {}", req.recipient));
    let (encrypted, files) = pack(&recipient, req, manifest, contents, now)?;
    Ok(Package {
        call_id: call_id.clone(),
        sha256: sha256_hex(&encrypted),
        encrypted,
        files,
        audio_source: audio.map(|(w, _)| w.store_kind().to_owned()),
        audio_missing: missing,
        conversation: false,
        conversation_source: None,
        created_at_us: now,
    })
}

/// The `disclosure` part of a package's `metadata.json`.
fn disclosure_json(req: &Request, now: i64) -> Value {
    json!({
        "case": req.case_ref,
        "recipient": req.recipient,
        "recipient_key": req.recipient_key.trim(),
        "disclosed_by": req.disclosed_by,
        "reason": req.reason,
        "created_at": utc(now),
    })
}

/// Completes `manifest` (what the package holds) with who disclosed what to
/// whom and every file's name, size and SHA-256, packs it first and
/// `contents` after it, and encrypts the tar to the recipient. Returns the
/// age file and the files inside, in archive order.
fn pack(
    recipient: &age::x25519::Recipient,
    req: &Request,
    mut manifest: Value,
    contents: Vec<(&str, &[u8])>,
    now: i64,
) -> Result<(Vec<u8>, Vec<FileEntry>)> {
    let entries: Vec<FileEntry> = contents.iter().map(|(n, d)| FileEntry::of(n, d)).collect();
    for (k, v) in [
        ("format", json!(PACKAGE_FORMAT)),
        ("opptak_version", json!(env!("CARGO_PKG_VERSION"))),
        ("created_at", json!(utc(now))),
        ("created_at_us", json!(now)),
        ("case", json!(req.case_ref)),
        ("recipient", json!(req.recipient)),
        ("recipient_key", json!(req.recipient_key.trim())),
        ("disclosed_by", json!(req.disclosed_by)),
        ("reason", json!(req.reason)),
        (
            "encryption",
            json!("age v1 (https://age-encryption.org/v1), one X25519 recipient: recipient_key"),
        ),
        ("files", json!(entries.iter().map(FileEntry::json).collect::<Vec<_>>())),
    ] {
        manifest[k] = v;
    }
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    let mut files = vec![FileEntry::of("manifest.json", &manifest)];
    files.extend(entries);
    let mut ordered: Vec<(&str, &[u8])> = vec![("manifest.json", &manifest)];
    ordered.extend(contents);
    let plain = tar(&ordered, now.div_euclid(1_000_000).max(0) as u64)?;
    let encrypted = age::encrypt(recipient, &plain).context("encrypting the package")?;
    Ok((encrypted, files))
}

/// A conversation's package: its metadata (facts, retention with the
/// explanation, holds, copies, evidence), its best copy as
/// `conversation.json` (the securities archive, else the advisor record,
/// else the customer's copy; the redacted analysis copy only when none is
/// left, and the manifest says so) and the same as `conversation.txt`.
async fn build_conversation(
    edges: &ComplianceEdges,
    req: &Request,
    recipient: &age::x25519::Recipient,
    progress: &mut dyn FnMut(&str),
) -> Result<Package> {
    let id = &req.call_id;
    let now = edges.vault.clock().now_us();
    progress(&format!("conversation {id}: reading facts and retention"));
    let mut metadata = conversation_metadata(edges, id).await?;
    let (_, facts) = edges.retention.conversation_facts(id).await?;
    let decisions = edges.retention.policy.explain(&facts);
    metadata["disclosure"] = disclosure_json(req, now);
    let metadata = serde_json::to_vec_pretty(&metadata)?;
    progress(&format!("conversation {id}: decrypting its best copy"));
    let (copies, mut missing) = read_conversation(edges, id).await?;
    let best = copies.into_iter().next();
    let mut contents: Vec<(&str, &[u8])> = vec![("metadata.json", &metadata)];
    let body = best.as_ref().map(|c| serde_json::to_vec_pretty(&c.log)).transpose()?;
    let text = best.as_ref().map(|c| render_conversation(c, &decisions));
    if let (Some(body), Some(text)) = (&body, &text) {
        contents.push(("conversation.json", body));
        contents.push(("conversation.txt", text.as_bytes()));
    }
    // Copies after the best one are the same conversation again.
    missing.retain(|(k, _)| best.as_ref().is_none_or(|b| b.kind != *k));
    let not_used: Vec<String> = missing.iter().map(|(k, why)| format!("{k}: {why}")).collect();
    let conversation_json = match &best {
        Some(c) => json!({
            "included": true,
            "files": ["conversation.json", "conversation.txt"],
            "source": c.kind.as_str(),
            "redacted": c.log.redacted,
            "messages": c.log.messages.len(),
            "not_used": not_used,
        }),
        None => json!({ "included": false, "why": not_used }),
    };
    let manifest = json!({
        "conversation_id": id.as_str(),
        "conversation": conversation_json,
        "retention": opptak_domain::retention::render_explanation(&facts, &decisions),
        "policy_rules": decisions.iter().map(|d| (d.kind.as_str().to_owned(), json!(d.chain))).collect::<serde_json::Map<_, _>>(),
    });
    progress(&format!(
        "conversation {id}: packing and encrypting to {}",
        req.recipient
    ));
    let (encrypted, files) = pack(recipient, req, manifest, contents, now)?;
    Ok(Package {
        call_id: id.clone(),
        sha256: sha256_hex(&encrypted),
        encrypted,
        files,
        audio_source: None,
        audio_missing: Vec::new(),
        conversation: true,
        conversation_source: best.map(|c| c.kind.as_str().to_owned()),
        created_at_us: now,
    })
}

/// The approved summary (the customer-service record: text, topics, who
/// approved it and when) with every version of the review before it — its
/// kind, author and time, and its text while the call's KI data is kept (30
/// days) — as the file `approved-summary.json`, and what the manifest says
/// of it. `NO_SUMMARY` when the call has none.
pub(crate) async fn approved_summary(
    edges: &ComplianceEdges,
    reviews: &opptak_store::review::SqlReview,
    call_id: &CallId,
) -> Result<(Option<Vec<u8>>, Value)> {
    let kind = ArtifactKind::ApprovedSummary.as_str();
    if !edges
        .vault
        .meta()
        .artifacts(call_id)
        .await?
        .iter()
        .any(|a| a.kind == kind)
    {
        return Ok((None, json!(NO_SUMMARY)));
    }
    let sealed_kind = opptak_crypto::segment::ArtifactKind::ApprovedSummary;
    let record: Value = match edges.vault.read_json(call_id, kind, sealed_kind).await {
        Ok(v) => v,
        Err(e @ VaultError::KeyDestroyed { .. }) => {
            return Ok((None, json!({ "included": false, "why": e.to_string() })));
        }
        Err(e) => return Err(e).with_context(|| format!("reading the approved summary of call {call_id}")),
    };
    let keys = edges.vault.review_keys(call_id).await?;
    let mut versions = Vec::new();
    for row in reviews.versions(call_id.as_str()).await? {
        let body = opptak_vault::ReviewText::open(call_id, row.version, &row.key_id, &row.sealed, &keys);
        versions.push(json!({
            "version": row.version,
            "kind": row.kind,
            "author": row.author,
            "at": utc(row.at_us),
            "text": body.as_ref().map(|b| b.text.clone()),
            "topics": body.as_ref().and_then(|b| b.topics.clone()),
            "reason": body.as_ref().and_then(|b| b.reason.clone()),
        }));
    }
    let manifest = json!({
        "included": true,
        "file": "approved-summary.json",
        "approved_by": record["approved_by"],
        "approved_at": record["approved_at_us"].as_i64().map(utc),
        "versions": versions.len(),
        "amended_at": record["amended_at_us"].as_i64().map(utc),
        "version_texts": if opptak_vault::ReviewText::ki_readable(&keys) {
            "included"
        } else {
            "amendments included; the others gone with the call's KI data (30 days or an opt-out)"
        },
    });
    let body = serde_json::to_vec_pretty(&json!({ "record": record, "versions": versions }))?;
    Ok((Some(body), manifest))
}

/// The stored transcript as `transcript.json` while it is kept (KI data:
/// 30 days or until an opt-out), and what the manifest says of it.
async fn transcript(edges: &ComplianceEdges, call_id: &CallId) -> Result<(Option<Vec<u8>>, Value)> {
    match opptak_ki::transcribe::read_transcript(&edges.vault, call_id).await {
        Ok(segments) => Ok((
            Some(serde_json::to_vec_pretty(&segments)?),
            json!({ "included": true, "file": "transcript.json", "segments": segments.len() }),
        )),
        Err(opptak_ki::transcribe::TranscribeError::Vault(
            e @ (VaultError::KeyDestroyed { .. } | VaultError::NoArtifact { .. }),
        )) => Ok((None, json!({ "included": false, "why": e.to_string() }))),
        Err(e) => Err(e).with_context(|| format!("reading the transcript of call {call_id}")),
    }
}

/// Creates `path` with mode 0600, refusing to overwrite anything; a failed
/// write removes the partial file.
pub(crate) fn write_new_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!(
                    "{} exists: refusing to overwrite it; choose another --out",
                    path.display()
                )
            }
            _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        })?;
    if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Builds the package and writes it to `out` (mode 0600, never over an
/// existing file); the disclosure is logged with its package hash.
pub async fn disclose(
    edges: &ComplianceEdges,
    req: &Request,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Package> {
    validate(req)?;
    let subject = match edges.vault.meta().load_conversation(&req.call_id).await? {
        Some(_) => format!("conversation:{}", req.call_id),
        None => format!("call:{}", req.call_id),
    };
    // Audited before anything is decrypted (R3, R9).
    edges
        .audit()
        .await?
        .record_allowed(
            &req.disclosed_by,
            "compliance",
            "disclosure",
            &subject,
            &format!("{} to {}: {}", req.case_ref, req.recipient, req.reason),
        )
        .await?;
    if out.exists() {
        bail!(
            "{} exists: refusing to overwrite it; choose another --out",
            out.display()
        );
    }
    let pkg = build(edges, req, progress).await?;
    progress(&format!("writing {}", out.display()));
    write_new_private(out, &pkg.encrypted)?;
    tracing::info!(
        call_id = %req.call_id,
        case = %req.case_ref,
        recipient = %req.recipient,
        by = %req.disclosed_by,
        reason = %req.reason,
        package_sha256 = %pkg.sha256,
        audio = pkg.audio_source.as_deref().unwrap_or("none"),
        conversation_copy = pkg.conversation_source.as_deref().unwrap_or("none"),
        "disclosure package created"
    );
    Ok(pkg)
}

/// The receipt printed for the disclosing officer's case file.
pub fn receipt(pkg: &Package, req: &Request, out: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "disclosure package {}", out.display());
    let _ = writeln!(
        s,
        "  {:<11} {}",
        if pkg.conversation { "conversation" } else { "call" },
        pkg.call_id
    );
    let _ = writeln!(s, "  case        {}", req.case_ref);
    let _ = writeln!(s, "  recipient   {} ({})", req.recipient, req.recipient_key.trim());
    let _ = writeln!(s, "  by          {}", req.disclosed_by);
    let _ = writeln!(s, "  reason      {}", req.reason);
    let _ = writeln!(s, "  created     {}", utc(pkg.created_at_us));
    if pkg.conversation {
        let _ = writeln!(
            s,
            "  copy        {}",
            match &pkg.conversation_source {
                Some(src) => format!("conversation.json and conversation.txt from the {src} copy"),
                None => "none left (manifest.json says why)".to_owned(),
            }
        );
    } else {
        let _ = writeln!(
            s,
            "  audio       {}",
            match &pkg.audio_source {
                Some(src) => format!("recording.wav from the {src}"),
                None => format!("none ({})", pkg.audio_missing.join("; ")),
            }
        );
    }
    let _ = writeln!(s, "  package     {} bytes, sha256 {}", pkg.encrypted.len(), pkg.sha256);
    for f in &pkg.files {
        let _ = writeln!(s, "  {:<15} {:>10} bytes  sha256 {}", f.name, f.bytes, f.sha256);
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_explained() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        assert!(parse_recipient(&public).is_ok());
        assert!(parse_recipient(&format!("  {public}\n")).is_ok());
        let e = parse_recipient("age1notakey").unwrap_err().to_string();
        assert!(e.contains("starting with age1"), "{e}");
        use age::secrecy::ExposeSecret;
        let e = parse_recipient(id.to_string().expose_secret()).unwrap_err().to_string();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn tar_is_deterministic() {
        let a = tar(&[("a.txt", b"one"), ("b.txt", b"two")], 1_800_000_000).unwrap();
        let b = tar(&[("a.txt", b"one"), ("b.txt", b"two")], 1_800_000_000).unwrap();
        assert_eq!(a, b);
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
    }

    #[test]
    fn a_conversation_reads_as_it_was_written_and_says_what_is_kept() {
        use opptak_domain::conversation::{Attachment, Message};
        use opptak_domain::model::{Channel, Desk, Sender, ServiceCategory};
        use opptak_domain::retention::{ConversationRetention, Policy};
        const END: i64 = 1_795_824_000_000_000;
        let log = ConversationLog {
            conversation_id: "chat-1".into(),
            channel: Channel::AinoChatbot,
            customer_ref: "kunde-9".into(),
            ip_address: None,
            advisor_id: "adv-5".into(),
            desk: Desk::CustomerCenter,
            service_category: ServiceCategory::Loan,
            started_at_us: END - 600_000_000,
            ended_at_us: END,
            end_reason: "closed_by_customer".into(),
            handover_at_us: Some(END - 300_000_000),
            messages: vec![Message {
                sequence: 1,
                message_id: "m1".into(),
                at_us: END - 599_000_000,
                sender: Sender::Customer,
                sender_id: String::new(),
                text: "Kan jeg få snakke med en rådgiver?\nDet gjelder boliglånet.".into(),
                attachments: vec![Attachment {
                    reference: "doc-77/lønnsslipp.pdf".into(),
                    media_type: "application/pdf".into(),
                    size_bytes: 5120,
                }],
            }],
            missing: vec![2],
            redacted: false,
        };
        let facts = RetentionFacts {
            service_category: ServiceCategory::Loan,
            desk: Desk::CustomerCenter,
            ki_active: false,
            ended_at_us: END,
            opt_out_at_us: None,
            reclassified: None,
            holds: Vec::new(),
            extension: None,
            conversation: Some(ConversationRetention {
                channel: Channel::AinoChatbot,
                logged_in: true,
                advisor: true,
                objected_at_us: None,
            }),
        };
        let decisions = Policy::default_policy().explain(&facts);
        let full = ConversationCopy {
            kind: ArtifactKind::ChatCustomer,
            log: log.clone(),
        };
        let text = render_conversation(&full, &decisions);
        for want in [
            "conversation chat-1 (aino_chatbot)",
            "copy: chat-customer",
            "customer: kunde-9",
            "advisor: adv-5",
            "handed over to an advisor: ",
            "] customer:\n    Kan jeg få snakke med en rådgiver?\n    Det gjelder boliglånet.\n",
            "attachment: doc-77/lønnsslipp.pdf (application/pdf, 5120 bytes)",
            "never received: [2]",
            "chat-advisor   kept until 2031-",
            "chat-customer  kept until 2029-",
            "chat-archive   not kept",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let analysis = ConversationCopy {
            kind: ArtifactKind::ChatAnalysis,
            log: log.redacted(),
        };
        let text = render_conversation(&analysis, &decisions);
        assert!(
            text.contains("REDACTED") && !text.contains("kunde-9") && !text.contains("lønnsslipp"),
            "{text}"
        );
        assert!(text.contains("attachment: [reference removed]"), "{text}");
    }

    #[test]
    fn sha256_hex_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
