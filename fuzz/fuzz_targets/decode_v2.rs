//! Any bytes as a format v2 object (`stream.rs`), opened with the fuzzing
//! key: never a panic; whatever opens is a genuine object, its plaintext is
//! `plaintext_len` bytes, and random access agrees with the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    opptak_fuzz::check_v2_object(data, &opptak_fuzz::v2_info());
});
