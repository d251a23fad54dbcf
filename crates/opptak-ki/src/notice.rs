//! The KI notice gate of the live path (issue 16, section 6): a KI call's
//! audio reaches the live worker, and so the recognizer, only from the
//! moment the customer was told that KI is used (the `KiNotice` offset, or 0
//! for a call started with `customer_informed`).
//!
//! Until the notice comes the call's audio is held here, at most
//! [`MAX_HELD_S`] of it; when the notice comes, what was held before its
//! offset is passed on as silence (so the worker's times stay true) and the
//! rest as it was. A notice that comes after more audio than that was held,
//! or no notice at all, leaves the call to the batch path, which cuts the
//! stored recording at the stored notice.

/// Seconds of audio held while a call waits for its notice.
pub(crate) const MAX_HELD_S: u64 = 120;

pub(crate) struct NoticeGate {
    channels: usize,
    /// The first frame KI may hear, once the notice came.
    from: Option<u64>,
    /// Frames admitted so far: the position of the next frame on the call's timeline.
    pos: u64,
    /// Interleaved PCM held while no notice, from frame 0.
    held: Vec<i16>,
    max_held_frames: u64,
    /// More than `max_held_frames` came before the notice: the hold was dropped.
    overflowed: bool,
}

impl NoticeGate {
    /// `from`: the first frame KI may hear if already known (a call started
    /// with `customer_informed`, or whose notice came before its start).
    pub(crate) fn new(channels: usize, from: Option<u64>, sample_rate_hz: u32) -> Self {
        Self {
            channels: channels.max(1),
            from,
            pos: 0,
            held: Vec::new(),
            max_held_frames: MAX_HELD_S * u64::from(sample_rate_hz),
            overflowed: false,
        }
    }

    /// Whether the customer was told: the call's audio passes.
    pub(crate) fn open(&self) -> bool {
        self.from.is_some()
    }

    /// Interleaved PCM in call order; returns what may go to the worker.
    pub(crate) fn admit(&mut self, pcm: Vec<i16>) -> Option<Vec<i16>> {
        let first = self.pos;
        self.pos += (pcm.len() / self.channels) as u64;
        match self.from {
            Some(from) => Some(self.silence_before(pcm, first, from)),
            None if self.overflowed => None,
            None => {
                self.held.extend(pcm);
                if self.pos > self.max_held_frames {
                    self.held = Vec::new();
                    self.overflowed = true;
                }
                None
            }
        }
    }

    /// The notice came: KI may hear the call from frame `from`. Returns the
    /// held audio to pass on, or why the live path cannot take the call.
    /// A second notice changes nothing (the first stays).
    pub(crate) fn notice(&mut self, from: u64) -> Result<Option<Vec<i16>>, String> {
        if self.from.is_some() {
            return Ok(None);
        }
        self.from = Some(from);
        if self.overflowed {
            return Err(format!(
                "the KI notice came after more than {MAX_HELD_S} s of audio: the batch path transcribes the call"
            ));
        }
        let held = std::mem::take(&mut self.held);
        Ok(Some(self.silence_before(held, 0, from)))
    }

    /// `pcm` starting at frame `first`, with every frame before `from` silent.
    fn silence_before(&self, mut pcm: Vec<i16>, first: u64, from: u64) -> Vec<i16> {
        let before = usize::try_from(from.saturating_sub(first))
            .unwrap_or(usize::MAX)
            .saturating_mul(self.channels)
            .min(pcm.len());
        pcm[..before].fill(0);
        pcm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_before_the_notice_passes() {
        let mut g = NoticeGate::new(2, None, 8000);
        assert!(!g.open());
        // Three frames (two channels) before the notice came: held.
        assert_eq!(g.admit(vec![1, 2, 3, 4, 5, 6]), None);
        // Complete at frame 2: frames 0 and 1 are silence, frame 2 passes.
        assert_eq!(g.notice(2), Ok(Some(vec![0, 0, 0, 0, 5, 6])));
        assert!(g.open());
        assert_eq!(g.admit(vec![7, 8]), Some(vec![7, 8]));
        // A second notice changes nothing.
        assert_eq!(g.notice(0), Ok(None));
    }

    #[test]
    fn a_notice_ahead_of_the_audio_silences_what_comes_before_it() {
        let mut g = NoticeGate::new(1, Some(3), 8000);
        assert_eq!(g.admit(vec![1, 2]), Some(vec![0, 0]));
        assert_eq!(g.admit(vec![3, 4, 5]), Some(vec![0, 4, 5]));
    }

    #[test]
    fn a_late_notice_leaves_the_call_to_the_batch_path() {
        let mut g = NoticeGate::new(1, None, 1);
        assert_eq!(g.admit(vec![1; MAX_HELD_S as usize + 1]), None);
        assert!(g.notice(0).is_err());
        // Nothing held was kept.
        assert!(g.held.is_empty());
    }
}
