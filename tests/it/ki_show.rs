//! Reading a call's KI content from a terminal (issue 19, finding 5), over
//! Kafka and PostgreSQL: `opptak ki show` signs the user in, decides and
//! audits as the call page does (allowed with the reason, refused roles and
//! a missing or incomplete reason audited too), and prints the transcript
//! and the draft; and the script sign-in of docs/review-service.md, run as
//! written against the service.

use crate::common;
use common::{AddApproved, Backend, Env};
use opptak::app::{RunningKi, RunningRecorder};
use opptak_domain::model::CallId;
use opptak_review::identity::{Identity, Role};
use std::sync::Arc;

const PW: &str = "correct horse battery staple";
const HEARD: &str = "I would like to move my mortgage to a fixed rate";
const WHY: &str = "the customer complains about the advice";

/// `opptak ki show ARGS` with the test's configuration and `password` on
/// standard input: (success, stdout, stderr).
fn ki_show(env: &Env, args: &[&str], password: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
        .args([&["ki", "show"], args].concat())
        .envs(env.vars.iter().cloned())
        .env_remove("OPPTAK_CONFIG")
        .env("RUST_BACKTRACE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Audit entries after `seq` as (actor, action, subject, reason, outcome).
async fn audited(audit: &opptak_audit::Audit, seq: u64) -> Vec<(String, String, String, String, String)> {
    audit
        .entries(seq + 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let e = e.event;
            (e.actor, e.action, e.subject, e.reason, e.outcome)
        })
        .collect()
}

async fn last_seq(audit: &opptak_audit::Audit) -> u64 {
    let mut seq = 0;
    loop {
        let page = audit.entries(seq + 1, 1000).await.unwrap();
        match page.last() {
            Some(e) => seq = e.seq,
            None => return seq,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ki_show_reads_and_audits_as_the_call_page_does() {
    let Some(kafka) = common::kafka() else { return };
    let Some(postgres) = common::postgres_db("kishow").await else {
        return;
    };
    let env = Env::new(&Backend::Services { kafka, postgres }, "kishow");
    let edges = env.edges().await;
    let id = Identity::open(&edges.review()).await.unwrap();
    for (user, role, team) in [
        ("adv-anne", Role::Advisor, "oslo"),
        ("adv-bo", Role::Advisor, "oslo"),
        ("co-cato", Role::Compliance, "compliance"),
        ("aud-astrid", Role::Auditor, "audit"),
    ] {
        id.add_approved("setup", user, user, role, team, PW).await.unwrap();
    }

    // One KI call of adv-anne, recorded, transcribed and drafted.
    let mut sample = opptak::demo::samples(&opptak::demo::default_samples_dir())
        .unwrap()
        .into_iter()
        .find(|s| s.call.call_id == "demo-0003")
        .unwrap();
    sample.call.started.advisor_id = "adv-anne".into();
    let call = sample.call.call_id.clone();
    let cid = CallId::parse(&call).unwrap();
    let recorder = RunningRecorder::spawn(edges.recorder());
    let ki = RunningKi::spawn(&edges, true, true, Some(Arc::new(common::FixedAsr(HEARD))))
        .await
        .unwrap();
    common::publish_events(&edges, &sample.call.events(100)).await;
    common::wait_for_draft(&edges, &cid, 120).await;
    ki.stop().await;
    recorder.stop().await.unwrap();
    let draft = opptak_ki::summarize::read_draft(&edges.vault(), &cid).await.unwrap();
    let audit = edges.review().audit().await.unwrap();

    // Compliance with the reason form's fields: the content, and the audit
    // entry the call page writes, with the reason as the form's.
    let before = last_seq(&audit).await;
    let (ok, out, err) = ki_show(
        &env,
        &[
            &call,
            "--by",
            "co-cato",
            "--category",
            "complaint",
            "--case",
            "FKN-1",
            "--reason",
            WHY,
        ],
        PW,
    );
    assert!(ok, "{err}");
    assert!(out.contains(HEARD), "the transcript: {out}");
    assert!(out.contains(&draft.summary), "the draft: {out}");
    let kept = format!("Klage fra kunden · FKN-1 · {WHY}");
    let log = audited(&audit, before).await;
    assert!(
        log.contains(&(
            "co-cato".into(),
            "transcript.read".into(),
            format!("call:{call}"),
            kept.clone(),
            "allowed".into()
        )),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e.0 == "co-cato" && e.1 == "cli.authenticate" && e.4 == "allowed"),
        "{log:?}"
    );

    // The call's advisor states no reason (the page asks none): "review".
    let before = last_seq(&audit).await;
    let (ok, out, err) = ki_show(&env, &[&call, "--by", "adv-anne"], PW);
    assert!(ok && out.contains(HEARD), "{err}");
    let log = audited(&audit, before).await;
    assert!(
        log.contains(&(
            "adv-anne".into(),
            "transcript.read".into(),
            format!("call:{call}"),
            "review".into(),
            "allowed".into()
        )),
        "{log:?}"
    );

    // Refused, each in one line on stderr, nothing printed, and audited:
    // an auditor (never content), another advisor (not theirs), compliance
    // without a reason; an incomplete reason fails the form's checks.
    for (by, args, says, action, outcome) in [
        (
            "aud-astrid",
            vec![],
            "never reads call content",
            "transcript.read",
            "refused",
        ),
        ("adv-bo", vec![], "refused", "transcript.read", "refused"),
        ("co-cato", vec![], "--reason", "transcript.read", "refused"),
        (
            "co-cato",
            vec!["--category", "complaint", "--reason", "because"],
            "case number",
            "read.reason",
            "failed",
        ),
    ] {
        let before = last_seq(&audit).await;
        let (ok, out, err) = ki_show(&env, &[&[call.as_str(), "--by", by], &args[..]].concat(), PW);
        assert!(!ok, "{by} {args:?} must be refused: {out}");
        assert!(!out.contains(HEARD) && !out.contains(&draft.summary), "{out}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{by} {args:?}: {err}");
        let log = audited(&audit, before).await;
        assert!(
            log.iter()
                .any(|e| e.0 == by && e.1 == action && e.2 == format!("call:{call}") && e.4 == outcome),
            "{by} {args:?}: {log:?}"
        );
        assert!(
            !log.iter().any(|e| e.1 == "transcript.read" && e.4 == "allowed"),
            "{log:?}"
        );
    }

    // A wrong password reads nothing and is audited as a refused sign-in.
    let before = last_seq(&audit).await;
    let (ok, out, _) = ki_show(&env, &[&call, "--by", "adv-anne"], "not the password");
    assert!(!ok && !out.contains(HEARD));
    let log = audited(&audit, before).await;
    assert!(
        log.iter()
            .any(|e| e.0 == "adv-anne" && e.1 == "cli.authenticate" && e.4 == "refused"),
        "{log:?}"
    );
    assert!(!log.iter().any(|e| e.1 == "transcript.read"), "{log:?}");

    // The script sign-in of docs/review-service.md, run as written.
    let server = common::WebService::start(&edges).await;
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/review-service.md")).unwrap();
    let script = guide
        .split("### Signing in from a script")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the guide's script sign-in block");
    let before = last_seq(&audit).await;
    let run = {
        use std::io::Write;
        let mut child = std::process::Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", script])
            .env("OPPTAK_URL", &server.base)
            .env("USER_ID", "co-cato")
            .env("CALL_ID", &call)
            .env("REASON", WHY)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PW}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let view: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(view["call_id"], call.as_str());
    assert_eq!(view["reason"], WHY);
    assert_eq!(view["draft"]["summary"], draft.summary.as_str());
    assert_eq!(view["transcript"][0]["text"], HEARD);
    // Signed in, read with the header's reason, signed out (curl -f: a
    // wrong CSRF token on /logout would have failed the script, and been
    // audited as a refusal).
    let log = audited(&audit, before).await;
    for (action, subject, reason) in [
        ("login", "user:co-cato".to_string(), ""),
        ("transcript.read", format!("call:{call}"), WHY),
    ] {
        assert!(
            log.iter().any(|e| e.0 == "co-cato"
                && e.1 == action
                && e.2 == subject
                && e.3 == reason
                && e.4 == "allowed"),
            "{action}: {log:?}"
        );
    }
    assert!(!log.iter().any(|e| e.4 == "refused"), "{log:?}");
    server.stop().await;
}
