//! Data-subject requests (R11) for two customers with general, investment,
//! KI and held calls, recorded in the embedded mode: A's export holds all of
//! A's calls and nothing of B's; a dry run changes nothing; A's erasure
//! leaves exactly what the law requires readable (investment recordings
//! within their 24 hours, investment archive copies, the held call) with the
//! legal basis named, makes everything else of A unreadable ("key
//! destroyed"), deletes the objects, leaves evidence, and touches nothing of
//! B's. A second request a day later takes the expired investment
//! recordings too.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::sim::SimCall;
use opptak_compliance::subject::{self, EraseRequest, Outcome};
use opptak_domain::model::{CallId, Codec};
use opptak_domain::time::ManualClock;
use opptak_vault::{VaultError, Which};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    General,
    Investment,
    Ki,
    KiInvestment,
    HeldKi,
}

impl Kind {
    fn investment(self) -> bool {
        matches!(self, Self::Investment | Self::KiInvestment)
    }
    fn ki(self) -> bool {
        matches!(self, Self::Ki | Self::KiInvestment | Self::HeldKi)
    }
}

struct World {
    env: Env,
    edges: Edges,
    a_ref: String,
    b_ref: String,
    a: Vec<(SimCall, Kind)>,
    b: Vec<(SimCall, Kind)>,
    hold_id: String,
    now: i64,
}

async fn world(name: &str) -> World {
    let env = Env::new(&Backend::Embedded, name);
    let edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let prefix = common::unique(name);
    let a_ref = format!("kunde-a-{prefix}");
    let b_ref = format!("kunde-b-{prefix}");
    let make = |who: &str, cref: &str, kinds: &[Kind]| -> Vec<(SimCall, Kind)> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let seed = (who.as_bytes()[0] as u64) * 100 + i as u64;
                let mut c = SimCall::synthetic(&format!("{prefix}-{who}{i}"), Codec::Pcmu, 2, 0.6, seed);
                c.started.customer_ref = cref.to_owned();
                c.started.service_category = if k.investment() { 1 } else { 6 };
                c.started.desk = if k.investment() { 3 } else { 1 };
                c.started.ki_enabled = k.ki();
                c.started.customer_informed = k.ki();
                (c, k)
            })
            .collect()
    };
    use Kind::*;
    let a = make("a", &a_ref, &[General, Investment, Ki, KiInvestment, HeldKi]);
    let b = make("b", &b_ref, &[Ki, Investment, KiInvestment]);
    for (c, _) in a.iter().chain(&b) {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, a.len() + b.len(), 60).await;
    recorder.stop().await.unwrap();
    let held = CallId::parse(&a[4].0.call_id).unwrap();
    let hold = edges
        .retention()
        .place_hold(&held, "FKN-2026-0203", "complaint to Finansklagenemnda", "co-anne")
        .await
        .unwrap();
    let now = edges.clock.now_us();
    World {
        env,
        edges,
        a_ref,
        b_ref,
        a,
        b,
        hold_id: hold.hold_id,
        now,
    }
}

impl World {
    /// Moves the clock the erasure decides by.
    fn at(&mut self, us: i64) {
        self.edges.clock = Arc::new(ManualClock::new(us));
    }

    async fn read(&self, call: &SimCall, which: Which) -> Result<Vec<u8>, VaultError> {
        let id = CallId::parse(&call.call_id).unwrap();
        self.edges.vault().read_artifact(&id, which).await.map(|r| r.pcm)
    }

    /// Each artifact of the calls: readable (and equal to the source), shredded, or never written.
    async fn check(&self, calls: &[(SimCall, Kind)], readable: impl Fn(Kind, Which) -> bool, when: &str) {
        for (c, k) in calls {
            for which in [Which::Recording, Which::Archive, Which::Ki] {
                let exists = match which {
                    Which::Recording => true,
                    Which::Archive => k.investment(),
                    Which::Ki => k.ki(),
                };
                match (exists, readable(*k, which), self.read(c, which).await) {
                    (false, _, Err(VaultError::NoArtifact { .. })) => {}
                    (true, true, Ok(pcm)) => assert!(pcm == c.expected_pcm(), "{when}: {} {which:?}", c.call_id),
                    (true, false, Err(VaultError::KeyDestroyed { .. })) => {}
                    (e, r, got) => panic!(
                        "{when}: {} ({k:?}) {which:?}: exists {e}, should be readable {r}, got {:?}",
                        c.call_id,
                        got.map(|p| p.len())
                    ),
                }
            }
        }
    }

    async fn shreddings(&self) -> usize {
        self.edges.meta.shreddings(None).await.unwrap().len()
    }

    fn erase_request(&self, dry_run: bool) -> EraseRequest {
        EraseRequest {
            customer_ref: self.a_ref.clone(),
            by: "co-anne".into(),
            reason: "erasure request DSR-2026-0042".into(),
            dry_run,
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(
                    std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                    0o700,
                    "{}",
                    p.display()
                );
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_holds_all_of_a_and_nothing_of_b() {
    let w = world("subjexp").await;
    let out = w.env.dir.path().join("export-a");
    let mut steps = 0;
    let report = subject::export(&w.edges.compliance(), "co-anne", &w.a_ref, &out, &mut |_| steps += 1)
        .await
        .unwrap();
    assert_eq!(steps, w.a.len());
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);

    let index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["customer_ref"], w.a_ref.as_str());
    assert_eq!(index["format"], subject::EXPORT_FORMAT);
    let exported: BTreeSet<&str> = index["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let a_ids: BTreeSet<&str> = w.a.iter().map(|(c, _)| c.call_id.as_str()).collect();
    assert_eq!(exported, a_ids);

    // Every file is in the index with its SHA-256, and every indexed file exists.
    let mut indexed = BTreeMap::new();
    for c in index["calls"].as_array().unwrap() {
        for f in c["files"].as_array().unwrap() {
            indexed.insert(
                f["name"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            );
        }
    }
    let on_disk = files_under(&out);
    assert_eq!(on_disk.len(), indexed.len() + 1, "{on_disk:?}");
    for p in &on_disk {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        let rel = p.strip_prefix(&out).unwrap().display().to_string();
        if rel == "index.json" {
            continue;
        }
        assert_eq!(
            indexed[&rel],
            opptak_compliance::disclose::sha256_hex(&std::fs::read(p).unwrap()),
            "{rel}"
        );
    }
    assert_eq!(report.calls.iter().map(|c| c.files.len()).sum::<usize>(), indexed.len());

    // Each call: its metadata and every audio artifact, sample-identical.
    for (c, k) in &w.a {
        let dir = out.join(&c.call_id);
        let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
        assert_eq!(meta["call"]["call_id"], c.call_id.as_str());
        assert_eq!(meta["call"]["customer_ref"], w.a_ref.as_str());
        assert!(meta["retention"]["decisions"].as_array().unwrap().len() >= 3);
        let mut wanted = vec!["metadata.json", "recording.wav", "derived-and-recipients.json"];
        if k.investment() {
            wanted.push("archive-copy.wav");
        }
        if k.ki() {
            wanted.push("ki-audio.wav");
        }
        wanted.sort();
        let mut got: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, wanted, "{}", c.call_id);
        for wav in wanted.iter().filter(|n| n.ends_with(".wav")) {
            let mut r = hound::WavReader::open(dir.join(wav)).unwrap();
            let pcm: Vec<u8> = r.samples::<i16>().flat_map(|s| s.unwrap().to_le_bytes()).collect();
            assert!(pcm == c.expected_pcm(), "{} {wav}", c.call_id);
        }
        if *k == Kind::HeldKi {
            assert_eq!(meta["holds"][0]["hold_id"], w.hold_id.as_str());
        }
    }

    // Nothing of B: no call id, no customer reference, no audio.
    let mut needles: Vec<String> = w.b.iter().map(|(c, _)| c.call_id.clone()).collect();
    needles.push(w.b_ref.clone());
    for p in &on_disk {
        let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{} mentions {n}", p.display());
        }
    }
    let b_calls: Vec<SimCall> = w.b.iter().map(|(c, _)| c.clone()).collect();
    let hits = common::scan_dir(&out, &common::probes(&b_calls, 64));
    assert!(hits.is_empty(), "B's audio in A's export: {hits:?}");

    // Refusals: a non-empty directory, an empty reference.
    let e = subject::export(&w.edges.compliance(), "co-anne", &w.a_ref, &out, &mut |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(subject::export(
        &w.edges.compliance(),
        "co-anne",
        " ",
        &w.env.dir.path().join("x"),
        &mut |_| {}
    )
    .await
    .is_err());
    // A customer with no calls gets an index that says so.
    let none = w.env.dir.path().join("export-none");
    let r = subject::export(&w.edges.compliance(), "co-anne", "kunde-ukjent", &none, &mut |_| {})
        .await
        .unwrap();
    assert!(r.calls.is_empty());
    let index: Value = serde_json::from_slice(&std::fs::read(none.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["calls"].as_array().unwrap().len(), 0);

    // The binary writes the same export.
    let cli_out = w.env.dir.path().join("export-cli");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
        .env_remove("OPPTAK_CONFIG")
        .envs(w.env.vars.iter().cloned())
        .args(["subject", "export", &w.a_ref, "--out", cli_out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains(&format!("exported {} call(s)", w.a.len())), "{stdout}");
    assert_eq!(files_under(&cli_out).len(), on_disk.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_keeps_what_the_law_requires_and_nothing_else() {
    let mut w = world("subjerase").await;
    let everything = |_: Kind, _: Which| true;
    w.check(&w.a, everything, "recorded").await;
    let before = w.shreddings().await;

    // An hour after the calls: a dry run reports and changes nothing.
    w.at(w.now + HOUR);
    let dry = subject::erase(&w.edges.compliance(), &w.erase_request(true), &mut |_| {})
        .await
        .unwrap();
    assert!(dry.count(Outcome::WouldErase) > 0 && dry.count(Outcome::Erased) == 0);
    assert!(dry.render().contains("DRY RUN"), "{}", dry.render());
    assert_eq!(w.shreddings().await, before);
    w.check(&w.a, everything, "after the dry run").await;

    // The erasure itself.
    let report = subject::erase(&w.edges.compliance(), &w.erase_request(false), &mut |_| {})
        .await
        .unwrap();
    let text = report.render();
    assert_eq!(report.calls.len(), w.a.len());
    // Within the 24 hours an investment call keeps its recording and its
    // archive copy; KI artifacts go even there; the held call keeps everything.
    let kept_now = |k: Kind, which: Which| match which {
        _ if k == Kind::HeldKi => true,
        Which::Ki => false,
        Which::Archive => true,
        Which::Recording => k.investment(),
    };
    w.check(&w.a, kept_now, "+1 h").await;
    w.check(&w.b, everything, "B after A's erasure").await;
    for (c, _) in &w.b {
        let id = CallId::parse(&c.call_id).unwrap();
        assert!(w.edges.meta.shreddings(Some(&id)).await.unwrap().is_empty());
    }
    // The dry run foresaw exactly what happened.
    assert_eq!(dry.count(Outcome::WouldErase), report.count(Outcome::Erased), "{text}");

    // The report names each outcome's basis.
    assert!(text.contains("Verdipapirhandelloven / MiFID II"), "{text}");
    assert!(
        text.contains(&format!("legal hold {} (case FKN-2026-0203)", w.hold_id)),
        "{text}"
    );
    assert!(text.contains("KI artifacts are not exempt"), "{text}");
    for i in &report.items {
        assert!(!i.basis.is_empty(), "{i:?}");
        let (_, k) = w.a.iter().find(|(c, _)| c.call_id == i.call_id.as_str()).unwrap();
        let which = match i.kind.as_str() {
            "recording" => Which::Recording,
            "archive-copy" => Which::Archive,
            "ki-audio" => Which::Ki,
            other => panic!("unexpected {other}"),
        };
        let want = if kept_now(*k, which) {
            Outcome::Stays
        } else {
            Outcome::Erased
        };
        assert_eq!(i.outcome, want, "{i:?}");
        if i.outcome == Outcome::Stays && i.kind == "archive-copy" {
            assert!(i.basis.contains("investment-archive-5y"), "{i:?}");
        }
    }

    // Evidence: each shredding names the officer and the request; each
    // erased artifact is marked deleted with its own deletion record, and
    // its object is gone from the blob store.
    let general = CallId::parse(&w.a[0].0.call_id).unwrap();
    let ev = w.edges.meta.shreddings(Some(&general)).await.unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].requested_by, "co-anne");
    assert!(ev[0].reason.contains("DSR-2026-0042"));
    let deletions = w.edges.meta.deletions(Some(&general)).await.unwrap();
    assert_eq!(deletions.len(), 1);
    assert!(deletions[0].rule.starts_with("subject-erasure"), "{deletions:?}");
    let rows = w.edges.meta.retention_of(&general).await.unwrap();
    assert!(rows.iter().all(|r| r.deleted_at_us.is_some()), "{rows:?}");
    let arts = w.edges.meta.artifacts(&general).await.unwrap();
    let path = &arts[0].object.as_ref().unwrap().path;
    assert!(matches!(
        w.edges.blobs.get(path).await,
        Err(opptak_store::StoreError::NotFound(_))
    ));

    // A day later the investment recordings' 24 hours are over: a new
    // request takes them; the archive copies and the held call stay.
    w.at(w.now + 25 * HOUR);
    let later = subject::erase(&w.edges.compliance(), &w.erase_request(false), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(later.count(Outcome::Erased), 2, "{}", later.render());
    let kept_later = |k: Kind, which: Which| k == Kind::HeldKi || which == Which::Archive;
    w.check(&w.a, kept_later, "+25 h").await;
    w.check(&w.b, everything, "B after both requests").await;
    assert!(later.render().contains("already erased"));

    // The binary's dry run prints the same verdicts and changes nothing.
    let before = w.shreddings().await;
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
        .env_remove("OPPTAK_CONFIG")
        .envs(w.env.vars.iter().cloned())
        .env("OPPTAK_NOW_US", (w.now + 25 * HOUR).to_string())
        .args([
            "subject",
            "erase",
            &w.a_ref,
            "--by",
            "co-bjorn",
            "--reason",
            "DSR-2026-0042 follow-up",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("DRY RUN") && stdout.contains("STAYS"), "{stdout}");
    assert!(stdout.contains(&w.hold_id), "{stdout}");
    assert_eq!(w.shreddings().await, before);
    // Empty --by / --reason are refused.
    let mut bad = w.erase_request(false);
    bad.by = " ".into();
    let e = subject::erase(&w.edges.compliance(), &bad, &mut |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--by must not be empty"), "{e}");
    // Every request is in the audit log, which verifies.
    let audit = w.edges.audit().await.unwrap();
    let entries = audit.entries(1, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.event.action.as_str()).collect();
    assert!(
        actions.contains(&"subject.erase") && actions.contains(&"subject.erase.dry-run"),
        "{actions:?}"
    );
    // The hold placed in the set-up is there too (issue 16: holds are audited).
    assert!(
        entries.iter().all(|e| e.event.role == "compliance"
            && (e.event.subject == format!("customer:{}", w.a_ref)
                || (e.event.action == "hold.place" && e.event.subject.starts_with("call:")))),
        "{entries:?}"
    );
    assert!(actions.contains(&"hold.place"), "{actions:?}");
    assert!(audit.verify(None).await.unwrap().ok());
}
