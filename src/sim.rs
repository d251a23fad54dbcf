//! A telephony simulator: what the bank's telephony system would send.
//!
//! Used by `opptak demo`, the load generator and the tests. It turns audio
//! (sample WAV files, or synthetic signals) into the contract's events:
//! `CallStarted`, `AudioChunk`s, an optional `KiNotice` and `KiOptOut`,
//! `CallEnded`.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use opptak_domain::g711;
use opptak_domain::model::{AudioFormat, ChannelRole, Codec};
use opptak_proto::v1::{self, telephony_event::Event};
use opptak_proto::Message;
use rand::{Rng, SeedableRng};

/// One simulated call: its start facts and its audio as sent on the wire.
#[derive(Clone, Debug)]
pub struct SimCall {
    pub call_id: String,
    pub started: v1::CallStarted,
    pub format: AudioFormat,
    /// Wire-encoded interleaved frames.
    pub wire: Vec<u8>,
    pub opt_out_at_ms: Option<u64>,
    /// When the IVR's KI announcement ends (ms into the call): a `KiNotice`
    /// goes out with this offset, after the audio up to it.
    pub ki_notice_at_ms: Option<u64>,
    /// Set by [`SimCall::seal_with`]: chunks go out sealed under this key.
    pub telephony_key: Option<opptak_crypto::DataKey>,
}

pub fn codec_to_proto(c: Codec) -> v1::Codec {
    match c {
        Codec::Pcmu => v1::Codec::Pcmu,
        Codec::Pcma => v1::Codec::Pcma,
        Codec::L16 => v1::Codec::L16,
    }
}

fn roles_to_proto(roles: &[ChannelRole]) -> Vec<i32> {
    roles
        .iter()
        .map(|r| match r {
            ChannelRole::Agent => v1::ChannelRole::Agent as i32,
            ChannelRole::Customer => v1::ChannelRole::Customer as i32,
            ChannelRole::Mixed => v1::ChannelRole::Mixed as i32,
        })
        .collect()
}

pub fn now_timestamp() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn duration_ms(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn duration_us(us: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (us / 1_000_000) as i64,
        nanos: ((us % 1_000_000) * 1000) as i32,
    }
}

impl SimCall {
    pub fn new(call_id: &str, format: AudioFormat, wire: Vec<u8>) -> Self {
        let started = v1::CallStarted {
            started_at: Some(now_timestamp()),
            direction: v1::Direction::Inbound as i32,
            customer_ref: format!("cust-{:08x}", fxhash(call_id.as_bytes())),
            advisor_id: "adv-1001".into(),
            desk: v1::Desk::CustomerCenter as i32,
            service_category: v1::ServiceCategory::General as i32,
            ki_enabled: false,
            customer_informed: false,
            audio_format: Some(v1::AudioFormat {
                codec: codec_to_proto(format.codec()) as i32,
                sample_rate_hz: format.sample_rate_hz(),
                channels: format.channels() as u32,
                channel_roles: roles_to_proto(format.channel_roles()),
            }),
            telephony_key: None,
            ki_consent_renewed: false,
        };
        Self {
            call_id: call_id.to_owned(),
            started,
            format,
            wire,
            opt_out_at_ms: None,
            ki_notice_at_ms: None,
            telephony_key: None,
        }
    }

    /// Makes the simulated telephony system seal this call's chunks itself:
    /// a fresh data key, wrapped under the shared KEK of `shared` and sent in
    /// `CallStarted`.
    pub fn seal_with(&mut self, shared: &dyn opptak_crypto::KeyProvider) -> Result<(), opptak_crypto::CryptoError> {
        let key = opptak_crypto::DataKey::generate();
        let w = shared.wrap(&key, &opptak_crypto::chunk::key_context(&self.call_id))?;
        self.started.telephony_key = Some(v1::TelephonyKey {
            key_id: w.key_id,
            kek_id: w.kek_id,
            wrapped: w.sealed,
        });
        self.telephony_key = Some(key);
        Ok(())
    }

    /// A synthetic call: speech-like tones and noise, different per channel and seed.
    pub fn synthetic(call_id: &str, codec: Codec, channels: usize, seconds: f64, seed: u64) -> Self {
        let roles = if channels == 2 {
            vec![ChannelRole::Agent, ChannelRole::Customer]
        } else {
            vec![ChannelRole::Mixed]
        };
        let format = AudioFormat::new(codec, 8000, roles).expect("valid synthetic format");
        let frames = (seconds * 8000.0) as usize;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f0 = [rng.gen_range(120.0..300.0), rng.gen_range(120.0..300.0)];
        let mut pcm = Vec::with_capacity(frames * channels);
        for n in 0..frames {
            for (ch, f) in f0.iter().enumerate().take(channels) {
                let t = n as f64 / 8000.0;
                // Each party "talks" in alternating 1.5 s turns.
                let talking = ((t / 1.5) as usize + ch).is_multiple_of(2);
                let amp = if talking { 6000.0 } else { 150.0 };
                let s = amp * (2.0 * std::f64::consts::PI * f * t).sin()
                    + 0.3 * amp * (2.0 * std::f64::consts::PI * 2.7 * f * t).sin()
                    + rng.gen_range(-200.0..200.0);
                pcm.push(s.clamp(-32768.0, 32767.0) as i16);
            }
        }
        Self::new(call_id, format.clone(), encode_pcm(codec, &pcm))
    }

    pub fn frames(&self) -> usize {
        self.wire.len() / self.format.wire_frame_bytes()
    }

    /// What the recording must decode to: interleaved PCM16 LE.
    pub fn expected_pcm(&self) -> Vec<u8> {
        self.format.decode(&self.wire).expect("whole frames")
    }

    /// The IVR's KI announcement, complete `at_ms` into the call.
    pub fn ki_notice(&self, at_ms: u64) -> v1::TelephonyEvent {
        self.event(Event::KiNotice(v1::KiNotice {
            at: Some(now_timestamp()),
            offset: Some(duration_us(at_ms * 1000)),
            method: v1::KiNoticeMethod::IvrAnnouncement as i32,
            announcement_id: "ivr-ki-notice-1".into(),
            by: String::new(),
        }))
    }

    fn event(&self, e: Event) -> v1::TelephonyEvent {
        v1::TelephonyEvent {
            call_id: self.call_id.clone(),
            event: Some(e),
        }
    }

    /// The call's events in order, with chunks of `chunk_ms` milliseconds.
    pub fn events(&self, chunk_ms: u32) -> Vec<v1::TelephonyEvent> {
        let rate = self.format.sample_rate_hz() as usize;
        let frames_per_chunk = (rate * chunk_ms as usize / 1000).max(1);
        let fb = self.format.wire_frame_bytes();
        let mut out = vec![self.event(Event::CallStarted(self.started.clone()))];
        let mut seq = 0u64;
        let mut opted_out = false;
        let mut noticed = false;
        for (i, chunk) in self.wire.chunks(frames_per_chunk * fb).enumerate() {
            let offset_us = (i * frames_per_chunk) as u64 * 1_000_000 / rate as u64;
            if let Some(at) = self.ki_notice_at_ms {
                if !noticed && offset_us >= at * 1000 {
                    noticed = true;
                    out.push(self.ki_notice(at));
                }
            }
            if let Some(at) = self.opt_out_at_ms {
                if !opted_out && offset_us >= at * 1000 {
                    opted_out = true;
                    out.push(self.event(Event::KiOptOut(v1::KiOptOut {
                        requested_by: self.started.advisor_id.clone(),
                        at: Some(now_timestamp()),
                        offset: Some(duration_us(at * 1000)),
                    })));
                }
            }
            let frames = chunk.len() / fb;
            let (payload, sealed_payload) = match &self.telephony_key {
                Some(key) => (
                    Vec::new(),
                    opptak_crypto::chunk::seal(key, &self.call_id, seq, chunk).expect("sealing a chunk"),
                ),
                None => (chunk.to_vec(), Vec::new()),
            };
            out.push(self.event(Event::AudioChunk(v1::AudioChunk {
                sequence: seq,
                payload,
                duration: Some(duration_us(frames as u64 * 1_000_000 / rate as u64)),
                offset: Some(duration_us(offset_us)),
                sealed_payload,
            })));
            seq += 1;
        }
        out.push(self.event(Event::CallEnded(v1::CallEnded {
            ended_at: Some(now_timestamp()),
            reason: v1::EndReason::HangupCustomer as i32,
            last_sequence: seq.saturating_sub(1),
            no_audio: seq == 0,
        })));
        out
    }
}

/// Key and value as they go on the input topic.
pub fn encode(ev: &v1::TelephonyEvent) -> (Bytes, Bytes) {
    (Bytes::from(ev.call_id.clone()), Bytes::from(ev.encode_to_vec()))
}

pub fn encode_pcm(codec: Codec, pcm: &[i16]) -> Vec<u8> {
    match codec {
        Codec::Pcmu => pcm.iter().map(|&s| g711::ulaw_encode(s)).collect(),
        Codec::Pcma => pcm.iter().map(|&s| g711::alaw_encode(s)).collect(),
        Codec::L16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
    }
}

fn fxhash(b: &[u8]) -> u32 {
    b.iter()
        .fold(0x811c9dc5u32, |h, &x| (h ^ x as u32).wrapping_mul(0x01000193))
}

/// Audio read from a WAV file, still in its wire encoding.
pub struct WavAudio {
    pub codec: Codec,
    pub sample_rate_hz: u32,
    pub channels: u16,
    pub data: Vec<u8>,
}

/// Reads PCM16 (tag 1), A-law (tag 6) and µ-law (tag 7) WAV files; hound
/// reads only the first (ruuda/hound#78), telephony samples are the others.
pub fn read_wav(bytes: &[u8]) -> Result<WavAudio> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("not a RIFF/WAVE file");
    }
    let mut at = 12;
    let mut fmt = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into()?) as usize;
        let body = bytes
            .get(at + 8..at + 8 + len)
            .context("chunk runs past the end of the file")?;
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    bail!("fmt chunk too short");
                }
                let tag = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes(body[4..8].try_into()?);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                let codec = match (tag, bits) {
                    (1, 16) => Codec::L16,
                    (6, 8) => Codec::Pcma,
                    (7, 8) => Codec::Pcmu,
                    // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID's first two bytes are the tag.
                    (0xFFFE, _) if body.len() >= 26 => match (u16::from_le_bytes([body[24], body[25]]), bits) {
                        (1, 16) => Codec::L16,
                        (6, 8) => Codec::Pcma,
                        (7, 8) => Codec::Pcmu,
                        (t, b) => bail!("unsupported WAV sub-format {t} with {b} bits"),
                    },
                    (t, b) => bail!("unsupported WAV format tag {t} with {b} bits"),
                };
                fmt = Some((codec, rate, channels));
            }
            b"data" => {
                let (codec, sample_rate_hz, channels) = fmt.context("data chunk before fmt chunk")?;
                return Ok(WavAudio {
                    codec,
                    sample_rate_hz,
                    channels,
                    data: body.to_vec(),
                });
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    bail!("no data chunk")
}

/// Shuffles events of one call within a window, keeping CallStarted first and
/// CallEnded last, and duplicates some chunks: what a sloppy sender does.
pub fn shuffle_and_duplicate(events: &mut Vec<v1::TelephonyEvent>, window: usize, dup_rate: f64, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = events.len();
    if n < 3 {
        return;
    }
    let mut middle: Vec<(f64, v1::TelephonyEvent)> = events
        .drain(1..n - 1)
        .enumerate()
        .map(|(i, e)| (i as f64 + rng.gen_range(0.0..window as f64), e))
        .collect();
    middle.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    for (_, e) in middle {
        let dup = matches!(e.event, Some(Event::AudioChunk(_))) && rng.gen_bool(dup_rate);
        if dup {
            out.push(e.clone());
        }
        out.push(e);
    }
    let end = events.pop().expect("CallEnded");
    events.extend(out);
    events.push(end);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_cover_the_audio_exactly() {
        let call = SimCall::synthetic("c-1", Codec::Pcmu, 2, 1.05, 7);
        let evs = call.events(100);
        let mut wire = Vec::new();
        for e in &evs[1..evs.len() - 1] {
            if let Some(Event::AudioChunk(c)) = &e.event {
                wire.extend_from_slice(&c.payload);
            }
        }
        assert_eq!(wire, call.wire);
        assert_eq!(evs.len(), 2 + 11);
    }

    #[test]
    fn the_ki_notice_follows_the_audio_up_to_its_offset() {
        let mut call = SimCall::synthetic("c-1", Codec::Pcmu, 2, 1.05, 7);
        call.ki_notice_at_ms = Some(300);
        let evs = call.events(100);
        let at = evs
            .iter()
            .position(|e| matches!(e.event, Some(Event::KiNotice(_))))
            .unwrap();
        // CallStarted, chunks 0-2 (0-300 ms), then the notice.
        assert_eq!(at, 4);
        assert_eq!(evs.len(), 2 + 11 + 1);
    }

    #[test]
    fn wav_reader_refuses_garbage() {
        assert!(read_wav(b"RIFF....WAVEjunk").is_err());
        assert!(read_wav(b"").is_err());
    }
}
