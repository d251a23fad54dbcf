//! Reading a recording (or its archive / KI copy) back: whole and verified
//! end to end ([`read_artifact`]), or a window by random access
//! ([`read_window`]); then PCM or WAV out. A compacted artifact is read from
//! its format-v2 object, a recording not yet compacted from its spool
//! segments (format v1), each checked against the metadata.

use crate::{artifact_info, Vault, VaultError};
use opptak_crypto::segment::{self, ArtifactKind};
use opptak_crypto::stream::{self, StreamInfo, StreamOpener};
use opptak_crypto::CryptoError;
use opptak_domain::model::{CallFacts, CallId, KeyClass};
use opptak_store::meta::{ArtifactRow, CallRecord, GapRow};

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

/// Which artifact of a call to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The recording (`audio-24h`).
    Recording,
    /// The investment-advice archive copy (`archive-5y`).
    Archive,
    /// The KI audio copy (`ki`).
    Ki,
}

impl Which {
    /// The `recordings.kind` value.
    pub fn store_kind(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Archive => "archive-copy",
            Self::Ki => "ki-audio",
        }
    }
    pub fn artifact_kind(self) -> ArtifactKind {
        match self {
            Self::Recording => ArtifactKind::Recording,
            Self::Archive => ArtifactKind::ArchiveCopy,
            Self::Ki => ArtifactKind::KiAudio,
        }
    }
    pub fn class(self) -> KeyClass {
        match self {
            Self::Recording => KeyClass::Audio24h,
            Self::Archive => KeyClass::Archive5y,
            Self::Ki => KeyClass::Ki,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "recording" => Some(Self::Recording),
            "archive" | "archive-copy" => Some(Self::Archive),
            "ki" | "ki-audio" => Some(Self::Ki),
            _ => None,
        }
    }
}

/// What a format-v2 object of this artifact must declare.
pub fn stream_info(call_id: &CallId, artifact: &ArtifactRow, which: Which) -> StreamInfo {
    artifact_info(
        call_id,
        &artifact.key.key.class,
        &artifact.key.key.key_id,
        which.artifact_kind(),
        &artifact.artifact_id,
    )
}

struct Located {
    record: CallRecord,
    artifact: ArtifactRow,
    key: opptak_crypto::DataKey,
}

impl Vault {
    async fn locate(&self, call_id: &CallId, which: Which) -> Result<Located, VaultError> {
        let meta = &self.meta;
        let record = meta
            .load_call(call_id)
            .await?
            .ok_or_else(|| VaultError::UnknownCall(call_id.to_string()))?;
        let artifact = meta
            .artifacts(call_id)
            .await?
            .into_iter()
            .find(|a| a.kind == which.store_kind())
            .ok_or_else(|| VaultError::NoArtifact {
                call_id: call_id.to_string(),
                kind: which.store_kind(),
            })?;
        let key = self.open_row(call_id, &artifact.key)?;
        Ok(Located { record, artifact, key })
    }

    /// After a read from spool segments failed: compaction may have moved
    /// them into the artifact's object between [`Vault::locate`] and the read
    /// (it sets the object and deletes the segment rows in one transaction,
    /// then collects the spool). The artifact located again if it has an
    /// object now, to read from that; else the read's own error.
    async fn compacted_meanwhile(
        &self,
        call_id: &CallId,
        which: Which,
        before: &Located,
        err: VaultError,
    ) -> Result<Located, VaultError> {
        if before.artifact.object.is_some() {
            return Err(err);
        }
        let again = self.locate(call_id, which).await?;
        if again.artifact.object.is_none() {
            return Err(err);
        }
        Ok(again)
    }

    /// The whole plaintext (wire codec) of an artifact, verified end to end:
    /// from its format-v2 object, or — for a recording not compacted yet — from
    /// its spool segments.
    async fn read_wire(&self, call_id: &CallId, which: Which, loc: &Located) -> Result<Vec<u8>, VaultError> {
        let (meta, blobs) = (&self.meta, &self.blobs);
        let rec = &loc.record;
        let id = loc.artifact.artifact_id.clone();
        let seg_err = |source| VaultError::Segment {
            recording_id: id.clone(),
            source,
        };
        if let Some(obj) = &loc.artifact.object {
            let bytes = blobs.get(&obj.path).await?;
            if bytes.len() as u64 != obj.bytes {
                return Err(VaultError::Integrity {
                    recording_id: id.clone(),
                    detail: format!("object is {} bytes, {} recorded", bytes.len(), obj.bytes),
                });
            }
            return stream::open(&loc.key, &bytes, &stream_info(call_id, &loc.artifact, which)).map_err(seg_err);
        }
        let integrity = |detail: String| VaultError::Integrity {
            recording_id: rec.recording_id.clone(),
            detail,
        };
        if which != Which::Recording {
            return Err(integrity("copy without an object".into()));
        }
        let rows = meta.segments(&rec.recording_id).await?;
        if rows.len() as u64 != rec.segments {
            return Err(integrity(format!(
                "{} segment rows, {} recorded",
                rows.len(),
                rec.segments
            )));
        }
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
        if rec.complete && rows.is_empty() {
            return Err(integrity("complete recording without a final segment".into()));
        }
        let parts: Vec<&[u8]> = blobs_read.iter().map(|b| b.as_ref()).collect();
        segment::open_stream(
            &loc.key,
            ArtifactKind::Recording,
            &rec.recording_id,
            &parts,
            rec.facts.format.wire_frame_bytes(),
            rec.complete,
        )
        .map_err(seg_err)
    }

    /// Reads a call's recording, verified (see [`read_artifact`]).
    pub async fn read_recording(&self, call_id: &CallId) -> Result<Recording, VaultError> {
        self.read_artifact(call_id, Which::Recording).await
    }
}

/// An artifact's verified plaintext in the call's wire codec (G.711 or L16).
pub struct WireArtifact {
    pub record: CallRecord,
    pub artifact: ArtifactRow,
    pub wire: Vec<u8>,
}

/// Reads one artifact of a call whole, every segment decrypted and verified,
/// in the call's wire codec.
impl Vault {
    pub async fn read_artifact_wire(&self, call_id: &CallId, which: Which) -> Result<WireArtifact, VaultError> {
        let mut loc = self.locate(call_id, which).await?;
        let wire = match self.read_wire(call_id, which, &loc).await {
            Ok(wire) => wire,
            Err(e) => {
                loc = self.compacted_meanwhile(call_id, which, &loc, e).await?;
                self.read_wire(call_id, which, &loc).await?
            }
        };
        let integrity = |detail: String| VaultError::Integrity {
            recording_id: loc.artifact.artifact_id.clone(),
            detail,
        };
        let frame_bytes = loc.record.facts.format.wire_frame_bytes();
        if wire.len() % frame_bytes != 0 {
            return Err(integrity("partial frame".into()));
        }
        let frames = (wire.len() / frame_bytes) as u64;
        if frames != loc.record.progress.frames {
            return Err(integrity(format!(
                "{frames} frames stored, {} recorded",
                loc.record.progress.frames
            )));
        }
        Ok(WireArtifact {
            record: loc.record,
            artifact: loc.artifact,
            wire,
        })
    }

    /// Reads one artifact of a call whole, every segment decrypted and verified,
    /// then decoded to PCM16.
    pub async fn read_artifact(&self, call_id: &CallId, which: Which) -> Result<Recording, VaultError> {
        let w = self.read_artifact_wire(call_id, which).await?;
        let rec = w.record;
        let frames = (w.wire.len() / rec.facts.format.wire_frame_bytes()) as u64;
        let pcm = rec.facts.format.decode(&w.wire).map_err(|e| VaultError::Integrity {
            recording_id: w.artifact.artifact_id.clone(),
            detail: e.to_string(),
        })?;
        let gaps = self.meta.gaps(&rec.recording_id).await?;
        Ok(Recording {
            facts: rec.facts.clone(),
            recording_id: w.artifact.artifact_id.clone(),
            pcm,
            frames,
            gaps,
            complete: rec.complete,
            segments: rec.segments,
            record: rec,
        })
    }
}

/// A stretch of audio read by random access.
pub struct Window {
    pub facts: CallFacts,
    /// Position of the first frame on the call's timeline.
    pub first_frame: u64,
    /// Interleaved PCM16 little-endian.
    pub pcm: Vec<u8>,
    pub frames: u64,
    /// Sealed segments decrypted to serve it.
    pub segments_opened: u64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("first_frame", &self.first_frame)
            .field("frames", &self.frames)
            .field("segments_opened", &self.segments_opened)
            .finish_non_exhaustive()
    }
}

/// Seeks to `from` on the call's timeline and reads `length` of audio,
/// decrypting only the segments that hold it (one range request for a
/// format-v2 object; the covering spool segments before compaction). Each
/// segment is authenticated; the whole-artifact checks are [`read_artifact`]'s.
impl Vault {
    pub async fn read_window(
        &self,
        call_id: &CallId,
        which: Which,
        from: std::time::Duration,
        length: std::time::Duration,
    ) -> Result<Window, VaultError> {
        let rec = self
            .meta
            .load_call(call_id)
            .await?
            .ok_or_else(|| VaultError::NoArtifact {
                call_id: call_id.to_string(),
                kind: which.store_kind(),
            })?;
        let rate = rec.facts.format.sample_rate_hz() as u128;
        let first = ((from.as_micros() * rate) / 1_000_000) as u64;
        let want = ((length.as_micros() * rate) / 1_000_000) as u64;
        self.read_frames(call_id, which, first, want).await
    }

    /// [`read_window`] in frames: `want` frames from frame `first` (fewer at the end).
    pub async fn read_frames(
        &self,
        call_id: &CallId,
        which: Which,
        first: u64,
        want: u64,
    ) -> Result<Window, VaultError> {
        let loc = self.locate(call_id, which).await?;
        match self.read_frames_at(call_id, which, &loc, first, want).await {
            Ok(window) => Ok(window),
            Err(e) => {
                let loc = self.compacted_meanwhile(call_id, which, &loc, e).await?;
                self.read_frames_at(call_id, which, &loc, first, want).await
            }
        }
    }

    async fn read_frames_at(
        &self,
        call_id: &CallId,
        which: Which,
        loc: &Located,
        first: u64,
        want: u64,
    ) -> Result<Window, VaultError> {
        let (meta, blobs) = (&self.meta, &self.blobs);
        let format = loc.record.facts.format.clone();
        let fb = format.wire_frame_bytes() as u64;
        let first = first.min(loc.record.progress.frames);
        let last = (first + want).min(loc.record.progress.frames);
        let id = loc.artifact.artifact_id.clone();
        let seg_err = |source| VaultError::Segment {
            recording_id: id.clone(),
            source,
        };
        let (wire, opened) = if let Some(obj) = &loc.artifact.object {
            let head = blobs
                .get_range(&obj.path, 0..obj.bytes.min(stream::MAX_HEADER_LEN as u64))
                .await?;
            let info = stream_info(call_id, &loc.artifact, which);
            let opener = StreamOpener::new(&loc.key, &head, obj.bytes, &info).map_err(seg_err)?;
            let (a, b) = (first * fb, last * fb);
            let segs = opener.segments_for(a..b);
            if segs.is_empty() {
                (Vec::new(), 0)
            } else {
                let span = opener.segment_range(segs.start).start..opener.segment_range(segs.end - 1).end;
                let bytes = blobs.get_range(&obj.path, span.clone()).await?;
                let mut pt = Vec::with_capacity((b - a) as usize + opener.segment_size() as usize);
                for i in segs.clone() {
                    let r = opener.segment_range(i);
                    let part = &bytes[(r.start - span.start) as usize..(r.end - span.start) as usize];
                    pt.extend_from_slice(&opener.open_segment(i, part).map_err(seg_err)?);
                }
                let skip = (a - segs.start * opener.segment_size()) as usize;
                let end = (skip + (b - a) as usize).min(pt.len());
                (pt[skip.min(end)..end].to_vec(), segs.end - segs.start)
            }
        } else {
            let rows = meta.segments(&loc.record.recording_id).await?;
            // Fewer rows than the recording had when located: compaction
            // took them (the recorder only adds rows).
            if (rows.len() as u64) < loc.record.segments {
                return Err(VaultError::Integrity {
                    recording_id: loc.record.recording_id.clone(),
                    detail: format!("{} segment rows, {} recorded", rows.len(), loc.record.segments),
                });
            }
            let mut pt = Vec::new();
            let mut opened = 0;
            let mut start_frame = None;
            for row in rows
                .iter()
                .filter(|r| r.first_frame < last && r.first_frame + r.frames > first)
            {
                let blob = blobs
                    .get_range(&row.blob_path, row.blob_offset..row.blob_offset + row.sealed_bytes)
                    .await?;
                let (hdr, part) = segment::open(
                    &loc.key,
                    &blob,
                    segment::Expect {
                        kind: ArtifactKind::Recording,
                        recording_id: &loc.record.recording_id,
                        index: row.idx,
                    },
                )
                .map_err(seg_err)?;
                if hdr.first_frame != row.first_frame || part.len() as u64 != row.frames * fb {
                    return Err(seg_err(CryptoError::Stream(format!(
                        "segment {} does not match its row",
                        row.idx
                    ))));
                }
                start_frame.get_or_insert(row.first_frame);
                pt.extend_from_slice(&part);
                opened += 1;
            }
            let skip = ((first - start_frame.unwrap_or(first)) * fb) as usize;
            let end = (skip + ((last - first) * fb) as usize).min(pt.len());
            (pt[skip.min(end)..end].to_vec(), opened)
        };
        let frames = wire.len() as u64 / fb;
        let pcm = format.decode(&wire).map_err(|e| VaultError::Integrity {
            recording_id: loc.artifact.artifact_id.clone(),
            detail: e.to_string(),
        })?;
        Ok(Window {
            facts: loc.record.facts.clone(),
            first_frame: first,
            pcm,
            frames,
            segments_opened: opened,
        })
    }
}

/// Writes a recording as a PCM16 WAV file (stereo where the source was).
pub fn write_wav(rec: &Recording, out: &mut (impl std::io::Write + std::io::Seek)) -> Result<(), hound::Error> {
    write_pcm_wav(&rec.facts.format, &rec.pcm, out)
}

/// Writes interleaved PCM16 little-endian of `format` as a WAV file.
pub fn write_pcm_wav(
    format: &opptak_domain::AudioFormat,
    pcm: &[u8],
    out: &mut (impl std::io::Write + std::io::Seek),
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: format.channels(),
        sample_rate: format.sample_rate_hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(out, spec)?;
    {
        let mut i16w = w.get_i16_writer(pcm.len() as u32 / 2);
        for s in pcm.chunks_exact(2) {
            i16w.write_sample(i16::from_le_bytes([s[0], s[1]]));
        }
        i16w.flush()?;
    }
    w.finalize()
}

/// Opens the sealed original of a dead letter: its key is found by the id in
/// the stream header (a call's `audio-24h` key or a dead-letter key of the
/// day); a shredded key gives [`VaultError::KeyDestroyed`].
impl Vault {
    pub async fn open_dead_letter(&self, dl: &opptak_proto::v1::DeadLetter) -> Result<Vec<u8>, VaultError> {
        let artifact_id = deadletter_artifact_id(dl.source_partition, dl.source_offset);
        let (declared, original) = self.open_any_object(&dl.sealed_original).await?;
        if declared.kind != ArtifactKind::DeadLetter || declared.artifact_id != artifact_id {
            return Err(VaultError::Segment {
                recording_id: artifact_id,
                source: CryptoError::Misplaced(format!(
                    "a {:?} of {:?} in a dead letter",
                    declared.kind, declared.artifact_id
                )),
            });
        }
        Ok(original)
    }

    /// Opens any format-v2 object opptak wrote (a compacted recording, a copy, a
    /// dead letter's original) by the key its header names: for inspection and
    /// for proving a shredding reached every copy. Returns what the header
    /// declares (authenticated by the key) and the plaintext.
    pub async fn open_any_object(&self, object: &[u8]) -> Result<(StreamInfo, Vec<u8>), VaultError> {
        let declared = stream::peek(object).map_err(|source| VaultError::Segment {
            recording_id: "?".into(),
            source,
        })?;
        let (owner, row) =
            self.meta.key_by_id(&declared.key_id).await?.ok_or_else(|| {
                VaultError::Key(CryptoError::KeyUnavailable(format!("no data key {}", declared.key_id)))
            })?;
        if let Some(at_us) = row.destroyed_at_us {
            return Err(VaultError::KeyDestroyed {
                call_id: owner,
                class: row.key.class,
                at_us,
            });
        }
        let key_ref = crate::key_ref(&owner, &row.key.class);
        if declared.key_ref != key_ref {
            return Err(VaultError::Segment {
                recording_id: declared.artifact_id.clone(),
                source: CryptoError::Misplaced(format!(
                    "header names {:?}, key belongs to {key_ref:?}",
                    declared.key_ref
                )),
            });
        }
        let key = self.open_key(&owner, &row.key)?;
        let pt = stream::open(&key, object, &declared).map_err(|source| VaultError::Segment {
            recording_id: declared.artifact_id.clone(),
            source,
        })?;
        Ok((declared, pt))
    }
}

/// The artifact id of a dead letter's sealed original: its input position.
pub fn deadletter_artifact_id(partition: i32, offset: i64) -> String {
    format!("dl/{partition}/{offset}")
}
