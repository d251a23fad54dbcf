//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) codecs.
//!
//! hound cannot read or write G.711 WAV (ruuda/hound#78), so the codec lives here.
//! The decoders are 256-entry tables built at compile time from the reference
//! algorithm (Sun Microsystems' public-domain `g711.c`, which implements the
//! ITU tables); `tests/g711_tables.rs` checks every entry against an
//! independent reference table.

const BIAS: i32 = 0x84;
const SEG_MASK: u8 = 0x70;
const QUANT_MASK: u8 = 0x0f;

const fn ulaw_decode_one(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & QUANT_MASK) as i32) << 3) + BIAS;
    t <<= ((u & SEG_MASK) >> 4) as i32;
    if u & 0x80 != 0 {
        (BIAS - t) as i16
    } else {
        (t - BIAS) as i16
    }
}

const fn alaw_decode_one(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & QUANT_MASK) as i32) << 4;
    let seg = ((a & SEG_MASK) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_decode_one(i as u8)
        } else {
            ulaw_decode_one(i as u8)
        };
        i += 1;
    }
    table
}

/// µ-law code → 16-bit linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build_table(false);
/// A-law code → 16-bit linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build_table(true);

/// Decodes one µ-law byte.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes a 16-bit linear sample as µ-law (used by the load generator and samples).
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(8159) + (BIAS >> 2);
    let seg = segment(pcm, &SEG_UEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let u = ((seg as u8) << 4) | (((pcm >> (seg + 1)) & 0xF) as u8);
    u ^ mask
}

/// Encodes a 16-bit linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let a = ((seg as u8) << 4) | (((pcm >> shift) as u8) & QUANT_MASK);
    a ^ mask
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn well_known_points_of_the_itu_tables() {
        // G.711 Table 2a/2b end points and the two zero codes of µ-law.
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn encode_inverts_decode_for_every_code() {
        for code in 0..=255u8 {
            let u = ulaw_encode(ulaw_decode(code));
            // 0x7F and 0xFF both decode to 0; the encoder picks +0.
            if code != 0x7F {
                assert_eq!(u, code, "µ-law code {code:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law code {code:#04x}");
        }
    }

    #[test]
    fn encode_is_monotonic_in_decoded_value() {
        let mut last = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let d = ulaw_decode(ulaw_encode(s));
            assert!(d >= last, "µ-law not monotonic at {s}");
            last = d;
        }
        let mut last = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let d = alaw_decode(alaw_encode(s));
            assert!(d >= last, "A-law not monotonic at {s}");
            last = d;
        }
    }
}
