//! The `opptak` binary as an operator uses it: demo, list, export, refusals.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn opptak(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(args)
        .env_remove("OPPTAK_CONFIG")
        .output()
        .expect("run opptak")
}

#[test]
fn demo_then_list_and_export_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data_s = data.to_str().unwrap();
    let out = opptak(&["demo", "--data-dir", data_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("sample-identical").count(), 5, "{stdout}");
    assert!(stdout.contains("DEAD_LETTER_REASON_MALFORMED"));

    let config = data.join("opptak.toml");
    let config_s = config.to_str().unwrap();
    let out = opptak(&["recordings", "list", "--config", config_s]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(list.matches(" complete").count(), 5, "{list}");

    // Export decrypts to a PCM WAV with the source's audio (A-law decoded).
    let wav = dir.path().join("0003.wav");
    let out = opptak(&[
        "recordings",
        "export",
        "demo-0003",
        "--out",
        wav.to_str().unwrap(),
        "--config",
        config_s,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, 8000);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let source = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/calls/demo-0003.wav")).unwrap();
    let src = opptak::sim::read_wav(&source).unwrap();
    let expected: Vec<i16> = src.data.iter().map(|&b| opptak_domain::g711::alaw_decode(b)).collect();
    assert_eq!(samples, expected);

    // Unknown calls and a missing keyring are refused with a clear message.
    let out = opptak(&[
        "recordings",
        "export",
        "no-such-call",
        "--out",
        "/dev/null",
        "--config",
        config_s,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recording for call no-such-call"));
    std::fs::remove_file(data.join("keyring.json")).unwrap();
    let out = opptak(&[
        "recordings",
        "export",
        "demo-0003",
        "--out",
        "/dev/null",
        "--config",
        config_s,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be decrypted without the key-encryption key"),
        "{err}"
    );
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["config"])
        .env("OPPTAK__RECORDER__FLUSH_INTERVAL_MS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("flush_interval_ms"));
}

#[test]
fn demo_refuses_to_clear_a_directory_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let out = opptak(&["demo", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(dir.path().join("precious.txt").exists());
}
