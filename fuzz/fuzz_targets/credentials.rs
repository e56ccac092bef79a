//! Fuzz target `credentials`: the property is `tokengate_fuzz::credentials` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::credentials(data));
