//! Why a token or a start-up discovery was refused: the boundary errors of
//! token verification, mapped to answers by the HTTP layer and to exit
//! messages by the server's start-up.

/// Why a token was refused. Messages are safe to return to the caller: they
/// never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS, or claims of the wrong type.
    #[error("ID token is malformed: {0}")]
    Malformed(String),
    /// `alg: none`.
    #[error("ID token is unsigned (alg \"none\")")]
    Unsigned,
    /// HS256 and friends: the "key" would be a shared secret or a public key
    /// misused as one.
    #[error("ID token uses a symmetric algorithm ({0}); only RS*, PS*, ES256/384 and EdDSA are accepted")]
    SymmetricAlgorithm(String),
    /// Any other algorithm name.
    #[error("ID token algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header's `typ` says access token (`at+jwt`): a token meant for
    /// a resource server, not an ID token.
    #[error("the token's typ ({0:?}) says it is an access token; send the ID token instead")]
    AccessToken(String),
    /// The header's `typ` names another kind of JWT than an ID token.
    #[error(
        "the token's typ ({0:?}) says it is not an ID token (an ID token's typ is JWT or absent)"
    )]
    NotAnIdToken(String),
    /// A `crit` header this verifier cannot honour.
    #[error("ID token has critical header parameters, which are not supported")]
    CriticalHeader,
    /// `iss` is not a configured issuer.
    #[error("ID token issuer is not trusted by this CA")]
    UntrustedIssuer,
    /// No key of the issuer matches the token's `kid` and algorithm.
    #[error("ID token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("ID token signature is invalid")]
    BadSignature,
    /// `exp` is past.
    #[error("ID token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("ID token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("ID token was issued in the future; check clocks")]
    IssuedInFuture,
    /// `aud` does not contain the client ID.
    #[error("ID token audience does not include this CA's client_id")]
    WrongAudience,
    /// `azp` is not the client ID.
    #[error("ID token authorized party (azp) is not this CA's client_id")]
    WrongAuthorizedParty,
    /// The `nonce` was made for another key.
    #[error("ID token nonce does not match the public key (it was obtained for another key)")]
    NonceMismatch,
    /// A required claim is absent.
    #[error("ID token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// `email` is the username claim but is not verified.
    #[error("the token's email is not verified (email_verified must be true), and this issuer names users by their email")]
    EmailNotVerified,
    /// `email` is the username claim and its domain is not one of the
    /// issuer's `email_domains`.
    #[error("the token's email domain {domain:?} is not accepted by this CA (accepted: {accepted}); its users are named by their address's local part, so only listed domains may sign in")]
    EmailDomainNotAccepted {
        /// The address's domain, lower-cased.
        domain: String,
        /// The issuer's `email_domains`, comma-separated.
        accepted: String,
    },
    /// The username claim is not usable as a login name.
    #[error("the username claim cannot name a user: preferred_username (or the local part of email) must already be a Unix login name (lower-case letters, digits, '.', '_', '-', starting with a letter or '_', at most 32); the CA rewrites no name, so \"Alice\" is refused, not folded to \"alice\"")]
    InvalidUsername,
    /// `preferred_username` is a user principal name of a domain that is
    /// not one of the issuer's `upn_domains`.
    #[error("the token's user principal name is of domain {domain:?}, which this CA does not accept (accepted: {accepted}); its users are named by the name's local part, so only listed domains may sign in")]
    UpnDomainNotAccepted {
        /// The name's domain, lower-cased.
        domain: String,
        /// The issuer's `upn_domains`, comma-separated.
        accepted: String,
    },
    /// The groups claim is not in the token but announced as held elsewhere
    /// (Entra ID's groups overage: `_claim_names`), so the user's groups
    /// are unknown.
    #[error("the ID token does not carry the user's {0:?} claim but refers to it elsewhere (a groups overage: the user is in more groups than the token can hold); the CA does not fetch them and will not decide as if there were none. The identity provider's administrators should emit only the groups assigned to the application, or app roles, instead of every group")]
    GroupsOverage(String),
    /// The issuer's keys cannot be fetched right now.
    #[error("identity provider {0} is unavailable")]
    IssuerUnavailable(String),
}

/// Why start-up discovery failed.
#[derive(Debug, thiserror::Error)]
#[error("OpenID discovery for issuer {name} ({issuer}) failed after {attempts} attempts: {reason}")]
pub struct DiscoveryError {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) attempts: u32,
    pub(super) reason: String,
}
