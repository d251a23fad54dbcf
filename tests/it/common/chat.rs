//! Conversations in tests (issue 17): a test environment with a keyring
//! shared with the simulated chat systems, publishing their events to the
//! messages topic, waiting for the messages role to write them, reading a
//! copy back.

use super::{Backend, Env};
use opptak::app::Edges;
use opptak::chat::encode;
use opptak::config::Config;
use opptak_crypto::segment::ArtifactKind as SealKind;
use opptak_crypto::LocalKeyring;
use opptak_domain::conversation::ConversationLog;
use opptak_domain::model::CallId;
use opptak_proto::v1;
use std::time::Duration;

/// A test environment whose opptak opens what the chat systems seal.
pub struct ChatEnv {
    pub env: Env,
    /// The KEK the chat systems wrap their conversation keys under.
    pub shared: LocalKeyring,
    /// Against the real broker and PostgreSQL (else the embedded mode).
    pub services: bool,
}

/// The services when they run (else the embedded mode), the shared keyring
/// configured, a consumer group of the test's own, and `vars` besides.
pub async fn chat_env(name: &str, vars: &[(&str, &str)]) -> ChatEnv {
    let backend = match (super::kafka(), super::postgres_db(name).await) {
        (Some(kafka), Some(postgres)) => Backend::Services { kafka, postgres },
        _ => Backend::Embedded,
    };
    let services = matches!(backend, Backend::Services { .. });
    let mut env = Env::new(&backend, name);
    let shared_path = env.dir.path().join("chat-keyring.json");
    let shared = LocalKeyring::open_or_create(&shared_path).unwrap();
    env.vars.push((
        "OPPTAK__KEYS__TELEPHONY_KEYRING".into(),
        shared_path.display().to_string(),
    ));
    env.vars
        .push(("OPPTAK__MESSAGES__GROUP".into(), super::unique("messages")));
    env.vars
        .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.config = Config::load_from(None, &env.vars).unwrap();
    ChatEnv { env, shared, services }
}

/// Publishes conversation events to the messages topic, keyed by conversation.
pub async fn publish(edges: &Edges, events: &[v1::ConversationEvent]) {
    let topic = edges.config.messages_config().topic;
    let out: Vec<opptak_bus::Outgoing> = events
        .iter()
        .map(|e| {
            let (k, v) = encode(e);
            opptak_bus::Outgoing {
                topic: topic.clone(),
                key: k.into(),
                payload: v.into(),
            }
        })
        .collect();
    for chunk in out.chunks(2000) {
        edges.bus.publish_all(chunk.to_vec()).await.unwrap();
    }
}

/// Waits until the conversations `ids` are all written into their copies.
pub async fn wait_written(edges: &Edges, ids: &[String], secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut open = Vec::new();
        for id in ids {
            let rec = edges.meta.load_conversation(&CallId::parse(id).unwrap()).await.unwrap();
            if rec.is_none_or(|r| r.written_at_us.is_none()) {
                open.push(id.as_str());
            }
        }
        if open.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} conversations not written after {secs} s, e.g. {:?}",
            open.len(),
            ids.len(),
            &open[..open.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One copy (artifact kind) of a conversation, opened; the error as text.
pub async fn read(edges: &Edges, id: &str, kind: &'static str) -> Result<ConversationLog, String> {
    edges
        .vault()
        .read_json::<ConversationLog>(&CallId::parse(id).unwrap(), kind, SealKind::Conversation)
        .await
        .map_err(|e| e.to_string())
}
