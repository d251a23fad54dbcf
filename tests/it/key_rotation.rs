//! KEK rotation with the file provider and with a PKCS#11 HSM (SoftHSM2):
//! calls are recorded, the KEK rotated and every data key re-wrapped, the old
//! KEK retired, and every recording still decrypts sample-identical.

use crate::common;

use common::{verify_calls, wait_for_recordings, Backend, Env};
use opptak::app::{Edges, RunningRecorder};
use opptak::config::Config;
use std::time::Duration;

async fn rotate_with(provider_vars: Vec<(String, String)>, name: &str) {
    let mut env = Env::new(&Backend::Embedded, name);
    env.vars.extend(provider_vars);
    env.config = Config::load_from(None, &env.vars).unwrap();
    let edges: Edges = env.edges().await;
    let recorder = RunningRecorder::spawn(edges.recorder());
    let calls = common::mixed_calls(&common::unique(name), 6);
    for c in &calls {
        common::publish_events(&edges, &c.events(100)).await;
    }
    wait_for_recordings(&edges, calls.len(), 60).await;
    recorder.stop().await.unwrap();

    let live: u64 = edges.meta.key_counts().await.unwrap().iter().map(|(_, _, n)| n).sum();
    // A recording key per call, plus the archive and KI copies' keys.
    assert!(live > calls.len() as u64, "copies have their own keys");
    let admin = opptak::app::open_key_admin(&env.config, false).unwrap();
    let old = opptak_crypto::KeyProvider::active_kek_id(admin.as_ref());
    let (new, n) = opptak::app::rotate_and_rewrap(admin.as_ref(), edges.meta.as_ref(), 0)
        .await
        .unwrap();
    assert_ne!(old, new);
    assert_eq!(n, live, "every data key re-wrapped");
    let counts = edges.meta.key_counts().await.unwrap();
    assert!(counts.iter().all(|(kek, _, _)| *kek == new), "{counts:?}");
    admin.retire_kek(&old, Duration::ZERO).unwrap();

    // A fresh reader (new process state) decrypts everything under the new KEK.
    let edges = Edges::open(env.config.clone()).await.unwrap();
    verify_calls(&edges, &calls).await;
    common::verify_copies(&edges, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_the_file_provider() {
    rotate_with(Vec::new(), "rotate_file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_softhsm2() {
    let Some(vars) = common::softhsm_vars("rot") else {
        return;
    };
    rotate_with(vars, "rotate_hsm").await;
}
