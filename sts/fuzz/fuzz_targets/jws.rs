//! Fuzz target: `sts::fuzzing::jws` must return normally on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sts::fuzzing::jws(data));
