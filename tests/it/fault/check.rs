//! The end-of-run check, in the spirit of Jepsen's queue and Kafka checkers:
//! every chunk the broker acknowledged is looked for in what opptak stored.
//!
//! Per call, the stored recording (verified and decrypted by the production
//! reader, in the call's wire codec) is taken apart by the chunks'
//! watermarks (see `workload.rs`); a chunk *occurs* where its whole wire
//! content is found at a frame boundary. Each acknowledged chunk then falls
//! in exactly one category:
//!
//! - **ok**: stored exactly once, at its position (sequence × chunk length).
//! - **lost**: not stored, although the recording moved past it — a later
//!   chunk of the same call is stored, or the recording is complete. This is
//!   a chunk the pipeline skipped for good (Jepsen's *lost*: acknowledged,
//!   and reads after it succeeded without it).
//! - **unseen**: not stored and nothing after it stored either, the
//!   recording not complete: the pipeline never got this far (Jepsen's
//!   *unseen*: acknowledged, never read, but no later read to prove it
//!   lost). After the drain this means a stuck call.
//! - **misplaced**: stored once, at another position: per-call order broken.
//!
//! and independently of those, every extra occurrence of a chunk counts as a
//! **duplicate**. A chunk whose publish was never acknowledged (indeterminate)
//! and is stored is *recovered* (allowed, as in Jepsen). Stored frames that
//! belong to no occurrence at all are **unexpected** (gap filler or foreign
//! audio). On top, the stored audio must equal the sent audio byte for byte,
//! and decode to the same PCM: per-call order preserved in full.

use super::workload::{Planned, Sent, CHUNK_FRAMES};
use opptak::app::Edges;
use opptak_domain::model::CallId;
use opptak_vault::Which;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub chunks: usize,
    pub acked: usize,
    pub ok: usize,
    pub lost: usize,
    pub unseen: usize,
    pub misplaced: usize,
    pub duplicate: usize,
    pub recovered: usize,
    /// Publishes that failed (indeterminate) and were sent again.
    pub indeterminate: usize,
    pub unexpected_frames: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.chunks += o.chunks;
        self.acked += o.acked;
        self.ok += o.ok;
        self.lost += o.lost;
        self.unseen += o.unseen;
        self.misplaced += o.misplaced;
        self.duplicate += o.duplicate;
        self.recovered += o.recovered;
        self.indeterminate += o.indeterminate;
        self.unexpected_frames += o.unexpected_frames;
    }
}

/// Where each chunk occurs in `stored` (frame positions), by watermark, then
/// confirmed by its whole content.
fn occurrences(call: &Planned, stored: &[u8]) -> Vec<Vec<usize>> {
    let fb = call.sim.format.wire_frame_bytes();
    let tag = call.tag_bytes();
    let by_tag: HashMap<&[u8], usize> = (0..call.chunks).map(|k| (&call.chunk(k)[..tag], k)).collect();
    let mut occ = vec![Vec::new(); call.chunks];
    let mut pos = 0;
    while pos + tag <= stored.len() {
        if let Some(&k) = by_tag.get(&stored[pos..pos + tag]) {
            let c = call.chunk(k);
            if stored.get(pos..pos + c.len()) == Some(c) {
                occ[k].push(pos / fb);
            }
        }
        pos += fb;
    }
    occ
}

/// Classifies one call's chunks against its stored wire bytes.
pub fn classify(call: &Planned, sent: &Sent, stored: Option<&[u8]>, complete: bool) -> Tally {
    let mut t = Tally {
        chunks: call.chunks,
        acked: sent.acked.iter().filter(|a| a.is_some()).count(),
        indeterminate: sent.failed.iter().map(|&n| n as usize).sum(),
        ..Default::default()
    };
    let stored = stored.unwrap_or_default();
    let occ = if stored == call.sim.wire.as_slice() {
        // Identical: every chunk once, in place (the tags are unique).
        (0..call.chunks).map(|k| vec![k * CHUNK_FRAMES]).collect()
    } else {
        occurrences(call, stored)
    };
    let last_stored = occ.iter().rposition(|o| !o.is_empty());
    let mut covered = 0;
    for (k, o) in occ.iter().enumerate() {
        covered += o.len() * CHUNK_FRAMES;
        t.duplicate += o.len().saturating_sub(1);
        if sent.acked[k].is_none() {
            if !o.is_empty() {
                t.recovered += 1;
            }
            continue;
        }
        match o.as_slice() {
            [] if complete || last_stored.is_some_and(|l| l > k) => t.lost += 1,
            [] => t.unseen += 1,
            [at] if *at == k * CHUNK_FRAMES => t.ok += 1,
            [_] => t.misplaced += 1,
            // Stored more than once: in place if one of them is.
            many if many.contains(&(k * CHUNK_FRAMES)) => t.ok += 1,
            _ => t.misplaced += 1,
        }
    }
    let frames = stored.len() / call.sim.format.wire_frame_bytes();
    t.unexpected_frames = frames.saturating_sub(covered);
    t
}

/// Everything checked of one call.
#[derive(Debug, Default)]
pub struct CallReport {
    pub tally: Tally,
    pub complete: bool,
    /// Stored wire bytes equal the sent ones, and decode to the same PCM.
    pub identical: bool,
    pub gaps: usize,
    pub problems: Vec<String>,
    pub transcript: bool,
    pub draft: bool,
    pub ki_copy: bool,
    pub archive_copy: bool,
    /// Opted-out call: ki key shredded with evidence, nothing KI readable.
    pub opt_out_honoured: bool,
    /// No KI call: no ki key and no KI artifact at all.
    pub ki_clean: bool,
}

pub async fn check_call(edges: &Edges, call: &Planned, sent: &Sent) -> CallReport {
    let id = CallId::parse(call.call_id()).expect("call id");
    let mut r = CallReport::default();
    let (meta, vault) = (&edges.meta, edges.vault());
    let stored = vault.read_artifact_wire(&id, Which::Recording).await;
    match &stored {
        Ok(w) => {
            r.complete = w.record.complete;
            r.tally = classify(call, sent, Some(&w.wire), r.complete);
            let pcm = w.record.facts.format.decode(&w.wire).unwrap_or_default();
            r.identical = w.wire == call.sim.wire && pcm == call.sim.expected_pcm();
        }
        Err(e) => {
            r.problems.push(format!("recording unreadable: {e}"));
            r.tally = classify(call, sent, None, false);
        }
    }
    if !r.complete {
        r.problems.push("recording not complete".into());
    }
    if !r.identical && stored.is_ok() {
        r.problems
            .push(format!("stored audio differs from the sent audio: {:?}", r.tally));
    }
    r.gaps = meta
        .load_call(&id)
        .await
        .ok()
        .flatten()
        .map(|rec| rec.progress.gaps.len())
        .unwrap_or_default();
    if r.gaps > 0 {
        r.problems.push(format!("{} gaps", r.gaps));
    }
    let arts = meta.artifacts(&id).await.unwrap_or_default();
    let kinds: Vec<&str> = arts.iter().map(|a| a.kind.as_str()).collect();
    let expected_pcm = call.sim.expected_pcm();
    let same_audio = |which| {
        let (id, expected_pcm, vault) = (&id, &expected_pcm, &vault);
        async move {
            vault
                .read_artifact(id, which)
                .await
                .is_ok_and(|a| a.pcm == *expected_pcm)
        }
    };
    if call.investment {
        r.archive_copy = same_audio(Which::Archive).await;
        if !r.archive_copy {
            r.problems.push("archive copy missing or different".into());
        }
    }
    let transcript = opptak_ki::transcribe::read_transcript(&vault, &id).await;
    let draft = opptak_ki::summarize::read_draft(&vault, &id).await;
    r.transcript = transcript.is_ok();
    r.draft = draft.is_ok();
    if call.ki && !call.opt_out {
        r.ki_copy = same_audio(Which::Ki).await;
        if !r.transcript {
            r.problems.push(format!("no transcript: {:?}", transcript.err()));
        }
        if !r.draft {
            r.problems.push(format!("no draft: {:?}", draft.err()));
        }
        if !r.ki_copy {
            r.problems.push("KI audio copy missing or different".into());
        }
    } else if call.opt_out {
        let key = meta.class_key(&id, "ki").await.ok().flatten();
        let evidence = meta
            .shreddings(Some(&id))
            .await
            .unwrap_or_default()
            .iter()
            .any(|e| e.class == "ki" && e.reason.contains("opt-out"));
        let ki_arts_dead = arts
            .iter()
            .filter(|a| a.key.key.class == "ki")
            .all(|a| a.key.destroyed_at_us.is_some());
        let ki_copy_readable = vault.read_artifact(&id, Which::Ki).await.is_ok();
        let recorded = meta
            .load_call(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|rec| rec.opt_out.is_some());
        r.opt_out_honoured = key.is_some_and(|k| k.destroyed_at_us.is_some())
            && evidence
            && ki_arts_dead
            && !r.transcript
            && !r.draft
            && !ki_copy_readable
            && recorded;
        if !r.opt_out_honoured {
            r.problems.push(format!(
                "opt-out not honoured: evidence {evidence}, KI artifacts dead {ki_arts_dead}, transcript readable {}, \
                 draft readable {}, KI copy readable {ki_copy_readable}, opt-out recorded {recorded}",
                r.transcript, r.draft
            ));
        }
    } else {
        let key = meta.class_key(&id, "ki").await.ok().flatten();
        r.ki_clean = key.is_none() && !kinds.iter().any(|k| ["ki-audio", "transcript", "draft"].contains(k));
        if !r.ki_clean {
            r.problems
                .push(format!("KI ran on a call without KI: artifacts {kinds:?}"));
        }
    }
    r
}

/// Whether the pipeline is done with a call (recording complete and
/// compacted; KI finished or refused): what the drain waits for.
pub async fn settled(edges: &Edges, call: &Planned) -> bool {
    let id = CallId::parse(call.call_id()).expect("call id");
    let Ok(Some(rec)) = edges.meta.load_call(&id).await else {
        return false;
    };
    if !rec.complete || rec.object.is_none() {
        return false;
    }
    let Ok(arts) = edges.meta.artifacts(&id).await else {
        return false;
    };
    if call.opt_out {
        return edges
            .meta
            .class_key(&id, "ki")
            .await
            .ok()
            .flatten()
            .is_some_and(|k| k.destroyed_at_us.is_some());
    }
    if call.ki {
        return arts.iter().any(|a| a.kind == "draft");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> (Planned, Sent) {
        let mut plan = super::super::workload::plan("t", 4, 1.0, 7);
        let c = plan.remove(1);
        let sent = Sent {
            acked: vec![Some((0, 0)); c.chunks],
            failed: vec![0; c.chunks],
            control_failed: 0,
            finished: true,
        };
        (c, sent)
    }

    /// The categories on hand-made damage: each must be seen.
    #[test]
    fn classify_names_each_kind_of_damage() {
        let (c, sent) = call();
        let n = c.chunks;
        let whole = c.sim.wire.clone();
        assert_eq!(
            classify(&c, &sent, Some(&whole), true),
            Tally {
                chunks: n,
                acked: n,
                ok: n,
                ..Default::default()
            }
        );
        let chunk = |k: usize| c.chunk(k).to_vec();
        // Chunk 3 missing, chunk 5 twice, then the rest.
        let mut damaged = Vec::new();
        for k in 0..n {
            if k != 3 {
                damaged.extend(chunk(k));
            }
            if k == 5 {
                damaged.extend(chunk(k));
            }
        }
        let t = classify(&c, &sent, Some(&damaged), true);
        assert_eq!((t.lost, t.duplicate, t.unseen), (1, 1, 0), "{t:?}");
        assert!(t.misplaced > 0, "the chunks after the hole moved: {t:?}");
        // Only the first half stored, not complete: the rest is unseen, not lost.
        let half: Vec<u8> = (0..n / 2).flat_map(chunk).collect();
        let t = classify(&c, &sent, Some(&half), false);
        assert_eq!((t.ok, t.unseen, t.lost), (n / 2, n - n / 2, 0), "{t:?}");
        // Two chunks swapped: order broken, nothing lost.
        let mut swapped: Vec<u8> = Vec::new();
        for k in 0..n {
            swapped.extend(chunk(match k {
                0 => 1,
                1 => 0,
                k => k,
            }));
        }
        let t = classify(&c, &sent, Some(&swapped), true);
        assert_eq!((t.misplaced, t.lost, t.duplicate, t.ok), (2, 0, 0, n - 2), "{t:?}");
        // Silence where a chunk should be: lost, and its frames unexpected.
        let mut filled = whole.clone();
        let len = chunk(2).len();
        filled[2 * len..3 * len].fill(0);
        let t = classify(&c, &sent, Some(&filled), true);
        assert_eq!((t.lost, t.unexpected_frames), (1, CHUNK_FRAMES), "{t:?}");
    }
}
