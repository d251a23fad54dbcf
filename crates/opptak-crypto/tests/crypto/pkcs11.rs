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

/// Period KEKs in the HSM (issue 15, finding 1): made by name inside the
/// token, wrapped under by name, destroyed for good.
#[test]
fn softhsm_period_keks_are_made_used_and_destroyed() {
    use opptak_crypto::KeyAdmin;
    let Some((module, token, pin)) = token() else { return };
    let prefix = format!("period-{}-", std::process::id());
    let ring = Pkcs11Keyring::open(std::path::Path::new(&module), &token, &pin, &prefix).unwrap();
    let id = "kek-ki-20261207";
    assert!(ring.wrap_under(id, &DataKey::generate(), b"c/ki").unwrap().is_none());
    assert!(ring.create_kek(id).unwrap());
    assert!(!ring.create_kek(id).unwrap(), "made once");
    let dk = DataKey::generate();
    let w = ring.wrap_under(id, &dk, b"c/ki").unwrap().unwrap();
    assert_eq!(w.kek_id, id);
    assert_eq!(ring.unwrap(&w, b"c/ki").unwrap().id(), dk.id());
    assert!(ring.list().unwrap().iter().any(|k| k.id == id && !k.active));
    assert!(ring.destroy_kek(&ring.active_kek_id()).is_err(), "the active kek stays");
    ring.destroy_kek(id).unwrap();
    ring.destroy_kek(id).unwrap();
    assert!(ring.unwrap(&w, b"c/ki").is_err(), "nothing it wrapped opens");
    assert!(ring.wrap_under(id, &dk, b"c/ki").unwrap().is_none());
}
