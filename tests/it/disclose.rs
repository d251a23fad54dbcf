//! Disclosure packages (R10): an investment call recorded in the embedded
//! mode is disclosed to a recipient's age key; the recipient decrypts it,
//! unpacks it and finds the call's exact audio, its facts and the case, every
//! file matching the manifest's SHA-256. Another key cannot open it. A call
//! whose keys were shredded still goes out, without audio, saying why.
//! Refusals: unknown call, malformed key, existing output, empty fields.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::sim::SimCall;
use opptak_compliance::disclose::{self, Request};
use opptak_domain::model::{CallId, Codec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct World {
    env: Env,
    edges: Edges,
    investment: SimCall,
    general: SimCall,
}

async fn world(name: &str) -> World {
    let env = Env::new(&Backend::Embedded, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let prefix = common::unique(name);
    let mut investment = SimCall::synthetic(&format!("{prefix}-inv"), Codec::Pcmu, 2, 1.3, 11);
    investment.started.service_category = 1; // investment advice
    investment.started.desk = 2; // markets
    investment.started.advisor_id = "adv-markets-7".into();
    let mut general = SimCall::synthetic(&format!("{prefix}-gen"), Codec::Pcma, 1, 0.7, 12);
    general.started.service_category = 6;
    for c in [&investment, &general] {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, 2, 60).await;
    recorder.stop().await.unwrap();
    World {
        env,
        edges,
        investment,
        general,
    }
}

fn request(call: &SimCall, key: &str) -> Request {
    Request {
        call_id: CallId::parse(&call.call_id).unwrap(),
        recipient: "Finansklagenemnda".into(),
        recipient_key: key.into(),
        case_ref: "FKN-2026-0117".into(),
        disclosed_by: "co-anne".into(),
        reason: "complaint case: the customer disputes the advice given".into(),
    }
}

/// Decrypts a package and unpacks it: file names in archive order, and contents.
pub(crate) fn open_package(identity: &age::x25519::Identity, path: &Path) -> (Vec<String>, BTreeMap<String, Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap();
    let plain = age::decrypt(identity, &bytes).unwrap();
    let mut archive = tar::Archive::new(plain.as_slice());
    let mut order = Vec::new();
    let mut files = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        order.push(name.clone());
        files.insert(name, data);
    }
    (order, files)
}

/// Every file but the manifest is listed in it with its size and SHA-256;
/// the call has no approved summary.
fn check_manifest(files: &BTreeMap<String, Vec<u8>>) -> Value {
    let manifest = check_files(files);
    assert_eq!(manifest["approved_summary"], "no approved summary");
    manifest
}

/// Every file but the manifest is listed in it with its size and SHA-256.
fn check_files(files: &BTreeMap<String, Vec<u8>>) -> Value {
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let listed: Vec<&Value> = manifest["files"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), files.len() - 1, "{manifest:#}");
    for f in listed {
        let name = f["name"].as_str().unwrap();
        let data = &files[name];
        assert_eq!(f["bytes"].as_u64().unwrap(), data.len() as u64, "{name}");
        assert_eq!(f["sha256"].as_str().unwrap(), disclose::sha256_hex(data), "{name}");
    }
    assert_eq!(manifest["format"], disclose::PACKAGE_FORMAT);
    manifest
}

fn pcm_of_wav(wav: &[u8]) -> (hound::WavSpec, Vec<u8>) {
    let mut r = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    let spec = r.spec();
    let pcm = r.samples::<i16>().flat_map(|s| s.unwrap().to_le_bytes()).collect();
    (spec, pcm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_investment_call_is_disclosed_to_its_recipient_only() {
    let w = world("disc").await;
    let identity = age::x25519::Identity::generate();
    let key = identity.to_public().to_string();
    let out = w.env.dir.path().join("FKN-2026-0117.age");
    let req = request(&w.investment, &key);
    let mut steps = Vec::new();
    let pkg = disclose::disclose(&w.edges.compliance(), &req, &out, &mut |s| steps.push(s.to_owned()))
        .await
        .unwrap();
    assert!(steps.len() >= 3, "{steps:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(disclose::sha256_hex(&std::fs::read(&out).unwrap()), pkg.sha256);
    assert_eq!(pkg.audio_source.as_deref(), Some("archive-copy"));
    // Audited: who, to whom, under which case.
    let audit = w.edges.audit().await.unwrap();
    let logged = audit.entries(1, 10).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].event.action, "disclosure");
    assert_eq!(logged[0].event.actor, req.disclosed_by);
    assert!(logged[0].event.reason.contains(&req.case_ref), "{:?}", logged[0].event);

    let (order, files) = open_package(&identity, &out);
    assert_eq!(order, ["manifest.json", "metadata.json", "recording.wav"]);
    let manifest = check_manifest(&files);
    assert_eq!(manifest["call_id"], w.investment.call_id.as_str());
    assert_eq!(manifest["case"], "FKN-2026-0117");
    assert_eq!(manifest["recipient"], "Finansklagenemnda");
    assert_eq!(manifest["recipient_key"], key.as_str());
    assert_eq!(manifest["disclosed_by"], "co-anne");
    assert_eq!(manifest["audio"]["source"], "archive-copy");
    let archive_rules = manifest["policy_rules"]["archive-copy"].to_string();
    assert!(archive_rules.contains("investment-archive-5y"), "{archive_rules}");
    assert!(archive_rules.contains("MiFID II"), "{archive_rules}");
    // The receipt lists the same hashes.
    let receipt = disclose::receipt(&pkg, &req, &out);
    assert!(receipt.contains(&pkg.sha256));
    for f in &pkg.files {
        assert_eq!(f.sha256, disclose::sha256_hex(&files[&f.name]));
        assert!(receipt.contains(&f.sha256), "{receipt}");
    }

    // The audio is exactly the call's source, decoded to PCM16.
    let (spec, pcm) = pcm_of_wav(&files["recording.wav"]);
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 8000, 16));
    assert!(pcm == w.investment.expected_pcm(), "audio differs from the source");

    let meta: Value = serde_json::from_slice(&files["metadata.json"]).unwrap();
    assert_eq!(meta["call"]["call_id"], w.investment.call_id.as_str());
    assert_eq!(meta["call"]["service_category"], "investment_advice");
    assert_eq!(meta["call"]["desk"], "markets");
    assert_eq!(meta["call"]["advisor_id"], "adv-markets-7");
    assert_eq!(meta["call"]["customer_ref"], w.investment.started.customer_ref.as_str());
    assert_eq!(meta["call"]["codec"], "pcmu");
    assert_eq!(meta["disclosure"]["case"], "FKN-2026-0117");
    let kinds: Vec<&str> = meta["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["state"], "stored");
            a["kind"].as_str().unwrap()
        })
        .collect();
    assert!(
        kinds.contains(&"recording") && kinds.contains(&"archive-copy"),
        "{kinds:?}"
    );
    assert!(meta["retention"]["explanation"]
        .as_str()
        .unwrap()
        .contains("investment-archive-5y"));
    // Nothing of the other call.
    let text = String::from_utf8_lossy(&files["metadata.json"]).into_owned();
    assert!(!text.contains(&w.general.call_id));

    // Another key cannot open it.
    let stranger = age::x25519::Identity::generate();
    assert!(age::decrypt(&stranger, &std::fs::read(&out).unwrap()).is_err());

    // A call without an archive copy goes out with its 24-hour recording.
    let out_gen = w.env.dir.path().join("general.age");
    let pkg = disclose::disclose(&w.edges.compliance(), &request(&w.general, &key), &out_gen, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(pkg.audio_source.as_deref(), Some("recording"));
    let (_, files) = open_package(&identity, &out_gen);
    let manifest = check_manifest(&files);
    assert!(manifest["audio"]["not_used"][0]
        .as_str()
        .unwrap()
        .contains("has no archive-copy"));
    let (spec, pcm) = pcm_of_wav(&files["recording.wav"]);
    assert_eq!(spec.channels, 1);
    assert!(pcm == w.general.expected_pcm());

    // Refusals, each before anything is written.
    let refuse = |r: anyhow::Result<disclose::Package>, what: &str| {
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains(what), "expected {what:?} in: {e}");
    };
    let out2 = w.env.dir.path().join("refused.age");
    refuse(
        disclose::disclose(&w.edges.compliance(), &req, &out, &mut |_| {}).await,
        "refusing to overwrite",
    );
    let mut unknown = req.clone();
    unknown.call_id = CallId::parse("no-such-call").unwrap();
    refuse(
        disclose::disclose(&w.edges.compliance(), &unknown, &out2, &mut |_| {}).await,
        "no call no-such-call",
    );
    let mut bad = req.clone();
    bad.recipient_key = "age1notarecipient".into();
    refuse(
        disclose::disclose(&w.edges.compliance(), &bad, &out2, &mut |_| {}).await,
        "is not an age X25519 recipient",
    );
    bad.recipient_key = "AGE-SECRET-KEY-1QQQQ".into();
    refuse(
        disclose::disclose(&w.edges.compliance(), &bad, &out2, &mut |_| {}).await,
        "secret",
    );
    for field in ["case", "by", "reason", "to"] {
        let mut empty = req.clone();
        match field {
            "case" => empty.case_ref = " ".into(),
            "by" => empty.disclosed_by = String::new(),
            "reason" => empty.reason = "\t".into(),
            _ => empty.recipient = String::new(),
        }
        refuse(
            disclose::disclose(&w.edges.compliance(), &empty, &out2, &mut |_| {}).await,
            &format!("--{field} must not be empty"),
        );
    }
    assert!(!out2.exists());

    // The binary: the same package, and its receipt on stdout.
    let cli_out = w.env.dir.path().join("cli.age");
    let run = |out: &Path, key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
            .env_remove("OPPTAK_CONFIG")
            .envs(w.env.vars.iter().cloned())
            .args([
                "disclose",
                &w.investment.call_id,
                "--to",
                "Finanstilsynet",
                "--recipient-key",
                key,
                "--case",
                "FT-2026-0042",
                "--by",
                "co-bjorn",
                "--reason",
                "order of 2026-11-20",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let o = run(&cli_out, &key);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("recording.wav") && stdout.contains("sha256"),
        "{stdout}"
    );
    let (_, files) = open_package(&identity, &cli_out);
    assert_eq!(check_manifest(&files)["case"], "FT-2026-0042");
    let o = run(&w.env.dir.path().join("cli2.age"), "not-a-key");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("starting with age1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_call_goes_out_without_audio_and_says_why() {
    let w = world("discshred").await;
    let id = CallId::parse(&w.investment.call_id).unwrap();
    let now = opptak_domain::time::Clock::now_us(w.edges.clock.as_ref());
    for class in ["archive-5y", "audio-24h"] {
        w.edges
            .meta
            .shred_key(&id, class, "test: retention ended", "co-anne", now)
            .await
            .unwrap();
    }
    let identity = age::x25519::Identity::generate();
    let out = w.env.dir.path().join("shredded.age");
    let pkg = disclose::disclose(
        &w.edges.compliance(),
        &request(&w.investment, &identity.to_public().to_string()),
        &out,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(pkg.audio_source, None);
    let (order, files) = open_package(&identity, &out);
    assert_eq!(order, ["manifest.json", "metadata.json"]);
    let manifest = check_manifest(&files);
    assert_eq!(manifest["audio"]["included"], false);
    let why = manifest["audio"]["why"].to_string();
    assert!(why.contains("archive-copy: key destroyed"), "{why}");
    assert!(why.contains("recording: key destroyed"), "{why}");
    let meta: Value = serde_json::from_slice(&files["metadata.json"]).unwrap();
    for a in meta["artifacts"].as_array().unwrap() {
        assert_eq!(a["state"], "unreadable (key destroyed)", "{a}");
    }
    assert_eq!(meta["shreddings"].as_array().unwrap().len(), 2);
}

/// Issue 16, section 3: a complaint is about a call whose summary the advisor
/// approved. The package holds the recording (the archive copy: a Private
/// Banking call is archived by its desk), the transcript and the approved
/// summary with its approver and every version of the review (on the old
/// main `disclose` refused any call with an approved summary, and its
/// manifest always said "no approved summary"). Once the 24-hour recording
/// and the archive copy are gone, the 30-day KI copy is the audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_an_approved_summary_is_disclosed_whole() {
    use common::AddApproved;
    use opptak_review::identity::{Identity, Role};
    use opptak_review::review::{Decision, Review};
    let env = Env::new(&Backend::Embedded, "disc_summary");
    let edges = env.edges().await;
    let users = Identity::open(&edges.review()).await.unwrap();
    let anne = users
        .add_approved(
            "setup",
            "adv-anne",
            "Anne",
            Role::Advisor,
            "pb",
            "correct horse battery staple",
        )
        .await
        .unwrap();
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    sample.call.started.advisor_id = "adv-anne".into();
    let cid = CallId::parse(&sample.call.call_id).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = opptak::app::RunningKi::spawn(
        &edges,
        true,
        true,
        Some(std::sync::Arc::new(common::FixedAsr(
            "we agree a monthly fund savings plan of two thousand kroner",
        ))),
    )
    .await
    .unwrap();
    common::publish_events(&edges, &sample.call.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    common::wait_for_draft(&edges, &cid, 90).await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    let review = Review::open(&edges.review()).await.unwrap();
    review
        .decide(&anne, &cid, Decision::Edit("A first edit of the summary.".into()))
        .await
        .unwrap();
    let approved = "The client agrees a monthly fund savings plan of 2,000 kroner for the daughter.";
    review
        .decide(&anne, &cid, Decision::Approve(approved.into()))
        .await
        .unwrap();

    let identity = age::x25519::Identity::generate();
    let key = identity.to_public().to_string();
    let mut req = request(&sample.call, &key);
    req.call_id = cid.clone();
    let out = env.dir.path().join("FKN-summary.age");
    let pkg = disclose::disclose(&edges.compliance(), &req, &out, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(pkg.audio_source.as_deref(), Some("archive-copy"));
    let (order, files) = open_package(&identity, &out);
    assert_eq!(
        order,
        [
            "manifest.json",
            "metadata.json",
            "recording.wav",
            "approved-summary.json",
            "transcript.json"
        ]
    );
    let manifest = check_files(&files);
    assert_eq!(manifest["approved_summary"]["approved_by"], "adv-anne", "{manifest:#}");
    assert_eq!(manifest["approved_summary"]["versions"], 2);
    assert_eq!(manifest["transcript"]["included"], true);
    let archive_rules = manifest["policy_rules"]["archive-copy"].to_string();
    assert!(archive_rules.contains("advisory-desk-archive-5y"), "{archive_rules}");
    let summary: Value = serde_json::from_slice(&files["approved-summary.json"]).unwrap();
    assert_eq!(summary["record"]["summary"], approved);
    assert_eq!(summary["versions"][0]["kind"], "edit");
    assert_eq!(summary["versions"][0]["text"], "A first edit of the summary.");
    assert_eq!(summary["versions"][1]["kind"], "approved");
    assert_eq!(summary["versions"][1]["author"], "adv-anne");
    let transcript = String::from_utf8_lossy(&files["transcript.json"]).to_string();
    assert!(transcript.contains("fund savings plan"), "{transcript}");

    // The archive copy and the recording gone: the 30-day KI copy is the audio.
    for class in ["archive-5y", "audio-24h"] {
        edges.vault().shred(&cid, class, "test", "test").await.unwrap();
    }
    let out = env.dir.path().join("FKN-summary-2.age");
    let pkg = disclose::disclose(&edges.compliance(), &req, &out, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(pkg.audio_source.as_deref(), Some("ki-audio"), "{:?}", pkg.audio_missing);
    let (_, files) = open_package(&identity, &out);
    let (_, pcm) = pcm_of_wav(&files["recording.wav"]);
    assert_eq!(pcm, sample.call.expected_pcm());

    // Issue 16, section 5: the customer's own export holds the approved
    // summary with its versions, what was derived from the call (topics,
    // quality control) and who received it (GDPR art. 15(1)(c)); on the old
    // main it had none of these.
    let export_dir = env.dir.path().join("export");
    let customer = sample.call.started.customer_ref.clone();
    opptak_compliance::subject::export(&edges.compliance(), "co-anne", &customer, &export_dir, &mut |_| {})
        .await
        .unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(export_dir.join(cid.as_str()).join(name)).unwrap()).unwrap()
    };
    let exported = read("approved-summary.json");
    assert_eq!(exported["record"]["summary"], approved);
    assert_eq!(exported["versions"].as_array().unwrap().len(), 2);
    let about = read("derived-and-recipients.json");
    let recipients = about["disclosed_to"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{about:#}");
    assert!(recipients[0]["case_and_recipient"]
        .as_str()
        .unwrap()
        .contains("Finansklagenemnda"));
    assert!(!about["topics"]["topics"].as_array().unwrap().is_empty(), "{about:#}");
}
