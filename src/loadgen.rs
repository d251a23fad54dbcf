//! `opptak loadgen`: N concurrent simulated telephony calls at real-time
//! pacing, through the configured bus into an in-process recorder, reporting
//! chunk-to-durable latency and CPU use; or N whole conversations through
//! the messages role ([`run_conversations`]). See BENCHMARKS.md.

use crate::app::{Edges, RunningRecorder};
use crate::sim::{self, SimCall};
use anyhow::{bail, Result};
use opptak_domain::model::Codec;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub calls: usize,
    pub seconds: u64,
    pub chunk_ms: u64,
    /// Write every produced chunk message to this file for the kcat baseline:
    /// `key`, [`DUMP_KEY_DELIMITER`], `value`, [`DUMP_DELIMITER`] per record.
    pub dump: Option<std::path::PathBuf>,
    /// Run without the recorder: the load generator's own cost, subtracted
    /// to give the recorder's CPU per call.
    pub producer_only: bool,
    /// Produce only, into the configured topics (`bus.topic_prefix`), for
    /// recorders running as separate `opptak run --roles recorder` processes
    /// (benches/scale.sh). The topics are created if missing and kept after
    /// the run; durability is then measured from those processes' metrics.
    /// Implies `producer_only`.
    pub external_recorders: bool,
}

/// Separates key and value in a dump file (`kcat -K`).
pub const DUMP_KEY_DELIMITER: &[u8] = b"\x1f";
/// Ends a record in a dump file (`kcat -D`); long enough not to occur in audio.
pub const DUMP_DELIMITER: &[u8] = b"\x1e\xfe\x1d\xfd\x1c\xfc\x1b\xfb";

#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
    pub chunk_ms: u64,
    pub wall_s: f64,
    pub chunks_sent: u64,
    pub chunks_durable: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cpu_s: f64,
    pub send_lag_ms: f64,
}

impl LoadReport {
    pub fn cores_used(&self) -> f64 {
        self.cpu_s / self.wall_s
    }
    pub fn calls_per_core(&self) -> f64 {
        self.calls as f64 / self.cores_used().max(1e-9)
    }
    pub fn sustained(&self) -> bool {
        self.p99_ms < 1000.0 && self.chunks_durable == self.chunks_sent && self.send_lag_ms < 500.0
    }
}

/// User + system CPU seconds of this process (Linux /proc).
pub fn process_cpu_seconds() -> f64 {
    opptak_siprec::loadgen::cpu_seconds("/proc/self/stat")
}

/// Send times of chunks not yet durable, and the latencies of those that are.
#[derive(Default)]
struct Tracker {
    waiting: HashMap<i32, BTreeMap<i64, Instant>>,
    durable_upto: HashMap<i32, i64>,
    latencies_ms: Vec<f64>,
}

impl Tracker {
    fn sent(&mut self, partition: i32, offset: i64, at: Instant) {
        // The recorder may make it durable before the delivery report arrives.
        if self.durable_upto.get(&partition).is_some_and(|&d| offset < d) {
            self.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        } else {
            self.waiting.entry(partition).or_default().insert(offset, at);
        }
    }

    fn durable(&mut self, partition: i32, next_offset: i64) {
        self.durable_upto.insert(partition, next_offset);
        let now = Instant::now();
        if let Some(m) = self.waiting.get_mut(&partition) {
            let rest = m.split_off(&next_offset);
            for (_, t) in std::mem::replace(m, rest) {
                self.latencies_ms.push(now.duration_since(t).as_secs_f64() * 1000.0);
            }
        }
    }
}

pub async fn run(edges: &Edges, spec: &LoadSpec) -> Result<LoadReport> {
    if spec.calls == 0 || spec.chunk_ms == 0 || spec.seconds == 0 {
        bail!("calls, seconds and chunk-ms must be positive");
    }
    // Fresh topics and group per run, so one run's backlog never skews the next.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut rc = edges.config.recorder_config();
    if !spec.external_recorders {
        rc.topics = opptak_recorder::Topics::with_prefix(&format!(
            "{}loadgen-{}.",
            edges.config.bus.topic_prefix,
            &run_id[..8]
        ));
        rc.group = format!("{}-{}", rc.group, &run_id[..8]);
    }
    rc.topics
        .create(edges.bus.as_ref(), edges.config.bus.partitions)
        .await?;
    let topic = rc.topics.telephony.clone();
    let rc_topics = rc.topics.clone();
    let recorder = opptak_recorder::Recorder::new(edges.bus.clone(), edges.vault(), rc);
    let mut durable_rx = recorder.durable_positions();
    let running = if spec.producer_only || spec.external_recorders {
        None
    } else {
        Some(RunningRecorder::spawn(recorder))
    };

    // A pool of distinct 10-second stereo G.711 calls, looped for each call.
    let pool: Vec<SimCall> = (0..8)
        .map(|i| SimCall::synthetic("pool", if i % 2 == 0 { Codec::Pcmu } else { Codec::Pcma }, 2, 10.0, i))
        .collect();
    let calls: Vec<(String, &SimCall)> = (0..spec.calls)
        .map(|i| (format!("load-{}-{i:05}", &run_id[..8]), &pool[i % pool.len()]))
        .collect();
    let chunks_per_call = spec.seconds * 1000 / spec.chunk_ms;

    let track: Arc<Mutex<Tracker>> = Arc::default();
    let watcher = {
        let track = track.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            while durable_rx.changed().await.is_ok() {
                let positions = durable_rx.borrow_and_update().clone();
                let mut t = track.lock().unwrap_or_else(|e| e.into_inner());
                for p in positions.iter().filter(|p| p.topic == topic) {
                    t.durable(p.partition, p.next_offset);
                }
            }
        })
    };

    let mut dump = match &spec.dump {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let tick = Duration::from_millis(spec.chunk_ms);
    // Calls are spread over 10 slots per chunk interval, as real calls do not
    // start in lockstep.
    let slots = 10u64;
    let mut chunks_sent = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut pending = Vec::new();
    // Start events.
    let starts: Vec<_> = calls
        .iter()
        .map(|(id, c)| {
            let mut c = (*c).clone();
            c.call_id = id.clone();
            let ev = &c.events(spec.chunk_ms as u32)[0];
            let (k, v) = sim::encode(ev);
            opptak_bus::Outgoing {
                topic: topic.clone(),
                key: k,
                payload: v,
            }
        })
        .collect();
    edges.bus.publish_all(starts).await?;
    let fb = 2usize; // stereo G.711: 2 bytes per frame
    let chunk_bytes = (8000 * spec.chunk_ms as usize / 1000) * fb;
    for step in 0..chunks_per_call * slots {
        let due = t0 + tick * (step / slots) as u32 + tick / slots as u32 * (step % slots) as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now - due);
        }
        let seq = step / slots;
        let slot = step % slots;
        let mut futs = Vec::new();
        for (i, (id, c)) in calls.iter().enumerate() {
            if i as u64 % slots != slot {
                continue;
            }
            let start = (seq as usize * chunk_bytes) % (c.wire.len() - chunk_bytes);
            let ev = opptak_proto::v1::TelephonyEvent {
                call_id: id.clone(),
                event: Some(opptak_proto::v1::telephony_event::Event::AudioChunk(
                    opptak_proto::v1::AudioChunk {
                        sequence: seq,
                        payload: c.wire[start..start + chunk_bytes].to_vec(),
                        duration: Some(sim::duration_ms(spec.chunk_ms)),
                        offset: Some(sim::duration_ms(seq * spec.chunk_ms)),
                        sealed_payload: Vec::new(),
                    },
                )),
            };
            let (k, v) = sim::encode(&ev);
            if let Some(d) = dump.as_mut() {
                write_dump_record(d, &k, &v)?;
            }
            let bus = edges.bus.clone();
            let topic = topic.clone();
            let track = track.clone();
            futs.push(async move {
                let t = Instant::now();
                let (p, o) = bus.publish(&topic, &k, &v).await?;
                track.lock().unwrap_or_else(|e| e.into_inner()).sent(p, o, t);
                Ok::<_, opptak_bus::BusError>(())
            });
            chunks_sent += 1;
        }
        pending.push(tokio::spawn(futures::future::try_join_all(futs)));
        pending.retain(|h| !h.is_finished());
    }
    for h in pending {
        h.await??;
    }
    if let Some(mut d) = dump.take() {
        d.flush()?;
    }
    // Let the recorder catch up, then stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = track.lock().unwrap_or_else(|e| e.into_inner()).latencies_ms.len() as u64;
        if spec.producer_only || spec.external_recorders || n >= chunks_sent || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    if let Some(r) = running {
        r.stop().await?;
    }
    // Load runs write gigabytes; leave nothing behind in the broker (the
    // external recorders' topics belong to their caller, which drops them).
    if !spec.external_recorders {
        for t in [&rc_topics.telephony, &rc_topics.recordings, &rc_topics.deadletter] {
            edges.bus.delete_topic(t).await?;
        }
    }
    watcher.abort();
    let mut lat = track.lock().unwrap_or_else(|e| e.into_inner()).latencies_ms.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize]
        }
    };
    Ok(LoadReport {
        calls: spec.calls,
        chunk_ms: spec.chunk_ms,
        wall_s,
        chunks_sent,
        chunks_durable: lat.len() as u64,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        cpu_s,
        send_lag_ms: max_lag.as_secs_f64() * 1000.0,
    })
}

/// Writes one record of a dump file (see [`DUMP_KEY_DELIMITER`]).
pub fn write_dump_record(w: &mut impl Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    w.write_all(key)?;
    w.write_all(DUMP_KEY_DELIMITER)?;
    w.write_all(value)?;
    w.write_all(DUMP_DELIMITER)
}

/// Busy CPU seconds of the whole machine (Linux /proc/stat): what the broker
/// and PostgreSQL spent beside this process, and anything else running.
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next().filter(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / 100.0
}

/// `opptak loadgen --conversations N --messages-per-conversation K`.
#[derive(Clone, Debug)]
pub struct ConversationLoadSpec {
    pub conversations: usize,
    pub messages_per_conversation: usize,
    /// As [`LoadSpec::dump`]: every produced event, for the kcat baseline.
    pub dump: Option<std::path::PathBuf>,
}

/// What a conversation load run measured.
#[derive(Clone, Debug, Default)]
pub struct ConversationLoadReport {
    pub conversations: usize,
    /// Chat messages (`ChatMessage` events).
    pub messages: u64,
    /// Kafka records: a start, the messages and an end per conversation.
    pub events: u64,
    pub bytes: u64,
    pub produce_s: f64,
    /// From the role's start to the first conversation stored: joining the
    /// consumer group and the first fetch.
    pub startup_s: f64,
    /// From the first conversation stored to the last one written.
    pub process_s: f64,
    /// This process's CPU from the role's start to the last one written.
    pub cpu_s: f64,
    /// The whole machine's busy CPU over the same time (broker, PostgreSQL).
    pub machine_cpu_s: f64,
    pub stats: opptak_recorder::conversations::ConversationStats,
}

impl ConversationLoadReport {
    pub fn total_s(&self) -> f64 {
        self.startup_s + self.process_s
    }
    pub fn messages_per_s(&self) -> f64 {
        self.messages as f64 / self.process_s.max(1e-9)
    }
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.process_s.max(1e-9)
    }
    pub fn conversations_per_s(&self) -> f64 {
        self.conversations as f64 / self.process_s.max(1e-9)
    }
    pub fn cores(&self) -> f64 {
        self.cpu_s / self.total_s().max(1e-9)
    }
    pub fn machine_cores(&self) -> f64 {
        self.machine_cpu_s / self.total_s().max(1e-9)
    }
}

/// Lines the simulated conversations cycle through (Norwegian, as the bank's
/// chats are; a few with numbers the analysis copy's redactor removes).
const CHAT_LINES: &[&str] = &[
    "Hei, jeg lurer på hvordan jeg kan øke rammen på kredittkortet mitt.",
    "Du kan søke om høyere ramme i nettbanken under Kort og deretter Endre ramme.",
    "Jeg har prøvd det, men får en feilmelding når jeg sender søknaden.",
    "Det beklager vi. Kan du prøve igjen om litt, eller vil du snakke med en rådgiver?",
    "Kontonummeret mitt er 1234 56 78903 og telefonnummeret 912 34 567.",
    "Takk. Jeg ser på saken din nå, et øyeblikk.",
    "Vi har økt rammen til 50 000 kroner. Den gjelder fra i morgen.",
    "Supert, tusen takk for hjelpen! Kan jeg også spare i fond gjennom dere?",
    "Ja, du kan opprette en spareavtale i fond fra 100 kroner i måneden.",
    "Flott, da gjør jeg det. Ha en fin dag!",
];

/// The events of simulated conversation `i`: every third anonymous with
/// Aino, every third logged in with Aino, every third an advisor chat, so
/// the role writes one, two and three copies.
fn conversation_events(
    shared: &dyn opptak_crypto::KeyProvider,
    id: &str,
    i: usize,
    messages: usize,
    end_us: i64,
) -> Result<Vec<opptak_proto::v1::ConversationEvent>> {
    use crate::chat::{ChatConversation, Say};
    use opptak_domain::model::{Channel, Desk, Sender, ServiceCategory};
    let mut c = ChatConversation::new(id, shared)?;
    let start = end_us - (messages as i64 + 1) * 20_000_000;
    let customer = format!("cust-{}", i % 5000);
    let advisor = format!("adv-{}", i % 50);
    let mut events = Vec::with_capacity(messages + 2);
    let answer = match i % 3 {
        0 => {
            events.push(c.started(
                start,
                Channel::AinoChatbot,
                "",
                Some("198.51.100.23"),
                "",
                Desk::Unspecified,
                ServiceCategory::General,
            )?);
            Sender::Bot
        }
        1 => {
            events.push(c.started(
                start,
                Channel::AinoChatbot,
                &customer,
                None,
                "",
                Desk::Unspecified,
                ServiceCategory::General,
            )?);
            Sender::Bot
        }
        _ => {
            events.push(c.started(
                start,
                Channel::AdvisorChat,
                &customer,
                None,
                &advisor,
                Desk::CustomerCenter,
                ServiceCategory::Savings,
            )?);
            Sender::Advisor
        }
    };
    for j in 0..messages {
        let (sender, sender_id) = if j % 2 == 0 {
            (Sender::Customer, "")
        } else if answer == Sender::Advisor {
            (Sender::Advisor, advisor.as_str())
        } else {
            (Sender::Bot, "")
        };
        events.push(c.say(Say {
            at_us: start + (j as i64 + 1) * 20_000_000,
            sender,
            sender_id,
            text: CHAT_LINES[(i + j) % CHAT_LINES.len()],
        })?);
    }
    events.push(c.ended(end_us));
    Ok(events)
}

/// Produces N whole conversations to a fresh messages topic (under
/// `bus.topic_prefix`), interleaved as concurrent chats are (every
/// conversation's start, then every conversation's first message, ...),
/// then starts the messages role in this process on that backlog and waits
/// until every conversation is written: consumed, opened, resealed, stored
/// in the metadata store, its copies written and its open messages gone.
pub async fn run_conversations(edges: &Edges, spec: &ConversationLoadSpec) -> Result<ConversationLoadReport> {
    use crate::app::RunningConversations;
    if spec.conversations == 0 || spec.messages_per_conversation == 0 {
        bail!("conversations and messages-per-conversation must be positive");
    }
    let Some(shared) = edges.telephony_keys.clone() else {
        bail!("the chat systems' KEK is needed: set keys.telephony_keyring (`opptak keys telephony-init` creates one)");
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let run = &run_id[..8];
    let mut e = edges.clone();
    e.config.bus.topic_prefix = format!("{}loadgen-{run}.", edges.config.bus.topic_prefix);
    e.config.messages.group = format!("{}-{run}", edges.config.messages.group);
    let specs = crate::topics::specs_for_roles(&e.config, &e.policy, &["messages"]);
    crate::topics::ensure(e.bus.as_ref(), &specs).await?;
    let topic = e.config.messages_config().topic;

    let end_us = e.clock.now_us();
    let ids: Vec<String> = (0..spec.conversations).map(|i| format!("chat-{run}-{i:06}")).collect();
    let mut convs = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        convs.push(conversation_events(
            shared.as_ref(),
            id,
            i,
            spec.messages_per_conversation,
            end_us,
        )?);
    }
    let mut records = Vec::with_capacity(spec.conversations * (spec.messages_per_conversation + 2));
    for j in 0..spec.messages_per_conversation + 2 {
        for c in &convs {
            let (key, payload) = crate::chat::encode(&c[j]);
            records.push(opptak_bus::Outgoing {
                topic: topic.clone(),
                key: key.into(),
                payload: payload.into(),
            });
        }
    }
    drop(convs);
    if let Some(path) = &spec.dump {
        let mut d = std::io::BufWriter::new(std::fs::File::create(path)?);
        for r in &records {
            write_dump_record(&mut d, &r.key, &r.payload)?;
        }
        d.flush()?;
    }
    let events = records.len() as u64;
    let bytes = records.iter().map(|r| (r.key.len() + r.payload.len()) as u64).sum();
    let t = Instant::now();
    for chunk in records.chunks(2000) {
        e.bus.publish_all(chunk.to_vec()).await?;
    }
    let produce_s = t.elapsed().as_secs_f64();
    drop(records);

    let ids: Vec<opptak_domain::model::CallId> = ids
        .iter()
        .map(|id| opptak_domain::model::CallId::parse(id))
        .collect::<Result<_, _>>()?;
    let meta = e.meta.clone();
    let cpu0 = process_cpu_seconds();
    let machine0 = machine_busy_seconds();
    let t0 = Instant::now();
    let running = RunningConversations::spawn(e.conversations());
    let deadline = t0 + Duration::from_secs(120) + Duration::from_millis(10) * events as u32;
    let mut first: Option<Instant> = None;
    let mut next = 0;
    // Conversations are written roughly in the order they were produced:
    // walk them in that order, each looked up until it is written.
    loop {
        if first.is_none() && !meta.idle_conversations(i64::MAX, 1).await?.is_empty() {
            first = Some(Instant::now());
        }
        while let Some(id) = ids.get(next) {
            match meta.load_conversation(id).await? {
                Some(c) if c.written_at_us.is_some() => next += 1,
                _ => break,
            }
        }
        if next == ids.len() {
            break;
        }
        if Instant::now() > deadline {
            let _ = running.stop().await;
            bail!(
                "{next} of {} conversations written after {:.0} s",
                ids.len(),
                t0.elapsed().as_secs_f64()
            );
        }
        let poll = if first.is_none() { 10 } else { 50 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
    }
    let done = Instant::now();
    let cpu_s = process_cpu_seconds() - cpu0;
    let machine_cpu_s = machine_busy_seconds() - machine0;
    let stats = running.stop().await?;
    for s in &specs {
        e.bus.delete_topic(&s.name).await?;
    }
    let first = first.unwrap_or(t0);
    let messages = (spec.conversations * spec.messages_per_conversation) as u64;
    if stats.messages != messages || stats.dead_letters != 0 {
        bail!(
            "the messages role stored {} of {messages} messages ({} dead-lettered)",
            stats.messages,
            stats.dead_letters
        );
    }
    Ok(ConversationLoadReport {
        conversations: spec.conversations,
        messages,
        events,
        bytes,
        produce_s,
        startup_s: first.duration_since(t0).as_secs_f64(),
        process_s: done.duration_since(first).as_secs_f64(),
        cpu_s,
        machine_cpu_s,
        stats,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opptak_proto::v1::conversation_event::Event;
    use opptak_proto::Message as _;

    /// Splits a dump as kcat does (`-D` between records, `-K` at the first
    /// key delimiter).
    fn kcat_split(dump: &[u8]) -> Vec<(&[u8], &[u8])> {
        let mut out = Vec::new();
        let mut rest = dump;
        while !rest.is_empty() {
            let end = rest
                .windows(DUMP_DELIMITER.len())
                .position(|w| w == DUMP_DELIMITER)
                .expect("every record ends with the delimiter");
            let record = &rest[..end];
            let k = record.iter().position(|b| *b == DUMP_KEY_DELIMITER[0]).expect("a key");
            out.push((&record[..k], &record[k + 1..]));
            rest = &rest[end + DUMP_DELIMITER.len()..];
        }
        out
    }

    #[test]
    fn a_dump_of_conversations_splits_into_the_events_kcat_produces() {
        let dir = tempfile::tempdir().unwrap();
        let shared = opptak_crypto::LocalKeyring::open_or_create(&dir.path().join("chat.json")).unwrap();
        let mut dump = Vec::new();
        let mut produced = Vec::new();
        for i in 0..6 {
            let id = format!("chat-test-{i:06}");
            for ev in conversation_events(&shared, &id, i, 4, 1_800_000_000_000_000).unwrap() {
                let (k, v) = crate::chat::encode(&ev);
                write_dump_record(&mut dump, &k, &v).unwrap();
                produced.push(ev);
            }
        }
        let records = kcat_split(&dump);
        assert_eq!(records.len(), 6 * (4 + 2));
        for ((k, v), ev) in records.into_iter().zip(&produced) {
            assert_eq!(k, ev.conversation_id.as_bytes());
            let back = opptak_proto::v1::ConversationEvent::decode(v).unwrap();
            assert_eq!(&back, ev);
        }
        // Each conversation: a start, its messages, an end; every third
        // one anonymous, every third with an advisor.
        let starts: Vec<_> = produced
            .iter()
            .filter_map(|e| match &e.event {
                Some(Event::ConversationStarted(s)) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 6);
        assert_eq!(starts.iter().filter(|s| s.customer_ref.is_empty()).count(), 2);
        assert_eq!(starts.iter().filter(|s| !s.advisor_id.is_empty()).count(), 2);
        assert!(starts
            .iter()
            .all(|s| s.customer_ref.is_empty() != s.sealed_ip_address.is_empty()));
    }
}
