#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferd_fuzzing::fuzz(inferd_fuzzing::sentencepiece, data));
