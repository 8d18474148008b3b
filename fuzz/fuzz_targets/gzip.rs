//! Fuzzes `sparse_train::fuzzing::gzip` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sparse_train::fuzzing::gzip(data));
