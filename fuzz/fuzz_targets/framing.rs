//! Fuzz target `framing`: the property is `tokengate_fuzz::framing` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::framing(data));
