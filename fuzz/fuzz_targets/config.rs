//! Fuzz target `config`: the property is `tokengate_fuzz::config` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::config(data));
