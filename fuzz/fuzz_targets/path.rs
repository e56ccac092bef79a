//! Fuzz target `path`: the property is `tokengate_fuzz::path` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::path(data));
