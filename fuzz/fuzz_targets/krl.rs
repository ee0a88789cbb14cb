//! KRLs: the host's parser never panics, and reads back what the CA encodes
//! (the check and its input layout: ca-server/tests/untrusted_input/krl.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/krl.rs"]
mod krl;

libfuzzer_sys::fuzz_target!(|data: &[u8]| krl::check(data));
