//! The local cluster of `deploy/local/services.sh cluster`: topics opptak
//! creates on three brokers (replication and `min.insync.replicas`, auto
//! and configured), and the PostgreSQL standby following its primary.
//! Needs `eval "$(deploy/local/services.sh cluster-env)"`; skipped without
//! it unless `OPPTAK_REQUIRE_CLUSTER=1` (as `deploy/local/test.sh` sets).
//! The fault suite's cluster test runs three brokers of its own.

use crate::common;
use crate::fault::broker::{admin, replication_of};
use opptak::config::Config;
use opptak_bus::kafka::KafkaBus;
use opptak_bus::Bus;
use std::time::{Duration, Instant};

fn cluster_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) => {
            let why = format!("{name} not set (deploy/local/services.sh cluster, then cluster-env)");
            assert_ne!(std::env::var("OPPTAK_REQUIRE_CLUSTER").as_deref(), Ok("1"), "{why}");
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// The configuration of one test: the cluster, a topic prefix of its own,
/// and `more` (`OPPTAK__BUS__…` overrides).
fn config(bootstrap: &str, prefix: &str, more: &[(&str, &str)]) -> anyhow::Result<Config> {
    let mut vars = vec![
        ("OPPTAK__BUS__URL".to_string(), format!("kafka://{bootstrap}")),
        ("OPPTAK__BUS__TOPIC_PREFIX".to_string(), format!("{prefix}.")),
    ];
    vars.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load_from(None, &vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_opptak_creates_on_three_brokers_have_three_replicas_and_two_in_sync() {
    let Some(bootstrap) = cluster_var("OPPTAK_TEST_KAFKA_CLUSTER") else {
        return;
    };
    let admin = admin(&bootstrap).unwrap();
    let mut created = Vec::new();
    // (overrides, replicas, min.insync.replicas set on the topic)
    type Case<'a> = (&'a [(&'a str, &'a str)], usize, Option<&'a str>);
    let cases: [Case; 3] = [
        (&[], 3, Some("2")),
        (&[("OPPTAK__BUS__REPLICATION", "2")], 2, None),
        (&[("OPPTAK__BUS__MIN_INSYNC_REPLICAS", "3")], 3, Some("3")),
    ];
    for (i, (more, replicas, min_isr)) in cases.into_iter().enumerate() {
        let prefix = common::unique(&format!("repl{i}"));
        let config = config(&bootstrap, &prefix, more).unwrap();
        let bus = KafkaBus::new(&bootstrap, config.kafka_options().unwrap()).unwrap();
        let policy = config.policy().unwrap();
        // Every topic for the defaults, one for the others.
        let specs = opptak::topics::specs(&config, &policy);
        let specs = if i == 0 { specs } else { specs[..1].to_vec() };
        opptak::topics::ensure(&bus, &specs).await.unwrap();
        for s in &specs {
            created.push(s.name.clone());
            // A new topic's config reaches the broker that answers a moment
            // after its metadata (seen in CI): ask again for up to 30 s.
            let deadline = Instant::now() + Duration::from_secs(30);
            let got = loop {
                let (least, most, have) = replication_of(&admin, &s.name).await.unwrap();
                let got = (least, most, have);
                if (got.0, got.1, got.2.as_deref()) == (replicas, replicas, min_isr) || Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            assert_eq!(
                (got.0, got.1, got.2.as_deref()),
                (replicas, replicas, min_isr),
                "{} with {more:?}: replicas (fewest, most), min.insync.replicas set on the topic",
                s.name
            );
        }
    }
    // More replicas than brokers: refused by opptak, with the numbers.
    let prefix = common::unique("repl_over");
    let config = config(&bootstrap, &prefix, &[("OPPTAK__BUS__REPLICATION", "4")]).unwrap();
    let bus = KafkaBus::new(&bootstrap, config.kafka_options().unwrap()).unwrap();
    let specs = opptak::topics::specs(&config, &config.policy().unwrap());
    let err = opptak::topics::ensure(&bus, &specs[..1]).await.unwrap_err().to_string();
    assert!(
        err.contains("replication factor 4") && err.contains("3 live brokers") && err.contains("bus.replication"),
        "{err}"
    );
    assert!(
        bus.describe_topic(&specs[0].name).await.unwrap().is_none(),
        "created anyway"
    );
    for t in &created {
        bus.delete_topic(t).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_has_what_the_primary_committed() {
    use sqlx::{Connection, Row};
    let (Some(primary), Some(standby)) = (
        cluster_var("OPPTAK_TEST_POSTGRES_PRIMARY"),
        cluster_var("OPPTAK_TEST_POSTGRES_STANDBY"),
    ) else {
        return;
    };
    let mut p = sqlx::PgConnection::connect(&primary).await.unwrap();
    let mut s = sqlx::PgConnection::connect(&standby).await.unwrap();
    let in_recovery = |row: sqlx::postgres::PgRow| row.get::<bool, _>(0);
    assert!(!in_recovery(
        sqlx::query("select pg_is_in_recovery()")
            .fetch_one(&mut p)
            .await
            .unwrap()
    ));
    assert!(in_recovery(
        sqlx::query("select pg_is_in_recovery()")
            .fetch_one(&mut s)
            .await
            .unwrap()
    ));
    // The primary waits for this standby on every commit.
    let sync: Vec<String> = sqlx::query_scalar("select sync_state from pg_stat_replication where state = 'streaming'")
        .fetch_all(&mut p)
        .await
        .unwrap();
    assert_eq!(sync, ["sync"], "the primary's standbys");
    let table = common::unique("standby");
    sqlx::query(&format!("create table {table} (n int primary key)"))
        .execute(&mut p)
        .await
        .unwrap();
    sqlx::query(&format!("insert into {table} select generate_series(1, 1000)"))
        .execute(&mut p)
        .await
        .unwrap();
    // Flushed on the standby before the commit returned; replayed (visible
    // to queries) right after.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: Option<i64> = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&mut s)
            .await
            .ok();
        if n == Some(1000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby has {n:?} of 1000 rows after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = sqlx::query(&format!("insert into {table} values (0)"))
        .execute(&mut s)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only transaction"), "{err}");
    sqlx::query(&format!("drop table {table}"))
        .execute(&mut p)
        .await
        .unwrap();
}

/// The metadata store on the local cluster's pair through a multi-host URL
/// (`target_session_attrs=read-write`), the standby listed first: it opens
/// on the primary and writes there. The failover itself is
/// `pg_failover.rs`'s, on a pair of its own (this one is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_opens_on_the_primary_whatever_the_order_of_the_hosts() {
    let (Some(primary), Some(standby)) = (
        cluster_var("OPPTAK_TEST_POSTGRES_PRIMARY"),
        cluster_var("OPPTAK_TEST_POSTGRES_STANDBY"),
    ) else {
        return;
    };
    let (_, p, _) = opptak_store::meta::split_host_list(&primary).unwrap();
    let (before, s, after) = opptak_store::meta::split_host_list(&standby).unwrap();
    let url = format!("{before}{s},{p}{after}?target_session_attrs=read-write");
    let store = opptak_store::open_metadata_store(&url).await.unwrap();
    let id = opptak_domain::model::CallId::parse(&common::unique("cluster-store")).unwrap();
    let o = opptak_store::meta::OptOut {
        at_us: 1,
        requested_by: "the cluster test".into(),
        offset_us: 0,
    };
    store.keep_early_opt_out(&id, &o, 1).await.unwrap();
    assert_eq!(
        store.early_opt_out(&id).await.unwrap().unwrap().requested_by,
        "the cluster test"
    );
    assert!(store.describe().contains(&format!("{s},{p}")), "{}", store.describe());
}
