//! The errors a person sees from `jit-ssh`: one line saying what happened and
//! what to do, and a distinct exit code per kind so scripts can tell them
//! apart. The table of codes is [`EXIT_CODES_HELP`], shown by `jit-ssh --help`.

use ca_proto::ErrorCode;

use crate::agent::AgentError;
use crate::ca::ClientError;
use crate::check::CertificateError;
use crate::oidc::OidcError;
use crate::pins::PinError;

/// What kind of failure, i.e. which exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Anything else (bad input, local files).
    Other,
    /// The CA cannot be reached.
    CaUnreachable,
    /// The CA's TLS certificate is not trusted.
    TlsUntrusted,
    /// The CA refused the request (token, proof, key).
    CaRefused,
    /// The CA's policy denied the principals or lifetime asked for.
    Denied,
    /// The identity provider cannot be reached.
    IdpUnreachable,
    /// The identity provider refused.
    IdpRefused,
    /// Sign-in was cancelled in the browser.
    Cancelled,
    /// The browser never came back.
    TimedOut,
    /// The callback's `state` was not ours.
    StateMismatch,
    /// The device code expired.
    DeviceExpired,
    /// The ssh-agent refused or is unusable.
    Agent,
    /// No valid certificate and no interactive login allowed.
    NotLoggedIn,
    /// The CA's certificate failed the client's checks.
    BadCertificate,
    /// The CA's user-CA keys changed outside a published rotation.
    CaKeyChanged,
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Other => 1,
            Failure::CaUnreachable => 3,
            Failure::TlsUntrusted => 4,
            Failure::CaRefused => 5,
            Failure::Denied => 6,
            Failure::IdpUnreachable => 7,
            Failure::IdpRefused => 8,
            Failure::Cancelled => 9,
            Failure::TimedOut => 10,
            Failure::StateMismatch => 11,
            Failure::DeviceExpired => 12,
            Failure::Agent => 13,
            Failure::NotLoggedIn => 14,
            Failure::BadCertificate => 15,
            Failure::CaKeyChanged => 16,
        }
    }
}

/// Shown at the end of `jit-ssh --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success (`ensure`: a valid certificate is loaded)
   1  other error (bad input, local files)
   2  usage error
   3  the CA cannot be reached
   4  the CA's TLS certificate is not trusted (use --ca-cert)
   5  the CA refused the request (token, proof of possession, key)
   6  the CA's policy denied the request (principals, lifetime)
   7  the identity provider cannot be reached
   8  the identity provider refused (or the refresh token is no longer valid)
   9  sign-in was cancelled in the browser
  10  the browser never came back (--timeout)
  11  the browser came back with a state this login did not send
  12  the device code expired before sign-in finished
  13  the ssh-agent refused the key or cannot be used (try --no-agent)
  14  not logged in and `ensure --no-login` forbids an interactive login;
      `status`: a certificate expired and no valid one of its CA replaces it
  15  the CA's certificate is not what was asked for (nothing was stored)
  16  the CA's user-CA key changed outside a published rotation (see --accept-ca-key)

A clock more than 30 s away from the CA's is reported as a warning.";

/// An error for a person: one line, with an exit code.
#[derive(Debug)]
pub struct CliError {
    /// Which exit code.
    pub failure: Failure,
    /// The line to print (what happened; what to do).
    pub message: String,
}

impl CliError {
    /// An error of kind `failure`.
    pub fn new(failure: Failure, message: impl Into<String>) -> CliError {
        CliError {
            failure,
            message: message.into(),
        }
    }

    /// An [`Failure::Other`] error.
    pub fn other(message: impl Into<String>) -> CliError {
        CliError::new(Failure::Other, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> CliError {
        match error {
            ClientError::NotACa { url, what } => CliError::new(
                Failure::CaUnreachable,
                format!(
                    "no jit-ssh CA at this URL: {url} answered {what}; check the CA URL (--ca, \
                     JIT_SSH_CA): it is the CA's base URL, e.g. https://ca.example.com"
                ),
            ),
            ClientError::Transport { url, message } | ClientError::Tls { url, message }
                if is_plain_http_answer(&message) =>
            {
                CliError::new(
                    Failure::CaUnreachable,
                    format!(
                        "{url} answered plain HTTP to an https:// request: the server at that \
                         address does not speak TLS; use the URL its operators give (http:// \
                         only for a CA on this machine)"
                    ),
                )
            }
            ClientError::Transport { url, message } => CliError::new(
                Failure::CaUnreachable,
                format!(
                    "cannot reach the CA at {url} ({message}): check the CA URL (--ca, JIT_SSH_CA) \
                     and that the CA is up"
                ),
            ),
            ClientError::Tls { url, message } => CliError::new(
                Failure::TlsUntrusted,
                format!(
                    "the TLS certificate of {url} is not trusted ({message}): pass --ca-cert FILE \
                     with the root that signed it"
                ),
            ),
            ClientError::Refused {
                status,
                code,
                message,
            } => match ErrorCode::from(code.as_str()) {
                ErrorCode::ApprovalRequired => CliError::new(
                    Failure::Denied,
                    format!(
                        "approval required: {message}\n\
                         hint: ask for it with the command above (an approver runs \
                         `jit-ssh approve ID`); once it is approved, run `jit-ssh login` again"
                    ),
                ),
                ErrorCode::Denied => CliError::new(
                    Failure::Denied,
                    format!(
                        "denied by the CA's policy: {message}; ask only for principals you are \
                         granted (drop --principal to get all of them)"
                    ),
                ),
                ErrorCode::GroupsOverage => CliError::new(
                    Failure::CaRefused,
                    format!(
                        "the CA refused the request ({status} {code}): {message}; signing in \
                         again gives the same answer: tell the identity provider's administrators"
                    ),
                ),
                // Every other refusal (token, proof, key, limits, and codes
                // of newer CAs this client does not know) is said as the CA
                // words it.
                _ => CliError::new(
                    Failure::CaRefused,
                    format!(
                        "the CA refused the request ({status} {code}): {message}; run `jit-ssh \
                         login` again, and contact the CA's operators if it persists"
                    ),
                ),
            },
            ClientError::Key(e) => CliError::other(format!("key error: {e}")),
        }
    }
}

/// Whether a connection error says the server answered TLS with plain
/// text (rustls: "received corrupt message of type InvalidContentType").
fn is_plain_http_answer(message: &str) -> bool {
    message.contains("InvalidContentType")
}

impl From<CertificateError> for CliError {
    fn from(error: CertificateError) -> CliError {
        CliError::new(
            Failure::BadCertificate,
            format!(
                "refused the CA's certificate: {error}; nothing was stored. Tell the CA's \
                 operators: the CA is misconfigured, or not the CA it claims to be"
            ),
        )
    }
}

impl From<PinError> for CliError {
    fn from(error: PinError) -> CliError {
        let failure = match &error {
            PinError::Changed { .. } => Failure::CaKeyChanged,
            PinError::NoKeys { .. } | PinError::Unreadable { .. } => Failure::CaRefused,
            PinError::NotPublished { .. } | PinError::File { .. } => Failure::Other,
        };
        CliError::new(failure, error.to_string())
    }
}

impl From<OidcError> for CliError {
    fn from(error: OidcError) -> CliError {
        let failure = match &error {
            OidcError::Unreachable { .. } => Failure::IdpUnreachable,
            OidcError::Refused { .. }
            | OidcError::RefreshRefused(_)
            | OidcError::NoDeviceFlow(_) => Failure::IdpRefused,
            OidcError::Cancelled => Failure::Cancelled,
            OidcError::TimedOut(_) => Failure::TimedOut,
            OidcError::StateMismatch => Failure::StateMismatch,
            OidcError::DeviceExpired => Failure::DeviceExpired,
            OidcError::Local(_) => Failure::Other,
        };
        let hint = match &error {
            OidcError::Unreachable { .. } => "check your network and the issuer URL the CA publishes",
            OidcError::Refused { .. } => "check the account you signed in with, then run `jit-ssh login` again",
            OidcError::RefreshRefused(_) => "run `jit-ssh login` to sign in again",
            OidcError::NoDeviceFlow(_) => "use `--flow browser`",
            OidcError::Cancelled => "run `jit-ssh login` to try again",
            OidcError::TimedOut(_) => {
                "run `jit-ssh login` again, or `jit-ssh login --flow device` where no browser can reach this machine"
            }
            OidcError::StateMismatch => {
                "nothing was issued (a stale browser tab or a forged redirect); run `jit-ssh login` again"
            }
            OidcError::DeviceExpired => "run `jit-ssh login --flow device` again and finish sooner",
            OidcError::Local(_) => "see the message above",
        };
        CliError::new(failure, format!("{error}: {hint}"))
    }
}

impl From<AgentError> for CliError {
    fn from(error: AgentError) -> CliError {
        CliError::new(
            Failure::Agent,
            format!(
                "{error}: start an agent (eval $(ssh-agent)) or use --no-agent to write key files"
            ),
        )
    }
}
