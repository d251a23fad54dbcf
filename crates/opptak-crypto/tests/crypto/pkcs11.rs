//! The PKCS#11 KEK provider against a real SoftHSM2 token (initialised by
//! `deploy/local/services.sh`): wrap and unwrap inside the HSM, rotation keeps
//! old data keys readable, retirement destroys the KEK, the KEK never leaves.

use opptak_crypto::{CryptoError, DataKey, KeyProvider, Pkcs11Keyring};

fn token() -> Option<(String, String, String)> {
    let get = |k: &str| std::env::var(k).ok();
    match (
        get("OPPTAK_TEST_PKCS11_MODULE"),
        get("OPPTAK_TEST_PKCS11_TOKEN"),
        get("OPPTAK_TEST_PKCS11_PIN"),
    ) {
        (Some(m), Some(t), Some(p)) => Some((m, t, p)),
        _ => {
            assert_ne!(
                std::env::var("OPPTAK_REQUIRE_SERVICES").as_deref(),
                Ok("1"),
                "OPPTAK_TEST_PKCS11_* not set (deploy/local/services.sh env)"
            );
            eprintln!("skipping: no SoftHSM2 token configured");
            None
        }
    }
}

#[test]
fn softhsm_wraps_rotates_and_retires() {
    let Some((module, token, pin)) = token() else { return };
    let prefix = format!("test-{}-", std::process::id());
    let ring = Pkcs11Keyring::open(std::path::Path::new(&module), &token, &pin, &prefix).unwrap();
    let first = ring.active_kek_id();
    assert!(first.starts_with("kek-"), "{first}");

    let dk = DataKey::generate();
    let w1 = ring.wrap(&dk, b"call-1/audio-24h").unwrap();
    assert_eq!(w1.kek_id, first);
    let back = ring.unwrap(&w1, b"call-1/audio-24h").unwrap();
    assert_eq!(back.id(), dk.id());
    assert!(matches!(
        ring.unwrap(&w1, b"call-2/audio-24h"),
        Err(CryptoError::Authentication)
    ));
    let mut bad = w1.clone();
    bad.sealed[20] ^= 1;
    assert!(matches!(
        ring.unwrap(&bad, b"call-1/audio-24h"),
        Err(CryptoError::Authentication)
    ));

    // Rotation: a new active KEK; the old one still unwraps.
    let second = ring.rotate().unwrap();
    assert_ne!(first, second);
    assert_eq!(ring.active_kek_id(), second);
    let w2 = ring.wrap(&dk, b"call-1/audio-24h").unwrap();
    assert_eq!(w2.kek_id, second);
    assert!(ring.unwrap(&w1, b"call-1/audio-24h").is_ok());
    let ids: Vec<String> = ring.list().unwrap().into_iter().map(|k| k.id).collect();
    assert!(ids.contains(&first) && ids.contains(&second), "{ids:?}");

    // Retirement: the active KEK is refused; the old one is destroyed.
    assert!(ring.retire(&second, std::time::Duration::ZERO).is_err());
    assert!(
        ring.retire(&first, std::time::Duration::from_secs(600)).is_err(),
        "grace period"
    );
    ring.retire(&first, std::time::Duration::ZERO).unwrap();
    assert!(matches!(
        ring.unwrap(&w1, b"call-1/audio-24h"),
        Err(CryptoError::KeyUnavailable(_))
    ));
    assert!(ring.unwrap(&w2, b"call-1/audio-24h").is_ok());
}
