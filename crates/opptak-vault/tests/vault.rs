//! The vault's key and artifact rules on the embedded stores (SQLite in a
//! temporary directory, the in-memory blob store, a local keyring). The
//! reader's end-to-end and shredding behaviour is proven with real recordings
//! in the root crate's `tests/it/shredding.rs` and `tests/it/recording_path.rs`.
#![allow(clippy::unwrap_used)]

use opptak_crypto::segment::ArtifactKind;
use opptak_crypto::{KeyProvider, LocalKeyring};
use opptak_domain::model::{
    AudioFormat, CallFacts, CallId, ChannelRole, Codec, Desk, Direction, KeyClass, ServiceCategory,
};
use opptak_domain::time::ManualClock;
use opptak_store::meta::{Flush, NewCall};
use opptak_vault::{Sealing, Vault, VaultError};
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    vault: Vault,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let meta = opptak_store::open_metadata_store(&format!("sqlite://{d}/opptak.db"))
        .await
        .unwrap();
    let blobs = opptak_store::open_blob_store("memory://").unwrap();
    let keys: Arc<dyn KeyProvider> = Arc::new(LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap());
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000));
    Fixture {
        _dir: dir,
        vault: Vault::new(meta, blobs, keys, clock),
    }
}

/// Stores a call (with its recording key) so keys of other classes can hang off it.
async fn call(vault: &Vault, id: &str) -> CallId {
    let call_id = CallId::parse(id).unwrap();
    let (_, key) = vault.new_key(id, KeyClass::Audio24h.as_str()).unwrap();
    let facts = CallFacts {
        call_id: call_id.clone(),
        started_at_us: 1_800_000_000_000_000,
        direction: Direction::Inbound,
        customer_ref: "cust-1".into(),
        advisor_id: "adv-1".into(),
        desk: Desk::PrivateBanking,
        service_category: ServiceCategory::InvestmentAdvice,
        ki_enabled: true,
        customer_informed: true,
        format: AudioFormat::new(Codec::Pcmu, 8000, vec![ChannelRole::Agent, ChannelRole::Customer]).unwrap(),
        ki_notice: None,
    };
    vault
        .meta()
        .apply(&Flush {
            new_calls: vec![NewCall {
                facts,
                key,
                extra_keys: Vec::new(),
                recording_id: format!("rec-{id}"),
                blob_prefix: format!("recordings/{id}/rec-{id}"),
                created_at_us: 1,
            }],
            segments: Vec::new(),
            gaps: Vec::new(),
            updates: Vec::new(),
        })
        .await
        .unwrap();
    call_id
}

#[tokio::test]
async fn get_or_create_makes_one_key_per_class_even_when_raced() {
    let f = fixture().await;
    let id = call(&f.vault, "call-race").await;
    assert!(
        f.vault.key(&id, "ki").await.unwrap().is_none(),
        "no key before first use"
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (v, id) = (f.vault.clone(), id.clone());
            tokio::spawn(async move { v.key_or_create(&id, KeyClass::Ki).await.unwrap().unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().id().to_owned());
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "racing creators must all get the key the store kept: {ids:?}"
    );
    let again = f.vault.key(&id, "ki").await.unwrap().unwrap();
    assert_eq!(again.id(), ids[0]);
    // Another class is another key.
    let record = f.vault.key_or_create(&id, KeyClass::Record5y).await.unwrap().unwrap();
    assert_ne!(record.id(), ids[0]);
}

#[tokio::test]
async fn purge_ki_shreds_once_and_no_ki_key_can_be_made_after() {
    let f = fixture().await;
    // A call that never had a KI key: the purge makes one and shreds it at once.
    let id = call(&f.vault, "call-optout").await;
    assert!(f.vault.purge_ki(&id, "advisor adv-1", 5).await.unwrap());
    assert!(!f.vault.purge_ki(&id, "advisor adv-1", 6).await.unwrap(), "idempotent");
    assert!(f.vault.key_or_create(&id, KeyClass::Ki).await.unwrap().is_none());
    assert!(f.vault.key(&id, "ki").await.unwrap().is_none());
    let row = f.vault.meta().class_key(&id, "ki").await.unwrap().unwrap();
    assert!(matches!(
        f.vault.open_row(&id, &row),
        Err(VaultError::KeyDestroyed { ref class, .. }) if class == "ki"
    ));
    // The recording key is untouched (R12: the recording goes on).
    assert!(f.vault.key(&id, "audio-24h").await.unwrap().is_some());
}

#[tokio::test]
async fn a_stored_artifact_reads_back_until_its_key_is_shredded() {
    let f = fixture().await;
    let id = call(&f.vault, "call-art").await;
    let key = f.vault.key_or_create(&id, KeyClass::Ki).await.unwrap().unwrap();
    let what = Sealing {
        call_id: &id,
        class: KeyClass::Ki.as_str(),
        kind: ArtifactKind::Transcript,
        artifact_id: "tr-1",
    };
    let body = serde_json::json!([{"speaker": "agent", "text": "hei"}]);
    let (object, sealed) = f
        .vault
        .store_artifact(
            what,
            &key,
            "transcript",
            "ki/call-art/tr-1.optk".into(),
            &serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(object.bytes, sealed.len() as u64);
    assert!(!sealed.windows(3).any(|w| w == b"hei"), "sealed, not plaintext");
    let back: serde_json::Value = f
        .vault
        .read_json(&id, "transcript", ArtifactKind::Transcript)
        .await
        .unwrap();
    assert_eq!(back, body);
    // The header binds kind and id: read as another kind, it fails closed.
    assert!(f
        .vault
        .read_object(&id, "transcript", ArtifactKind::Draft)
        .await
        .is_err());
    f.vault.shred(&id, "ki", "test", "operator").await.unwrap();
    assert!(matches!(
        f.vault.read_object(&id, "transcript", ArtifactKind::Transcript).await,
        Err(VaultError::KeyDestroyed { .. })
    ));
    assert!(matches!(
        f.vault.read_object(&id, "draft", ArtifactKind::Draft).await,
        Err(VaultError::NoArtifact { kind: "draft", .. })
    ));
}

#[tokio::test]
async fn sealing_binds_call_class_kind_and_id() {
    let f = fixture().await;
    let id = call(&f.vault, "call-bind").await;
    let other = call(&f.vault, "call-other").await;
    let key = f.vault.key_or_create(&id, KeyClass::Ki).await.unwrap().unwrap();
    let what = Sealing {
        call_id: &id,
        class: KeyClass::Ki.as_str(),
        kind: ArtifactKind::Draft,
        artifact_id: "dr-1",
    };
    let sealed = what.seal_json(&key, &serde_json::json!({"summary": "ok"})).unwrap();
    let v: serde_json::Value = what.open_json(&key, &sealed).unwrap();
    assert_eq!(v["summary"], "ok");
    for moved in [
        Sealing {
            artifact_id: "dr-2",
            ..what
        },
        Sealing {
            kind: ArtifactKind::Transcript,
            ..what
        },
        Sealing {
            class: KeyClass::Record5y.as_str(),
            ..what
        },
        Sealing {
            call_id: &other,
            ..what
        },
    ] {
        assert!(moved.open(&key, &sealed).is_err(), "{moved:?} must not open");
    }
}

#[tokio::test]
async fn the_dead_letter_key_of_a_day_is_made_once() {
    let f = fixture().await;
    let (a, ref_a) = f.vault.deadletter_key("2027-01-15").await.unwrap();
    let (b, ref_b) = f.vault.deadletter_key("2027-01-15").await.unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(ref_a, "deadletters-2027-01-15/audio-24h");
    assert_eq!(ref_a, ref_b);
    let (c, _) = f.vault.deadletter_key("2027-01-16").await.unwrap();
    assert_ne!(a.id(), c.id());
}
