//! libFuzzer's entry for `pairbeat::fuzzing::agent_output` (the body and its contract are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pairbeat::fuzzing::agent_output(data));
