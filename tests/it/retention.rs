//! Retention over time (issue 4): 1,000 synthetic calls — general,
//! investment, KI, KI plus investment, KI opt-out mid-call, held, extended —
//! recorded, then the clock travels. Nothing disappears early (checked one
//! second before every expiry), everything disappears on time with its
//! evidence, at +25 h only the audio that must survive exists, at +31 d the
//! KI copies are gone, at +5 y +1 d the archives are gone unless held or
//! extended. A sweep interrupted mid-batch, or killed between deleting an
//! object and recording it, reaches the same final state when run again.

use crate::common;

use common::{wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::sim::SimCall;
use opptak_domain::model::{CallId, Codec};
use opptak_domain::time::{add_years, Clock, ManualClock};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_retention::Retention;
use opptak_vault::{VaultError, Which};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const SEC: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mix {
    General,
    Investment,
    Ki,
    KiInvestment,
    OptOut,
    Held,
    Extended,
}

impl Mix {
    fn of(i: usize) -> Self {
        [
            Self::General,
            Self::General,
            Self::Investment,
            Self::Ki,
            Self::KiInvestment,
            Self::OptOut,
            Self::Held,
            Self::Extended,
        ][i % 8]
    }
    fn investment(self) -> bool {
        matches!(
            self,
            Self::Investment | Self::KiInvestment | Self::Held | Self::Extended
        )
    }
    fn ki(self) -> bool {
        matches!(self, Self::Ki | Self::KiInvestment | Self::Held)
    }
}

struct World {
    _env: Env,
    edges: Edges,
    clock: Arc<ManualClock>,
    retention: Retention,
    calls: Vec<(SimCall, Mix, i64)>,
    dead_letters: Vec<v1::DeadLetter>,
    db: sqlx::SqlitePool,
}

fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(SEC),
        nanos: (us.rem_euclid(SEC) * 1000) as i32,
    }
}

/// Records `n` calls ending at `base` + 0..9 s, then routes them.
async fn world(name: &str, n: usize, base: i64) -> World {
    let env = Env::new(&Backend::Embedded, name);
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    // Every clock the same one: routing, the sweeper, and the archive's WORM checks.
    let edges = env.edges().await.with_clock(clock_dyn.clone()).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut calls = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        let mix = Mix::of(i);
        let mut c = SimCall::synthetic(
            &format!("{name}-{i:04}"),
            [Codec::Pcmu, Codec::Pcma][i % 2],
            1,
            0.3,
            i as u64,
        );
        c.started.service_category = if mix.investment() { 1 } else { [2, 3, 5, 6][i % 4] };
        // Non-investment calls at desks that are not advisory: Markets and
        // Private Banking calls are archived whatever their category (the
        // desk rule; its own test is below).
        c.started.desk = if mix.investment() {
            (i % 4) as i32 + 1
        } else {
            [1, 4][i % 2]
        };
        c.started.ki_enabled = mix.ki() || mix == Mix::OptOut;
        c.started.customer_informed = c.started.ki_enabled;
        if mix == Mix::OptOut {
            c.opt_out_at_ms = Some(100);
        }
        let ended = base + (i % 10) as i64 * SEC;
        c.started.started_at = Some(timestamp(ended - 60 * SEC));
        for mut e in c.events(100) {
            if let Some(Event::CallEnded(end)) = e.event.as_mut() {
                end.ended_at = Some(timestamp(ended));
            }
            events.push(e);
        }
        calls.push((c, mix, ended));
    }
    common::publish_events(&edges, &events).await;
    // A chunk after the end for every 50th call: a dead letter under its recording key.
    let late: Vec<v1::TelephonyEvent> = calls
        .iter()
        .step_by(50)
        .map(|(c, _, _)| v1::TelephonyEvent {
            call_id: c.call_id.clone(),
            event: Some(Event::AudioChunk(v1::AudioChunk {
                sequence: 5_000,
                payload: c.wire[..80].to_vec(),
                duration: None,
                offset: None,
                sealed_payload: Vec::new(),
            })),
        })
        .collect();
    wait_for_recordings(&edges, n, 300).await;
    common::publish_events(&edges, &late).await;
    let dl_topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges.bus.subscribe(&common::unique("dl"), &[dl_topic]).await.unwrap();
    let mut dead_letters = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while dead_letters.len() < late.len() && tokio::time::Instant::now() < deadline {
        for r in sub.poll(1000, std::time::Duration::from_millis(200)).await.unwrap() {
            dead_letters.push(<v1::DeadLetter as opptak_proto::Message>::decode(r.payload.as_ref()).unwrap());
        }
    }
    assert_eq!(dead_letters.len(), late.len());
    recorder.stop().await.unwrap();
    let retention = edges.retention();
    for (c, mix, _) in &calls {
        let id = CallId::parse(&c.call_id).unwrap();
        match mix {
            Mix::Held => {
                retention
                    .place_hold(&id, "FKN-2026-17", "complaint to Finansklagenemnda", "co-anne")
                    .await
                    .unwrap();
            }
            Mix::Extended => {
                retention
                    .extend(&id, 7, "Finanstilsynet", "FT-2026-0042", "co-anne")
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
    let db_path = env.dir.path().join("opptak.db");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    World {
        _env: env,
        edges,
        clock,
        retention,
        calls,
        dead_letters,
        db,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    artifact_id: String,
    call_id: String,
    kind: String,
    expires: i64,
    held: bool,
    deleted: Option<i64>,
}

impl World {
    async fn rows(&self) -> Vec<Row> {
        let rows: Vec<(String, String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT artifact_id, call_id, kind, expires_at_us, held, deleted_at_us FROM retention ORDER BY artifact_id",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(artifact_id, call_id, kind, expires, held, deleted)| Row {
                artifact_id,
                call_id,
                kind,
                expires,
                held: held != 0,
                deleted,
            })
            .collect()
    }

    async fn sweep(&self) -> opptak_retention::SweepReport {
        self.retention
            .sweep(100, &AtomicBool::new(false), |_| {})
            .await
            .unwrap()
    }

    async fn read(&self, call: &str, which: Which) -> Result<(), VaultError> {
        let id = CallId::parse(call).unwrap();
        self.edges.vault().read_artifact(&id, which).await.map(|_| ())
    }

    /// Each call's artifacts: readable, gone by shredding, or never written.
    async fn check_survivors(&self, survives: impl Fn(Mix, Which) -> bool, when: &str) {
        for (c, mix, _) in &self.calls {
            for which in [Which::Recording, Which::Archive, Which::Ki] {
                let r = self.read(&c.call_id, which).await;
                let exists = match which {
                    Which::Recording => true,
                    Which::Archive => mix.investment(),
                    Which::Ki => mix.ki(),
                };
                match (exists, survives(*mix, which), r) {
                    (false, _, Err(VaultError::NoArtifact { .. })) => {}
                    (true, true, Ok(())) => {}
                    (true, false, Err(VaultError::KeyDestroyed { .. })) => {}
                    (e, s, r) => panic!(
                        "{when}: {} ({mix:?}) {which:?}: exists {e}, should survive {s}, got {r:?}",
                        c.call_id
                    ),
                }
            }
        }
    }

    /// Every deletion has its evidence and none happened before its expiry.
    async fn check_evidence(&self) {
        let rows = self.rows().await;
        let deletions = self.edges.meta.deletions(None).await.unwrap();
        let deleted: BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.deleted.is_some())
            .map(|r| r.artifact_id.as_str())
            .collect();
        let evidence: BTreeSet<&str> = deletions.iter().map(|d| d.artifact_id.as_str()).collect();
        assert_eq!(deleted, evidence, "one evidence record per deletion");
        for d in &deletions {
            assert!(d.deleted_at_us >= d.expired_at_us, "deleted early: {d:?}");
            assert!(!d.rule.is_empty());
        }
        // Each shredding names a key that is now destroyed and has its own evidence.
        let shredded: BTreeSet<String> = self
            .edges
            .meta
            .shreddings(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key_id)
            .collect();
        for d in deletions.iter().filter_map(|d| d.key_shredded.as_ref()) {
            assert!(shredded.contains(d), "key {d} shredded without evidence");
        }
    }
}

/// Travels through every expiry: one second before it nothing of it is
/// gone, at it the artifact is gone (unless held).
async fn travel_until(w: &World, until: i64) {
    let expiries: BTreeSet<i64> = w
        .rows()
        .await
        .iter()
        .filter(|r| r.deleted.is_none() && !r.held && r.expires <= until)
        .map(|r| r.expires)
        .collect();
    for e in expiries {
        w.clock.set(e - SEC);
        w.sweep().await;
        for r in w.rows().await.iter().filter(|r| r.expires >= e) {
            assert!(
                r.deleted.is_none(),
                "{} deleted one second before its expiry",
                r.artifact_id
            );
        }
        w.clock.set(e);
        w.sweep().await;
        for r in w.rows().await.iter().filter(|r| r.expires == e && !r.held) {
            assert!(r.deleted.is_some(), "{} not deleted at its expiry", r.artifact_id);
        }
    }
    w.clock.set(until);
    w.sweep().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_expire_on_time() {
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let w = world("ret", 1000, base).await;
    let rows = w.rows().await;
    let count = |kind: &str| rows.iter().filter(|r| r.kind == kind).count();
    assert_eq!(count("recording"), 1000);
    assert_eq!(count("archive-copy"), 500, "investment, KI+investment, held, extended");
    assert_eq!(count("ki-audio"), 375, "KI, KI+investment, held; none after an opt-out");
    // Each expiry is the law's, computed here independently of the policy engine.
    for r in &rows {
        let (_, mix, ended) = w.calls.iter().find(|(c, _, _)| c.call_id == r.call_id).unwrap();
        let want = match r.kind.as_str() {
            "recording" => ended + 24 * HOUR,
            "ki-audio" => ended + 30 * DAY,
            "archive-copy" if *mix == Mix::Extended => add_years(*ended, 7),
            "archive-copy" => add_years(*ended, 5),
            other => panic!("unexpected artifact {other}"),
        };
        assert_eq!(r.expires, want, "{} {}", r.call_id, r.kind);
        assert_eq!(r.held, *mix == Mix::Held);
    }

    // +25 h: the recordings are gone; the archive and KI copies survive, and
    // the held calls keep everything.
    travel_until(&w, base + 25 * HOUR).await;
    w.check_survivors(|mix, which| mix == Mix::Held || which != Which::Recording, "+25 h")
        .await;
    // The dead letters on the bus went with their calls' recording keys.
    for dl in &w.dead_letters {
        let r = w.edges.vault().open_dead_letter(dl).await;
        let held = w
            .calls
            .iter()
            .any(|(c, m, _)| c.call_id == dl.call_id && *m == Mix::Held);
        assert_eq!(r.is_ok(), held, "{}: {r:?}", dl.call_id);
    }
    // Spool objects: every recording was compacted, so none is left.
    assert!(w.edges.blobs.list("spool/").await.unwrap().is_empty());

    // +31 d: the KI copies are gone too.
    travel_until(&w, base + 31 * DAY).await;
    w.check_survivors(|mix, which| mix == Mix::Held || which == Which::Archive, "+31 d")
        .await;

    // +5 y +1 d: the archives are gone unless held or extended.
    travel_until(&w, add_years(base, 5) + DAY).await;
    w.check_survivors(
        |mix, which| mix == Mix::Held || (mix == Mix::Extended && which == Which::Archive),
        "+5 y (extended)",
    )
    .await;

    // +7 y +1 d: the extension ran out. Releasing the holds needs two officers.
    travel_until(&w, add_years(base, 7) + DAY).await;
    w.check_survivors(|mix, _| mix == Mix::Held, "+7 y").await;
    let holds = w.edges.meta.holds(None, true).await.unwrap();
    assert_eq!(holds.len(), 125);
    for h in &holds {
        w.retention.release_hold(&h.hold_id, "co-anne").await.unwrap();
        let e = w.retention.release_hold(&h.hold_id, "co-anne").await.unwrap_err();
        assert!(e.to_string().contains("second compliance officer"), "{e}");
    }
    assert_eq!(w.sweep().await.deleted, 0, "a requested release is not a release");
    w.check_survivors(|mix, _| mix == Mix::Held, "+7 y, releases requested")
        .await;
    for h in &holds {
        w.retention.release_hold(&h.hold_id, "co-bjorn").await.unwrap();
    }
    assert_eq!(w.sweep().await.deleted, 125 * 3);
    w.check_survivors(|_, _| false, "after the holds").await;
    let rows = w.rows().await;
    assert!(rows.iter().all(|r| r.deleted.is_some()), "everything is gone");
    w.check_evidence().await;
    // Every data key of every call is shredded.
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE destroyed_at_us IS NULL")
        .fetch_one(&w.db)
        .await
        .unwrap();
    assert_eq!(live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_or_killed_sweep_reaches_the_same_final_state() {
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let w = world("retkill", 48, base).await;
    w.clock.set(base + 31 * DAY);
    // Interrupted after its first batch of 5.
    let stop = AtomicBool::new(false);
    let first = w
        .retention
        .sweep(5, &stop, |_| stop.store(true, Ordering::Relaxed))
        .await
        .unwrap();
    assert!(first.interrupted && first.deleted == 5, "{first:?}");
    // "Killed" between deleting an object and recording it: the object of a
    // due artifact is gone but its row is not marked.
    let due = w.edges.meta.due(base + 31 * DAY, 1).await.unwrap();
    w.edges.blobs.delete(&due[0].location).await.unwrap();
    // Run again: it finishes the job.
    let second = w.sweep().await;
    assert!(!second.interrupted);
    let rows = w.rows().await;
    let expected: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.expires <= base + 31 * DAY && !r.held)
        .map(|r| r.artifact_id.as_str())
        .collect();
    let deleted: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.deleted.is_some())
        .map(|r| r.artifact_id.as_str())
        .collect();
    assert_eq!(deleted, expected);
    assert_eq!(first.deleted + second.deleted, expected.len() as u64);
    w.check_evidence().await;
    w.check_survivors(|mix, which| mix == Mix::Held || which == Which::Archive, "+31 d")
        .await;
    // A third run changes nothing.
    assert_eq!(w.sweep().await.deleted, 0);
}

/// The archive copy of an investment call lands in a real S3 server with
/// Object Lock (MinIO, started by deploy/local/services.sh) in COMPLIANCE
/// mode: an early delete fails on the server, and a sweeper whose clock says
/// the 5 years are over is refused too (the server's clock decides), logs it
/// and reschedules; the object stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_archive_refuses_early_deletes() {
    let Ok(endpoint) = std::env::var("OPPTAK_TEST_S3_ENDPOINT") else {
        assert_ne!(
            std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "OPPTAK_TEST_S3_ENDPOINT not set"
        );
        eprintln!("skipping: no S3 server");
        return;
    };
    use opptak_store::archive::ArchiveStore;
    use opptak_store::s3::{S3ArchiveStore, S3Credentials};
    let creds = S3Credentials::new(
        std::env::var("OPPTAK_TEST_S3_ACCESS_KEY").unwrap(),
        std::env::var("OPPTAK_TEST_S3_SECRET_KEY").unwrap(),
    );
    let prefix = common::unique("pipeline");
    let s3 = S3ArchiveStore::open(
        &format!("s3://opptak-archive-test/{prefix}?endpoint={endpoint}&region=us-east-1"),
        creds,
    )
    .unwrap();
    s3.create_bucket().await.unwrap();
    let archive: Arc<dyn ArchiveStore> = Arc::new(s3);

    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let env = Env::new(&Backend::Embedded, "s3arch");
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let edges = env
        .edges()
        .await
        .with_clock(clock.clone())
        .unwrap()
        .with_archive_store(archive.clone());
    let recorder = RunningRecorder::spawn(edges.recorder());
    let mut c = SimCall::synthetic(&common::unique("inv"), Codec::Pcmu, 2, 1.0, 3);
    c.started.service_category = 1;
    common::publish_events(&edges, &c.events(100)).await;
    wait_for_recordings(&edges, 1, 60).await;
    recorder.stop().await.unwrap();
    let id = CallId::parse(&c.call_id).unwrap();

    // The copy is in S3, locked until its 5 years are over.
    let row = edges
        .meta
        .retention_of(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "archive-copy")
        .unwrap();
    assert!(row.location.starts_with("archive/"));
    assert_eq!(archive.list("archive/").await.unwrap(), vec![row.location.clone()]);
    let lock = archive.retention(&row.location).await.unwrap();
    assert!(lock.retain_until_us >= row.expires_at_us && lock.retain_until_us < row.expires_at_us + SEC);
    let e = archive.delete(&row.location).await.unwrap_err();
    assert!(matches!(e, opptak_store::StoreError::Retained(_)), "{e}");

    // The sweeper, five years on by its own clock, is refused by the server.
    clock.set(row.expires_at_us + DAY);
    let w = edges.retention();
    let report = w.sweep(100, &AtomicBool::new(false), |_| {}).await.unwrap();
    assert_eq!(report.deleted, 1, "the 24-hour recording goes: {report:?}");
    assert_eq!(report.refused, 1, "the archive copy stays: {report:?}");
    let again = edges.meta.retention_of(&id).await.unwrap();
    let arc = again.iter().find(|r| r.kind == "archive-copy").unwrap();
    assert!(
        arc.deleted_at_us.is_none() && arc.rules.contains("archive refused deletion"),
        "{arc:?}"
    );
    edges.vault().read_artifact(&id, Which::Archive).await.unwrap();
}

/// Issue 16, section 1: the archive follows the privacy notice and can be
/// corrected. A Private Banking call about a fund savings plan is archived
/// by its desk (on the old main it got no archive copy); a call reclassified
/// as investment advice within the recording's 24 hours gets its archive copy
/// from the recording (on the old main `policy explain` claimed one that was
/// never written, and the audio was gone at +25 h); after the 24 hours the
/// reclassification is refused with why, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_desks_are_archived_and_late_reclassification_is_refused() {
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let env = Env::new(&Backend::Embedded, "desk");
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    // (desk, category): Private Banking savings; two customer-center calls.
    let setups = [(3, 3), (1, 6), (1, 2)];
    let mut calls = Vec::new();
    for (i, (desk, category)) in setups.iter().enumerate() {
        let mut c = SimCall::synthetic(
            &format!("desk-{}-{i}", common::unique("d")),
            Codec::Pcma,
            1,
            0.3,
            i as u64,
        );
        c.started.desk = *desk;
        c.started.service_category = *category;
        c.started.started_at = Some(timestamp(base - 60 * SEC));
        let mut events = c.events(100);
        for e in events.iter_mut() {
            if let Some(Event::CallEnded(end)) = e.event.as_mut() {
                end.ended_at = Some(timestamp(base));
            }
        }
        common::publish_events(&edges, &events).await;
        calls.push(CallId::parse(&c.call_id).unwrap());
    }
    wait_for_recordings(&edges, calls.len(), 60).await;
    recorder.stop().await.unwrap();
    let (pb, early, late) = (&calls[0], &calls[1], &calls[2]);

    edges.vault().read_artifact(pb, Which::Archive).await.unwrap();
    let why = edges.retention().explain(pb).await.unwrap();
    let archive = why
        .iter()
        .find(|d| d.kind == opptak_domain::retention::ArtifactKind::ArchiveCopy)
        .unwrap();
    assert!(
        archive.kept && archive.chain.iter().any(|c| c.contains("advisory-desk-archive-5y")),
        "{archive:?}"
    );
    assert!(matches!(
        edges.vault().read_artifact(early, Which::Archive).await,
        Err(VaultError::NoArtifact { .. })
    ));

    // Within the 24 hours: reclassified, and archived from the recording.
    clock.set(base + 3 * HOUR);
    let category = opptak_domain::ServiceCategory::InvestmentAdvice;
    let (_, archived) = opptak::app::reclassify(&edges, early, category, "advice was given", "co-anne")
        .await
        .unwrap();
    assert!(archived, "the archive copy is written");
    let copy = edges.vault().read_artifact(early, Which::Archive).await.unwrap();
    let original = edges.vault().read_recording(early).await.unwrap();
    assert!(copy.pcm == original.pcm, "the archive copy is the recording");

    // +25 h: the recordings are gone, the archive copies stay.
    clock.set(base + 25 * HOUR);
    edges
        .retention()
        .sweep(500, &AtomicBool::new(false), |_| {})
        .await
        .unwrap();
    edges.vault().read_artifact(early, Which::Archive).await.unwrap();
    edges.vault().read_artifact(pb, Which::Archive).await.unwrap();
    let e = opptak::app::reclassify(&edges, late, category, "too late", "co-anne")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused") && e.contains("24 hours"), "{e}");
    assert!(
        edges.meta.reclassification_of(late).await.unwrap().is_none(),
        "nothing changed"
    );
    // Its last artifact gone, the call's row no longer says whose call it was
    // (issue 16, section 4); the archived call's row still does.
    let gone = edges.meta.load_call(late).await.unwrap().unwrap();
    assert_eq!(
        (gone.facts.customer_ref.as_str(), gone.facts.advisor_id.as_str()),
        ("", ""),
        "the customer reference or the advisor outlived the call's data"
    );
    assert_eq!(
        edges.meta.deletions(Some(late)).await.unwrap().len(),
        1,
        "the evidence stays"
    );
    assert_ne!(edges.meta.load_call(pb).await.unwrap().unwrap().facts.customer_ref, "");
    // The reclassifications that happened are in the audit log.
    let log = edges.audit().await.unwrap().entries(1, 1000).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.event.action == "retention.reclassify" && e.event.subject == format!("call:{early}")));
    assert!(!log.iter().any(|e| e.event.subject == format!("call:{late}")));
}

/// Issue 16, section 1: a reclassification also arrives from the telephony
/// system (a `Reclassification` event on the input topic) and from a
/// compliance officer in the review service. During the call it makes the
/// compaction write the archive copy; after the end, within the recording's
/// 24 hours, the copy is written from the recording; an event without a
/// reason, or after the 24 hours, is dead-lettered (RECLASSIFICATION_REFUSED)
/// with why, and nothing changes. Every applied one is in the audit log
/// (on the old main the event did not exist: it was dead-lettered as
/// malformed, and the review service offered no reclassification).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclassification_arrives_from_telephony_and_from_the_web() {
    use common::AddApproved;
    use opptak_proto::Message;
    let base = (opptak_domain::time::SystemClock.now_us() / SEC) * SEC;
    let env = Env::new(&Backend::Embedded, "reclass_event");
    let clock = Arc::new(ManualClock::new(base + 20 * SEC));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let edges = env.edges().await.with_clock(clock_dyn).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let reclass = |call_id: &str, reason: &str| v1::TelephonyEvent {
        call_id: call_id.to_owned(),
        event: Some(Event::Reclassification(v1::Reclassification {
            service_category: v1::ServiceCategory::InvestmentAdvice as i32,
            by: "cti-genesys".into(),
            reason: reason.into(),
            at: Some(timestamp(base)),
        })),
    };
    // Customer-center calls about payments: no archive copy by the policy.
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let mut c = SimCall::synthetic(&format!("rc-{}-{i}", common::unique("r")), Codec::Pcma, 1, 0.3, i);
        c.started.desk = 1;
        c.started.service_category = 5;
        c.started.started_at = Some(timestamp(base - 60 * SEC));
        let mut events = c.events(100);
        for e in events.iter_mut() {
            if let Some(Event::CallEnded(end)) = e.event.as_mut() {
                end.ended_at = Some(timestamp(base));
            }
        }
        if i == 0 {
            // During the call: before its CallEnded.
            let at = events.len() - 1;
            events.insert(at, reclass(&c.call_id, "the advisor recommended a fund"));
        }
        common::publish_events(&edges, &events).await;
        ids.push(CallId::parse(&c.call_id).unwrap());
    }
    wait_for_recordings(&edges, ids.len(), 60).await;
    let wait_archive = |id: CallId| {
        let edges = edges.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                match edges.vault().read_artifact(&id, Which::Archive).await {
                    Ok(a) => return a,
                    Err(e) => assert!(tokio::time::Instant::now() < deadline, "no archive copy of {id}: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let during = wait_archive(ids[0].clone()).await;
    assert!(during.pcm == edges.vault().read_recording(&ids[0]).await.unwrap().pcm);

    // After the end, within the 24 hours: written from the recording. Without
    // a reason: refused.
    clock.set(base + 2 * HOUR);
    common::publish_events(
        &edges,
        &[
            reclass(ids[1].as_str(), "wrap-up: advice on a share savings account"),
            reclass(ids[2].as_str(), " "),
        ],
    )
    .await;
    wait_archive(ids[1].clone()).await;

    // A compliance officer in the review service: only with a reason.
    let users = opptak_review::identity::Identity::open(&edges.review()).await.unwrap();
    const PW: &str = "correct horse battery staple";
    users
        .add_approved(
            "setup",
            "co-cato",
            "Cato",
            opptak_review::identity::Role::Compliance,
            "c",
            PW,
        )
        .await
        .unwrap();
    users
        .add_approved(
            "setup",
            "adv-ada",
            "Ada",
            opptak_review::identity::Role::Advisor,
            "c",
            PW,
        )
        .await
        .unwrap();
    let server = common::WebService::start(&edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |who: &'static str, call: CallId, reason: &'static str| {
        let (http, base_url) = (http.clone(), server.base.clone());
        async move {
            let (_, cookie) = common::web_sign_in(&http, &base_url, who, PW).await;
            let cookie = cookie.unwrap();
            let get = |path: String| {
                let req = http.get(format!("{base_url}{path}")).header("cookie", &cookie);
                async move { req.send().await.unwrap().text().await.unwrap() }
            };
            let mut page = get(format!("/calls/{call}")).await;
            if page.contains("action=\"/reason\"") {
                // Compliance states why first (kept for the session).
                let csrf = common::csrf_in(&page);
                let r = http
                    .post(format!("{base_url}/reason"))
                    .header("cookie", &cookie)
                    .form(&[
                        ("csrf", csrf.as_str()),
                        ("subject", &format!("call:{call}")),
                        ("category", "internal_control"),
                        ("case_ref", ""),
                        ("text", "check the category"),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 303, "{who}: the reason is taken");
                page = get(format!("/calls/{call}")).await;
            }
            let queue = get("/queue".into()).await;
            // Every signed-in page's sign-out form carries the session's token.
            let csrf = [page.as_str(), queue.as_str()]
                .into_iter()
                .find_map(common::csrf_field)
                .unwrap_or_else(|| panic!("no csrf token for {who}: {queue}"));
            let offered = page.contains(&format!("/calls/{call}/reclassify"));
            let status = http
                .post(format!("{base_url}/calls/{call}/reclassify"))
                .header("cookie", &cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("category", "investment_advice"),
                    ("reason", reason),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (offered, status)
        }
    };
    assert_eq!(
        post("adv-ada", ids[3].clone(), "not mine to change").await,
        (false, 403)
    );
    assert_eq!(post("co-cato", ids[3].clone(), "test").await, (true, 400));
    assert_eq!(
        post("co-cato", ids[3].clone(), "complaint FKN-2026-0311: advice given").await,
        (true, 303)
    );
    wait_archive(ids[3].clone()).await;

    // +25 h: the recordings are gone; a late event is refused with why.
    clock.set(base + 25 * HOUR);
    edges
        .retention()
        .sweep(500, &AtomicBool::new(false), |_| {})
        .await
        .unwrap();
    common::publish_events(&edges, &[reclass(ids[4].as_str(), "late wrap-up from the CTI")]).await;
    let topic = edges.config.recorder_config().topics.deadletter;
    let mut sub = edges
        .bus
        .subscribe(&common::unique("watch-dl"), &[topic])
        .await
        .unwrap();
    let mut refused = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while refused.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "dead letters: {refused:?}");
        for r in sub.poll(100, std::time::Duration::from_millis(300)).await.unwrap() {
            let d = v1::DeadLetter::decode(r.payload.as_ref()).unwrap();
            if d.reason == v1::DeadLetterReason::ReclassificationRefused as i32 {
                refused.push((d.call_id, d.detail));
            }
        }
    }
    refused.sort();
    let mut want = [ids[2].to_string(), ids[4].to_string()];
    want.sort();
    assert_eq!([refused[0].0.clone(), refused[1].0.clone()], want);
    let late = refused.iter().find(|(c, _)| *c == ids[4].as_str()).unwrap();
    assert!(late.1.contains("24 hours"), "{}", late.1);
    let blank = refused.iter().find(|(c, _)| *c == ids[2].as_str()).unwrap();
    assert!(blank.1.contains("a reason"), "{}", blank.1);
    for id in [&ids[2], &ids[4]] {
        assert!(
            edges.meta.reclassification_of(id).await.unwrap().is_none(),
            "nothing changed"
        );
    }
    recorder.stop().await.unwrap();
    server.stop().await;

    let log = edges.audit().await.unwrap().entries(1, 10_000).await.unwrap();
    for (id, actor) in [(&ids[0], "cti-genesys"), (&ids[1], "cti-genesys"), (&ids[3], "co-cato")] {
        assert!(
            log.iter().any(|e| e.event.action == "retention.reclassify"
                && e.event.subject == format!("call:{id}")
                && e.event.actor == actor),
            "{id} by {actor}"
        );
    }
    let web: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.event.action == "call.reclassify")
        .map(|e| (e.event.actor.as_str(), e.event.outcome.as_str()))
        .collect();
    assert_eq!(
        web,
        [("adv-ada", "refused"), ("co-cato", "failed"), ("co-cato", "allowed")]
    );
}

/// Issue 16, section 4: the per-call reporting rows (the QA index row, the
/// call's topics, its sample) are KI data and go with the call's KI key. At
/// the 30-day expiry they are folded into per-day counts that name no call,
/// so the topic dashboard still counts the call; after an opt-out they go
/// and the call is counted nowhere (on the old main both calls' rows, joined
/// to advisor and day, stayed for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ki_reporting_rows_go_with_the_ki_data() {
    use opptak_store::reporting::SqlReporting;
    for opted_out in [false, true] {
        let name = if opted_out { "ki_rows_optout" } else { "ki_rows_expiry" };
        let (_env, edges, cid, clock) = crate::amend::drafted(name, 1).await;
        let reporting = SqlReporting::open(&edges.config.metadata_url()).await.unwrap();
        let row = reporting.call(cid.as_str()).await.unwrap().expect("indexed");
        let (day, topics) = (row.row.day.clone(), row.row.topics.clone());
        let counted = |rows: Vec<opptak_store::reporting::TopicRow>| {
            let mut t: Vec<String> = rows.into_iter().map(|r| r.topic).collect();
            t.sort();
            t
        };
        let mut want = topics.clone();
        want.sort();
        assert_eq!(counted(reporting.topic_rows(&day, &day).await.unwrap()), want);
        if opted_out {
            let recorder = RunningRecorder::spawn(edges.recorder());
            common::publish_events(
                &edges,
                &[v1::TelephonyEvent {
                    call_id: cid.to_string(),
                    event: Some(Event::KiOptOut(v1::KiOptOut {
                        requested_by: "customer".into(),
                        at: Some(timestamp(clock.now_us())),
                        offset: None,
                    })),
                }],
            )
            .await;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while edges.vault().key(&cid, "ki").await.unwrap().is_some() {
                assert!(tokio::time::Instant::now() < deadline, "the opt-out did not shred");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            recorder.stop().await.unwrap();
        } else {
            clock.set(clock.now_us() + 31 * DAY);
            edges
                .retention()
                .sweep(500, &AtomicBool::new(false), |_| {})
                .await
                .unwrap();
            assert!(edges.vault().key(&cid, "ki").await.unwrap().is_none(), "expired");
        }
        assert!(
            reporting.call(cid.as_str()).await.unwrap().is_none(),
            "{name}: the index row went"
        );
        // Gone from the tables, not only hidden behind the opt-out filter.
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}?mode=ro", edges.config.metadata_url()))
            .await
            .unwrap();
        for table in ["ki_calls", "call_topics", "qa_samples"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE call_id = '{cid}'"))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(n, 0, "{name}: {table} still holds the call");
        }
        pool.close().await;
        assert!(reporting.reviews(cid.as_str()).await.unwrap().is_empty());
        let left = counted(reporting.topic_rows(&day, &day).await.unwrap());
        if opted_out {
            assert!(left.is_empty(), "an opted-out call is counted nowhere: {left:?}");
        } else {
            assert_eq!(left, want, "the expired call is still counted, as an aggregate");
        }
    }
}
