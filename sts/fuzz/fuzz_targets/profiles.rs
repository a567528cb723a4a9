//! Fuzz target: `sts::fuzzing::profiles` must return normally on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sts::fuzzing::profiles(data));
