//! libFuzzer's entry for `pairbeat::fuzzing::replica_meta` (the body and its contract are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pairbeat::fuzzing::replica_meta(data));
