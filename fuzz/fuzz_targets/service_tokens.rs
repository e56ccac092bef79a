//! Fuzz target `service_tokens`: the property is `tokengate_fuzz::service_tokens` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::service_tokens(data));
