//! Structure-aware: the input is a script of edits applied to a genuine
//! object (a v2 object split into header and segments, or a v1 recording
//! split into segments). Random bytes almost never get past AES-GCM; edits of
//! valid objects do, so the checks after decryption (genuine only, random
//! access, stream order) see inputs that are nearly right.
//!
//! Script: one byte picks the base object, then edits until the input ends:
//!
//! | op % 10 | edit | arguments |
//! |---|---|---|
//! | 0 | flip a bit | piece, bit (u16) |
//! | 1 | set a byte | piece, offset (u16), value |
//! | 2 | truncate a piece | piece, length (u16) |
//! | 3 | remove a piece | piece |
//! | 4 | duplicate a piece | piece |
//! | 5 | swap two pieces | piece, piece |
//! | 6 | move a piece | from, to |
//! | 7 | replace a piece by one of another base | piece, base, piece |
//! | 8 | insert a piece of another base | position, base, piece |
//! | 9 | insert bytes | piece, offset (u16), count (0..=32), bytes |
//!
//! Offsets and indexes wrap around what they index; missing bytes read as 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opptak_fuzz::{genuine, Format, Genuine};

/// Edits per input, so that a long input stays fast.
const MAX_EDITS: usize = 64;

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> usize {
        u16::from_be_bytes([self.u8(), self.u8()]) as usize
    }
    /// An index into `0..n` (n > 0).
    fn pick(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
}

fn edit(s: &mut Script<'_>, pieces: &mut Vec<Vec<u8>>, g: &Genuine) {
    let op = s.u8() % 10;
    let n = pieces.len();
    match op {
        8 => {
            let at = s.pick(n + 1);
            let other = &g.bases[s.pick(g.bases.len())].pieces;
            let piece = other[s.pick(other.len())].clone();
            pieces.insert(at, piece);
            return;
        }
        _ if n == 0 => return,
        _ => {}
    }
    let p = s.pick(n);
    match op {
        0 => {
            if !pieces[p].is_empty() {
                let bit = s.u16() % (pieces[p].len() * 8);
                pieces[p][bit / 8] ^= 1 << (bit % 8);
            }
        }
        1 => {
            if !pieces[p].is_empty() {
                let at = s.u16() % pieces[p].len();
                pieces[p][at] = s.u8();
            }
        }
        2 => {
            let len = s.u16() % (pieces[p].len() + 1);
            pieces[p].truncate(len);
        }
        3 => {
            pieces.remove(p);
        }
        4 => {
            let copy = pieces[p].clone();
            pieces.insert(p + 1, copy);
        }
        5 => {
            let q = s.pick(n);
            pieces.swap(p, q);
        }
        6 => {
            let piece = pieces.remove(p);
            let to = s.pick(n);
            pieces.insert(to, piece);
        }
        7 => {
            let other = &g.bases[s.pick(g.bases.len())].pieces;
            pieces[p] = other[s.pick(other.len())].clone();
        }
        _ => {
            let at = s.u16() % (pieces[p].len() + 1);
            let count = s.pick(33);
            let bytes: Vec<u8> = (0..count).map(|_| s.u8()).collect();
            pieces[p].splice(at..at, bytes);
        }
    }
}

fuzz_target!(|script: &[u8]| {
    let g = genuine();
    let mut s = Script(script);
    let base = &g.bases[s.pick(g.bases.len())];
    let mut pieces = base.pieces.clone();
    for _ in 0..MAX_EDITS {
        if s.0.is_empty() {
            break;
        }
        edit(&mut s, &mut pieces, g);
    }
    match &base.format {
        Format::V2(info) => opptak_fuzz::check_v2_object(&pieces.concat(), info),
        Format::V1(kind, recording_id) => {
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            opptak_fuzz::check_v1(&refs, *kind, recording_id);
        }
    }
});
