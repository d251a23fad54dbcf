//! Electronic communication (issue 17): conversations from the chat systems
//! through the messages role, against the real broker and PostgreSQL when
//! the services run. Every kind of conversation (anonymous Aino, logged-in
//! Aino, a handover to an advisor, investment advice, an objection to
//! analysis mid-life, a legal hold) is written into the copies the policy
//! keeps; then the clock travels: each copy exists and opens until one
//! second before its expiry and is gone and unreadable one sweep after.
//! Nothing of a message's text is in clear in the blobs, the archive, the
//! database or the Kafka log.

use crate::common;

use common::Env;
use opptak::app::{Edges, RunningConversations};
use opptak::chat::{encode, ChatConversation, Say};
use opptak_crypto::LocalKeyring;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::{CallId, Channel, Desk, Sender, ServiceCategory};
use opptak_domain::time::{add_years, Clock, ManualClock};
use opptak_proto::v1;
use opptak_proto::Message as _;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const SEC: i64 = 1_000_000;
const DAY: i64 = 86_400 * SEC;

/// The kinds of conversation the acceptance run mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    AnonymousAino,
    LoggedInAino,
    Handover,
    InvestmentAdvice,
    Objection,
    Held,
}

impl Kind {
    fn of(i: usize) -> Self {
        [
            Kind::AnonymousAino,
            Kind::LoggedInAino,
            Kind::Handover,
            Kind::InvestmentAdvice,
            Kind::Objection,
            Kind::Held,
        ][i % 6]
    }

    /// The copies the policy keeps, and for how many years from the end.
    fn copies(self) -> Vec<(&'static str, u32)> {
        let y = |n| n;
        match self {
            Kind::AnonymousAino => vec![("chat-analysis", y(1))],
            Kind::LoggedInAino => vec![("chat-analysis", y(1)), ("chat-customer", y(3))],
            Kind::Handover | Kind::Objection => {
                vec![("chat-analysis", y(1)), ("chat-advisor", y(5)), ("chat-customer", y(3))]
            }
            Kind::InvestmentAdvice | Kind::Held => vec![
                ("chat-analysis", y(1)),
                ("chat-advisor", y(5)),
                ("chat-customer", y(3)),
                ("chat-archive", y(5)),
            ],
        }
    }
}

struct Conv {
    id: String,
    kind: Kind,
    customer: String,
    ended: i64,
    /// A marker written in the customer's first message: it must never be
    /// found in clear at rest.
    marker: String,
}

pub(crate) struct World {
    pub(crate) env: Env,
    pub(crate) edges: Edges,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) shared: LocalKeyring,
    pub(crate) role: Option<RunningConversations>,
    db: sqlx::AnyPool,
    services: bool,
}

pub(crate) async fn world(name: &str) -> World {
    let common::chat::ChatEnv { env, shared, services } =
        common::chat::chat_env(name, &[("OPPTAK__MESSAGES__HOUSEKEEPING_S", "1")]).await;
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let clock = Arc::new(ManualClock::new(base));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    edges.ensure_topics(&["messages"]).await.unwrap();
    sqlx::any::install_default_drivers();
    let url = env.config.metadata_url();
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    let role = Some(RunningConversations::spawn(edges.conversations()));
    World {
        env,
        edges,
        clock,
        shared,
        role,
        db,
        services,
    }
}

impl World {
    pub(crate) async fn publish(&self, events: &[v1::ConversationEvent]) {
        common::chat::publish(&self.edges, events).await;
    }

    /// Waits until `n` conversations whose ids start with `prefix` are written.
    pub(crate) async fn wait_written(&self, prefix: &str, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (written,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM conversations WHERE call_id LIKE $1 AND written_at_us IS NOT NULL",
            )
            .bind(format!("{prefix}%"))
            .fetch_one(&self.db)
            .await
            .unwrap();
            if written as usize >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{written} of {n} conversations written after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(crate) async fn sweep(&self) {
        self.edges
            .retention()
            .sweep(1000, &AtomicBool::new(false), |_| {})
            .await
            .unwrap();
    }

    /// (artifact id, conversation, kind, expires, held, deleted) of every
    /// retention row of conversations whose id starts with `prefix`.
    async fn rows(&self, prefix: &str) -> Vec<(String, String, String, i64, bool, Option<i64>)> {
        let rows: Vec<(String, String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT artifact_id, call_id, kind, expires_at_us, held, deleted_at_us FROM retention \
             WHERE call_id LIKE $1 ORDER BY artifact_id",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.db)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(a, c, k, e, h, d)| (a, c, k, e, h != 0, d))
            .collect()
    }

    pub(crate) async fn read(&self, id: &str, kind: &'static str) -> Result<ConversationLog, String> {
        common::chat::read(&self.edges, id, kind).await
    }
}

/// The events of conversation `i` (its kind from `i`), ending at `ended`.
fn conversation(shared: &LocalKeyring, prefix: &str, i: usize, ended: i64) -> (Conv, Vec<v1::ConversationEvent>) {
    let kind = Kind::of(i);
    let id = format!("{prefix}-{i:04}");
    let customer = match kind {
        Kind::AnonymousAino => String::new(),
        // Objecting customers have conversations of their own only.
        Kind::Objection => format!("cust-obj-{i}"),
        _ => format!("cust-{}", i % 40),
    };
    let marker = format!("merke{i:04}xq");
    let mut c = ChatConversation::new(&id, shared).unwrap();
    let start = ended - 10 * 60 * SEC;
    let (channel, advisor, desk, category) = match kind {
        Kind::AnonymousAino | Kind::LoggedInAino | Kind::Handover => {
            (Channel::AinoChatbot, "", Desk::Unspecified, ServiceCategory::General)
        }
        Kind::InvestmentAdvice => (
            Channel::AdvisorChat,
            "adv-7",
            Desk::Markets,
            ServiceCategory::InvestmentAdvice,
        ),
        Kind::Objection => (
            Channel::SecureMessage,
            "adv-3",
            Desk::CustomerCenter,
            ServiceCategory::Savings,
        ),
        Kind::Held => (
            Channel::Email,
            "adv-9",
            Desk::PrivateBanking,
            ServiceCategory::InvestmentAdvice,
        ),
    };
    let ip = (kind == Kind::AnonymousAino).then_some("198.51.100.23");
    let mut events = vec![c
        .started(start, channel, &customer, ip, advisor, desk, category)
        .unwrap()];
    fn say<'a>(at_us: i64, sender: Sender, sender_id: &'a str, text: &'a str) -> Say<'a> {
        Say {
            at_us,
            sender,
            sender_id,
            text,
        }
    }
    let first = format!("Hei, jeg lurer på sparing {marker}. Fødselsnummeret mitt er 010180 12371.");
    events.push(c.say(say(start + SEC, Sender::Customer, "", &first)).unwrap());
    let answer = if advisor.is_empty() {
        Sender::Bot
    } else {
        Sender::Advisor
    };
    events.push(
        c.say(say(
            start + 2 * SEC,
            answer,
            advisor,
            "Du kan opprette en spareavtale i nettbanken.",
        ))
        .unwrap(),
    );
    if kind == Kind::Handover {
        events.push(c.handover(start + 3 * SEC, "adv-5", Desk::CustomerCenter));
        events.push(
            c.say(say(
                start + 4 * SEC,
                Sender::Advisor,
                "adv-5",
                "Hei, rådgiver her. Hva gjelder det?",
            ))
            .unwrap(),
        );
    }
    events.push(c.ended(ended));
    (
        Conv {
            id,
            kind,
            customer,
            ended,
            marker,
        },
        events,
    )
}

/// The acceptance run: `n` conversations of every kind.
async fn acceptance(n: usize) {
    let started = std::time::SystemTime::now();
    let w = world("conv").await;
    let prefix = common::unique("cv");
    let base = w.clock.now_us();
    let mut convs = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        // Five end times: the time travel below steps through each expiry.
        let ended = base - DAY + (i % 5) as i64 * SEC;
        let (c, evs) = conversation(&w.shared, &prefix, i, ended);
        convs.push(c);
        events.extend(evs);
    }
    let t0 = std::time::Instant::now();
    w.publish(&events).await;
    w.wait_written(&prefix, n, 600).await;
    eprintln!(
        "{n} conversations ({} events) written in {:?}",
        events.len(),
        t0.elapsed()
    );

    // Each conversation has exactly the copies its kind keeps, and they say
    // what was written: the customer's and the advisor's copies in full, the
    // analysis copy redacted and pseudonymous.
    for c in &convs {
        let id = CallId::parse(&c.id).unwrap();
        let kinds: BTreeSet<String> = w
            .edges
            .meta
            .artifacts(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect();
        let want: BTreeSet<String> = c.kind.copies().iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(kinds, want, "{} ({:?})", c.id, c.kind);
    }
    for c in convs.iter().take(12) {
        let analysis = w.read(&c.id, "chat-analysis").await.unwrap();
        assert!(analysis.redacted && analysis.customer_ref.is_empty() && analysis.ip_address.is_none());
        let text = analysis.text();
        assert!(text.contains("[FNR]") && !text.contains("010180"), "{text}");
        if c.kind == Kind::AnonymousAino {
            assert!(w.read(&c.id, "chat-customer").await.is_err());
            continue;
        }
        let mine = w.read(&c.id, "chat-customer").await.unwrap();
        assert_eq!(mine.customer_ref, c.customer);
        assert!(mine.messages[0].text.contains(&c.marker) && mine.messages[0].text.contains("010180 12371"));
        if c.kind == Kind::Handover {
            let adv = w.read(&c.id, "chat-advisor").await.unwrap();
            assert_eq!(adv.advisor_id, "adv-5");
            assert!(adv.handover_at_us.is_some());
            assert_eq!(adv.messages.len(), 3);
        }
    }

    // A legal hold on the held kind (placed by compliance, journaled).
    let retention = w.edges.retention();
    let mut holds = Vec::new();
    for c in convs.iter().filter(|c| c.kind == Kind::Held) {
        let h = retention
            .place_hold(&CallId::parse(&c.id).unwrap(), "FT-2026-77", "klagesak", "co-anne")
            .await
            .unwrap();
        holds.push(h.hold_id);
    }
    // An authority extends one investment-advice conversation to 7 years:
    // its securities archive copy only (the policy's [extension]), in the
    // WORM archive too.
    let extended = convs.iter().find(|c| c.kind == Kind::InvestmentAdvice).unwrap();
    let ext_id = CallId::parse(&extended.id).unwrap();
    retention
        .extend(&ext_id, 7, "Finanstilsynet", "FT-2026-0107", "co-anne")
        .await
        .unwrap();
    let archived = w
        .edges
        .meta
        .artifacts(&ext_id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "chat-archive")
        .and_then(|a| a.object)
        .unwrap();
    assert_eq!(
        w.edges.archive.retention(&archived.path).await.unwrap().retain_until_us,
        add_years(extended.ended, 7)
    );

    // The objecting customers object 100 days on: their analysis copies go
    // at once, everything else stays.
    w.clock.set(base + 100 * DAY);
    let objections: Vec<v1::ConversationEvent> = convs
        .iter()
        .filter(|c| c.kind == Kind::Objection)
        .map(|c| {
            ChatConversation::new(&c.id, &w.shared)
                .unwrap()
                .objection(base + 100 * DAY)
        })
        .collect();
    w.publish(&objections).await;
    let objected: Vec<&Conv> = convs.iter().filter(|c| c.kind == Kind::Objection).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for c in &objected {
        loop {
            let key = w
                .edges
                .meta
                .class_key(&CallId::parse(&c.id).unwrap(), "chat-analysis-1y")
                .await
                .unwrap();
            if key.is_some_and(|k| k.destroyed_at_us.is_some()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "objection of {} not applied",
                c.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(w.read(&c.id, "chat-analysis").await.is_err());
        assert!(w.read(&c.id, "chat-customer").await.is_ok());
        assert!(w.read(&c.id, "chat-advisor").await.is_ok());
    }
    let explained = opptak_domain::retention::render_explanation(
        &retention
            .any_facts(&CallId::parse(&objected[0].id).unwrap())
            .await
            .unwrap()
            .0,
        &retention
            .explain(&CallId::parse(&objected[0].id).unwrap())
            .await
            .unwrap(),
    );
    assert!(explained.contains("objected to analysis"), "{explained}");
    assert!(explained.contains("chat-advisor-5y"), "{explained}");
    w.sweep().await;

    eprintln!("checked, held and objected after {:?}", t0.elapsed());
    // Time travel through every expiry (up to the extended 7 years).
    let expiry_of = |c: &Conv, kind: &str| -> Option<i64> {
        if c.id == extended.id && kind == "chat-archive" {
            return Some(add_years(c.ended, 7));
        }
        c.kind
            .copies()
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, years)| add_years(c.ended, *years))
    };
    let rows = w.rows(&prefix).await;
    let mut expiries: BTreeSet<i64> = BTreeSet::new();
    let by_id: BTreeMap<&str, &Conv> = convs.iter().map(|c| (c.id.as_str(), c)).collect();
    for (_, cid, kind, expires, held, deleted) in &rows {
        let c = by_id[cid.as_str()];
        if c.kind == Kind::Objection && kind == "chat-analysis" {
            assert!(deleted.is_some(), "{cid}: an objected analysis copy still listed");
            continue;
        }
        assert_eq!(Some(*expires), expiry_of(c, kind), "{cid} {kind}");
        assert_eq!(*held, c.kind == Kind::Held, "{cid} {kind}");
        if !held {
            expiries.insert(*expires);
        }
    }
    let sample: Vec<&Conv> = convs.iter().step_by((n / 60).max(1)).collect();
    for e in expiries {
        w.clock.set(e - SEC);
        w.sweep().await;
        for (a, cid, kind, expires, _, deleted) in w.rows(&prefix).await {
            if expires >= e {
                assert!(
                    deleted.is_none(),
                    "{a} ({cid} {kind}) deleted one second before its expiry"
                );
            }
        }
        for c in sample.iter().filter(|c| c.kind != Kind::Held) {
            for (kind, _) in c.kind.copies() {
                let exp = w
                    .rows(&c.id)
                    .await
                    .into_iter()
                    .find(|r| r.2 == kind)
                    .map(|r| r.3)
                    .unwrap();
                let objected = c.kind == Kind::Objection && kind == "chat-analysis";
                if exp >= e && !objected {
                    assert!(
                        w.read(&c.id, kind).await.is_ok(),
                        "{} {kind} unreadable before {exp}",
                        c.id
                    );
                }
            }
        }
        w.clock.set(e);
        w.sweep().await;
        for (a, cid, kind, expires, held, deleted) in w.rows(&prefix).await {
            if expires == e && !held {
                assert!(deleted.is_some(), "{a} ({cid} {kind}) not deleted at its expiry");
            }
        }
        for c in sample.iter().filter(|c| c.kind != Kind::Held) {
            for (kind, _) in c.kind.copies() {
                let exp = w
                    .rows(&c.id)
                    .await
                    .into_iter()
                    .find(|r| r.2 == kind)
                    .map(|r| r.3)
                    .unwrap();
                if exp <= e {
                    let r = w.read(&c.id, kind).await;
                    assert!(r.is_err(), "{} {kind} still readable after its expiry", c.id);
                }
            }
        }
    }
    eprintln!("time travel done after {:?}", t0.elapsed());
    // The held conversations outlived it all; released by two officers, they go.
    let held: Vec<&Conv> = convs.iter().filter(|c| c.kind == Kind::Held).collect();
    for c in &held {
        assert!(w.read(&c.id, "chat-archive").await.is_ok(), "{} held", c.id);
        assert!(w.read(&c.id, "chat-analysis").await.is_ok(), "{} held", c.id);
    }
    for h in &holds {
        retention.release_hold(h, "co-anne").await.unwrap();
        retention.release_hold(h, "co-bjorn").await.unwrap();
    }
    w.sweep().await;
    for c in &held {
        assert!(w.read(&c.id, "chat-customer").await.is_err(), "{} released", c.id);
        assert!(w.read(&c.id, "chat-advisor").await.is_err(), "{} released", c.id);
    }
    let keys: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT class, destroyed_at_us FROM data_keys WHERE call_id LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_all(&w.db)
            .await
            .unwrap();
    assert!(!keys.is_empty());
    for (class, destroyed) in &keys {
        assert!(destroyed.is_some(), "a {class} key outlived every copy");
    }

    // No message text in clear anywhere at rest: every customer's first
    // message carries a marker "merke<nnnn>xq"; none may be found.
    let mut scanned = vec![w.env.blob_dir(), w.env.dir.path().join("archive")];
    if w.services {
        if let Ok(pg) = std::env::var("OPPTAK_TEST_PG_DATA") {
            sqlx::query("CHECKPOINT").execute(&w.db).await.unwrap();
            // This test's database and the WAL it wrote.
            let (oid,): (String,) =
                sqlx::query_as("SELECT CAST(oid AS TEXT) FROM pg_database WHERE datname = current_database()")
                    .fetch_one(&w.db)
                    .await
                    .unwrap();
            scanned.push(std::path::Path::new(&pg).join("base").join(oid));
            scanned.push(std::path::Path::new(&pg).join("pg_wal"));
        }
        if let Ok(kafka) = std::env::var("OPPTAK_TEST_KAFKA_DATA") {
            let topic = w.edges.config.messages_config().topic;
            for e in std::fs::read_dir(&kafka).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with(&topic) {
                    scanned.push(e.path());
                }
            }
        }
    } else {
        scanned.push(w.env.dir.path().to_path_buf());
    }
    let mut files = 0;
    for dir in &scanned {
        for f in walk(dir) {
            if f.metadata().and_then(|m| m.modified()).is_ok_and(|m| m < started) {
                continue;
            }
            files += 1;
            let Ok(bytes) = std::fs::read(&f) else { continue };
            assert!(marker_at(&bytes).is_none(), "message text in clear in {}", f.display());
        }
    }
    assert!(files > 10, "files scanned: {files}");
    eprintln!("{files} files scanned after {:?}", t0.elapsed());
    // A positive control: the scan finds a marker where one is.
    assert_eq!(marker_at(b"..merke0042xq.."), Some(2));
    let stats = w.role.unwrap().stop().await.unwrap();
    assert_eq!(stats.written as usize, n, "{stats:?}");
    assert_eq!(stats.dead_letters, 0, "{stats:?}");
}

/// Where a marker "merke<4 digits>xq" is in `bytes`.
fn marker_at(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(11)
        .position(|w| w.starts_with(b"merke") && w[5..9].iter().all(u8::is_ascii_digit) && &w[9..11] == b"xq")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_conversations_are_kept_exactly_as_long_as_the_notice_says() {
    acceptance(1000).await;
}

/// Bad input gets a dead letter with its reason; nothing accepted is lost,
/// and a replayed message is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_conversation_input_is_dead_lettered_with_its_reason() {
    let w = world("convbad").await;
    let prefix = common::unique("cb");
    let now = w.clock.now_us();
    let mut good = ChatConversation::new(&format!("{prefix}-good"), &w.shared).unwrap();
    let start = good
        .started(
            now,
            Channel::AinoChatbot,
            "cust-1",
            None,
            "",
            Desk::Unspecified,
            ServiceCategory::General,
        )
        .unwrap();
    let say = |text: &'static str| Say {
        at_us: now,
        sender: Sender::Customer,
        sender_id: "",
        text,
    };
    let m1 = good.say(say("første")).unwrap();
    let m2 = good.say(say("andre")).unwrap();
    // Another text at sequence 2 (a conflicting message).
    let mut conflicting = good.message_at(2, say("noe annet")).unwrap();
    if let Some(v1::conversation_event::Event::Message(m)) = conflicting.event.as_mut() {
        m.message_id = "another-id".into();
    }
    // A text sealed for another sequence (replayed into position 3).
    let mut moved = good.message_at(1, say("flyttet")).unwrap();
    if let Some(v1::conversation_event::Event::Message(m)) = moved.event.as_mut() {
        m.sequence = 3;
        m.message_id = "moved".into();
    }
    let end = good.ended(now + SEC);
    let after = good.message_at(9, say("for sent")).unwrap();
    // Unknown conversation, anonymous advisor chat, a key under a foreign KEK.
    let stranger = LocalKeyring::open_or_create(&w.env.dir.path().join("stranger.json")).unwrap();
    let unknown = ChatConversation::new(&format!("{prefix}-unknown"), &w.shared)
        .unwrap()
        .message_at(1, say("hei"))
        .unwrap();
    let anon_advisor = ChatConversation::new(&format!("{prefix}-anon"), &w.shared)
        .unwrap()
        .started(
            now,
            Channel::AdvisorChat,
            "",
            Some("192.0.2.1"),
            "adv-1",
            Desk::Markets,
            ServiceCategory::Loan,
        )
        .unwrap();
    let foreign = ChatConversation::new(&format!("{prefix}-foreign"), &stranger)
        .unwrap()
        .started(
            now,
            Channel::AinoChatbot,
            "cust-2",
            None,
            "",
            Desk::Unspecified,
            ServiceCategory::General,
        )
        .unwrap();
    let events = vec![
        start,
        m1.clone(),
        m2,
        m1,
        conflicting,
        moved,
        end,
        after,
        unknown,
        anon_advisor,
        foreign,
    ];
    w.publish(&events).await;
    // Garbage and a key that does not match the conversation id.
    let topic = w.edges.config.messages_config().topic;
    w.edges
        .bus
        .publish(&topic, b"x", b"\xff\xff not protobuf")
        .await
        .unwrap();
    let (_, v) = encode(&events[0]);
    w.edges.bus.publish(&topic, b"not-the-id", &v).await.unwrap();
    w.wait_written(&format!("{prefix}-good"), 1, 120).await;

    let mut sub = w
        .edges
        .bus
        .subscribe(&common::unique("dl"), &[w.edges.config.messages_config().deadletter])
        .await
        .unwrap();
    let mut reasons: Vec<(String, v1::DeadLetterReason)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while reasons.len() < 8 && tokio::time::Instant::now() < deadline {
        for r in sub.poll(100, Duration::from_millis(300)).await.unwrap() {
            let d = v1::DeadLetter::decode(r.payload.as_ref()).unwrap();
            assert_eq!(d.stage, "messages", "{d:?}");
            reasons.push((d.detail.clone(), d.reason()));
        }
    }
    let got: HashSet<v1::DeadLetterReason> = reasons.iter().map(|r| r.1).collect();
    use v1::DeadLetterReason as R;
    for want in [
        R::ConflictingChunk,
        R::Undecryptable,
        R::AfterEnd,
        R::UnknownCall,
        R::InvalidFormat,
        R::Malformed,
        R::KeyMismatch,
    ] {
        assert!(got.contains(&want), "{want:?} missing in {reasons:?}");
    }
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    // The good conversation kept its two messages, once each.
    let log = w.read(&format!("{prefix}-good"), "chat-customer").await.unwrap();
    let texts: Vec<&str> = log.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["første", "andre"]);
    // A call cannot take the conversation's id (they share one id space).
    let recorder = opptak::app::RunningRecorder::spawn(w.edges.recorder());
    let mut call =
        opptak::sim::SimCall::synthetic(&format!("{prefix}-good"), opptak_domain::model::Codec::Pcmu, 1, 0.2, 7);
    call.started.started_at = Some(opptak_proto::convert::timestamp(now));
    common::publish_events(&w.edges, &call.events(100)[..1]).await;
    let mut refused = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while refused.is_none() && tokio::time::Instant::now() < deadline {
        for r in sub.poll(100, Duration::from_millis(300)).await.unwrap() {
            let d = v1::DeadLetter::decode(r.payload.as_ref()).unwrap();
            if d.stage == "recorder" {
                refused = Some(d);
            }
        }
    }
    let refused = refused.expect("the recorder refused the CallStarted");
    assert_eq!(refused.reason(), R::DuplicateStart);
    assert!(refused.detail.contains("conversation"), "{}", refused.detail);
    recorder.stop().await.unwrap();
    let log = w.read(&format!("{prefix}-good"), "chat-customer").await.unwrap();
    assert_eq!(log.messages.len(), 2);
    let stats = w.role.unwrap().stop().await.unwrap();
    assert_eq!(stats.messages, 2, "{stats:?}");
    assert!(stats.duplicates >= 1, "{stats:?}");
}
