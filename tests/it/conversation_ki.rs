//! KI on conversations (issue 17, section 4), through the messages role
//! as `opptak run --roles messages` wires it (`Edges::messages_role`), on
//! the real broker and PostgreSQL when the services run: conversations get
//! topics of the call taxonomy on the one dashboard, by channel; the bot's
//! answers are sampled into the QA queue in their own strata and scored
//! with the same workflow; a conversation's reporting rows go with its
//! `chat-analysis-1y` key, counted nowhere after the customer's objection
//! and in the per-day counts after the 1-year expiry (manual clock and
//! sweeper).

use crate::common::AddApproved;
use crate::conversations::{world, World};
use opptak::app::RunningConversations;
use opptak::chat::{ChatConversation, Say};
use opptak_domain::model::{CallId, Channel, Desk, Sender, ServiceCategory};
use opptak_domain::time::{utc_day, Clock};
use opptak_proto::v1;
use opptak_review::dashboard::{self, Breakdown, Cell, Filter, Period};
use opptak_review::identity::{Role, Source, User};
use opptak_review::qa::{Qa, QaScore};
use std::time::Duration;

const SEC: i64 = 1_000_000;
const PW: &str = "correct horse battery staple";
const DAY: i64 = 86_400 * SEC;

/// A conversation: channel, customer, advisor, and (sender, text) turns.
struct Spec {
    id: String,
    channel: Channel,
    customer: String,
    advisor: &'static str,
    turns: Vec<(Sender, &'static str)>,
}

fn events(w: &World, s: &Spec, start: i64) -> Vec<v1::ConversationEvent> {
    let mut c = ChatConversation::new(&s.id, &w.shared).unwrap();
    let ip = s.customer.is_empty().then_some("198.51.100.7");
    let mut out = vec![c
        .started(
            start,
            s.channel,
            &s.customer,
            ip,
            s.advisor,
            Desk::CustomerCenter,
            ServiceCategory::General,
        )
        .unwrap()];
    for (i, (sender, text)) in s.turns.iter().enumerate() {
        let sender_id = if *sender == Sender::Advisor { s.advisor } else { "" };
        out.push(
            c.say(Say {
                at_us: start + (i as i64 + 1) * SEC,
                sender: *sender,
                sender_id,
                text,
            })
            .unwrap(),
        );
    }
    out.push(c.ended(start + 60 * SEC));
    out
}

/// The dashboard's rows of `day` as the page draws them.
async fn dashboard(qa: &Qa, day: &str, breakdown: Breakdown, channel: Option<&str>) -> dashboard::Dashboard {
    let rows: Vec<dashboard::TopicRow> = qa
        .topic_rows(day, day)
        .await
        .unwrap()
        .into_iter()
        .map(Into::into)
        .collect();
    let d: dashboard::Day = day.parse().unwrap();
    let f = Filter::new(d, d, Period::Day, d.plus(1))
        .unwrap()
        .with_breakdown(breakdown)
        .with_channel(channel.map(str::to_owned));
    dashboard::aggregate(&rows, &f).unwrap()
}

/// The dashboard's input rows of one channel and topic on `day`.
async fn count(qa: &Qa, day: &str, channel: &str, topic: &str) -> usize {
    let rows = qa.topic_rows(day, day).await.unwrap();
    rows.iter().filter(|r| r.channel == channel && r.topic == topic).count()
}

/// `by_desk`'s total of `row` (a channel or a desk), if published.
fn row_total(d: &dashboard::Dashboard, row: &str) -> Option<Cell> {
    let i = d.by_desk.rows.iter().position(|r| r == row)?;
    Some(d.by_desk.row_totals[i])
}

#[tokio::test]
async fn conversations_on_the_dashboard_in_the_qa_queue_and_gone_with_their_analysis_key() {
    let mut w = world("convki").await;
    // The role as `opptak run --roles messages` runs it: with QA's hook.
    w.role.take().unwrap().stop().await.unwrap();
    w.role = Some(RunningConversations::spawn(w.edges.messages_role().await.unwrap()));
    let prefix = crate::common::unique("ck");
    let start = w.clock.now_us() - DAY;
    let day = utc_day(start);

    // Six anonymous chats with Aino about a lost card, five e-mails with an
    // advisor about a mortgage, and one logged-in chat with Aino about a
    // pension whose customer objects later.
    let mut specs = Vec::new();
    for i in 0..6 {
        specs.push(Spec {
            id: format!("{prefix}-aino-{i}"),
            channel: Channel::AinoChatbot,
            customer: String::new(),
            advisor: "",
            turns: vec![
                (Sender::Customer, "Hei, jeg har mistet kortet mitt og vil sperre det."),
                (Sender::Bot, "Du kan sperre kortet i appen og bestille nytt kort der."),
                (Sender::Customer, "Takk, da gjør jeg det."),
            ],
        });
    }
    for i in 0..5 {
        specs.push(Spec {
            id: format!("{prefix}-mail-{i}"),
            channel: Channel::Email,
            customer: format!("cust-ck-{i}"),
            advisor: "adv-ck",
            turns: vec![
                (
                    Sender::Customer,
                    "Jeg vil refinansiere boliglånet mitt. Hva er renten nå?",
                ),
                (
                    Sender::Advisor,
                    "Vi ser på boliglånet ditt og renten og kommer tilbake til deg.",
                ),
            ],
        });
    }
    let objector = format!("cust-ck-obj-{prefix}");
    let pension = format!("{prefix}-pension");
    specs.push(Spec {
        id: pension.clone(),
        channel: Channel::AinoChatbot,
        customer: objector.clone(),
        advisor: "",
        turns: vec![
            (
                Sender::Customer,
                "Når kan jeg ta ut alderspensjon, og hva med pensjonssparing?",
            ),
            (Sender::Bot, "Du kan se pensjonen din og pensjonssparing i nettbanken."),
        ],
    });
    let all: Vec<v1::ConversationEvent> = specs.iter().flat_map(|s| events(&w, s, start)).collect();
    w.publish(&all).await;
    w.wait_written(&prefix, specs.len(), 300).await;

    let qa = Qa::open(&w.edges.review()).await.unwrap();
    // Every conversation is indexed with its channel and a topic of the
    // call taxonomy; only those with the bot's answers count for QA.
    for s in &specs {
        let ix = qa
            .call(&CallId::parse(&s.id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} not indexed", s.id));
        assert_eq!(ix.row.channel, s.channel.as_str());
        let want = match s.channel {
            Channel::Email => "mortgage_loans",
            _ if s.id == pension => "pension",
            _ => "cards",
        };
        assert_eq!(ix.row.topic(), want, "{}", s.id);
        assert_eq!(ix.row.language, "nb");
        assert_eq!(ix.row.draft_words > 0, s.channel == Channel::AinoChatbot, "{}", s.id);
    }

    // One dashboard, channel as a dimension.
    let by_channel = dashboard(&qa, &day, Breakdown::Channel, None).await;
    assert_eq!(row_total(&by_channel, "aino_chatbot"), Some(Cell::Count(7)));
    assert_eq!(row_total(&by_channel, "email"), Some(Cell::Count(5)));
    assert_eq!(count(&qa, &day, "aino_chatbot", "cards").await, 6);
    assert_eq!(count(&qa, &day, "email", "mortgage_loans").await, 5);
    assert_eq!(count(&qa, &day, "aino_chatbot", "pension").await, 1);
    let aino = dashboard(&qa, &day, Breakdown::Desk, Some("aino_chatbot")).await;
    assert_eq!(aino.by_period.rows, ["cards", "pension"]);
    assert!(
        aino.by_period.row_totals[1].is_suppressed(),
        "one conversation is under k"
    );

    // The QA queue: the bot conversations sampled per stratum (the first
    // of each always), none of the advisor's e-mails.
    let share_ppm = opptak_review::qa::share_ppm(qa.share());
    let expected_cards = (0..6)
        .filter(|&n| opptak_review::qa::systematic_pick(n, share_ppm))
        .count();
    let queue: Vec<_> = qa
        .queue()
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.call_id.starts_with(&prefix))
        .collect();
    assert!(queue.iter().all(|q| q.channel == "aino_chatbot"), "{queue:?}");
    assert_eq!(queue.iter().filter(|q| q.topic == "cards").count(), expected_cards);
    assert!(queue.iter().any(|q| q.call_id == pension));
    let strata: Vec<_> = qa.strata().await.unwrap();
    let stratum = opptak_review::qa::conversation_stratum("cards", "customer_center", "nb", "aino_chatbot");
    let s = strata.iter().find(|s| s.stratum == stratum).unwrap();
    assert!(s.seen >= 6 && s.sampled >= 1, "{s:?}");

    // A QA reviewer scores a sampled conversation with the same workflow;
    // the note is sealed under the conversation's analysis key.
    let reviewer = User {
        user_id: "qa-kari".into(),
        display_name: "Kari".into(),
        role: Role::Qa,
        team: String::new(),
        source: Source::Local,
    };
    let sampled = CallId::parse(&queue.iter().find(|q| q.topic == "cards").unwrap().call_id).unwrap();
    qa.score(
        &reviewer,
        &sampled,
        QaScore {
            correctness: 2,
            relevance: 4,
            quality: 4,
            flag: Some(opptak_review::qa::QaFlag::Unexpected),
            note: "Aino lovet nytt kort uten å sjekke adressen".into(),
        },
    )
    .await
    .unwrap();
    let reviews = qa.reviews(&sampled).await.unwrap();
    assert_eq!(
        reviews[0].note.as_deref(),
        Some("Aino lovet nytt kort uten å sjekke adressen")
    );
    let copy = qa.analysis_copy(&sampled).await.unwrap().unwrap();
    assert!(copy.redacted && copy.messages.iter().any(|m| m.sender == Sender::Bot));
    let unsampled = specs.iter().find(|s| s.channel == Channel::Email).unwrap();
    assert!(qa
        .score(
            &reviewer,
            &CallId::parse(&unsampled.id).unwrap(),
            QaScore {
                correctness: 3,
                relevance: 3,
                quality: 3,
                flag: None,
                note: String::new(),
            },
        )
        .await
        .is_err());
    // The QA report counts the bot conversations in their strata only (no
    // draft to approve), the advisor's e-mails nowhere.
    let report = qa.report(&day, &day).await.unwrap();
    let in_strata = |channel: &str| -> u64 {
        report
            .strata
            .iter()
            .filter(|s| s.channel == channel)
            .map(|s| s.calls)
            .sum()
    };
    assert_eq!((in_strata("aino_chatbot"), in_strata("email")), (7, 0));
    assert_eq!(report.total.drafted, 0);

    // The same through the review service: QA's queue lists the sampled
    // conversation by its channel, QA reads its analysis copy (with the
    // note), nobody else does, and the dashboard breaks down by channel.
    let ids = opptak_review::identity::Identity::open(&w.edges.review())
        .await
        .unwrap();
    ids.add_approved("setup", "qa-kari", "Kari", Role::Qa, "qa", PW)
        .await
        .unwrap();
    ids.add_approved("setup", "adv-anne", "Anne", Role::Advisor, "oslo", PW)
        .await
        .unwrap();
    let web = crate::common::WebService::start(&w.edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String, cookie: String| {
        let req = http.get(format!("{}{path}", web.base)).header("cookie", cookie);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let sign_in = |user: &'static str| crate::common::web_sign_in(&http, &web.base, user, PW);
    let kari = sign_in("qa-kari").await.1.unwrap();
    let anne = sign_in("adv-anne").await.1.unwrap();
    let (status, page) = get("/qa".into(), kari.clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("/qa/conversations/{sampled}")) && page.contains("Chat med Aino"));
    let (status, page) = get(format!("/qa/conversations/{sampled}"), kari.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("sperre kortet i appen") && page.contains("uten å sjekke adressen"));
    assert!(page.contains("er svarene fra Aino riktige"));
    // A flag without a note: the conversation's page again (422), the
    // answers it scores above the kept form, the note marked.
    let csrf = crate::common::csrf_in(&page);
    let r = http
        .post(format!("{}/calls/{sampled}/qa", web.base))
        .header("cookie", kari.clone())
        .form(&[
            ("csrf", csrf.as_str()),
            ("correctness", "2"),
            ("relevance", "3"),
            ("quality", "4"),
            ("flag", "discriminatory"),
            ("note", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let again = r.text().await.unwrap();
    assert!(again.contains("sperre kortet i appen"), "the conversation shown again");
    assert!(again.contains("id=\"note-error\">Et flagg krever et notat"), "{again}");
    assert!(
        again.contains("<option value=\"discriminatory\" selected>"),
        "the flag kept"
    );
    assert_eq!(
        get(format!("/qa/conversations/{}", unsampled.id), kari.clone()).await.0,
        403
    );
    assert_eq!(get(format!("/qa/conversations/{sampled}"), anne.clone()).await.0, 403);
    let (status, page) = get(format!("/dashboard?from={day}&to={day}&period=day&by=channel"), anne).await;
    assert_eq!(status, 200);
    assert!(page.contains("Per kanal") && page.contains("Chat med Aino") && page.contains("E-post"));

    // The customer objects to analysis: the pension chat's analysis key is
    // shredded by the role, and its rows go with it, counted nowhere.
    let obj = ChatConversation::new(&pension, &w.shared)
        .unwrap()
        .objection(w.clock.now_us());
    w.publish(&[obj]).await;
    let pension_id = CallId::parse(&pension).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while qa.call(&pension_id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "objection not applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let k = w
        .edges
        .meta
        .class_key(&pension_id, "chat-analysis-1y")
        .await
        .unwrap()
        .unwrap();
    assert!(k.destroyed_at_us.is_some());
    assert_eq!(count(&qa, &day, "aino_chatbot", "pension").await, 0);
    let aino = dashboard(&qa, &day, Breakdown::Desk, Some("aino_chatbot")).await;
    assert_eq!(aino.by_period.rows, ["cards"]);
    assert_eq!(aino.by_period.row_totals[0], Cell::Count(6));
    assert!(qa.queue().await.unwrap().iter().all(|q| q.call_id != pension));

    // A year on, the sweeper deletes the analysis copies and shreds their
    // keys: the rows go (QA's notes with them), the counts stay by channel.
    w.clock.set(start + 400 * DAY);
    w.sweep().await;
    for s in specs.iter().filter(|s| s.id != pension) {
        let id = CallId::parse(&s.id).unwrap();
        assert!(qa.call(&id).await.unwrap().is_none(), "{} still indexed", s.id);
        let k = w.edges.meta.class_key(&id, "chat-analysis-1y").await.unwrap().unwrap();
        assert!(k.destroyed_at_us.is_some(), "{}", s.id);
    }
    assert!(qa.reviews(&sampled).await.unwrap().is_empty());
    assert!(qa.analysis_copy(&sampled).await.unwrap().is_none());
    assert!(qa
        .queue()
        .await
        .unwrap()
        .iter()
        .all(|q| !q.call_id.starts_with(&prefix)));
    let later = dashboard(&qa, &day, Breakdown::Channel, None).await;
    assert_eq!(
        row_total(&later, "aino_chatbot"),
        Some(Cell::Count(6)),
        "the objected one is gone"
    );
    assert_eq!(row_total(&later, "email"), Some(Cell::Count(5)));
    assert_eq!(count(&qa, &day, "aino_chatbot", "cards").await, 6);
    assert_eq!(count(&qa, &day, "aino_chatbot", "pension").await, 0);
    // QA's access ended with the analysis copy.
    let kari = sign_in("qa-kari").await.1.unwrap();
    assert_eq!(get(format!("/qa/conversations/{sampled}"), kari).await.0, 403);
    web.stop().await;
    w.role.take().unwrap().stop().await.unwrap();
}
