//! What the jit-ssh CA (`jit-ssh-ca`) and its client (`jit-ssh`) share beyond
//! the wire types of `ca-proto`, so that each rule exists once:
//!
//! - [`error_chain`]: an error and its causes on one line, for messages a
//!   person reads;
//! - [`http`]: HTTP towards identity providers and the CA that never follows
//!   a redirect and never buffers a body past a cap, including the adapter
//!   that lets `openidconnect` speak through a shared `reqwest` client;
//! - [`Secret`]: a string that never prints, is wiped on drop and compares in
//!   constant time;
//! - [`duration`]: the one grammar for lengths of time (`"90s"`, `"5m"`,
//!   `"1h30m"`), read alike from command-line flags, the CA's configuration
//!   and policy files;
//! - [`text`]: the one rule for control characters in text people send each
//!   other (refused by the CA but for tab, escaped in every human-facing
//!   table).
//!
//! The crate holds no policy of either side: the CA's and the client's own
//! limits (how large a JWKS may be, how long a certificate may live) stay in
//! their crates and are passed in.

pub mod duration;
mod errors;
pub mod http;
pub mod secret;
pub mod text;

pub use errors::error_chain;
pub use secret::Secret;
