//! jit-ssh-ca: an SSH certificate authority that turns a verified OpenID Connect
//! ID token into an SSH user certificate valid for minutes.
//!
//! The domain is plain Rust with no HTTP in it: [`oidc`] verifies tokens into an
//! [`identity::Identity`], [`policy`] decides what that identity gets, [`cert`]
//! builds the certificate and [`ca_keys`] signs it, [`store`] records it durably.
//! [`authority::Authority`] runs those steps in order; [`http`] is the thin axum
//! layer in front of it.

pub mod access;
pub mod audit;
pub mod authority;
pub mod ca_keys;
pub mod cert;
pub mod config;
#[cfg(feature = "dev-idp")]
pub mod dev;
pub mod ed25519_batch;
pub mod http;
pub mod identity;
pub mod krl;
pub mod log_writer;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod private_files;
pub mod rate_limit;
pub mod secret;
pub mod server;
pub mod store;
pub mod subject_key;
pub mod webhook;

/// Seconds since the Unix epoch, read once at the edge and passed inwards.
pub type UnixTime = u64;

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The current time as [`UnixTime`].
pub fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
