//! Fuzzes `sparse_train::fuzzing::idx` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sparse_train::fuzzing::idx(data));
