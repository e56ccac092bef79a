//! Fuzz target `users`: the property is `tokengate_fuzz::users` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::users(data));
