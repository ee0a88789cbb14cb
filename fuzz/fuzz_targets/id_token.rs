//! ID tokens through TokenVerifier::verify: refused, or accepted for good reasons
//! (the check and its input layout: ca-server/tests/untrusted_input/id_token.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/id_token.rs"]
mod id_token;

libfuzzer_sys::fuzz_target!(|data: &[u8]| id_token::check(data));
