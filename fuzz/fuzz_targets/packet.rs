//! libFuzzer's entry for `pairbeat::fuzzing::packet` (the body and its contract are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pairbeat::fuzzing::packet(data));
