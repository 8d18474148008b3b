//! Fuzzes `sparse_train::fuzzing::checkpoint` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sparse_train::fuzzing::checkpoint(data));
