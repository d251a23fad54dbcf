//! Energy-based voice activity detection: cuts one channel of a call into
//! utterances for speech recognition. Agent and customer are separate
//! channels, so the channel is the speaker.
//!
//! The audio is taken in 20 ms frames. A frame is speech when its RMS level
//! is well above the channel's noise floor (tracked as a slow minimum) and
//! above an absolute floor. An utterance starts at the first speech frame
//! (minus a little lead-in), and ends after `hangover` of silence, or when it
//! reaches `max_utterance` (cut at the quietest recent frame). Utterances
//! shorter than `min_speech` of speech are dropped as clicks. Streaming:
//! feed samples as they arrive; finished utterances come out as soon as
//! their end is known.

/// Tuning, in milliseconds where it is a duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadConfig {
    pub frame_ms: u32,
    /// Silence that ends an utterance.
    pub hangover_ms: u32,
    /// Speech needed for an utterance to count.
    pub min_speech_ms: u32,
    /// Longest utterance sent in one piece.
    pub max_utterance_ms: u32,
    /// Audio kept before the first speech frame.
    pub lead_in_ms: u32,
    /// Speech when the level is this many dB above the noise floor …
    pub threshold_db: f32,
    /// … and above this absolute level (dBFS).
    pub floor_dbfs: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            frame_ms: 20,
            hangover_ms: 500,
            min_speech_ms: 200,
            max_utterance_ms: 15_000,
            lead_in_ms: 100,
            threshold_db: 12.0,
            floor_dbfs: -50.0,
        }
    }
}

/// A stretch of one channel, in samples from the start of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// Streaming detector for one channel at one sample rate.
#[derive(Clone, Debug)]
pub struct Vad {
    cfg: VadConfig,
    frame: usize,
    /// Samples of the frame being filled.
    pending: Vec<i16>,
    /// Position (in samples) of the next frame's first sample.
    pos: u64,
    noise_db: f32,
    /// Open utterance: start, last speech frame end, speech frames, frame levels since start.
    open: Option<Open>,
}

#[derive(Clone, Debug)]
struct Open {
    start: u64,
    last_speech_end: u64,
    speech_frames: u32,
    levels: Vec<(u64, f32)>,
}

impl Vad {
    pub fn new(sample_rate_hz: u32, cfg: VadConfig) -> Self {
        let frame = (sample_rate_hz as usize * cfg.frame_ms as usize / 1000).max(1);
        Self {
            cfg,
            frame,
            pending: Vec::with_capacity(frame),
            pos: 0,
            noise_db: -60.0,
            open: None,
        }
    }

    fn ms_to_samples(&self, ms: u32) -> u64 {
        (self.frame as u64 * ms as u64) / self.cfg.frame_ms.max(1) as u64
    }

    /// Adds samples; returns the utterances that ended.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Span> {
        let mut out = Vec::new();
        for &s in samples {
            self.pending.push(s);
            if self.pending.len() == self.frame {
                if let Some(span) = self.frame_done() {
                    out.push(span);
                }
                self.pending.clear();
            }
        }
        out
    }

    /// The earliest sample a span reported later can start at: audio before
    /// it can be let go by a caller that buffers the channel.
    pub fn keep_from(&self) -> u64 {
        match &self.open {
            Some(open) => open.start,
            None => self.pos.saturating_sub(self.ms_to_samples(self.cfg.lead_in_ms)),
        }
    }

    /// The end of the call: closes an open utterance.
    pub fn finish(&mut self) -> Option<Span> {
        let open = self.open.take()?;
        self.close(open, self.pos)
    }

    fn frame_done(&mut self) -> Option<Span> {
        let start = self.pos;
        self.pos += self.frame as u64;
        let level = level_dbfs(&self.pending);
        let speech = level > self.cfg.floor_dbfs && level > self.noise_db + self.cfg.threshold_db;
        // The noise floor follows quiet frames quickly and loud ones slowly.
        if !speech {
            self.noise_db = if level < self.noise_db {
                level.max(-90.0)
            } else {
                self.noise_db + (level - self.noise_db) * 0.05
            };
        }
        let end = self.pos;
        let lead = self.ms_to_samples(self.cfg.lead_in_ms);
        let hangover = self.ms_to_samples(self.cfg.hangover_ms);
        let max_len = self.ms_to_samples(self.cfg.max_utterance_ms);
        let recent = self.ms_to_samples(1000);
        match (&mut self.open, speech) {
            (None, true) => {
                self.open = Some(Open {
                    start: start.saturating_sub(lead),
                    last_speech_end: end,
                    speech_frames: 1,
                    levels: vec![(end, level)],
                });
                None
            }
            (None, false) => None,
            (Some(open), _) => {
                open.levels.push((end, level));
                if speech {
                    open.last_speech_end = end;
                    open.speech_frames += 1;
                }
                let silent_for = end - open.last_speech_end;
                let length = end - open.start;
                if silent_for >= hangover {
                    let open = self.open.take()?;
                    let cut = open.last_speech_end + lead;
                    self.close(open, cut.min(end))
                } else if length >= max_len {
                    // Too long: cut at the quietest frame of the last second.
                    let cut = open
                        .levels
                        .iter()
                        .filter(|(e, _)| *e + recent >= end)
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(e, _)| *e)
                        .unwrap_or(end);
                    let rest: Vec<(u64, f32)> = open.levels.iter().copied().filter(|(e, _)| *e > cut).collect();
                    let mut done = self.open.take()?;
                    done.levels.retain(|(e, _)| *e <= cut);
                    if !rest.is_empty() {
                        self.open = Some(Open {
                            start: cut,
                            last_speech_end: end,
                            speech_frames: rest.len() as u32,
                            levels: rest,
                        });
                    }
                    self.close(done, cut)
                } else {
                    None
                }
            }
        }
    }

    fn close(&self, open: Open, end: u64) -> Option<Span> {
        let speech_ms = open.speech_frames as u64 * self.cfg.frame_ms as u64;
        (speech_ms >= self.cfg.min_speech_ms as u64 && end > open.start).then_some(Span { start: open.start, end })
    }
}

/// RMS level of PCM16 samples in dBFS (−90 for silence).
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -90.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        -90.0
    } else {
        (20.0 * rms.log10()).max(-90.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: u32, amp: f64) -> Vec<i16> {
        (0..8 * ms as usize)
            .map(|i| (amp * (i as f64 * 0.3).sin() * 32767.0) as i16)
            .collect()
    }

    fn noise(ms: u32, amp: i16) -> Vec<i16> {
        (0..8 * ms as usize)
            .map(|i| ((i as i64 * 7919 % 23) as i16 - 11) * amp / 11)
            .collect()
    }

    #[test]
    fn finds_utterances_between_pauses() {
        let mut vad = Vad::new(8000, VadConfig::default());
        let mut audio = noise(1000, 20);
        audio.extend(tone(1200, 0.3));
        audio.extend(noise(1500, 20));
        audio.extend(tone(800, 0.3));
        audio.extend(noise(300, 20));
        let mut spans = vad.push(&audio);
        spans.extend(vad.finish());
        assert_eq!(spans.len(), 2, "{spans:?}");
        // First: 1.0 s to 2.2 s (with lead-in before and after).
        assert!(spans[0].start >= 7_000 && spans[0].start <= 8_000, "{spans:?}");
        assert!(spans[0].end >= 17_600 && spans[0].end <= 18_600, "{spans:?}");
        assert!(spans[1].start >= 28_800 && spans[1].start <= 29_600, "{spans:?}");
    }

    #[test]
    fn clicks_are_dropped_and_long_speech_is_cut() {
        let mut vad = Vad::new(8000, VadConfig::default());
        let mut audio = noise(500, 20);
        audio.extend(tone(60, 0.5));
        audio.extend(noise(1000, 20));
        let spans = vad.push(&audio);
        assert!(spans.is_empty() && vad.finish().is_none());

        let cfg = VadConfig {
            max_utterance_ms: 3_000,
            ..VadConfig::default()
        };
        let mut vad = Vad::new(8000, cfg);
        let mut spans = vad.push(&tone(7_000, 0.3));
        spans.extend(vad.finish());
        assert!(spans.len() >= 2, "{spans:?}");
        assert!(spans.iter().all(|s| s.end - s.start <= 8 * 3_000 + 160), "{spans:?}");
        // Contiguous: nothing of the speech is lost between pieces.
        for w in spans.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{spans:?}");
        }
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 160]), -90.0);
        assert!((level_dbfs(&[32767; 160]) - 0.0).abs() < 0.01);
        assert!((level_dbfs(&[3277; 160]) + 20.0).abs() < 0.1);
    }
}
