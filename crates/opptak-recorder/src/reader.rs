//! Reading a recording back: every segment decrypted and checked against the
//! metadata (index, position, final marker), then PCM or WAV out.

use crate::key_context;
use opptak_crypto::segment::{self, ArtifactKind};
use opptak_crypto::{CryptoError, KeyProvider, WrappedKey};
use opptak_domain::model::{CallFacts, CallId};
use opptak_store::meta::{CallRecord, GapRow};
use opptak_store::{BlobStore, MetadataStore, StoreError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no recording for call {0}")]
    UnknownCall(String),
    #[error("cannot decrypt: {0}")]
    Key(CryptoError),
    #[error("key destroyed: the {class} data key of call {call_id} was crypto-shredded (at {at_us} µs since the epoch); its recording can never be decrypted again")]
    KeyDestroyed { call_id: String, class: String, at_us: i64 },
    #[error("recording {recording_id} failed verification: {source}")]
    Segment { recording_id: String, source: CryptoError },
    #[error("recording {recording_id} is inconsistent: {detail}")]
    Integrity { recording_id: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A decrypted recording, in memory only.
pub struct Recording {
    pub facts: CallFacts,
    pub recording_id: String,
    /// Interleaved PCM16 little-endian, gaps filled with silence.
    pub pcm: Vec<u8>,
    pub frames: u64,
    pub gaps: Vec<GapRow>,
    pub complete: bool,
    pub segments: u64,
    pub record: CallRecord,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print audio.
        f.debug_struct("Recording")
            .field("call_id", &self.facts.call_id)
            .field("recording_id", &self.recording_id)
            .field("frames", &self.frames)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

pub async fn read_recording(
    meta: &Arc<dyn MetadataStore>,
    blobs: &Arc<dyn BlobStore>,
    keys: &Arc<dyn KeyProvider>,
    call_id: &CallId,
) -> Result<Recording, ReadError> {
    let rec = meta
        .load_call(call_id)
        .await?
        .ok_or_else(|| ReadError::UnknownCall(call_id.to_string()))?;
    if let Some(at_us) = rec.key_destroyed_at_us {
        return Err(ReadError::KeyDestroyed {
            call_id: call_id.to_string(),
            class: rec.key.class.clone(),
            at_us,
        });
    }
    let wrapped = WrappedKey {
        key_id: rec.key.key_id.clone(),
        kek_id: rec.key.kek_id.clone(),
        sealed: rec.key.sealed.clone(),
    };
    let key = keys
        .unwrap(&wrapped, &key_context(call_id, &rec.key.class))
        .map_err(ReadError::Key)?;
    let rows = meta.segments(&rec.recording_id).await?;
    let integrity = |detail: String| ReadError::Integrity {
        recording_id: rec.recording_id.clone(),
        detail,
    };
    if rows.len() as u64 != rec.segments {
        return Err(integrity(format!(
            "{} segment rows, {} recorded",
            rows.len(),
            rec.segments
        )));
    }
    // Segments hold the call's wire codec; PCM16 is decoded on the way out.
    let frame_bytes = rec.facts.format.wire_frame_bytes();
    let mut blobs_read = Vec::with_capacity(rows.len());
    let mut frames = 0u64;
    for (i, row) in rows.iter().enumerate() {
        if row.idx != i as u64 || row.first_frame != frames {
            return Err(integrity(format!("segment row {i} out of place")));
        }
        if row.final_segment != (i + 1 == rows.len() && rec.complete) {
            return Err(integrity(format!(
                "segment {i}: final marker does not match the recording state"
            )));
        }
        frames += row.frames;
        blobs_read.push(
            blobs
                .get_range(&row.blob_path, row.blob_offset..row.blob_offset + row.sealed_bytes)
                .await?,
        );
    }
    let parts: Vec<&[u8]> = blobs_read.iter().map(|b| b.as_ref()).collect();
    let wire = segment::open_stream(
        &key,
        ArtifactKind::Recording,
        &rec.recording_id,
        &parts,
        frame_bytes,
        rec.complete,
    )
    .map_err(|source| ReadError::Segment {
        recording_id: rec.recording_id.clone(),
        source,
    })?;
    let frames = (wire.len() / frame_bytes) as u64;
    let pcm = rec.facts.format.decode(&wire).map_err(|e| integrity(e.to_string()))?;
    if rec.complete && rows.is_empty() {
        return Err(integrity("complete recording without a final segment".into()));
    }
    if frames != rec.progress.frames {
        return Err(integrity(format!(
            "{frames} frames stored, {} recorded",
            rec.progress.frames
        )));
    }
    let gaps = meta.gaps(&rec.recording_id).await?;
    Ok(Recording {
        facts: rec.facts.clone(),
        recording_id: rec.recording_id.clone(),
        pcm,
        frames,
        gaps,
        complete: rec.complete,
        segments: rec.segments,
        record: rec,
    })
}

/// Writes a recording as a PCM16 WAV file (stereo where the source was).
pub fn write_wav(rec: &Recording, out: &mut (impl std::io::Write + std::io::Seek)) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: rec.facts.format.channels(),
        sample_rate: rec.facts.format.sample_rate_hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(out, spec)?;
    {
        let mut i16w = w.get_i16_writer(rec.pcm.len() as u32 / 2);
        for s in rec.pcm.chunks_exact(2) {
            i16w.write_sample(i16::from_le_bytes([s[0], s[1]]));
        }
        i16w.flush()?;
    }
    w.finalize()
}
