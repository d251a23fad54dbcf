//! Issue 19: the SIPREC test peer. PJSIP (PyPI `pjsua2-python`, driven by
//! tests/siprec/src_client.py) is the Session Recording Client, and
//! tests/siprec/rtp_proxy.py impairs its RTP on a schedule; both are checked
//! here against a plain-socket SRS (tests/siprec/selftest.py).
//!
//! The tests skip without `OPPTAK_TEST_PJSUA2_PYTHON` (exported by
//! `deploy/local/services.sh env` once it installed pjsua2), unless
//! `OPPTAK_REQUIRE_SERVICES=1`.

use crate::common;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SIPREC test peer's Python, or None (skip).
fn peer_python() -> Option<PathBuf> {
    match std::env::var("OPPTAK_TEST_PJSUA2_PYTHON") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => common::skip("OPPTAK_TEST_PJSUA2_PYTHON not set (deploy/local/services.sh install)"),
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/siprec").join(name)
}

/// The client and the proxy against a minimal SRS on plain sockets: the
/// INVITE's multipart body (SDP with labels, RFC 7865 metadata), RTP with PT
/// 0 and 8 whose payload is the G.711 encoding of each WAV, every scenario,
/// and the proxy's log matching what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pjsip_test_peer_passes_its_self_test() {
    let Some(python) = peer_python() else { return };
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python)
            .arg(script("selftest.py"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("selftest.py still running after 300 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "selftest.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
