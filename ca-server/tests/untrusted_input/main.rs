//! Every parser that reads untrusted bytes, held to what its fuzz target
//! asserts. The Ed25519 module holds the differential tests of the single and
//! the batch signature check.

// Its `check`, the body of a fuzz target, is used once the targets exist.
#[allow(dead_code)]
mod ed25519;
