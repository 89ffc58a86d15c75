//! libFuzzer's entry for `pairbeat::fuzzing::state_files` (the body and its contract are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pairbeat::fuzzing::state_files(data));
