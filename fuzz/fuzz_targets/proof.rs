//! Proofs of possession (SSHSIG): checked consistently, never accepted for another key
//! (the check and its input layout: ca-server/tests/untrusted_input/proof.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/proof.rs"]
mod proof;

libfuzzer_sys::fuzz_target!(|data: &[u8]| proof::check(data));
