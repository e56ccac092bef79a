//! Fuzz target `journal`: the property is `tokengate_fuzz::journal` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::journal(data));
