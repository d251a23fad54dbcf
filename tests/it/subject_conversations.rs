//! Subject rights and disclosure for conversations (issue 17, section 5),
//! against the real broker and PostgreSQL when the services run.
//! Conversations come in through the messages role as a chat system sends
//! them: customer A has a logged-in Aino chat handed over to an advisor, an
//! investment-advice chat with a Markets advisor and a plain logged-in Aino
//! chat; customer B one Aino chat; one anonymous visitor another.
//!
//! - A's export holds every copy of A's conversations that still exists
//!   (machine-readable and readable, with what is kept until when), the
//!   redacted analysis copy only where nothing else is left, and nothing of
//!   B or the anonymous visitor.
//! - A's erasure (after a dry run that changes nothing) erases the analysis
//!   and online-bank copies and keeps the advisor record and the securities
//!   archive, with their dates in the report.
//! - A's objection to analysis shreds the analysis copies of A's
//!   conversations at once and A's next conversation gets none.
//! - A disclosure package holds the investment conversation's archive copy.
//! - `opptak policy explain` explains a conversation.

use crate::common;

use common::Env;
use opptak::app::{Edges, RunningConversations};
use opptak::chat::{ChatConversation, Say};
use opptak_compliance::disclose::{self, Request};
use opptak_compliance::subject::{self, EraseRequest, Outcome};
use opptak_crypto::LocalKeyring;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::{CallId, Channel, Desk, Sender, ServiceCategory};
use opptak_domain::time::{Clock, ManualClock};
use opptak_proto::v1;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

const SEC: i64 = 1_000_000;
const DAY: i64 = 86_400 * SEC;

/// What A's investment chat says first: it must come back in A's export.
const INVEST_TEXT: &str = "Jeg vil investere 200 000 kr i fond. Kontonummeret mitt er 1234.56.78903.";

struct World {
    env: Env,
    edges: Edges,
    shared: LocalKeyring,
    role: RunningConversations,
    prefix: String,
    a: String,
    b: String,
    /// A's handover chat, A's investment chat, A's plain Aino chat.
    handover: String,
    invest: String,
    bot: String,
    /// B's chat and the anonymous visitor's.
    b_chat: String,
    anonymous: String,
    ended: i64,
}

/// The document the customer attaches to their first message: its
/// reference must come back in their export and disclosure.
const ATTACHMENT: &str = "dok-2026/kontoutskrift-4471.pdf";

/// The events of one conversation: the customer's question (with a
/// document attached), an answer (the advisor's when one takes part, else
/// Aino's), for a handover the advisor's greeting after it, and the end.
#[allow(clippy::too_many_arguments)]
fn conversation(
    shared: &LocalKeyring,
    id: &str,
    customer: &str,
    channel: Channel,
    advisor: &str,
    desk: Desk,
    category: ServiceCategory,
    first: &str,
    handover: bool,
    ended: i64,
) -> Vec<v1::ConversationEvent> {
    let mut c = ChatConversation::new(id, shared).unwrap();
    let start = ended - 10 * 60 * SEC;
    let ip = customer.is_empty().then_some("198.51.100.23");
    let answer = if advisor.is_empty() {
        Sender::Bot
    } else {
        Sender::Advisor
    };
    let mut lines = vec![
        (Sender::Customer, "", first),
        (answer, advisor, "Takk, det ser jeg på."),
    ];
    if handover {
        lines.push((Sender::Advisor, "adv-5", "Hei, rådgiver her. Hva gjelder det?"));
    }
    let mut events = vec![c
        .started(start, channel, customer, ip, advisor, desk, category)
        .unwrap()];
    for (i, (sender, sender_id, text)) in lines.into_iter().enumerate() {
        let at_us = start + (i as i64 + 1) * SEC;
        if handover && sender_id == "adv-5" {
            events.push(c.handover(at_us - SEC / 2, "adv-5", Desk::CustomerCenter));
        }
        let mut ev = c
            .say(Say {
                at_us,
                sender,
                sender_id,
                text,
            })
            .unwrap();
        if let (0, Some(v1::conversation_event::Event::Message(m))) = (i, ev.event.as_mut()) {
            m.attachments.push(v1::Attachment {
                reference: ATTACHMENT.into(),
                media_type: "application/pdf".into(),
                size_bytes: 48_213,
            });
        }
        events.push(ev);
    }
    events.push(c.ended(ended));
    events
}

async fn world(name: &str) -> World {
    let common::chat::ChatEnv { env, shared, .. } = common::chat::chat_env(name, &[]).await;
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(base));
    let edges = env.edges().await.with_clock(clock).unwrap();
    edges.ensure_topics(&["messages"]).await.unwrap();
    let role = RunningConversations::spawn(edges.conversations());
    let prefix = common::unique(name);
    let ended = base - DAY;
    let w = World {
        env,
        edges,
        shared,
        role,
        a: format!("kunde-a-{prefix}"),
        b: format!("kunde-b-{prefix}"),
        handover: format!("{prefix}-handover"),
        invest: format!("{prefix}-invest"),
        bot: format!("{prefix}-bot"),
        b_chat: format!("{prefix}-kundeb"),
        anonymous: format!("{prefix}-anon"),
        prefix,
        ended,
    };
    let s = &w.shared;
    let general = ServiceCategory::General;
    let none = Desk::Unspecified;
    let aino = Channel::AinoChatbot;
    let mut events = Vec::new();
    events.extend(conversation(
        s,
        &w.handover,
        &w.a,
        aino,
        "",
        none,
        general,
        "Jeg vil snakke med en rådgiver.",
        true,
        ended,
    ));
    events.extend(conversation(
        s,
        &w.invest,
        &w.a,
        Channel::AdvisorChat,
        "adv-markets-7",
        Desk::Markets,
        ServiceCategory::InvestmentAdvice,
        INVEST_TEXT,
        false,
        ended,
    ));
    events.extend(conversation(
        s,
        &w.bot,
        &w.a,
        aino,
        "",
        none,
        general,
        "Hva er åpningstidene?",
        false,
        ended,
    ));
    events.extend(conversation(
        s,
        &w.b_chat,
        &w.b,
        aino,
        "",
        none,
        general,
        "Hei fra B.",
        false,
        ended,
    ));
    events.extend(conversation(
        s,
        &w.anonymous,
        "",
        aino,
        "",
        none,
        general,
        "Hei fra en gjest.",
        false,
        ended,
    ));
    w.publish(&events).await;
    let all = [&w.handover, &w.invest, &w.bot, &w.b_chat, &w.anonymous].map(|s| s.to_string());
    w.wait_written(&all).await;
    w
}

impl World {
    async fn publish(&self, events: &[v1::ConversationEvent]) {
        common::chat::publish(&self.edges, events).await;
    }

    async fn wait_written(&self, ids: &[String]) {
        common::chat::wait_written(&self.edges, ids, 120).await;
    }

    async fn read(&self, id: &str, kind: &'static str) -> Result<ConversationLog, String> {
        common::chat::read(&self.edges, id, kind).await
    }

    /// The copies (artifact kinds) of a conversation that are stored.
    async fn kinds(&self, id: &str) -> BTreeSet<String> {
        self.edges
            .meta
            .artifacts(&cid(id))
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }

    /// Whether the object of `kind` of a conversation is still in its store.
    async fn object_exists(&self, id: &str, kind: &str) -> bool {
        let arts = self.edges.meta.artifacts(&cid(id)).await.unwrap();
        let a = arts.iter().find(|a| a.kind == kind).unwrap();
        let path = &a.object.as_ref().unwrap().path;
        self.edges.vault().blobs().get(path).await.is_ok()
    }

    async fn stop(self) {
        self.role.stop().await.unwrap();
    }
}

fn cid(id: &str) -> CallId {
    CallId::parse(id).unwrap()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_disclosure_hold_the_customers_conversations() {
    let w = world("subjconv").await;
    // A's plain Aino chat lost its online-bank copy (shredded by hand): only
    // the redacted analysis copy is left of it.
    w.edges
        .vault()
        .shred(
            &cid(&w.bot),
            "chat-customer-3y",
            "test: only the analysis copy left",
            "co-test",
        )
        .await
        .unwrap();

    // A disclosure package of the investment chat: its best copy is the
    // securities archive, with its retention explanation.
    let identity = age::x25519::Identity::generate();
    let req = Request {
        call_id: cid(&w.invest),
        recipient: "Finanstilsynet".into(),
        recipient_key: identity.to_public().to_string(),
        case_ref: "FT-2026-88".into(),
        disclosed_by: "co-anne".into(),
        reason: "inspection of investment advice given in chat".into(),
    };
    let out = w.env.dir.path().join("invest.age");
    let compliance = w.edges.compliance();
    let pkg = disclose::disclose(&compliance, &req, &out, &mut |_| {}).await.unwrap();
    assert!(pkg.conversation);
    assert_eq!(pkg.conversation_source.as_deref(), Some("chat-archive"));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let receipt = disclose::receipt(&pkg, &req, &out);
    assert!(receipt.contains(&format!("conversation {}", w.invest)), "{receipt}");
    let (order, files) = crate::disclose::open_package(&identity, &out);
    assert_eq!(
        order,
        [
            "manifest.json",
            "metadata.json",
            "conversation.json",
            "conversation.txt"
        ]
    );
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["format"], disclose::PACKAGE_FORMAT);
    assert_eq!(manifest["conversation_id"], w.invest.as_str());
    assert_eq!(manifest["conversation"]["source"], "chat-archive");
    assert_eq!(manifest["conversation"]["redacted"], false);
    for f in manifest["files"].as_array().unwrap() {
        let data = &files[f["name"].as_str().unwrap()];
        assert_eq!(f["sha256"].as_str().unwrap(), disclose::sha256_hex(data));
    }
    let explanation = manifest["retention"].as_str().unwrap();
    assert!(
        explanation.contains("chat-investment-archive-5y") && explanation.contains("chat-advisor-5y"),
        "{explanation}"
    );
    let log: ConversationLog = serde_json::from_slice(&files["conversation.json"]).unwrap();
    assert_eq!(log, w.read(&w.invest, "chat-archive").await.unwrap());
    assert_eq!(log.customer_ref, w.a);
    assert_eq!(log.messages[0].text, INVEST_TEXT);
    assert_eq!(log.messages[0].attachments[0].reference, ATTACHMENT);
    let text = String::from_utf8(files["conversation.txt"].clone()).unwrap();
    assert!(
        text.contains(INVEST_TEXT) && text.contains("advisor adv-markets-7:"),
        "{text}"
    );
    let metadata: Value = serde_json::from_slice(&files["metadata.json"]).unwrap();
    assert_eq!(metadata["conversation"]["channel"], "advisor_chat");
    assert_eq!(metadata["disclosure"]["case"], "FT-2026-88");
    assert_eq!(metadata["artifacts"].as_array().unwrap().len(), 4);

    // A's export.
    let dir = w.env.dir.path().join("export-a");
    let report = subject::export(&compliance, "co-anne", &w.a, &dir, &mut |_| {})
        .await
        .unwrap();
    assert!(report.calls.is_empty());
    let exported: BTreeSet<String> = report.conversations.iter().map(|c| c.call_id.to_string()).collect();
    assert_eq!(
        exported,
        BTreeSet::from([w.handover.clone(), w.invest.clone(), w.bot.clone()]),
        "A's conversations, not B's, not the anonymous visitor's"
    );
    let names = |id: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir.join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    // Every copy that exists, the analysis copy not where a full copy is.
    assert_eq!(
        names(&w.invest),
        set(&[
            "metadata.json",
            "chat-archive.json",
            "chat-advisor.json",
            "chat-customer.json",
            "conversation.txt",
            "recipients.json"
        ])
    );
    assert_eq!(
        names(&w.handover),
        set(&[
            "metadata.json",
            "chat-advisor.json",
            "chat-customer.json",
            "conversation.txt",
            "recipients.json"
        ])
    );
    assert_eq!(
        names(&w.bot),
        set(&[
            "metadata.json",
            "chat-analysis.json",
            "conversation.txt",
            "recipients.json"
        ])
    );
    for f in std::fs::read_dir(dir.join(&w.invest)).unwrap() {
        let mode = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let mine: ConversationLog =
        serde_json::from_value(json_file(&dir.join(&w.invest).join("chat-customer.json"))).unwrap();
    assert_eq!(mine.customer_ref, w.a);
    assert_eq!(
        mine.messages[0].text, INVEST_TEXT,
        "the customer's own data, unredacted"
    );
    assert_eq!(mine.messages[0].attachments[0].reference, ATTACHMENT);
    assert_eq!(mine.messages[0].attachments[0].size_bytes, 48_213);
    let handed: ConversationLog =
        serde_json::from_value(json_file(&dir.join(&w.handover).join("chat-advisor.json"))).unwrap();
    assert_eq!(handed.advisor_id, "adv-5");
    assert!(handed.handover_at_us.is_some());
    assert_eq!(handed.messages.len(), 3);
    // The readable rendering: the messages and what is kept until when.
    let txt = std::fs::read_to_string(dir.join(&w.invest).join("conversation.txt")).unwrap();
    assert!(txt.contains("copy: chat-archive") && txt.contains(INVEST_TEXT), "{txt}");
    assert!(
        txt.contains(&format!("attachment: {ATTACHMENT} (application/pdf, 48213 bytes)")),
        "{txt}"
    );
    for kind in ["chat-analysis", "chat-advisor", "chat-customer", "chat-archive"] {
        assert!(
            txt.lines()
                .any(|l| l.trim_start().starts_with(kind) && l.contains("kept until 20")),
            "{kind}: {txt}"
        );
    }
    // Only the analysis copy left: exported, and said to be redacted.
    let analysis: ConversationLog =
        serde_json::from_value(json_file(&dir.join(&w.bot).join("chat-analysis.json"))).unwrap();
    assert!(analysis.redacted && analysis.customer_ref.is_empty());
    assert!(analysis.messages[0].attachments[0].reference.is_empty());
    let txt = std::fs::read_to_string(dir.join(&w.bot).join("conversation.txt")).unwrap();
    assert!(
        txt.starts_with(&format!("conversation {}", w.bot)) && txt.contains("REDACTED"),
        "{txt}"
    );
    // The index names every file with its hash, and why a copy is missing.
    let index = json_file(&dir.join("index.json"));
    let convs = index["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 3);
    for c in convs {
        for f in c["files"].as_array().unwrap() {
            let data = std::fs::read(dir.join(f["name"].as_str().unwrap())).unwrap();
            assert_eq!(f["sha256"].as_str().unwrap(), disclose::sha256_hex(&data));
        }
    }
    let bot = convs.iter().find(|c| c["conversation_id"] == w.bot.as_str()).unwrap();
    let missing = &bot["not_exported"];
    assert!(
        missing
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["copy"] == "chat-customer" && m["why"].as_str().unwrap().contains("key destroyed")),
        "{missing}"
    );
    // The recipients: the disclosure above.
    let recipients = json_file(&dir.join(&w.invest).join("recipients.json"));
    let to = recipients["disclosed_to"].as_array().unwrap();
    assert_eq!(to.len(), 1, "{recipients}");
    assert!(to[0]["case_and_recipient"].as_str().unwrap().contains("FT-2026-88"));
    // Nothing of B or the visitor anywhere in A's export.
    let mut all = String::new();
    for e in walk(&dir) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    for other in [&w.b, &w.b_chat, &w.anonymous] {
        assert!(!all.contains(other.as_str()), "{other} in A's export");
    }

    // `opptak policy explain` on a conversation.
    let env: Vec<(String, String)> = w.env.vars.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["policy", "explain", &w.handover])
        .env_remove("OPPTAK_CONFIG")
        .envs(env)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("conversation {}\n", w.handover)), "{text}");
    assert!(
        text.contains("channel: aino_chatbot, logged in, advisor adv-5"),
        "{text}"
    );
    assert!(
        text.contains("chat-advisor      chat-advisor-5y  hot      until 20")
            && text.contains("chat-customer     chat-customer-3y hot      until 20")
            && text.contains("chat-archive      -                hot      not kept"),
        "{text}"
    );
    let stored = text.split("\nstored:\n").nth(1).unwrap_or_default();
    assert_eq!(stored.lines().filter(|l| l.contains(" expires ")).count(), 3, "{text}");
    w.stop().await;
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_keeps_the_advisor_record_and_the_archive_until_their_dates() {
    let w = world("subjconverase").await;
    let compliance = w.edges.compliance();
    let mut req = EraseRequest {
        customer_ref: w.a.clone(),
        by: "co-anne".into(),
        reason: "DSR-2026-31".into(),
        dry_run: true,
    };
    // A dry run reports and changes nothing.
    let dry = subject::erase(&compliance, &req, &mut |_| {}).await.unwrap();
    assert_eq!(dry.conversations.len(), 3);
    assert!(dry.count(Outcome::WouldErase) >= 5, "{}", dry.render());
    assert_eq!(dry.count(Outcome::Erased), 0);
    w.read(&w.invest, "chat-customer").await.unwrap();
    w.read(&w.invest, "chat-analysis").await.unwrap();

    req.dry_run = false;
    let report = subject::erase(&compliance, &req, &mut |_| {}).await.unwrap();
    let rendered = report.render();
    let item = |id: &str, kind: &str| {
        report
            .items
            .iter()
            .find(|i| i.call_id.as_str() == id && i.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} of {id} in\n{rendered}"))
    };
    let five_years = opptak_domain::time::utc_time(opptak_domain::time::add_years(w.ended, 5));
    let until = &five_years[..10];
    for id in [&w.handover, &w.invest, &w.bot] {
        for kind in ["chat-analysis", "chat-customer"] {
            assert_eq!(item(id, kind).outcome, Outcome::Erased, "{rendered}");
            let e = w.read(id, kind).await.unwrap_err();
            assert!(e.contains("key destroyed"), "{e}");
            assert!(!w.object_exists(id, kind).await, "{id} {kind} object deleted");
        }
    }
    for (id, kind, basis) in [
        (&w.handover, "chat-advisor", "chat-advisor-5y"),
        (&w.invest, "chat-advisor", "chat-advisor-5y"),
        (&w.invest, "chat-archive", "Verdipapirhandelloven"),
    ] {
        let i = item(id, kind);
        assert_eq!(i.outcome, Outcome::Stays, "{rendered}");
        assert!(
            i.basis.contains(&format!("until {until}")) && i.basis.contains(basis),
            "{}",
            i.basis
        );
        w.read(id, kind).await.unwrap();
    }
    assert!(
        rendered.contains(&format!("\nconversation {}\n", w.invest)),
        "{rendered}"
    );
    assert!(rendered.contains("3 conversation(s)"), "{rendered}");
    // Evidence: the shredding names the officer and the request; the
    // erased copies' retention rows are closed with their deletion.
    let shreddings = w.edges.meta.shreddings(Some(&cid(&w.invest))).await.unwrap();
    let s = shreddings.iter().find(|s| s.class == "chat-analysis-1y").unwrap();
    assert!(s.reason.contains("DSR-2026-31") && s.requested_by == "co-anne", "{s:?}");
    let rows = w.edges.meta.retention_of(&cid(&w.invest)).await.unwrap();
    for r in &rows {
        let erased = r.kind == "chat-analysis" || r.kind == "chat-customer";
        assert_eq!(r.deleted_at_us.is_some(), erased, "{r:?}");
    }
    // Nothing of B's or the visitor's.
    w.read(&w.b_chat, "chat-customer").await.unwrap();
    w.read(&w.b_chat, "chat-analysis").await.unwrap();
    w.read(&w.anonymous, "chat-analysis").await.unwrap();
    // Asked again: what was erased is already erased, the rest still stays.
    let again = subject::erase(&compliance, &req, &mut |_| {}).await.unwrap();
    assert_eq!(again.count(Outcome::Erased), 0, "{}", again.render());
    assert_eq!(again.count(Outcome::Stays), 3, "{}", again.render());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objection_to_analysis_shreds_the_conversations_analysis_copies() {
    let w = world("subjconvobj").await;
    let compliance = w.edges.compliance();
    let done = subject::object(&compliance, &w.a, "analysis", "co-anne", "DSR-2026-40: no analysis")
        .await
        .unwrap();
    assert_eq!(done.conversations, 3);
    for id in [&w.handover, &w.invest, &w.bot] {
        let key = w
            .edges
            .meta
            .class_key(&cid(id), "chat-analysis-1y")
            .await
            .unwrap()
            .unwrap();
        assert!(key.destroyed_at_us.is_some(), "{id}");
        assert!(w.read(id, "chat-analysis").await.unwrap_err().contains("key destroyed"));
        assert!(!w.object_exists(id, "chat-analysis").await, "{id}");
        // The other copies keep their own rules.
        w.read(id, "chat-customer").await.unwrap();
    }
    w.read(&w.invest, "chat-archive").await.unwrap();
    w.read(&w.handover, "chat-advisor").await.unwrap();
    // The policy says why: the objection ends the analysis copy.
    let decisions = w.edges.retention().explain(&cid(&w.handover)).await.unwrap();
    let analysis = decisions.iter().find(|d| d.kind.as_str() == "chat-analysis").unwrap();
    assert!(
        analysis.chain.iter().any(|c| c.contains("objected to analysis")),
        "{:?}",
        analysis.chain
    );
    // B's analysis copy stays.
    w.read(&w.b_chat, "chat-analysis").await.unwrap();
    // Idempotent.
    let again = subject::object(&compliance, &w.a, "analysis", "co-anne", "DSR-2026-40: no analysis")
        .await
        .unwrap();
    assert_eq!(again.conversations, 0);
    // A's next conversation gets no analysis copy.
    let next = format!("{}-next", w.prefix);
    let events = conversation(
        &w.shared,
        &next,
        &w.a,
        Channel::AinoChatbot,
        "",
        Desk::Unspecified,
        ServiceCategory::General,
        "Hei igjen.",
        false,
        w.ended + 60 * SEC,
    );
    w.publish(&events).await;
    w.wait_written(std::slice::from_ref(&next)).await;
    assert_eq!(w.kinds(&next).await, BTreeSet::from(["chat-customer".to_string()]));
    w.stop().await;
}
