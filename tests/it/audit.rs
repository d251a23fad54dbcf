//! The audit log's tamper evidence (issue 6 item 5): entries edited, deleted
//! or reordered directly in the database — PostgreSQL and SQLite — and a
//! chain rewritten with correct hashes after an edit, are all named by
//! `verify`; concurrent appenders keep one unbroken chain.

use crate::common;

use common::{Backend, Env};
use opptak_audit::{Audit, Event};

fn ev(i: usize) -> Event {
    Event {
        actor: format!("adv-{}", 1000 + i % 7),
        role: "advisor".into(),
        action: ["recording.read", "transcript.read", "draft.approve"][i % 3].into(),
        subject: format!("call:tlf-{i:04}"),
        reason: "review".into(),
        outcome: "allowed".into(),
    }
}

async fn backends(name: &str) -> Vec<(String, Env)> {
    let mut out = vec![("sqlite".to_string(), Env::new(&Backend::Embedded, name))];
    if let (Some(kafka), Some(postgres)) = (common::kafka(), common::postgres_db(name).await) {
        out.push((
            "postgres".into(),
            Env::new(&Backend::Services { kafka, postgres }, name),
        ));
    }
    out
}

/// Raw SQL against the audit tables, as an attacker with database access.
pub(crate) async fn sql(url: &str, statements: &[&str]) {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite://") {
        format!("{url}?mode=rw")
    } else {
        url.to_owned()
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    for s in statements {
        pool.execute(*s).await.unwrap();
    }
    pool.close().await;
}

async fn fresh(env: &Env, n: usize) -> Audit {
    let edges = env.edges().await;
    let mut audit = edges.audit().await.unwrap();
    audit.checkpoint_every = 10;
    for i in 0..n {
        audit.record(&ev(i)).await.unwrap();
    }
    audit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_edit_deletion_and_reordering() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "edited",
            &["UPDATE audit_log SET reason = 'curiosity' WHERE seq = 7"],
            "entry 7: altered",
        ),
        ("deleted", &["DELETE FROM audit_log WHERE seq = 5"], "entry 5: missing"),
        (
            "reordered",
            &[
                "UPDATE audit_log SET seq = -1 WHERE seq = 12",
                "UPDATE audit_log SET seq = 12 WHERE seq = 13",
                "UPDATE audit_log SET seq = 13 WHERE seq = -1",
            ],
            "entry 12:",
        ),
        (
            "tail deleted past a checkpoint",
            &["DELETE FROM audit_log WHERE seq >= 18"],
            "entry 20: missing, but a signed checkpoint covers it",
        ),
    ];
    for (case, statements, want) in cases {
        for (backend, env) in backends("audit").await {
            let audit = fresh(&env, 25).await;
            let clean = audit.verify(None).await.unwrap();
            assert!(clean.ok(), "{backend}: {:?}", clean.problems);
            assert_eq!(clean.entries, 25);
            assert_eq!(clean.checkpoints, 2);
            sql(&env.config.storage.metadata, statements).await;
            let r = audit.verify(None).await.unwrap();
            assert!(
                r.problems.iter().any(|p| p.contains(want)),
                "{backend}, {case}: want {want:?}, got {:?}",
                r.problems
            );
        }
    }
}

/// An attacker edits entry 3 and recomputes every hash after it with the
/// published algorithm: the chain is consistent again, but the signed
/// checkpoint at entry 10 no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_chain_is_caught_by_the_signed_checkpoints() {
    for (backend, env) in backends("audit_rewrite").await {
        let audit = fresh(&env, 15).await;
        let mut entries = audit.entries(1, 100).await.unwrap();
        entries[2].event.reason = "no reason at all".into();
        let mut prev = opptak_store::audit::GENESIS.to_vec();
        let mut statements = Vec::new();
        for e in &mut entries {
            e.prev_hash = prev.clone();
            e.hash = opptak_store::audit::entry_hash(e.seq, e.at_us, &e.event, &e.prev_hash);
            prev = e.hash.clone();
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let lit = |b: &[u8]| {
                if backend == "sqlite" {
                    format!("X'{}'", hex(b))
                } else {
                    format!("'\\x{}'::bytea", hex(b))
                }
            };
            statements.push(format!(
                "UPDATE audit_log SET reason = '{}', prev_hash = {}, hash = {} WHERE seq = {}",
                e.event.reason,
                lit(&e.prev_hash),
                lit(&e.hash),
                e.seq
            ));
        }
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        sql(&env.config.storage.metadata, &refs).await;
        let r = audit.verify(None).await.unwrap();
        assert!(
            r.problems
                .iter()
                .all(|p| !p.contains("altered") && !p.contains("does not follow")),
            "{backend}: the rewrite itself is consistent: {:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("entry 10: differs from its signed checkpoint")),
            "{backend}: {:?}",
            r.problems
        );
        // A forged checkpoint (signature bytes changed) is named too.
        sql(
            &env.config.storage.metadata,
            &["UPDATE audit_checkpoints SET at_us = at_us + 1 WHERE seq = 10"],
        )
        .await;
        let r = audit.verify(None).await.unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("checkpoint at entry 10: signature invalid")),
            "{:?}",
            r.problems
        );
    }
}

/// Eight appenders at once: one chain, no gaps, every entry there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_one_chain() {
    for (backend, env) in backends("audit_conc").await {
        let audit = std::sync::Arc::new(fresh(&env, 0).await);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let a = audit.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        a.record(&ev(t * 100 + i)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let r = audit.verify(None).await.unwrap();
        assert!(r.ok(), "{backend}: {:?}", r.problems);
        assert_eq!(r.entries, 200, "{backend}");
        // Pinning the signer's public key: right key passes, another fails.
        let pk = r.signers[0].clone();
        assert!(audit.verify(Some(&pk)).await.unwrap().ok());
        assert!(!audit.verify(Some(&"00".repeat(32))).await.unwrap().ok());
    }
}
