//! The call page's player: the `<audio>` element with its accessible name,
//! the two channels drawn from the stored audio (an SVG of each channel's
//! loudness, [`envelope_svg`]), the controls the page's script reveals
//! (±5 s, speeds, keyboard shortcuts; `static/player.js`), and the
//! transcript whose times seek the recording. Without JavaScript each time
//! is a link to the recording with a media fragment (`audio#t=12.30`), and
//! the browser's own controls remain.

use super::{cat, format, Lang};
use maud::{html, Markup};
use opptak_domain::model::{CallId, ChannelRole};
use opptak_ki::transcribe::TranscriptSegment;
use opptak_vault::{Vault, VaultError, Which};

/// Columns of the loudness drawing: enough to see turns, cheap to compute.
pub(crate) const BINS: usize = 300;

/// The speeds the player offers.
const SPEEDS: [f64; 5] = [0.75, 1.0, 1.25, 1.5, 2.0];

/// The player: audio, the channels' drawing, the controls (hidden until the
/// script shows them) and the shortcut list.
pub(crate) fn player(lang: Lang, call_id: &CallId, call: &opptak_store::meta::CallRecord) -> Markup {
    let stereo = call.facts.format.channels() == 2;
    let alt = if stereo {
        cat::review::ENVELOPE_ALT
    } else {
        cat::review::ENVELOPE_ALT_MONO
    };
    html! {
        section.player aria-labelledby="player-h" {
            h2 #player-h { (lang.m(cat::review::RECORDING)) }
            audio #player controls preload="metadata" aria-label=(lang.m(cat::review::PLAYER_LABEL))
                src={ "/calls/" (call_id) "/audio" } {
                (lang.m(cat::review::YOUR_BROWSER_CANNOT_PLAY_AUDIO))
            }
            img.envelope src={ "/calls/" (call_id) "/envelope.svg" } alt=(lang.m(alt));
            @if stereo { p.muted { small { (lang.m(cat::review::ENVELOPE_LEGEND)) } } }
            div.player-controls hidden {
                button type="button" data-skip="-5" { (lang.m(cat::review::BACK_5)) }
                button type="button" data-skip="5" { (lang.m(cat::review::FORWARD_5)) }
                span role="group" aria-label=(lang.m(cat::review::SPEED)) {
                    (lang.m(cat::review::SPEED)) ": "
                    @for s in SPEEDS {
                        button type="button" data-rate=(s) aria-pressed=(if s == 1.0 { "true" } else { "false" }) {
                            (speed(lang, s))
                        }
                        " "
                    }
                }
            }
            div.shortcuts hidden {
                h3 { (lang.m(cat::review::SHORTCUTS)) }
                ul {
                    li { kbd { "k" } " / " kbd { (lang.m(cat::review::KEY_SPACE)) } ": " (lang.m(cat::review::KEY_PLAY)) }
                    li { kbd { "j" } ": " (lang.m(cat::review::KEY_BACK)) }
                    li { kbd { "l" } ": " (lang.m(cat::review::KEY_FORWARD)) }
                    li { kbd { "[" } ": " (lang.m(cat::review::KEY_SLOWER)) }
                    li { kbd { "]" } ": " (lang.m(cat::review::KEY_FASTER)) }
                }
                p.muted { (lang.m(cat::review::KEYS_NOT_IN_FIELDS)) }
            }
        }
    }
}

/// `0,75×` / `0.75×`.
fn speed(lang: Lang, s: f64) -> String {
    let decimals = if s.fract() == 0.0 {
        0
    } else if (s * 10.0).fract() == 0.0 {
        1
    } else {
        2
    };
    format!("{}×", format::number(lang, s, decimals))
}

/// The transcript as a table; each line's time seeks the recording.
pub(crate) fn transcript(lang: Lang, call_id: &CallId, segs: &[TranscriptSegment]) -> Markup {
    html! {
        table.transcript aria-labelledby="transcript-h" {
            thead { tr {
                th scope="col" { (lang.m(cat::review::TIME)) }
                th scope="col" { (lang.m(cat::review::SPEAKER)) }
                th scope="col" { (lang.m(cat::review::TEXT)) }
            } }
            tbody {
                @for s in segs {
                    @let at = format::clock(f64::from(s.start_s));
                    @let t = fragment_time(s.start_s);
                    tr class=(s.speaker) data-start=(t) data-end=(fragment_time(s.end_s)) {
                        td { a.seek href={ "/calls/" (call_id) "/audio#t=" (t) } data-t=(t)
                            aria-label=(lang.f(cat::review::PLAY_FROM, &[("t", &at)])) { (at) } }
                        td { (speaker(lang, &s.speaker)) }
                        td { (s.text) }
                    }
                }
            }
        }
    }
}

/// Seconds as a media fragment writes them (`12.30`: a URL, not page text).
fn fragment_time(s: f32) -> String {
    let centis = (f64::from(s.max(0.0)) * 100.0).round() as u64;
    std::format!("{}.{:02}", centis / 100, centis % 100)
}

fn speaker(lang: Lang, s: &str) -> &'static str {
    lang.m(match s {
        "agent" => cat::review::ADVISOR_2,
        "customer" => cat::review::CUSTOMER,
        _ => cat::review::BOTH_SPEAKERS,
    })
}

/// Frames decrypted per read: a window the size of the audio endpoint's.
const WINDOW_FRAMES: u64 = 1 << 19;

/// Each channel's loudness (RMS of PCM16, 0..=1) in [`BINS`] columns, in
/// the format's channel order: the recording read once, a window at a time
/// (an hour of audio is never held whole), each segment decrypted once.
/// (Sampling a second per column instead is no cheaper: a recording not yet
/// compacted has segments of up to 1 MiB, a minute of audio, so each
/// sample would decrypt a whole segment again. Measured by
/// `tests/it/call_page.rs`, `the_envelope_of_an_hour_long_call`.)
pub(crate) async fn loudness(
    vault: &Vault,
    call_id: &CallId,
    which: Which,
    channels: usize,
    frames: u64,
) -> Result<Vec<Vec<f32>>, VaultError> {
    let mut acc = Loudness::new(channels, frames);
    let mut first = 0;
    while first < frames {
        let w = vault
            .read_frames(call_id, which, first, WINDOW_FRAMES.min(frames - first))
            .await?;
        if w.frames == 0 {
            break;
        }
        acc.add(first, &w.pcm);
        first += w.frames;
    }
    Ok(acc.levels())
}

/// Sums of squares per channel and column of a `frames`-long recording.
struct Loudness {
    channels: usize,
    frames: u64,
    /// Integer: an i16 squared fits 2^30, and a column of an hour at 48 kHz
    /// (~576,000 frames) sums to under 2^50.
    sums: Vec<Vec<i64>>,
    counts: Vec<u64>,
}

impl Loudness {
    fn new(channels: usize, frames: u64) -> Self {
        Self {
            channels,
            frames,
            sums: vec![vec![0; BINS]; channels],
            counts: vec![0; BINS],
        }
    }

    /// Interleaved PCM16 from frame `first` on.
    fn add(&mut self, first: u64, pcm: &[u8]) {
        let pcm: Vec<&[u8]> = pcm.chunks_exact(2 * self.channels).collect();
        let (bins, total) = (BINS as u128, u128::from(self.frames.max(1)));
        let mut i = 0;
        // One column's run of frames at a time: frame g is in g·BINS/frames.
        while i < pcm.len() {
            let g = u128::from(first) + i as u128;
            let bin = ((g * bins / total) as usize).min(BINS - 1);
            let next = ((bin as u128 + 1) * total).div_ceil(bins);
            let upto = pcm.len().min((next - u128::from(first)) as usize).max(i + 1);
            for frame in &pcm[i..upto] {
                for (c, sample) in frame.chunks_exact(2).enumerate() {
                    let v = i64::from(i16::from_le_bytes([sample[0], sample[1]]));
                    self.sums[c][bin] += v * v;
                }
            }
            self.counts[bin] += (upto - i) as u64;
            i = upto;
        }
    }

    /// RMS per channel and column, 0..=1.
    fn levels(self) -> Vec<Vec<f32>> {
        let counts = self.counts;
        self.sums
            .into_iter()
            .map(|ch| {
                ch.iter()
                    .zip(&counts)
                    .map(|(s, n)| {
                        if *n == 0 {
                            0.0
                        } else {
                            ((*s as f64 / *n as f64).sqrt() / 32768.0) as f32
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// The loudness as an SVG: one band per channel (the agent's on top, then
/// the customer's), each column a bar around the band's middle, scaled to
/// the loudest column of the call so a quiet line still shows its turns.
pub(crate) fn envelope_svg(levels: &[Vec<f32>], roles: &[ChannelRole]) -> String {
    const BAND: f32 = 40.0;
    let peak = levels.iter().flatten().fold(0f32, |a, b| a.max(*b)).max(1e-4);
    let mut order: Vec<usize> = (0..levels.len()).collect();
    order.sort_by_key(|&i| match roles.get(i) {
        Some(ChannelRole::Agent) => 0,
        Some(ChannelRole::Customer) => 1,
        _ => 2,
    });
    let height = BAND * levels.len() as f32 + 4.0 * (levels.len().saturating_sub(1)) as f32;
    let mut svg = std::format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {BINS} {height}\" preserveAspectRatio=\"none\">"
    );
    for (row, &c) in order.iter().enumerate() {
        let mid = row as f32 * (BAND + 4.0) + BAND / 2.0;
        let color = match roles.get(c) {
            Some(ChannelRole::Customer) => "#a33",
            _ => "#124",
        };
        svg.push_str(&std::format!(
            "<line x1=\"0\" x2=\"{BINS}\" y1=\"{mid}\" y2=\"{mid}\" stroke=\"#bbb\" stroke-width=\"0.5\"/><path stroke=\"{color}\" stroke-width=\"1\" d=\""
        ));
        for (i, v) in levels[c].iter().enumerate() {
            // Square root: speech is quieter than its peaks; this keeps the
            // softer turns visible.
            let h = ((v / peak).sqrt() * (BAND / 2.0 - 1.0)).max(0.25);
            svg.push_str(&std::format!("M{}.5 {:.1}V{:.1}", i, mid - h, mid + h));
        }
        svg.push_str("\"/>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_puts_the_agent_on_top() {
        let loud = vec![0.5f32; BINS];
        let silent = vec![0f32; BINS];
        // Customer first in the format: still drawn below the agent.
        let svg = envelope_svg(&[loud.clone(), silent], &[ChannelRole::Customer, ChannelRole::Agent]);
        let first = svg.find("#124").expect("the agent band");
        let second = svg.find("#a33").expect("the customer band");
        assert!(first < second, "agent's band first: {svg}");
        assert_eq!(svg.matches("<path").count(), 2);
        // The loud channel's bars reach the band's edges, the silent one's barely.
        assert!(svg.contains("M0.5 45.0V83.0"), "{}", &svg[..400]);
        assert!(svg.contains("M0.5 19.8V20.2"), "{}", &svg[..400]);
    }

    #[test]
    fn loudness_is_the_rms_of_each_column() {
        // 600 stereo frames: the agent loud in the first half, the customer
        // in the second; two frames per column.
        let mut pcm = Vec::new();
        for f in 0..600 {
            let (a, c): (i16, i16) = if f < 300 { (16384, 0) } else { (0, -16384) };
            pcm.extend_from_slice(&a.to_le_bytes());
            pcm.extend_from_slice(&c.to_le_bytes());
        }
        let mut l = Loudness::new(2, 600);
        l.add(0, &pcm[..400]); // in two reads, split mid-column
        l.add(100, &pcm[400..]);
        let levels = l.levels();
        assert_eq!(levels[0][0], 0.5);
        assert_eq!(levels[0][149], 0.5);
        assert_eq!(levels[0][150], 0.0);
        assert_eq!(levels[1][0], 0.0);
        assert_eq!(levels[1][299], 0.5);
    }

    #[test]
    fn speeds_and_fragments() {
        assert_eq!(speed(Lang::Nb, 0.75), "0,75×");
        assert_eq!(speed(Lang::En, 1.5), "1.5×");
        assert_eq!(speed(Lang::Nb, 2.0), "2×");
        assert_eq!(fragment_time(12.345), "12.35");
        assert_eq!(fragment_time(0.0), "0.00");
    }
}
