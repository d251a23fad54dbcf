//! The reporting index with conversations (issue 17, section 4), on SQLite
//! and on PostgreSQL (`OPPTAK_TEST_POSTGRES`; required when
//! `OPPTAK_REQUIRE_SERVICES=1`): calls and conversations in the same rows
//! with their channel; a conversation's rows go with its `chat-analysis-1y`
//! key, into the per-day counts when it expired, nowhere when the customer
//! objected.

use opptak_domain::model::{CallId, Channel, ConversationFacts, Desk, ServiceCategory};
use opptak_store::contract::sample_call;
use opptak_store::meta::{Flush, RetentionRow, StoredKey};
use opptak_store::reporting::{KiCallRow, SqlReporting, TopicRow, PHONE};
use opptak_store::{open_metadata_store, MetadataStore};
use std::sync::Arc;

const DAY_US: i64 = 86_400_000_000;
/// 2025-11-24T16:00Z, as `sample_call`.
const T0: i64 = 1_764_000_000_000_000;

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn facts(id: &str, channel: Channel, desk: Desk) -> ConversationFacts {
    ConversationFacts {
        conversation_id: CallId::parse(id).unwrap(),
        started_at_us: T0,
        channel,
        customer_ref: "cust-7".into(),
        advisor_id: String::new(),
        desk,
        service_category: ServiceCategory::General,
        handover_at_us: None,
    }
}

fn row(id: &str, channel: &str, desk: &str, topics: &[&str], bot_words: u64) -> KiCallRow {
    KiCallRow {
        call_id: id.into(),
        day: "2025-11-24".into(),
        desk: desk.into(),
        language: "nb".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        advisor_id: String::new(),
        drafted_at_us: T0 + 1,
        draft_words: bot_words,
        recognition_failed: false,
        channel: channel.into(),
    }
}

fn key(id: &str, class: &str) -> StoredKey {
    StoredKey {
        key_id: format!("dk-{class}-{id}"),
        class: class.into(),
        kek_id: "kek-1".into(),
        sealed: vec![1, 2, 3],
    }
}

/// A conversation with its analysis key, indexed: sampled when the bot answered.
async fn conversation(
    meta: &Arc<dyn MetadataStore>,
    rep: &SqlReporting,
    id: &str,
    channel: Channel,
    topics: &[&str],
    bot_words: u64,
) -> bool {
    let f = facts(id, channel, Desk::CustomerCenter);
    assert!(meta.start_conversation(&f, None, T0).await.unwrap().is_none());
    meta.create_key(&f.conversation_id, &key(id, "chat-analysis-1y"), T0)
        .await
        .unwrap();
    let stratum = format!("{}|customer_center|nb|{}", topics[0], channel.as_str());
    let indexed = rep
        .index_draft(
            &row(id, channel.as_str(), "customer_center", topics, bot_words),
            (bot_words > 0).then_some(stratum.as_str()),
            T0 + 1,
            |_| true,
            None,
        )
        .await
        .unwrap();
    assert!(indexed.new);
    indexed.sampled
}

/// The QA queue as (id, channel).
async fn queue(rep: &SqlReporting) -> Vec<(String, String)> {
    rep.queue()
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.call_id, q.channel))
        .collect()
}

fn counts(rows: &[TopicRow]) -> Vec<(String, String, String, usize)> {
    let mut out: Vec<(String, String, String, usize)> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some(l) if (l.0.as_str(), l.1.as_str(), l.2.as_str()) == (&r.desk, &r.channel, &r.topic) => l.3 += 1,
            _ => out.push((r.desk.clone(), r.channel.clone(), r.topic.clone(), 1)),
        }
    }
    out
}

async fn suite(url: &str) {
    let meta = open_metadata_store(url).await.unwrap();
    let rep = SqlReporting::open(url).await.unwrap();
    let p = suffix();
    // A KI call, indexed as before (channel phone).
    let call = format!("{p}-call");
    let mut new_call = sample_call(&call);
    new_call.facts.desk = Desk::CustomerCenter;
    meta.apply(&Flush {
        new_calls: vec![new_call],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut call_row = row(&call, PHONE, "customer_center", &["cards"], 40);
    call_row.advisor_id = "adv-1".into();
    rep.index_draft(&call_row, Some("cards|customer_center|nb|asr-ok"), T0, |_| true, None)
        .await
        .unwrap();
    // Conversations: two with the bot (sampled: first of their strata), one
    // with an advisor only (the dashboard only), one to object, one to expire.
    let bot = format!("{p}-bot");
    let bot2 = format!("{p}-bot2");
    let mail = format!("{p}-mail");
    let objected = format!("{p}-objected");
    let expired = format!("{p}-expired");
    assert!(conversation(&meta, &rep, &bot, Channel::AinoChatbot, &["cards"], 12).await);
    assert!(
        conversation(
            &meta,
            &rep,
            &bot2,
            Channel::AinoChatbot,
            &["mortgage_loans", "cards"],
            7
        )
        .await
    );
    assert!(!conversation(&meta, &rep, &mail, Channel::Email, &["cards"], 0).await);
    assert!(conversation(&meta, &rep, &objected, Channel::AinoChatbot, &["pension"], 5).await);
    assert!(conversation(&meta, &rep, &expired, Channel::AinoChatbot, &["savings_funds"], 9).await);

    // One dashboard: calls and conversations, each with its channel.
    let mine = |rows: Vec<TopicRow>| {
        counts(
            &rows
                .into_iter()
                .filter(|r| r.desk == "customer_center")
                .collect::<Vec<_>>(),
        )
    };
    let before = mine(rep.topic_rows("2025-11-24", "2025-11-24").await.unwrap());
    let has = |v: &[(String, String, String, usize)], channel: &str, topic: &str| {
        v.iter()
            .filter(|c| c.1 == channel && c.2 == topic)
            .map(|c| c.3)
            .sum::<usize>()
    };
    assert!(has(&before, "phone", "cards") >= 1);
    assert!(has(&before, "aino_chatbot", "cards") >= 2, "{before:?}");
    assert!(has(&before, "email", "cards") >= 1);
    // A call's index row reads back with its channel; a conversation's too.
    assert_eq!(rep.call(&call).await.unwrap().unwrap().row.channel, PHONE);
    let b = rep.call(&bot).await.unwrap().unwrap();
    assert_eq!((b.row.channel.as_str(), b.sampled), ("aino_chatbot", true));

    // One QA queue: the sampled call needs its ki key, a conversation its
    // chat-analysis-1y key.
    let q = queue(&rep).await;
    assert!(q.contains(&(bot.clone(), "aino_chatbot".to_owned())), "{q:?}");
    assert!(q.iter().all(|(id, _)| *id != mail), "no bot, nothing for QA");
    assert!(q.iter().all(|(id, _)| *id != call), "the call has no live ki key");
    meta.create_key(&CallId::parse(&call).unwrap(), &key(&call, "ki"), T0)
        .await
        .unwrap();
    assert!(queue(&rep).await.iter().any(|(id, c)| *id == call && c == PHONE));
    // The QA report counts the bot conversations, not the advisor-only one.
    let report: Vec<(String, String)> = rep
        .report_calls("2025-11-24", "2025-11-24")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.call_id.starts_with(&p))
        .map(|r| (r.call_id, r.channel))
        .collect();
    assert_eq!(report.len(), 5, "{report:?}");
    assert!(!report.iter().any(|(id, _)| *id == mail));

    // The customer objects: the analysis key is shredded (not by the
    // sweeper), the conversation's rows go and it is counted nowhere.
    let totals_before = mine(rep.topic_rows("2025-11-24", "2025-11-24").await.unwrap());
    meta.shred_key(
        &CallId::parse(&objected).unwrap(),
        "chat-analysis-1y",
        "objection to analysis",
        "cust-7",
        T0 + DAY_US,
    )
    .await
    .unwrap();
    assert!(rep.call(&objected).await.unwrap().is_none());
    let after_objection = mine(rep.topic_rows("2025-11-24", "2025-11-24").await.unwrap());
    assert_eq!(
        has(&after_objection, "aino_chatbot", "pension") + 1,
        has(&totals_before, "aino_chatbot", "pension")
    );
    assert!(queue(&rep).await.iter().all(|(id, _)| *id != objected));

    // The analysis copy of another expires: the sweeper's deletion shreds
    // the key with its last artifact; the rows go, the count stays.
    let expired_id = CallId::parse(&expired).unwrap();
    let r = RetentionRow {
        artifact_id: format!("art-{expired}"),
        call_id: expired.clone(),
        kind: "chat-analysis".into(),
        class: "chat-analysis-1y".into(),
        tier: "hot".into(),
        location: format!("conversations/{expired}/chat-analysis.optk"),
        expires_at_us: T0 + 365 * DAY_US,
        held: false,
        rules: "chat-analysis: 1 year".into(),
        decided_at_us: T0,
        deleted_at_us: None,
    };
    meta.put_retention(std::slice::from_ref(&r)).await.unwrap();
    let deleted = meta.record_deletion(&r, T0 + 365 * DAY_US).await.unwrap().unwrap();
    assert_eq!(
        deleted.key_shredded.as_deref(),
        Some(format!("dk-chat-analysis-1y-{expired}").as_str())
    );
    assert!(rep.call(&expired).await.unwrap().is_none());
    assert!(rep.reviews(&expired).await.unwrap().is_empty());
    let after_expiry = mine(rep.topic_rows("2025-11-24", "2025-11-24").await.unwrap());
    assert_eq!(
        has(&after_expiry, "aino_chatbot", "savings_funds"),
        has(&after_objection, "aino_chatbot", "savings_funds"),
        "an expired conversation stays counted, by its channel"
    );
    assert!(queue(&rep).await.iter().all(|(id, _)| *id != expired));
    let _ = meta
        .class_key(&expired_id, "chat-analysis-1y")
        .await
        .unwrap()
        .unwrap()
        .destroyed_at_us
        .unwrap();
}

#[tokio::test]
async fn sqlite_conversations_in_the_reporting_index() {
    let dir = tempfile::tempdir().unwrap();
    suite(&format!("sqlite://{}/meta.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_conversations_in_the_reporting_index() {
    if let Some(url) = crate::fresh_postgres("reporting").await {
        suite(&url).await;
    }
}
