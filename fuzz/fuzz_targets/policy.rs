//! Policy files: compiled, or refused with diagnostics inside the file
//! (the check and its input layout: ca-server/tests/untrusted_input/policy.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../ca-server/tests/untrusted_input/policy.rs"]
mod policy;

libfuzzer_sys::fuzz_target!(|data: &[u8]| policy::check(data));
