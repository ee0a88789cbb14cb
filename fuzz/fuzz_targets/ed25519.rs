//! Ed25519 signatures: the single check, the batch equation and the rule give one verdict
//! (the check and its input layout: ca-server/tests/untrusted_input/ed25519.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/ed25519.rs"]
mod ed25519;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ed25519::check(data));
