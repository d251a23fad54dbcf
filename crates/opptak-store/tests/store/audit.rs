//! The audit log's search (issue 18): newest first by `seq`, each filter
//! (actor, action, subject or a bare call id, outcome, time range) exact,
//! paged, counted; on PostgreSQL over 200,000 entries each filter reads its
//! index (the plan, not a clock: no timing asserts).

use opptak_store::audit::{AuditEvent, AuditFilter, SqlAudit};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        actor: format!("user-{}", i % 7),
        role: "advisor".into(),
        action: if i.is_multiple_of(3) {
            "recording.play"
        } else {
            "transcript.read"
        }
        .into(),
        subject: format!("call:c-{}", i % 10),
        reason: "review".into(),
        outcome: if i.is_multiple_of(50) { "failed" } else { "allowed" }.into(),
    }
}

async fn suite(url: &str) {
    let log = SqlAudit::open(url).await.unwrap();
    // 300 entries, one a second from t0.
    let t0 = 1_800_000_000_000_000i64;
    let events: Vec<(AuditEvent, i64)> = (1..=300u64).map(|i| (event(i), t0 + i as i64 * 1_000_000)).collect();
    log.append_batch(&events).await.unwrap();
    let all = AuditFilter::default();
    assert_eq!(log.count(&all).await.unwrap(), 300);
    let first = log.search(&all, 0, 50).await.unwrap();
    let seqs: Vec<u64> = first.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (251..=300).rev().collect::<Vec<_>>(), "newest first");
    let third = log.search(&all, 100, 50).await.unwrap();
    assert_eq!(third.first().map(|e| e.seq), Some(200));

    let f = AuditFilter {
        actor: Some("user-3".into()),
        ..Default::default()
    };
    let want: Vec<u64> = (1..=300u64).rev().filter(|i| i % 7 == 3).collect();
    assert_eq!(log.count(&f).await.unwrap(), want.len() as u64);
    let got: Vec<u64> = log.search(&f, 0, 500).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(got, want);

    // A bare call id finds `call:<id>`; a whole subject only itself.
    for subject in ["c-4", "call:c-4"] {
        let f = AuditFilter {
            subject: Some(subject.into()),
            outcome: Some("allowed".into()),
            ..Default::default()
        };
        let got = log.search(&f, 0, 500).await.unwrap();
        assert_eq!(
            got.len(),
            30 - (1..=300u64).filter(|i| i % 10 == 4 && i % 50 == 0).count()
        );
        assert!(got
            .iter()
            .all(|e| e.event.subject == "call:c-4" && e.event.outcome == "allowed"));
    }
    let none = AuditFilter {
        subject: Some("c-4x".into()),
        ..Default::default()
    };
    assert_eq!(log.count(&none).await.unwrap(), 0, "exact, not a prefix");

    // Time: from inclusive, to exclusive.
    let f = AuditFilter {
        action: Some("recording.play".into()),
        from_us: Some(t0 + 10 * 1_000_000),
        to_us: Some(t0 + 20 * 1_000_000),
        ..Default::default()
    };
    let got: Vec<u64> = log.search(&f, 0, 50).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(got, vec![18, 15, 12]);
}

#[tokio::test]
async fn sqlite_audit_search() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/meta.db", dir.path().display());
    suite(&url).await;
    let log = SqlAudit::open(&url).await.unwrap();
    let plan = log
        .search_plan(
            &AuditFilter {
                actor: Some("user-3".into()),
                ..Default::default()
            },
            50,
        )
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("audit_log_actor"), "{plan}");
}

#[tokio::test]
async fn postgres_audit_search_reads_its_indexes() {
    let Some(url) = crate::fresh_postgres("audit_search").await else {
        return;
    };
    suite(&url).await;
    // 200,000 more entries (hashes need not chain for a plan), then the
    // planner's statistics.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_log (seq, at_us, actor, role, action, subject, reason, outcome, prev_hash, hash) \
         SELECT g, 1800000000000000 + g::bigint * 1000000, 'user-' || (g % 500), 'advisor', \
         CASE WHEN g % 3 = 0 THEN 'recording.play' ELSE 'transcript.read' END, \
         'call:c-' || (g % 20000), 'review', CASE WHEN g % 1000 = 0 THEN 'failed' ELSE 'allowed' END, \
         '\\x00'::bytea, '\\x00'::bytea FROM generate_series(301, 200300) AS g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE audit_log").execute(&mut conn).await.unwrap();
    let log = SqlAudit::open(&url).await.unwrap();
    let t0 = 1_800_000_000_000_000i64;
    for (what, filter, index) in [
        ("everything", AuditFilter::default(), "audit_log_pkey"),
        (
            "one actor",
            AuditFilter {
                actor: Some("user-42".into()),
                ..Default::default()
            },
            "audit_log_actor",
        ),
        (
            "one call",
            AuditFilter {
                subject: Some("c-4242".into()),
                ..Default::default()
            },
            "audit_log_subject",
        ),
        (
            "a rare outcome",
            AuditFilter {
                outcome: Some("failed".into()),
                ..Default::default()
            },
            "audit_log_",
        ),
        (
            "one early hour",
            AuditFilter {
                from_us: Some(t0 + 1_000 * 1_000_000),
                to_us: Some(t0 + 4_600 * 1_000_000),
                ..Default::default()
            },
            "audit_log_",
        ),
    ] {
        let plan = log.search_plan(&filter, 50).await.unwrap().join("\n");
        assert!(plan.contains(index), "{what}: {plan}");
        assert!(!plan.contains("Seq Scan"), "{what} reads the whole table: {plan}");
    }
}
