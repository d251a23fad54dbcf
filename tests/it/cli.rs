//! The `opptak` binary as an operator uses it: demo, list, export, refusals.

use std::process::Command;

fn opptak(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(args)
        .env_remove("OPPTAK_CONFIG")
        .output()
        .expect("run opptak")
}

/// `opptak` with `stdin` on its standard input (passwords).
fn opptak_in(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(args)
        .env_remove("OPPTAK_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run opptak");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().expect("run opptak")
}

#[test]
fn demo_then_list_and_export_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data_s = data.to_str().unwrap();
    // Every role's info logs on: no value derived from a call's content
    // (a taxonomy topic) may appear in them (issue 15, finding 2: the
    // summarizer logged each draft's topics beside the call id).
    let out = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["demo", "--data-dir", data_s])
        .env_remove("OPPTAK_CONFIG")
        .env("OPPTAK_LOG", "info")
        .output()
        .expect("run opptak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stdout}\n{logs}");
    assert!(
        logs.contains("draft stored for review"),
        "the summarizer's log line: {logs}"
    );
    let taxonomy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/opptak-domain/taxonomy/topics.toml"
    ))
    .unwrap();
    for line in taxonomy.lines().filter(|l| l.starts_with("id = ")) {
        let id = line.trim_start_matches("id = ");
        assert!(!logs.contains(id), "topic {id} in the logs");
    }
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
        "--reason",
        "test: check the export",
        "demo-0003",
        "--out",
        wav.to_str().unwrap(),
        "--config",
        config_s,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Audio in clear and the database of wrapped keys: the owner's only
    // (issue 15, finding 6: both were world-readable).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&wav), 0o600);
    assert_eq!(mode(&data.join("opptak.db")), 0o600);
    if data.join("opptak.db-wal").exists() {
        assert_eq!(mode(&data.join("opptak.db-wal")), 0o600);
    }
    // A symbolic link planted at --out is not written through.
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"untouched").unwrap();
    let link = dir.path().join("link.wav");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = opptak(&[
        "recordings",
        "export",
        "--reason",
        "test: check the export",
        "demo-0003",
        "--out",
        link.to_str().unwrap(),
        "--config",
        config_s,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a symbolic link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
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
        "--reason",
        "test: check the export",
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
        "--reason",
        "test: check the export",
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
    // Without compaction nothing would expire and nothing be archived (issue
    // 16: the old main accepted it silently).
    let out = Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args(["config"])
        .env("OPPTAK__RECORDER__COMPACT", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("recorder.compact = false is refused") && err.contains("expire"),
        "{err}"
    );
}

#[test]
fn demo_refuses_to_clear_a_directory_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let out = opptak(&["demo", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(dir.path().join("precious.txt").exists());
}

/// `opptak keys`: rotation re-wraps every data key without touching audio;
/// a KEK is retired only when nothing references it and it is not active.
#[test]
fn keys_rotate_then_retire_keeps_every_recording_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = opptak(&["demo", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success());
    let config = data.join("opptak.toml");
    let config_s = config.to_str().unwrap();
    let status = |args: &[&str]| {
        let out = opptak(&[&["keys"], args, &["--config", config_s]].concat());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, before, _) = status(&["status"]);
    assert!(ok && before.contains("audio-24h: 5"), "{before}");
    let active_of = |text: &str| {
        text.lines()
            .find(|l| l.contains(" active "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let old = active_of(&before);
    let blobs_before: Vec<_> = walk(&data.join("blobs"));

    let (ok, rotated, err) = status(&["rotate"]);
    assert!(ok, "{err}");
    // Every live data key: the 5 recordings, the archive and KI copies' keys, the dead-letter key.
    let live: u64 = before
        .lines()
        .filter_map(|l| l.split_once("data keys:"))
        .flat_map(|(_, counts)| {
            counts
                .split(',')
                .filter_map(|c| c.rsplit(' ').next()?.parse::<u64>().ok())
        })
        .sum();
    assert!(live >= 7, "{before}");
    assert!(rotated.contains(&format!("{live} data keys re-wrapped")), "{rotated}");
    assert_eq!(walk(&data.join("blobs")), blobs_before, "rotation must not touch audio");
    let (_, after, _) = status(&["status"]);
    assert!(
        after.contains(&format!("{old:<22} inactive")) && after.contains("active"),
        "{after}"
    );

    // The active KEK and a KEK still in use cannot be retired.
    let active = after
        .lines()
        .find(|l| l.contains(" active "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (ok, _, err) = status(&["retire", &active, "--grace-minutes", "0"]);
    assert!(!ok, "retiring a referenced kek must fail: {err}");
    let (ok, _, err) = status(&["retire", &old]);
    assert!(!ok && err.contains("wait"), "grace period: {err}");
    let (ok, _, err) = status(&["retire", &old, "--grace-minutes", "0"]);
    assert!(ok, "{err}");

    // Every recording still decrypts, now under the new KEK only.
    for id in ["demo-0001", "demo-0003", "demo-0005"] {
        let wav = dir.path().join(format!("{id}.wav"));
        let out = opptak(&[
            "recordings",
            "export",
            "--reason",
            "test: check the export",
            id,
            "--out",
            wav.to_str().unwrap(),
            "--config",
            config_s,
        ]);
        assert!(out.status.success(), "{id}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `opptak keys shred`: the class's key is destroyed, the recording can never
/// be read again ("key destroyed"), the other calls are untouched, and the
/// shredding leaves evidence but no key.
#[test]
fn shredding_a_key_makes_exactly_that_recording_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    assert!(opptak(&["demo", "--data-dir", data.to_str().unwrap()]).status.success());
    let config = data.join("opptak.toml");
    let c = config.to_str().unwrap();
    // The investment call's recording is kept by law: refused, with why, and
    // the refusal audited (issue 16: it was shredded without a trace).
    let out = opptak(&["keys", "shred", "demo-0002", "--reason", "cleanup", "--config", c]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept by law") && err.contains("--emergency"), "{err}");
    let out = opptak(&[
        "keys",
        "shred",
        "demo-0001",
        "--reason",
        "retention expired (test)",
        "--by",
        "sweeper",
        "--config",
        c,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shredded audio-24h key"));

    let wav = dir.path().join("x.wav");
    let out = opptak(&[
        "recordings",
        "export",
        "--reason",
        "test: check the export",
        "demo-0001",
        "--out",
        wav.to_str().unwrap(),
        "--config",
        c,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key destroyed"), "{err}");
    assert!(
        !wav.exists() || std::fs::metadata(&wav).unwrap().len() == 0,
        "no plaintext written"
    );
    let out = opptak(&[
        "recordings",
        "export",
        "--reason",
        "test: check the export",
        "demo-0003",
        "--out",
        wav.to_str().unwrap(),
        "--config",
        c,
    ]);
    assert!(out.status.success(), "other calls still decrypt");

    // Shredding twice finds no live key; the evidence is listed once.
    let again = opptak(&["keys", "shred", "demo-0001", "--reason", "again", "--config", c]);
    assert!(!again.status.success());
    let ev = opptak(&["keys", "shreddings", "--config", c]);
    let ev = String::from_utf8_lossy(&ev.stdout);
    let mine: Vec<&str> = ev.lines().filter(|l| l.contains("demo-0001")).collect();
    assert_eq!(mine.len(), 1, "{ev}");
    assert!(mine[0].contains("retention expired (test)") && mine[0].contains("sweeper"));
    let log = String::from_utf8_lossy(&opptak(&["audit", "list", "--config", c]).stdout).to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("key.shred") && l.contains("demo-0002") && l.contains("refused")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("key.shred") && l.contains("demo-0001") && l.contains("allowed")),
        "{log}"
    );
    // The demo's KI opt-out left its own evidence: the ki key of demo-0004.
    assert!(
        ev.lines()
            .any(|l| l.contains("demo-0004") && l.contains(" ki ") && l.contains("KI opt-out requested by adv-1187")),
        "{ev}"
    );
    // And the demo's conversations (issue 17): each open conversation's key,
    // shredded when it was written, and the analysis copy of the customer
    // who objected.
    let chats: Vec<&str> = ev.lines().filter(|l| l.contains("demo-chat-")).collect();
    assert_eq!(chats.iter().filter(|l| l.contains("chat-open")).count(), 4, "{ev}");
    assert!(
        chats
            .iter()
            .any(|l| l.contains("demo-chat-04") && l.contains("chat-analysis-1y") && l.contains("objected")),
        "{ev}"
    );
    assert_eq!(ev.lines().count(), 2 + chats.len(), "{ev}");
    let status = opptak(&["keys", "status", "--config", c]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("audio-24h: 4"));
}

/// `opptak policy` and `opptak hold` as a compliance officer uses them, on
/// the demo's data: the policy checks, explains a call with the rules that
/// decided, and a hold needs two officers to end.
#[test]
fn policy_and_holds_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    assert!(opptak(&["demo", "--data-dir", data.to_str().unwrap()]).status.success());
    let config = data.join("opptak.toml");
    let run = |args: &[&str]| {
        let out = opptak(&[args, &["--config", config.to_str().unwrap()]].concat());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // The shipped policy, shown and checked; a broken one refused with the reason.
    let (ok, shown, _) = run(&["policy", "show"]);
    assert!(ok && shown.contains("investment-archive-5y"));
    let good = dir.path().join("policy.toml");
    std::fs::write(&good, &shown).unwrap();
    let (ok, out, err) = run(&["policy", "check", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("valid"), "{out}");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, shown.replace("keep = \"24h\"", "keep = \"a day\"")).unwrap();
    let (ok, _, err) = run(&["policy", "check", broken.to_str().unwrap()]);
    assert!(
        !ok && err.contains("rule \"audio-24h\": keep = \"a day\" is not a period"),
        "{err}"
    );

    // The investment call: 24 h recording, 5-year archive copy, and why.
    let (ok, out, err) = run(&["policy", "explain", "demo-0002"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("archive-copy      archive-5y       archive  until 20"),
        "{out}"
    );
    assert!(out.contains("Verdipapirhandelloven"), "{out}");
    // The demo's KI call: the IVR's KiNotice is the call's evidence (issue 16, section 6).
    let (ok, out, err) = run(&["policy", "explain", "demo-0003"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("ki notice: the customer was told KI is used at call start")
            && out.contains("ivr announcement at ")
            && out.contains("3.000 s into the call (announcement ivr-ki-notice-1)"),
        "{out}"
    );

    // Two compliance officers, signed in on the command line with their own
    // passwords (issue 15, finding 5: `--by` was free text, and one person
    // could release a hold "as two officers" by typing two names).
    let conf = config.to_str().unwrap();
    let with = |args: &[&str], stdin: &str| {
        let out = opptak_in(&[args, &["--config", conf]].concat(), stdin);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    const PW_ADMIN: &str = "admin passphrase 1\n";
    let (ok, _, err) = with(
        &["users", "add", "adm-ida", "--name", "Ida", "--role", "admin"],
        PW_ADMIN,
    );
    assert!(ok, "{err}");
    for (officer, pw) in [("co-anne", "anne passphrase 1\n"), ("co-bjorn", "bjorn passphrase 1\n")] {
        let (ok, out, err) = with(
            &["users", "add", officer, "--name", officer, "--role", "compliance"],
            pw,
        );
        assert!(ok && out.contains("once another admin approves it"), "{out} {err}");
        let (ok, _, err) = with(
            &[
                "hold",
                "place",
                "demo-0002",
                "--case",
                "X",
                "--reason",
                "r",
                "--by",
                officer,
            ],
            pw,
        );
        assert!(
            !ok && err.contains("wrong password, or not an active compliance"),
            "waiting: {err}"
        );
        let (ok, _, err) = with(&["users", "approve", officer, "--by", "adm-ida"], "a wrong password\n");
        assert!(!ok, "{err}");
        let (ok, out, err) = with(&["users", "approve", officer, "--by", "adm-ida"], PW_ADMIN);
        assert!(ok && out.contains("approved by adm-ida"), "{out} {err}");
    }
    let (ok, _, err) = with(
        &[
            "hold",
            "place",
            "demo-0002",
            "--case",
            "X",
            "--reason",
            "r",
            "--by",
            "adm-ida",
        ],
        PW_ADMIN,
    );
    assert!(
        !ok && err.contains("not an active compliance"),
        "an admin is no officer: {err}"
    );

    // A hold: placed, a release asked for, refused to the same officer, confirmed by another.
    let anne = "anne passphrase 1\n";
    let (ok, out, err) = with(
        &[
            "hold",
            "place",
            "demo-0002",
            "--case",
            "FKN-1",
            "--reason",
            "complaint",
            "--by",
            "co-anne",
        ],
        anne,
    );
    assert!(ok, "{err}");
    let hold_id = out.split_whitespace().nth(1).unwrap().to_string();
    let (_, explained, _) = run(&["policy", "explain", "demo-0002"]);
    assert!(explained.contains("HELD"), "{explained}");
    let (ok, _, err) = with(&["hold", "release", &hold_id, "--by", "co-bjorn"], anne);
    assert!(
        !ok && err.contains("wrong password"),
        "anne cannot speak for bjorn: {err}"
    );
    let (ok, out, _) = with(&["hold", "release", &hold_id, "--by", "co-anne"], anne);
    assert!(ok && out.contains("second compliance officer"), "{out}");
    let (ok, _, err) = with(&["hold", "release", &hold_id, "--by", "co-anne"], anne);
    assert!(!ok && err.contains("a second compliance officer must confirm"), "{err}");
    let (_, listed, _) = run(&["hold", "list"]);
    assert!(listed.contains("awaiting a second officer"), "{listed}");
    let (ok, out, err) = with(
        &["hold", "release", &hold_id, "--by", "co-bjorn"],
        "bjorn passphrase 1\n",
    );
    assert!(ok && out.contains("released"), "{out} {err}");
    let (_, listed, _) = run(&["hold", "list"]);
    assert!(!listed.contains(&hold_id), "{listed}");

    // An authority's extension beyond the policy's maximum is refused; 7 years is fine.
    let (ok, _, err) = with(
        &[
            "hold",
            "extend",
            "demo-0002",
            "--years",
            "9",
            "--authority",
            "FT",
            "--case",
            "X",
            "--by",
            "co-anne",
        ],
        anne,
    );
    assert!(!ok && err.contains("up to 7 years"), "{err}");
    let (ok, out, _) = with(
        &[
            "hold",
            "extend",
            "demo-0002",
            "--years",
            "7",
            "--authority",
            "FT",
            "--case",
            "X",
            "--by",
            "co-anne",
        ],
        anne,
    );
    assert!(
        ok && out.contains("archive-copy of call demo-0002 kept until 20"),
        "{out}"
    );

    // The archive copy is kept by law: shredding it takes two different
    // signed-in officers and a reason (issue 16: one `keys shred` destroyed it
    // under a hold, without an audit entry).
    let (ok, _, err) = with(
        &["keys", "shred", "demo-0002", "--class", "archive-5y", "--reason", "x"],
        "",
    );
    assert!(!ok && err.contains("kept by law"), "{err}");
    let shred = [
        "keys",
        "shred",
        "demo-0002",
        "--class",
        "archive-5y",
        "--reason",
        "court order 7/26",
        "--emergency",
    ];
    let (ok, _, err) = with(
        &[&shred[..], &["--by", "co-anne", "--second", "co-anne"]].concat(),
        &format!("{anne}{anne}"),
    );
    assert!(!ok && err.contains("two different compliance officers"), "{err}");
    let (ok, out, err) = with(
        &[&shred[..], &["--by", "co-anne", "--second", "co-bjorn"]].concat(),
        &format!("{anne}bjorn passphrase 1\n"),
    );
    assert!(ok && out.contains("shredded archive-5y"), "{out} {err}");

    // Every one of these changes is in the hash-chained audit log, with the
    // signed-in officer as its actor, and the log verifies.
    let (_, log, _) = run(&["audit", "list"]);
    for (action, actor) in [
        ("hold.place", "co-anne"),
        ("hold.release", "co-anne"),
        ("hold.release", "co-bjorn"),
        ("retention.extend", "co-anne"),
        ("key.shred.emergency", "co-anne"),
        ("key.shred.emergency.confirm", "co-bjorn"),
        ("user.approve", "adm-ida"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(action) && l.contains(actor)),
            "{action} by {actor} not in the audit log:\n{log}"
        );
    }
    let (ok, out, err) = run(&["audit", "verify"]);
    assert!(ok, "{out} {err}");

    // Nothing has expired yet: a sweep deletes nothing.
    let (ok, out, _) = run(&["retention", "sweep"]);
    assert!(ok && out.starts_with("0 expired artifacts deleted"), "{out}");
}

fn opptak_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_opptak"));
    c.args(args).env_remove("OPPTAK_CONFIG").env_remove("OPPTAK_LLM_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run opptak")
}

/// Without a speech server the demo still records every call and the KI
/// call is transcription-pending; with one (when the test services run) it
/// is transcribed live and drafted. `opptak ki` says which.
#[test]
fn ki_states_from_the_command_line_with_and_without_a_speech_server() {
    let mut runs = vec![("http://127.0.0.1:9".to_string(), "transcription-pending")];
    if let Ok(url) = std::env::var("OPPTAK_TEST_SPEECH_URL") {
        runs.push((url, "drafted"));
    }
    for (url, want) in runs {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("demo");
        let out = opptak_env(
            &["demo", "--data-dir", data.to_str().unwrap()],
            &[("OPPTAK_SPEECH_URL", &url)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.matches("sample-identical").count(), 5, "{stdout}");
        let config = data.join("opptak.toml");
        let out = opptak(&["ki", "--config", config.to_str().unwrap()]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{table}");
        let line = |id: &str| table.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_owned();
        assert!(line("demo-0003").contains(want), "{table}");
        assert!(
            line("demo-0004").contains("opted-out (by adv-1187; ki key shredded)"),
            "{table}"
        );
        // Not KI: not listed.
        assert!(!table.contains("demo-0001") && !table.contains("demo-0005"), "{table}");
        let out = opptak(&["ki", "--pending", "--config", config.to_str().unwrap()]);
        let pending = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            pending.contains("demo-0003"),
            want == "transcription-pending",
            "{pending}"
        );
        assert!(!pending.contains("demo-0004"));
    }
}

/// Listening needs a stated reason, and every export lands in the audit log
/// (who, what, why), which `opptak audit verify` finds intact.
#[test]
fn exports_need_a_reason_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = opptak_env(
        &["demo", "--data-dir", data.to_str().unwrap()],
        &[("OPPTAK_SPEECH_URL", "http://127.0.0.1:9")],
    );
    assert!(out.status.success());
    let config = data.join("opptak.toml");
    let c = config.to_str().unwrap();
    let wav = dir.path().join("x.wav");
    let w = wav.to_str().unwrap();
    let refused = opptak(&["recordings", "export", "demo-0002", "--out", w, "--config", c]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--reason"));
    assert!(!wav.exists(), "nothing decrypted without a reason");
    let blank = opptak(&[
        "recordings",
        "export",
        "demo-0002",
        "--reason",
        " ",
        "--out",
        w,
        "--config",
        c,
    ]);
    assert!(!blank.status.success());
    for (who, copy) in [("co-anne", "recording"), ("co-bjorn", "archive")] {
        let ok = opptak(&[
            "recordings",
            "export",
            "demo-0002",
            "--copy",
            copy,
            "--reason",
            "complaint FKN-2026-0203",
            "--actor",
            who,
            "--out",
            w,
            "--config",
            c,
        ]);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
    let list = opptak(&["audit", "list", "--config", c]);
    let list = String::from_utf8_lossy(&list.stdout);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].contains("co-anne") && lines[0].contains("recording.export") && lines[0].contains("call:demo-0002")
    );
    assert!(
        lines[1].contains("co-bjorn")
            && lines[1].contains("archive-copy.export")
            && lines[1].contains("complaint FKN-2026-0203")
    );
    let verify = opptak(&["audit", "verify", "--config", c]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && text.contains("audit log intact") && text.contains("2 entries"),
        "{text}"
    );
}

/// `opptak users`: the password comes on standard input, never as an
/// argument; roles are checked; the admin's actions land in the audit log.
#[test]
fn users_from_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.db");
    let env = [
        ("OPPTAK__STORAGE__METADATA", format!("sqlite://{}", db.display())),
        (
            "OPPTAK__KEYS__KEYRING",
            format!("{}/keyring.json", dir.path().display()),
        ),
        (
            "OPPTAK__STORAGE__BLOBS",
            format!("file://{}/blobs", dir.path().display()),
        ),
        (
            "OPPTAK__STORAGE__ARCHIVE",
            format!("file://{}/archive", dir.path().display()),
        ),
    ];
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_opptak"));
        c.args(args)
            .env_remove("OPPTAK_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in &env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let add = run(
        &[
            "users",
            "add",
            "adv-anne",
            "--name",
            "Anne",
            "--role",
            "advisor",
            "--team",
            "oslo",
            "--by",
            "admin-ola",
        ],
        "correct horse battery staple\n",
    );
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let bad_role = run(
        &["users", "add", "x", "--name", "X", "--role", "root"],
        "correct horse battery staple\n",
    );
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));
    let short = run(&["users", "add", "y", "--name", "Y", "--role", "qa"], "short\n");
    assert!(!short.status.success());
    let list = run(&["users", "list"], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("adv-anne") && list.contains("advisor") && list.contains("waiting"),
        "{list}"
    );
    // The second admin, signed in with their own password, approves.
    let admin = run(
        &["users", "add", "admin-siv", "--name", "Siv", "--role", "admin"],
        "siv passphrase 12\n",
    );
    assert!(admin.status.success(), "{}", String::from_utf8_lossy(&admin.stderr));
    let approve = run(
        &["users", "approve", "adv-anne", "--by", "admin-siv"],
        "siv passphrase 12\n",
    );
    assert!(approve.status.success(), "{}", String::from_utf8_lossy(&approve.stderr));
    let list = run(&["users", "list"], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("active") && !list.contains("waiting"), "{list}");
    assert!(!list.contains("argon2"), "hashes are never listed");
    assert!(run(&["users", "disable", "adv-anne", "--by", "admin-ola"], "")
        .status
        .success());
    let list = run(&["users", "list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("disabled"));
    let log = run(&["audit", "list"], "");
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("user.create") && log.contains("user.disable") && log.contains("admin-ola"),
        "{log}"
    );
    assert!(run(&["audit", "verify"], "").status.success());
}

/// `opptak config` prints the effective configuration as TOML (issue 19,
/// finding 6: it printed Rust debug output): it parses, every value not a
/// secret is the default's or the override's, no secret is in it, and the
/// printout read back as a configuration file prints the same again.
#[test]
fn config_prints_toml_with_every_secret_masked() {
    let secrets = ["pin-4711-secret", "db-pass-word", "query-pass-word"];
    let overrides = [
        ("OPPTAK__KEYS__PROVIDER", "pkcs11".to_string()),
        ("OPPTAK__KEYS__PKCS11_PIN", secrets[0].to_string()),
        (
            "OPPTAK__STORAGE__METADATA",
            format!(
                "postgres://opptak:{}@db.bank.example:5432/opptak?sslmode=require&password={}",
                secrets[1], secrets[2]
            ),
        ),
        ("OPPTAK__BUS__TOPIC_PREFIX", "test.".to_string()),
        ("OPPTAK__WEB__LISTEN", "127.0.0.1:18080".to_string()),
        ("OPPTAK__QA__SHARE", "0.25".to_string()),
    ];
    let config = |file: Option<&std::path::Path>, env: &[(&str, String)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opptak"));
        cmd.env_clear().arg("config");
        if let Some(f) = file {
            cmd.arg("--config").arg(f);
        }
        let out = cmd.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = config(None, &overrides);
    for s in secrets {
        assert!(!printed.contains(s), "secret {s} printed:\n{printed}");
    }
    let table: toml::Table = printed.parse().unwrap_or_else(|e| panic!("not TOML: {e}\n{printed}"));
    let root = toml::Value::Table(table);
    let get = |path: &str| path.split('.').try_fold(&root, |v, k| v.get(k)).cloned();
    assert_eq!(get("keys.pkcs11_pin"), Some(toml::Value::from("*****")));
    assert_eq!(
        get("storage.metadata"),
        Some(toml::Value::from(
            "postgres://opptak:*****@db.bank.example:5432/opptak?sslmode=require&password=*****"
        ))
    );
    // Every default's leaf, as src/default.toml or the override says.
    let defaults: toml::Table = include_str!("../../src/default.toml").parse().unwrap();
    fn leaves(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaves(&key, t, out),
                v => out.push((key, v.clone())),
            }
        }
    }
    let mut all = Vec::new();
    leaves("", &defaults, &mut all);
    assert!(all.len() > 60, "{}", all.len());
    for (key, default) in all {
        if ["keys.pkcs11_pin", "storage.metadata"].contains(&key.as_str()) {
            continue;
        }
        let var = format!("OPPTAK__{}", key.to_ascii_uppercase().replace('.', "__"));
        let expected = match overrides.iter().find(|(k, _)| *k == var) {
            Some((_, v)) => v
                .parse::<f64>()
                .map_or_else(|_| toml::Value::from(v.as_str()), toml::Value::from),
            None => default,
        };
        assert_eq!(get(&key), Some(expected), "{key}");
    }
    // Read back as a file, the printout prints itself.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &printed).unwrap();
    assert_eq!(config(Some(&file), &[]), printed);
}

/// A command's error is one line on stderr and a non-zero status, even with
/// RUST_BACKTRACE=1 (issue 19, finding 6: a 30-line stack trace).
#[test]
fn a_command_error_is_one_line_even_with_backtraces_on() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[bus]\nurl = \"kafka://k:9092\"\nnot toml at all\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for (args, says) in [
        (
            vec!["recordings", "list", "--config", missing.to_str().unwrap()],
            vec!["reading config", "missing.toml", "No such file"],
        ),
        (
            vec!["config", "--config", bad.to_str().unwrap()],
            vec!["parsing config", "bad.toml", "line 3, column"],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_opptak"))
            .args(&args)
            .env_remove("OPPTAK_CONFIG")
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, not:\n{err}");
        assert!(err.starts_with("error: "), "{err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {s:?} in {err}");
        }
    }
}
