//! Fuzz target `node_answer`: the property is `tokengate_fuzz::node_answer` (`fuzz/checks.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::node_answer(data));
