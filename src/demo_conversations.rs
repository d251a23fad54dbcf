//! The demo's conversations (issue 17): a few sample chats and messages in
//! Norwegian played through the messages role beside the calls, then what is
//! kept of each, under which class, until when.

use crate::app::{Edges, RunningConversations};
use crate::chat::{encode, ChatConversation, Say};
use anyhow::{bail, Result};
use opptak_crypto::KeyProvider;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::{CallId, Channel, Desk, Sender, ServiceCategory};
use opptak_domain::time::utc_time;
use opptak_proto::v1;
use std::time::Duration;

/// One sample conversation: its events, in order.
fn samples(shared: &dyn KeyProvider, now_us: i64) -> Result<Vec<(String, Vec<v1::ConversationEvent>)>> {
    const SEC: i64 = 1_000_000;
    let t = |s: i64| now_us - 3600 * SEC + s * SEC;
    let say = |at: i64, sender: Sender, sender_id: &'static str, text: &'static str| Say {
        at_us: at,
        sender,
        sender_id,
        text,
    };
    let mut out = Vec::new();

    let mut c = ChatConversation::new("demo-chat-01", shared)?;
    let mut e = vec![c.started(
        t(0),
        Channel::AinoChatbot,
        "",
        Some("203.0.113.45"),
        "",
        Desk::Unspecified,
        ServiceCategory::General,
    )?];
    e.push(c.say(say(
        t(1),
        Sender::Customer,
        "",
        "Hei! Når har kundesenteret åpent i romjulen?",
    ))?);
    e.push(c.say(say(
        t(2),
        Sender::Bot,
        "",
        "Kundesenteret har åpent 08–16 i romjulen. Kan jeg hjelpe med noe mer?",
    ))?);
    e.push(c.ended(t(30)));
    out.push((c.id.clone(), e));

    let mut c = ChatConversation::new("demo-chat-02", shared)?;
    let mut e = vec![c.started(
        t(100),
        Channel::AinoChatbot,
        "kunde-4711",
        None,
        "",
        Desk::Unspecified,
        ServiceCategory::Loan,
    )?];
    e.push(c.say(say(
        t(101),
        Sender::Customer,
        "",
        "Jeg vil refinansiere boliglånet. Fødselsnummeret mitt er 01018012371, ring meg på 412 34 567.",
    ))?);
    e.push(c.say(say(
        t(102),
        Sender::Bot,
        "",
        "Det kan en rådgiver hjelpe deg med. Vil du snakke med en rådgiver?",
    ))?);
    e.push(c.say(say(t(103), Sender::Customer, "", "Ja takk."))?);
    e.push(c.handover(t(104), "adv-lars", Desk::CustomerCenter));
    e.push(c.say(say(
        t(110),
        Sender::Advisor,
        "adv-lars",
        "Hei, jeg heter Lars. Jeg ser på lånet ditt nå og sender deg et tilbud i nettbanken.",
    ))?);
    e.push(c.ended(t(400)));
    out.push((c.id.clone(), e));

    let mut c = ChatConversation::new("demo-chat-03", shared)?;
    let mut e = vec![c.started(
        t(500),
        Channel::AdvisorChat,
        "kunde-0815",
        None,
        "adv-kari",
        Desk::Markets,
        ServiceCategory::InvestmentAdvice,
    )?];
    e.push(c.say(say(
        t(501),
        Sender::Customer,
        "",
        "Jeg vurderer å flytte 200 000 kroner fra sparekonto til et globalt indeksfond.",
    ))?);
    e.push(c.say(say(t(502), Sender::Advisor, "adv-kari", "Med tidshorisont over fem år kan det passe. Risikoen er høyere enn på sparekonto; les faktaarket før du bestemmer deg."))?);
    e.push(c.ended(t(900)));
    out.push((c.id.clone(), e));

    let mut c = ChatConversation::new("demo-chat-04", shared)?;
    let mut e = vec![c.started(
        t(1000),
        Channel::SecureMessage,
        "kunde-1234",
        None,
        "adv-nina",
        Desk::CustomerCenter,
        ServiceCategory::Payments,
    )?];
    e.push(c.say(say(
        t(1001),
        Sender::Customer,
        "",
        "Kortet mitt er sperret etter et kjøp i utlandet. Kan dere åpne det?",
    ))?);
    e.push(c.say(say(
        t(1200),
        Sender::Advisor,
        "adv-nina",
        "Kortet er åpnet igjen. Ta kontakt om det skjer på nytt.",
    ))?);
    // The customer does not want their chat logs analysed.
    e.push(c.objection(t(1300)));
    e.push(c.ended(t(1400)));
    out.push((c.id.clone(), e));
    Ok(out)
}

/// Plays the sample conversations through the messages role and prints
/// what is kept of each.
pub async fn run(edges: &Edges) -> Result<()> {
    let Some(shared) = edges.telephony_keys.clone() else {
        bail!("the demo's chat keyring is not configured (keys.telephony_keyring)");
    };
    edges.ensure_topics(&["messages"]).await?;
    // As `opptak run --roles messages`: the analysis copies go to QA and
    // the topic dashboard (issue 17, section 4).
    let role = RunningConversations::spawn(edges.messages_role().await?);
    let topic = edges.config.messages_config().topic;
    let convs = samples(shared.as_ref(), edges.clock.now_us())?;
    for (_, events) in &convs {
        for ev in events {
            let (k, v) = encode(ev);
            edges.bus.publish(&topic, &k, &v).await?;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (id, _) in &convs {
        let id = CallId::parse(id)?;
        while edges
            .meta
            .load_conversation(&id)
            .await?
            .is_none_or(|c| c.written_at_us.is_none())
        {
            if tokio::time::Instant::now() > deadline {
                bail!("timed out: conversation {id} not written");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stats = role.stop().await?;
    println!(
        "\nconversations ({} messages; texts sealed by the chat system, each copy under its own key):",
        stats.messages
    );
    let retention = edges.retention();
    let qa = opptak_review::qa::Qa::open(&edges.review()).await?;
    for (id, _) in &convs {
        let id = CallId::parse(id)?;
        let Some(rec) = edges.meta.load_conversation(&id).await? else {
            continue;
        };
        let f = &rec.facts;
        println!(
            "  {id}  {:<14} {:<10} {:<9} {}",
            f.channel.as_str(),
            if f.logged_in() { "logged in" } else { "anonymous" },
            if f.with_advisor() {
                f.advisor_id.as_str()
            } else {
                "bot only"
            },
            f.service_category.as_str()
        );
        for d in retention.explain(&id).await? {
            let state = if !d.kept {
                "not kept".to_string()
            } else if d.expires_at_us <= edges.clock.now_us() {
                "shredded (the customer objected to analysis)".to_string()
            } else {
                format!("until {}", utc_time(d.expires_at_us))
            };
            println!(
                "      {:<14} {:<17} {state}",
                d.kind.as_str(),
                d.class.map(|c| c.as_str()).unwrap_or("-")
            );
        }
        if let Some(ix) = qa.call(&id).await? {
            println!(
                "      KI: topics {} on the dashboard ({}){}",
                ix.row.topics.join(", "),
                ix.row.channel,
                if ix.sampled {
                    "; the bot's answers sampled for QA"
                } else {
                    ""
                }
            );
        }
    }
    let analysed: ConversationLog = edges
        .vault()
        .read_json(
            &CallId::parse("demo-chat-02")?,
            "chat-analysis",
            opptak_crypto::segment::ArtifactKind::Conversation,
        )
        .await?;
    println!("  the analysis copy of demo-chat-02 (redacted, names no customer):");
    for m in &analysed.messages {
        println!("      {:<8} {}", m.sender.as_str(), m.text);
    }
    Ok(())
}
