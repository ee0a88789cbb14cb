//! ID token verification: the security core of the CA.
//!
//! OpenID discovery (through the `openidconnect` crate) finds each trusted
//! issuer's JWKS at start-up. A token is then accepted only if, in this order:
//! its header names an asymmetric algorithm (`none` and HMAC are refused before
//! any key is looked at) and no other kind of JWT (a `typ` of `at+jwt`, an
//! access token, or anything but `JWT`); its `iss` is exactly a configured
//! issuer; its signature verifies with a key from that issuer's JWKS (the set
//! is refetched on a schedule that honours the provider's `Cache-Control`
//! within configured bounds, and on an unknown `kid` at most once per
//! [`MIN_JWKS_REFRESH`]); `aud` contains the configured `client_id` (and
//! `azp` equals it when present or when there are several audiences); `exp`,
//! `nbf` and `iat` hold within the configured leeway; a `nonce`, when
//! present, equals the one derived from the subject key (a token without one,
//! from an issuer with `require_nonce`, is marked
//! [`KeyBinding::NonceMissing`] and certifies only a key bound earlier); and
//! the username
//! claim yields a Unix login name (an `email` only when `email_verified` is
//! true). Single use is enforced by the store, which records
//! [`VerifiedToken::digest`] in the same transaction as the certificate: a
//! [`TokenDigest`] of what the issuer signed, so that no other spelling of a
//! spent token (the ECDSA twin `(r, n - s)` among them) is a new token.
//!
//! EdDSA signatures are checked with ed25519-dalek in the shared
//! [`Ed25519Batcher`](crate::ed25519_batch::Ed25519Batcher), where
//! [`TokenVerifier::prepare`] and [`TokenVerifier::finish`] let a caller
//! batch them with its own checks; every other algorithm goes through
//! `jsonwebtoken` (aws-lc).
//!
//! The rooms, in the order a token meets them: `verifier` (the
//! [`TokenVerifier`]: the compact JWS, its header and issuer, and the two
//! halves a caller can batch around), `signature` (which algorithms are
//! accepted and which key signed), `claims` (audience, times, nonce, and the
//! identity the claims name), `issuer` (OpenID discovery and each issuer's
//! key set), `error` (why a token or a discovery was refused).

mod claims;
mod error;
mod issuer;
mod shapes;
mod signature;
mod verifier;

#[cfg(test)]
mod testing;

pub use claims::{identity_from_claims, UNMATCHED_CLAIMS};
pub use error::{DiscoveryError, TokenError};
pub use issuer::{JwksRefresh, DEFAULT_JWKS_MAX_AGE, MIN_JWKS_REFRESH};
pub use verifier::{KeyBinding, TokenDigest, TokenVerifier, VerifiedToken, MAX_TOKEN_LEN};
