//! Subject key lines: refused, or round-tripped
//! (the check and its input layout: ca-server/tests/untrusted_input/subject_key.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/subject_key.rs"]
mod subject_key;

libfuzzer_sys::fuzz_target!(|data: &[u8]| subject_key::check(data));
